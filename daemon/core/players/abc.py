"""ABC text for the character-level ``abc`` style: its alphabet, a writer, a reader, and the
:class:`AbcContinuer` that plays such a model live.

The model (training/styles/abc.py) reads and writes ABC characters. Live, the player's
monophonic sixteenth grid is written as ABC text in the model's conventions and fed to the
model character by character; the answer is sampled as characters and read back into notes.

Conventions, measured on the training corpus (O'Neill, Ryan, Aird, Nottingham: 2726 of 4249
training tunes declare ``L:1/8``, 411 none, which for their meters also means 1/8; 625 use
1/16 and 486 1/4): the header :data:`HEADER` is ``X:1``, an empty title, ``M:4/4``, ``L:1/8``
and ``K:C``. The daemon moves the player into C major / A minor (``shift``, as for folk), so
the phrase is written without a key signature.

**Writer** (:class:`AbcWriter`): a note of n sixteenths is its letter (``C`` = MIDI 60, ``c`` =
72, ``,`` and ``'`` an octave down and up) with n/2 eighths as length (``/2``, ``''``, ``3/2``,
``2``, ...). Black keys are spelled ^C _E ^F ^G _B; an accidental holds to the bar line, so
it is written only when the bar's current spelling differs (``=`` restores a natural). Rests
are ``z``. A space goes every half bar, ``|`` every 16 sixteenths (bars are counted from the
first step observed after a reset, not from the player's downbeat, which the engine does not
know), a newline every four bars. A note crossing a bar line is split and tied (``-``).

Latency of priming: a note's text is known only when the note ends (its length is written after
its letter) or at the next bar line, so the model has read the phrase up to the last note's
onset, not the note itself, until the next onset, rest or bar line; before an answer
:meth:`AbcContinuer.continue_notes` writes the pending note, so the model has read the whole
phrase when it answers. Each observe call costs one model run over the new characters.

**Reader** (:func:`read`): a subset of ABC onto the sixteenth grid: notes ``A-G a-g`` with
``,``/``'`` octaves, accidentals ``^ ^^ _ __ =`` (holding to the bar line, over the key of the
last ``K:`` field: major, minor and the modes), lengths (``2``, ``3/2``, ``/2``, ``/``, ``//``),
rests ``z x`` (``Z`` a whole 4/4 bar), bar lines, ties ``-`` (joined), broken rhythm ``> <``,
tuplets ``(3``, chords ``[CEG]`` (one start, the first note's length), and ``L:`` fields.
Skipped: other fields, ``"..."`` chord symbols and annotations, ``!...!`` decorations, ``{...}``
grace notes, comments, slurs, repeats and endings (read straight through). An unclosed
``"``/``!``/``{`` at the end of the text stops reading there (it is still being written).
Onsets and ends are rounded to the grid; a note that rounds to nothing is dropped.

Pure: numpy and the standard library.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from partimento.core.music.encoding import HOLD_CODE, REST_CODE, Note
from partimento.core.players import sampling
from partimento.core.players.continuation import Sampler, TokenStepper, check_continuation
from partimento.core.players.contract import Contract
from partimento.core.types import ModelLike, RunFn

CHARACTERS = "\n" + "".join(chr(c) for c in range(32, 127))
"""The model's alphabet: newline and printable ASCII; token i is ``CHARACTERS[i]``."""
_INDEX = {c: i for i, c in enumerate(CHARACTERS)}

HEADER = "X:1\nT:\nM:4/4\nL:1/8\nK:C\n"

TEXT_TEMPERATURE = 0.9
"""The temperature ``partimento sample abc`` writes text at unless told otherwise: of 50 tunes
sampled from the shipped model (1024 units), 47 parse with music21 at 0.9, 42 at 1.0."""
"""What the continuer feeds after a reset: a tune in 4/4, eighth-note unit, C major."""
UNIT = "1/8"
STEPS_PER_UNIT = Fraction(2)  # sixteenths per L:1/8 unit
STEPS_PER_BAR = 16

