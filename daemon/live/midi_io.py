"""The MIDI edge: ports opened by name or as virtual ports, a reader thread, a writer.

Everything that touches a MIDI port lives here; the rest of the daemon sees raw
:data:`~partimento.core.types.MidiOut` tuples and monotonic timestamps.

* :func:`open_input` / :func:`open_output` open the port that ``[midi]`` names (a substring or a
  regex, as ``midi.match`` says, over the backend's port names) or a virtual port of the
  configured name. Every failure is a :class:`MidiError` with a one-line message.
* :class:`InputReader` is a thread that polls the input port, stamps each message with
  :func:`time.monotonic` where it arrives, drops what is not MIDI the daemon wants, and either
  calls a handler with ``(message, t)`` in the thread itself (the daemon: the engine answers
  there and then, see :mod:`partimento.live.service`) or hands it to the event loop through
  ``loop.call_soon_threadsafe`` into a bounded :class:`asyncio.Queue`, counting what a full
  queue drops instead of blocking.
* :class:`OutputWriter` sends raw tuples and turns a failed send into :class:`MidiError`, so
  the caller can release its notes and reopen.

The ports are python-rtmidi's own ``MidiIn``/``MidiOut``, not mido's: mido's rtmidi input
always installs an rtmidi callback (its ``poll()`` reads a queue filled by that callback), and a
Python callback run from the JACK process thread loses messages in bursts; polling
``MidiIn.get_message`` from our own thread loses none. The backend is still named the mido way
(``mido.backends.rtmidi/UNIX_JACK``, as ``MIDO_BACKEND`` and ``MidiConfig.mido_backend`` spell
it), and the reader and writer only need ``get_message()`` / ``send_message()``, so tests give
them small fakes (:class:`RawInput`, :class:`RawOutput`).

Polling: the reader drains every waiting message without pausing and sleeps
:data:`POLL_INTERVAL` (0.5 ms) only when the port is empty. That adds at most about 0.5 ms (plus
the kernel's timer slack) to a message's latency, well under a 64-frame JACK period at 48 kHz
(1.3 ms). Measured on a loaded 2-core machine, an idle reader thread costs about 4 % of one core
(0.2 ms: 8 %, 1 ms: 2 %); a longer sleep costs less CPU and more latency.

rtmidi on JACK joins an event that starts a sysex without ending it (``F0`` without ``F7``) with
the events after it until one ends in ``F7``, and drops the whole as sysex: a device sending
sysex in chunks is read right, but a stray ``F0`` swallows what follows it, clock ticks
included (seen with python-rtmidi 1.5.8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import rtmidi

from partimento.config import RTMIDI_APIS, MidiConfig
from partimento.core import midi
from partimento.core.errors import PartimentoError
from partimento.core.types import MidiOut
from partimento.live import default_output

log = logging.getLogger(__name__)

DEFAULT_BACKEND = "mido.backends.rtmidi"
"""mido's name for python-rtmidi; ``/API`` may follow (``mido.backends.rtmidi/UNIX_JACK``)."""
CLIENT_NAME = "partimento"
"""The MIDI client name ports are opened under (JACK makes a second one ``partimento-01``)."""
POLL_INTERVAL = 0.0005
"""Seconds the reader sleeps when the port is empty (see the module's notes)."""
CHECK_INTERVAL = 1.0
"""Seconds between the reader's checks that a port opened by name is still there."""
QUEUE_LIMIT = 1024
"""Messages waiting for the event loop (the reader's queue); more are dropped and counted."""
PORT_QUEUE_LIMIT = 16384
"""Messages rtmidi itself holds between two polls (python-rtmidi's default is 1,024). When
the reader thread is starved of CPU for a while, a burst (a sysex dump, a controller sweep)
must wait there rather than overflow: measured under a load of 4 on 2 cores, two 1,000-message
bursts overflowed 1,024 ("MidiInJack: message queue limit reached!!")."""


class MidiError(PartimentoError):
    """A MIDI port that cannot be opened, listed or written; the message is one line."""


