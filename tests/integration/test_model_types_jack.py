"""The transformer and the GAN play ``continue`` mode in ``partimento run`` over real JACK
ports: the daemon as a subprocess (the rig of tests/support/daemon.py), its continuation model
a tiny folk model of that type. Skipped without jackd, failed without it under CI."""

from __future__ import annotations

import random
import shutil
import time

import pytest

from support.daemon import (
    ANSWER,
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
from support.model_types import tiny_model
from support.project import SHIPPED, require
from support.synth import Synth


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["transformer", "gan"])
def test_the_daemon_answers_with_a_transformer_or_a_gan(jack, kind, tmp_path):
    require((SHIPPED / "bach" / "model.onnx").exists(), "no shipped bach model")
    models = tmp_path / "models"
    models.mkdir()
    (models / "bach").symlink_to(SHIPPED / "bach", target_is_directory=True)
    shutil.copytree(tiny_model(kind), models / "folk")  # the config's continue model
    config = write_config(tmp_path / "partimento.toml", models)
    rig = Rig()
    daemon = Daemon(jack, config, tmp_path)
    try:
        daemon.wait_ready()
        keys, listener = rig.keys, rig.listener
        time.sleep(0.1)
        keys.send_message([0xB0, MODE_CC, 127])  # continue mode
        time.sleep(0.2)
        phrase = [(67, 0, 2), (69, 2, 2), (71, 4, 2), (72, 6, 2), (74, 8, 4), (67, 12, 4)]
        sent = play(keys, human(phrase, BPM, random.Random(3)), time.monotonic() + 0.1)
        end = sent[-1][0]
        answered = listener.wait_for(
            lambda t, m: m[0] == 0x90 | ANSWER and m[2] > 0, end, END_SILENCE + 3.0
        )
        assert answered >= end + END_SILENCE - 0.01, "answered before the silence"
        time.sleep(8 * 60 / BPM + 0.3)  # the two bars of the answer
        answer = note_ons(listener.since(end), ANSWER)
        assert answer and all(m[0] & 0x0F == ANSWER for _, m in answer)
        code, _ = daemon.terminate()
        assert code == 0, daemon.stderr()
        assert not Synth().play(m for _, m in listener.since(0)).keys, "a note left sounding"
        assert "Traceback" not in daemon.stderr()
    finally:
        daemon.kill()
        rig.close()