LETTERS = "CDEFGAB"
NATURAL = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
SPELLING = {
    0: ("C", 0),
    1: ("C", 1),
    2: ("D", 0),
    3: ("E", -1),
    4: ("E", 0),
    5: ("F", 0),
    6: ("F", 1),
    7: ("G", 0),
    8: ("G", 1),
    9: ("A", 0),
    10: ("B", -1),
    11: ("B", 0),
}
"""Pitch class -> (letter, alteration) in C major / A minor."""
ACCIDENTALS = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}
_SIGN = {2: "^^", 1: "^", 0: "=", -1: "_", -2: "__"}


def encode_text(text: str) -> np.ndarray:
    """Characters to token ids (``int32``); characters outside the alphabet are dropped."""
    return np.array([_INDEX[c] for c in text if c in _INDEX], np.int32)


def decode_text(ids: Iterable[int] | np.ndarray) -> str:
    return "".join(CHARACTERS[int(i)] for i in np.asarray(ids).ravel())


# --- writer -------------------------------------------------------------------------------------


def length_text(steps: int) -> str:
    """A length of ``steps`` sixteenths in eighth-note units: '/2', '', '3/2', '2', ..."""
    units = Fraction(steps) / STEPS_PER_UNIT
    if units == 1:
        return ""
    if units.denominator == 1:
        return str(units.numerator)
    return "/2" if units.numerator == 1 else f"{units.numerator}/{units.denominator}"


def pitch_text(pitch: int, bar_accidentals: dict[tuple[str, int], int]) -> str:
    """One pitch as ABC in C major, given (and updating) the bar's accidentals."""
    letter, alter = SPELLING[pitch % 12]
    octave = pitch // 12 - 1  # MIDI 60 is octave 4: "C"
    key = (letter, octave)
    sign = "" if bar_accidentals.get(key, 0) == alter else _SIGN[alter]
    bar_accidentals[key] = alter
    if octave >= 5:
        return sign + letter.lower() + "'" * (octave - 5)
    return sign + letter + "," * (4 - octave)


@dataclass
class AbcWriter:
    """Grid codes in, ABC text out, as soon as each piece of text is known.

    A bar line is written one step late: only the step after it tells whether the note
    sounding at the bar goes on (written tied, ``A2-|``) or not (``A2|``).
    """

    position: int = 0  # sixteenths fed since the start
    pitch: int | None = None  # the pending note (None: a pending rest, if length > 0)
    length: int = 0
    bar_due: bool = False
    bar_accidentals: dict[tuple[str, int], int] = field(default_factory=dict)

    def feed(self, code: int) -> str:
        """One sixteenth: a pitch (onset), ``HOLD_CODE`` or ``REST_CODE``; returns new text."""
        out = ""
        if self.bar_due:
            goes_on = code == HOLD_CODE and self.pitch is not None
            out += self._write(tie=goes_on) + self._barline()
        if code >= 0 or (code == REST_CODE and self.pitch is not None):
            out += self._write(tie=False)
        if code >= 0:
            self.pitch = int(code)
        self.length += 1
        self.position += 1
        self.bar_due = self.position % STEPS_PER_BAR == 0
        return out

    def flush(self) -> str:
        """The pending note or rest (and a due bar line), written now (before an answer)."""
        return self._write(tie=False) + (self._barline() if self.bar_due else "")

    def _write(self, *, tie: bool) -> str:
        text = ""
        if self.length:
            start = self.position - self.length
            text = " " if start % STEPS_PER_BAR == STEPS_PER_BAR // 2 else ""
            if self.pitch is None:
                text += "z" + length_text(self.length)
            else:
                text += pitch_text(self.pitch, self.bar_accidentals) + length_text(self.length)
                text += "-" if tie else ""
        self.length = 0
        if not tie:
            self.pitch = None
        return text

    def _barline(self) -> str:
        self.bar_due = False
        self.bar_accidentals.clear()
        return "|\n" if self.position % (4 * STEPS_PER_BAR) == 0 else "|"

    def advance(self, steps: int) -> None:
        """Count ``steps`` sixteenths written by someone else (the model's answer)."""
        self.position += steps
        self.bar_due = False
        self.bar_accidentals.clear()