class RawInput(Protocol):
    """What :class:`InputReader` reads: rtmidi's ``MidiIn.get_message`` (or a fake)."""

    def get_message(self) -> tuple[list[int], float] | None: ...


class RawOutput(Protocol):
    """What :class:`OutputWriter` writes to: rtmidi's ``MidiOut.send_message`` (or a fake)."""

    def send_message(self, message: list[int]) -> None: ...


# --- messages: pure -----------------------------------------------------------------------------


def clean_message(data: Sequence[int]) -> MidiOut | None:
    """A message as the daemon takes it in, or None: :func:`partimento.core.midi.parse` (the one
    parse of input), and of the system real-time bytes only the clock and its transport
    (:data:`~partimento.core.midi.TRANSPORT`; active sensing would wake the engine for nothing).
    A note-on of velocity 0 becomes a note-off on the same channel."""
    msg = midi.parse(data)
    if msg is None or (midi.is_realtime(msg) and msg[0] not in midi.TRANSPORT):
        return None
    return msg


# --- backends -----------------------------------------------------------------------------------


def backend_name(cfg: MidiConfig | None = None, backend: str | None = None) -> str:
    """The backend to use: ``backend`` if given, else ``midi.api`` unless ``auto``, else the
    ``MIDO_BACKEND`` environment variable, else :data:`DEFAULT_BACKEND`."""
    if backend:
        return backend
    if cfg is not None and cfg.api != "auto":
        return cfg.mido_backend
    return os.environ.get("MIDO_BACKEND") or DEFAULT_BACKEND


def _api(backend: str) -> int | None:
    """rtmidi's API constant for a mido backend name; None: try each compiled API."""
    module, _, api = backend.partition("/")
    if module not in (DEFAULT_BACKEND, "rtmidi"):
        raise MidiError(
            f"MIDI backend {backend!r} is not supported: use "
            f"{DEFAULT_BACKEND} or {DEFAULT_BACKEND}/API"
        )
    if not api:
        return None
    known = sorted(RTMIDI_APIS.values())
    if api not in known:
        raise MidiError(f"unknown MIDI API {api!r} in {backend!r} (known: {', '.join(known)})")
    number = getattr(rtmidi, f"API_{api}")
    if number not in rtmidi.get_compiled_api():
        raise MidiError(
            f"MIDI API {api} is not compiled into python-rtmidi "
            f"(compiled: {', '.join(_compiled())})"
        )
    return number


_API_NAMES = {getattr(rtmidi, n): n[4:] for n in dir(rtmidi) if n.startswith("API_")}
"""rtmidi's API constants and mido's names for them (``UNIX_JACK``)."""


def _compiled() -> list[str]:
    return [_API_NAMES[a] for a in rtmidi.get_compiled_api() if a != rtmidi.API_RTMIDI_DUMMY]


def _client(cls: type, backend: str, client_name: str, **kwargs: object):
    """A new rtmidi ``MidiIn``/``MidiOut`` on the backend (in order of preference when the
    backend names no API: the first that starts)."""
    api = _api(backend)
    candidates = (
        [api]
        if api is not None
        else [a for a in rtmidi.get_compiled_api() if a != rtmidi.API_RTMIDI_DUMMY]
    )
    failures = []
    for candidate in candidates:
        try:
            return cls(candidate, client_name, **kwargs)
        except (rtmidi.RtMidiError, OSError) as exc:
            failures.append((candidate, exc))
    reasons = "; ".join(f"{_API_NAMES[a]}: {_one_line(e).rstrip('.')}" for a, e in failures)
    last = failures[-1][1] if failures else None
    raise MidiError(f"no MIDI backend is available ({reasons or 'none compiled in'})") from last


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _api_label(rt: rtmidi.MidiIn | rtmidi.MidiOut) -> str:
    return _API_NAMES.get(rt.get_current_api(), "?")


