"""Tempo, phrase ends and the context window, as a musician at the keyboard would notice them."""

from __future__ import annotations

import ast
import subprocess
import sys

import numpy as np
import pytest

from partimento.core.music.encoding import HOLD_CODE, REST_CODE, grid_to_notes
from partimento.core.timing.phrase import ContextWindow, PhraseDetector
from partimento.core.timing.tempo import TempoTracker, estimate_onset_bpm

from support.project import ROOT

H, R = HOLD_CODE, REST_CODE


def ticks(
    tracker: TempoTracker, bpm: float, t0: float, n: int, jitter: float = 0.0, seed: int = 0
) -> float:
    """Send ``n`` clock ticks at ``bpm`` from ``t0``; returns the time of the last one."""
    rng = np.random.default_rng(seed)
    dt = 60.0 / bpm / 24
    t = t0
    for i in range(n):
        t = t0 + i * dt + (rng.uniform(-jitter, jitter) if jitter else 0.0)
        tracker.clock(t)
    return t0 + (n - 1) * dt


MELODY_EIGHTHS = [2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 4, 2, 1, 1, 2, 2, 1, 1, 3, 1, 2, 2]


def melody_onsets(bpm: float, seed: int, jitter: float = 0.015, t0: float = 10.0) -> np.ndarray:
    """Onsets of a melody of eighths, quarters and longer notes, played by a human hand."""
    rng = np.random.default_rng(seed)
    grid = np.concatenate([[0], np.cumsum(MELODY_EIGHTHS)]) * (30.0 / bpm)
    return t0 + grid + rng.uniform(-jitter, jitter, grid.size)


# -- tempo ------------------------------------------------------------------------------------


def test_clock_at_120_gives_120():
    tr = TempoTracker(bpm=90)
    last = ticks(tr, 120, 1.0, 48, jitter=0.001)
    assert tr.source(last) == "clock"
    assert tr.bpm(last) == pytest.approx(120, abs=0.5)
    assert tr.seconds_per_step(last) == pytest.approx(0.125, rel=0.005)


def test_clock_lost_falls_back_to_config_then_returns():
    tr = TempoTracker(bpm=90)
    last = ticks(tr, 120, 1.0, 48)
    assert tr.bpm(last + 0.4) == pytest.approx(120, abs=0.5)
    assert tr.source(last + 0.6) == "config"
    assert tr.bpm(last + 0.6) == 90
    again = ticks(tr, 140, last + 2.0, 48)
    assert tr.source(again) == "clock"
    assert tr.bpm(again) == pytest.approx(140, abs=0.5)


def test_stop_message_does_not_drop_a_running_clock():
    tr = TempoTracker(bpm=90)
    tr.start(1.0)
    last = ticks(tr, 120, 1.0, 48)
    tr.stop(last + 0.001)
    last = ticks(tr, 120, last + 60 / 120 / 24, 24)
    assert tr.source(last) == "clock" and not tr.running


@pytest.mark.parametrize("seed", range(10))
def test_melody_at_96_with_human_jitter_gives_96(seed):
    tr = TempoTracker(bpm=120)
    onsets = melody_onsets(96, seed)
    for t in onsets:
        tr.onset(t)
    assert tr.source(onsets[-1]) == "onsets"
    assert tr.bpm(onsets[-1]) == pytest.approx(96, abs=3)


@pytest.mark.parametrize("bpm", [66, 80, 112, 140, 170])
def test_onset_estimate_across_tempi(bpm):
    assert estimate_onset_bpm(melody_onsets(bpm, seed=bpm), prior_bpm=100) == pytest.approx(
        bpm, rel=0.03
    )


def test_onsets_need_enough_notes():
    tr = TempoTracker(bpm=120, min_onsets=8)
    onsets = melody_onsets(96, seed=1)
    for t in onsets[:5]:
        tr.onset(t)
    assert tr.source(onsets[4]) == "config" and tr.bpm(onsets[4]) == 120


