"""A rule-based chorale harmonizer: the baseline every trained model has to beat.

It reads the soprano as it arrives, one grid step at a time, and answers with alto, tenor and
bass. On each new soprano note it picks a triad of the key that contains the melody note and
voices it, choosing the candidate that costs least: the voice-leading :func:`penalty` plus
preferences for root position, complete chords, root doubling, small inner-voice motion and
common progressions. While the soprano holds, the lower voices hold; when it rests, they rest.
Causal (nothing is read ahead) and deterministic.

Pure: numpy only, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from partimento.core.music.encoding import HOLD_CODE, MAJOR, MINOR, REST_CODE, VOICES
from partimento.core.music.voiceleading import (
    DEFAULT_WEIGHTS,
    SATB_RANGES,
    PenaltyWeights,
    Ranges,
    penalty,
)

# --- key estimation -------------------------------------------------------------------------

KRUMHANSL_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
KRUMHANSL_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
"""Krumhansl-Kessler key profiles, tonic first."""


def pitch_class_durations(codes: Sequence[int] | np.ndarray) -> np.ndarray:
    """How many grid steps each pitch class sounds in one line of grid codes (holds count)."""
    hist = np.zeros(12)
    current = REST_CODE
    for code in np.asarray(codes).tolist():
        if code != HOLD_CODE:
            current = code
        if current >= 0:
            hist[current % 12] += 1
    return hist


def estimate_key(
    soprano_codes: Sequence[int] | np.ndarray, final_weight: float = 0.3
) -> tuple[int, int]:
    """``(tonic_pc, mode)`` by Krumhansl-Schmuckler: the key profile, among all 24 rotations,
    that correlates best with the melody's duration-weighted pitch-class histogram.

    Chorale melodies end on their tonic, so a key whose tonic is the last note gains
    ``final_weight`` on its correlation: on Bach's train and valid chorales the tonic then
    matches the final bass note in 95 % of them, against 67 % without. Pass 0 for a melody
    that is still arriving. A melody with no note gets C major.
    """
    hist = pitch_class_durations(soprano_codes)
    if not hist.any():
        return 0, MAJOR
    codes = np.asarray(soprano_codes)
    last = int(codes[codes >= 0][-1]) % 12
    h = hist - hist.mean()
    r = _PROFILES @ h / (np.sqrt(h @ h) + 1e-300)  # Pearson r with all 24 keys at once
    if final_weight:
        r[[last, 12 + last]] += final_weight
    best = int(np.argmax(r))  # the first of equals, major before minor, as the loop had it
    return best % 12, (MAJOR, MINOR)[best // 12]


def _profiles() -> np.ndarray:
    """The 24 rotated key profiles (major tonics 0-11, then minor), centred and normed."""
    rows = [np.roll(p, tonic) for p in (KRUMHANSL_MAJOR, KRUMHANSL_MINOR) for tonic in range(12)]
    out = np.asarray(rows, np.float64)
    out -= out.mean(axis=1, keepdims=True)
    result: np.ndarray = out / np.sqrt((out**2).sum(axis=1, keepdims=True))
    return result


_PROFILES = _profiles()


# --- chords of a key ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Triad:
    """A triad by absolute pitch classes; ``degree`` 0-6 in the key, None when chromatic."""

    root: int
    third: int
    fifth: int
    degree: int | None

    @property
    def pitch_classes(self) -> frozenset[int]:
        return frozenset((self.root, self.third, self.fifth))

    @property
    def diminished(self) -> bool:
        return (self.fifth - self.root) % 12 == 6


_MAJOR_TRIADS = ((0, 4, 7), (2, 5, 9), (4, 7, 11), (5, 9, 0), (7, 11, 2), (9, 0, 4), (11, 2, 5))
_MINOR_TRIADS = ((0, 3, 7), (2, 5, 8), (3, 7, 10), (5, 8, 0), (7, 11, 2), (8, 0, 3), (11, 2, 5))
"""Triads on scale degrees I-vii: major; minor with the raised leading tone in V and vii°."""

_COMMON_NEXT = {
    0: {1, 2, 3, 4, 5, 6},
    1: {4, 6},
    2: {3, 5},
    3: {0, 1, 4, 6},
    4: {0, 5},
    5: {1, 3, 4},
    6: {0},
}
"""Degree -> degrees that commonly follow it (I to anything, ii to V, V to I or vi, ...)."""

_CHROMATIC_ORDER = ((4, 4), (3, 3), (4, 0), (3, 0), (4, 7), (3, 7))
"""(third above the root, the melody note above the root) of the chromatic triads, in order."""


def diatonic_triads(tonic_pc: int, mode: int) -> tuple[Triad, ...]:
    """The seven triads of a key, degree order."""
    shapes = _MAJOR_TRIADS if mode == MAJOR else _MINOR_TRIADS
    return tuple(
        Triad((tonic_pc + r) % 12, (tonic_pc + t) % 12, (tonic_pc + f) % 12, degree=d)
        for d, (r, t, f) in enumerate(shapes)
    )


def key_scale(tonic_pc: int, mode: int) -> frozenset[int]:
    """The pitch classes of a key: the major scale, or minor with both sixths and sevenths."""
    steps = (0, 2, 4, 5, 7, 9, 11) if mode == MAJOR else (0, 2, 3, 5, 7, 8, 9, 10, 11)
    return frozenset((tonic_pc + i) % 12 for i in steps)


def chromatic_triads(pc: int) -> tuple[Triad, ...]:
    """Every major and minor triad containing ``pc``: first those with ``pc`` as their third,
    major before minor (the secondary dominant a chromatic melody note most often asks for),
    then those with ``pc`` as root, then as fifth."""
    out = []
    for third, above_root in _CHROMATIC_ORDER:
        root = (pc - above_root) % 12
        out.append(Triad(root, (root + third) % 12, (root + 7) % 12, degree=None))
    return tuple(out)


# --- the harmonizer -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleWeights:
    """Costs the harmonizer adds to the voice-leading :func:`penalty` of a candidate.

    Attributes:
        first_inversion: the bass on the third.
        second_inversion: the bass on the fifth.
        degree: per scale degree (I to vii), how much rarer than I, IV and V it is in
            chorales: iii least common, then vii° (mostly a passing or first-inversion
            chord), ii and vi.
        diminished_root: a diminished triad in root position.
        missing_fifth: a triad without its fifth (root and third are always present).
        doubled_leading_tone: the leading tone in two voices.
        doubled_third: the third in two voices (the root is the doubling of choice).
        uncommon_progression: a degree that does not commonly follow the previous one.
        repeated_chord: the same degree again.
        non_tonic_start: a first chord other than the tonic.
        chromatic: per pitch class of a triad outside the key's scale (major; minor with
            both sixths and sevenths); such triads are tried only for a melody note that no
            triad of the key holds.
        inner_motion: per semitone that alto and tenor move.
        bass_motion: per semitone that the bass moves.
    """

    first_inversion: float = 0.8
    second_inversion: float = 4.0
    degree: tuple[float, ...] = (0.0, 0.2, 0.8, 0.0, 0.0, 0.2, 0.5)
    diminished_root: float = 2.0
    missing_fifth: float = 0.8
    doubled_leading_tone: float = 2.5
    doubled_third: float = 0.4
    uncommon_progression: float = 1.0
    repeated_chord: float = 0.4
    non_tonic_start: float = 1.0
    chromatic: float = 1.0
    inner_motion: float = 0.15
    bass_motion: float = 0.03


DEFAULT_RULE_WEIGHTS = RuleWeights()

_SEARCHES = ((True, True), (True, False), (False, False))
"""Voicing searches, strictest first: (keep voice order, keep upper spacing within an octave).
The last one always finds a voicing: every range spans more than an octave."""


class RuleHarmonizer:
    """Alto, tenor and bass for a soprano arriving step by step, in one key.

    ``tonic_pc`` (0 = C) and ``mode`` (``MAJOR`` or ``MINOR``) fix the key; ``ranges`` bound
    the voices (``{voice: (low, high)}``); ``weights`` and ``rules`` set the costs.
    """

    def __init__(
        self,
        tonic_pc: int,
        mode: int,
        ranges: Ranges = SATB_RANGES,
        weights: PenaltyWeights = DEFAULT_WEIGHTS,
        rules: RuleWeights = DEFAULT_RULE_WEIGHTS,
    ) -> None:
        if mode not in (MAJOR, MINOR):
            raise ValueError(f"mode {mode} is neither MAJOR nor MINOR")
        self.tonic_pc = tonic_pc % 12
        self.mode = mode
        self.ranges = {v: (int(ranges[v][0]), int(ranges[v][1])) for v in VOICES}
        self.weights = weights
        self.rules = rules
        self.leading_tone = (self.tonic_pc + 11) % 12
        self._diatonic = diatonic_triads(self.tonic_pc, mode)
        self._scale = key_scale(self.tonic_pc, mode)
        self._tones: dict[frozenset[int], dict[str, list[int]]] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the piece so far."""
        self._prev: tuple[int, int, int, int] | None = None
        self._prev_triad: Triad | None = None
        self._sounding = False

    def step(self, soprano_code: int) -> tuple[int, int, int]:
        """The alto, tenor and bass grid codes for one soprano grid code."""
        code = int(soprano_code)
        if code == HOLD_CODE and self._sounding:
            return HOLD_CODE, HOLD_CODE, HOLD_CODE
        if code < 0:  # a rest, or a hold with nothing to hold
            self._sounding = False
            return REST_CODE, REST_CODE, REST_CODE
        chord, triad = self._choose(code)
        self._prev, self._prev_triad, self._sounding = chord, triad, True
        return chord[1], chord[2], chord[3]

    def harmonize(self, soprano_codes: Sequence[int] | np.ndarray) -> np.ndarray:
        """A whole soprano line, from a fresh start: ``(4, steps)`` int16 grid codes, the
        soprano unchanged in row 0, each lower voice re-struck with every new soprano note."""
        self.reset()
        sop = np.asarray(soprano_codes, np.int16)
        out = np.empty((4, sop.size), np.int16)
        out[0] = sop
        for i, code in enumerate(sop.tolist()):
            out[1:, i] = self.step(code)
        return out

    # --- choosing ---------------------------------------------------------------------------

    def candidate_triads(self, pc: int) -> tuple[Triad, ...]:
        """The key's triads holding ``pc``, or the chromatic ones when none does."""
        found = tuple(t for t in self._diatonic if pc in t.pitch_classes)
        return found or chromatic_triads(pc)

    def _choose(self, soprano: int) -> tuple[tuple[int, int, int, int], Triad]:
        triads = self.candidate_triads(soprano % 12)
        for ordered, spaced in _SEARCHES:
            best: tuple[int, int, int, int] | None = None
            best_cost, best_triad = float("inf"), triads[0]
            for triad in triads:
                base = self._triad_cost(triad)
                for chord in self._voicings(soprano, triad, ordered, spaced):
                    cost = base + self._voicing_cost(chord, triad)
                    if cost < best_cost:
                        best, best_cost, best_triad = chord, cost, triad
            if best is not None:
                return best, best_triad
        raise AssertionError("the unconstrained search always finds a voicing")

    def _voicings(
        self, soprano: int, triad: Triad, ordered: bool, spaced: bool
    ) -> list[tuple[int, int, int, int]]:
        """Alto, tenor and bass chord tones within range under the search's constraints, with
        root and third present."""
        tones = self._chord_tones(triad.pitch_classes)
        out = []
        for a in tones["alto"]:
            if (ordered and a > soprano) or (spaced and soprano - a > 12):
                continue
            for t in tones["tenor"]:
                if (ordered and t > a) or (spaced and a - t > 12):
                    continue
                for b in tones["bass"]:
                    if ordered and b > t:
                        continue
                    present = {soprano % 12, a % 12, t % 12, b % 12}
                    if triad.root in present and triad.third in present:
                        out.append((soprano, a, t, b))
        return out

    def _chord_tones(self, pcs: frozenset[int]) -> dict[str, list[int]]:
        """Per voice the pitches within its range whose pitch class is in ``pcs`` (cached)."""
        if pcs not in self._tones:
            self._tones[pcs] = {
                v: [p for p in range(lo, hi + 1) if p % 12 in pcs]
                for v, (lo, hi) in self.ranges.items()
            }
        return self._tones[pcs]

    def _triad_cost(self, triad: Triad) -> float:
        """What the choice of chord costs, before any voicing: its rarity and the progression
        from the chord before."""
        r = self.rules
        if triad.degree is None:
            return r.chromatic * len(triad.pitch_classes - self._scale)
        prev = self._prev_triad
        cost = r.degree[triad.degree]
        if prev is None:
            return cost + (0.0 if triad.degree == 0 else r.non_tonic_start)
        if prev.degree is None:  # out of a chromatic chord: falling fifth, as a dominant does
            return cost + (0.0 if (prev.root - triad.root) % 12 == 7 else r.uncommon_progression)
        if triad.degree == prev.degree:
            return cost + r.repeated_chord
        common = triad.degree in _COMMON_NEXT[prev.degree]
        return cost + (0.0 if common else r.uncommon_progression)

    def _voicing_cost(self, chord: tuple[int, int, int, int], triad: Triad) -> float:
        """Voice leading, inversion, doubling and motion of one voiced candidate."""
        r = self.rules
        cost = penalty(self._prev, chord, self.ranges, self.weights)
        bass_pc = chord[3] % 12
        if bass_pc == triad.third:
            cost += r.first_inversion
        elif bass_pc == triad.fifth:
            cost += r.second_inversion
        elif triad.diminished:
            cost += r.diminished_root
        pcs = [p % 12 for p in chord]
        if triad.fifth not in pcs:
            cost += r.missing_fifth
        if pcs.count(self.leading_tone) > 1:
            cost += r.doubled_leading_tone
        if pcs.count(triad.third) > 1:
            cost += r.doubled_third
        prev = self._prev
        if prev is not None:
            cost += r.inner_motion * (abs(chord[1] - prev[1]) + abs(chord[2] - prev[2]))
            cost += r.bass_motion * abs(chord[3] - prev[3])
        return cost


def harmonize(
    soprano_codes: Sequence[int] | np.ndarray,
    tonic_pc: int | None = None,
    mode: int | None = None,
    ranges: Ranges = SATB_RANGES,
) -> np.ndarray:
    """Harmonize a soprano line with :class:`RuleHarmonizer`: ``(4, steps)`` grid codes.

    Without ``tonic_pc`` and ``mode`` the key is estimated from the whole line first
    (:func:`estimate_key`); given, the harmonization is strictly causal.
    """
    if tonic_pc is None or mode is None:
        est_tonic, est_mode = estimate_key(soprano_codes)
        tonic_pc = est_tonic if tonic_pc is None else tonic_pc
        mode = est_mode if mode is None else mode
    return RuleHarmonizer(tonic_pc, mode, ranges).harmonize(soprano_codes)
