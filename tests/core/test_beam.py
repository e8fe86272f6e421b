"""Style ``bach-offline`` (the lookahead decoder) and its beam search,
``partimento.core.players.beam``."""

from __future__ import annotations

import numpy as np
import pytest

from partimento.core.music import voiceleading
from partimento.core.music.encoding import HOLD_CODE, sounding_pitches
from partimento.core.players.beam import BeamHarmonizer, BeamSettings, ahead_windows

from support.project import train_tiny


def test_ahead_windows_read_the_next_steps_and_pad_past_the_end() -> None:
    got = ahead_windows(np.array([5, 6, 7, 8]), 3, pad=0)
    assert got.tolist() == [[6, 7, 8], [7, 8, 0], [8, 0, 0], [0, 0, 0]]


def test_move_penalties_are_penalty_row_by_row() -> None:
    rng = np.random.default_rng(0)
    prev = rng.integers(38, 80, (300, 4))
    cur = prev + rng.integers(-7, 8, (300, 4))
    prev[::17, 2] = -1  # a silent voice now and then
    ranges = voiceleading.SATB_RANGES
    want = [
        voiceleading.penalty(tuple(p), tuple(c), ranges) for p, c in zip(prev, cur, strict=True)
    ]
    assert voiceleading.move_penalties(prev, cur, ranges) == pytest.approx(want)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="beam must be 1-64"):
        BeamSettings(beam=0)


@pytest.fixture(scope="module")
def tiny_lookahead(tmp_path_factory):
    return train_tiny(
        tmp_path_factory.mktemp("tiny-lookahead"),
        "bach-offline",
        dense=16,
        seq_len=32,
        limit=12,
        timesteps=8,
    )


@pytest.mark.slow
def test_export_carries_the_lookahead_and_the_heads(tiny_lookahead) -> None:
    from partimento.files import model

    m = model.load(tiny_lookahead)
    c = m.contract
    assert c.kind == "lookahead-harmonizer" and m.heads is not None
    assert c.encoding["ahead"]["steps"] == 8
    assert c.input("token", "soprano").name == "soprano"
    assert [int(d) for d in c.inputs[-3].shape[2:]] in ([8], [])  # windows of 8 steps
    assert c.training["parity_max_logit_difference"] <= 1e-4


@pytest.mark.slow
def test_beam_search_keeps_the_melody_and_breaks_no_hard_rule(tiny_lookahead, chorales) -> None:
    """Even a barely trained model's search writes no parallel fifth or octave and no harmony
    voice out of its range, and the soprano is the one given."""
    from partimento.files import model

    m = model.load(tiny_lookahead)
    b = BeamHarmonizer(m.contract, m.run, m.heads, settings=BeamSettings(beam=4))
    c = chorales["test"][0]
    out = b.harmonize(c.voices[0], c.position, c.fermata, c.mode)
    assert out.shape == (4, c.steps) and (out[0] == c.voices[0]).all()
    assert out[1:, 0].min() != HOLD_CODE
    ranges = {v: tuple(r) for v, r in m.contract.encoding["voice_ranges"].items()}
    figs = voiceleading.metrics(out, ranges)
    assert figs["parallel_fifths"] == figs["parallel_octaves"] == 0
    s = sounding_pitches(out)
    for row, voice in enumerate(("alto", "tenor", "bass"), start=1):
        low, high = ranges[voice]
        assert ((s[row] == -1) | ((s[row] >= low) & (s[row] <= high))).all()
    again = b.harmonize(c.voices[0], c.position, c.fermata, c.mode)
    assert (again == out).all()  # a search, not a draw: the same answer every time
