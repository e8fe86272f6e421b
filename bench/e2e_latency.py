"""The daemon's latency through real JACK ports, next to a zero-work echo client.

    python bench/e2e_latency.py [--quick]

Starts a private ``jackd --no-realtime -S -d dummy -r 48000 -p 64`` (tests/support/jack.py), a
zero-work echo client (this file with ``--echo``: it polls its input the way
:class:`partimento.live.midi_io.InputReader` does and writes every note-on straight back) and, per
condition, ``python -m partimento.cli run`` with a configuration of its own. The bench plays a
keyboard port and listens on a synthesizer port, stamping with :func:`time.monotonic`.

Harmonize mode, at 5 and 30 melody notes/s, once idle and once with a busy-loop process loading
one core: melody note-on sent → first harmony note-on heard, p50 / p99 / max, for the daemon
and for the echo (a probe halfway between two melody notes, so the two never share a JACK
period), and the daemon's own figures from the summary it logs at stop (arrival stamp → replies
sent, ``Engine.handle`` alone). Continue mode, idle and loaded: phrases played, answers
generated, and the lateness of the answer's notes against their scheduled times (the daemon's
own stamps). Every process the bench starts is stopped by its PID, also on Ctrl-C or an error.

The melody is the soprano of Bach chorales from music21's corpus (else
docs/examples/chorale-melody.mid), one after the other with 1.2 s between them; at 5 notes/s
in the chorale's own rhythm (a mean of 5 note-ons/s), at 30 notes/s as even notes; every note
released at 85 % of its length. Figures are recorded in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # support.jack: the private jackd the tests use

import pytest

from partimento.config import MidiConfig
from partimento.live.midi_io import (
    POLL_INTERVAL,
    MidiInput,
    MidiOutput,
    open_input,
    open_output,
)
from partimento.live.service import percentile

from support.jack import JACK_BACKEND, die_with_parent, jack_server

MODELS = ROOT / "exported_models"
EXAMPLE = ROOT / "docs" / "examples" / "chorale-melody.mid"
CHORALES = (
    "bach/bwv66.6",
    "bach/bwv269",
    "bach/bwv347",
    "bach/bwv153.1",
    "bach/bwv86.6",
    "bach/bwv267",
    "bach/bwv17.7",
    "bach/bwv40.3",
    "bach/bwv254",
)
MELODY_PORT, PROBE_PORT, SYNTH_PORT = "bench-melody", "bench-probe", "bench-synth"
"""The bench's ports: the daemon reads the first, the echo the second, both write the third."""
HARMONY = (1, 2, 3)
"""The daemon's alto, tenor and bass channels (0-based) in the bench's configuration."""
ANSWER, PROBE = 4, 15
"""The continuation's channel; the channel of the echo's probes."""
MODE_CC = 20
LEGATO = 0.85
PHRASE_GAP = 1.2
"""Seconds between two chorales (longer than ``continue.end_silence``: a phrase ends)."""
REPLY_WINDOW = 0.1
"""A reply is looked for up to this long after its note. Replies are told apart by velocity:
each melody note's differs from its neighbours', and its harmony is struck at its velocity."""
READY_TIMEOUT = 30.0
LISTEN_SLEEP = 0.0002
"""The bench's listener polls 2.5 times as often as the daemon; it adds the same to both."""
JACK_UNAVAILABLE = (pytest.skip.Exception, pytest.fail.Exception)
"""What support.jack raises when jackd is missing or does not start (skip; fail under CI)."""
CONTINUE_BPM, CONTINUE_BARS, END_SILENCE = 150.0, 4, 0.5


# --- processes, stopped by PID --------------------------------------------------------------