def test_an_estimate_made_elsewhere_is_taken_only_for_the_onsets_it_saw():
    """The daemon's worker thread makes the onset estimate (``pending_estimate``); the tick
    takes it (``apply_estimate``) unless more notes came meanwhile."""
    onsets = melody_onsets(84, seed=3)
    tr, ref = TempoTracker(bpm=120), TempoTracker(bpm=120)
    for t in onsets[:-1]:
        tr.onset(t)
        ref.onset(t)
    stale = tr.pending_estimate()
    tr.onset(onsets[-1])
    ref.onset(onsets[-1])
    assert stale is not None and not tr.apply_estimate(stale, onsets[-1])
    assert tr.estimate_due
    fresh = tr.pending_estimate()
    assert fresh is not None and tr.apply_estimate(fresh, onsets[-1])
    assert not tr.estimate_due and tr.pending_estimate() is None
    ref.refresh(onsets[-1])
    assert tr.bpm(onsets[-1]) == ref.bpm(onsets[-1]) == pytest.approx(84, rel=0.03)


def test_a_chord_is_one_onset():
    tr = TempoTracker(bpm=120)
    for t in melody_onsets(96, seed=2):
        tr.onset(t)
        tr.onset(t + 0.01)  # two more chord notes
        tr.onset(t + 0.02)
    assert tr.bpm(20.0) == pytest.approx(96, abs=3)


def test_taps_half_a_second_apart_give_120_and_beat_onsets():
    tr = TempoTracker(bpm=90)
    for t in melody_onsets(96, seed=3):
        tr.onset(t)
    assert tr.source(20.0) == "onsets"
    for t in (21.0, 21.5, 22.0, 22.5):
        tr.tap(t)
    assert tr.source(22.5) == "taps"
    assert tr.bpm(22.5) == pytest.approx(120)
    assert tr.bpm(60.0) == pytest.approx(120)  # a tap tempo stays


def test_taps_far_apart_restart_and_clock_or_config_discard_them():
    tr = TempoTracker(bpm=90, tap_cc=80)
    assert tr.control_change(80, 127, 1.0) and tr.control_change(80, 0, 1.2)
    tr.control_change(80, 127, 1.5)
    assert tr.bpm(1.5) == pytest.approx(120)
    tr.tap(5.0)  # more than 2 s later: a new series, the old tempo stays until it has two
    assert tr.bpm(5.0) == pytest.approx(120)
    tr.tap(6.0)
    assert tr.bpm(6.0) == pytest.approx(60)
    last = ticks(tr, 100, 7.0, 30)
    assert tr.source(last) == "clock"
    assert tr.source(last + 1.0) == "config"  # the clock took over: the taps are gone
    tr.tap(20.0)
    tr.tap(20.5)
    tr.set_bpm(75, 21.0)
    assert tr.source(21.0) == "config" and tr.bpm(21.0) == 75


def test_tempo_is_clamped():
    tr = TempoTracker(bpm=500, tap_timeout=5.0)
    assert tr.bpm(0.0) == 300
    tr.tap(1.0)
    tr.tap(4.0)
    assert tr.bpm(3.0) == 30


def test_grid_follows_clock_start_and_runs_on_after_loss():
    tr = TempoTracker(bpm=60)
    assert tr.grid_position(0.0) == (0, 0.0) and not tr.anchored
    tr.start(1.0)
    last = ticks(tr, 120, 1.0, 97)  # four beats and the downbeat of the next
    assert tr.grid_position(last) == (16, pytest.approx(0.0))
    step, frac = tr.grid_position(last + 0.01)  # half a tick later
    assert step == 16 and frac == pytest.approx(0.5 / 6, abs=0.01)
    # The clock stops: the grid waits for the next tick (at most one tick ahead) until the
    # loss is noticed 0.5 s later, then runs on freely at the configured 60 BPM.
    assert tr.grid_position(last + 0.4) == (16, pytest.approx(1 / 6))
    step, _ = tr.grid_position(last + 0.5 + 0.5)
    assert step == 16 + 2