def write(codes: Iterable[int] | np.ndarray, *, header: bool = False) -> str:
    """A whole grid as ABC text (with :data:`HEADER` if asked), the last note written out."""
    w = AbcWriter()
    text = "".join(w.feed(int(c)) for c in np.asarray(codes).tolist()) + w.flush()
    return (HEADER if header else "") + text


# --- reader -------------------------------------------------------------------------------------

_NOTE = re.compile(r"(\^\^|\^|__|_|=)?([A-Ga-g])([,']*)(\d*)(/*)(\d*)")
_REST = re.compile(r"([zxZ])(\d*)(/*)(\d*)")
_FIELD = re.compile(r"([A-Za-z]):([^\n]*)(\n|$)")
_KEY = re.compile(r"\s*([A-G])([#b]?)\s*([A-Za-z]*)")
MODES = {
    "": 0,
    "maj": 0,
    "ion": 0,
    "mix": -1,
    "dor": -2,
    "m": -3,
    "min": -3,
    "aeo": -3,
    "phr": -4,
    "loc": -5,
    "lyd": 1,
}
"""Mode -> sharps relative to the major key on the same tonic."""
_MAJOR_SHARPS = {"C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F": -1}
_SHARP_ORDER = "FCGDAEB"


def key_signature(field_text: str) -> dict[str, int]:
    """``K:`` field -> alteration per letter (``{}`` for C major or what is not understood)."""
    m = _KEY.match(field_text)
    if not m:
        return {}
    tonic, acc, mode = m.groups()
    sharps = _MAJOR_SHARPS[tonic] + {"#": 7, "b": -7, "": 0}[acc]
    sharps += MODES.get(mode.lower()[:3] if mode.lower() not in ("m",) else "m", 0)
    if sharps >= 0:
        return {letter: 1 for letter in _SHARP_ORDER[:sharps]}
    return {letter: -1 for letter in _SHARP_ORDER[::-1][:-sharps]}


def _length(digits: str, slashes: str, denominator: str) -> Fraction:
    n = Fraction(int(digits)) if digits else Fraction(1)
    if slashes:
        n /= int(denominator) if denominator else 2 ** len(slashes)
    return n


@dataclass
class _Event:
    pitches: list[int]  # [] for a rest
    units: Fraction  # length in L: units, before tuplets and broken rhythm
    unit: Fraction  # sixteenths per unit when it was read
    tie: bool = False
    scale: Fraction = Fraction(1)


@dataclass
class Reading:
    """What :func:`read` made of a text: notes on the grid and where the music ended."""

    notes: list[Note]
    end: int  # sixteenths read (the end of the last event)
    complete: bool  # False: the text ends inside a construct still being written


