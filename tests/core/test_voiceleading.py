"""Voice-leading rules on hand-made progressions, Bach's own figures, and the rule harmonizer."""

from __future__ import annotations

import inspect
import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from partimento.core.music.encoding import HOLD_CODE, MAJOR, MINOR, REST_CODE, sounding_pitches
from partimento.core.music.rules import (
    RuleHarmonizer,
    chromatic_triads,
    diatonic_triads,
    estimate_key,
    harmonize,
    key_scale,
)
from partimento.core.music.voiceleading import (
    COUNT_KEYS,
    DEFAULT_WEIGHTS,
    SATB_RANGES,
    PenaltyWeights,
    aggregate,
    corpus_metrics,
    metrics,
    penalty,
    pitch_class_agreement,
    pitch_class_matches,
)

CACHE = Path.home() / ".cache" / "partimento"

ZERO = PenaltyWeights(0, 0, 0, 0, 0, 0, 0)

C_MAJOR = (72, 64, 55, 48)  # C5 E4 G3 C3
D_MINOR_FIFTHS = (69, 65, 57, 50)  # A4 F4 A3 D3: tenor and bass move up a fifth apart
G_MAJOR_CONTRARY = (71, 67, 62, 43)  # B4 G4 D4 G2: tenor up, bass down


def grid(*chords: tuple[int, ...], length: int = 4) -> np.ndarray:
    """Block chords (soprano first), each struck once and held for ``length`` steps."""
    cols = []
    for chord in chords:
        cols.append(chord)
        cols.extend([(HOLD_CODE,) * 4] * (length - 1))
    return np.array(cols, np.int16).T


def only(**weights: float) -> PenaltyWeights:
    """Weights that count a single fault, once each."""
    return replace(ZERO, **weights)


# --- penalty and metrics on hand-made progressions -------------------------------------------


def test_c_major_to_d_minor_has_one_parallel_fifth_in_tenor_and_bass() -> None:
    m = metrics(grid(C_MAJOR, D_MINOR_FIFTHS), SATB_RANGES)
    assert m["chord_changes"] == 1
    assert m["parallel_fifths"] == 1
    assert m["parallel_octaves"] == 0
    assert m["parallel_fifths_per_100"] == pytest.approx(100.0)
    assert penalty(C_MAJOR, D_MINOR_FIFTHS, SATB_RANGES) == DEFAULT_WEIGHTS.parallel_fifth


def test_contrary_motion_from_fifth_to_twelfth_is_no_parallel() -> None:
    m = metrics(grid(C_MAJOR, G_MAJOR_CONTRARY), SATB_RANGES)
    assert m["chord_changes"] == 1
    assert m["parallel_fifths"] == m["parallel_octaves"] == 0
    assert penalty(C_MAJOR, G_MAJOR_CONTRARY, SATB_RANGES) == 0.0


def test_parallel_octaves_and_fifths_are_counted_apart_and_together() -> None:
    d_minor = (74, 65, 57, 50)  # soprano and bass both up a step: octaves; tenor-bass: fifths
    m = metrics(grid(C_MAJOR, d_minor), SATB_RANGES)
    assert (m["parallel_fifths"], m["parallel_octaves"]) == (1, 1)
    assert m["parallels_per_100"] == pytest.approx(200.0)
    assert penalty(C_MAJOR, d_minor, SATB_RANGES) == (
        DEFAULT_WEIGHTS.parallel_fifth + DEFAULT_WEIGHTS.parallel_octave
    )


def test_compound_fifths_and_unisons_count_contrary_and_oblique_motion_do_not() -> None:
    fifths, octaves = only(parallel_fifth=1), only(parallel_octave=1)
    contrary = ((72, 64, 55, 48), (74, 65, 57, 38))  # tenor-bass: fifth to twelfth, contrary
    assert penalty(*contrary, SATB_RANGES, fifths) == 0
    twelfths = ((72, 67, 52, 48), (72, 69, 53, 50))  # alto-bass: 19 -> 19 semitones, both up
    assert penalty(*twelfths, SATB_RANGES, fifths) == 1
    unisons = ((72, 60, 60, 48), (72, 62, 62, 48))  # alto and tenor in unison, both up
    assert penalty(*unisons, SATB_RANGES, octaves) == 1
    octave_to_unison = ((72, 64, 60, 48), (72, 64, 47, 47))  # tenor and bass both down
    assert penalty(*octave_to_unison, SATB_RANGES, octaves) == 1
    oblique = ((72, 64, 55, 48), (72, 64, 60, 48))  # only the tenor moves: fifth to octave
    assert penalty(*oblique, SATB_RANGES, only(parallel_fifth=1, parallel_octave=1)) == 0


