"""Memory and start-up time of ``partimento run`` over real JACK ports.

    python bench/footprint.py [--runs 5] [--notes 300]

Starts a private ``jackd --no-realtime -S -d dummy -r 48000 -p 64`` (tests/support/jack.py) and the
bench's keyboard and synthesizer ports (as bench/e2e_latency.py), then:

* start-up: ``python -m partimento.cli run`` ``--runs`` times, from just before the process is
  started to its ready line on stdout, next to the same interpreter running ``pass``, the
  imports of ``run``, and the imports plus loading both models (each started and waited for
  the same way);
* memory: ``VmRSS`` (now) and ``VmHWM`` (peak) from ``/proc/PID/status`` right after ready,
  then while ``--notes`` chorale notes are harmonized (8 notes/s, the chorales' rhythm),
  after two continue-mode phrases and their answers, and after 3 s of rest; also the
  resident size of the interpreter with only the imports, and with the models loaded.

Every process it starts is stopped by its PID, also on Ctrl-C or an error. Figures are
recorded in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from e2e_latency import (
    JACK_UNAVAILABLE,
    MODE_CC,
    ROOT,
    Processes,
    Rig,
    _exit_on_sigterm,
    chorale_lines,
    code_state,
    jack_server,
    load_average,
    melody,
    play,
    write_config,
)

READY_LINE = "partimento: ready"
READY_TIMEOUT = 30.0
RUN_IMPORTS = (
    "import partimento.cli, partimento.config, partimento.commands.run, partimento.live.service, "
    "partimento.engine.engine, partimento.files.model"
)
"""What ``partimento run`` imports before it loads the models (main's error types included)."""
LOAD_MODELS = (
    f"{RUN_IMPORTS}; from partimento.files import model; model.load('bach'); model.load('folk')"
)
STATUS_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads")
TARGET_MB, TARGET_READY = 120.0, 1.0


def status(pid: int | str) -> dict[str, int]:
    """``STATUS_KEYS`` from ``/proc/PID/status`` (kB; ``Threads`` a count), and ``JackShm``:
    the resident part of JACK's shared segments (``/dev/shm/jack-*``, the server's memory,
    mapped by every JACK client and counted in each one's RSS), from ``/proc/PID/smaps``."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_KEYS:
            out[key] = int(value.split()[0])
    jack, shm = False, 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if line[:1] in "0123456789abcdef" and "-" in fields[0]:
            jack = len(fields) > 5 and fields[5].startswith("/dev/shm/jack")
        elif jack and fields[0] == "Rss:":
            shm += int(fields[1])
    out["JackShm"] = shm
    return out


def mb(kb: int) -> str:
    return f"{kb / 1024:.1f} MB"


def timed_python(code: str, runs: int) -> list[float]:
    """Seconds from starting ``python -c code`` to its exit, ``runs`` times."""
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60, stdin=subprocess.DEVNULL
        )
        times.append(time.monotonic() - t0)
    return times


def resident(code: str) -> dict[str, int]:
    """``status`` of an interpreter that has run ``code`` (it waits for the bench to read)."""
    process = subprocess.Popen(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('done', flush=True)\nsys.stdin.read()"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline() != b"done\n":
            raise RuntimeError(f"python -c {code!r} failed")
        return status(process.pid)
    finally:
        process.communicate(timeout=60)


def start_daemon(
    procs: Processes, env: dict[str, str], config: Path, err: Path
) -> tuple[subprocess.Popen, float]:
    """The daemon and the seconds from just before its start to its ready line."""
    with err.open("w") as e:
        t0 = time.monotonic()
        process = procs.start(
            [sys.executable, "-m", "partimento.cli", "run", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=e,
        )
    assert process.stdout is not None
    deadline = t0 + READY_TIMEOUT
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([process.stdout], [], [], left)[0]:
            raise RuntimeError(
                f"no ready line within {READY_TIMEOUT:g} s: {err.read_text()[-2000:]}"
            )
        chunk = process.stdout.read1(4096)
        if not chunk:
            raise RuntimeError(
                f"the daemon exited with {process.wait()}: {err.read_text()[-2000:]}"
            )
        line += chunk
    took = time.monotonic() - t0
    if not line.decode().startswith(READY_LINE):
        raise RuntimeError(f"unexpected first line: {line!r}")
    return process, took


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms"


def _spread(times: list[float]) -> str:
    return f"{_ms(statistics.median(times))} | {_ms(min(times))} | {_ms(max(times))}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="daemon starts timed (default 5)")
    ap.add_argument("--notes", type=int, default=300, help="melody notes played (default 300)")
    args = ap.parse_args()
    _exit_on_sigterm()
    lines, source = chorale_lines()
    state = code_state()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, python {sys.version.split()[0]}, load average "
        f"before: {load_average()}\ncode: {state}\nmelody: {source}"
    )

    baselines = {
        "`python -c pass`": timed_python("pass", args.runs),
        "`python -c 'import partimento.cli'`": timed_python("import partimento.cli", args.runs),
        "every module `run` imports": timed_python(RUN_IMPORTS, args.runs),
        "those imports + loading bach and folk": timed_python(LOAD_MODELS, args.runs),
    }
    memory = {
        "interpreter only": resident("pass"),
        "every module `run` imports": resident(RUN_IMPORTS),
        "those imports + bach and folk loaded": resident(LOAD_MODELS),
    }
    ready_times: list[float] = []
    daemon_memory: list[tuple[str, dict[str, int]]] = []
    stop_took = 0.0
    try:
        with contextlib.ExitStack() as stack:
            jack = stack.enter_context(jack_server())
            env = jack.env()
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="footprint-")))
            procs = stack.enter_context(Processes())
            rig = stack.enter_context(Rig.open())
            config = write_config(folder / "partimento.toml", "harmonize")
            for run in range(args.runs):
                process, took = start_daemon(procs, env, config, folder / f"run{run}.err")
                ready_times.append(took)
                if run < args.runs - 1:
                    Processes.stop(process)
            pid = process.pid
            daemon_memory.append(("right after ready", status(pid)))
            time.sleep(1.0)
            daemon_memory.append(("1 s after ready, idle", status(pid)))
            notes = melody(lines, args.notes, 8.0, rhythm=True)
            thirds = [
                notes[: len(notes) // 3],
                notes[len(notes) // 3 : 2 * len(notes) // 3],
                notes[2 * len(notes) // 3 :],
            ]
            played = 0
            for part in thirds:
                shift = part[0].on
                events = []
                for n in part:
                    events += [
                        (n.on - shift, rig.melody, [0x90, n.pitch, n.velocity]),
                        (n.off - shift, rig.melody, [0x80, n.pitch, 64]),
                    ]
                play(events, time.monotonic() + 0.05)
                played += len(part)
                time.sleep(0.2)
                daemon_memory.append((f"after {played} melody notes (harmonize)", status(pid)))
            rig.melody.send_message([0xB0, MODE_CC, 127])
            time.sleep(0.2)
            for line in lines[:2]:
                phrase = [n for n in line if n.onset - line[0].onset < 8]
                events = []
                for n in phrase:
                    on = (n.onset - phrase[0].onset) * 0.4
                    events += [
                        (on, rig.melody, [0x90, n.pitch, 80]),
                        (on + 0.85 * n.length * 0.4, rig.melody, [0x80, n.pitch, 64]),
                    ]
                play(events, time.monotonic() + 0.05)
                time.sleep(1.0 + 2 * 4 * 0.6 + 0.5)  # end of phrase, a 2-bar answer
            daemon_memory.append(("after 2 continue-mode phrases and answers", status(pid)))
            time.sleep(3.0)
            daemon_memory.append(("3 s later, idle (steady)", status(pid)))
            t0 = time.monotonic()
            code = Processes.stop(process, 10)
            stop_took = time.monotonic() - t0
            summary = [
                x
                for x in (folder / f"run{args.runs - 1}.err").read_text().splitlines()
                if "stopped:" in x
            ]
            if code != 0 or not summary:
                raise RuntimeError(f"the daemon exited with {code}")
            replies = sum(1 for _, m in rig.listener.since(0) if m[0] & 0xF0 == 0x90)
    except JACK_UNAVAILABLE as exc:
        print(f"footprint: cannot run: {exc.msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("footprint: interrupted; every process started was stopped", file=sys.stderr)
        return 130

    interpreter = statistics.median(baselines["`python -c pass`"])
    ready = statistics.median(ready_times)
    print(f"\n#### Start-up ({args.runs} runs each; process start → exit, or → ready line)\n")
    print("| what | median | min | max |\n|---|---|---|---|")
    for what, times in baselines.items():
        print(f"| {what} | {_spread(times)} |")
    print(f"| `partimento run`: start → ready line | {_spread(ready_times)} |")
    print(f"| `partimento run` minus `python -c pass` (medians) | {_ms(ready - interpreter)} | | |")
    print(
        f"\nEach start (first one first): {', '.join(_ms(t) for t in ready_times)}. "
        f"SIGTERM → exit: {_ms(stop_took)}."
    )
    verdict = (
        "met"
        if max(ready_times) <= TARGET_READY
        else (f"not met (by {_ms(max(ready_times) - TARGET_READY)} at the slowest start)")
    )
    print(f"Target ready ≤ {TARGET_READY:g} s: {verdict}.")

    print("\n#### Memory (/proc/PID/status)\n")
    print(
        "| when | VmRSS | VmHWM (peak) | RssAnon | RssFile | RssShmem | of it JACK's "
        "/dev/shm | VmRSS − JACK's | threads |\n|---|---|---|---|---|---|---|---|---|"
    )
    for what, s in [*((f"interpreter: {k}", v) for k, v in memory.items()), *daemon_memory]:
        print(
            f"| {what} | {mb(s['VmRSS'])} | {mb(s['VmHWM'])} | {mb(s['RssAnon'])} | "
            f"{mb(s['RssFile'])} | {mb(s['RssShmem'])} | {mb(s['JackShm'])} | "
            f"{mb(s['VmRSS'] - s['JackShm'])} | {s['Threads']} |"
        )
    print()
    peak = max(s["VmHWM"] for _, s in daemon_memory) / 1024
    last = daemon_memory[-1][1]
    steady, shm = last["VmRSS"] / 1024, last["JackShm"] / 1024
    for what, worst in (
        ("VmRSS", max(peak, steady)),
        ("VmRSS without JACK's shared segment", max(peak, steady) - shm),
    ):
        verdict = "met" if worst <= TARGET_MB else f"not met (by {worst - TARGET_MB:.1f} MB)"
        print(
            f"Target ≤ {TARGET_MB:g} MB, {what} (peak and steady, the larger "
            f"{worst:.1f} MB): {verdict}."
        )
    print(
        f"Peak (VmHWM) {peak:.1f} MB, steady {steady:.1f} MB, of which {shm:.1f} MB is "
        f"JACK's shared segment. Note-ons heard from the daemon: {replies}."
    )
    print(f"Daemon: {summary[0].split('stopped: ', 1)[1]}")
    print(f"Load average after: {load_average()}")
    if code_state() != state:
        print(f"WARNING: the daemon's code changed during the run: now {code_state()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
