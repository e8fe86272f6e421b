"""The MQTT link against a real mosquitto, driven and watched with mosquitto_pub/mosquitto_sub.

A fake daemon stands in for the service (it records what it is asked to apply). Tests that do
not disturb a broker use ``PARTIMENTO_TEST_BROKER`` when it is set, under a topic prefix of
their own; tests that stop, start or reconfigure a broker start their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from partimento.config import MqttConfig
from partimento.live.control import Command, Panic, SetBars, SetMode, SetStyle, SetTempo
from partimento.live.mqtt import Backoff, MqttLink

from support.broker import (
    Endpoint,
    Received,
    Subscription,
    broker,
    free_port,
    killed_with_parent,
    mqtt_pub,
    mqtt_sub,
    shared_broker,
    unique_prefix,
)
from support.jack import unavailable
from support.project import ROOT

CONTROL_BACK_SECONDS = 5.0
"""After the broker is back, control must work again within this."""


class FakeDaemon:
    """The service's side of the link: records commands; refuses or fails a few on purpose."""

    def __init__(self) -> None:
        self.applied: list[tuple[Command, float]] = []
        self.mode = "harmonize"

    def apply(self, command: Command) -> Any:
        if isinstance(command, SetStyle) and command.name == "nonexistent":
            return "no model named 'nonexistent'"
        if isinstance(command, SetBars) and command.bars == 13:
            raise RuntimeError("unlucky")
        if isinstance(command, SetTempo):
            return self._tempo(command)  # an awaitable answer
        self._record(command)
        return None

    async def _tempo(self, command: SetTempo) -> str | None:
        await asyncio.sleep(0.01)
        if command.bpm == 299:
            return "too fast for this test"
        self._record(command)
        return None

    def _record(self, command: Command) -> None:
        self.applied.append((command, time.monotonic()))
        if isinstance(command, SetMode):
            self.mode = command.mode

    @property
    def commands(self) -> list[Command]:
        return [c for c, _ in self.applied]

    def status(self) -> dict[str, Any]:
        return {"mode": self.mode, "style": "bach", "version": "test"}

    def metrics(self) -> dict[str, Any]:
        return {"notes_in": 3, "latency_p50_ms": math.nan}


def config(endpoint: Endpoint, prefix: str, **kw: Any) -> MqttConfig:
    kw.setdefault("metrics_interval", 0)
    return MqttConfig(
        enabled=True, host=endpoint.host, port=endpoint.port, topic_prefix=prefix, **kw
    )


class Running:
    """The link's ``run`` as a task; at the exit, cancelled and timed."""

    def __init__(self, link: MqttLink) -> None:
        self.link = link
        self.task: asyncio.Task[None] | None = None
        self.stop_seconds = math.nan

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.link.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        if self.task.done():
            self.task.result()  # run() ended by itself: raise what it raised
            raise AssertionError("MqttLink.run returned")
        started = time.monotonic()
        self.task.cancel()
        done, _ = await asyncio.wait([self.task], timeout=5)
        self.stop_seconds = time.monotonic() - started
        assert done and self.task.cancelled(), "the link did not end at its cancellation"


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.02)


async def wait_for(
    sub: Subscription, match: Callable[[Received], bool], timeout: float, since: int = 0
) -> Received:
    return await asyncio.to_thread(sub.wait_for, match, timeout, since=since)


async def pub(
    endpoint: Endpoint, topic: str, payload: bytes | str | None = None, **kw: Any
) -> None:
    await asyncio.to_thread(mqtt_pub, endpoint, topic, payload, **kw)


async def control_back(
    endpoint: Endpoint, prefix: str, fake: FakeDaemon, since: float, bpm: float
) -> float:
    """Publish ``set/tempo bpm`` until it is applied; seconds from ``since`` to that."""
    deadline = since + 2 * CONTROL_BACK_SECONDS
    while time.monotonic() < deadline:
        await pub(endpoint, f"{prefix}/set/tempo", f"{bpm:g}")
        for _ in range(10):
            times = [t for c, t in fake.applied if c == SetTempo(bpm)]
            if times:
                return times[0] - since
            await asyncio.sleep(0.02)
    raise AssertionError(f"set/tempo {bpm:g} not applied within {2 * CONTROL_BACK_SECONDS} s")


