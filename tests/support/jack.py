"""A private JACK server for tests that need real MIDI ports.

``with jack_server() as jack:`` starts ``jackd --no-realtime -S -d dummy -r 48000 -p 64`` under
a server name of its own (so it never meets a JACK server already running), points this process
at it through ``JACK_DEFAULT_SERVER``, waits until it answers, and stops it by its own PID at the
end (SIGTERM, then SIGKILL after 5 s). If the test process dies first, the kernel sends jackd a
SIGTERM (``PR_SET_PDEATHSIG``), so no server is left behind.

A missing ``jackd`` (or one that does not start, or python-rtmidi without JACK) skips the test
with the reason; under CI (``CI=true``) it fails it instead. Debian and Ubuntu: ``apt-get install
jackd2`` (it also brings ``jack_lsp`` and ``jack_connect``).

Ports: :meth:`JackServer.ports` lists them (``client:port``), :meth:`JackServer.connect` joins
two with ``jack_connect``. Opening an rtmidi port *by name* on JACK also connects to it: rtmidi
registers a port of its own client and connects the two.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.project import IN_CI

JACKD_ARGS = ("--no-realtime", "-S", "-d", "dummy", "-r", "48000", "-p", "64")
"""No realtime scheduling (no privileges needed), synchronous mode, the dummy audio driver:
48 kHz and 64-frame periods (1.3 ms)."""
JACK_BACKEND = "mido.backends.rtmidi/UNIX_JACK"
"""The backend name for ``MIDO_BACKEND`` and ``partimento.live.midi_io``'s ``backend=``."""


def unavailable(why: str) -> None:
    """Skip with ``why``; under CI, where the piece is required, fail."""
    if IN_CI:
        pytest.fail(f"required under CI: {why}")
    pytest.skip(why)


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGTERM the child when the thread that started it ends."""
    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class JackServer:
    """A running jackd of this test session."""

    name: str
    process: subprocess.Popen
    log_path: Path
    _lsp: str | None = field(default_factory=lambda: shutil.which("jack_lsp"))

    @property
    def pid(self) -> int:
        return self.process.pid

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a subprocess that should use this server through mido/rtmidi."""
        return {
            **os.environ,
            "JACK_DEFAULT_SERVER": self.name,
            "MIDO_BACKEND": JACK_BACKEND,
            **extra,
        }

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def ports(self) -> list[str]:
        """Every port of the server, ``client:port`` (``jack_lsp``, else rtmidi's MIDI ports)."""
        if self._lsp:
            out = subprocess.run(
                [self._lsp, "-s", self.name],
                capture_output=True,
                text=True,
                timeout=5,
                env=self.env(),
            )
            return out.stdout.splitlines() if out.returncode == 0 else []
        import rtmidi

        names: list[str] = []
        for cls in (rtmidi.MidiIn, rtmidi.MidiOut):
            rt = cls(rtmidi.API_UNIX_JACK, "jack-probe")
            names += rt.get_ports()
            rt.delete()
        return names

    def answers(self) -> bool:
        try:
            return bool(self.ports())
        except Exception:  # not up yet: rtmidi raises, jack_lsp fails
            return False

    def wait_for_port(self, fragment: str, timeout: float = 5.0) -> str:
        """The first port whose name contains ``fragment``, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            found = [p for p in self.ports() if fragment in p]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no JACK port {fragment!r} after {timeout} s")
            time.sleep(0.02)

    def connect(self, source: str, destination: str) -> None:
        """Connect two ports with ``jack_connect`` (the test is skipped without it)."""
        tool = shutil.which("jack_connect")
        if tool is None:
            unavailable("jack_connect is not installed (apt-get install jackd2)")
        subprocess.run(
            [tool, "-s", self.name, source, destination],
            check=True,
            timeout=5,
            capture_output=True,
            env=self.env(),
        )

    def stop(self) -> None:
        """Stop this jackd by its PID: SIGTERM, then SIGKILL after 5 s."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@contextlib.contextmanager
def jack_server(*, timeout: float = 10.0) -> Iterator[JackServer]:
    """Start a private jackd, set ``JACK_DEFAULT_SERVER`` while it runs, stop it at the end."""
    jackd = shutil.which("jackd")
    if jackd is None:
        unavailable("jackd is not installed (apt-get install jackd2)")
    try:
        import rtmidi
    except ImportError:
        unavailable("python-rtmidi is not installed")
    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        unavailable("python-rtmidi was built without JACK")

    name = f"partimento-test-{os.getpid()}-{secrets.token_hex(3)}"
    log_dir = Path(tempfile.mkdtemp(prefix="jackd-"))
    log_path = log_dir / "jackd.log"
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_AUDIO_RESERVATION": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [jackd, "-n", name, *JACKD_ARGS],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )
    server = JackServer(name, process, log_path)
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        deadline = time.monotonic() + timeout
        while not server.answers():
            if process.poll() is not None:
                unavailable(f"jackd exited with {process.returncode} at start: {server.log_tail()}")
            if time.monotonic() > deadline:
                unavailable(f"jackd did not answer within {timeout:g} s: {server.log_tail()}")
            time.sleep(0.05)
        yield server
    finally:
        if previous is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = previous
        server.stop()
        shutil.rmtree(log_dir, ignore_errors=True)
