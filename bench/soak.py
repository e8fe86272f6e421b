"""A soak run: the daemon harmonizing 20 melody notes/s for 10 minutes over real JACK ports.

    python bench/soak.py [--minutes 10] [--rate 20] [--dump notes.jsonl]

What it checks (the issue's bench, not CI): over a long run at a high note rate the daemon's
resident memory does not creep (VmRSS growth ≤ 10 MB) and its latency stays steady.

How: as bench/e2e_latency.py (whose pieces it imports) it starts a private ``jackd
--no-realtime -S -d dummy -r 48000 -p 64`` (tests/support/jack.py), the bench's keyboard and
synthesizer ports, and ``python -m partimento.cli run`` in harmonize mode with the shipped
``bach`` model. A player thread plays the sopranos of 9 Bach chorales one after the other
as even notes at ``--rate`` notes/s, each released at 85 % of its length, with a pause of
:data:`PAUSE` seconds at the first chorale boundary after every :data:`PAUSE_EVERY` seconds
of playing (a phrase ends, as between two pieces), for ``--minutes`` minutes.

Each minute (notes by their scheduled onset) the bench prints one line: notes sent, notes
with full harmony (alto, tenor and bass note-ons heard within 100 ms, matched by channel and
by the velocity, which differs from the neighbouring notes'), notes with no harmony note-on
at all, the latency melody note-on sent → first harmony note-on heard (p50 / p99 / max,
stamped by the bench with :func:`time.monotonic`), how late the bench's own player sent
(a starved player sends a burst; notes less than ``CHORD_SECONDS`` apart are one chord to the
daemon, harmonized under the top note only), the daemon's ``VmRSS``, ``VmHWM`` and
``RssAnon`` from ``/proc/PID/status``, its CPU share over the minute (``utime + stime`` from
``/proc/PID/stat``), the machine's CPU use (``/proc/stat``) and its load average.

At the end: RSS growth from minute 1 to the last minute and from ready to the end, the p99
of the first minute against the last, the notes without (full) harmony, the daemon's own
``stopped:`` summary (arrival → sent, ``Engine.handle``, steps answered ahead), and a strict
account of every message the daemon sent (as tests/support/synth.py: a note-on for a sounding key, a
note-off for a silent one or any other message is counted as a fault; all-notes-off silences
its channel) with the keys left sounding after its SIGTERM. Targets: VmRSS growth from
minute 1 to the last minute ≤ 10 MB; p99 steady, defined as the last minute's p99 within
max(1 ms, 50 % of the first minute's p99) of the first minute's, either way.

Every process it starts is stopped by its PID, also on Ctrl-C or an error. Figures are
recorded in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from e2e_latency import (
    CHORALES,
    HARMONY,
    JACK_UNAVAILABLE,
    LEGATO,
    REPLY_WINDOW,
    MidiOutput,
    Note,
    Played,
    Processes,
    Rig,
    RunningDaemon,
    Summary,
    _exit_on_sigterm,
    chorale_lines,
    code_state,
    cpu_seconds,
    jack_server,
    load_average,
    running_daemon,
    stats_ms,
    write_config,
)
from footprint import status

from partimento.engine.harmonize import CHORD_SECONDS

PAUSE = 3.0
"""Seconds of silence between two chorales, once per :data:`PAUSE_EVERY` seconds of playing."""
PAUSE_EVERY = 30.0
RSS_TARGET_MB = 10.0
P99_STEADY_MS, P99_STEADY_SHARE = 1.0, 0.5
"""p99 steady: the last minute's within max(1 ms, 50 % of the first's) of the first minute's."""
LATE = 1.0
"""A note without harmony within :data:`REPLY_WINDOW`: its harmony is looked for this long."""
SETTLE = 0.5
"""Seconds between the daemon's ready line and the first note (and after the last one)."""
STEADY_DEFINITION = (
    f"the last minute's p99 within max({P99_STEADY_MS:g} ms, "
    f"{P99_STEADY_SHARE:.0%} of the first minute's p99) of the first "
    "minute's, either way"
)


# --- the melody -----------------------------------------------------------------------------


