"""``partimento run`` over real JACK ports: the daemon as a subprocess of a private jackd
(tests/support/jack.py), with ``MIDO_BACKEND=mido.backends.rtmidi/UNIX_JACK``. The test offers two
virtual ports, a keyboard (``svc-keys``) and a synthesizer (``svc-synth``); the daemon opens them
by name, which connects them. A thread in the test hears everything the daemon sends, stamped
with the monotonic clock; a strict synthesizer replays it at the end.

Skipped without jackd, failed without it under CI."""

from __future__ import annotations

import asyncio
import random
import statistics
import subprocess
import sys
import time

import pytest

from partimento.config import MidiConfig, load
from partimento.core.music.encoding import grid_to_notes
from partimento.engine.engine import Engine
from partimento.live.midi_io import open_input, open_output
from partimento.live.service import Ready, serve

from support.daemon import (
    ALTO,
    ANSWER,
    BPM,
    BURST,
    END_SILENCE,
    HARMONY,
    KEYS,
    MODE_CC,
    RANGES,
    READY_TIMEOUT,
    REPLY_WINDOW,
    SYNTH,
    Daemon,
    Listener,
    Rig,
    human,
    note_ons,
    play,
    write_config,
)
from support.jack import JACK_BACKEND
from support.project import ROOT
from support.synth import Synth

# -- the tests --------------------------------------------------------------------------------


def test_harmonize_continue_interrupt_and_stop(jack, models, chorales, tmp_path):
    config = write_config(tmp_path / "partimento.toml", models)
    rig = Rig()
    daemon = Daemon(jack, config, tmp_path)
    try:
        ready = daemon.wait_ready()
        assert ready.startswith("partimento: ready (mode harmonize, model bach, in ")
        assert f"{KEYS}, out " in ready and ready.endswith(f"{SYNTH})")
        listener, keys = rig.listener, rig.keys
        rng = random.Random(7)
        time.sleep(0.1)

        # harmonize: a real chorale's soprano, 16 notes at about 90 BPM
        soprano = grid_to_notes(chorales["test"][0].voices[0])[:16]
        first = soprano[0].start
        notes = [(n.pitch, n.start - first, n.length) for n in soprano]
        sent = play(keys, human(notes, BPM, rng), time.monotonic() + 0.1)
        time.sleep(0.3)
        melody = note_ons(sent)
        assert len(melody) == 16
        full, latency = 0, []
        for t, m in melody:
            reply = [
                (th, mh)
                for th, mh in note_ons(listener.since(t, t + REPLY_WINDOW))
                if mh[0] & 0x0F in HARMONY
            ]
            assert reply, f"no harmony for melody note {m} within {REPLY_WINDOW} s"
            burst = [mh for th, mh in reply if th <= reply[0][0] + BURST]
            latency.append(reply[0][0] - t)
            channels = sorted(mh[0] & 0x0F for mh in burst)
            full += channels == list(HARMONY)
            assert all(mh[2] == m[2] for mh in burst), "harmony velocity is the melody's"
        assert full >= 14, f"only {full} of 16 melody notes got alto, tenor and bass at once"
        harmony_part = listener.since(melody[0][0] - 0.01)
        struck = note_ons(harmony_part)
        assert {m[0] & 0x0F for _, m in struck} == set(HARMONY)
        for ch in HARMONY:
            low, high = RANGES[ch]
            pitches = [m[1] for _, m in struck if m[0] & 0x0F == ch]
            inside = sum(low <= p <= high for p in pitches)
            assert inside >= 0.95 * len(pitches), f"channel {ch + 1}: {sorted(pitches)}"
        synth = Synth().play(m for _, m in listener.since(0))
        assert not synth.keys, "harmony left sounding after the melody ended"

        # continue: switch by CC, a phrase, silence, an answer
        keys.send_message([0xB0, MODE_CC, 127])
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
        sent = play(keys, human(phrase, BPM, rng), time.monotonic() + 0.1)
        phrase_end = sent[-1][0]
        answered = listener.wait_for(
            lambda t, m: m[0] == 0x90 | ANSWER and m[2] > 0, phrase_end, END_SILENCE + 3.0
        )
        assert answered >= phrase_end + END_SILENCE - 0.01, "answered before the silence"
        second = listener.wait_for(
            lambda t, m: m[0] == 0x90 | ANSWER and m[2] > 0, answered + 0.001, 3.0
        )

        # playing again interrupts the answer: its notes are released at once
        cut = play(keys, [(0, (0x90, 60, 80))], time.monotonic())[0][0]
        time.sleep(0.3)
        before = Synth().play(m for _, m in listener.since(0, cut))
        assert before.on(ANSWER), "an answer note was sounding when the player came in"
        assert second < cut
        after = Synth().play(m for _, m in listener.since(0, cut + 0.05))
        assert not after.on(ANSWER), "the answer's notes were not released at once"
        assert not note_ons(listener.since(cut), ANSWER), "the answer went on"

        # back to harmonize, a melody note held, and SIGTERM
        keys.send_message([0xB0, MODE_CC, 0])
        keys.send_message([0x80, 60, 64])
        time.sleep(0.1)
        keys.send_message([0x90, 72, 90])
        time.sleep(0.25)
        held = Synth().play(m for _, m in listener.since(0))
        assert {c for c, _ in held.keys} == set(HARMONY)
        stopped_at = time.monotonic()
        code, took = daemon.terminate()
        time.sleep(0.1)
        assert code == 0, daemon.stderr()
        assert took < 3.0
        last = [m for _, m in listener.since(stopped_at)]
        everything = [m for _, m in listener.since(0)]
        assert not Synth().play(everything).keys, "a note left sounding after the stop"
        for ch in (*HARMONY, ANSWER):
            assert (0xB0 | ch, 123, 0) in last and (0xB0 | ch, 64, 0) in last
        err = daemon.stderr()
        assert "Traceback" not in err
        summary = [x for x in err.splitlines() if "stopped:" in x]
        assert summary, err
        q = statistics.quantiles(latency, n=100) if len(latency) > 1 else latency * 99
        print(
            f"\n{ready}\nmelody note-on to first harmony note-on, heard by the test: p50 "
            f"{q[49] * 1e3:.2f} ms, p99 {q[98] * 1e3:.2f} ms; SIGTERM to exit "
            f"{took * 1e3:.0f} ms\ndaemon: {summary[0]}"
        )
    finally:
        daemon.kill()
        rig.close()


