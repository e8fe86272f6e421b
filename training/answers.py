"""Call and response: how a continuation style answers held-out tunes.

For each held-out tune (the style's test split, at most :data:`MAX_EXCERPTS`, in split order)
with at least ``CALL_BARS + ANSWER_BARS`` bars from its first note (jazz solos and piano
pieces, which are long, give up to :data:`PIECE_WINDOWS` excerpts each, every eight bars):

* the *call* is its first :data:`CALL_BARS` bars (from its first note), heard as the engine
  hears a player: the top line on the sixteenth grid;
* the *answer* is the model's, for :data:`ANSWER_BARS` bars, made by the code path the daemon
  and ``partimento sample`` use (:func:`partimento.commands.sample.respond`: the call's key, the
  call in the model's state, the candidate that follows the call best), seeded per tune;
* the *reference* is the tune's own next :data:`ANSWER_BARS` bars;
* the *floor* is another tune's (the next held-out tune's) bars at the same place, moved into
  this tune's key: music that ignores the call.

Folk tunes are stored in C major / A minor; each is moved into a key drawn per tune (seeded),
so the key has to be heard. Keys are labelled for folk (the file's tonic, the mode from the
tune's thirds) and abc (its ``K:`` field); jazz and piano have no labels, so their "key" is
the Krumhansl estimate of call and reference together (said so in the figures).

Figures (:func:`measure`), per row (answers, references, floor), from
:mod:`partimento.core.music.motifs`: motif reuse (share of the interval trigrams found in the call),
in-key share (of notes, in the labelled key's scale), density against the call (mean
``|log ratio|`` of onsets per bar, and the mean ratio), range (semitones of the top line),
step rate (top-line intervals of 1-2 semitones), the overlap (sum of minima) of the pooled
interval and inter-onset histograms with the references', and the share of onsets on odd
sixteenths of the call's beat grid. For the answers also: how often the key taken from the
call equals the label (tonic and mode) or moves the model the same way (relative keys), and
onsets off the call's sixteenth grid (an answer must start on a beat).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from partimento.core.music import key as keys
from partimento.core.music import motifs, rules
from partimento.core.music.encoding import MAJOR, MINOR, Note, folk_transposition, notes_to_grid

CALL_BARS = 4
ANSWER_BARS = 4
STEPS_PER_BAR = 16
MAX_EXCERPTS = 200
PIECE_WINDOWS = 8
"""Jazz solos and piano pieces are long: up to this many excerpts each, every eight bars."""
CANDIDATES = 16
INTERVAL_CLIP = 12
IOI_CLIP = 16


@dataclass(frozen=True)
class Excerpt:
    """A held-out tune cut for call and response: notes in steps from the call's start."""

    name: str
    call: tuple[Note, ...]
    reference: tuple[Note, ...]
    key: keys.Key
    labelled: bool

    def moved(self, semitones: int) -> Excerpt:
        def move(ns: Sequence[Note]) -> tuple[Note, ...]:
            return tuple(
                Note(n.pitch + semitones, n.start, n.length)
                for n in ns
                if 0 <= n.pitch + semitones <= 127
            )

        return Excerpt(
            self.name,
            move(self.call),
            move(self.reference),
            ((self.key[0] + semitones) % 12, self.key[1]),
            self.labelled,
        )

    def call_grid(self) -> np.ndarray:
        """The call as the engine hears it: its top line on the sixteenth grid."""
        return notes_to_grid(motifs.top_line(self.call), CALL_BARS * STEPS_PER_BAR)


def cut(name: str, notes: Sequence[Note], key: keys.Key | None, after: int = 0) -> Excerpt | None:
    """The call and reference of one tune from its first onset at or after step ``after``
    (None when it is too short or the reference holds no note); ``key`` None: estimated from
    call and reference together."""
    starts = [n.start for n in notes if n.start >= after]
    if not starts:
        return None
    s0 = min(starts)
    call_end, ref_end = CALL_BARS * STEPS_PER_BAR, (CALL_BARS + ANSWER_BARS) * STEPS_PER_BAR
    if max(n.end for n in notes) - s0 < ref_end - STEPS_PER_BAR:
        return None

    def window(lo: int, hi: int) -> tuple[Note, ...]:
        out = []
        for n in notes:
            start = n.start - s0
            if lo <= start < hi:
                out.append(Note(n.pitch, start - lo, min(n.end - s0, hi) - start))
        return tuple(sorted(out, key=lambda n: (n.start, n.pitch)))

    call, ref = window(0, call_end), window(call_end, ref_end)
    if not ref or len(call) < 4:
        return None
    labelled = key is not None
    if key is None:
        grid = notes_to_grid(
            motifs.top_line(call + tuple(Note(n.pitch, n.start + call_end, n.length) for n in ref))
        )
        key = keys.player_key(grid) or (0, MAJOR)
    return Excerpt(name, call, ref, key, labelled)