def list_ports(backend: str | None = None) -> tuple[list[str], list[str]]:
    """The names of the backend's ``(inputs, outputs)``; :class:`MidiError` if it has none
    available. ``backend`` as :func:`backend_name` resolves it."""
    backend = backend_name(backend=backend)
    rt_in = _client(rtmidi.MidiIn, backend, f"{CLIENT_NAME}-ports")
    try:
        rt_out = _client(rtmidi.MidiOut, backend, f"{CLIENT_NAME}-ports")
        try:
            return rt_in.get_ports(), rt_out.get_ports()
        finally:
            rt_out.delete()
    finally:
        rt_in.delete()


# --- ports --------------------------------------------------------------------------------------


class _Port:
    """An open rtmidi port: its name, and whether the port it was opened on is still there."""

    direction = ""

    def __init__(self, rt: rtmidi.MidiIn | rtmidi.MidiOut, name: str, *, virtual: bool) -> None:
        self._rt = rt
        self.name = name
        self.virtual = virtual
        self.api = _api_label(rt)
        self.closed = False
        self.chosen = ""
        """Why this port, when the configuration named none (one line; "" otherwise)."""

    def check(self) -> None:
        """Raise :class:`MidiError` if the port this one was opened on is gone or this is
        closed. (rtmidi reports neither on JACK: sends to a vanished port just vanish.)"""
        if self.closed:
            raise MidiError(f"MIDI {self.direction} {self.name!r} is closed")
        if self.virtual:
            return
        try:
            names = self._rt.get_ports()
        except (rtmidi.RtMidiError, OSError) as exc:
            raise MidiError(f"cannot list MIDI {self.direction}s: {_one_line(exc)}") from exc
        if self.name not in names:
            raise MidiError(f"MIDI {self.direction} {self.name!r} is gone")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._rt.close_port()
            self._rt.delete()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "virtual " if self.virtual else ""
        return f"<{type(self).__name__} {kind}{self.name!r} on {self.api}>"


class MidiInput(_Port):
    """An open input port; :meth:`get_message` is rtmidi's (``(bytes, delta)`` or None)."""

    direction = "input"

    def get_message(self) -> tuple[list[int], float] | None:
        return self._rt.get_message()


class MidiOutput(_Port):
    """An open output port; :meth:`send_message` is rtmidi's, failures as :class:`MidiError`."""

    direction = "output"

    def send_message(self, message: list[int]) -> None:
        if self.closed:
            raise MidiError(f"MIDI output {self.name!r} is closed")
        try:
            self._rt.send_message(message)
        except (rtmidi.RtMidiError, OSError) as exc:
            raise MidiError(f"cannot send to MIDI output {self.name!r}: {_one_line(exc)}") from exc


def _open(
    cls: type[_Port],
    rt_cls: type,
    cfg: MidiConfig,
    backend: str | None,
    client_name: str,
    **kwargs: object,
) -> _Port:
    output = cls is MidiOutput
    direction = cls.direction
    virtual = cfg.virtual_output if output else cfg.virtual_input
    wanted = cfg.output if output else cfg.input
    rt = _client(rt_cls, backend_name(cfg, backend), client_name, **kwargs)
    try:
        if not output:
            # sysex and active sensing never reach Python; the clock does
            rt.ignore_types(sysex=True, timing=False, active_sense=True)
        if virtual:
            if rt.get_current_api() == rtmidi.API_WINDOWS_MM:
                raise _no_virtual_ports(_api_label(rt), direction, virtual)
            try:
                rt.open_virtual_port(virtual)
            except NotImplementedError:  # python-rtmidi's answer where the API has none
                raise _no_virtual_ports(_api_label(rt), direction, virtual) from None
            return cls(rt, virtual, virtual=True)
        names = rt.get_ports()
        own = re.compile(rf"{re.escape(client_name)}(-\d+)?:")
        if output and not wanted:  # a synth or a virtual port, never a Through port
            try:
                choice = default_output.choose(
                    names, own=own, virtual_ok=rt.get_current_api() != rtmidi.API_WINDOWS_MM
                )
            except default_output.NoOutputError as exc:
                raise MidiError(str(exc)) from None
            if choice.virtual:
                virtual = choice.name
                rt.open_virtual_port(choice.name)
                port = cls(rt, choice.name, virtual=True)
                port.chosen = choice.line
                return port
            names = [choice.name]
        elif not wanted:  # "the first port": never one of Partimento's own (it would hear itself)
            names = [n for n in names if not own.match(n)]
        name = cfg.find_port(names, output=output)
        if name is None:
            listed = ", ".join(names) or "none"
            what = f"matches {wanted!r}" if wanted else "is there"
            raise MidiError(f"no MIDI {direction} {what} ({direction}s: {listed})")
        index = rt.get_ports().index(name)
        if rt.get_port_name(index) != name:  # the list changed under us
            raise MidiError(f"MIDI {direction} {name!r} went away while being opened")
        rt.open_port(index, "out" if output else "in")
        port = cls(rt, name, virtual=False)
        if output and not wanted:
            port.chosen = choice.line
        return port
    except MidiError:
        rt.delete()
        raise
    except (rtmidi.RtMidiError, OSError) as exc:
        rt.delete()
        what = f"virtual MIDI {direction} {virtual!r}" if virtual else f"MIDI {direction}"
        raise MidiError(f"cannot open {what}: {_one_line(exc)}") from exc