def test_voice_crossing() -> None:
    crossed = (72, 60, 64, 48)  # tenor E4 above alto C4
    assert penalty(None, crossed, SATB_RANGES) == DEFAULT_WEIGHTS.crossing
    m = metrics(grid(C_MAJOR, crossed), SATB_RANGES)
    assert m["crossing_steps"] == 4
    assert m["crossing_share"] == pytest.approx(0.5)


def test_spacing_over_an_octave_between_upper_voices_only() -> None:
    wide_sa = (79, 64, 60, 48)  # G5 over E4: a tenth
    wide_at = (72, 67, 52, 48)  # G4 over E3: a tenth
    wide_tb = (72, 67, 64, 40)  # E4 over E2: two octaves between tenor and bass is fine
    assert penalty(None, wide_sa, SATB_RANGES) == DEFAULT_WEIGHTS.spacing
    assert penalty(None, wide_at, SATB_RANGES) == DEFAULT_WEIGHTS.spacing
    assert penalty(None, wide_tb, SATB_RANGES) == 0.0
    m = metrics(grid(wide_sa, wide_at, wide_tb, C_MAJOR), SATB_RANGES)
    assert m["spacing_sa_share"] == pytest.approx(0.25)
    assert m["spacing_at_share"] == pytest.approx(0.25)


def test_out_of_range_grows_with_the_distance() -> None:
    low_bass = (72, 64, 55, 36)  # C2, four semitones below E2
    w = DEFAULT_WEIGHTS
    assert penalty(None, low_bass, SATB_RANGES) == w.out_of_range + 4 * w.out_of_range_semitone
    narrow = {**SATB_RANGES, "bass": (30, 50)}  # ranges come from the caller
    assert penalty(None, low_bass, narrow) == 0.0
    assert metrics(grid(low_bass, C_MAJOR), SATB_RANGES)["out_of_range_share"] == 0.5


def test_large_leaps_only_in_inner_voices() -> None:
    leap = only(inner_leap=1)
    assert penalty((72, 55, 52, 48), (72, 69, 52, 48), SATB_RANGES, leap) == 1  # alto +14
    assert penalty((72, 64, 48, 48), (72, 64, 62, 48), SATB_RANGES, leap) == 1  # tenor +14
    assert penalty((72, 64, 55, 60), (72, 64, 55, 43), SATB_RANGES, leap) == 0  # bass -17
    assert penalty((72, 55, 52, 48), (72, 67, 52, 48), SATB_RANGES, leap) == 0  # an octave


def test_silent_voices_take_part_in_nothing() -> None:
    assert penalty((72, -1, 55, 48), (71, 65, -1, 50), SATB_RANGES) == 0.0
    assert penalty((-1, -1, -1, -1), (-1, -1, -1, -1), SATB_RANGES) == 0.0


def test_penalty_is_plain_python() -> None:
    value = penalty(C_MAJOR, D_MINOR_FIFTHS, SATB_RANGES)
    assert type(value) is float
    assert "np." not in inspect.getsource(penalty)


def test_a_hold_or_a_restruck_chord_is_no_chord_change() -> None:
    held = grid(C_MAJOR, length=8)
    assert metrics(held, SATB_RANGES)["chord_changes"] == 0
    restruck = grid(C_MAJOR, C_MAJOR, D_MINOR_FIFTHS)
    m = metrics(restruck, SATB_RANGES)
    assert m["chord_changes"] == 1
    assert m["parallel_fifths"] == 1
    passing = grid(C_MAJOR, (72, 65, 55, 48), length=2)  # only the alto moves
    assert metrics(passing, SATB_RANGES)["chord_changes"] == 1


def test_triads_and_seventh_chords_must_be_complete() -> None:
    g7 = (62, 59, 53, 43)  # G B D F
    g7_no_fifth = (67, 65, 59, 43)  # G B F: no D
    open_fifth = (67, 60, 55, 48)  # C G only
    m = metrics(grid(C_MAJOR, g7, g7_no_fifth, open_fifth, length=1), SATB_RANGES)
    assert m["sonorities"] == 4
    assert m["tertian_sonorities"] == 2
    assert m["triad_seventh_share"] == pytest.approx(0.5)