def _events(
    text: str, unit: Fraction, key: dict[str, int], line_start: bool
) -> tuple[list[_Event], bool]:
    """The notes, rests and chords of ``text`` with their lengths, ties and rhythm marks."""
    events: list[_Event] = []
    bar: dict[tuple[str, int], int] = {}
    tuplet: list[int] = []  # notes left in the current tuplet, and its factor
    factor = Fraction(1)
    broken = 0  # > count pending (negative for <)
    chord: list[int] | None = None
    chord_units = Fraction(1)
    i, n = 0, len(text)

    def add(ev: _Event) -> None:
        nonlocal broken, factor
        if tuplet:
            ev.scale *= factor
            tuplet[0] -= 1
            if tuplet[0] == 0:
                tuplet.clear()
        if broken and events:
            big = 2 - Fraction(1, 2 ** abs(broken))
            small = Fraction(1, 2 ** abs(broken))
            events[-1].scale *= big if broken > 0 else small
            ev.scale *= small if broken > 0 else big
        broken = 0
        events.append(ev)

    while i < n:
        c = text[i]
        if line_start and (m := _FIELD.match(text, i)):
            name, value = m.group(1), m.group(2)
            if not m.group(3):
                return events, False  # a field line still being written
            if name == "K":
                key, bar = key_signature(value), {}
            elif name == "L" and re.fullmatch(r"\s*1/\d+\s*", value):
                unit = Fraction(16, int(value.split("/")[1]))
            i = m.end()
            continue
        line_start = c == "\n"
        if c in '"!{+':
            close = {'"': '"', "!": "!", "{": "}", "+": "+"}[c]
            j = text.find(close, i + 1)
            if j < 0:
                return events, False
            i = j + 1
            continue
        if c == "%":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == "[" and i + 2 < n and text[i + 2] == ":" and text[i + 1].isalpha():
            j = text.find("]", i)
            if j < 0:
                return events, False
            if text[i + 1] == "K":
                key, bar = key_signature(text[i + 3 : j]), {}
            i = j + 1
            continue
        if c == "[" and i + 1 < n and (text[i + 1].isdigit() or text[i + 1] == "|"):
            i += 2  # an ending ([1) or a thick bar line ([|)
            bar = {}
            continue
        if c == "[":
            chord, chord_units = [], Fraction(0)
            i += 1
            continue
        if c == "]" and chord is not None:
            m = re.compile(r"(\d*)(/*)(\d*)").match(text, i + 1)
            mult = _length(*m.groups()) if m and m.group(0) else Fraction(1)
            if chord:
                add(_Event(chord, (chord_units or Fraction(1)) * mult, unit))
            chord = None
            i = m.end() if m else i + 1
            continue
        if c == "|":
            bar = {}
            i += 1
            continue
        if c == "(" and i + 1 < n and text[i + 1].isdigit():
            p = int(text[i + 1])
            q = {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}.get(p, 2)
            tuplet[:] = [p]
            factor = Fraction(q, p)
            i += 2
            continue
        if c in "<>":
            j = i
            while j < n and text[j] == c:
                j += 1
            broken = (j - i) if c == ">" else -(j - i)
            i = j
            continue
        if c == "-":
            if events:
                events[-1].tie = True
            i += 1
            continue
        if m := _NOTE.match(text, i):
            acc, letter, marks, *dur = m.groups()
            upper = letter.upper()
            octave = (4 if letter.isupper() else 5) - marks.count(",") + marks.count("'")
            if acc:
                bar[(upper, octave)] = ACCIDENTALS[acc]
            alter = bar.get((upper, octave), key.get(upper, 0))
            pitch = 12 * (octave + 1) + NATURAL[upper] + alter
            if chord is not None:
                if not chord:
                    chord_units = _length(*dur)
                chord.append(pitch)
            else:
                add(_Event([pitch], _length(*dur), unit))
            i = m.end()
            continue
        if m := _REST.match(text, i):
            kind, *dur = m.groups()
            units = _length(*dur)
            if kind == "Z":
                units = units * STEPS_PER_BAR / unit
            add(_Event([], units, unit))
            i = m.end()
            continue
        i += 1  # spaces, slurs, dots, anything else
    return events, chord is None