class Processes:
    """Every process the bench starts; at the end each still running is stopped by its PID
    (SIGTERM, then SIGKILL after 5 s). The kernel also SIGTERMs them if the bench dies."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen] = []

    def start(self, args: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
            **kwargs,
        )
        self._started.append(process)
        return process

    @staticmethod
    def stop(process: subprocess.Popen, timeout: float = 5.0) -> int:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        return process.returncode

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for process in reversed(self._started):
            self.stop(process)


def _exit_on_sigterm() -> None:
    """SIGTERM and SIGINT unwind as KeyboardInterrupt, so every ``with`` block cleans up
    (SIGINT too when the bench was started with it ignored, as in a background job)."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# --- the melody -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    pitch: int
    onset: float  # quarters from the line's start
    length: float  # quarters


def chorale_lines() -> tuple[list[list[Note]], str]:
    """Soprano lines (ties merged) and where they came from."""
    try:
        from music21 import corpus
    except ImportError:
        corpus = None
    if corpus is not None:
        lines = []
        for name in CHORALES:
            line: list[Note] = []
            for n in corpus.parse(name).parts[0].flatten().notes:
                if not n.isNote:
                    continue
                if n.tie is not None and n.tie.type != "start" and line:
                    last = line[-1]
                    line[-1] = Note(last.pitch, last.onset, last.length + float(n.quarterLength))
                    continue
                line.append(Note(n.pitch.midi, float(n.offset), float(n.quarterLength)))
            lines.append(line)
        return (
            lines,
            f"sopranos of {len(lines)} Bach chorales (music21 corpus: "
            f"{', '.join(c.split('/')[1] for c in CHORALES)})",
        )
    from partimento.files.midifile import read_melody

    melody = read_melody(EXAMPLE)
    tpq = melody.ticks_per_beat
    line = [Note(n.pitch, n.start / tpq, (n.end - n.start) / tpq) for n in melody.notes]
    return [line], f"{EXAMPLE.relative_to(ROOT)} (music21 not installed)"


@dataclass(frozen=True)
class Played:
    on: float  # seconds from the start
    off: float
    pitch: int
    velocity: int


def melody(lines: list[list[Note]], count: int, rate: float, *, rhythm: bool) -> list[Played]:
    """``count`` notes at a mean of ``rate`` note-ons/s: the lines' own rhythm scaled, or even
    notes; every velocity differs from its neighbours' (replies are matched by it)."""
    iois = [b.onset - a.onset for line in lines for a, b in itertools.pairwise(line)]
    spq = 1 / rate / (sum(iois) / len(iois))  # seconds per quarter
    out: list[Played] = []
    t = 0.0
    while True:
        for line in lines:
            for k, n in enumerate(line):
                if rhythm:
                    on, length = t + (n.onset - line[0].onset) * spq, n.length * spq
                else:
                    on, length = t + k / rate, 1 / rate
                out.append(Played(on, on + LEGATO * length, n.pitch, 60 + len(out) * 7 % 41))
                if len(out) == count:
                    return out
            t = max(p.off for p in out) + PHRASE_GAP


# --- the bench's ports ----------------------------------------------------------------------


