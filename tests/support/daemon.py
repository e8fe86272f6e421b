"""``partimento run`` over real JACK ports, from the test's side: a keyboard port and a
synthesizer port offered under the names the daemon's configuration gives (``svc-keys``,
``svc-synth``), a thread hearing everything the daemon sends, stamped with the monotonic clock,
and the daemon itself as a subprocess (``python -m partimento.cli run``) of a private jackd
(:mod:`support.jack`)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from partimento.config import MidiConfig
from partimento.live.midi_io import MidiInput, MidiOutput, open_input, open_output

from support.jack import JACK_BACKEND
from support.project import ROOT

KEYS, SYNTH = "svc-keys", "svc-synth"
"""The test's ports; the daemon finds them by these names (the client's name is the test's)."""
ALTO, TENOR, BASS, ANSWER = 1, 2, 3, 4
HARMONY = (ALTO, TENOR, BASS)
RANGES = {ALTO: (50, 77), TENOR: (45, 72), BASS: (33, 67)}  # bach's voice ranges, +- 3
MODE_CC = 20
BPM = 90.0
END_SILENCE = 0.5
READY_TIMEOUT = 30.0
REPLY_WINDOW = 0.1
"""Seconds after a melody note-on within which its harmony must have arrived."""
BURST = 0.003
"""Messages of one reply arrive within one JACK period (1.3 ms); this much is one burst."""

Timed = list[tuple[float, tuple[int, ...]]]


# -- the test's side: a keyboard, a listening synthesizer, the daemon ---------------------------


class Listener:
    """A thread reading the synthesizer port; ``heard`` is ``(monotonic time, message)``."""

    def __init__(self, port: MidiInput) -> None:
        self.port = port
        self.heard: Timed = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            event = self.port.get_message()
            if event is None:
                time.sleep(0.0002)
                continue
            t = time.monotonic()
            with self._lock:
                self.heard.append((t, tuple(event[0])))

    def since(self, t0: float, t1: float = float("inf")) -> Timed:
        with self._lock:
            return [(t, m) for t, m in self.heard if t0 <= t < t1]

    def wait_for(
        self, test: Callable[[float, tuple[int, ...]], bool], after: float, timeout: float
    ) -> float:
        """The time of the first message after ``after`` that passes ``test``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [t for t, m in self.since(after) if test(t, m)]
            if found:
                return found[0]
            time.sleep(0.005)
        raise AssertionError(f"nothing expected heard within {timeout} s")

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()  # polling: it ends within a sleep; its port is closed after


def play(keys: MidiOutput, events: Timed, start: float) -> Timed:
    """Send ``events`` (times relative to ``start``) at their times; what was sent when."""
    sent: Timed = []
    for at, message in sorted(events, key=lambda e: e[0]):
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        keys.send_message(list(message))
        sent.append((time.monotonic(), message))
    return sent


def human(notes, bpm: float, rng: random.Random, *, legato: float = 0.85) -> Timed:
    """(pitch, start step, length in steps) with onsets up to 10 ms early or late, releases
    a little before the next note, velocities that vary."""
    sps = 60 / (bpm * 4)
    out: Timed = []
    for pitch, start, length in notes:
        on = start * sps + rng.uniform(-0.01, 0.01)
        out += [
            (on, (0x90, pitch, rng.randint(60, 100))),
            (on + length * sps * legato, (0x80, pitch, 64)),
        ]
    return out


def note_ons(timed: Timed, channel: int | None = None) -> Timed:
    return [
        (t, m)
        for t, m in timed
        if m[0] & 0xF0 == 0x90 and m[2] > 0 and (channel is None or m[0] & 0x0F == channel)
    ]


def write_config(path: Path, models: Path, **midi: str) -> Path:
    """The daemon's configuration: models by name from ``models``, the test's ports."""
    midi = {"input": KEYS, "output": SYNTH, **midi}
    path.write_text(
        f'log_level = "info"\nmodels_dir = {json.dumps(str(models))}\n'
        "[midi]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in midi.items())
        + f"[tempo]\nbpm = {BPM}\n"
        '[harmonize]\nmodel = "bach"\n'
        "channels = { alto = 2, tenor = 3, bass = 4 }\n"
        f'[continue]\nmodel = "folk"\nend_silence = {END_SILENCE}\n'
        "bars = 2\nchannel = 5\n"
        f"[control]\nmode_cc = {MODE_CC}\n"
    )
    return path


class Daemon:
    """``python -m partimento.cli run --config ...``, its stdout and stderr in files."""

    def __init__(
        self, jack, config: Path, folder: Path, *, env: dict[str, str] | None = None
    ) -> None:
        self.out, self.err = folder / "stdout.txt", folder / "stderr.txt"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "partimento.cli", "run", "--config", str(config)],
                cwd=ROOT,
                env=jack.env(**(env or {})),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = [x for x in self.stdout().splitlines() if x.startswith("partimento: ready")]
            if lines:
                return lines[0]
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the daemon exited with {self.process.returncode}: {self.stderr()}"
                )
            time.sleep(0.02)
        raise AssertionError(f"no ready line within {timeout} s: {self.stderr()}")

    def wait_log(self, *fragments: str, timeout: float = 4.0) -> str:
        """The first stderr line holding every fragment, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stderr().splitlines():
                if all(f in line for f in fragments):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no log line with {fragments}: {self.stderr()}")

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; the exit code and how long it took."""
        t0 = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(10)
        return code, time.monotonic() - t0

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


class Rig:
    """The test's keyboard and synthesizer ports, and the listener."""

    def __init__(self) -> None:
        self.synth_port = open_input(
            MidiConfig(virtual_input=SYNTH), backend=JACK_BACKEND, client_name="svc-test-synth"
        )
        self.listener = Listener(self.synth_port)
        self.keys = open_output(
            MidiConfig(virtual_output=KEYS), backend=JACK_BACKEND, client_name="svc-test-keys"
        )

    def close(self) -> None:
        self.keys.close()
        self.listener.stop()
        self.synth_port.close()
