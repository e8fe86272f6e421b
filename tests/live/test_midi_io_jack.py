"""The MIDI edge over real ports: a private JACK server (tests/support/jack.py), a writer in this
process sending to the reader's port. Skipped without jackd, failed without it under CI."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from partimento.config import MidiConfig
from partimento.live.midi_io import (
    CLIENT_NAME,
    Arrival,
    InputReader,
    MidiError,
    OutputWriter,
    clean_message,
    list_ports,
    open_input,
    open_output,
)

from support.jack import JACK_BACKEND, jack_server
from support.project import ROOT, SHIPPED, require

TEST_CLIENT = "partimento-test"
"""The test side's JACK client, apart from the daemon's ``partimento``."""
PROBE_CLIENT = "partimento-probe"
BURSTS, BURST, RATE = 10, 1000, 1000.0
END = (0x9F, 127, 127)
"""Sent last: when it arrives, everything sent before it has."""


@pytest.fixture(scope="module")
def jack():
    with jack_server() as server:
        yield server


def _in(**kwargs) -> MidiConfig:
    return MidiConfig(api="jack", **kwargs)


async def _until(
    queue: asyncio.Queue[Arrival],
    last: tuple[int, ...] | None = None,
    *,
    count: int | None = None,
    timeout: float = 5.0,
) -> list[Arrival]:
    """What arrives until ``last`` (kept) or ``count`` messages, failing after ``timeout``."""
    got: list[Arrival] = []

    async def collect() -> list[Arrival]:
        while True:
            got.append(await queue.get())
            if got[-1][0] == last or (count is not None and len(got) >= count):
                return got

    try:
        return await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        raise AssertionError(
            f"{len(got)} messages in {timeout} s, the last {[m for m, _ in got[-3:]]}"
        ) from None


class _Link:
    """The reader on a virtual input of the daemon's client, and a test writer connected to it
    by opening it by name."""

    def __init__(self, port: str, channel: int | None = None, queue_size: int = 4096) -> None:
        self.port_name, self.channel, self.queue_size = port, channel, queue_size

    async def __aenter__(self) -> _Link:
        self.queue: asyncio.Queue[Arrival] = asyncio.Queue(self.queue_size)
        self.input = open_input(_in(virtual_input=self.port_name), backend=JACK_BACKEND)
        self.reader = InputReader(self.input, self.queue, channel=self.channel).start()
        self.output = open_output(
            _in(output=f"partimento:{self.port_name}"),
            backend=JACK_BACKEND,
            client_name=TEST_CLIENT,
        )
        self.writer = OutputWriter(self.output)
        await asyncio.sleep(0.05)  # the connection is made; let the first period pass
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.output.close()
        assert self.reader.stop(), "the reader thread did not end within 1 s"
        self.input.close()


def _run(coro):
    return asyncio.run(coro)


def _decode(message: tuple[int, ...]) -> int:
    return (message[2] - 1) * 128 + message[1]


def _encode(i: int) -> tuple[int, ...]:
    """Message ``i``: note-ons and note-offs by turns, its number in pitch and velocity."""
    return (0x90 if i % 2 == 0 else 0x80, i % 128, 1 + i // 128)


def _send_bursts(writer: OutputWriter, sent_at: list[float]) -> None:
    """BURSTS bursts of BURST messages at about RATE a second, 50 ms apart."""
    i = 0
    for _ in range(BURSTS):
        start = time.monotonic()
        for k in range(BURST):
            delay = start + k / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent_at[i] = time.monotonic()
            writer.send(_encode(i))
            i += 1
        time.sleep(0.05)


def test_bursts_arrive_complete_in_order_with_monotonic_times(jack):
    total = BURSTS * BURST

    async def main():
        async with _Link("bursts") as link:
            sent_at = [0.0] * total
            sender = asyncio.get_running_loop().run_in_executor(
                None, _send_bursts, link.writer, sent_at
            )
            got = await _until(link.queue, count=total, timeout=40)
            await sender
            await asyncio.sleep(0.05)
            return got, sent_at, link.reader, link.writer

    got, sent_at, reader, writer = _run(main())
    numbers = [_decode(m) for m, _ in got]
    assert numbers == list(range(total)), "lost, doubled or reordered messages"
    assert [m for m, _ in got] == [_encode(i) for i in range(total)]
    times = [t for _, t in got]
    assert times == sorted(times), "timestamps not monotonic"
    latency = [t - sent_at[i] for i, t in enumerate(times)]
    assert min(latency) >= 0, "a message stamped before it was sent"
    assert writer.sent == total
    assert (reader.received, reader.dropped, reader.rejected, reader.filtered) == (total, 0, 0, 0)
    q = statistics.quantiles(latency, n=100)
    print(
        f"\n{total} messages, 0 lost; latency p50 {q[49] * 1e3:.2f} ms, "
        f"p99 {q[98] * 1e3:.2f} ms, max {max(latency) * 1e3:.2f} ms"
    )


def _oracle(data: list[int]) -> tuple[int, ...] | None:
    """What the reader must pass on for ``data``, written from the MIDI spec apart from
    :func:`clean_message`."""
    status = data[0]
    if status in (0xF8, 0xFA, 0xFB, 0xFC):
        return (status,) if len(data) == 1 else None
    length = {0x8: 3, 0x9: 3, 0xA: 3, 0xB: 3, 0xC: 2, 0xD: 2, 0xE: 3}.get(status >> 4)
    if length != len(data) or any(b >= 0x80 for b in data[1:]):
        return None
    if status >> 4 == 0x9 and data[2] == 0:
        return (0x80 | status & 0x0F, data[1], 64)
    return tuple(data)


def test_junk_is_dropped_clock_passes(jack):
    rng = random.Random(20240611)
    sends: list[list[int]] = [
        [0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7],  # sysex
        [0xF0, *range(100), 0xF7],  # a longer one
        [0xFE],  # active sensing
        [0xF8],
        [0xFA],
        [0xFB],
        [0xFC],  # the clock passes
        [0xF1, 0x10],
        [0xF2, 1, 2],
        [0xF6],
        [0xFF],  # other system messages do not
        [0xF4],
        [0xF9],
        [0xFD],
        [0xF7],  # undefined, a stray end of sysex
        [0x90, 0x80, 0x40],
        [0x45],
        [0x45, 0x12, 0x10],
        [0x90, 60],
        [0xC0, 5, 6],
        [0x93, 60, 0],  # velocity 0: a note-off
    ]
    for _ in range(300):
        data = [rng.randrange(256) for _ in range(rng.randint(1, 3))]
        if data[0] != 0xF0:  # an unended sysex start would swallow what follows (rtmidi)
            sends.append(data)
        if rng.random() < 0.2:
            sends.append([0xF8])
    expected = [e for e in map(_oracle, sends) if e is not None] + [END]

    async def main():
        async with _Link("junk") as link:
            for data in sends:
                link.output.send_message(data)  # past OutputWriter, which refuses junk
            link.writer.send(END)
            got = await _until(link.queue, END)
            return got, link.reader.running, link.reader

    got, running, reader = _run(main())
    assert [m for m, _ in got] == expected
    assert (0x83, 60, 64) in expected
    assert expected.count((0xF8,)) > 50
    assert running and reader.error is None
    # sysex and active sensing never reach Python (rtmidi's ignore_types); the rest is ours
    junk = [d for d in sends if _oracle(d) is None and d[0] not in (0xF0, 0xFE)]
    assert reader.rejected == len(junk) > 100
    assert reader.dropped == 0


def test_channel_filter_keeps_one_channel_and_the_clock(jack):
    async def main():
        async with _Link("channel", channel=2) as link:
            for ch in range(16):
                link.writer.send((0x90 | ch, 60 + ch, 100))
                link.writer.send((0xB0 | ch, 1, ch))
                link.writer.send((0xF8,))
            link.writer.send((0x92, 127, 127))
            return await _until(link.queue, (0x92, 127, 127)), link.reader

    got, reader = _run(main())
    assert [m for m, _ in got] == [(0xF8,)] * 2 + [(0x92, 62, 100), (0xB2, 1, 2)] + [
        (0xF8,)
    ] * 14 + [(0x92, 127, 127)]
    assert reader.filtered == 30


def test_full_queue_counts_drops_without_blocking(jack):
    async def main():
        async with _Link("full", queue_size=10) as link:
            link.writer.send_all(_encode(i) for i in range(100))
            deadline = time.monotonic() + 5
            while link.reader.received < 100 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the deliveries scheduled on the loop have run
            return link.queue.qsize(), link.reader

    size, reader = _run(main())
    assert (size, reader.received, reader.dropped) == (10, 100, 90)


def test_missing_port_is_one_line_naming_the_ports(jack):
    with open_output(
        _in(virtual_output="keyboard-out"), backend=JACK_BACKEND, client_name=TEST_CLIENT
    ) as port:
        with pytest.raises(MidiError) as caught:
            open_input(_in(input="Keystation"), backend=JACK_BACKEND)
        assert port.name == "keyboard-out"
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("no MIDI input matches 'Keystation' (inputs: ")
    assert f"{TEST_CLIENT}:keyboard-out" in message
    with pytest.raises(MidiError, match=r"^no MIDI output matches '\^nothing\$' \(outputs: "):
        open_output(_in(output="^nothing$", match="regex"), backend=JACK_BACKEND)


def test_the_first_port_is_never_partimentos_own(jack):
    """With ``input = ""`` (the first input there is), Partimento's own output is passed over:
    the daemon must not hear what it plays; a pattern that names it still opens it."""
    with open_output(_in(virtual_output="out"), backend=JACK_BACKEND) as own:
        with pytest.raises(MidiError, match=r"^no MIDI input is there \(inputs: none\)$"):
            open_input(_in(), backend=JACK_BACKEND)
        with open_output(
            _in(virtual_output="keyboard-out"), backend=JACK_BACKEND, client_name=TEST_CLIENT
        ):
            with open_input(_in(), backend=JACK_BACKEND) as port:
                assert port.name == f"{TEST_CLIENT}:keyboard-out"
            with open_input(_in(input=f"{CLIENT_NAME}:out"), backend=JACK_BACKEND) as port:
                assert port.name.startswith(CLIENT_NAME) and own.name == "out"


def test_opening_an_input_by_name_connects_it(jack):
    """The other way round from _Link: the test offers a virtual output, the daemon opens it by
    a regex and reads from it; when it goes, the reader notices."""

    async def main():
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Arrival] = asyncio.Queue(100)
        failed = loop.create_future()
        source = open_output(
            _in(virtual_output="keys"), backend=JACK_BACKEND, client_name=TEST_CLIENT
        )
        port = open_input(
            _in(input=r"^partimento-test(-\d+)?:keys$", match="regex"), backend=JACK_BACKEND
        )
        reader = InputReader(port, queue, check_interval=0.05, on_error=failed.set_result).start()
        try:
            await asyncio.sleep(0.05)
            source.send_message([0x90, 64, 90])
            got = await _until(queue, count=1)
            source.close()
            error = await asyncio.wait_for(failed, 3)
            return port.name, got, error, reader
        finally:
            source.close()
            reader.stop()
            port.close()

    name, got, error, reader = _run(main())
    assert name == f"{TEST_CLIENT}:keys"
    assert got[0][0] == (0x90, 64, 90)
    assert str(error) == f"MIDI input '{TEST_CLIENT}:keys' is gone"
    assert reader.error is error and not reader.running


def test_writer_reports_a_gone_or_closed_port(jack):
    target = open_input(_in(virtual_input="synth"), backend=JACK_BACKEND, client_name=TEST_CLIENT)
    port = open_output(_in(output="test:synth"), backend=JACK_BACKEND)
    writer = OutputWriter(port)
    writer.send((0x90, 60, 100))
    writer.check()
    target.close()
    with pytest.raises(MidiError, match="MIDI output 'partimento-test:synth' is gone"):
        writer.check()
    port.close()
    with pytest.raises(MidiError, match="is closed"):
        writer.send((0x80, 60, 64))
    with pytest.raises(ValueError):
        writer.send((0x90, 200, 100))
    assert writer.sent == 1


def _thread_cpu(native_id: int) -> float:
    """CPU seconds (user and system) of one thread of this process, from /proc."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_reader_stops_promptly_and_idles_cheaply(jack):
    async def main():
        queue: asyncio.Queue[Arrival] = asyncio.Queue(10)
        with open_input(_in(virtual_input="idle"), backend=JACK_BACKEND) as port:
            reader = InputReader(port, queue).start()
            await asyncio.sleep(0.1)
            tid = reader._thread.native_id
            cpu0, wall0 = _thread_cpu(tid), time.monotonic()
            await asyncio.sleep(2.0)
            cpu = (_thread_cpu(tid) - cpu0) / (time.monotonic() - wall0)
            t0 = time.monotonic()
            assert reader.stop()
            return cpu, time.monotonic() - t0

    cpu, stop_time = _run(main())
    print(f"\nidle reader thread: {cpu * 100:.1f} % of a core; stopped in {stop_time * 1e3:.1f} ms")
    assert stop_time < 1.0
    assert cpu < 0.25


