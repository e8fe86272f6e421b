"""The service's reader-thread path in process: the reply leaves from the thread that read the
message, and an error in the engine there ends the daemon's task group like any task's error.
(Over real JACK ports: tests/integration/test_service_jack.py.)"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from partimento.config import Config
from partimento.live.midi_io import OutputWriter
from partimento.live.service import Service


class Port:
    def __init__(self) -> None:
        self.sent: list[tuple[list[int], str]] = []

    def send_message(self, message: list[int]) -> None:
        self.sent.append((message, threading.current_thread().name))


class Echoing:
    """An engine that answers a note-on with a fifth below, as the real one answers a melody
    note: the reply from handle, the bookkeeping in settle."""

    def __init__(self) -> None:
        self.settled = 0

    def handle(self, message, now):
        return [(message[0], message[1] - 7, message[2])]

    def settle(self) -> None:
        self.settled += 1


class Broken:
    def handle(self, message, now):
        raise ZeroDivisionError("the engine broke")

    def settle(self) -> None:
        pass


def start(service: Service) -> None:
    loop = asyncio.get_running_loop()
    service._loop = loop
    service._engine_failed = loop.create_future()


def in_thread(service: Service, message) -> None:
    t = threading.Thread(
        target=service.on_message, args=(message, time.monotonic()), name="midi-in"
    )
    t.start()
    t.join(2)


def test_the_reply_leaves_from_the_reader_thread():
    async def main():
        engine = Echoing()
        service = Service(Config(), engine, asyncio.Event())  # type: ignore[arg-type]
        port = Port()
        service.writer = OutputWriter(port)
        start(service)
        in_thread(service, (0x90, 67, 90))
        await asyncio.sleep(0.05)  # the loop's wake-ups run
        return port.sent, list(service.timings.note_on), engine.settled

    sent, latencies, settled = asyncio.run(main())
    assert sent == [([0x90, 60, 90], "midi-in")]
    assert settled == 1, "the note's bookkeeping was not done after the reply"
    assert len(latencies) == 1 and 0 <= latencies[0] < 1.0


def test_an_engine_error_in_the_reader_thread_ends_the_midi_in_task():
    async def main():
        service = Service(Config(), Broken(), asyncio.Event())  # type: ignore[arg-type]
        service.writer = OutputWriter(Port())
        start(service)
        in_thread(service, (0x90, 60, 80))
        in_thread(service, (0x90, 62, 80))  # ignored: the engine is broken
        await asyncio.wait_for(service._midi_in(), 2)

    with pytest.raises(ZeroDivisionError, match="the engine broke"):
        asyncio.run(main())
