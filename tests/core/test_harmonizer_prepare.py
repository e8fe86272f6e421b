"""Answering a step in advance gives the answer the model would give, and only for its state."""

import threading

import pytest

from partimento.core.players.harmonizer import HarmonizerSettings, LiveHarmonizer
from partimento.files import model

from support.project import SHIPPED, require

GREEDY = HarmonizerSettings(temperature=1e-4, candidates=1)  # argmax, whatever the draws


@pytest.fixture(scope="module")
def bach():
    require((SHIPPED / "bach" / "model.onnx").exists(), "no shipped bach model")
    return model.load("bach")


def test_prepared_answers_equal_computed_ones(bach, chorales):
    c = chorales["test"][3]
    direct = LiveHarmonizer(bach.contract, bach.run, settings=GREEDY, mode=c.mode, seed=0)
    ahead = LiveHarmonizer(bach.contract, bach.run, settings=GREEDY, mode=c.mode, seed=0)
    for i in range(c.steps):
        p, f, s = int(c.position[i]), int(c.fermata[i]), int(c.voices[0][i])
        ahead.prepare(p, f)
        assert ahead.step(s, p, f) == direct.step(s, p, f), f"step {i}"
    assert ahead.prepared_hits == c.steps and direct.prepared_hits == 0


def test_an_answer_for_another_state_or_position_is_not_used(bach):
    h = LiveHarmonizer(bach.contract, bach.run, seed=0)
    h.prepare(0)
    h.step(67, 0)  # used: the state it was made for
    assert h.prepared_hits == 1
    h.prepare(1)
    h.step(69, 2)  # another bar position than prepared for
    h.step(-2, 3)  # the state moved on since the last prepare
    assert h.prepared_hits == 1
    h.prepare(4)
    h.mode = 1  # minor now: the answers were for major
    h.step(71, 4)
    assert h.prepared_hits == 1


def test_prepare_in_another_thread_while_stepping(bach):
    """The daemon prepares in a worker thread; stepping meanwhile stays correct."""
    h = LiveHarmonizer(bach.contract, bach.run, settings=GREEDY, seed=0)
    ref = LiveHarmonizer(bach.contract, bach.run, settings=GREEDY, seed=0)
    melody = [67, -2, 69, -2, 71, -2, -2, -2, 72, -2, 71, -2, 69, -2, 67, -2] * 4
    for i, s in enumerate(melody):
        t = threading.Thread(target=h.prepare, args=((i + 1) % 16,))
        t.start()
        got = h.step(s, i % 16)
        t.join()
        assert got == ref.step(s, i % 16), f"step {i}"


def test_numpy_heads_choose_what_the_graph_would(bach, chorales):
    """The tenor and alto heads in numpy (heads.npz) instead of two more graph runs: the same
    chords, sampled with the same draws, over a whole chorale."""
    assert bach.heads is not None
    c = chorales["test"][5]
    fast = LiveHarmonizer(bach.contract, bach.run, mode=c.mode, seed=3, heads=bach.heads)
    graph = LiveHarmonizer(bach.contract, bach.run, mode=c.mode, seed=3)
    for i in range(c.steps):
        p, f, s = int(c.position[i]), int(c.fermata[i]), int(c.voices[0][i])
        assert fast.step(s, p, f) == graph.step(s, p, f), f"step {i}"


def test_a_melody_note_never_stands_alone(bach, chorales):
    """However hot the sampling, while the melody sounds every harmony voice sounds too: no
    rest, and no hold of a silent voice (which a player hears as a melody left bare)."""
    hot = HarmonizerSettings(temperature=3.0)
    bare = 0
    for c in chorales["test"][:6]:
        h = LiveHarmonizer(bach.contract, bach.run, settings=hot, mode=c.mode, seed=1)
        for i in range(c.steps):
            s = int(c.voices[0][i])
            h.step(s, int(c.position[i]), int(c.fermata[i]))
            bare += s >= 0 and min(h.sounding[1:]) < 0
    assert bare == 0