class Listener:
    """A thread polling the synthesizer port; ``heard``: ``(monotonic time, message)``."""

    def __init__(self, port: MidiInput) -> None:
        self.port = port
        self.heard: list[tuple[float, tuple[int, ...]]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        get, sleep, clock = self.port.get_message, time.sleep, time.monotonic
        while not self._stopping.is_set():
            event = get()
            if event is None:
                sleep(LISTEN_SLEEP)
                continue
            t = clock()
            with self._lock:
                self.heard.append((t, tuple(event[0])))

    def since(self, t0: float) -> list[tuple[float, tuple[int, ...]]]:
        with self._lock:
            return [(t, m) for t, m in self.heard if t >= t0]

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(2)


@dataclass
class Rig:
    melody: MidiOutput
    probe: MidiOutput
    synth: MidiInput
    listener: Listener

    @classmethod
    @contextlib.contextmanager
    def open(cls) -> Iterator[Rig]:
        with contextlib.ExitStack() as stack:
            synth = stack.enter_context(
                open_input(
                    MidiConfig(virtual_input=SYNTH_PORT),
                    backend=JACK_BACKEND,
                    client_name="bench-ear",
                )
            )
            listener = Listener(synth)
            stack.callback(listener.stop)
            keys = stack.enter_context(
                open_output(
                    MidiConfig(virtual_output=MELODY_PORT),
                    backend=JACK_BACKEND,
                    client_name="bench-kbd",
                )
            )
            probe = stack.enter_context(
                open_output(
                    MidiConfig(virtual_output=PROBE_PORT),
                    backend=JACK_BACKEND,
                    client_name="bench-kbd2",
                )
            )
            yield cls(keys, probe, synth, listener)


def play(events: list[tuple[float, MidiOutput, list[int]]], start: float) -> list[float]:
    """Send ``events`` (times from ``start``) in time order; the moment after each send."""
    sent = [0.0] * len(events)
    for i in sorted(range(len(events)), key=lambda i: events[i][0]):
        at, port, message = events[i]
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        port.send_message(message)
        sent[i] = time.monotonic()
    return sent


# --- the daemon and its summary -------------------------------------------------------------


def write_config(path: Path, mode: str, *, estimate: bool = True, bpm: float = 100.0) -> Path:
    path.write_text(
        f'mode = "{mode}"\nlog_level = "info"\nmodels_dir = {json.dumps(str(MODELS))}\n'
        f'[midi]\ninput = "{MELODY_PORT}"\noutput = "{SYNTH_PORT}"\n'
        f"[tempo]\nbpm = {bpm}\nestimate = {json.dumps(estimate)}\n"
        '[harmonize]\nmodel = "bach"\nchannels = { alto = 2, tenor = 3, bass = 4 }\n'
        f'[continue]\nmodel = "folk"\nend_silence = {END_SILENCE}\nbars = {CONTINUE_BARS}\n'
        f"channel = {ANSWER + 1}\n[control]\nmode_cc = {MODE_CC}\n"
    )
    return path


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RunningDaemon:
    """``partimento run`` with its output in files; :meth:`stop` stops it by its PID."""

    def __init__(self, process: subprocess.Popen, err: Path) -> None:
        self.process, self.err = process, err
        self._cpu = (time.monotonic(), cpu_seconds(process.pid))

    def cpu_share(self) -> float:
        """Its CPU time since it was ready, as a share of one core's wall time."""
        t, cpu = self._cpu
        return (cpu_seconds(self.process.pid) - cpu) / (time.monotonic() - t)

    def stop(self) -> str:
        """SIGTERM; its ``stopped:`` summary line."""
        code = Processes.stop(self.process, 10)
        lines = [x for x in self.err.read_text().splitlines() if "stopped:" in x]
        if code != 0 or not lines:
            raise RuntimeError(f"the daemon exited with {code}: {self.err.read_text()[-2000:]}")
        return lines[-1]


@contextlib.contextmanager
def running_daemon(
    procs: Processes, env: dict[str, str], config: Path, folder: Path
) -> Iterator[RunningDaemon]:
    """``partimento run`` from its ready line until the block ends (then stopped by PID)."""
    out, err = folder / f"{config.stem}.out", folder / f"{config.stem}.err"
    with out.open("w") as o, err.open("w") as e:
        process = procs.start(
            [sys.executable, "-m", "partimento.cli", "run", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=o,
            stderr=e,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not out.read_text().startswith("partimento: ready"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not start: {err.read_text()[-2000:]}")
            time.sleep(0.02)
        yield RunningDaemon(process, err)
    finally:
        Processes.stop(process)


_STATS = r"(?:p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms|none)"
_SUMMARY = re.compile(
    rf"(\d+) note-ons, arrival to sent {_STATS} \(Engine\.handle {_STATS}\); "
    rf"(\d+) ticks sent, lateness {_STATS}; longest Engine\.tick ([\d.]+) ms"
)


@dataclass
class Summary:
    """The daemon's own figures (ms), from its ``stopped:`` line; None: nothing measured."""

    note_ons: int
    arrival_to_sent: tuple[float, float, float] | None
    handle: tuple[float, float, float] | None
    ticks_sent: int
    lateness: tuple[float, float, float] | None
    longest_tick: float
    line: str = field(repr=False)

    @classmethod
    def parse(cls, line: str) -> Summary:
        m = _SUMMARY.search(line)
        if m is None:
            raise RuntimeError(f"cannot read the daemon's summary: {line}")
        g = m.groups()

        def stats(i: int) -> tuple[float, float, float] | None:
            return None if g[i] is None else (float(g[i]), float(g[i + 1]), float(g[i + 2]))

        return cls(int(g[0]), stats(1), stats(4), int(g[7]), stats(8), float(g[11]), line)


# --- measurements ---------------------------------------------------------------------------


def stats_ms(values: list[float]) -> tuple[float, float, float]:
    return (percentile(values, 50) * 1e3, percentile(values, 99) * 1e3, max(values) * 1e3)


def first_reply(
    heard: list[tuple[float, tuple[int, ...]]], times: list[float], after: float, until: float, test
) -> float | None:
    for i in range(bisect.bisect_left(times, after), len(times)):
        t, m = heard[i]
        if t >= until:
            return None
        if test(m):
            return t - after
    return None


@dataclass
class Harmonize:
    name: str
    notes: int
    echo: list[float]
    daemon: list[float]
    echo_missing: int
    daemon_missing: int
    summary: Summary
    cpu: float


def harmonize_run(
    rig: Rig, procs: Processes, env: dict[str, str], folder: Path, notes: list[Played], name: str
) -> Harmonize:
    config = write_config(folder / f"{slug(name)}.toml", "harmonize")
    with running_daemon(procs, env, config, folder) as daemon_process:
        time.sleep(0.5)
        events: list[tuple[float, MidiOutput, list[int]]] = []
        for i, n in enumerate(notes):
            nxt = notes[i + 1].on if i + 1 < len(notes) else n.off
            probe = n.on + (nxt - n.on) / 2
            events += [
                (n.on, rig.melody, [0x90, n.pitch, n.velocity]),
                (n.off, rig.melody, [0x80, n.pitch, 64]),
                (probe, rig.probe, [0x90 | PROBE, n.pitch, n.velocity]),
                (probe + min(0.05, (nxt - n.on) / 4), rig.probe, [0x80 | PROBE, n.pitch, 64]),
            ]
        start = time.monotonic() + 0.1
        sent = play(events, start)
        time.sleep(0.3)
        cpu = daemon_process.cpu_share()
        summary = Summary.parse(daemon_process.stop())
    heard = rig.listener.since(start)
    times = [t for t, _ in heard]
    daemon, echo = [], []
    for i, n in enumerate(notes):
        on, probe = sent[4 * i], sent[4 * i + 2]
        reply = first_reply(
            heard,
            times,
            on,
            on + REPLY_WINDOW,
            lambda m, n=n: (
                len(m) == 3
                and m[0] & 0xF0 == 0x90
                and m[0] & 0x0F in HARMONY
                and m[2] == n.velocity
            ),
        )
        if reply is not None:
            daemon.append(reply)
        wanted = (0x90 | PROBE, n.pitch, n.velocity)
        back = first_reply(heard, times, probe, probe + REPLY_WINDOW, lambda m, w=wanted: m == w)
        if back is not None:
            echo.append(back)
    return Harmonize(
        name,
        len(notes),
        echo,
        daemon,
        len(notes) - len(echo),
        len(notes) - len(daemon),
        summary,
        cpu,
    )


def echo_alone(rig: Rig, notes: list[Played]) -> list[float]:
    """The probes alone, with no daemon running: the echo's latency under the same load."""
    events: list[tuple[float, MidiOutput, list[int]]] = []
    for n in notes:
        events += [
            (n.on, rig.probe, [0x90 | PROBE, n.pitch, n.velocity]),
            (n.off, rig.probe, [0x80 | PROBE, n.pitch, 64]),
        ]
    start = time.monotonic() + 0.1
    sent = play(events, start)
    time.sleep(0.3)
    heard = rig.listener.since(start)
    times = [t for t, _ in heard]
    out = []
    for i, n in enumerate(notes):
        wanted = (0x90 | PROBE, n.pitch, n.velocity)
        back = first_reply(
            heard, times, sent[2 * i], sent[2 * i] + REPLY_WINDOW, lambda m, w=wanted: m == w
        )
        if back is not None:
            out.append(back)
    return out


@dataclass
class Continue:
    name: str
    phrases: int
    answer_notes: int
    summary: Summary


def continue_run(
    rig: Rig,
    procs: Processes,
    env: dict[str, str],
    folder: Path,
    lines: list[list[Note]],
    rounds: int,
    name: str,
) -> Continue:
    config = write_config(
        folder / f"{slug(name)}.toml", "continue", estimate=False, bpm=CONTINUE_BPM
    )
    spq = 60 / CONTINUE_BPM
    answer_seconds = CONTINUE_BARS * 4 * spq
    with running_daemon(procs, env, config, folder) as daemon_process:
        time.sleep(0.5)
        t0 = time.monotonic()
        for r in range(rounds):
            line = lines[r % len(lines)]
            phrase = [n for n in line if n.onset - line[0].onset < 4]  # a bar or so
            events: list[tuple[float, MidiOutput, list[int]]] = []
            for i, n in enumerate(phrase):
                on = (n.onset - phrase[0].onset) * spq
                velocity = 70 + i * 3
                events += [
                    (on, rig.melody, [0x90, n.pitch, velocity]),
                    (on + LEGATO * n.length * spq, rig.melody, [0x80, n.pitch, 64]),
                ]
            sent = play(events, time.monotonic() + 0.05)
            end = max(sent)
            deadline = end + END_SILENCE + 2.0
            while time.monotonic() < deadline:
                if any(m[0] == 0x90 | ANSWER and m[2] > 0 for _, m in rig.listener.since(end)):
                    break
                time.sleep(0.01)
            time.sleep(answer_seconds + 0.3)
        time.sleep(0.2)
        summary = Summary.parse(daemon_process.stop())
    answered = sum(
        1 for _, m in rig.listener.since(t0) if len(m) == 3 and m[0] == 0x90 | ANSWER and m[2] > 0
    )
    return Continue(name, rounds, answered, summary)


# --- the report -----------------------------------------------------------------------------


def _row(what: str, n: int | str, s: tuple[float, float, float] | None, note: str = "") -> str:
    if s is None:
        return f"| {what} | {n} | - | - | - |{note}"
    return f"| {what} | {n} | {s[0]:.2f} ms | {s[1]:.2f} ms | {s[2]:.2f} ms |{note}"


def report_harmonize(r: Harmonize, alone: list[float]) -> tuple[float, float]:
    echo, daemon = stats_ms(r.echo), stats_ms(r.daemon)
    diff = (daemon[0] - echo[0], daemon[1] - echo[1], daemon[2] - echo[2])
    s = r.summary
    print(f"\n#### {r.name}: {r.notes} melody notes, {r.notes} echo probes\n")
    print("| what | n | p50 | p99 | max |\n|---|---|---|---|---|")
    print(
        _row("echo alone (no daemon running): probe sent → heard back", len(alone), stats_ms(alone))
    )
    print(_row("echo: probe note-on sent → heard back", len(r.echo), echo))
    print(_row("daemon: melody note-on sent → first harmony note-on heard", len(r.daemon), daemon))
    print(_row("daemon − echo (difference of the percentiles)", "", diff))
    print(
        _row(
            "daemon − echo alone (difference of the percentiles)",
            "",
            tuple(d - e for d, e in zip(daemon, stats_ms(alone), strict=True)),
        )
    )
    print(_row("daemon's own stamps: arrival → replies sent", s.note_ons, s.arrival_to_sent))
    print(_row("daemon's own stamps: `Engine.handle` alone", s.note_ons, s.handle))
    print(_row("daemon's own stamps: harmony tick lateness", s.ticks_sent, s.lateness))
    missing = (
        f"{r.daemon_missing} melody notes without a harmony note-on"
        f" within {REPLY_WINDOW * 1e3:.0f} ms, {r.echo_missing} probes not echoed"
    )
    print(
        f"\n{missing}; longest `Engine.tick` {s.longest_tick:.2f} ms; the daemon used "
        f"{r.cpu:.0%} of one core from ready to stop."
    )
    ok50, ok99 = diff[0] <= 0.3, diff[1] <= 1.0
    print(
        f"Target daemon − echo ≤ 0.3 ms at p50: {'met' if ok50 else 'not met'} "
        f"({diff[0]:+.2f} ms); ≤ 1 ms at p99: {'met' if ok99 else 'not met'} "
        f"({diff[1]:+.2f} ms)."
    )
    return diff[0], diff[1]


def report_continue(results: list[Continue]) -> None:
    if not results:
        return
    print(
        f"\n#### Continue mode: answer notes against their scheduled times "
        f"({CONTINUE_BARS} bars at {CONTINUE_BPM:g} BPM, tempo fixed)\n"
    )
    print(
        "| condition | phrases | answer note-ons heard | ticks sent | lateness p50 | p99 | max "
        "| longest `Engine.tick` |\n|---|---|---|---|---|---|---|---|"
    )
    for r in results:
        s = r.summary
        lat = (
            "- | - | -"
            if s.lateness is None
            else f"{s.lateness[0]:.2f} ms | {s.lateness[1]:.2f} ms | {s.lateness[2]:.2f} ms"
        )
        print(
            f"| {r.name} | {r.phrases} | {r.answer_notes} | {s.ticks_sent} | {lat} | "
            f"{s.longest_tick:.2f} ms |"
        )
    for r in results:
        p99 = None if r.summary.lateness is None else r.summary.lateness[1]
        verdict = (
            "not measured"
            if p99 is None
            else "met"
            if p99 <= 1.0
            else f"not met (by {p99 - 1.0:.2f} ms)"
        )
        print(f"\n{r.name}: target lateness p99 ≤ 1 ms: {verdict}.")


# --- the echo client (a subprocess of the bench) --------------------------------------------


def run_echo() -> int:
    """Read ``PROBE_PORT`` as :class:`partimento.live.midi_io.InputReader` does (drain, then sleep
    ``POLL_INTERVAL`` when empty) and write every note-on to ``SYNTH_PORT`` at once."""
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    out = open_output(MidiConfig(output=SYNTH_PORT), backend=JACK_BACKEND, client_name="echo")
    inp = open_input(MidiConfig(input=PROBE_PORT), backend=JACK_BACKEND, client_name="echo")
    print("echo: ready", flush=True)
    get, send, sleep = inp.get_message, out.send_message, time.sleep
    try:
        while not stopping.is_set():
            event = get()
            if event is None:
                sleep(POLL_INTERVAL)
                continue
            data = event[0]
            if len(data) == 3 and data[0] & 0xF0 == 0x90 and data[2] > 0:
                send(data)
    finally:
        inp.close()
        out.close()
    return 0


def start_echo(procs: Processes, env: dict[str, str], folder: Path) -> subprocess.Popen:
    log = folder / "echo.out"
    with log.open("w") as out:
        process = procs.start(
            [sys.executable, str(Path(__file__).resolve()), "--echo"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 10
    while "echo: ready" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the echo client did not start: {log.read_text()[-2000:]}")
        time.sleep(0.02)
    return process


def code_state() -> str:
    """The commit, and the uncommitted change to daemon/ if any (a hash of its diff)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=ROOT,
            text=True,
            capture_output=True,
            timeout=10,
        ).stdout

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    diff = git("diff", "HEAD", "--", "daemon")
    if not diff:
        return f"commit {head}, daemon/ unchanged"
    files = sorted({line[6:] for line in diff.splitlines() if line.startswith("+++ b/")})
    digest = hashlib.sha256(diff.encode()).hexdigest()[:12]
    return f"commit {head} + uncommitted changes to {', '.join(files)} (diff sha256 {digest})"


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="fewer notes and phrases (a smoke run of about a minute)",
    )
    ap.add_argument(
        "--rate",
        type=float,
        action="append",
        choices=(5.0, 30.0),
        help="only this melody rate in notes/s (5 or 30; may be given twice)",
    )
    ap.add_argument(
        "--load",
        choices=("idle", "loaded", "both"),
        default="both",
        help="only the idle or only the loaded conditions",
    )
    ap.add_argument("--no-continue", action="store_true", help="skip the continue mode runs")
    ap.add_argument(
        "--no-harmonize",
        action="store_true",
        help="skip the harmonize runs (and the echo-alone probes)",
    )
    ap.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.echo:
        return run_echo()
    _exit_on_sigterm()
    counts = {5.0: 50, 30.0: 90} if args.quick else {5.0: 200, 30.0: 300}
    probes_alone = counts[30.0] * 2 // 3
    counts = {
        r: n
        for r, n in counts.items()
        if not args.no_harmonize and (not args.rate or r in args.rate)
    }
    loads = {"idle": (False,), "loaded": (True,), "both": (False, True)}[args.load]
    rounds = 1 if args.quick else 5
    lines, source = chorale_lines()
    print(f"melody: {source}")
    state = code_state()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, python {sys.version.split()[0]}, "
        f"load average before: {load_average()}\ncode: {state}"
    )
    t_begin = time.monotonic()
    harmonize: list[Harmonize] = []
    alone: dict[bool, list[float]] = {}
    continued: list[Continue] = []
    try:
        with contextlib.ExitStack() as stack:
            jack = stack.enter_context(jack_server())
            env = jack.env()
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="e2e-")))
            procs = stack.enter_context(Processes())
            rig = stack.enter_context(Rig.open())
            start_echo(procs, env, folder)
            for loaded in loads:
                busy = None
                if loaded:
                    busy = procs.start([sys.executable, "-c", "while True: pass"])
                    time.sleep(0.5)
                label = "one core loaded" if loaded else "idle"
                if counts:
                    print(f"... echo alone, {label}", flush=True)
                    alone[loaded] = echo_alone(rig, melody(lines, probes_alone, 30.0, rhythm=False))
                for rate, count in counts.items():
                    notes = melody(lines, count, rate, rhythm=rate < 10)
                    name = f"{rate:g} notes/s, {label}"
                    print(f"... {name}", flush=True)
                    harmonize.append(harmonize_run(rig, procs, env, folder, notes, name))
                if not args.no_continue:
                    print(f"... continue mode, {label}", flush=True)
                    continued.append(
                        continue_run(rig, procs, env, folder, lines, rounds, f"continue, {label}")
                    )
                if busy is not None:
                    Processes.stop(busy)
    except JACK_UNAVAILABLE as exc:
        print(f"e2e_latency: cannot run: {exc.msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("e2e_latency: interrupted; every process started was stopped", file=sys.stderr)
        return 130
    print(
        f"\nThe bench took {time.monotonic() - t_begin:.0f} s; load average after: {load_average()}"
    )
    if code_state() != state:
        print(f"WARNING: the daemon's code changed during the run: now {code_state()}")
    print("\n### Harmonize mode")
    for r in harmonize:
        report_harmonize(r, alone["loaded" in r.name])
    report_continue(continued)
    print("\nDaemon summary lines:")
    for r in [*harmonize, *continued]:
        print(f"  {r.name}: {r.summary.line.split('stopped: ', 1)[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
