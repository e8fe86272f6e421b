"""The one continuation code path (partimento.core.players.respond): answers in the call's key, on
its grid, as dense as the call, with the call kept in the model's state and no restart."""

from __future__ import annotations

import numpy as np
import pytest

from partimento.core.music import motifs, rules
from partimento.core.music.encoding import (
    HOLD_CODE,
    MAJOR,
    MINOR,
    REST_CODE,
    Note,
    grid_to_notes,
    notes_to_grid,
)
from partimento.core.music.key import player_key
from partimento.core.music.melody import Melody, TickNote
from partimento.core.players.continuation import Continuer
from partimento.core.players.respond import AnswerSettings, Responder, fork
from partimento.files import model

from support.project import SHIPPED, require

G_MAJOR_CALL = notes_to_grid(
    [Note(p, 4 * i, 4) for i, p in enumerate((67, 71, 74, 71, 72, 69, 66, 67))]
)  # two bars of G
STEPS = 32


@pytest.fixture(scope="module")
def folk():
    require((SHIPPED / "folk" / "model.onnx").exists(), "no shipped folk model")
    return model.load(SHIPPED / "folk")


def answer(m, call, **kw):
    r = Responder(m.contract, m.run, AnswerSettings(seed=kw.pop("seed", 1), **kw))
    r.observe(call)
    return r, r.continue_notes(STEPS)


def test_the_answer_is_in_the_calls_key_and_on_its_grid(folk):
    r, notes = answer(folk, G_MAJOR_CALL, keep_to_scale=True)
    assert r.key == (7, MAJOR) and r.shift == 5  # heard in G, played by the model in C
    g_major = rules.key_scale(7, MAJOR)
    assert notes and all(n.pitch % 12 in g_major for n in notes)
    assert all(0 <= n.start < STEPS and n.end <= STEPS for n in notes)  # whole sixteenths


def test_without_a_scale_the_answer_is_still_in_the_key_moved_back(folk):
    moved = np.where(G_MAJOR_CALL >= 0, G_MAJOR_CALL - 2, G_MAJOR_CALL)  # F major
    r, notes = answer(folk, moved)
    assert r.key == (5, MAJOR)
    inside = motifs.in_key_share(notes, rules.key_scale(5, MAJOR))
    assert inside is not None and inside >= 0.9


def test_the_answer_follows_the_calls_density(folk):
    runs = notes_to_grid([Note(60 + (i % 8), 2 * i, 2) for i in range(16)])  # eighths
    longs = notes_to_grid([Note(p, 8 * i, 8) for i, p in enumerate((60, 64, 67, 64))])  # halves
    for call in (runs, longs):
        _, notes = answer(folk, call)
        ratio = motifs.density_log_ratio(notes, STEPS, grid_to_notes(call), len(call))
        assert abs(ratio) <= np.log(1.35), (motifs.density(notes, STEPS), call)


def test_a_predicted_end_of_tune_is_never_played_as_a_restart(folk):
    """A call that sounds finished (a cadence on the tonic, then silence) still gets an answer
    to the end, from the state that holds the call: START is never sampled and nothing is
    reset."""
    c = Continuer(folk.contract, folk.run, seed=0)
    cadence = notes_to_grid(
        [Note(p, 4 * i, 4) for i, p in enumerate((67, 65, 64, 62))] + [Note(60, 16, 16)]
    )
    c.observe(cadence)
    start = c.vocab.index("/")
    assert int(np.argmax(c.logits)) == start or c.logits[start] > np.median(c.logits)
    codes = c.continue_for(4 * STEPS)
    played = [i for i, x in enumerate(codes.tolist()) if x >= 0]
    assert played and played[-1] >= 2 * STEPS  # still playing in the second half


def test_the_call_stays_in_the_state_and_forks_are_independent(folk):
    r, _ = answer(folk, G_MAJOR_CALL)
    other = Responder(folk.contract, folk.run, AnswerSettings(seed=1))
    assert not np.allclose(r.player.model.state["h0_in"], other.player.model.state["h0_in"])
    before = {k: v.copy() for k, v in r.player.model.state.items()}
    twin = fork(r.player, 5)
    twin.continue_notes(STEPS)
    for k, v in r.player.model.state.items():
        np.testing.assert_array_equal(v, before[k])  # the original did not move


def test_the_same_seed_gives_the_same_answer(folk):
    assert answer(folk, G_MAJOR_CALL, seed=9)[1] == answer(folk, G_MAJOR_CALL, seed=9)[1]
    assert answer(folk, G_MAJOR_CALL, seed=9)[1] != answer(folk, G_MAJOR_CALL, seed=10)[1]


def test_a_configured_key_wins_over_the_call(folk):
    r, notes = answer(folk, G_MAJOR_CALL, fixed_key=(9, MINOR), keep_to_scale=True)
    assert r.key == (9, MINOR)
    assert all(n.pitch % 12 in rules.key_scale(9, MINOR) for n in notes)


def test_bad_candidates_are_refused():
    with pytest.raises(ValueError, match="candidates"):
        AnswerSettings(candidates=0)


def test_a_melodys_grid_ends_where_its_last_note_ends():
    m = Melody((TickNote(60, 0, 480), TickNote(62, 480, 960)), 480)
    codes = m.grid()[0]
    assert codes.tolist() == [
        60,
        HOLD_CODE,
        HOLD_CODE,
        HOLD_CODE,
        62,
        HOLD_CODE,
        HOLD_CODE,
        HOLD_CODE,
    ]
    short = Melody((TickNote(60, 0, 10),), 480)  # a note that rounds to nothing lasts a step
    assert short.grid()[0].tolist() == [60]


def test_the_key_of_a_scale():
    c_major = notes_to_grid(
        [Note(p, 2 * i, 2) for i, p in enumerate((60, 62, 64, 65, 67, 69, 71, 72))]
    )
    a_minor = notes_to_grid(
        [Note(p, 2 * i, 2) for i, p in enumerate((69, 71, 72, 74, 76, 77, 80, 81, 76, 69))]
    )
    assert player_key(c_major) == (0, MAJOR)
    assert player_key(a_minor) == (9, MINOR)
    assert player_key(np.array([REST_CODE, HOLD_CODE])) is None
