"""MQTT brokers and the mosquitto command-line clients, for tests.

``with broker() as b:`` starts ``mosquitto -c <conf>`` with a configuration of its own
(``listener <free port> 127.0.0.1``, ``allow_anonymous true`` unless told otherwise,
``persistence false``, plus any ``extra`` lines), waits until it accepts TCP connections, and
stops it by its PID at the end (SIGTERM, then SIGKILL after 5 s). :meth:`Broker.stop` and
:meth:`Broker.start` stop and start it again on the *same* port, for tests of a broker that
goes away and comes back. If the test process dies first, the kernel sends mosquitto a SIGTERM
(``PR_SET_PDEATHSIG``, as for jackd in ``support/jack.py``; it is tied to the thread that
started the process, so start brokers and subscribers from the main thread, not
``asyncio.to_thread``).

``PARTIMENTO_TEST_BROKER=host:port`` (set by ``.ci/run``) names a broker that is already
running; :func:`shared_broker` returns it (else it starts one of its own). Tests may use it only
for what does not disturb other users: a topic prefix of their own (:func:`unique_prefix`), and
their retained messages cleared at the end. Stopping a broker needs one of this module's own.

:func:`mqtt_sub` runs ``mosquitto_sub`` on a topic filter and collects every message with its
retain flag and the :func:`time.monotonic` moment it was read (payloads travel as hex, so any
bytes are exact); :func:`mqtt_pub` runs ``mosquitto_pub``. Missing mosquitto programs skip the
test with the reason (``apt-get install mosquitto mosquitto-clients``); under CI (``CI=true``)
they fail it instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.jack import die_with_parent, unavailable

READY_SECONDS = 5.0
"""How long a starting broker or subscriber may take to answer."""
PROGRAMS = ("mosquitto", "mosquitto_sub", "mosquitto_pub")


def _preexec() -> Callable[[], None] | None:
    return die_with_parent if sys.platform.startswith("linux") else None


def _killed_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask the kernel to SIGKILL the child when the thread that started it ends (SIGKILL, not
    SIGTERM: it also ends a child that a test has stopped with SIGSTOP)."""
    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def killed_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for a child process that must not outlive the tests (Linux)."""
    return _killed_with_parent if sys.platform.startswith("linux") else None


def require_mosquitto(*programs: str) -> dict[str, str]:
    """The paths of the mosquitto programs (all of :data:`PROGRAMS` by default)."""
    found = {}
    for name in programs or PROGRAMS:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        if path is None:
            unavailable(f"{name} is not installed (apt-get install mosquitto mosquitto-clients)")
        found[name] = path
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_prefix() -> str:
    """A topic prefix no other test (or other user of a shared broker) uses."""
    return f"partimento-test/{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Endpoint:
    """Where a broker listens, and the login the command-line clients use ("": none)."""

    host: str
    port: int
    username: str = ""
    password: str = field(default="", repr=False)

    def login(self, username: str, password: str) -> Endpoint:
        return Endpoint(self.host, self.port, username, password)

    def client_args(self) -> list[str]:
        args = ["-h", self.host, "-p", str(self.port)]
        if self.username:
            args += ["-u", self.username, "-P", self.password]
        return args

    def accepts(self) -> bool:
        """A TCP connection to the port succeeds."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False