def schedule(lines: list[list[Note]], rate: float, seconds: float) -> list[Played]:
    """Even notes at ``rate`` notes/s, the lines one after the other (and round again), a
    pause of :data:`PAUSE` s at the first line boundary after every :data:`PAUSE_EVERY` s;
    every note-on before ``seconds``. Velocities differ from the neighbours' (as
    :func:`e2e_latency.melody`): replies are matched by them."""
    out: list[Played] = []
    t = last_pause = 0.0
    while True:
        for line in lines:
            for n in line:
                if t >= seconds:
                    return out
                out.append(Played(t, t + LEGATO / rate, n.pitch, 60 + len(out) * 7 % 41))
                t += 1 / rate
            if t - last_pause >= PAUSE_EVERY:
                t += PAUSE
                last_pause = t


class Player:
    """A thread sending the melody at its times from ``start``; ``sent[i]``: the moment after
    note ``i``'s note-on was sent (0.0 until then)."""

    def __init__(self, port: MidiOutput, notes: list[Played], start: float) -> None:
        self.port, self.start = port, start
        self.events = sorted(
            [(n.on, i, [0x90, n.pitch, n.velocity]) for i, n in enumerate(notes)]
            + [(n.off, -1, [0x80, n.pitch, 64]) for n in notes],
            key=lambda e: e[0],
        )
        self.sent = [0.0] * len(notes)
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="player", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for at, i, message in self.events:
                delay = self.start + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # as e2e_latency.play (at most a pause, 3 s)
                if self._stopping.is_set():
                    return
                self.port.send_message(message)
                if i >= 0:
                    self.sent[i] = time.monotonic()
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)


# --- per-minute figures ---------------------------------------------------------------------


class Machine:
    """CPU use of the whole machine between two calls (``/proc/stat``)."""

    def __init__(self) -> None:
        self._last = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    def busy(self) -> float:
        """Busy share of all cores since the last call."""
        busy, total = self._read()
        share = (busy - self._last[0]) / max(1, total - self._last[1])
        self._last = (busy, total)
        return share


@dataclass
class Minute:
    index: int  # 1-based
    sent: int
    full: int
    none: int
    latencies: list[float]  # seconds, notes with a harmony note-on
    late: list[float | None]  # notes without: their first harmony note-on (s) within 1 s
    chorded: int  # notes without harmony sent < CHORD_SECONDS after the previous note-on
    send_late: list[float]  # the player's own lateness, sent - scheduled (s)
    missing_voices: Counter[int]  # channel → notes with harmony but none on it
    rss: dict[str, int]  # kB
    cpu: float  # share of one core
    machine: float  # share of all cores
    load: str

    @property
    def p99(self) -> float:
        return stats_ms(self.latencies)[1] if self.latencies else float("nan")

    def row(self) -> str:
        lat = (
            "- | - | -"
            if not self.latencies
            else " | ".join(f"{x:.2f} ms" for x in stats_ms(self.latencies))
        )
        return (
            f"| {self.index} | {self.sent} | {self.full} | {self.none} ({self.chorded}) | "
            f"{lat} | {max(self.send_late, default=0) * 1e3:.0f} ms | "
            f"{mb(self.rss['VmRSS'])} | {mb(self.rss['VmHWM'])} | {mb(self.rss['RssAnon'])} "
            f"| {self.cpu:.0%} | {self.machine:.0%} | {self.load} |"
        )


HEADER = (
    "| minute | notes sent | full harmony | no harmony (sent as a chord) | p50 | p99 | max "
    "| bench's send lateness max | VmRSS | VmHWM | RssAnon | daemon CPU (one core) "
    "| machine CPU (2 cores) | load avg |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def mb(kb: int) -> str:
    return f"{kb / 1024:.1f} MB"


def replies(
    heard: list[tuple[float, tuple[int, ...]]],
    times: list[float],
    after: float,
    velocity: int,
    window: float = REPLY_WINDOW,
) -> tuple[float | None, set[int]]:
    """The first harmony note-on at ``velocity`` within ``window`` after ``after`` (seconds
    after it) and the harmony channels struck at it in the window."""
    first, channels = None, set()
    for i in range(bisect.bisect_left(times, after), len(times)):
        t, m = heard[i]
        if t >= after + window:
            break
        if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] == velocity and m[0] & 0x0F in HARMONY:
            if first is None:
                first = t - after
            channels.add(m[0] & 0x0F)
    return first, channels