def status_is(**fields: Any) -> Callable[[Received], bool]:
    def match(m: Received) -> bool:
        return m.topic.endswith("/status") and all(m.json().get(k) == v for k, v in fields.items())

    return match


def mqtt_lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "partimento.live.mqtt" and r.levelno >= level
    ]


@pytest.fixture(scope="module")
def shared() -> Iterator[Endpoint]:
    with shared_broker() as endpoint:
        yield endpoint


@pytest.fixture
def prefix(shared: Endpoint) -> Iterator[str]:
    """A topic prefix of this test; its retained status is cleared at the end."""
    p = unique_prefix()
    yield p
    with contextlib.suppress(Exception):
        mqtt_pub(shared, f"{p}/status", None, retain=True)


def late_retained(endpoint: Endpoint, prefix: str) -> dict[str, Received]:
    """What a subscriber that comes now receives as retained, by topic."""
    with mqtt_sub(endpoint, f"{prefix}/#") as late:
        time.sleep(0.3)
        return {m.topic: m for m in late.messages if m.retained}


# --- against a running broker -------------------------------------------------------------------


def test_status_control_request_and_clean_stop(shared, prefix, caplog):
    caplog.set_level(logging.INFO)
    status = f"{prefix}/status"

    async def scenario() -> Running:
        fake = FakeDaemon()
        link = MqttLink(config(shared, prefix), fake)
        with mqtt_sub(shared, f"{prefix}/#") as sub:
            async with Running(link) as run:
                online = await wait_for(sub, status_is(online=True), 5)
                assert {k: v for k, v in online.json().items() if k != "time"} == {
                    "mode": "harmonize",
                    "style": "bach",
                    "version": "test",
                    "online": True,
                }
                assert abs(online.json()["time"] - time.time()) < 5
                retained = await asyncio.to_thread(late_retained, shared, prefix)
                assert retained[status].json()["online"] is True

                mark = sub.mark()
                await pub(shared, f"{prefix}/set/mode", "continue")
                await until(lambda: fake.commands == [SetMode("continue")], 5, "mode applied")
                await wait_for(sub, status_is(mode="continue", online=True), 5, since=mark)

                fake.mode = "harmonize"  # changed from the keyboard: the service asks
                mark = sub.mark()
                link.request_status()
                await wait_for(sub, status_is(mode="harmonize", online=True), 2, since=mark)
                mark = sub.mark()
            offline = await wait_for(sub, status_is(online=False), 3, since=mark)
            assert offline.payload == b'{"online":false,"reason":"stopped"}'
            await asyncio.sleep(0.5)  # a clean disconnection: the broker drops the will
            assert [m.payload for m in sub.on(status, since=mark)] == [offline.payload]
            assert sub.on(f"{prefix}/metrics") == [] and sub.on(f"{prefix}/error") == []
        retained = await asyncio.to_thread(late_retained, shared, prefix)
        assert retained[status].payload == offline.payload
        return run

    run = asyncio.run(scenario())
    assert run.stop_seconds < 1.0
    assert "MQTT control: SetMode(mode='continue')" in mqtt_lines(caplog, logging.INFO)
    assert mqtt_lines(caplog) == []