# --- held-out tunes per style ------------------------------------------------------------------


def _seeded_shift(name: str, seed: int) -> int:
    """A key for a tune stored in C: -5..+6 semitones, from its name and the seed."""
    h = int(hashlib.sha1(f"{seed}:{name}".encode()).hexdigest(), 16)
    return h % 12 - 5


def folk_excerpts(cfg, seed: int, split: str = "test") -> list[Excerpt]:
    from partimento.core.music.encoding import grid_to_notes
    from partimento.training.data import folk

    out = []
    for tune in folk.load_corpus(cfg)[split]:
        label = (0, MAJOR) if tune.mode == MAJOR else (9, MINOR)
        ex = cut(tune.name, grid_to_notes(tune.grid), label)
        if ex is not None:
            out.append(ex.moved(_seeded_shift(tune.name, seed)))
    return out


_KEY_FIELD = re.compile(r"(?m)^K:\s*([A-G])([#b]?)\s*([A-Za-z]*)")
_NATURAL = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_MINOR_MODES = ("m", "min", "minor", "aeo", "dor", "phr", "loc")


def abc_key(text: str) -> keys.Key | None:
    """The key an ABC tune's first ``K:`` field names: its tonic, minor for minor-family
    modes (m, aeolian, dorian, phrygian, locrian); None when there is none."""
    m = _KEY_FIELD.search(text)
    if not m:
        return None
    tonic = (_NATURAL[m.group(1)] + {"#": 1, "b": -1, "": 0}[m.group(2)]) % 12
    mode = m.group(3).lower()
    minor = mode in ("m", "min", "minor") or mode[:3] in _MINOR_MODES[3:]
    return tonic, MINOR if minor else MAJOR


def abc_excerpts(cfg, seed: int, split: str = "test") -> list[Excerpt]:
    import dataclasses

    from partimento.core.players import abc
    from partimento.training.data import abc_text

    out = []
    for i, tune in enumerate(abc_text.load(dataclasses.replace(cfg, limit=0))["splits"][split]):
        label = abc_key(tune)
        if label is None:
            continue
        reading = abc.read(tune)
        ex = cut(f"{split} tune {i}", reading.notes, label)
        if ex is not None:
            out.append(ex)
    return out


def piece_excerpts(cfg, seed: int, split: str = "test") -> list[Excerpt]:
    from partimento.training import styles
    from partimento.training.data import midi_folder
    from partimento.training.styles.jazz import notes_of

    pieces, _ = styles.get(cfg.style).load_pieces(cfg)
    span = (CALL_BARS + ANSWER_BARS) * STEPS_PER_BAR
    out = []
    for piece in midi_folder.split(pieces)[split]:
        notes = notes_of(piece)
        for after in range(0, piece.steps, span)[:PIECE_WINDOWS]:
            ex = cut(f"{piece.name} bar {after // STEPS_PER_BAR + 1}", notes, None, after)
            if ex is not None:
                out.append(ex)
    return out


EXCERPTS: dict[str, Callable] = {
    "folk": folk_excerpts,
    "abc": abc_excerpts,
    "jazz": piece_excerpts,
    "piano": piece_excerpts,
}


# --- figures -----------------------------------------------------------------------------------