def measure_minute(
    index: int,
    notes: list[Played],
    player: Player,
    rig: Rig,
    daemon: RunningDaemon,
    cpu_mark: tuple[float, float],
    machine: Machine,
    dump_to: Path | None,
) -> tuple[Minute, tuple[float, float]]:
    """Minute ``index`` (1-based): the notes whose onset falls in it; the daemon's memory now
    and its CPU share since ``cpu_mark`` (time, CPU seconds), and the new mark. With
    ``dump_to``, one JSON line per note is appended to it: index, sent (s from the start),
    latency (s, or null), harmony channels heard."""
    pid = daemon.process.pid
    now, cpu = time.monotonic(), cpu_seconds(pid)
    rss = status(pid)
    share = (cpu - cpu_mark[1]) / (now - cpu_mark[0])
    lo, hi = (index - 1) * 60.0, index * 60.0
    mine = [i for i, n in enumerate(notes) if lo <= n.on < hi]
    dump: list[tuple[int, float, float | None, list[int]]] = []
    heard = rig.listener.since(player.start + lo - 0.01)
    times = [t for t, _ in heard]
    latencies: list[float] = []
    full = none = 0
    missing: Counter[int] = Counter()
    late: list[float | None] = []
    chorded = 0
    for i in mine:
        first, channels = replies(heard, times, player.sent[i], notes[i].velocity)
        dump.append((i, player.sent[i] - player.start, first, sorted(channels)))
        if first is None:
            none += 1
            chorded += i > 0 and player.sent[i] - player.sent[i - 1] < CHORD_SECONDS
            late.append(replies(heard, times, player.sent[i], notes[i].velocity, LATE)[0])
            continue
        latencies.append(first)
        if channels == set(HARMONY):
            full += 1
        missing.update(set(HARMONY) - channels)
    sent = sum(1 for i in mine if player.sent[i] > 0)
    send_late = [player.sent[i] - player.start - notes[i].on for i in mine if player.sent[i]]
    minute = Minute(
        index,
        sent,
        full,
        none,
        latencies,
        late,
        chorded,
        send_late,
        missing,
        rss,
        share,
        machine.busy(),
        load_average(),
    )
    if dump_to is not None:
        with dump_to.open("a") as f:
            f.writelines(json.dumps(d) + "\n" for d in dump)
    return minute, (now, cpu)


# --- strict accounting of what the daemon sent ----------------------------------------------


@dataclass
class Account:
    """Every message heard, played on a strict synthesizer (tests/support/synth.py's rules, counted
    instead of failing)."""

    sounding: set[tuple[int, int]] = field(default_factory=set)
    own_off: set[tuple[int, int]] = field(default_factory=set)  # left to all-notes-off
    faults: Counter[str] = field(default_factory=Counter)
    note_ons: int = 0
    note_offs: int = 0

    def play(self, messages: list[tuple[int, ...]]) -> Account:
        for m in messages:
            kind, ch = m[0] & 0xF0, m[0] & 0x0F
            if len(m) == 3 and kind == 0x90 and m[2] > 0:
                self.note_ons += 1
                if (ch, m[1]) in self.sounding:
                    self.faults["note-on for a sounding key"] += 1
                self.sounding.add((ch, m[1]))
            elif len(m) == 3 and kind in (0x80, 0x90):
                self.note_offs += 1
                if (ch, m[1]) not in self.sounding:
                    self.faults["note-off for a silent key"] += 1
                self.sounding.discard((ch, m[1]))
            elif len(m) == 3 and kind == 0xB0 and m[1] == 123:
                cut = {k for k in self.sounding if k[0] == ch}
                self.own_off |= cut
                self.sounding -= cut
            elif not (len(m) == 3 and kind == 0xB0 and m[1] == 64 and m[2] == 0):
                self.faults[f"unexpected message {list(m)}"] += 1
        return self


# --- the report -----------------------------------------------------------------------------

_AHEAD = re.compile(
    r"(\d+) notes in, (\d+) out, (\d+) dropped unsent[^;]*; (\d+) of (\d+) "
    r"harmony steps answered ahead"
)


def _stats(s: tuple[float, float, float] | None) -> str:
    return "none" if s is None else f"p50 {s[0]:.2f} ms, p99 {s[1]:.2f} ms, max {s[2]:.2f} ms"