def test_refused_messages_are_logged_and_published_on_the_error_topic(shared, prefix, caplog):
    caplog.set_level(logging.INFO)
    error = f"{prefix}/error"
    # stored before the daemon connects: a retained setting is applied, a retained command not
    mqtt_pub(shared, f"{prefix}/set/bars", "5", retain=True)
    mqtt_pub(shared, f"{prefix}/cmd/panic", "now", retain=True)

    async def scenario() -> tuple[FakeDaemon, list[Received], dict[str, Received]]:
        fake = FakeDaemon()
        link = MqttLink(config(shared, prefix), fake)
        with mqtt_sub(shared, f"{prefix}/#") as sub:
            async with Running(link):
                await wait_for(sub, lambda m: m.topic == error, 5)
                for topic, payload in [
                    ("set/temperature", "hot"),
                    ("set/volume", "3"),
                    ("set/style", "nonexistent"),
                    ("set/bars", "13"),
                    ("set/tempo", "299"),
                    ("set/tempo", "90"),
                    ("cmd/panic", None),
                ]:
                    await pub(shared, f"{prefix}/{topic}", payload)
                await until(lambda: Panic() in fake.commands, 5, "the panic applied")
                await until(lambda: len(sub.on(error)) >= 6, 2, "six errors")
            errors = sub.on(error)
            retained = await asyncio.to_thread(late_retained, shared, prefix)
        return fake, errors, retained

    try:
        fake, errors, retained = asyncio.run(scenario())
    finally:
        for topic in ("set/bars", "cmd/panic"):
            mqtt_pub(shared, f"{prefix}/{topic}", None, retain=True)

    assert fake.commands == [SetBars(5), SetTempo(90.0), Panic()]
    published = [(e.json()["topic"], e.json()["error"]) for e in errors]
    assert published == [
        (
            f"{prefix}/cmd/panic",
            "cmd/panic: a retained command is not acted on (publish it without retain)",
        ),
        (
            f"{prefix}/set/temperature",
            'set/temperature: expected a number from 0.05 to 5, got "hot"',
        ),
        (
            f"{prefix}/set/volume",
            "set/volume: unknown topic (known: set/mode, set/style, "
            "set/temperature, set/tempo, set/bars, cmd/panic, cmd/reload)",
        ),
        (f"{prefix}/set/style", "set/style: no model named 'nonexistent'"),
        (f"{prefix}/set/bars", "set/bars: failed (RuntimeError)"),
        (f"{prefix}/set/tempo", "set/tempo: too fast for this test"),
    ]
    assert all(abs(e.json()["time"] - time.time()) < 30 for e in errors)
    assert error not in retained  # errors are not retained
    warnings = mqtt_lines(caplog)
    assert [w for w in warnings if w.startswith("MQTT control refused: ")] == [
        f"MQTT control refused: {message}" for _, message in published
    ]
    assert any("applying SetBars(bars=13) failed: RuntimeError: unlucky" in w for w in warnings)


def test_metrics_and_status_every_interval(shared, prefix):
    metrics, status = f"{prefix}/metrics", f"{prefix}/status"

    async def scenario() -> tuple[Received, list[Received], list[Received]]:
        link = MqttLink(config(shared, prefix, metrics_interval=1), FakeDaemon())
        with mqtt_sub(shared, f"{prefix}/#") as sub:
            async with Running(link):
                online = await wait_for(sub, status_is(online=True), 5)
                await until(lambda: len(sub.on(metrics)) >= 3, 4.5, "three metrics messages")
                await asyncio.sleep(0.1)
            retained = await asyncio.to_thread(late_retained, shared, prefix)
            assert metrics not in retained
            return online, sub.on(metrics), sub.on(status)

    online, sent, statuses = asyncio.run(scenario())
    times = [online.t] + [m.t for m in sent[:3]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.7 < g < 1.5 for g in gaps), gaps
    assert {k: v for k, v in sent[0].json().items() if k != "time"} == {
        "notes_in": 3,
        "latency_p50_ms": None,
        "reconnects": 0,
    }
    # the status goes out again with every metrics message (and once more, offline, at the stop)
    online_statuses = [s for s in statuses if s.json()["online"]]
    assert len(online_statuses) >= 1 + len(sent[:3])


CHILD = """
import asyncio, sys
from partimento.config import MqttConfig
from partimento.live.mqtt import Backoff, MqttLink

class Idle:
    def apply(self, command): return None
    def status(self): return {"mode": "harmonize"}
    def metrics(self): return {}

host, port, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
config = MqttConfig(host=host, port=port, topic_prefix=prefix, metrics_interval=0)
asyncio.run(MqttLink(config, Idle(), keepalive=2).run())
"""


def test_the_broker_publishes_the_last_will_when_the_daemon_goes_silent(shared, prefix):
    status = f"{prefix}/status"
    with mqtt_sub(shared, f"{prefix}/#") as sub:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, shared.host, str(shared.port), prefix],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            preexec_fn=killed_with_parent(),
        )
        try:
            sub.wait_for(status_is(online=True), 10)
            child.send_signal(signal.SIGSTOP)  # silent, its connection still open
            frozen = time.monotonic()
            will = sub.wait_for(status_is(online=False), 10)
        finally:
            child.kill()
            child.wait(5)
    # keepalive 2 s: the broker waits 1.5 keepalives without a packet, then publishes the will;
    # mosquitto 2.0 checks coarsely (measured 3.2 to 5.7 s). The default keepalive (10 s) would
    # take 15 s or more; a closed connection would bring the will at once.
    assert 2.0 < will.t - frozen < 9.0
    assert will.payload == b'{"online":false,"reason":"connection lost"}'
    assert late_retained(shared, prefix)[status].payload == will.payload


