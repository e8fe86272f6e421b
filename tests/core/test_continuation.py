"""Continuation with the folk step model: warm state, transposition, masks, determinism."""

import numpy as np
import pytest

from partimento.core.music.encoding import HOLD_CODE, REST_CODE, grid_to_notes
from partimento.core.players.continuation import Continuer
from partimento.files import model

pytestmark = pytest.mark.slow

PHRASE = np.array(
    [
        67,
        HOLD_CODE,
        69,
        HOLD_CODE,
        71,
        HOLD_CODE,
        HOLD_CODE,
        HOLD_CODE,
        72,
        HOLD_CODE,
        71,
        HOLD_CODE,
        69,
        HOLD_CODE,
        67,
        HOLD_CODE,
    ]
)  # G major


def continuer(path, **kw):
    m = model.load(path)
    return Continuer(m.contract, m.run, **kw), m


def test_answer_is_a_melody_on_the_grid(tiny_folk_model):
    c, m = continuer(tiny_folk_model, seed=1, shift=5)  # G major read as C major
    c.observe(PHRASE)
    answer = c.continue_for(64)
    assert answer.shape == (64,)
    low, high = m.contract.vocabulary.pitch_range
    for code in answer.tolist():
        assert code in (HOLD_CODE, REST_CODE) or low - 5 <= code <= high - 5
    # a hold never follows silence: every hold continues a note
    for i, code in enumerate(answer.tolist()):
        if code == HOLD_CODE:
            before = [x for x in answer[:i].tolist() if x != HOLD_CODE]
            assert before and before[-1] >= 0


def test_same_seed_same_answer(tiny_folk_model):
    answers = []
    for _ in range(2):
        c, _ = continuer(tiny_folk_model, seed=7)
        c.observe(PHRASE)
        answers.append(c.continue_for(48).tolist())
    assert answers[0] == answers[1]


def test_scale_mask_keeps_the_key(tiny_folk_model):
    g_major = frozenset({7, 9, 11, 0, 2, 4, 6})
    c, _ = continuer(
        tiny_folk_model, seed=3, shift=5, allowed_pitch_classes=g_major, temperature=2.0
    )
    c.observe(PHRASE)
    notes = grid_to_notes(c.continue_for(128))
    assert notes and all(n.pitch % 12 in g_major for n in notes)


def test_warm_state_equals_reading_the_phrase_at_once(tiny_folk_model):
    a, _ = continuer(tiny_folk_model, seed=0)
    b, _ = continuer(tiny_folk_model, seed=0)
    for code in PHRASE.tolist():  # as the daemon does: one step as it is played
        a.observe(code)
    b.observe(PHRASE)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)


def test_wrong_kind_of_model_is_refused(tiny_live_model):
    m = model.load(tiny_live_model)
    with pytest.raises(ValueError, match="not a continuation model"):
        Continuer(m.contract, m.run)
