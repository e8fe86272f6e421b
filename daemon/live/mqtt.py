"""The MQTT edge: control messages in, status, telemetry and errors out (aiomqtt).

:class:`MqttLink` runs as one task on the daemon's event loop (:meth:`MqttLink.run`, forever,
until cancelled). It talks to the daemon through a small :class:`Controlled` object; what the
topics carry is defined, purely, in :mod:`partimento.live.control`. With ``P`` the configured
``mqtt.topic_prefix``:

* It connects with a last will: the retained ``P/status`` message
  ``{"online":false,"reason":"connection lost"}`` (QoS 1), which the broker publishes when the
  daemon vanishes without disconnecting (killed, network gone: within 1.5 keepalives).
* On every connection it publishes the retained ``P/status`` (``Controlled.status()`` plus
  ``"online": true`` and ``"time"``, QoS 1), then subscribes to ``P/set/+`` and ``P/cmd/+``
  (QoS 1).
* Each control message is read by :func:`partimento.live.control.parse` and handed to
  ``Controlled.apply``. A message that is refused, by the parser or by ``apply`` (which returns
  the reason, e.g. an unknown model), gives one warning line in the log and a JSON error on
  ``P/error`` (not retained, QoS 1), such as
  ``{"error":"set/style: no model named 'x'","time":1767225600.0,"topic":"P/set/style"}``.
  After a ``set/*`` command is applied, ``P/status`` is published again.
* Every ``mqtt.metrics_interval`` seconds (0: never) it publishes ``P/metrics``
  (``Controlled.metrics()`` plus ``"reconnects"`` and ``"time"``, not retained, QoS 0) and
  ``P/status`` again; :meth:`MqttLink.request_status` asks for ``P/status`` at once (the service
  calls it when the mode, style or ports change).
* When the connection is lost, or the broker is absent, refuses the login or cannot be reached,
  it logs one line per outage (not one per attempt; a refusal with a new reason, such as a bad
  password once the broker is back, gets its own line), waits a jittered exponential backoff
  (:class:`Backoff`: 0.5 s, doubling, at most :data:`BACKOFF_CAP` s, each wait drawn from its
  upper half) and connects again; :attr:`MqttLink.reconnects` counts the connections after the
  first. With the cap at 3 s, control is back at most about 3 s after the broker is.
* Cancelled (the daemon stops), it publishes the retained ``P/status``
  ``{"online":false,"reason":"stopped"}`` and disconnects (so the broker drops the will), each
  step given at most :data:`STOP_SECONDS`, then lets the cancellation through.

Nothing raised inside reaches the daemon except :class:`asyncio.CancelledError`: an error of
``apply``, ``status`` or ``metrics`` is logged (one line) and the link goes on. The password is
never logged. aiomqtt connects in the loop's default executor (paho's connect blocks for up to
5 s when the host does not answer); the loop itself is never blocked by the link. Python 3.11's
:func:`asyncio.wait_for`, which aiomqtt uses for every acknowledgement, can lose a cancellation
that arrives with the acknowledgement; the link checks ``Task.cancelling()`` after those waits,
so it still stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from partimento.config import ConfigError, MqttConfig
from partimento.live import control
from partimento.live.control import Command, ControlError

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.5
"""Seconds: the first wait after a failure (drawn from its upper half, as every wait)."""
BACKOFF_FACTOR = 2.0
BACKOFF_CAP = 3.0
"""The longest wait between attempts: control returns this soon after the broker does."""
STABLE_SECONDS = 10.0
"""A connection that lasted this long starts the backoff over; one dropped sooner (a broker
that accepts and then closes, another client with the same identifier) does not, so such a
loop slows down to one attempt per :data:`BACKOFF_CAP`."""
CALL_SECONDS = 5.0
"""How long aiomqtt waits for the broker's answer to a connect, subscribe or QoS 1 publish."""
STOP_SECONDS = 1.0
"""At a stop: at most this long for the offline status, and again for the disconnection."""
KEEPALIVE = 10
"""Seconds; the broker publishes the last will 1.5 keepalives after the daemon goes silent."""
INCOMING_LIMIT = 256
"""Control messages waiting to be read; more (a flood) are dropped by aiomqtt, with a warning."""