def test_cancelling_while_the_broker_is_absent_is_prompt(caplog):
    async def scenario() -> Running:
        link = MqttLink(config(Endpoint("127.0.0.1", free_port()), unique_prefix()), FakeDaemon())
        async with Running(link) as run:
            await asyncio.sleep(0.8)  # refused, then waiting to try again
            assert not link.connected
        return run

    run = asyncio.run(scenario())
    assert run.stop_seconds < 0.2
    assert len(mqtt_lines(caplog)) == 1


def test_a_missing_password_variable_is_one_line_and_no_crash(caplog, monkeypatch):
    monkeypatch.delenv("PARTIMENTO_TEST_NO_SUCH_PASSWORD", raising=False)
    nowhere = Endpoint("127.0.0.1", free_port())

    async def scenario() -> MqttLink:
        link = MqttLink(
            config(
                nowhere,
                unique_prefix(),
                username="daemon",
                password_env="PARTIMENTO_TEST_NO_SUCH_PASSWORD",
            ),
            FakeDaemon(),
        )
        async with Running(link):
            await asyncio.sleep(0.8)  # tried at least twice
        return link

    assert not asyncio.run(scenario()).connected
    assert mqtt_lines(caplog) == [
        f"MQTT: cannot connect to 127.0.0.1:{nowhere.port} (mqtt.password_env: the environment "
        "variable PARTIMENTO_TEST_NO_SUCH_PASSWORD is not set); retrying every 3 s at most"
    ]


