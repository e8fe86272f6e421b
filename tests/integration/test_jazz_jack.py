"""A jazz model played by ``partimento run`` in continue mode over real JACK ports: a phrase,
the answer heard on the continue channel, cut short by playing again, nothing left sounding
after SIGTERM. The daemon runs as a subprocess of a private jackd (tests/support/jack.py); the
model is a tiny one trained on generated MIDI files, so the test needs no data set.

Skipped without jackd, failed without it under CI."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from support.daemon import (
    KEYS,
    SYNTH,
    Daemon,
    Rig,
    human,
    note_ons,
    play,
)
from support.project import SHIPPED, require, train_tiny
from support.songs import write_song
from support.synth import Synth

ANSWER = 4  # channel 5
BPM = 90.0
END_SILENCE = 0.5


@pytest.fixture(scope="module")
def tiny_jazz(tmp_path_factory) -> Path:
    songs = tmp_path_factory.mktemp("songs")
    rng = random.Random(5)
    for i in range(12):
        write_song(songs / f"tune{i:02d}.mid", rng)
    return train_tiny(
        tmp_path_factory.mktemp("tiny-jazz"), "jazz", embedding=8, seq_len=16, data_dir=str(songs)
    )


def write_config(path: Path, model: Path) -> Path:
    path.write_text(
        f'mode = "continue"\nlog_level = "info"\nmodels_dir = {json.dumps(str(SHIPPED))}\n'
        f'[midi]\ninput = "{KEYS}"\noutput = "{SYNTH}"\n'
        f"[tempo]\nbpm = {BPM}\nestimate = false\n"
        '[harmonize]\nmodel = "bach"\n'
        f"[continue]\nmodel = {json.dumps(str(model))}\nend_silence = {END_SILENCE}\n"
        f"bars = 2\nchannel = {ANSWER + 1}\n"
    )
    return path


def answer_on(t: float, m: tuple[int, ...]) -> bool:
    return m[0] == 0x90 | ANSWER and m[2] > 0


def test_a_jazz_model_answers_over_jack_and_is_interrupted(jack, tiny_jazz, tmp_path):
    require((SHIPPED / "bach" / "model.onnx").exists(), "no shipped bach model")
    config = write_config(tmp_path / "partimento.toml", tiny_jazz)
    rig = Rig()
    daemon = Daemon(jack, config, tmp_path)
    try:
        ready = daemon.wait_ready()
        assert ready.startswith("partimento: ready (mode continue, model "), ready
        listener, keys = rig.listener, rig.keys
        time.sleep(0.1)
        phrase = [
            (62, 0, 2),
            (65, 2, 2),
            (69, 4, 2),
            (72, 6, 2),
            (71, 8, 4),
            (67, 12, 4),
            (65, 16, 4),
            (62, 20, 8),
        ]
        sent = play(keys, human(phrase, BPM, random.Random(3)), time.monotonic() + 0.1)
        end = sent[-1][0]
        first = listener.wait_for(answer_on, end, END_SILENCE + 3.0)
        assert first >= end + END_SILENCE - 0.01, "answered before the phrase had ended"
        assert not note_ons(listener.since(sent[0][0], end), ANSWER), "answered mid-phrase"
        second = listener.wait_for(answer_on, first + 0.001, 3.0)

        # the player comes in while an answer note sounds: released at once, no more answer
        time.sleep(max(0.0, second + 0.03 - time.monotonic()))
        cut = play(keys, [(0, (0x90, 60, 80))], time.monotonic())[0][0]
        time.sleep(0.4)
        assert Synth().play(m for _, m in listener.since(0, cut)).on(ANSWER)
        assert not Synth().play(m for _, m in listener.since(0, cut + 0.05)).on(ANSWER)
        assert not note_ons(listener.since(cut), ANSWER), "the answer went on"
        keys.send_message([0x80, 60, 64])

        code, took = daemon.terminate()
        time.sleep(0.1)
        assert code == 0 and took < 3.0, daemon.stderr()
        assert not Synth().play(m for _, m in listener.since(0)).keys
        assert "Traceback" not in daemon.stderr()
    finally:
        daemon.kill()
        rig.close()
