"""Event tokens for the ``jazz`` and ``piano`` styles, and :class:`EventContinuer` that plays them.

Two token languages, both stored in a contract's ``encoding["tokens"]`` (the list the model's
logits score, in order) with ``encoding["mode"]`` naming which one:

``numeric`` (the jazz LSTM project's encoding; also piano ``--data-mode numeric``)
    One token per ``step`` sixteenths (default 2: an eighth note, the original's 0.5 quarter
    per event). A step where something starts holds that onset: a single note is its pitch
    (``"60"``), several notes are a chord, its pitch classes in normal order joined by dots
    (``"1.5.6"``). A step where nothing starts is ``"_"`` (what sounded goes on) or ``"r"``
    (silence from here). A chord keeps no register: it is voiced in close position, its
    first pitch class at or below a reference pitch (the player's last note, else middle C).
    Notes are only heard as onsets, so a note lasts until the next token that is not ``"_"``.

``event`` (MechanicalBach's performance encoding, piano ``--data-mode event``)
    ``"on60"``/``"off60"`` start and end a pitch, ``"shift<k>"`` moves time on by k sixteenths
    (1..16; longer gaps are several shifts) and ``"vel<b>"`` sets the velocity bin (``b`` of
    :data:`VELOCITY_BINS`) of the notes turned on after it. ``step`` is 1.

``"/"`` (START) opens and closes every training piece; the continuer is primed with one.

:class:`Vocabulary` (partimento.core.music.encoding) only holds grid symbols, so the contract's
``encoding["vocabulary"]`` keeps the grid symbols the tokens share (valid for every grid tool)
and ``encoding["tokens"]`` is the list the model really scores.

Pure: numpy and the standard library; the model is any callable ``run(feeds, outputs)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from partimento.core.errors import PartimentoError
from partimento.core.music.encoding import HOLD, HOLD_CODE, REST, REST_CODE, START, Note
from partimento.core.players import sampling
from partimento.core.players.continuation import Sampler, TokenStepper
from partimento.core.players.contract import Contract
from partimento.core.types import RunFn

NUMERIC, EVENT = "numeric", "event"
MODES = (NUMERIC, EVENT)
NUMERIC_STEP = 2
"""Sixteenths per numeric token: an eighth note, as the original's 0.5 quarter per event."""
MAX_SHIFT = 16
VELOCITY_BINS = 8
DEFAULT_VELOCITY = 80
MIDDLE_C = 60


class EventError(PartimentoError, ValueError):
    """A token that is not part of an event language."""


@dataclass(frozen=True)
class Played:
    """A note with its velocity, as read from a file (grid steps)."""

    pitch: int
    start: int
    length: int
    velocity: int = DEFAULT_VELOCITY

    @property
    def end(self) -> int:
        return self.start + self.length


# --- numeric: notes and chords on a coarse grid ------------------------------------------------


def normal_order(pitch_classes: Iterable[int]) -> tuple[int, ...]:
    """The pitch classes in normal order: the rotation with the smallest span, ties broken by
    the smallest intervals from the first note to the later ones (Rahn), then the lowest
    first pitch class."""
    pcs = sorted({int(p) % 12 for p in pitch_classes})
    if len(pcs) < 2:
        return tuple(pcs)
    rotations: list[list[int]] = [pcs[i:] + pcs[:i] for i in range(len(pcs))]

    def key(rot: Sequence[int]) -> tuple[int, ...]:
        spans = tuple((rot[j] - rot[0]) % 12 for j in range(len(rot) - 1, 0, -1))
        return (*spans, rot[0])

    best = min(rotations, key=key)
    return tuple(best)


def chord_token(pitches: Iterable[int]) -> str:
    """One pitch: its number; several: their pitch classes in normal order joined by dots."""
    ps = sorted(set(int(p) for p in pitches))
    if not ps:
        raise EventError("a chord needs at least one pitch")
    if len(ps) == 1:
        return str(ps[0])
    pcs = normal_order(ps)
    return ".".join(map(str, pcs)) if len(pcs) > 1 else str(max(ps))


def is_chord(token: str) -> bool:
    return "." in token


def is_pitch(token: str) -> bool:
    return token.isdigit() and 0 <= int(token) <= 127