def test_grid_anchors_on_first_onset_and_never_goes_back():
    tr = TempoTracker(bpm=96)
    onsets = melody_onsets(96, seed=4)
    seen = []
    for t in onsets:
        tr.onset(t)
        seen.append(tr.grid_position(t)[0])
        seen.append(tr.grid_position(t + 0.1)[0])
    assert seen[0] == 0
    assert (np.diff(seen) >= 0).all()
    expected = 2 * int(np.sum(MELODY_EIGHTHS))
    assert abs(tr.grid_position(onsets[-1])[0] - expected) <= 1


# -- phrase ends ------------------------------------------------------------------------------


def test_phrase_ends_after_the_silence_and_not_before():
    pd = PhraseDetector(1.5)
    assert not pd.phrase_ended(0.0) and not pd.playing(0.0)
    pd.note_on(60, 90, 1.0)
    pd.note_off(60, 1.4)
    pd.note_on(62, 90, 1.5)
    pd.note_off(62, 2.0)
    assert pd.playing(3.0) and not pd.phrase_ended(3.4)
    assert pd.phrase_ended(3.5)
    assert not pd.phrase_ended(3.6) and not pd.playing(3.6)  # once
    pd.note_on(64, 80, 10.0)
    assert pd.playing(10.1)


def test_phrase_does_not_end_while_a_key_is_held():
    pd = PhraseDetector(1.0)
    pd.note_on(48, 90, 0.0)  # a held bass note
    pd.note_on(60, 90, 0.1)
    pd.note_off(60, 0.3)
    assert not pd.phrase_ended(5.0) and pd.playing(5.0)
    pd.note_off(48, 5.0)
    assert not pd.phrase_ended(5.9)
    assert pd.phrase_ended(6.0)


def test_phrase_does_not_end_while_the_pedal_sustains():
    pd = PhraseDetector(1.0)
    pd.note_on(60, 90, 0.0)
    pd.control_change(64, 127, 0.2)
    pd.note_off(60, 0.5)
    assert pd.sounding(3.0) and not pd.phrase_ended(3.0)
    pd.control_change(64, 0, 4.0)
    assert not pd.phrase_ended(4.9)
    assert pd.phrase_ended(5.0)


def test_pedal_pressed_after_the_keys_sustains_nothing():
    pd = PhraseDetector(1.0)
    pd.note_on(60, 90, 0.0)
    pd.note_off(60, 0.5)
    pd.control_change(64, 127, 0.6)
    assert pd.phrase_ended(1.5)


def test_a_foot_resting_on_the_pedal_ends_after_the_sustain_limit():
    pd = PhraseDetector(1.0, max_pedal_seconds=4.0)
    pd.control_change(64, 127, 0.0)
    pd.note_on(60, 90, 0.1)
    pd.note_off(60, 0.5)
    assert not pd.phrase_ended(5.4)
    assert pd.phrase_ended(5.5)


def test_end_cc_ends_the_phrase_at_once():
    pd = PhraseDetector(5.0, end_cc=85)
    pd.control_change(85, 127, 0.0)  # nothing played yet: nothing to end
    assert not pd.phrase_ended(0.0)
    pd.note_on(60, 90, 1.0)
    pd.control_change(85, 0, 1.1)
    assert not pd.phrase_ended(1.1)
    pd.control_change(85, 127, 1.2)
    assert not pd.playing(1.2)
    assert pd.phrase_ended(1.2)
    assert not pd.phrase_ended(1.3)


def test_velocity_zero_note_on_ends_a_note_raw_bytes_too():
    pd = PhraseDetector(1.0)
    pd.message(0x92, 60, 100, 0.0)
    pd.message(0x92, 60, 0, 0.5)  # running-status style note-off, channel 3
    assert pd.phrase_ended(1.5)
    pd.note_on(62, 100, 2.0)
    pd.note_on(62, 0, 2.5)
    assert pd.phrase_ended(3.5)


