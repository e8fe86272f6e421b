"""The systemd notify protocol (``sd_notify(3)``), standard library only.

Under ``Type=notify`` systemd passes the path of an ``AF_UNIX`` datagram socket in
``NOTIFY_SOCKET`` (a file path, or a name in the abstract namespace written with a leading
``@``). The service tells it how it is doing by sending newline-separated ``KEY=VALUE``
datagrams there:

``READY=1``
    start-up (or a reload) is finished: ports open, models loaded. Units ordered after this one
    start now, and ``systemctl start`` returns.
``RELOADING=1`` + ``MONOTONIC_USEC=…``
    a reload (SIGHUP) has begun; ``READY=1`` ends it. systemd 253 and later want the
    ``CLOCK_MONOTONIC`` time in microseconds beside it, to tell one reload from the next.
``STOPPING=1``
    shutdown has begun (sent first, before the ports are closed).
``WATCHDOG=1``
    still alive. With ``WatchdogSec=`` the service must send it at least that often or be
    killed with SIGABRT (and restarted, with ``Restart=on-failure``). :func:`watchdog_task`
    sends it from the event loop, so a blocked loop stops the pings.
``STATUS=…``
    one line for ``systemctl status``.

Without ``NOTIFY_SOCKET`` (run by hand, in tests, on Windows) every call is a cheap no-op. A send
that fails (systemd restarted, the socket gone) is logged once as a warning and never raises: a
daemon must not die because its supervisor went away.

Use::

    notifier = Notifier()
    ...                                   # open ports, load models
    notifier.ready(ready_line)
    interval = notifier.watchdog_interval()
    if interval is not None:
        tg.create_task(watchdog_task(notifier, interval), name="watchdog")
    ...
    loop.add_signal_handler(signal.SIGHUP, lambda: schedule_reload(notifier, reload_config))
    ...
    notifier.stopping()                   # first thing on shutdown
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

SEND_TIMEOUT = 0.1
"""At most this long (seconds) a send waits for room in systemd's queue, so the event loop is
never held up for long; a send that times out counts as failed."""

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"

_pending: dict[asyncio.Task[Any], None] = {}
"""Reload tasks started by :func:`schedule_reload`, oldest first, kept alive until they end."""


def socket_address(value: str | None) -> str | bytes | None:
    """The ``sendto`` address for a ``NOTIFY_SOCKET`` value: a path as it is, ``@name`` as the
    abstract-namespace ``b"\\0name"``; None for an empty or unusable value (``vsock:`` and
    other non-path forms are not supported)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` now, in whole microseconds, as systemd reads it."""
    clock = getattr(time, "CLOCK_MONOTONIC", None)
    if clock is None:  # not a POSIX clock here; nobody listens then anyway
        return time.monotonic_ns() // 1000
    return time.clock_gettime_ns(clock) // 1000


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings: half of ``WATCHDOG_USEC``, as ``sd_watchdog_enabled(3)``
    advises. None when no watchdog is asked for: ``WATCHDOG_USEC`` unset, not a positive whole
    number, or ``WATCHDOG_PID`` set to another process's PID (the watchdog is meant for it)."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get(WATCHDOG_USEC, ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get(WATCHDOG_PID)
    if pid is not None:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 2 / 1e6


def _one_line(text: str) -> str:
    """A value without newlines (a newline would start another ``KEY=VALUE``)."""
    return " ".join(text.splitlines())


class Notifier:
    """Sends notify-protocol datagrams to systemd; every method is a no-op without a socket.

    ``address``: the ``NOTIFY_SOCKET`` value to use (default: the environment's).
    ``environ``: where ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` are read
    (default :data:`os.environ`).
    """

    def __init__(
        self, address: str | None = None, *, environ: Mapping[str, str] | None = None
    ) -> None:
        self._environ = os.environ if environ is None else environ
        raw = self._environ.get(NOTIFY_SOCKET) if address is None else address
        self._address = socket_address(raw)
        self._socket: socket.socket | None = None
        self._warned = False
        if raw and self._address is None:
            self._warn(f"unsupported {NOTIFY_SOCKET}={raw!r}; not notifying systemd")

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to notify (the process runs under ``Type=notify``)."""
        return self._address is not None

    # -- messages ----------------------------------------------------------------------------

    def ready(self, status: str = "") -> bool:
        """``READY=1`` (and ``STATUS=`` when given): started, or a reload is done."""
        return self.send("READY=1", *self._status(status))

    def reloading(self, status: str = "") -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC=`` now: a reload has begun."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", *self._status(status))

    def stopping(self, status: str = "") -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self.send("STOPPING=1", *self._status(status))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: still alive."""
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """``STATUS=text``: one line for ``systemctl status``."""
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of ``WATCHDOG_USEC``), or None: no watchdog asked for,
        or no socket to ping."""
        return watchdog_interval(self._environ) if self.enabled else None

    @contextlib.contextmanager
    def reload(self, status: str = "") -> Iterator[None]:
        """``RELOADING=1`` on entry, ``READY=1`` on the way out, also when the body raises (the
        daemon goes on with its old settings and systemd must not wait for a reload that
        ended): then ``STATUS=`` says the reload failed and the error propagates."""
        self.reloading()
        try:
            yield
        except Exception as exc:
            self.ready(f"reload failed, old settings kept: {exc}")
            raise
        self.ready(status)

    # -- sending -----------------------------------------------------------------------------

    def send(self, *fields: str) -> bool:
        """Send ``fields`` as one datagram, newline-separated. True when sent; False without a
        socket or when it failed (logged once, never raised)."""
        if self._address is None or not fields:
            return False
        data = "\n".join(fields).encode()
        try:
            sock = self._socket or self._open()
            sock.sendto(data, self._address)
        except OSError as exc:
            self._warn(f"cannot notify systemd at {self._shown()}: {exc.strerror or exc}")
            return False
        return True

    def close(self) -> None:
        """Close the sending socket (a later send opens a new one)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _open(self) -> socket.socket:
        family = getattr(socket, "AF_UNIX", None)
        if family is None:  # Windows
            raise OSError("AF_UNIX sockets are not available here")
        sock = socket.socket(family, socket.SOCK_DGRAM | getattr(socket, "SOCK_CLOEXEC", 0))
        sock.settimeout(SEND_TIMEOUT)
        self._socket = sock
        return sock

    def _status(self, status: str) -> tuple[str, ...]:
        return (f"STATUS={_one_line(status)}",) if status else ()

    def _shown(self) -> str:
        address = self._address
        return (
            "@" + address[1:].decode(errors="replace")
            if isinstance(address, bytes)
            else str(address)
        )

    def _warn(self, message: str) -> None:
        if self._warned:
            log.debug("%s", message)
            return
        self._warned = True
        log.warning("%s (further failures are logged at debug level)", message)


async def watchdog_task(notifier: Notifier, interval: float) -> None:
    """Send ``WATCHDOG=1`` now and then every ``interval`` seconds, forever (until cancelled).

    It runs on the event loop on purpose: when the loop is blocked, the pings stop and systemd
    restarts the daemon after ``WatchdogSec``.
    """
    if interval <= 0:
        raise ValueError(f"watchdog interval must be above 0, not {interval}")
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


async def reload_with(
    notifier: Notifier, reload: Callable[[], Awaitable[object] | object], status: str = ""
) -> bool:
    """One SIGHUP reload: ``RELOADING=1`` + ``MONOTONIC_USEC``, ``await reload()`` (or call it,
    if it is not a coroutine function), then ``READY=1``. True when it worked; False when
    ``reload`` raised: the error is logged as one line, ``READY=1`` is still sent (with a
    ``STATUS=`` saying the old settings are kept) and nothing is raised."""
    try:
        with notifier.reload(status):
            result = reload()
            if isinstance(result, Awaitable):
                await result
    except Exception as exc:
        log.error("reload failed, old settings kept: %s", exc)
        return False
    return True


async def _after(
    previous: asyncio.Task[bool] | None,
    notifier: Notifier,
    reload: Callable[[], Awaitable[object] | object],
    status: str,
) -> bool:
    if previous is not None:
        with contextlib.suppress(BaseException):
            await previous
    return await reload_with(notifier, reload, status)


def schedule_reload(
    notifier: Notifier, reload: Callable[[], Awaitable[object] | object], status: str = ""
) -> asyncio.Task[bool]:
    """:func:`reload_with` as a task on the running loop, for ``loop.add_signal_handler(SIGHUP,
    ...)`` (a signal handler cannot await). A SIGHUP during a reload runs another one after it,
    never two at once. The task is kept referenced until it ends."""
    loop = asyncio.get_running_loop()
    previous = next((t for t in reversed(_pending) if t.get_loop() is loop and not t.done()), None)
    task = loop.create_task(_after(previous, notifier, reload, status), name="reload")
    _pending[task] = None
    task.add_done_callback(lambda t: _pending.pop(t, None))
    return task
