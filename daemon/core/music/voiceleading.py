"""Voice-leading rules of four-part chorale writing: a fast penalty and corpus metrics.

Two views of the same rules:

* :func:`penalty` scores one move from chord to chord. It works on 4-tuples of *sounding*
  pitches (soprano, alto, tenor, bass; ``-1`` for a silent voice) in plain Python, because the
  daemon calls it for every sampled candidate chord, live.
* :func:`metrics` measures a whole piece of grid codes (``(4, steps)``, holds allowed), and
  :func:`aggregate` pools the counts of many pieces before turning them into rates.

Ranges are always a parameter (``{voice: (low, high)}``, MIDI, inclusive): a model's contract
carries the ranges of its own data. :data:`SATB_RANGES` holds the textbook ones.

Definitions shared by both views:

* A *parallel* fifth (octave) is two voices that both move, in the same direction, and stand a
  perfect fifth (octave or unison) apart before and after, compound intervals included: the
  distance between them is 7 (0) modulo 12 both times.
* *Crossing*: a lower voice sounds above a higher one (any pair of voices).
* *Spacing*: more than an octave between soprano and alto or between alto and tenor.
* *Leap*: an inner voice (alto, tenor) moves by more than an octave.

Pure: numpy only, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from partimento.core.music.encoding import REST_CODE, VOICES, sounding_pitches

Ranges = Mapping[str, tuple[int, int]]
Chord = Sequence[int]

SATB_RANGES: Ranges = MappingProxyType(
    {
        "soprano": (60, 79),  # C4-G5
        "alto": (55, 74),  # G3-D5
        "tenor": (48, 67),  # C3-G4
        "bass": (40, 60),  # E2-C4
    }
)
"""The textbook four-part ranges, MIDI pitches, inclusive."""

_PAIRS = tuple((i, j) for i in range(4) for j in range(i + 1, 4))
"""Every voice pair, higher voice first."""

_SPACED = ((0, 1), (1, 2))
"""Neighbouring upper voices that should stay within an octave: soprano-alto, alto-tenor."""

_INNER = (1, 2)

_TRIADS = ((0, 4, 7), (0, 3, 7), (0, 3, 6), (0, 4, 8))
"""Major, minor, diminished, augmented."""

_SEVENTHS = ((0, 4, 7, 10), (0, 4, 7, 11), (0, 3, 7, 10), (0, 3, 6, 10), (0, 3, 6, 9))
"""Dominant, major, minor, half-diminished, diminished."""


@dataclass(frozen=True)
class PenaltyWeights:
    """What each fault costs in :func:`penalty`; the total is a plain weighted sum.

    Attributes:
        parallel_fifth: per voice pair moving in parallel fifths (compound included).
        parallel_octave: per voice pair moving in parallel octaves or unisons.
        crossing: per voice pair where the lower voice sounds above the higher one.
        spacing: per soprano-alto or alto-tenor gap wider than an octave.
        out_of_range: per voice outside its range, however far.
        out_of_range_semitone: in addition, per semitone a voice lies outside its range.
        inner_leap: per inner voice (alto, tenor) leaping more than an octave.
    """

    parallel_fifth: float = 4.0
    parallel_octave: float = 5.0
    crossing: float = 3.0
    spacing: float = 1.5
    out_of_range: float = 3.0
    out_of_range_semitone: float = 0.5
    inner_leap: float = 1.0


DEFAULT_WEIGHTS = PenaltyWeights()


def range_bounds(ranges: Ranges) -> tuple[tuple[int, int], ...]:
    """Ranges as a tuple of ``(low, high)`` in voice order (soprano first)."""
    return tuple((int(ranges[v][0]), int(ranges[v][1])) for v in VOICES)


def penalty(
    prev: Chord | None, cur: Chord, ranges: Ranges, weights: PenaltyWeights = DEFAULT_WEIGHTS
) -> float:
    """Weighted faults of the chord ``cur`` and of the move into it from ``prev``.

    ``prev`` and ``cur`` are 4-tuples of sounding pitches (soprano, alto, tenor, bass), ``-1``
    for a silent voice; ``prev`` is None at the start. Silent voices take part in nothing.
    Plain Python on purpose: it runs for every candidate chord in the live loop.
    """
    total = 0.0
    for v in range(4):
        p = cur[v]
        if p < 0:
            continue
        low, high = ranges[VOICES[v]]
        if p < low:
            total += weights.out_of_range + weights.out_of_range_semitone * (low - p)
        elif p > high:
            total += weights.out_of_range + weights.out_of_range_semitone * (p - high)
    for i, j in _PAIRS:
        if cur[i] >= 0 and cur[j] > cur[i]:
            total += weights.crossing
    for i, j in _SPACED:
        if cur[j] >= 0 and cur[i] - cur[j] > 12:
            total += weights.spacing
    if prev is None:
        return total
    for v in _INNER:
        if prev[v] >= 0 and cur[v] >= 0 and abs(cur[v] - prev[v]) > 12:
            total += weights.inner_leap
    for i, j in _PAIRS:
        pi, pj, ci, cj = prev[i], prev[j], cur[i], cur[j]
        if pi < 0 or pj < 0 or ci < 0 or cj < 0:
            continue
        if (ci - pi) * (cj - pj) <= 0:  # a voice stays, or they move in opposite directions
            continue
        before = abs(pi - pj) % 12
        if before == abs(ci - cj) % 12:
            if before == 7:
                total += weights.parallel_fifth
            elif before == 0:
                total += weights.parallel_octave
    return total


# --- whole pieces -------------------------------------------------------------------------------

COUNT_KEYS = (
    "steps",
    "chord_changes",
    "parallel_fifths",
    "parallel_octaves",
    "crossing_steps",
    "spacing_sa_steps",
    "spacing_at_steps",
    "out_of_range_steps",
    "sonorities",
    "tertian_sonorities",
)
"""What :func:`metrics` counts; :func:`aggregate` sums these and nothing else."""


def _tertian_table() -> np.ndarray:
    """Lookup over 12-bit pitch-class masks: True for complete triads and seventh chords."""
    table = np.zeros(1 << 12, bool)
    for shape in _TRIADS + _SEVENTHS:
        for root in range(12):
            table[sum(1 << ((root + i) % 12) for i in shape)] = True
    return table


_TERTIAN = _tertian_table()


def is_tertian(chord: Chord) -> bool:
    """True when all four voices sound and their pitch classes form a complete triad or
    seventh chord. Plain Python lookup, for the live loop."""
    mask = 0
    for p in chord:
        if p < 0:
            return False
        mask |= 1 << (p % 12)
    return bool(_TERTIAN[mask])


def penalties(
    prev: Chord | None, cur: np.ndarray, ranges: Ranges, weights: PenaltyWeights = DEFAULT_WEIGHTS
) -> np.ndarray:
    """:func:`penalty` of many candidate chords at once: ``cur`` is ``(n, 4)`` sounding
    pitches, ``prev`` the one chord they all follow; ``(n,)`` penalties, the same sums."""
    c = np.asarray(cur, np.int64)
    on = c >= 0
    total = np.zeros(len(c))
    for v, (low, high) in enumerate(range_bounds(ranges)):
        below = on[:, v] & (c[:, v] < low)
        above = on[:, v] & (c[:, v] > high)
        total += np.where(
            below, weights.out_of_range + weights.out_of_range_semitone * (low - c[:, v]), 0.0
        )
        total += np.where(
            above, weights.out_of_range + weights.out_of_range_semitone * (c[:, v] - high), 0.0
        )
    for i, j in _PAIRS:
        total += np.where(on[:, i] & (c[:, j] > c[:, i]), weights.crossing, 0.0)
    for i, j in _SPACED:
        total += np.where(on[:, j] & (c[:, i] - c[:, j] > 12), weights.spacing, 0.0)
    if prev is None:
        return total
    p = [int(x) for x in prev]
    for v in _INNER:
        if p[v] >= 0:
            total += np.where(on[:, v] & (np.abs(c[:, v] - p[v]) > 12), weights.inner_leap, 0.0)
    for i, j in _PAIRS:
        if p[i] < 0 or p[j] < 0:
            continue
        moving = on[:, i] & on[:, j] & ((c[:, i] - p[i]) * (c[:, j] - p[j]) > 0)
        before = abs(p[i] - p[j]) % 12
        if before not in (0, 7):
            continue
        same = moving & (np.abs(c[:, i] - c[:, j]) % 12 == before)
        cost = weights.parallel_fifth if before == 7 else weights.parallel_octave
        total += np.where(same, cost, 0.0)
    return total


def move_penalties(
    prev: np.ndarray, cur: np.ndarray, ranges: Ranges, weights: PenaltyWeights = DEFAULT_WEIGHTS
) -> np.ndarray:
    """:func:`penalty` row by row: ``prev`` and ``cur`` are both ``(n, 4)`` sounding pitches
    (each candidate chord follows its own chord); ``(n,)`` penalties, the same sums."""
    p, c = np.asarray(prev, np.int64), np.asarray(cur, np.int64)
    total = penalties(None, c, ranges, weights)
    on_p, on_c = p >= 0, c >= 0
    for v in _INNER:
        total += np.where(
            on_p[:, v] & on_c[:, v] & (np.abs(c[:, v] - p[:, v]) > 12), weights.inner_leap, 0.0
        )
    for i, j in _PAIRS:
        moving = (
            on_p[:, i]
            & on_p[:, j]
            & on_c[:, i]
            & on_c[:, j]
            & ((c[:, i] - p[:, i]) * (c[:, j] - p[:, j]) > 0)
        )
        before = np.abs(p[:, i] - p[:, j]) % 12
        same = moving & (np.abs(c[:, i] - c[:, j]) % 12 == before)
        total += np.where(same & (before == 7), weights.parallel_fifth, 0.0)
        total += np.where(same & (before == 0), weights.parallel_octave, 0.0)
    return total


def tertian(cur: np.ndarray) -> np.ndarray:
    """:func:`is_tertian` of ``(n, 4)`` chords at once."""
    c = np.asarray(cur, np.int64)
    mask = np.bitwise_or.reduce(np.left_shift(1, np.maximum(c, 0) % 12), axis=1)
    return (c >= 0).all(axis=1) & _TERTIAN[mask]


def pitch_class_masks(sounding: np.ndarray) -> np.ndarray:
    """Per step the 12-bit set of pitch classes that sound (``(4, steps)`` sounding pitches)."""
    s = np.asarray(sounding, np.int64)
    bits = np.where(s >= 0, np.left_shift(1, np.maximum(s, 0) % 12), 0)
    result: np.ndarray = np.bitwise_or.reduce(bits, axis=0)
    return result


def _parallels(s: np.ndarray, changes: np.ndarray) -> tuple[int, int]:
    """Parallel fifths and octaves across each chord change (``s`` sounding pitches)."""
    t = np.flatnonzero(changes)
    before, after = s[:, t - 1], s[:, t]
    fifths = octaves = 0
    for i, j in _PAIRS:
        pi, pj, ci, cj = before[i], before[j], after[i], after[j]
        sounding = (pi >= 0) & (pj >= 0) & (ci >= 0) & (cj >= 0)
        similar = (ci - pi) * (cj - pj) > 0
        ic0, ic1 = np.abs(pi - pj) % 12, np.abs(ci - cj) % 12
        same = sounding & similar & (ic0 == ic1)
        fifths += int((same & (ic0 == 7)).sum())
        octaves += int((same & (ic0 == 0)).sum())
    return fifths, octaves


def _counts(voices: np.ndarray, ranges: Ranges) -> dict[str, int]:
    s = sounding_pitches(np.asarray(voices)).astype(np.int64)
    if s.ndim != 2 or s.shape[0] != 4:
        raise ValueError(f"expected a (4, steps) grid, got shape {s.shape}")
    on = s >= 0
    steps = on.any(axis=0)
    changes = np.zeros(s.shape[1], bool)
    changes[1:] = (s[:, 1:] != s[:, :-1]).any(axis=0) & (on[:, 1:].sum(axis=0) >= 2)
    fifths, octaves = _parallels(s, changes)

    crossing = np.zeros(s.shape[1], bool)
    for i, j in _PAIRS:
        crossing |= on[i] & on[j] & (s[j] > s[i])
    spacing = [on[i] & on[j] & (s[i] - s[j] > 12) for i, j in _SPACED]
    out = np.zeros(s.shape[1], bool)
    for v, (low, high) in enumerate(range_bounds(ranges)):
        out |= on[v] & ((s[v] < low) | (s[v] > high))
    full = on.all(axis=0)
    tertian = _TERTIAN[pitch_class_masks(s)] & full
    return {
        "steps": int(steps.sum()),
        "chord_changes": int(changes.sum()),
        "parallel_fifths": fifths,
        "parallel_octaves": octaves,
        "crossing_steps": int(crossing.sum()),
        "spacing_sa_steps": int(spacing[0].sum()),
        "spacing_at_steps": int(spacing[1].sum()),
        "out_of_range_steps": int(out.sum()),
        "sonorities": int(full.sum()),
        "tertian_sonorities": int(tertian.sum()),
    }


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def _rates(c: Mapping[str, int]) -> dict[str, float]:
    changes, steps = c["chord_changes"], c["steps"]
    return {
        "parallel_fifths_per_100": 100 * _ratio(c["parallel_fifths"], changes),
        "parallel_octaves_per_100": 100 * _ratio(c["parallel_octaves"], changes),
        "parallels_per_100": 100 * _ratio(c["parallel_fifths"] + c["parallel_octaves"], changes),
        "crossing_share": _ratio(c["crossing_steps"], steps),
        "spacing_sa_share": _ratio(c["spacing_sa_steps"], steps),
        "spacing_at_share": _ratio(c["spacing_at_steps"], steps),
        "out_of_range_share": _ratio(c["out_of_range_steps"], steps),
        "triad_seventh_share": _ratio(c["tertian_sonorities"], c["sonorities"]),
    }


def metrics(voices: np.ndarray, ranges: Ranges) -> dict[str, float]:
    """Voice-leading counts and rates of one piece, ``(4, steps)`` grid codes, soprano first.

    Counts (keys in :data:`COUNT_KEYS`):

    * ``steps``: steps where any voice sounds; the denominator of every ``*_share``.
    * ``chord_changes``: steps whose sounding pitches, voice by voice, differ from the step
      before, with at least two voices sounding. A hold is no change; a re-struck chord is none
      either, a voice exchange is one.
    * ``parallel_fifths``, ``parallel_octaves``: voice pairs in parallels across a chord change
      (the sonority just before it against the one it brings); octaves include unisons.
    * ``crossing_steps``, ``spacing_sa_steps``, ``spacing_at_steps``, ``out_of_range_steps``:
      steps with at least one such fault.
    * ``sonorities``: steps where all four voices sound; ``tertian_sonorities``: those whose
      pitch-class set is exactly a complete triad (major, minor, diminished, augmented: three
      pitch classes) or a complete seventh chord (dominant, major, minor, half-diminished,
      diminished: four). Incomplete chords (a seventh without its fifth, bare fifths, unisons)
      and chords with non-chord tones do not count.

    Rates: ``parallel_fifths_per_100``, ``parallel_octaves_per_100`` and ``parallels_per_100``
    (both together) per 100 chord changes; ``crossing_share``, ``spacing_sa_share``,
    ``spacing_at_share``, ``out_of_range_share`` per sounding step; ``triad_seventh_share`` per
    sonority. A rate with a zero denominator is NaN.
    """
    c = _counts(voices, ranges)
    return {**c, **_rates(c)}


def aggregate(per_piece: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Pool :func:`metrics` of many pieces: counts are summed, then the rates recomputed."""
    total = dict.fromkeys(COUNT_KEYS, 0)
    for m in per_piece:
        for k in COUNT_KEYS:
            total[k] += int(m[k])
    return {**total, **_rates(total)}


def corpus_metrics(pieces: Iterable[np.ndarray], ranges: Ranges) -> dict[str, float]:
    """:func:`metrics` pooled over many ``(4, steps)`` grids."""
    return aggregate(metrics(v, ranges) for v in pieces)


def pitch_class_matches(generated: np.ndarray, reference: np.ndarray) -> tuple[int, int]:
    """``(matching, compared)``: the steps behind :func:`pitch_class_agreement`, for pooling."""
    gen = sounding_pitches(np.asarray(generated))
    ref = sounding_pitches(np.asarray(reference))
    if gen.shape != ref.shape:
        raise ValueError(f"shapes differ: generated {gen.shape}, reference {ref.shape}")
    full = (ref != REST_CODE).all(axis=0)
    same = pitch_class_masks(gen) == pitch_class_masks(ref)
    return int((same & full).sum()), int(full.sum())


def pitch_class_agreement(generated: np.ndarray, reference: np.ndarray) -> float:
    """Share of steps, among those where all four reference voices sound, whose set of
    sounding pitch classes equals the reference's (NaN when there is no such step)."""
    matching, compared = pitch_class_matches(generated, reference)
    return _ratio(matching, compared)