def test_list_ports_and_the_ports_command(jack):
    # two clients of one name would make the second partimento-test-01
    with (
        open_input(_in(virtual_input="probe-in"), backend=JACK_BACKEND, client_name=TEST_CLIENT),
        open_output(
            _in(virtual_output="probe-out"), backend=JACK_BACKEND, client_name=PROBE_CLIENT
        ),
    ):
        inputs, outputs = list_ports(JACK_BACKEND)
        out = subprocess.run(
            [sys.executable, "-m", "partimento.cli", "ports"],
            env=jack.env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert f"{PROBE_CLIENT}:probe-out" in inputs  # an output of the test is an input to read
    assert f"{TEST_CLIENT}:probe-in" in outputs
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert f"input\t{PROBE_CLIENT}:probe-out" in lines
    assert f"output\t{TEST_CLIENT}:probe-in" in lines
    # not a synthesizer, not a Through port: the one run would play on without midi.output
    assert out.stderr == f"partimento: without midi.output, run plays on {TEST_CLIENT}:probe-in\n"


def test_ports_command_without_a_backend_is_one_line(jack):
    out = subprocess.run(
        [sys.executable, "-m", "partimento.cli", "ports"],
        env=jack.env(JACK_DEFAULT_SERVER="no-such-jack-server"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "partimento: error: no MIDI backend is available (UNIX_JACK: MidiInJack::initialize: "
        "JACK server not running?)"
    ]


def test_clean_message_without_ports():
    assert clean_message([0x95, 60, 0]) == (0x85, 60, 64)
    assert clean_message([0xF8]) == (0xF8,)
    assert clean_message([0xF0, 1, 0xF7]) is None
    assert clean_message([0xFE]) is None
    assert clean_message([]) is None
    assert clean_message([0xE0, 0, 0x40]) == (0xE0, 0, 0x40)


def test_reader_with_a_fake_port_and_a_closed_loop():
    """The seam: anything with get_message(); a reader outliving its loop ends quietly."""

    class FakePort:
        def __init__(self, messages):
            self.messages = list(messages)

        def get_message(self):
            return (self.messages.pop(0), 0.0) if self.messages else None

    async def main():
        queue: asyncio.Queue[Arrival] = asyncio.Queue(10)
        reader = InputReader(FakePort([[0x90, 1, 0], [0x45], [0xF8]]), queue).start()
        got = await _until(queue, count=2)
        return [m for m, _ in got], reader

    got, reader = _run(main())
    assert got == [(0x80, 1, 64), (0xF8,)]
    reader._port.messages.append([0x90, 2, 2])  # arrives after the loop has closed
    time.sleep(0.05)
    assert reader.stop() and reader.error is None


def test_reader_rejects_a_bad_channel():
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="channel must be 0-15"):
            InputReader(object(), asyncio.Queue(), loop=loop, channel=16)
    finally:
        loop.close()


def test_without_an_output_named_a_synth_or_a_virtual_port_never_through(jack):
    """``output = ""``: a port named like ALSA's Midi Through is passed over for a synthesizer,
    and with only Through there, Partimento makes its own virtual port; each choice is a line."""
    through = _in(virtual_input="Midi Through Port-0")
    with open_input(through, backend=JACK_BACKEND, client_name=TEST_CLIENT):
        with open_output(_in(), backend=JACK_BACKEND) as port:
            assert port.virtual and port.name == "Partimento out"
            assert port.chosen.startswith("output: a new virtual port 'Partimento out'")
            assert "1 Through port skipped" in port.chosen
        synth = _in(virtual_input="Synth input port")
        with open_input(synth, backend=JACK_BACKEND, client_name=PROBE_CLIENT):
            with open_output(_in(), backend=JACK_BACKEND) as port:
                assert port.name == f"{PROBE_CLIENT}:Synth input port" and not port.virtual
                assert port.chosen.startswith(f"output: {port.name} (the first synthesizer")
            with open_output(_in(output="Through"), backend=JACK_BACKEND) as port:
                assert "Through" in port.name and port.chosen == ""  # named: as asked


def test_run_without_an_output_says_where_it_plays(jack, tmp_path):
    """``partimento run`` with no ``midi.output`` and only a Through port to play on: its first
    line says it made a virtual port for a synthesizer, then comes the ready line."""
    require((SHIPPED / "bach" / "model.onnx").exists(), "no shipped bach model")
    config = tmp_path / "partimento.toml"
    config.write_text('[midi]\nvirtual_input = "keys"\n')
    through = _in(virtual_input="Midi Through Port-0")
    with open_input(through, backend=JACK_BACKEND, client_name=TEST_CLIENT):
        daemon = subprocess.Popen(
            [sys.executable, "-m", "partimento.cli", "run", "--config", str(config)],
            env={**jack.env(), "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert daemon.stdout is not None
            first, second = daemon.stdout.readline(), daemon.stdout.readline()
        finally:
            daemon.terminate()
            daemon.wait(timeout=20)
    assert first == (
        "partimento: output: a new virtual port 'Partimento out': connect a synthesizer to it "
        "(no synthesizer listed, 1 Through port skipped; set midi.output)\n"
    )
    assert second.startswith("partimento: ready (") and second.endswith("out Partimento out)\n")