class Controlled(Protocol):
    """What the link asks of the daemon; every method is called on the event loop."""

    def apply(self, command: Command) -> str | Awaitable[str | None] | None:
        """Carry out ``command``; None when done, else why not, one line without the topic
        (e.g. ``no model named 'x'``). May return an awaitable of the same, awaited before
        the next control message is read."""

    def status(self) -> Mapping[str, Any]:
        """The retained status: mode, style, tempo, ports, model, version, uptime ... (JSON
        values; the link adds ``"online"`` and ``"time"``)."""

    def metrics(self) -> Mapping[str, Any]:
        """Telemetry: notes in and out, latency percentiles, dropped messages ... (the link
        adds ``"reconnects"`` and ``"time"``)."""


@dataclass
class Backoff:
    """Waits between connection attempts: ``first`` doubling up to ``cap``, each drawn
    uniformly from the upper half of that (jitter, so many daemons do not retry in step)."""

    first: float = BACKOFF_FIRST
    factor: float = BACKOFF_FACTOR
    cap: float = BACKOFF_CAP
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.first * self.factor ** min(self.failures, 32))
        self.failures += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


_SETTINGS = (
    control.SetMode,
    control.SetStyle,
    control.SetTemperature,
    control.SetTempo,
    control.SetBars,
)


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode("utf-8")