def test_a_lost_port_is_reopened_and_the_daemon_keeps_playing(jack, models, tmp_path):
    config = write_config(tmp_path / "partimento.toml", models)
    rig = Rig()
    daemon = Daemon(jack, config, tmp_path)
    try:
        daemon.wait_ready()
        time.sleep(0.1)
        rig.keys.send_message([0x90, 72, 80])
        rig.listener.wait_for(lambda t, m: m[0] & 0xF0 == 0x90, 0, 2.0)

        # the synthesizer goes away: one line, and the daemon keeps running
        rig.listener.stop()
        rig.synth_port.close()
        daemon.wait_log("MIDI output", "is gone")
        assert daemon.process.poll() is None, daemon.stderr()
        # it comes back under the same name: reopened, silenced first
        rig.synth_port = open_input(
            MidiConfig(virtual_input=SYNTH), backend=JACK_BACKEND, client_name="svc-test-synth"
        )
        rig.listener = Listener(rig.synth_port)
        rig.listener.wait_for(lambda t, m: m[:2] == (0xB0 | ALTO, 123), 0, 3.0)
        daemon.wait_log("MIDI output", "reopened")
        rig.keys.send_message([0x80, 72, 64])

        # the keyboard goes away and comes back
        rig.keys.close()
        daemon.wait_log("MIDI input", "is gone")
        rig.keys = open_output(
            MidiConfig(virtual_output=KEYS), backend=JACK_BACKEND, client_name="svc-test-keys"
        )
        daemon.wait_log("MIDI input", "reopened")
        time.sleep(0.05)
        t = time.monotonic()
        rig.keys.send_message([0x90, 74, 80])
        rig.listener.wait_for(lambda th, m: m[0] & 0xF0 == 0x90 and m[0] & 0x0F in HARMONY, t, 2.0)
        code, took = daemon.terminate()
        assert code == 0 and took < 3.0, daemon.stderr()
        assert "Traceback" not in daemon.stderr()
        time.sleep(0.1)
        assert not Synth().play(m for _, m in rig.listener.since(0)).keys
    finally:
        daemon.kill()
        rig.close()


def test_an_error_in_a_task_still_releases_every_note(jack, models, tmp_path, monkeypatch):
    """In process: the scheduler's tick fails while harmony sounds; serve raises that error,
    after sending the release messages and closing the ports."""
    config = load(write_config(tmp_path / "partimento.toml", models, api="jack"))
    real_tick = Engine.tick

    def failing_tick(self, now):
        if len(self.stage.ledger):
            raise RuntimeError("tick failed")
        return real_tick(self, now)

    monkeypatch.setattr(Engine, "tick", failing_tick)
    rig = Rig()

    async def main() -> Ready:
        ready: asyncio.Future[Ready] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(config, on_ready=ready.set_result))
        info = await asyncio.wait_for(ready, READY_TIMEOUT)
        await asyncio.sleep(0.1)
        rig.keys.send_message([0x90, 72, 80])
        with pytest.raises(RuntimeError, match=r"^tick failed$"):
            await asyncio.wait_for(task, 3)
        return info

    try:
        info = asyncio.run(main())
        time.sleep(0.1)
        heard = [m for _, m in rig.listener.since(0)]
    finally:
        rig.close()
    assert info.line.endswith(f"out svc-test-synth:{SYNTH})")
    assert {m[0] & 0x0F for _, m in note_ons(rig.listener.heard)} == set(HARMONY)
    assert not Synth().play(heard).keys, "a note left sounding after the error"
    assert (0xB0 | ALTO, 123, 0) in heard


def test_a_missing_port_or_bad_config_is_one_line(jack, models, tmp_path):
    config = write_config(tmp_path / "partimento.toml", models, output="no-such-synth")
    out = subprocess.run(
        [sys.executable, "-m", "partimento.cli", "run", "--config", str(config)],
        cwd=ROOT,
        env=jack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1].startswith(
        "partimento: error: no MIDI output matches 'no-such-synth' (outputs: "
    ), out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""

    bad = tmp_path / "bad.toml"
    bad.write_text("[midi]\ninput_channel = 17\n")
    out = subprocess.run(
        [sys.executable, "-m", "partimento.cli", "run", "--config", str(bad)],
        cwd=ROOT,
        env=jack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        'partimento: error: midi.input_channel: must be a MIDI channel 1-16 or "all", got 17'
    ]