def report(
    minutes: list[Minute],
    ready: dict[str, int],
    end: dict[str, int],
    line: str,
    account: Account,
    notes_total: int,
) -> None:
    first, last = minutes[0], minutes[-1]
    print(
        f"\n{len(minutes)} minute(s), {sum(m.sent for m in minutes)} of {notes_total} "
        f"melody notes sent."
    )
    growth = (last.rss["VmRSS"] - first.rss["VmRSS"]) / 1024
    print(
        f"VmRSS: ready {mb(ready['VmRSS'])}, end of minute 1 {mb(first.rss['VmRSS'])}, end "
        f"of minute {last.index} {mb(last.rss['VmRSS'])}, end (idle {2 * SETTLE:g} s later) "
        f"{mb(end['VmRSS'])}. Growth minute 1 → {last.index}: {growth:+.1f} MB; ready → "
        f"end: {(end['VmRSS'] - ready['VmRSS']) / 1024:+.1f} MB (RssAnon "
        f"{(end['RssAnon'] - ready['RssAnon']) / 1024:+.1f} MB); VmHWM ready → end "
        f"{mb(ready['VmHWM'])} → {mb(end['VmHWM'])}."
    )
    full = sum(m.full for m in minutes)
    none = sum(m.none for m in minutes)
    sent = sum(m.sent for m in minutes)
    missing: Counter[int] = sum((m.missing_voices for m in minutes), Counter())
    names = {1: "alto", 2: "tenor", 3: "bass"}
    partial = ", ".join(f"{names.get(c, c)} {k}" for c, k in sorted(missing.items())) or "none"
    print(
        f"Melody notes with full harmony: {full} of {sent}; with no harmony note-on within "
        f"{REPLY_WINDOW * 1e3:.0f} ms: {none}; with some but not all voices: "
        f"{sent - full - none} (voice missing: {partial})."
    )
    send_late = stats_ms([x for m in minutes for x in m.send_late])
    print(
        f"The bench's own send lateness (sent − scheduled): p50 {send_late[0]:.2f} ms, p99 "
        f"{send_late[1]:.2f} ms, max {send_late[2]:.2f} ms."
    )
    late = [x for m in minutes for x in m.late]
    if late:
        later = sorted(x * 1e3 for x in late if x is not None)
        bands = ", ".join(
            f"{sum(lo <= x < hi for x in later)} at {lo}-{hi} ms"
            for lo, hi in ((100, 150), (150, 250), (250, 500), (500, 1000))
        )
        print(
            f"Of the {len(late)} without: {len(later)} got their harmony later ({bands} "
            f"after the note-on), {len(late) - len(later)} got no harmony note-on at their "
            f"velocity within {LATE:g} s; {sum(m.chorded for m in minutes)} of the "
            f"{len(late)} were sent less than {CHORD_SECONDS * 1e3:.0f} ms after the previous "
            f"note-on (the bench's player itself ran late; the daemon reads such notes as one "
            f"chord and harmonizes the top one only)."
        )
    print(
        f"p99 latency: minute 1 {first.p99:.2f} ms, minute {last.index} {last.p99:.2f} ms "
        f"({last.p99 - first.p99:+.2f} ms); worst minute "
        f"{max(m.p99 for m in minutes):.2f} ms; max over the run "
        f"{max(max(m.latencies, default=0) for m in minutes) * 1e3:.2f} ms."
    )
    print(f"Daemon: {line.split('stopped: ', 1)[-1]}")
    with contextlib.suppress(RuntimeError):
        s = Summary.parse(line)
        print(
            f"  arrival → sent: {_stats(s.arrival_to_sent)}; Engine.handle: "
            f"{_stats(s.handle)}; {s.ticks_sent} ticks sent, lateness {_stats(s.lateness)}."
        )
    ahead = _AHEAD.search(line)
    if ahead is not None:
        n_in, n_out, unsent, hits, steps = (int(x) for x in ahead.groups())
        print(
            f"  answered ahead: {hits} of {steps} harmony steps ({hits / max(1, steps):.1%}); "
            f"notes in {n_in}, out {n_out}, dropped unsent {unsent}."
        )
    faults = "; ".join(f"{k}: {v}" for k, v in account.faults.items()) or "none"
    print(
        f"Strict account of the daemon's messages: {account.note_ons} note-ons, "
        f"{account.note_offs} note-offs; faults: {faults}; keys left sounding after SIGTERM: "
        f"{len(account.sounding)} {sorted(account.sounding) or ''}".rstrip()
        + f"; keys silenced only by all-notes-off (no note-off of their own): "
        f"{len(account.own_off)} {sorted(account.own_off) or ''}".rstrip()
        + "."
    )
    ok_rss = growth <= RSS_TARGET_MB
    band = max(P99_STEADY_MS, P99_STEADY_SHARE * first.p99)
    ok_p99 = abs(last.p99 - first.p99) <= band
    print(
        f"\nTarget VmRSS growth (minute 1 → last) ≤ {RSS_TARGET_MB:g} MB: "
        f"{'met' if ok_rss else 'not met'} ({growth:+.1f} MB)."
    )
    print(
        f"Target p99 steady ({STEADY_DEFINITION}; here ±{band:.2f} ms): "
        f"{'met' if ok_p99 else 'not met'} ({first.p99:.2f} → {last.p99:.2f} ms)."
    )


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=10, help="minutes of playing (default 10)")
    ap.add_argument("--rate", type=float, default=20.0, help="melody notes/s (default 20)")
    ap.add_argument(
        "--dump",
        type=Path,
        help="append one JSON line per melody note to this "
        "file: index, sent (s), latency (s or null), harmony channels heard",
    )
    args = ap.parse_args()
    if args.minutes < 1 or args.rate <= 0:
        ap.error("--minutes must be ≥ 1 and --rate > 0")
    _exit_on_sigterm()
    lines, _ = chorale_lines()
    notes = schedule(lines, args.rate, args.minutes * 60.0)
    state = code_state()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores, load average before: {load_average()}\ncode: {state}"
    )
    print(
        f"melody: sopranos of {len(lines)} Bach chorales "
        f"({', '.join(c.split('/')[1] for c in CHORALES)}), even notes at {args.rate:g}/s "
        f"released at {LEGATO:.0%}, a {PAUSE:g} s pause at the first chorale boundary after "
        f"every {PAUSE_EVERY:g} s; {len(notes)} notes in {args.minutes} min (harmonize mode, "
        f"`bach`)"
    )
    print(f"p99 steady means: {STEADY_DEFINITION}.", flush=True)
    t_begin = time.monotonic()
    minutes: list[Minute] = []
    try:
        with contextlib.ExitStack() as stack:
            jack = stack.enter_context(jack_server())
            env = jack.env()
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
            procs = stack.enter_context(Processes())
            rig = stack.enter_context(Rig.open())
            config = write_config(folder / "soak.toml", "harmonize")
            with running_daemon(procs, env, config, folder) as daemon:
                pid = daemon.process.pid
                ready = status(pid)
                print(
                    f"daemon PID {pid} ready: VmRSS {mb(ready['VmRSS'])}, VmHWM "
                    f"{mb(ready['VmHWM'])}, RssAnon {mb(ready['RssAnon'])}\n\n{HEADER}",
                    flush=True,
                )
                time.sleep(SETTLE)
                machine = Machine()
                cpu_mark = (time.monotonic(), cpu_seconds(pid))
                player = Player(rig.melody, notes, time.monotonic() + 0.1)
                try:
                    for k in range(1, args.minutes + 1):
                        due = player.start + k * 60.0 + REPLY_WINDOW + 0.05
                        while time.monotonic() < due:
                            time.sleep(min(0.5, max(0.0, due - time.monotonic())))
                            if daemon.process.poll() is not None:
                                raise RuntimeError(
                                    f"the daemon exited with {daemon.process.returncode}"
                                )
                            if player.error is not None:
                                raise RuntimeError(f"the player failed: {player.error!r}")
                        minute, cpu_mark = measure_minute(
                            k, notes, player, rig, daemon, cpu_mark, machine, args.dump
                        )
                        minutes.append(minute)
                        print(minute.row(), flush=True)
                finally:
                    player.stop()
                time.sleep(2 * SETTLE)
                end = status(pid)
                t_stop = time.monotonic()
                line = daemon.stop()
            time.sleep(0.2)
            heard = [m for t, m in rig.listener.since(player.start - SETTLE / 2)]
            after_stop = sum(1 for t, _ in rig.listener.since(t_stop))
    except JACK_UNAVAILABLE as exc:
        print(f"soak: cannot run: {exc.msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soak: interrupted; every process started was stopped", file=sys.stderr)
        return 130
    bench_cpu = sum(os.times()[:2]) / (time.monotonic() - t_begin)
    account = Account().play(heard)
    report(minutes, ready, end, line, account, len(notes))
    print(f"Messages heard after SIGTERM: {after_stop}.")
    print(
        f"\nThe bench took {time.monotonic() - t_begin:.0f} s and used {bench_cpu:.0%} of "
        f"one core itself (player, listener polling every 0.2 ms); load average after: "
        f"{load_average()}"
    )
    if code_state() != state:
        print(f"WARNING: the daemon's code changed during the run: now {code_state()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