def voice(token: str, reference: int = MIDDLE_C) -> list[int]:
    """A note or chord token as pitches; a chord in close position from its first pitch
    class, placed at the highest octave not above ``reference``."""
    if is_pitch(token):
        return [int(token)]
    pcs = [int(x) for x in token.split(".")]
    base = reference - ((reference - pcs[0]) % 12)
    out = [base]
    for pc in pcs[1:]:
        out.append(out[-1] + (pc - out[-1]) % 12)
    return [min(127, max(0, p)) for p in out]


def onsets_per_step(
    notes: Sequence[Note], step: int = NUMERIC_STEP, n_steps: int | None = None
) -> list[tuple[frozenset[int], bool]]:
    """Per coarse step, the pitches starting together at its first onset (later onsets in
    the same step are dropped: a fast run is not a chord) and whether anything sounds in it."""
    total = max((n.end for n in notes), default=0)
    n = -(-total // step) if n_steps is None else n_steps
    starts: list[set[int]] = [set() for _ in range(n)]
    first = [-1] * n
    sounding = np.zeros(n + 1, np.int32)
    for note in sorted(notes, key=lambda x: x.start):
        i = note.start // step
        if i < n and first[i] in (-1, note.start):
            first[i] = note.start
            starts[i].add(note.pitch)
        end = min(n, -(-note.end // step))
        sounding[i:end] += 1 if i < n else 0
    return [(frozenset(s), bool(sounding[i])) for i, s in enumerate(starts)]


def numeric_tokens(
    notes: Sequence[Note],
    step: int = NUMERIC_STEP,
    known: Callable[[frozenset[int]], str] | None = None,
) -> list[str]:
    """Notes to numeric tokens; ``known`` maps a set of starting pitches to the token used
    (by default :func:`chord_token`), e.g. to fall back from a rare chord to its top note."""
    name = known or chord_token
    out: list[str] = []
    for pitches, sounds in onsets_per_step(notes, step):
        if pitches:
            out.append(name(pitches))
        else:
            out.append(HOLD if sounds and out and out[-1] != REST else REST)
    return out


def numeric_notes(
    tokens: Sequence[str], step: int = NUMERIC_STEP, reference: int = MIDDLE_C
) -> list[Note]:
    """Numeric tokens to notes (grid steps); each onset lasts until the next non-hold token.
    A chord is voiced below the top pitch heard last (``reference`` at first)."""
    notes: list[Note] = []
    current: list[int] = []
    start = 0

    def close(at: int) -> None:
        notes.extend(Note(p, start * step, (at - start) * step) for p in current)

    for i, tok in enumerate(list(tokens) + [REST]):
        if tok == HOLD and current:
            continue
        if current:
            close(i)
            current = []
        if tok in (HOLD, REST, START):
            continue
        current = voice(tok, reference)
        reference = min(84, max(48, max(current)))  # chords stay around the middle
        start = i
    return notes


# --- event: note-on, note-off, time-shift, velocity ----------------------------------------------


def velocity_bin(velocity: int) -> int:
    return min(VELOCITY_BINS - 1, max(0, int(velocity)) * VELOCITY_BINS // 128)


def bin_velocity(b: int) -> int:
    """The velocity a bin plays at: the middle of the bin."""
    return int((b + 0.5) * 128 / VELOCITY_BINS)


def event_vocabulary(low: int = 21, high: int = 108) -> list[str]:
    """Every token of the event language for pitches ``low..high`` (a piano: 21..108)."""
    return (
        [START]
        + [f"on{p}" for p in range(low, high + 1)]
        + [f"off{p}" for p in range(low, high + 1)]
        + [f"shift{k}" for k in range(1, MAX_SHIFT + 1)]
        + [f"vel{b}" for b in range(VELOCITY_BINS)]
    )


def _shifts(k: int) -> list[str]:
    out = []
    while k > 0:
        out.append(f"shift{min(k, MAX_SHIFT)}")
        k -= min(k, MAX_SHIFT)
    return out


def event_tokens(notes: Sequence[Played]) -> list[str]:
    """Notes to events in time order: at each time the note-offs, then velocity changes and
    note-ons. A pitch struck again while it sounds is turned off first (its note ends there)."""
    moments: dict[int, list[tuple[int, int, int]]] = {}  # time -> (order, pitch, velocity)
    ends: dict[int, int] = {}
    for n in sorted(notes, key=lambda n: (n.start, n.pitch)):
        if n.pitch in ends and ends[n.pitch] > n.start:  # cut the earlier note short
            old = ends[n.pitch]
            moments[old].remove((0, n.pitch, 0))
            moments.setdefault(n.start, []).append((0, n.pitch, 0))
        moments.setdefault(n.start, []).append((1, n.pitch, n.velocity))
        moments.setdefault(n.end, []).append((0, n.pitch, 0))
        ends[n.pitch] = n.end
    out: list[str] = []
    now, vel = 0, None
    for t in sorted(moments):
        if not moments[t]:
            continue
        out += _shifts(t - now)
        now = t
        for order, pitch, velocity in sorted(set(moments[t])):
            if order == 0:
                out.append(f"off{pitch}")
                continue
            b = velocity_bin(velocity)
            if b != vel:
                out.append(f"vel{b}")
                vel = b
            out.append(f"on{pitch}")
    return out


def event_notes(tokens: Sequence[str], until: int | None = None) -> list[Played]:
    """Events back to notes; a note never turned off ends at the last time (or ``until``)."""
    notes: list[Played] = []
    open_: dict[int, tuple[int, int]] = {}
    now, vel = 0, DEFAULT_VELOCITY
    for tok in tokens:
        if tok.startswith("shift"):
            now += int(tok[5:])
        elif tok.startswith("vel"):
            vel = bin_velocity(int(tok[3:]))
        elif tok.startswith("on"):
            p = int(tok[2:])
            if p in open_ and open_[p][0] < now:
                notes.append(Played(p, open_[p][0], now - open_[p][0], open_[p][1]))
            open_[p] = (now, vel)
        elif tok.startswith("off"):
            p = int(tok[3:])
            if p in open_ and open_[p][0] < now:
                notes.append(Played(p, open_[p][0], now - open_[p][0], open_[p][1]))
            open_.pop(p, None)
        elif tok != START:
            raise EventError(f"{tok!r} is not an event token")
    end = now if until is None else until
    for p, (start, v) in open_.items():
        if end > start:
            notes.append(Played(p, start, end - start, v))
    return sorted(notes, key=lambda n: (n.start, n.pitch))


# --- live: the Continuation protocol -----------------------------------------------------------


class EventContinuer(Sampler):
    """Plays a ``jazz`` or ``piano`` model (``encoding["type"]`` ``events``) in continue mode.

    The player's sixteenths are turned into the model's tokens as they come and fed at once,
    so the recurrent state is warm when an answer is asked for. Numeric mode reads the first
    onset of each pair of sixteenths (the top line the engine hears); event mode turns each
    note into on/off events with time shifts (velocity bin of :data:`DEFAULT_VELOCITY`, written
    only when it changes, as in training). ``shift`` moves the player into the model's key (0
    for these styles, trained in every key) and the answer back.
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
        enc = contract.encoding
        self.contract = contract
        self.tokens: list[str] = list(enc["tokens"])
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.mode = enc.get("mode", NUMERIC)
        self.step = int(enc.get("step", NUMERIC_STEP if self.mode == NUMERIC else 1))
        self.model = TokenStepper(contract, run)
        self._set_sampling(temperature, top_p, seed, shift)
        singles = [int(t) for t in self.tokens if is_pitch(t)]
        singles += [int(t[2:]) for t in self.tokens if t.startswith("on")]
        self._low, self._high = (min(singles), max(singles)) if singles else (0, 127)
        self.mask = self._mask(allowed_pitch_classes)
        self.reset()

    # state ----------------------------------------------------------------------------------
    def _mask(self, pcs: frozenset[int] | None) -> np.ndarray:
        mask = np.array([t != START for t in self.tokens])
        if pcs is not None:
            for i, t in enumerate(self.tokens):
                ps = self._pitch_classes(t)
                if ps and not all((p - self.shift) % 12 in pcs for p in ps):
                    mask[i] = False
        return mask

    @staticmethod
    def _pitch_classes(tok: str) -> list[int]:
        if is_pitch(tok):
            return [int(tok)]
        if is_chord(tok):
            return [int(x) for x in tok.split(".")]
        if tok.startswith("on"):
            return [int(tok[2:])]
        return []

    @property
    def logits(self) -> np.ndarray | None:
        """Scores of the next token, after what was fed."""
        return self.model.logits

    def reset(self) -> None:
        """Forget the phrase; prime the model with START as at the start of a piece."""
        self.model.reset()
        self._pending: list[int] = []  # numeric: sixteenths of the coarse step being heard
        self._sounding: int | None = None  # the pitch the player holds (model's key)
        self._last_token = REST
        self._wait = 0  # event: sixteenths heard since the last event fed
        self._reference = MIDDLE_C
        self._vel: str | None = None  # event: the velocity bin the model last read
        self._feed([START])

    def _feed(self, tokens: list[str]) -> None:
        self.model.feed(np.array([self.index[t] for t in tokens], np.int32))

    def _fold(self, pitch: int) -> int:
        p = pitch + self.shift
        while p > self._high:
            p -= 12
        while p < self._low:
            p += 12
        return p

    def _single(self, pitch: int) -> str:
        """The token of a pitch the player played, folded into the model's range."""
        p = self._fold(pitch)
        for cand in (p, p - 12, p + 12):
            if str(cand) in self.index:
                return str(cand)
        return REST

    # observe --------------------------------------------------------------------------------
    def observe(self, codes: int | list[int] | np.ndarray) -> None:
        """Feed what was played, one grid code per sixteenth."""
        tokens: list[str] = []
        for c in np.atleast_1d(np.asarray(codes)).tolist():
            tokens += (
                self._numeric_code(int(c)) if self.mode == NUMERIC else self._event_code(int(c))
            )
        self._feed(tokens)

    def _numeric_code(self, code: int) -> list[str]:
        self._pending.append(code)
        if len(self._pending) < self.step:
            return []
        pending, self._pending = self._pending, []
        onset = next((c for c in pending if c >= 0), None)
        if onset is not None:
            tok = self._single(onset)
            self._reference = onset
        elif any(c == HOLD_CODE for c in pending) and self._last_token != REST:
            tok = HOLD
        else:
            tok = REST
        self._last_token = tok
        return [tok]

    def _event_code(self, code: int) -> list[str]:
        out: list[str] = []
        if code == HOLD_CODE and self._sounding is not None:
            self._wait += 1
            return out
        if self._sounding is not None or code >= 0:
            out += _shifts(self._wait)
            self._wait = 0
        if self._sounding is not None:
            out.append(f"off{self._sounding}")
            self._sounding = None
        if code >= 0:
            p = self._fold(code)
            if f"on{p}" in self.index:
                vel = f"vel{velocity_bin(DEFAULT_VELOCITY)}"
                out += [f"on{p}"] if vel == self._vel else [vel, f"on{p}"]
                self._vel = vel
                self._sounding = p
            self._reference = code
        self._wait += 1
        return out

    # answer ---------------------------------------------------------------------------------
    def _sample(self, mask: np.ndarray) -> str:
        assert self.logits is not None
        p = sampling.probabilities(self.logits[None], self.temperature, top_p=self.top_p, mask=mask)
        tok = self.tokens[int(sampling.sample(p, self.rng)[0])]
        if tok.startswith("vel"):
            self._vel = tok
        self._feed([tok])
        return tok

    def continue_notes(self, steps: int) -> list[Note]:
        """An answer of ``steps`` sixteenths in the learned style, in the player's key."""
        played = (
            self._continue_numeric(steps) if self.mode == NUMERIC else self._continue_events(steps)
        )
        out = []
        for n in played:
            p = n.pitch - self.shift
            if 0 <= p <= 127 and n.start < steps:
                out.append(Note(p, n.start, min(n.length, steps - n.start)))
        return out

    def _continue_numeric(self, steps: int) -> list[Note]:
        if self._pending:  # the part-heard step counts as heard
            self._feed(self._numeric_code(REST_CODE) if len(self._pending) + 1 == self.step else [])
            self._pending = []
        hold = self.index.get(HOLD)
        tokens = []
        for _ in range(-(-steps // self.step)):
            mask = self.mask.copy()
            if hold is not None and self._last_token == REST:
                mask[hold] = False
            tok = self._sample(mask)
            tokens.append(tok)
            self._last_token = tok if tok != HOLD else self._last_token
        reference = self._reference + self.shift
        notes = numeric_notes(tokens, self.step, reference)
        tops = [n.pitch for n in notes]
        if tops:
            self._reference = max(tops[-3:]) - self.shift
        return notes

    def _continue_events(self, steps: int) -> list[Note]:
        tokens = _shifts(self._wait)
        if self._sounding is not None:
            tokens.append(f"off{self._sounding}")
            self._sounding = None
        self._wait = 0
        self._feed(tokens)
        made: list[str] = []
        now, budget = 0, 4 * steps + 64  # a model that never moves time on still stops
        while now < steps and budget > 0:
            budget -= 1
            tok = self._sample(self.mask)
            made.append(tok)
            if tok.startswith("shift"):
                now += int(tok[5:])
        return [Note(n.pitch, n.start, n.length) for n in event_notes(made, until=steps)]