class Broker:
    """A mosquitto of this test: its port, configuration, log and process."""

    def __init__(self, folder: Path, extra: Sequence[str] = (), *, anonymous: bool = True) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.conf = folder / "mosquitto.conf"
        self.log_path = folder / "mosquitto.log"
        self._program = require_mosquitto("mosquitto")["mosquitto"]
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if anonymous else 'false'}",
            "persistence false",
        ]
        if hasattr(os, "getuid"):  # started as root, mosquitto would become "mosquitto", who
            # cannot read a password file in this user's private temporary folder
            import pwd

            lines.append(f"user {pwd.getpwuid(os.getuid()).pw_name}")
        self.conf.write_text("\n".join([*lines, *extra]) + "\n")

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def start(self, *, wait: bool = True) -> None:
        """Start mosquitto on this broker's port (again); with ``wait``, until it accepts."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                [self._program, "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_preexec(),
            )
        self.process = process
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = READY_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not self.endpoint.accepts():
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                unavailable(f"mosquitto exited with {code} at start: {self.log_tail()}")
            if time.monotonic() > deadline:
                unavailable(
                    f"mosquitto did not accept connections within {timeout:g} s: {self.log_tail()}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop mosquitto by its PID: SIGTERM, then SIGKILL after 5 s; wait for it."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def broker(
    extra: Sequence[str] = (),
    *,
    anonymous: bool = True,
    start: bool = True,
    folder: Path | None = None,
) -> Iterator[Broker]:
    """A mosquitto of this test (started unless ``start`` is false), stopped at the end.
    ``extra``: more configuration lines; ``folder``: where its files go (else a new temporary
    folder, removed at the end)."""
    own = folder is None
    folder = Path(tempfile.mkdtemp(prefix="mosquitto-")) if folder is None else folder
    b = Broker(folder, extra, anonymous=anonymous)
    try:
        if start:
            b.start()
        yield b
    finally:
        b.stop()
        if own:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def shared_broker() -> Iterator[Endpoint]:
    """``PARTIMENTO_TEST_BROKER`` when set (not stopped at the end), else a broker of its own."""
    require_mosquitto("mosquitto_sub", "mosquitto_pub")
    named = os.environ.get("PARTIMENTO_TEST_BROKER", "")
    if named:
        host, _, port = named.rpartition(":")
        endpoint = Endpoint(host or "127.0.0.1", int(port))
        if not endpoint.accepts():
            unavailable(f"PARTIMENTO_TEST_BROKER={named}: nothing accepts connections there")
        yield endpoint
        return
    with broker() as b:
        yield b.endpoint


def mqtt_pub(
    endpoint: Endpoint,
    topic: str,
    payload: bytes | str | None = None,
    *,
    retain: bool = False,
    qos: int = 1,
) -> None:
    """Publish with ``mosquitto_pub`` (None: an empty payload; with ``retain``, that clears
    the retained message)."""
    program = require_mosquitto("mosquitto_pub")["mosquitto_pub"]
    args = [program, *endpoint.client_args(), "-t", topic, "-q", str(qos)]
    args += ["-r"] if retain else []
    data = None
    if payload is None:
        args.append("-n")
    elif isinstance(payload, str):
        args += ["-m", payload]
    else:
        args.append("-s")  # the payload from standard input, byte for byte
        data = payload
    done = subprocess.run(args, input=data, capture_output=True, timeout=10)
    if done.returncode != 0:
        raise AssertionError(
            f"mosquitto_pub -t {topic} failed: {done.stderr.decode(errors='replace').strip()}"
        )


@dataclass(frozen=True)
class Received:
    """One message a subscriber read: ``t`` is :func:`time.monotonic` when it was read."""

    topic: str
    payload: bytes
    retained: bool
    t: float

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscription:
    """A running ``mosquitto_sub``; :attr:`messages` grows as messages arrive."""

    FORMAT = "%r\t%t\t%x"

    def __init__(self, endpoint: Endpoint, topic_filter: str) -> None:
        program = require_mosquitto("mosquitto_sub")["mosquitto_sub"]
        self.messages: list[Received] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [program, *endpoint.client_args(), "-t", topic_filter, "-q", "1", "-F", self.FORMAT],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_preexec(),
        )
        self._reader = threading.Thread(target=self._read, name="mosquitto_sub", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            t = time.monotonic()
            retain, topic, hexed = line.decode().rstrip("\n").split("\t", 2)
            with self._changed:
                self.messages.append(Received(topic, bytes.fromhex(hexed), retain == "1", t))
                self._changed.notify_all()

    def mark(self) -> int:
        """Where the messages so far end, for ``wait_for(..., since=mark)``."""
        with self._changed:
            return len(self.messages)

    def on(self, topic: str, since: int = 0) -> list[Received]:
        """The messages on ``topic`` (after ``since``)."""
        with self._changed:
            return [m for m in self.messages[since:] if m.topic == topic]

    def wait_for(
        self, match: Callable[[Received], bool], timeout: float, *, since: int = 0
    ) -> Received:
        """The first message (from index ``since``) that ``match`` accepts, waiting up to
        ``timeout`` s; AssertionError if none comes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for m in self.messages[since:]:
                    if match(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    seen = [(m.topic, m.payload[:80]) for m in self.messages[since:]]
                    raise AssertionError(f"no matching message within {timeout:g} s; saw {seen}")
                self._changed.wait(min(left, 0.1))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)


@contextlib.contextmanager
def mqtt_sub(endpoint: Endpoint, topic_filter: str) -> Iterator[Subscription]:
    """``mosquitto_sub -t topic_filter``, ready when entered: a probe published under the
    filter has come back (``topic_filter`` must end in ``/#``)."""
    sub = Subscription(endpoint, topic_filter)
    try:
        probe = topic_filter.removesuffix("#") + "probe-" + secrets.token_hex(3)
        deadline = time.monotonic() + READY_SECONDS
        while True:
            mqtt_pub(endpoint, probe, "probe", qos=0)
            try:
                sub.wait_for(lambda m: m.topic == probe, 0.2)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    ended = sub.process.poll() is not None and sub.process.stderr
                    err = sub.process.stderr.read().decode() if ended else ""
                    unavailable(
                        f"mosquitto_sub did not receive within {READY_SECONDS:g} s {err.strip()}"
                    )
        yield sub
    finally:
        sub.stop()