def _cancel_check() -> None:
    """Raise CancelledError if this task has been asked to stop.

    Python 3.11's :func:`asyncio.wait_for` loses a cancellation that arrives just as what it
    waits for completes, and aiomqtt waits for every acknowledgement with it: a loop of ours
    would then go on (or wait) forever. The request stays counted in ``Task.cancelling``.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _reason(exc: BaseException) -> str:
    """One line: the error, and what caused it when aiomqtt wraps it."""
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return control.one_line(text)


async def _end(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for them (at most :data:`STOP_SECONDS`); their errors are
    taken (the caller has raised the one that matters)."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    _, pending = await asyncio.wait(tasks, timeout=STOP_SECONDS)
    for task in tasks:
        if task in pending:
            log.warning("MQTT: the %s task did not stop within %g s", task.get_name(), STOP_SECONDS)
        elif not task.cancelled():
            task.exception()


class MqttLink:
    """Control and telemetry over the broker ``config`` names, for ``target``."""

    def __init__(
        self,
        config: MqttConfig,
        target: Controlled,
        *,
        keepalive: int = KEEPALIVE,
        backoff: Backoff | None = None,
    ) -> None:
        self.config = config
        self.target = target
        self.keepalive = keepalive
        self.client_id = config.client_id or f"partimento-{socket.gethostname()}"
        self.reconnects = 0
        """Connections made after the first one."""
        self._backoff = backoff or Backoff()
        self._prefix = config.topic_prefix
        self._status_wanted = asyncio.Event()
        self._connected_once = False
        self._connected_at: float | None = None  # monotonic, while connected
        self._down_since: float | None = None  # monotonic, during an outage
        self._last_reason: str | None = None  # logged during this outage
        self._failed_calls: dict[str, str] = {}  # status/metrics: the last error logged
        self._orphans: set[asyncio.Task[Any]] = set()
        self._secret = ""  # the password, to keep it out of log lines

    # -- public ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected_at is not None

    @property
    def where(self) -> str:
        """``host:port`` of the broker, for log lines."""
        return f"{self.config.host}:{self.config.port}" + (" (TLS)" if self.config.tls else "")

    def topic(self, suffix: str) -> str:
        return f"{self._prefix}/{suffix}"

    def request_status(self) -> None:
        """Publish ``P/status`` soon (at once when connected, else on connecting). Call it on
        the event loop's thread (from another: ``loop.call_soon_threadsafe``)."""
        self._status_wanted.set()

    async def run(self) -> None:
        """Connect, serve, reconnect: until cancelled. Raises nothing but CancelledError."""
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (aiomqtt.MqttError, ConfigError) as exc:
                self._down(exc)
            except Exception as exc:  # a bug here or in aiomqtt: logged, never the daemon's end
                log.debug("MQTT: unexpected error", exc_info=True)
                self._down(exc, unexpected=True)
            _cancel_check()
            await asyncio.sleep(self._backoff.next())

    # -- connection --------------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        cfg = self.config
        password = cfg.resolve_password()  # read now: a rotated file or credential is seen
        self._secret = password or ""
        tls = None
        if cfg.tls:
            tls = aiomqtt.TLSParameters(ca_certs=str(cfg.ca_file) if cfg.ca_file else None)
        will = aiomqtt.Will(
            self.topic("status"), control.offline_payload(control.OFFLINE_LOST), qos=1, retain=True
        )
        return aiomqtt.Client(
            cfg.host,
            cfg.port,
            identifier=self.client_id,
            username=cfg.username or None,
            password=password,
            will=will,
            keepalive=self.keepalive,
            timeout=CALL_SECONDS,
            tls_params=tls,
            max_queued_incoming_messages=INCOMING_LIMIT,
            logger=log.getChild("client"),
        )

    async def _session(self) -> None:
        """One connection, from connecting to its loss (raised) or a cancellation."""
        client = self._client()
        await self._connect(client)
        try:
            self._up()
            await self._serve(client)
        except asyncio.CancelledError:
            await self._goodbye(client)
            raise
        finally:
            lasted = time.monotonic() - (self._connected_at or time.monotonic())
            self._connected_at = None
            if lasted >= STABLE_SECONDS:
                self._backoff.reset()
            await self._disconnect(client)

    async def _connect(self, client: aiomqtt.Client) -> None:
        """``async with``'s entry, except that a connection completed after a cancellation is
        closed again rather than left open for nobody."""
        entering = asyncio.ensure_future(client.__aenter__())
        try:
            await asyncio.shield(entering)
        except asyncio.CancelledError:
            entering.add_done_callback(lambda f: self._close_orphan(client, f))
            raise

    def _close_orphan(self, client: aiomqtt.Client, entered: asyncio.Future[Any]) -> None:
        if entered.cancelled() or entered.exception() is not None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing: the exit closes it
            task = asyncio.ensure_future(self._disconnect(client))
            self._orphans.add(task)
            task.add_done_callback(self._orphans.discard)

    async def _disconnect(self, client: aiomqtt.Client) -> None:
        """``async with``'s exit, bounded; never raises but CancelledError (a second one)."""
        client.timeout = STOP_SECONDS
        try:
            await client.__aexit__(None, None, None)
        except Exception as exc:
            log.debug("MQTT: disconnecting: %s", self._clean(_reason(exc)))

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """The retained offline status, at a stop; best effort."""
        try:
            await client.publish(
                self.topic("status"),
                control.offline_payload(control.OFFLINE_STOPPED),
                qos=1,
                retain=True,
                timeout=STOP_SECONDS,
            )
        except Exception as exc:
            log.warning(
                "MQTT: the offline status was not published at the stop (%s)",
                self._clean(_reason(exc)),
            )

    def _up(self) -> None:
        now = time.monotonic()
        if self._connected_once:
            self.reconnects += 1
        if self._down_since is not None:
            log.info(
                "MQTT: connected to %s as %s after %.1f s",
                self.where,
                self.client_id,
                now - self._down_since,
            )
        else:
            log.info("MQTT: connected to %s as %s", self.where, self.client_id)
        self._connected_once = True
        self._connected_at = now
        self._down_since = self._last_reason = None

    def _down(self, exc: BaseException, *, unexpected: bool = False) -> None:
        """Log the failure: one line when an outage starts, another only for a new refusal."""
        reason = self._clean(_reason(exc))
        kind = f"unexpected {type(exc).__name__}: " if unexpected else ""
        if self._down_since is None:
            self._down_since = time.monotonic()
            lost = self._connected_once
            log.warning(
                "MQTT: %s %s (%s%s); %s every %g s at most",
                "lost the connection to" if lost else "cannot connect to",
                self.where,
                kind,
                reason,
                "reconnecting" if lost else "retrying",
                BACKOFF_CAP,
            )
        elif reason != self._last_reason and (unexpected or isinstance(exc, MqttConnectError)):
            log.warning("MQTT: %s refused the connection (%s%s)", self.where, kind, reason)
        else:
            log.debug("MQTT: still no connection to %s (%s)", self.where, reason)
            return
        self._last_reason = reason

    def _clean(self, text: str) -> str:
        """``text`` without the password, should some library ever put it in a message."""
        return text.replace(self._secret, "***") if len(self._secret) >= 4 else text

    # -- serving -----------------------------------------------------------------------------

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Status, subscriptions, then control and telemetry until one fails."""
        await self._publish_status(client)
        await self._subscribe(client)
        _cancel_check()
        tasks = (
            asyncio.create_task(self._receive(client), name="mqtt-control"),
            asyncio.create_task(self._telemetry(client), name="mqtt-telemetry"),
        )
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the connection's error
            raise aiomqtt.MqttError("the message stream ended")
        finally:
            await _end(tasks)

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        filters = [(self.topic(f), 1) for f in control.SUBSCRIPTIONS]
        granted = await client.subscribe(filters)
        refused = [
            f
            for (f, _), g in zip(filters, granted, strict=False)
            if int(getattr(g, "value", g)) >= 0x80
        ]
        if refused:
            log.warning(
                "MQTT: %s refused the subscription to %s: no control from it",
                self.where,
                ", ".join(refused),
            )

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            await self._handle(
                client, message.topic.value, _payload_bytes(message.payload), bool(message.retain)
            )
            _cancel_check()

    async def _handle(
        self, client: aiomqtt.Client, topic: str, payload: bytes, retained: bool
    ) -> None:
        command = control.parse(self._prefix, topic, payload, retained=retained)
        if isinstance(command, ControlError):
            await self._refuse(client, topic, command.message)
            return
        refusal = await self._apply(command)
        if refusal is not None:
            await self._refuse(client, topic, f"{command.topic}: {control.one_line(refusal)}")
            return
        log.info("MQTT control: %s", command)
        if isinstance(command, _SETTINGS):
            self.request_status()

    async def _apply(self, command: Command) -> str | None:
        """``target.apply``: None when done, else why not (its exception, if it raised)."""
        try:
            outcome = self.target.apply(command)
            if inspect.isawaitable(outcome):
                outcome = await outcome
        except Exception as exc:
            log.error(
                "MQTT control: applying %s failed: %s: %s",
                command,
                type(exc).__name__,
                control.one_line(str(exc)),
            )
            return f"failed ({type(exc).__name__})"
        return None if outcome is None else str(outcome)

    async def _refuse(self, client: aiomqtt.Client, topic: str, message: str) -> None:
        log.warning("MQTT control refused: %s", message)
        await client.publish(
            self.topic("error"), control.error_payload(topic, message, now=time.time()), qos=1
        )

    # -- telemetry ---------------------------------------------------------------------------

    async def _telemetry(self, client: aiomqtt.Client) -> None:
        """``P/metrics`` (and ``P/status``) every interval; ``P/status`` when requested."""
        interval = self.config.metrics_interval
        due = time.monotonic() + interval if interval else math.inf
        while True:
            _cancel_check()
            wait = due - time.monotonic()
            if wait > 0 and not self._status_wanted.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._status_wanted.wait(), None if math.isinf(wait) else wait
                    )
                _cancel_check()
            now = time.monotonic()
            if now >= due:
                due = due + interval if due + interval > now else now + interval
                await self._publish_metrics(client)
                self._status_wanted.set()
            if self._status_wanted.is_set():
                await self._publish_status(client)

    async def _publish_status(self, client: aiomqtt.Client) -> None:
        self._status_wanted.clear()
        status = self._call(self.target.status, "status") or {}
        await client.publish(
            self.topic("status"),
            control.status_payload(status, now=time.time()),
            qos=1,
            retain=True,
        )

    async def _publish_metrics(self, client: aiomqtt.Client) -> None:
        metrics = self._call(self.target.metrics, "metrics")
        if metrics is None:
            return
        payload = control.metrics_payload(
            {**metrics, "reconnects": self.reconnects}, now=time.time()
        )
        await client.publish(self.topic("metrics"), payload, qos=0)

    def _call(self, fn: Callable[[], Mapping[str, Any]], what: str) -> Mapping[str, Any] | None:
        """``fn()``, or None when it raised or gave no mapping (logged once per distinct
        error)."""
        try:
            result = fn()
            if not isinstance(result, Mapping):
                raise TypeError(f"returned {type(result).__name__}, not a mapping")
        except Exception as exc:
            text = f"{type(exc).__name__}: {control.one_line(str(exc))}"
            if self._failed_calls.get(what) != text:
                log.error("MQTT: the daemon's %s() failed: %s", what, text)
                self._failed_calls[what] = text
            return None
        self._failed_calls.pop(what, None)
        return result