# -- context window ---------------------------------------------------------------------------


def play(cw: ContextWindow, notes, source="player"):
    for pitch, on, off in notes:
        cw.add_on(pitch, on, 80, source)
        cw.add_off(pitch, off, source)


def test_context_renders_a_played_phrase_on_the_grid():
    sps = 0.125  # 120 BPM
    cw = ContextWindow(seconds=10.0)
    # Slightly off the grid, as played: C quarter, D eighth (short), eighth rest, E+G chord
    # half, F under the last G.
    play(cw, [(60, 0.01, 0.49), (62, 0.51, 0.70), (64, 1.02, 1.98), (67, 0.99, 2.01)])
    cw.add_on(65, 2.0, 70)  # still sounding, legato after the chord
    grid = cw.to_grid(2.5, sps, 20)
    assert grid.tolist() == [60, H, H, H, 62, H, R, R, 67, H, H, H, H, H, H, H, 65, H, H, H]
    assert [n.pitch for n in grid_to_notes(grid)] == [60, 62, 67, 65]


def test_context_separates_sources_and_takes_the_top_note():
    cw = ContextWindow(seconds=10.0)
    play(cw, [(60, 0.0, 1.0)])
    play(cw, [(72, 0.5, 0.75)], source="partimento")
    assert cw.to_grid(1.0, 0.125, 8).tolist() == [60, H, H, H, 72, H, 60, H]
    assert cw.to_grid(1.0, 0.125, 8, source="player").tolist() == [60] + [H] * 7
    assert cw.to_grid(1.0, 0.125, 8, source="partimento").tolist() == [R] * 4 + [72, H, R, R]


def test_legato_overlap_does_not_delay_the_next_note():
    cw = ContextWindow(seconds=10.0)
    play(cw, [(67, 0.0, 0.57), (65, 0.5, 1.0)])  # a 70 ms overlap
    assert cw.to_grid(1.0, 0.125, 8).tolist() == [67, H, H, H, 65, H, H, H]


def test_context_drops_notes_older_than_its_length():
    cw = ContextWindow(seconds=4.0)
    play(cw, [(60, 0.0, 0.5), (62, 3.0, 3.5), (64, 5.0, 5.5)])
    cw.add_on(48, 0.2)  # a held pedal point stays while it sounds
    assert [n.pitch for n in cw.notes(4.4)] == [60, 48, 62, 64]
    assert [n.pitch for n in cw.notes(6.0)] == [48, 62, 64]
    cw.add_off(48, 8.0)
    assert [n.pitch for n in cw.notes(12.1)] == []

    by_steps = ContextWindow(steps=16)  # four beats
    play(by_steps, [(60, 0.0, 0.5), (62, 2.0, 2.5)])
    assert [n.pitch for n in by_steps.notes(2.6, seconds_per_step=0.125)] == [62]
    with pytest.raises(ValueError):
        by_steps.notes(2.6)


def test_context_grid_on_the_beat_with_origin():
    cw = ContextWindow(seconds=10.0)
    play(cw, [(60, 1.0, 1.5)])
    # Now is 30 ms past a step boundary; with origin the grid ends on the boundary.
    assert cw.to_grid(2.03, 0.125, 8, origin=0.0).tolist() == [60, H, H, H, R, R, R, R]


def test_pure_modules_import_no_io_library():
    allowed = {"__future__", "bisect", "collections", "dataclasses", "math", "numpy", "partimento"}
    for path in (ROOT / "daemon/core/timing/tempo.py", ROOT / "daemon/core/timing/phrase.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert {m.split(".")[0] for m in names} <= allowed, path.name
    code = (
        "import sys\n"
        "import partimento.core.timing.tempo, partimento.core.timing.phrase\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mido', 'rtmidi', 'onnxruntime', 'aiomqtt', 'asyncio', 'socket'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == ""