def read(
    text: str,
    *,
    unit: Fraction = STEPS_PER_UNIT,
    key: dict[str, int] | None = None,
    line_start: bool = True,
) -> Reading:
    """ABC body text (no header needed) as notes on the sixteenth grid; see the module doc.

    ``unit``: sixteenths per ``L:`` unit until an ``L:`` field says otherwise; ``key``: the
    alteration per letter until a ``K:`` field; ``line_start``: whether the text begins a line
    (where a field may begin)."""
    events, complete = _events(text, unit, dict(key or {}), line_start)
    notes: list[Note] = []
    pos = Fraction(0)
    tied: Note | None = None
    for ev in events:
        steps = ev.units * ev.scale * ev.unit
        start, end = round(pos), round(pos + steps)
        pos += steps
        if tied is not None and ev.pitches == [tied.pitch] and tied.start + tied.length == start:
            notes[-1] = tied = Note(tied.pitch, tied.start, end - tied.start)
            if not ev.tie:
                tied = None
            continue
        tied = None
        if end <= start:
            continue
        for p in ev.pitches:
            if 0 <= p <= 127:
                notes.append(Note(p, start, end - start))
        if ev.tie and len(ev.pitches) == 1 and notes and notes[-1].pitch == ev.pitches[0]:
            tied = notes[-1]
    return Reading(notes, round(pos), complete)


# --- the continuer ------------------------------------------------------------------------------

REPRIME_AFTER = 1500
"""Characters read since the header after which an answer ends with a reset (a fresh header):
the model was trained on cold windows of 100 characters, so its state is kept young."""
TEXT_KEPT = 2000
"""Characters of fed text a continuer keeps in ``text`` (for inspection and tests)."""
CHARS_PER_STEP = 6
"""The character budget of an answer: this many per sixteenth asked for, plus 64."""


class AbcContinuer(Sampler):
    """A character-level ABC model (``encoding["type"]`` ``abc``) playing continuations.

    :meth:`reset` feeds the header; :meth:`observe` writes the player's phrase as ABC (moved by
    ``shift`` into C) and feeds each piece of text as it becomes known; :meth:`continue_notes`
    writes the pending note, then samples characters (a blank line, which would end the tune,
    is never sampled) until the text read back covers ``steps`` sixteenths or the budget of
    ``CHARS_PER_STEP * steps + 64`` characters is spent, and answers those notes moved back by
    ``-shift``; once more than :data:`REPRIME_AFTER` characters were read since the header, the
    answer ends with a reset. With a scale (``allowed_pitch_classes``) free of black keys once
    shifted, the accidentals ``^ _ =`` are never sampled; otherwise a pitch outside the scale is
    moved to the nearest one inside (down first).
    """

    def __init__(
        self,
        contract: Contract,
        run: RunFn,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        shift: int = 0,
        allowed_pitch_classes: frozenset[int] | None = None,
    ) -> None:
        check_continuation(contract)
        chars = contract.encoding.get("characters")
        if chars != CHARACTERS:
            raise ValueError(
                f"model {contract.name}: its characters are not this runtime's ABC alphabet"
            )
        self.contract = contract
        self.model = TokenStepper(contract, run)
        self._set_sampling(temperature, top_p, seed, shift)
        self.header = str(contract.encoding.get("header", HEADER))
        self.scale = (
            None
            if allowed_pitch_classes is None
            else frozenset((pc + shift) % 12 for pc in allowed_pitch_classes)
        )
        self.mask = np.ones(len(CHARACTERS), bool)
        if self.scale is not None and self.scale <= {0, 2, 4, 5, 7, 9, 11}:
            for c in "^_=":
                self.mask[_INDEX[c]] = False
        self.text = ""  # everything fed since the reset, for inspection and tests
        self.reset()

    @property
    def logits(self) -> np.ndarray | None:
        """Scores of the next character, after what was fed."""
        return self.model.logits

    def reset(self) -> None:
        self.model.reset()
        self.writer = AbcWriter()
        self.text = ""
        self.fed = 0
        self._feed(self.header)

    def _feed(self, text: str) -> None:
        ids = encode_text(text)
        if not ids.size:
            return
        self.model.feed(ids)
        self.text = (self.text + decode_text(ids))[-TEXT_KEPT:]
        self.fed += len(ids)

    def _to_model(self, code: int) -> int:
        return code + self.shift if code >= 0 else code

    def observe(self, codes: int | list[int] | np.ndarray) -> None:
        """Write the player's next sixteenths as ABC and feed what is known of it."""
        text = "".join(
            self.writer.feed(self._to_model(int(c)))
            for c in np.atleast_1d(np.asarray(codes)).tolist()
        )
        self._feed(text)

    def continue_notes(self, steps: int) -> list[Note]:
        """An answer of ``steps`` sixteenths in the player's key (see the class doc)."""
        self._feed(self.writer.flush())
        answer = ""
        at_line_start = self.text.endswith("\n")
        reading = read(answer)
        budget = CHARS_PER_STEP * steps + 64
        newline = _INDEX["\n"]
        while len(answer) < budget and self.logits is not None:
            mask = self.mask.copy()
            if answer.endswith("\n") or (not answer and self.text.endswith("\n")):
                mask[newline] = False  # no blank line: the tune goes on
            p = sampling.probabilities(
                self.logits[None], self.temperature, top_p=self.top_p, mask=mask
            )
            char = CHARACTERS[int(sampling.sample(p, self.rng)[0])]
            self._feed(char)
            answer += char
            reading = read(answer, line_start=at_line_start)
            if reading.end >= steps:
                break
        self.writer.advance(min(reading.end, steps))
        self._feed(" ")  # the answer's last note ends here, whatever the model meant to add
        if self.fed > REPRIME_AFTER:
            self.reset()
        return [
            self._answer_note(n, steps)
            for n in reading.notes
            if n.start < steps and self._answer_pitch(n.pitch) is not None
        ]

    def _answer_pitch(self, pitch: int) -> int | None:
        if self.scale and pitch % 12 not in self.scale:
            pitch = next(
                p for d in range(1, 7) for p in (pitch - d, pitch + d) if p % 12 in self.scale
            )
        pitch -= self.shift
        return pitch if 0 <= pitch <= 127 else None

    def _answer_note(self, n: Note, steps: int) -> Note:
        pitch = self._answer_pitch(n.pitch)
        assert pitch is not None  # the answer's notes were written in range
        return Note(pitch, n.start, min(n.length, steps - n.start))


