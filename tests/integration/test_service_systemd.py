"""``partimento run`` under the systemd notify protocol, with a real AF_UNIX datagram socket
standing in for systemd and real JACK ports: ``READY=1`` only once the models are loaded and
the ports open (a note played then is harmonized), watchdog pings from the running loop at
half of ``WATCHDOG_USEC``, ``RELOADING=1`` then ``READY=1`` on SIGHUP, ``STOPPING=1`` first
on SIGTERM. Skipped without jackd, failed without it under CI."""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import socket
import threading
import time

import pytest

from support.daemon import HARMONY, Daemon, Rig, note_ons, write_config
from support.jack import jack_server

WATCHDOG_USEC = 400_000
"""systemd's WatchdogSec as the daemon sees it; it pings every 0.2 s."""


@pytest.fixture(scope="module")
def jack():
    with jack_server() as server:
        yield server


class Systemd:
    """The notify socket: every datagram, parsed, with the monotonic time it came."""

    def __init__(self) -> None:
        self.address = f"@partimento-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.address[1:].encode())
        self.sock.settimeout(0.1)
        self.got: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
            with self._lock:
                self.got.append((time.monotonic(), fields))

    def first(self, key: str, after: float = 0.0, timeout: float = 30.0) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [(t, f) for t, f in self.got if t >= after and key in f]
            if found:
                return found[0]
            time.sleep(0.01)
        raise AssertionError(f"no {key} within {timeout} s; got {self.got}")

    def times(self, key: str, start: float, end: float) -> list[float]:
        with self._lock:
            return [t for t, f in self.got if key in f and start <= t <= end]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_ready_watchdog_reload_and_stop_over_the_notify_socket(jack, models, tmp_path):
    systemd = Systemd()
    config = write_config(tmp_path / "partimento.toml", models)
    rig = Rig()
    env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    daemon = Daemon(jack, config, tmp_path, env=env)
    try:
        ready_at, ready = systemd.first("READY")
        assert ready["READY"] == "1" and "mode harmonize" in ready.get("STATUS", "")
        assert daemon.wait_ready(1).startswith("partimento: ready")
        # ready means playable: a note right away is harmonized
        rig.keys.send_message([0x90, 72, 80])
        deadline = time.monotonic() + 1.0  # answered at all (how fast: bench/e2e_latency.py)
        while time.monotonic() < deadline and {
            m[0] & 0x0F for _, m in note_ons(rig.listener.since(ready_at))
        } != set(HARMONY):
            time.sleep(0.01)
        rig.keys.send_message([0x80, 72, 64])
        heard = note_ons(rig.listener.since(ready_at))
        assert {m[0] & 0x0F for _, m in heard} == set(HARMONY)

        # watchdog pings at half the period, while the daemon plays
        time.sleep(1.2)
        pings = systemd.times("WATCHDOG", ready_at, time.monotonic())
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert len(pings) >= 5 and max(gaps) < WATCHDOG_USEC / 1e6, gaps

        # SIGHUP: RELOADING=1 with the monotonic time, then READY=1
        hup = time.monotonic()
        daemon.process.send_signal(signal.SIGHUP)
        reloading_at, reloading = systemd.first("RELOADING", hup, 10)
        stamp = int(reloading["MONOTONIC_USEC"]) / 1e6
        assert hup - 0.5 < stamp < reloading_at + 0.5
        again_at, _ = systemd.first("READY", reloading_at, 10)
        daemon.wait_log("reloaded", timeout=5)

        # SIGTERM: STOPPING=1 first, exit 0
        term = time.monotonic()
        code, _ = daemon.terminate()
        assert code == 0, daemon.stderr()
        stopping_at, _ = systemd.first("STOPPING", term, 5)
        assert again_at < stopping_at
        assert "Traceback" not in daemon.stderr()
    finally:
        daemon.kill()
        rig.close()
        systemd.close()
