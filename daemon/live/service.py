"""The live daemon: MIDI in, the engine, MIDI out, as one asyncio ``TaskGroup``.

:func:`serve` loads the models (off the event loop), opens the ports ``[midi]`` names (off the
loop), sends a panic to the output (a previous run may have left notes hanging), calls
``on_ready`` (and systemd ``READY=1``) and runs its named tasks until SIGINT or SIGTERM
(or ``stop_event``):

The input is answered in the MIDI reader thread itself, not on the loop: the
:class:`~partimento.live.midi_io.InputReader` stamps each message with :func:`time.monotonic` where
it arrives and calls :meth:`Service.on_message`, which runs :meth:`Engine.handle(message, t)
<partimento.engine.engine.Engine.handle>` and sends what it returns at once, then wakes the loop's
tasks. When ``prepare`` has answered the step in advance, ``handle`` only looks the answer up (about
0.1 ms of Python); otherwise inference runs inside it (one model call per step, about 0.6 ms).
The engine and the output are shared by that thread and the loop, so every use of either
holds :attr:`Service.lock` (never across an ``await``). Measured over real JACK ports, the
hop to the loop (a wake-up through its self-pipe, a queue, a task switch) cost 0.1-0.3 ms at
p50 and milliseconds at p99 when the loop was busy; see docs/decisions.md.
:class:`Timings` records, per message, the time from its arrival stamp to the moment after
its replies were sent, and how long ``handle`` alone took.

``midi-in``
    Waits for a failure of :meth:`Service.on_message` (an error in the engine, which the
    reader thread cannot raise) and raises it, ending the daemon as any task's error does.
``scheduler``
    Sleeps until :meth:`Engine.next_time <partimento.engine.engine.Engine.next_time>` (woken early
    by every input message, which may change it), then calls ``tick`` and sends what is due. The
    last :data:`PRECISE_SECONDS` are slept in a worker thread, which ticks and sends itself
    when it wakes (under the lock). Lateness, the moment after sending minus the time it was
    due, is recorded per tick that sent something.
``prepare``
    After every message and tick (:data:`PREPARE_DELAY` later, once the reply has gone out),
    :meth:`Engine.prepare <partimento.engine.engine.Engine.prepare>` in a worker thread answers the
    next grid step for every melody note it could bring (2-3 ms of model time per sixteenth,
    onnxruntime releasing the GIL), and makes the key and tempo estimates due. An answer
    made for a state that has moved on is never used.
``ports``
    Every :data:`PORT_CHECK_SECONDS`: is the output's port still there, has the reader thread
    ended? A lost output: one warning line, the engine's notes are forgotten (``panic``; the
    port that held them is gone), messages are dropped (and counted) until it is back. A lost
    input (the reader logs its own line): the harmony of notes whose note-offs will never come
    is released (``panic``). Either is reopened by the same name every
    :data:`REOPEN_SECONDS`, never crashing the daemon; a reopened output gets a panic first.
``reload``
    On SIGHUP (or MQTT ``cmd/reload``): reads the configuration file again and builds a new
    engine from it off the loop (models read again from disk); only then are the old engine's
    notes released and the new one put in its place. Ports are reopened if ``[midi]``
    changed, the MQTT link restarted if ``[mqtt]`` did. A file or model that does not load
    changes nothing (one error line). Under systemd: ``RELOADING=1``, then ``READY=1``.
``mqtt``
    While ``[mqtt]`` is enabled, :class:`partimento.live.mqtt.MqttLink`: control commands are
    applied by :meth:`Service.apply`, the retained status is :meth:`Service.status` (republished
    when the mode, model or a port changes), telemetry :meth:`Service.metrics`. The link
    reconnects by itself; the music never waits for it.
``watchdog``
    Under a systemd watchdog (``WATCHDOG_USEC``), ``WATCHDOG=1`` every half period, from the
    loop: a loop that hangs stops the pings and systemd restarts the daemon.
``signals``
    Waits for the stop event (set by SIGINT/SIGTERM), sends systemd ``STOPPING=1``, then
    cancels the others.

On every way out (a signal, an error in a task, a failure while starting) :meth:`Service.close`
takes :meth:`Engine.stop <partimento.engine.engine.Engine.stop>`'s release messages (the ledger's
note-offs, then sustain off and all-notes-off on every channel) and sends them while the output
is still open, then closes the ports within :data:`CLOSE_SECONDS`. :func:`serve` returns 0 after
a stop; an error in a task is raised again (the first one, not the task group's wrapper) after
the cleanup.

Blocking calls (opening, checking and closing ports, stopping the reader) run in daemon threads
of their own (:func:`off_loop`), not the loop's default executor: a JACK call that hangs can
then delay neither the loop nor the end of the process. Models are loaded with
:func:`asyncio.to_thread` before anything else runs.

Needs Python 3.11 (:class:`asyncio.TaskGroup`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from partimento import config as config_files
from partimento.config import Config, ConfigError
from partimento.core import midi
from partimento.core.midi import is_note_off
from partimento.core.types import MidiOut, ModelLike
from partimento.engine.engine import Engine, EngineError
from partimento.files import model as model_files
from partimento.live import control
from partimento.live.midi_io import (
    InputReader,
    MidiError,
    MidiInput,
    MidiOutput,
    OutputWriter,
    open_input,
    open_output,
)
from partimento.live.sdnotify import Notifier, watchdog_task

log = logging.getLogger(__name__)

PORT_CHECK_SECONDS = 1.0
"""How often the ``ports`` task checks the ports (and tries to reopen a lost one)."""
PRECISE_SECONDS = 0.002
"""The scheduler sleeps on the loop until this long before an event is due, then in a worker
thread (:func:`sleep_until`) until it is: asyncio's timers round waits up to whole milliseconds
(measured: p99 2.5 ms late). Before, the last stretch yielded to the loop again and again; that
spinning took the interpreter from the MIDI reader thread half the time (``Engine.handle``
p50 0.2 ms in the daemon against 0.09 ms alone)."""
SWITCH_INTERVAL = 0.0001
"""Seconds a Python thread runs before another may take the interpreter
(:func:`sys.setswitchinterval`; default 5 ms). Measured at 5 notes/s: with 0.5 ms, arrival to
sent p99 3.5 ms while ``Engine.handle`` alone was 0.4 ms (the loop waited for the prepare
thread's Python parts); with 0.1 ms, 1.1 ms."""
PREPARE_DELAY = 0.002
"""Seconds between an input message (or a tick) and the answers prepared ahead for the next
step (asyncio rounds it up to 2-3 ms). The reply is sent by then but still has to go out in
the next JACK period; a prepare (2-3 ms of CPU) started at once held that up: measured at 30
notes/s over JACK with 64-frame periods, the reply heard p99 5.4-6.3 ms after the note sent,
4.3-5.0 ms of it after the daemon's send, against 3.1 ms with this delay (the echo: 2.9 ms).
A note that comes within the delay and the prepare is answered inline (0.6-2 ms)."""
REOPEN_SECONDS = 1.0
"""How often a lost port is tried again by name."""
FLUSH_SECONDS = 0.02
"""Wait after the last messages before closing the output: JACK sends what rtmidi queued in
its next period (1.3 ms at 64 frames); a few periods of margin."""
CLOSE_SECONDS = 1.5
"""At most this long closing the ports at the end, so a stop takes well under 2 s."""
TIMING_WINDOW = 10_000
"""How many of the latest measurements :class:`Timings` keeps of each kind."""

T = TypeVar("T")


# --- measurements -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0-100) of ``values`` (NaN when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _to_ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1e3, 3)


def _ms(values: Sequence[float]) -> str:
    return (
        f"p50 {percentile(values, 50) * 1e3:.2f} ms, p99 {percentile(values, 99) * 1e3:.2f} "
        f"ms, max {max(values) * 1e3:.2f} ms"
        if values
        else "none"
    )


class Timings:
    """What the service measures on the monotonic clock, in seconds (the latest
    :data:`TIMING_WINDOW` of each).

    * ``note_on``: melody note-ons (status 0x9n, velocity above 0), from the reader's arrival
      stamp to the moment after the replies were sent: queue, ``handle`` (inference) and send;
    * ``handle``: :meth:`Engine.handle` alone, for the same note-ons;
    * ``message``: the same as ``note_on``, for every message;
    * ``lateness``: for each tick that sent something, the moment after sending minus the
      time the engine had said it was due;
    * ``tick``: :meth:`Engine.tick` alone, every call (the one that ends a phrase in continue
      mode generates the whole answer, inline like the note-on's inference).
    """

    def __init__(self, window: int = TIMING_WINDOW) -> None:
        self.note_on: deque[float] = deque(maxlen=window)
        self.handle: deque[float] = deque(maxlen=window)
        self.message: deque[float] = deque(maxlen=window)
        self.lateness: deque[float] = deque(maxlen=window)
        self.tick: deque[float] = deque(maxlen=window)

    def record_message(
        self, message: Sequence[int], arrived: float, started: float, handled: float, sent: float
    ) -> None:
        self.message.append(sent - arrived)
        if midi.is_note_on(message):
            self.note_on.append(sent - arrived)
            self.handle.append(handled - started)

    def record_tick(self, due: float, started: float, ticked: float, sent: float | None) -> None:
        """A tick due at ``due``, run from ``started`` to ``ticked``; ``sent``: when what it
        returned had been sent (None: it returned nothing)."""
        self.tick.append(ticked - started)
        if sent is not None:
            self.lateness.append(sent - due)

    def summary(self) -> str:
        """One line: note-on arrival to sent, handle alone, tick lateness."""
        longest = max(self.tick, default=0.0) * 1e3
        return (
            f"{len(self.note_on)} note-ons, arrival to sent {_ms(self.note_on)} "
            f"(Engine.handle {_ms(self.handle)}); {len(self.lateness)} ticks sent, "
            f"lateness {_ms(self.lateness)}; longest Engine.tick {longest:.2f} ms"
        )


# --- threads ------------------------------------------------------------------------------------


async def off_loop(
    fn: Callable[..., T], *args: Any, orphan: Callable[[T], object] | None = None
) -> T:
    """``fn(*args)`` in a daemon thread of its own, awaited.

    The result comes back with ``loop.call_soon_threadsafe``. If the caller was cancelled
    meanwhile, ``orphan(result)`` is run in a new daemon thread (e.g. to close a port opened
    for nobody).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(ok: bool, value: Any) -> None:
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        elif ok and orphan is not None:
            threading.Thread(target=orphan, args=(value,), name="orphan", daemon=True).start()

    def work() -> None:
        try:
            value, ok = fn(*args), True
        except BaseException as exc:  # handed to the awaiting side, whatever it is
            value, ok = exc, False
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(deliver, ok, value)

    name = getattr(fn, "__name__", "blocking")
    threading.Thread(target=work, name=f"off-loop-{name}", daemon=True).start()
    return await future


async def wait_event(event: asyncio.Event, timeout: float | None) -> None:
    """Until ``event`` is set or ``timeout`` seconds (None: no limit) have passed.

    Not :func:`asyncio.wait_for`: on Python 3.11 it loses a cancellation that comes just as
    the event is set, and the task then runs on after the daemon was told to stop (seen: a
    daemon that logged "stopping" and never stopped, its scheduler woken by the MIDI reader
    thread at that moment). :func:`asyncio.timeout` does not.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


def sleep_until(due: float) -> None:
    """Block until the monotonic clock reaches ``due`` (a thread's sleep, not the loop's)."""
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _close_input(reader: InputReader | None, port: MidiInput | None) -> None:
    """Stop the reader thread, then close its port (never while the thread may read it)."""
    if reader is not None and not reader.stop():
        return  # the thread still polls the port: leave it open rather than crash in rtmidi
    if port is not None:
        port.close()


def _close(port: MidiInput | MidiOutput) -> None:
    port.close()


# --- the service --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """What :func:`serve` tells ``on_ready`` once models are loaded and ports open."""

    mode: str
    model: str
    input: str
    output: str
    output_chosen: str = ""
    """Why this output, when the configuration named none (one line)."""

    @property
    def line(self) -> str:
        return (
            f"partimento: ready (mode {self.mode}, model {self.model}, in {self.input}, "
            f"out {self.output})"
        )


def model_loader(config: Config) -> Callable[[str], ModelLike]:
    """Load a model by name: from ``models_dir`` first when configured, then as
    :func:`partimento.files.model.load` finds it."""

    def load(name: str) -> ModelLike:
        folder = config.models_dir
        if folder is not None and (folder / name / "model.json").exists():
            return model_files.load(folder / name)
        try:
            return model_files.load(name)
        except model_files.ModelError as exc:
            if folder is None or not str(exc).startswith("no model"):
                raise
            raise model_files.ModelError(f"{exc}, nor in models_dir {folder}") from None

    return load


class Service:
    """The running daemon's state: the engine, the ports, the tasks' shared events."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        stop: asyncio.Event,
        *,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.seed = seed
        self.started = time.monotonic()
        self.reloads = 0
        self.link: Any = None
        """The :class:`partimento.live.mqtt.MqttLink` while ``[mqtt]`` is enabled."""
        self.timings = Timings()
        self.lock = threading.RLock()
        """Held for every use of the engine, the output and :attr:`timings`: the MIDI reader
        thread (:meth:`on_message`) and the loop (ticks, commands, reload, ports) share them.
        Reentrant: a failed send on the loop releases the notes under the same hold."""
        self.input: MidiInput | None = None
        self.output: MidiOutput | None = None
        self.reader: InputReader | None = None
        self.writer: OutputWriter | None = None
        self.unsent = 0
        """Messages dropped because the output was lost."""
        self.dropped_before = 0
        """Input messages the readers of earlier connections dropped (their queue was full)."""
        self.rejected_before = 0
        """Input that was no MIDI message the daemon reads, at earlier connections."""
        self._stop = stop
        self._wake = asyncio.Event()
        self._trouble = asyncio.Event()
        self._prepare_wanted = asyncio.Event()  # the engine may answer ahead
        self._prepare_wanted.set()  # the first note, too
        self._lost: list[MidiInput | MidiOutput] = []
        self._tried: dict[str, bool] = {"input": False, "output": False}
        self._closed = False
        self._reload_wanted = asyncio.Event()
        self._mqtt_changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine_failed: asyncio.Future[BaseException] | None = None
        self._broken = False  # the engine raised in the reader thread: input is ignored

    # -- start -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the output (and silence it), then the input and its reader thread."""
        midi = self.config.midi
        self.output = await off_loop(open_output, midi, orphan=_close)
        self.writer = OutputWriter(self.output)
        with self.lock:
            self._send(self.engine.panic(time.monotonic()))
        self.input = await off_loop(open_input, midi, orphan=_close)
        self._start_reader()

    def _start_reader(self) -> None:
        assert self.input is not None
        self._loop = asyncio.get_running_loop()
        if self._engine_failed is None:
            self._engine_failed = self._loop.create_future()
        self.reader = InputReader(
            self.input, handler=self.on_message, on_error=self._on_input_error
        )
        self.reader.start()

    def on_message(self, message: MidiOut, arrived: float) -> None:
        """In the MIDI reader thread: the engine's answer to one input message, sent at once;
        then the loop's scheduler and ``prepare`` are woken. Never raises: an error in the
        engine is handed to the ``midi-in`` task (and input is ignored from then on)."""
        if self._broken:
            return
        clock = time.monotonic
        try:
            with self.lock:
                engine = self.engine
                started = clock()
                out = engine.handle(message, arrived)
                handled = clock()
                lost = self._write(out)
                sent = clock()
                engine.settle()  # the note's bookkeeping, once its reply has gone
                self.timings.record_message(message, arrived, started, handled, sent)
        except Exception as exc:
            self._broken = True
            self._to_loop(self._engine_error, exc)
            return
        self._to_loop(self._after_input, lost)

    def _to_loop(self, fn: Callable[..., object], *args: Any) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody to tell
                self._loop.call_soon_threadsafe(fn, *args)

    def _after_input(self, lost: MidiError | None) -> None:
        if lost is not None:
            self._output_lost(lost)
        self._wake.set()
        self._prepare_wanted.set()

    def _engine_error(self, exc: BaseException) -> None:
        if self._engine_failed is not None and not self._engine_failed.done():
            self._engine_failed.set_result(exc)

    def _forget_reader(self) -> tuple[InputReader | None, MidiInput | None]:
        reader, port = self.reader, self.input
        if reader is not None:
            self.dropped_before += reader.dropped
            self.rejected_before += reader.rejected
        self.reader = self.input = None
        return reader, port

    def _on_input_error(self, error: MidiError) -> None:
        self._trouble.set()  # the reader has logged it

    def ready(self) -> Ready:
        assert self.input is not None and self.output is not None
        mode = self.engine.mode
        return Ready(
            mode,
            self.engine.model_names[mode],
            self.input.name,
            self.output.name,
            getattr(self.output, "chosen", ""),
        )

    # -- run ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """The tasks, until the stop event; an error in one is raised again here."""
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._midi_in(), name="midi-in"),
                    tg.create_task(self._scheduler(), name="scheduler"),
                    tg.create_task(self._ports(), name="ports"),
                    tg.create_task(self._prepare(), name="prepare"),
                    tg.create_task(self._reloader(), name="reload"),
                    tg.create_task(self._mqtt(), name="mqtt"),
                ]
                interval = self.notifier.watchdog_interval()
                if interval:
                    tasks.append(
                        tg.create_task(watchdog_task(self.notifier, interval), name="watchdog")
                    )
                tg.create_task(self._signals(tasks), name="signals")
        except Exception as exc:
            errors = list(_leaves(exc))
            for other in errors[1:]:
                log.error("also failed: %s: %s", type(other).__name__, other)
            raise errors[0] from None  # the group adds nothing but a wrapper

    async def _signals(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        await self._stop.wait()
        self.notifier.stopping("releasing notes and closing ports")
        log.info("stopping")
        for task in tasks:
            task.cancel()  # a task cancelled from outside ends the group without an error

    async def _midi_in(self) -> None:
        """Raises what the engine raised in the reader thread (:meth:`on_message`)."""
        if self._engine_failed is None:
            self._engine_failed = asyncio.get_running_loop().create_future()
        raise await self._engine_failed

    async def _prepare(self) -> None:
        """After every message or tick, answer the next step in advance, in a thread: the
        model runs there while the loop keeps reading input (onnxruntime releases the GIL).
        It starts :data:`PREPARE_DELAY` after the message, once the reply has left."""
        while True:
            await self._prepare_wanted.wait()
            await asyncio.sleep(PREPARE_DELAY)
            self._prepare_wanted.clear()
            await asyncio.to_thread(self.engine.prepare)

    async def _scheduler(self) -> None:
        clock = time.monotonic
        while True:
            with self.lock:
                due = self.engine.next_time()  # a reload may replace the engine
            now = clock()
            if due is not None and now < due <= now + PRECISE_SECONDS:
                # the last stretch in a worker thread, which ticks itself when it wakes
                lost = await asyncio.to_thread(self._tick_when_due, due)
            elif due is None or due > now:
                self._wake.clear()
                timeout = None if due is None else due - now - PRECISE_SECONDS
                await wait_event(self._wake, timeout)
                continue
            else:
                lost = self._tick(due)
            if lost is not None:
                self._output_lost(lost)
            self._prepare_wanted.set()
            await asyncio.sleep(0)  # let input in between ticks

    def _tick_when_due(self, due: float) -> MidiError | None:
        """In a worker thread: sleep until ``due``, then :meth:`_tick`. Ticking there rather
        than back on the loop saves a wake-up of the loop (0.1-0.5 ms, more under load)."""
        sleep_until(due)
        return self._tick(due)

    def _tick(self, due: float) -> MidiError | None:
        """:meth:`Engine.tick` and its messages sent, in any thread; a failed send's error."""
        clock = time.monotonic
        with self.lock:
            now = clock()
            out = self.engine.tick(now)
            ticked = clock()
            lost = self._write(out)
            self.timings.record_tick(due, now, ticked, clock() if out else None)
        return lost

    async def _ports(self) -> None:
        while True:
            await wait_event(self._trouble, PORT_CHECK_SECONDS)
            self._trouble.clear()
            await self._check_output()
            await self._check_input()
            await self._close_lost()

    # -- reload ------------------------------------------------------------------------------

    def request_reload(self) -> None:
        """Reload the configuration soon (SIGHUP, ``cmd/reload``); one at a time."""
        self._reload_wanted.set()

    async def _reloader(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            with contextlib.suppress(ConfigError, EngineError, MidiError):
                await self.reload()  # refused: logged, the old settings kept

    async def reload(self) -> None:
        """Read the configuration file again and play on with it: a new engine (models read
        again from disk, every sounding note of the old one released first), the ports
        reopened if ``[midi]`` changed, the MQTT link restarted if ``[mqtt]`` changed. A file
        that does not load, or a model that does not, changes nothing: raises
        :class:`~partimento.config.ConfigError` or :class:`~partimento.engine.engine.EngineError`
        (logged).
        """
        with self.notifier.reload(f"reloading {self.config_path}"):
            try:
                await self._reload()
            except (ConfigError, EngineError, MidiError) as exc:
                log.error("reload refused, old settings kept: %s", exc)
                raise
        self._changed()

    async def _reload(self) -> None:
        if self.config_path is None:
            raise ConfigError("no configuration file to reload (started without --config)")
        config = await asyncio.to_thread(config_files.load, self.config_path)
        engine = await asyncio.to_thread(Engine, config, model_loader(config), seed=self.seed)
        try:
            await asyncio.to_thread(engine.preload)
        except EngineError as exc:
            log.warning("%s; switching to it will fail", exc)
        with self.lock:
            self._send(self.engine.stop(time.monotonic()))  # all the old engine sounded
            old, self.engine, self.config = self.config, engine, config
        self._prepare_wanted.set()
        self._wake.set()
        if config.midi != old.midi:
            await self._reopen_ports()
        if config.mqtt != old.mqtt:
            self._mqtt_changed.set()
        self.reloads += 1
        log.info(
            "reloaded %s: mode %s, model %s",
            self.config_path,
            engine.mode,
            engine.model_names[engine.mode],
        )

    async def _reopen_ports(self) -> None:
        """Close both ports and open them as ``[midi]`` now says (a failure: the ``ports``
        task tries again by name every :data:`REOPEN_SECONDS`)."""
        reader, port = self._forget_reader()
        with self.lock:
            output, self.output, self.writer = self.output, None, None
        await off_loop(_close_input, reader, port)
        if output is not None:
            await off_loop(_close, output)
        self._trouble.set()  # the ports task reopens them (and sends the new output a panic)

    # -- MQTT --------------------------------------------------------------------------------

    async def _mqtt(self) -> None:
        """The MQTT link while ``[mqtt]`` is enabled, restarted when a reload changes it."""
        while True:
            self._mqtt_changed.clear()
            if not self.config.mqtt.enabled:
                self.link = None
                await self._mqtt_changed.wait()
                continue
            from partimento.live.mqtt import MqttLink  # aiomqtt only when it is used

            self.link = MqttLink(self.config.mqtt, self)
            task = asyncio.create_task(self.link.run(), name="mqtt-link")
            changed = asyncio.create_task(self._mqtt_changed.wait())
            try:
                await asyncio.wait({task, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (task, changed):
                    t.cancel()
                await asyncio.gather(task, changed, return_exceptions=True)

    async def apply(self, command: control.Command) -> str | None:
        """A control command from MQTT; None when done, else why not (one line)."""
        engine = self.engine
        try:
            if isinstance(command, control.SetStyle):  # loaded first, off the loop
                await asyncio.to_thread(engine.load_model, command.name)
                if engine is not self.engine:
                    return "a reload replaced the engine meanwhile; send it again"
            with self.lock:
                refused = self._apply(engine, command, time.monotonic())
            if refused:
                return refused
        except (EngineError, ConfigError, ValueError) as exc:
            return str(exc).splitlines()[0]
        self._prepare_wanted.set()
        self._wake.set()
        self._changed()
        return None

    def _apply(self, engine: Engine, command: control.Command, now: float) -> str | None:
        if isinstance(command, control.SetMode):
            self._send(engine.set_mode(command.mode, now))
            if engine.mode != command.mode:
                return (
                    f"cannot switch to {command.mode}: model "
                    f"{engine.model_names[command.mode]!r} does not load"
                )
        elif isinstance(command, control.SetStyle):
            self._send(engine.swap_model(command.name, now))
            if engine.model_names[engine.mode] != command.name:
                return f"model {command.name!r} cannot play live"
        elif isinstance(command, control.SetTemperature):
            engine.set_temperature(command.value)
        elif isinstance(command, control.SetTempo):
            engine.set_tempo(command.bpm, now)
        elif isinstance(command, control.SetBars):
            engine.set_bars(command.bars)
        elif isinstance(command, control.Panic):
            self._send(engine.panic(now))
            log.info("panic: every note released")
        elif isinstance(command, control.Reload):
            self.request_reload()
        return None

    def status(self) -> dict[str, Any]:
        """For the retained MQTT status: what plays, where, since when."""
        from importlib.metadata import PackageNotFoundError, version

        with self.lock:
            stats = self.engine.stats()
        try:
            release = version("partimento")
        except PackageNotFoundError:
            release = "unknown"
        return {
            "mode": stats["mode"],
            "style": stats["model"],
            "model": stats["model"],
            "models": stats["models"],
            "temperature": stats["temperature"],
            "tempo": stats["bpm"],
            "tempo_source": stats["tempo_source"],
            "bars": self.engine.config.continue_.bars,
            "ports": self.ports(),
            "version": release,
            "uptime": round(time.monotonic() - self.started, 1),
            "reloads": self.reloads,
        }

    def metrics(self) -> dict[str, Any]:
        """For MQTT telemetry: counts since the start, latencies over the latest notes."""
        with self.lock:  # copies: the reader thread appends to the timings
            stats, note_on = self.engine.stats(), list(self.timings.note_on)
            lateness = list(self.timings.lateness)
        dropped = (self.reader.dropped if self.reader is not None else 0) + self.dropped_before
        return {
            "notes_in": stats["notes_in"],
            "notes_out": stats["notes_out"],
            "messages_in": stats["messages_in"],
            "invalid": self.rejected_before + (self.reader.rejected if self.reader else 0),
            "dropped": dropped,
            "unsent": self.unsent,
            "latency_ms": {
                "p50": _to_ms(percentile(note_on, 50)),
                "p99": _to_ms(percentile(note_on, 99)),
                "max": _to_ms(max(note_on, default=math.nan)),
            },
            "lateness_ms": {
                "p50": _to_ms(percentile(lateness, 50)),
                "p99": _to_ms(percentile(lateness, 99)),
            },
            "answered_ahead": stats["answered_ahead"],
            "harmony_steps": stats["harmony_steps"],
            "sounding": stats["sounding"],
        }

    def ports(self) -> dict[str, Any]:
        """Each port's configured pattern, the port open for it, and whether it is there."""
        midi = self.config.midi
        return {
            "input": {
                "wanted": midi.input,
                "open": self.input.name if self.input else None,
                "state": "open" if self.reader is not None else "lost",
            },
            "output": {
                "wanted": midi.output,
                "open": self.output.name if self.output else None,
                "state": "open" if self.writer is not None else "lost",
            },
        }

    def _changed(self) -> None:
        """Mode, style, settings or ports changed: tell MQTT and systemd."""
        if self.link is not None:
            self.link.request_status()
        engine = self.engine
        ports = self.ports()
        lost = [d for d in ("input", "output") if ports[d]["state"] == "lost"]
        self.notifier.status(
            f"{engine.mode} with {engine.model_names[engine.mode]}"
            + (f"; MIDI {' and '.join(lost)} lost" if lost else "")
        )

    # -- ports -------------------------------------------------------------------------------

    async def _check_output(self) -> None:
        if self.writer is not None:
            try:
                await off_loop(self.writer.check)
            except MidiError as exc:
                self._output_lost(exc)
                return  # reopened at the next check, a second from now
        if self.writer is None:
            port = await self._reopen("output", open_output)
            if port is not None:
                assert isinstance(port, MidiOutput)
                with self.lock:
                    self.output, self.writer = port, OutputWriter(port)
                    self._send(self.engine.panic(time.monotonic()))
                self._changed()

    async def _check_input(self) -> None:
        reader = self.reader
        if reader is not None and (reader.error is not None or not reader.running):
            reader, port = self._forget_reader()
            with self.lock:
                self._send(self.engine.panic(time.monotonic()))  # no note-off will come
            self._changed()
            await off_loop(_close_input, reader, port)
            return
        if reader is None:
            port = await self._reopen("input", open_input)
            if port is not None:
                assert isinstance(port, MidiInput)
                self.input = port
                self._start_reader()
                self._changed()

    async def _reopen(
        self, direction: str, opener: Callable[..., Any]
    ) -> MidiInput | MidiOutput | None:
        try:
            port = await off_loop(opener, self.config.midi, orphan=_close)
        except MidiError as exc:
            if not self._tried[direction]:  # one line per loss, not one per attempt
                log.info(
                    "MIDI %s not back yet (%s); trying every %g s", direction, exc, REOPEN_SECONDS
                )
                self._tried[direction] = True
            return None
        self._tried[direction] = False
        log.warning("MIDI %s %r reopened", direction, port.name)
        return port

    def _output_lost(self, error: MidiError) -> None:
        """Forget the output and the notes it held; the ``ports`` task reopens it."""
        with self.lock:
            if self.output is None:
                return
            log.warning(
                "%s: its notes are forgotten, reopening it by name every %g s",
                error,
                REOPEN_SECONDS,
            )
            self._lost.append(self.output)
            self.output = self.writer = None
            self.engine.panic(time.monotonic())  # the ledger forgets what the lost port held
        self._trouble.set()
        self._changed()

    async def _close_lost(self) -> None:
        while self._lost:
            port = self._lost.pop()
            with contextlib.suppress(Exception):
                await off_loop(_close, port)

    def _send(self, messages: list[MidiOut]) -> None:
        """On the loop, holding :attr:`lock`: :meth:`_write`, and a failed output forgotten."""
        lost = self._write(messages)
        if lost is not None:
            self._output_lost(lost)

    def _write(self, messages: list[MidiOut]) -> MidiError | None:
        """Holding :attr:`lock`, in any thread: ``messages`` out, or counted as unsent while
        the output is lost. A failed send is returned, for the loop to act on."""
        if not messages:
            return None
        if self.writer is None:
            self.unsent += len(messages)
            return None
        try:
            self.writer.send_all(messages)
        except MidiError as exc:
            return exc
        return None

    # -- stop --------------------------------------------------------------------------------

    async def close(self) -> None:
        """The last messages (``Engine.stop``) out while the output is open, then every port
        closed within :data:`CLOSE_SECONDS`. Never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            with self.lock:
                last = self.engine.stop(time.monotonic())
                if self.writer is not None:
                    self._send(last)
            if self.writer is not None:
                released = sum(1 for m in last if is_note_off(m))
                log.info(
                    "released %d sounding notes, all notes off on %d channels",
                    released,
                    sum(1 for m in last if midi.kind(m) == midi.CONTROL_CHANGE) // 2,
                )
                await asyncio.sleep(FLUSH_SECONDS)
        except Exception as exc:  # the ports must close whatever went wrong here
            log.error("releasing the notes failed: %s: %s", type(exc).__name__, exc)
        dropped = self.dropped_before + (self.reader.dropped if self.reader else 0)
        jobs = [off_loop(_close_input, self.reader, self.input)]
        jobs += [off_loop(_close, p) for p in (self.output, *self._lost) if p is not None]
        self.reader = self.input = self.output = self.writer = None
        self._lost = []
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*jobs, return_exceptions=True), CLOSE_SECONDS
            )
        except TimeoutError:
            log.warning(
                "MIDI ports not closed within %g s; leaving them to the exit", CLOSE_SECONDS
            )
        else:
            for result in results:
                if isinstance(result, BaseException):
                    log.warning("closing a MIDI port failed: %s", result)
        with self.lock:
            stats = self.engine.stats()
        log.info(
            "stopped: %d notes in, %d out, %d dropped unsent, %d input messages dropped "
            "(queue full); %d of %d harmony steps answered ahead; %s",
            stats["notes_in"],
            stats["notes_out"],
            self.unsent,
            dropped,
            stats["answered_ahead"],
            stats["harmony_steps"],
            self.timings.summary(),
        )


def _leaves(exc: BaseException) -> Iterable[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    inner = getattr(exc, "exceptions", None)
    if not isinstance(inner, tuple):
        yield exc
        return
    for e in inner:
        yield from _leaves(e)


def _install_signals(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event, reload: Callable[[], object]
) -> list[int]:
    installed = []
    hangup = getattr(signal, "SIGHUP", None)  # not on Windows
    for sig, handler in ((signal.SIGINT, stop.set), (signal.SIGTERM, stop.set), (hangup, reload)):
        if sig is None:
            continue
        try:
            loop.add_signal_handler(sig, handler)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread; Windows
            continue
        installed.append(sig)
    return installed


async def serve(
    config: Config,
    *,
    config_path: Path | None = None,
    stop_event: asyncio.Event | None = None,
    on_ready: Callable[[Ready], object] | None = None,
    seed: int | None = None,
    notifier: Notifier | None = None,
) -> int:
    """Run the daemon until SIGINT, SIGTERM or ``stop_event``; 0 after a stop. SIGHUP reloads
    ``config_path``. Under systemd (``NOTIFY_SOCKET``), ``READY=1`` once the models are loaded
    and the ports open, watchdog pings from the loop, ``RELOADING=1`` and ``STOPPING=1``.

    Raises :class:`~partimento.engine.engine.EngineError` (the start mode's model), or
    :class:`~partimento.live.midi_io.MidiError` (a port), or a task's error after the cleanup.
    """
    loop = asyncio.get_running_loop()
    # the prepare and MIDI reader threads hold the GIL for their Python parts; a short switch
    # interval (default 5 ms) lets a melody note in sooner
    sys.setswitchinterval(SWITCH_INTERVAL)
    stop = stop_event or asyncio.Event()
    notifier = notifier or Notifier()
    service: Service | None = None
    installed = _install_signals(loop, stop, lambda: service and service.request_reload())
    try:
        engine = await asyncio.to_thread(Engine, config, model_loader(config), seed=seed)
        try:
            await asyncio.to_thread(engine.preload)
        except EngineError as exc:
            log.warning("%s; switching to it will fail", exc)
        if stop.is_set():
            return 0
        service = Service(
            config, engine, stop, config_path=config_path, notifier=notifier, seed=seed
        )
        await service.open()
        if stop.is_set():
            return 0
        ready = service.ready()
        notifier.ready(ready.line.removeprefix("partimento: "))
        if on_ready is not None:
            on_ready(ready)
        await service.run()
        return 0
    finally:
        notifier.stopping()
        if service is not None:
            await service.close()
        for sig in installed:
            loop.remove_signal_handler(sig)
        notifier.close()