class SwallowingClient:
    """Stands in for ``aiomqtt.Client``: every acknowledgement comes with the cancellation, and
    the cancellation is lost, as Python 3.11's ``asyncio.wait_for`` (which aiomqtt uses) loses
    it when the awaited future completes in the same loop iteration."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.timeout = 5.0
        self.published: list[str] = []

    async def __aenter__(self) -> SwallowingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def publish(self, topic: str, payload: bytes, **kw: Any) -> None:
        self.published.append(topic)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.2)

    async def subscribe(self, filters: list[tuple[str, int]]) -> tuple[int, ...]:
        return (1,) * len(filters)

    @property
    def messages(self) -> Any:
        async def never() -> Any:
            await asyncio.Event().wait()
            yield

        return never()


@pytest.mark.parametrize("during", ["the first status", "a requested status"])
def test_a_cancellation_lost_inside_aiomqtt_still_stops_the_link(during, monkeypatch, caplog):
    monkeypatch.setattr("partimento.live.mqtt.aiomqtt.Client", SwallowingClient)

    async def scenario() -> Running:
        link = MqttLink(config(Endpoint("127.0.0.1", 1), unique_prefix()), FakeDaemon())
        async with Running(link) as run:
            if during == "a requested status":
                await until(lambda: link.connected, 2, "connected")
                await asyncio.sleep(0.3)  # the first status is out
                link.request_status()
            await asyncio.sleep(0.05)  # cancelled while the status is being published
        return run

    run = asyncio.run(scenario())
    assert run.stop_seconds < 0.8  # the lost cancellation, then the offline status: 0.4 s
    assert mqtt_lines(caplog) == []


def test_backoff_doubles_from_half_a_second_up_to_the_cap_with_jitter():
    backoff = Backoff(rng=random.Random(1))
    waits = [backoff.next() for _ in range(8)]
    ceilings = [0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True)), waits
    assert len(set(waits)) == len(waits)  # jittered
    backoff.reset()
    assert backoff.next() <= 0.5


# --- brokers of their own -----------------------------------------------------------------------


def test_a_broker_started_late_gives_control_within_5_s(caplog):
    caplog.set_level(logging.DEBUG)
    prefix = unique_prefix()

    async def scenario(b) -> tuple[float, MqttLink]:
        fake = FakeDaemon()
        link = MqttLink(config(b.endpoint, prefix), fake)
        async with Running(link):
            await asyncio.sleep(2.5)  # several attempts: the waits have grown to the cap
            assert not link.connected
            b.start(wait=False)
            started = time.monotonic()
            await asyncio.to_thread(b.wait_ready)
            elapsed = await control_back(b.endpoint, prefix, fake, started, 101)
        return elapsed, link

    with broker(start=False) as b:
        elapsed, link = asyncio.run(scenario(b))
    assert elapsed < CONTROL_BACK_SECONDS
    assert link.reconnects == 0
    warnings = mqtt_lines(caplog)
    assert len(warnings) == 1, warnings  # one line for the outage, not one per attempt
    assert warnings[0].startswith(f"MQTT: cannot connect to 127.0.0.1:{b.port} (")
    attempts = [m for m in mqtt_lines(caplog, logging.DEBUG) if "still no connection" in m]
    assert len(attempts) >= 2  # it did try again (and said so only in debug lines)


def test_control_returns_within_5_s_of_a_broker_restart(caplog):
    caplog.set_level(logging.INFO)
    prefix = unique_prefix()

    async def scenario(b) -> tuple[float, MqttLink, Received]:
        fake = FakeDaemon()
        link = MqttLink(config(b.endpoint, prefix, metrics_interval=1), fake)
        async with Running(link):
            await control_back(b.endpoint, prefix, fake, time.monotonic(), 100)
            b.stop()
            await until(lambda: not link.connected, 3, "the loss noticed")
            await asyncio.sleep(1.5)
            b.start(wait=False)
            started = time.monotonic()
            await asyncio.to_thread(b.wait_ready)
            elapsed = await control_back(b.endpoint, prefix, fake, started, 102)
            with mqtt_sub(b.endpoint, f"{prefix}/#") as sub:
                counted = await wait_for(sub, lambda m: m.topic.endswith("/metrics"), 2.5)
        return elapsed, link, counted

    with broker() as b:
        elapsed, link, counted = asyncio.run(scenario(b))
    assert elapsed < CONTROL_BACK_SECONDS
    assert link.reconnects == 1
    assert counted.json()["reconnects"] == 1
    warnings = mqtt_lines(caplog)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"MQTT: lost the connection to 127.0.0.1:{b.port} (")
    assert any("connected to" in m and " after " in m for m in mqtt_lines(caplog, logging.INFO))


def test_the_password_is_never_logged(caplog, monkeypatch, tmp_path):
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        unavailable("mosquitto_passwd is not installed (apt-get install mosquitto)")
    caplog.set_level(logging.DEBUG)  # aiomqtt's and paho's debug lines too
    password, wrong = f"pw-{secrets.token_hex(8)}", f"pw-{secrets.token_hex(8)}"
    subprocess.run(
        [passwd, "-b", "-c", str(tmp_path / "passwd"), "daemon", password],
        check=True,
        capture_output=True,
        timeout=10,
    )
    monkeypatch.setenv("PARTIMENTO_TEST_MQTT_PASSWORD", password)
    prefix = unique_prefix()

    async def scenario(b) -> None:
        login = b.endpoint.login("daemon", password)
        refused = MqttLink(
            config(b.endpoint, prefix, username="daemon", password=wrong), FakeDaemon()
        )
        async with Running(refused):
            await asyncio.sleep(1.5)
            assert not refused.connected
        fake = FakeDaemon()
        accepted = MqttLink(
            config(
                b.endpoint, prefix, username="daemon", password_env="PARTIMENTO_TEST_MQTT_PASSWORD"
            ),
            fake,
        )
        async with Running(accepted):
            await control_back(login, prefix, fake, time.monotonic(), 120)
            assert accepted.connected

    with broker([f"password_file {tmp_path / 'passwd'}"], anonymous=False, folder=tmp_path) as b:
        asyncio.run(scenario(b))
    warnings = mqtt_lines(caplog)
    assert len(warnings) == 1, warnings  # refused at every attempt, said once
    assert "cannot connect" in warnings[0] and "authori" in warnings[0].lower()
    assert any("still no connection" in m for m in mqtt_lines(caplog, logging.DEBUG))
    assert any(
        r.name.startswith("partimento.live.mqtt.client") for r in caplog.records
    )  # paho's lines
    assert password not in caplog.text and wrong not in caplog.text