def _no_virtual_ports(api: str, direction: str, name: str) -> MidiError:
    """The one line for a virtual port asked of an API that has none (Windows MultiMedia)."""
    return MidiError(
        f"cannot open virtual MIDI {direction} {name!r}: {api} has no virtual ports; leave "
        f"midi.virtual_{direction} empty and name a port of a loopback driver (such as "
        f"loopMIDI) in midi.{direction}"
    )


def open_input(
    cfg: MidiConfig,
    *,
    backend: str | None = None,
    client_name: str = CLIENT_NAME,
    queue_limit: int = PORT_QUEUE_LIMIT,
) -> MidiInput:
    """The input ``cfg`` names (``midi.input``, or a virtual port ``midi.virtual_input``).

    ``backend`` overrides the one the configuration and ``MIDO_BACKEND`` choose
    (:func:`backend_name`). ``queue_limit``: messages rtmidi keeps between two polls.
    """
    port = _open(MidiInput, rtmidi.MidiIn, cfg, backend, client_name, queue_size_limit=queue_limit)
    log.info("MIDI input %r", port)
    return port  # type: ignore[return-value]


def open_output(
    cfg: MidiConfig, *, backend: str | None = None, client_name: str = CLIENT_NAME
) -> MidiOutput:
    """The output ``cfg`` names (``midi.output``, or a virtual port ``midi.virtual_output``)."""
    port = _open(MidiOutput, rtmidi.MidiOut, cfg, backend, client_name)
    log.info("MIDI output %r", port)
    return port  # type: ignore[return-value]


# --- the reader thread --------------------------------------------------------------------------

Arrival = tuple[MidiOut, float]
"""A message as the reader hands it on, with its :func:`time.monotonic` arrival time."""


Handler = Callable[[MidiOut, float], None]
"""Called in the reader thread with each message and its arrival time."""