def _mean(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return float(np.mean(vals)) if vals else None


def _histogram(values: list[int], low: int, high: int) -> np.ndarray:
    h = np.bincount(
        np.clip(np.asarray(values, int), low, high) - low, minlength=high - low + 1
    ).astype(float)
    return h / h.sum() if h.sum() else h


def _iois(notes: Sequence[Note]) -> list[int]:
    starts = sorted({n.start for n in notes})
    return [b - a for a, b in itertools.pairwise(starts)]


def measure(
    excerpts: Sequence[Excerpt],
    played: Sequence[Sequence[Note]],
    references: Sequence[Sequence[Note]],
) -> dict:
    """The figures of one row: ``played[i]`` answering ``excerpts[i]``'s call, judged against
    its key and the references' pooled histograms."""
    steps = ANSWER_BARS * STEPS_PER_BAR
    call_steps = CALL_BARS * STEPS_PER_BAR
    ratios = [
        motifs.density_log_ratio(p, steps, e.call, call_steps)
        for e, p in zip(excerpts, played, strict=True)
    ]
    all_iv = [i for p in played for i in motifs.intervals(p)]
    ref_iv = [i for r in references for i in motifs.intervals(r)]
    ranges = [
        max(n.pitch for n in line) - min(n.pitch for n in line)
        for line in (motifs.top_line(p) for p in played)
        if line
    ]
    starts = [n.start for p in played for n in motifs.top_line(p)]
    c = INTERVAL_CLIP

    def overlap(a: list[int], b: list[int], low: int, high: int) -> float:
        return float(np.minimum(_histogram(a, low, high), _histogram(b, low, high)).sum())

    return {
        "motif_reuse": _mean(
            [motifs.motif_reuse(p, e.call) for e, p in zip(excerpts, played, strict=True)]
        ),
        "in_key": _mean(
            [
                motifs.in_key_share(p, rules.key_scale(*e.key))
                for e, p in zip(excerpts, played, strict=True)
            ]
        ),
        "density_abs_log_ratio": float(np.mean(np.abs(ratios))),
        "density_ratio": float(np.exp(np.mean(ratios))),
        "within_1_35x": float(np.mean(np.abs(ratios) <= math.log(1.35))),
        "notes_per_bar": float(np.mean([motifs.density(p, steps) for p in played])),
        "range": _mean(ranges),
        "step_rate": float(np.mean([abs(i) in (1, 2) for i in all_iv])) if all_iv else None,
        "interval_overlap": overlap(all_iv, ref_iv, -c, c),
        "ioi_overlap": overlap(
            [i for p in played for i in _iois(p)],
            [i for r in references for i in _iois(r)],
            1,
            IOI_CLIP,
        ),
        "offbeat_sixteenths": float(np.mean([s % 2 == 1 for s in starts])) if starts else None,
        "silent": int(sum(not p for p in played)),
    }


def floor_of(excerpts: Sequence[Excerpt]) -> list[tuple[Note, ...]]:
    """Each excerpt's floor: the next excerpt's reference moved into its key (the nearer
    way)."""
    out = []
    for i, e in enumerate(excerpts):
        other = excerpts[(i + 1) % len(excerpts)]
        d = (e.key[0] - other.key[0]) % 12
        out.append(other.moved(d - 12 if d > 6 else d).reference)
    return out


def evaluate(
    m,
    excerpts: Sequence[Excerpt],
    *,
    seed: int = 0,
    candidates: int = CANDIDATES,
    temperature: float = 1.0,
) -> dict:
    """Call-and-response figures of model ``m`` on ``excerpts`` (see the module doc)."""
    from partimento.commands.sample import respond

    excerpts = list(excerpts)[:MAX_EXCERPTS]
    if len(excerpts) < 2:
        raise ValueError("call and response needs at least two held-out tunes long enough")
    steps = ANSWER_BARS * STEPS_PER_BAR
    answers, off_grid, key_hits, shift_hits = [], 0, 0, 0
    for i, e in enumerate(excerpts):
        notes, start = respond(
            m,
            e.call_grid(),
            steps,
            temperature=temperature,
            seed=seed * 100_003 + i,
            candidates=candidates,
        )
        off_grid += int(start % 4 != 0) * len(notes)
        answers.append(tuple(notes))
        heard = keys.player_key(e.call_grid())
        key_hits += heard == e.key
        shift_hits += heard is not None and (
            folk_transposition(*heard) == folk_transposition(*e.key)
        )
    refs = [e.reference for e in excerpts]
    rows = {
        "answers": measure(excerpts, answers, refs),
        "references": measure(excerpts, refs, refs),
        "floor": measure(excerpts, floor_of(excerpts), refs),
    }
    rows["answers"]["off_grid_onsets"] = off_grid
    labelled = all(e.labelled for e in excerpts)
    return {
        "tunes": len(excerpts),
        "call_bars": CALL_BARS,
        "answer_bars": ANSWER_BARS,
        "candidates": candidates,
        "temperature": temperature,
        "seed": seed,
        "key": "labelled" if labelled else "estimated from call and reference",
        "key_agreement": round(key_hits / len(excerpts), 4),
        "relative_key_agreement": round(shift_hits / len(excerpts), 4),
        **{k: _rounded(v) for k, v in rows.items()},
    }


def _rounded(d: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}