def test_pitch_class_agreement_ignores_voicing_and_steps_without_four_reference_voices() -> None:
    reference = grid(C_MAJOR, D_MINOR_FIFTHS, length=2)
    reference[1, 2:] = [REST_CODE, HOLD_CODE]  # the alto rests in the second chord
    other_voicing = grid((67, 64, 60, 36), (62, 62, 62, 62), length=2)
    assert pitch_class_matches(other_voicing, reference) == (2, 2)
    assert pitch_class_agreement(other_voicing, reference) == 1.0
    wrong = grid((67, 64, 59, 43), D_MINOR_FIFTHS, length=2)
    assert pitch_class_agreement(wrong, reference) == 0.0


def test_aggregate_sums_counts_before_rates() -> None:
    a = metrics(grid(C_MAJOR, D_MINOR_FIFTHS), SATB_RANGES)  # 1 change, 1 parallel
    b = metrics(grid(C_MAJOR, G_MAJOR_CONTRARY, C_MAJOR), SATB_RANGES)  # 2 changes, none
    pooled = aggregate([a, b])
    assert {k: pooled[k] for k in COUNT_KEYS} == {k: a[k] + b[k] for k in COUNT_KEYS}
    assert pooled["parallels_per_100"] == pytest.approx(100 / 3)
    assert np.isnan(aggregate([])["parallels_per_100"])


# --- the rule harmonizer on hand-made melodies -----------------------------------------------


def test_diatonic_and_chromatic_triads() -> None:
    c_major = diatonic_triads(0, MAJOR)
    assert [(t.root, t.third, t.fifth) for t in c_major][:2] == [(0, 4, 7), (2, 5, 9)]
    a_minor_dominant = diatonic_triads(9, MINOR)[4]
    assert (a_minor_dominant.root, a_minor_dominant.third) == (4, 8)  # E major, G sharp
    assert key_scale(9, MINOR) == {9, 11, 0, 2, 4, 5, 6, 7, 8}  # both sixths and sevenths
    secondary = chromatic_triads(6)[0]  # F sharp: first as the third of D major
    assert (secondary.root, secondary.third, secondary.fifth) == (2, 6, 9)


def test_estimate_key_of_scales() -> None:
    c_major = [60, HOLD_CODE, 62, 64, 65, 67, HOLD_CODE, 69, 71, 72, HOLD_CODE, 67, 60]
    assert estimate_key(c_major) == (0, MAJOR)
    a_minor = [69, HOLD_CODE, 71, 72, 74, 76, HOLD_CODE, 77, 68, 69, HOLD_CODE, 64, 69]
    assert estimate_key(a_minor) == (9, MINOR)
    ends_on_the_fifth = [*c_major[:-1], 67]  # the final note pulls towards G without help
    assert estimate_key(ends_on_the_fifth, final_weight=0.0) == (0, MAJOR)


def test_harmonizer_follows_holds_and_rests_causally() -> None:
    melody = [HOLD_CODE, 72, HOLD_CODE, 71, REST_CODE, HOLD_CODE, 72, HOLD_CODE]
    h = RuleHarmonizer(0, MAJOR)
    out = h.harmonize(melody)
    assert out.shape == (4, len(melody))
    assert out[0].tolist() == melody
    for step in (0, 4, 5):
        assert (out[1:, step] == REST_CODE).all()
    for step in (2, 7):
        assert (out[1:, step] == HOLD_CODE).all()
    for step in (1, 3, 6):
        assert (out[1:, step] >= 0).all()
    first = RuleHarmonizer(0, MAJOR)
    prefix = [first.step(c) for c in melody[:4]]
    assert np.array(prefix).T.tolist() == out[1:, :4].tolist()  # nothing is read ahead
    assert np.array_equal(h.harmonize(melody), out)  # deterministic


def test_harmonizer_opens_on_a_root_position_tonic() -> None:
    out = sounding_pitches(harmonize([72, HOLD_CODE, 71, 72], 0, MAJOR))
    assert {p % 12 for p in out[:, 0]} == {0, 4, 7}
    assert out[3, 0] % 12 == 0
    assert out[3, 2] % 12 == 7  # B in the melody over a dominant


