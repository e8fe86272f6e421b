"""The abc model played live: in process through the engine, and by the daemon over real JACK
ports; and the shipped model's samples parse with music21."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from partimento.core.music.encoding import folk_transposition
from partimento.core.players import abc

from support.daemon import (
    BPM,
    END_SILENCE,
    MODE_CC,
    Daemon,
    Rig,
    human,
    note_ons,
    play,
    write_config,
)
from support.engine import (
    ANSWER,
    answer_a_phrase,
)
from support.engine import PHRASE as ENGINE_PHRASE
from support.project import SHIPPED, require
from support.synth import Synth

PARSE_FLOOR = 0.6
"""Of 20 tunes sampled from the shipped model at temperature 1, at least this share parses with
music21 (measured: see docs/models.md)."""


@pytest.fixture(scope="module")
def abc_model(tmp_path_factory) -> Path:
    """The shipped abc model, else a tiny one trained for the tests."""
    if (SHIPPED / "abc" / "model.onnx").exists():
        return SHIPPED / "abc"
    from support.project import train_tiny

    return train_tiny(
        tmp_path_factory.mktemp("tiny-abc"), "abc", embedding=8, seq_len=32, limit=10, batch_size=8
    )


@pytest.mark.slow
def test_the_engine_primes_with_the_phrase_as_abc_and_answers(bach, abc_model, loader):
    engine = answer_a_phrase(bach, abc_model, loader)[0]
    continuer = engine.active.continuer.player  # the Responder's model player
    assert isinstance(continuer, abc.AbcContinuer)
    assert continuer.shift == folk_transposition(7, 0)  # the phrase is in G major
    body = continuer.text.split("K:C\n", 1)[1]
    heard = [n.pitch for n in abc.read(body).notes][: len(ENGINE_PHRASE)]
    assert heard == [p + continuer.shift for p, _, _ in ENGINE_PHRASE]


@pytest.mark.slow
def test_most_tunes_sampled_from_the_shipped_model_parse_with_music21():
    require((SHIPPED / "abc" / "model.onnx").exists(), "no shipped abc model")
    from partimento.training.styles import abc as style

    problems = [
        style.abc_problem(style.sample_text(SHIPPED / "abc", "X:1\n", 600, 1.0, seed))
        for seed in range(20)
    ]
    parsed = sum(p is None for p in problems)
    assert parsed >= PARSE_FLOOR * len(problems), [p for p in problems if p][:3]


def test_the_daemon_answers_with_the_abc_model_over_jack(
    jack,
    bach,
    abc_model,
    tmp_path,
):
    models = tmp_path / "models"
    models.mkdir()
    (models / "bach").symlink_to(bach)
    (models / "abc").symlink_to(abc_model.resolve())
    path = write_config(tmp_path / "partimento.toml", models)
    path.write_text(
        path.read_text().replace('[continue]\nmodel = "folk"', '[continue]\nmodel = "abc"')
    )
    rig = Rig()
    daemon = Daemon(jack, path, tmp_path)
    try:
        daemon.wait_ready()
        rig.keys.send_message([0xB0, MODE_CC, 127])
        time.sleep(0.2)
        phrase = [
            (67, 0, 2),
            (69, 2, 2),
            (71, 4, 2),
            (72, 6, 2),
            (74, 8, 4),
            (71, 12, 4),
            (72, 16, 4),
            (67, 20, 8),
        ]
        sent = play(rig.keys, human(phrase, BPM, random.Random(3)), time.monotonic() + 0.1)
        phrase_end = sent[-1][0]
        answered = rig.listener.wait_for(
            lambda t, m: m[0] == 0x90 | ANSWER and m[2] > 0, phrase_end, END_SILENCE + 3.0
        )
        assert answered >= phrase_end + END_SILENCE - 0.01, "answered before the silence"
        time.sleep(2 * 4 * 60 / BPM + 0.3)  # the whole two-bar answer
        heard = [m for _, m in rig.listener.since(0)]
        assert note_ons(rig.listener.since(phrase_end), ANSWER)
        assert not Synth().play(heard).keys, "a note left sounding after the answer"
        code, _ = daemon.terminate()
        assert code == 0, daemon.stderr()
        assert "Traceback" not in daemon.stderr()
    finally:
        daemon.kill()
        rig.close()