def split_tunes(text: str) -> list[str]:
    """A book's tunes, each from its ``X:`` line to the next (the file header dropped)."""
    return [c for c in re.split(r"(?m)^(?=X:)", text) if c.startswith("X:")]


def sample_text(
    model: ModelLike,
    seed_text: str = "X:1\n",
    chars: int = 600,
    temperature: float = 1.0,
    seed: int = 0,
) -> str:
    """``seed_text`` and ``chars`` characters sampled after it (one model step each).

    The seed primes the state from zero (as in training, where windows start cold); characters
    outside the alphabet are dropped from it, and an empty seed reads as a newline (where a tune
    begins in the training text).
    """
    contract = model.contract
    if contract.encoding.get("type") != "abc":
        raise sampling.SamplingError(f"model {contract.name} is not an abc model")
    token, logits = contract.input("token").name, contract.output("logits").name
    pairs = [(i.name, o.name) for i, o in contract.states]
    state = {i.name: np.zeros((1, int(i.shape[1])), np.float32) for i, _ in contract.states}
    rng = np.random.default_rng(seed)
    ids = encode_text(seed_text) if seed_text else encode_text("\n")
    if not ids.size:
        ids = encode_text("\n")
    out: list[int] = []
    for _ in range(chars + 1):
        res = model.run({token: ids.reshape(1, -1), **state}, [logits, *(o for _, o in pairs)])
        state = {i: res[o] for i, o in pairs}
        if len(out) == chars:
            break
        p = sampling.probabilities(res[logits][0, -1][None], temperature)
        ids = np.array([int(sampling.sample(p, rng)[0])], np.int32)
        out.append(int(ids[0]))
    return seed_text + decode_text(out)


def first_tune(text: str) -> str:
    """The text up to the second ``X:`` line or the first blank line after some music."""
    tunes = split_tunes(text) or [text]
    tune = tunes[0]
    head, sep, rest = tune.partition("\nK:")
    end = rest.find("\n\n")
    return head + sep + (rest if end < 0 else rest[: end + 1])