# --- Bach and the harmonizer on real chorales ---------------------------------------------------


@pytest.fixture(scope="module")
def test_split() -> list:
    from partimento.training.data.chorales import CACHE_VERSION, load_corpus

    if not (CACHE / f"chorales-v{CACHE_VERSION}.npz").exists():
        pytest.skip("the chorale cache is not built (python -m training ... builds it)")

    return load_corpus(CACHE)["test"]


def _random_harmonize(soprano: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A straw man: a random key triad holding each melody note, voiced with random chord
    tones within each voice's range; holds and rests as the rule harmonizer has them."""
    tonic, mode = estimate_key(soprano)
    triads = RuleHarmonizer(tonic, mode).candidate_triads
    out = np.empty((4, soprano.size), np.int16)
    out[0] = soprano
    sounding = False
    for i, code in enumerate(soprano.tolist()):
        if code == HOLD_CODE and sounding:
            out[1:, i] = HOLD_CODE
        elif code < 0:
            out[1:, i], sounding = REST_CODE, False
        else:
            options = triads(code % 12)
            pcs = options[int(rng.integers(len(options)))].pitch_classes
            for row, voice in enumerate(("alto", "tenor", "bass"), start=1):
                low, high = SATB_RANGES[voice]
                tones = [p for p in range(low, high + 1) if p % 12 in pcs]
                out[row, i] = tones[int(rng.integers(len(tones)))]
            sounding = True
    return out


def test_bach_voice_leading_on_the_test_split(test_split: list) -> None:
    bach = corpus_metrics([c.voices for c in test_split], SATB_RANGES)
    print({k: round(v, 4) for k, v in bach.items()})
    assert bach["chord_changes"] > 1000
    assert bach["parallels_per_100"] < 1.5  # measured 0.49 (12 fifths, 4 octaves)
    assert bach["crossing_share"] < 0.05  # measured 0.018
    assert bach["spacing_sa_share"] < 0.03  # measured 0.008
    assert bach["spacing_at_share"] < 0.03  # measured 0.011
    assert bach["out_of_range_share"] < 0.06  # measured 0.024
    assert bach["triad_seventh_share"] > 0.75  # measured 0.82


def test_penalty_and_metrics_agree_on_bach(test_split: list) -> None:
    counted = {"fifths": 0, "octaves": 0}
    for c in test_split[:10]:
        s = sounding_pitches(c.voices).T.tolist()
        for prev, cur in itertools.pairwise(s):
            if prev != cur and sum(p >= 0 for p in cur) >= 2:
                counted["fifths"] += int(penalty(prev, cur, SATB_RANGES, only(parallel_fifth=1)))
                counted["octaves"] += int(penalty(prev, cur, SATB_RANGES, only(parallel_octave=1)))
    m = corpus_metrics([c.voices for c in test_split[:10]], SATB_RANGES)
    assert (counted["fifths"], counted["octaves"]) == (m["parallel_fifths"], m["parallel_octaves"])


def test_rule_harmonizer_beats_random_chord_tones(test_split: list) -> None:
    rng = np.random.default_rng(0)
    rule, rand = [], []
    for c in test_split:
        soprano = c.voices[0]
        out = harmonize(soprano)
        assert out.shape == c.voices.shape
        assert np.array_equal(out[0], soprano)
        for row, voice in enumerate(("alto", "tenor", "bass"), start=1):
            pitches = out[row][out[row] >= 0]
            low, high = SATB_RANGES[voice]
            assert pitches.size and pitches.min() >= low and pitches.max() <= high
        rule.append(out)
        rand.append(_random_harmonize(soprano, rng))
    ours = corpus_metrics(rule, SATB_RANGES)
    straw = corpus_metrics(rand, SATB_RANGES)
    agreement = np.mean(
        [pitch_class_agreement(g, c.voices) for g, c in zip(rule, test_split, strict=True)]
    )
    print("rule", {k: round(v, 4) for k, v in ours.items()}, "agreement", round(agreement, 3))
    print("random", {k: round(v, 4) for k, v in straw.items()})
    assert ours["parallels_per_100"] < straw["parallels_per_100"]
    assert ours["parallels_per_100"] < 1.0
    assert ours["crossing_share"] < straw["crossing_share"]
    assert ours["triad_seventh_share"] > 0.9