class InputReader:
    """A thread that polls ``port`` and calls ``handler(message, t)`` in the thread, or (with
    ``queue``) puts ``(message, t)`` into ``queue`` on ``loop``. One of the two is given.

    A handler runs in the reader thread, so it holds up the next message while it works: it
    must be quick, and it must not raise (what it raises ends the thread as a failed read).

    Counters: ``received`` (read from the port), ``rejected`` (junk: see
    :func:`clean_message`), ``filtered`` (channel messages on another channel than
    ``channel``), ``dropped`` (the queue was full; never blocks). ``received`` is the sum of
    the other three and of what reached the queue. ``received``, ``rejected`` and ``filtered``
    are written by the thread, ``dropped`` on the loop.

    If reading fails, or a port opened by name disappears (checked every ``check_interval``
    seconds while the port is idle), the thread ends: ``error`` holds the
    :class:`MidiError` and ``on_error(error)`` is called on the loop.
    """

    def __init__(
        self,
        port: RawInput,
        queue: asyncio.Queue[Arrival] | None = None,
        *,
        handler: Handler | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        channel: int | None = None,
        poll_interval: float = POLL_INTERVAL,
        check_interval: float = CHECK_INTERVAL,
        on_error: Callable[[MidiError], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if channel is not None and not 0 <= channel <= 15:
            raise ValueError(f"channel must be 0-15 or None, got {channel!r}")
        if (queue is None) == (handler is None):
            raise ValueError("give an InputReader either a queue or a handler")
        self._port = port
        self._queue = queue
        self._handler = handler
        self._loop = loop or asyncio.get_running_loop()
        self.channel = channel
        self._poll_interval = poll_interval
        self._check_interval = check_interval
        self._on_error = on_error
        self._clock = clock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="midi-in", daemon=True)
        self.received = 0
        self.rejected = 0
        self.filtered = 0
        self.dropped = 0
        self.error: MidiError | None = None

    def start(self) -> InputReader:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 1.0) -> bool:
        """Ask the thread to end and wait up to ``timeout`` s; whether it has ended."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("MIDI input thread did not end within %.1f s", timeout)
            return False
        return True

    def __enter__(self) -> InputReader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _deliver(self, item: Arrival) -> None:
        """On the loop: into the queue, or counted as dropped."""
        assert self._queue is not None
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1

    def _failed(self, error: MidiError) -> None:
        if self._on_error is not None:
            self._on_error(error)

    def _run(self) -> None:
        get, clock, sleep = self._port.get_message, self._clock, time.sleep
        stopping, channel, handler = self._stopping, self.channel, self._handler
        check = getattr(self._port, "check", None)
        next_check = clock() + self._check_interval
        try:
            while not stopping.is_set():
                event = get()
                if event is None:
                    if check is not None and clock() >= next_check:
                        check()
                        next_check = clock() + self._check_interval
                    sleep(self._poll_interval)
                    continue
                t = clock()
                self.received += 1
                message = clean_message(event[0])
                if message is None:
                    self.rejected += 1
                elif channel is not None and message[0] < 0xF0 and message[0] & 0x0F != channel:
                    self.filtered += 1
                elif handler is not None:
                    handler(message, t)
                else:
                    self._loop.call_soon_threadsafe(self._deliver, (message, t))
        except MidiError as exc:
            self._fail(exc)
        except RuntimeError as exc:
            if self._loop.is_closed():  # the loop ended before the reader: nothing to tell
                return
            self._fail(MidiError(f"MIDI input failed: {_one_line(exc)}"), exc)
        except Exception as exc:
            self._fail(MidiError(f"MIDI input failed: {_one_line(exc)}"), exc)

    def _fail(self, error: MidiError, cause: BaseException | None = None) -> None:
        if cause is not None:
            error.__cause__ = cause
        self.error = error
        log.error("%s", error)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
            self._loop.call_soon_threadsafe(self._failed, error)


# --- the writer ---------------------------------------------------------------------------------


class OutputWriter:
    """Sends raw messages to ``port``; ``sent`` counts them. Safe to call from any thread.

    A message that is not one whole MIDI message is a programming error (:class:`ValueError`);
    a port that fails is a :class:`MidiError`, upon which the caller releases its notes
    (:meth:`NoteLedger.release_all`) and reopens.
    """

    def __init__(self, port: RawOutput) -> None:
        self._port = port
        self._lock = threading.Lock()
        self.sent = 0

    def send(self, message: MidiOut) -> None:
        data = list(message)
        if not midi.is_sendable(data):
            raise ValueError(f"not a MIDI message: {tuple(message)!r}")
        with self._lock:
            try:
                self._port.send_message(data)
            except MidiError:
                raise
            except Exception as exc:
                raise MidiError(f"cannot send MIDI: {_one_line(exc)}") from exc
            self.sent += 1

    def send_all(self, messages: Iterable[MidiOut]) -> None:
        for message in messages:
            self.send(message)

    def check(self) -> None:
        """:class:`MidiError` if the port is closed or the port it was opened on is gone."""
        check = getattr(self._port, "check", None)
        if check is not None:
            check()
