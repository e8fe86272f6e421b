"""100,000 fuzzed MIDI messages into the live daemon, and into the engine alone.

The fuzz (:func:`fuzz_messages`, seeded) is raw bytes as a broken cable, a confused sequencer
or a hostile client would send them: random bytes, truncated messages, running-status
fragments, sysex (floods of it, huge ones, unterminated ones, stray ends, status bytes inside),
real-time bytes alone and in the middle of other messages, note-ons with data bytes above 127,
and valid channel messages of every kind, with a real melody interleaved. It is sent in bursts
of :data:`BURST` messages back to back (far faster than a MIDI cable's 3,125 bytes a second),
one burst every :data:`PERIOD` seconds.

* :func:`test_daemon_survives_the_fuzz_over_jack`: ``partimento run`` as a subprocess on a
  private jackd (tests/support/jack.py), the fuzz sent through a real JACK port with python-rtmidi's
  ``MidiOut`` (it refuses some byte sequences itself; those are counted). A tap port, opened
  exactly as the daemon opens its input, is connected to the same keyboard port: it reads what
  JACK delivered, so the daemon's "notes in" must equal the note-ons the tap saw. Afterwards
  (a panic and a sentinel phrase show when the daemon has worked through the fuzz) a clean
  melody still gets its three harmony voices, the daemon is alive with no traceback, and
  after SIGTERM it exits 0 and every note-on it sent has had its note-off.
* :func:`test_engine_takes_the_fuzz_in_process`: the same messages straight into
  :meth:`Engine.handle` on a simulated clock, ticked as the service ticks it; no exception,
  counters that add up, and a ledger that ends empty with every note-on answered by a note-off.

The JACK test is skipped without jackd, failed without it under CI (``CI=true``).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from partimento.config import Config, MidiConfig
from partimento.core.midi import parse as parse_message
from partimento.core.timing.ledger import MidiOut
from partimento.engine.driver import Driver
from partimento.engine.engine import Engine
from partimento.files import model as model_files
from partimento.live.midi_io import MidiInput, clean_message, open_input

from support.daemon import Daemon, Listener, note_ons
from support.jack import JACK_BACKEND, JackServer, jack_server
from support.project import SHIPPED, require
from support.synth import Synth

COUNT, SEED = 100_000, 20_240_611
BURST = 1000
"""Messages sent back to back (well under a millisecond) ..."""
PERIOD = 0.25
"""... one burst every this many seconds: 100 bursts, 25 s, 4,000 messages a second."""
SPACING = 2e-6
"""In process: seconds between two messages of one burst (the reader stamps them so)."""
MELODY_EVERY = 100
"""A note of the real melody (channel 1), or its release, every this many messages."""
MELODY = (67, 69, 71, 72, 74, 72, 71, 69, 67, 65, 64, 62, 60, 62, 64, 67)
REALTIME = (0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF, 0xF9, 0xFD)
"""Clock, start, continue, stop, active sensing, reset, and the two undefined ones."""
_LENGTH = {0x80: 3, 0x90: 3, 0xA0: 3, 0xB0: 3, 0xC0: 2, 0xD0: 2, 0xE0: 3}
ALTO, TENOR, BASS = 1, 2, 3
"""The default ``harmonize.channels`` (2, 3, 4 in the file)."""
HARMONY = (ALTO, TENOR, BASS)
SYSEX_END = [0xF0, 0x7D, 0xF7]
"""A whole sysex: it ends whatever unterminated sysex rtmidi is still joining (midi_io)."""

PANIC = [[0xB0 | ch, cc, 0] for ch in range(16) for cc in (64, 123)]
"""A keyboard's panic button: sustain off and all notes off on every channel. It ends a melody
note the fuzz left held, so that the sentinel's notes are struck afresh."""
SENTINEL = ((60, 7), (62, 3), (64, 11), (65, 5))
"""(pitch, velocity) sent after the fuzz and the panic: harmony heard in these velocities, in
this order, last, shows the daemon has handled everything sent before (input is handled in
order)."""
CATCH_UP_TIMEOUT = 30.0
CLEAN_PHRASE = (72, 71, 69, 67, 69, 72)
"""Played after the fuzz, one note every :data:`CLEAN_STEP` seconds (quarters at 75 BPM)."""
CLEAN_STEP = 0.8

KEYS, TAP, SYNTH = "fz-keys", "fz-tap", "fz-synth"
KEYS_CLIENT, TAP_CLIENT, SYNTH_CLIENT = "fuzz-keys", "fuzz-tap", "fuzz-synth"
READY_TIMEOUT = 30.0
REPLY_WINDOW = 0.5
"""Seconds after a clean melody note-on within which its harmony must sound. Generous: after
the fuzz the context window holds about 1,000 stuck notes, and each key estimate (a tick after
every melody note, on the event loop) then takes 40 ms, 250 ms seen on a busy machine; the
latencies are printed."""
STOPPED_RE = re.compile(r"stopped: (\d+) notes in, (\d+) out, (\d+) dropped unsent")


# --- the fuzz ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fuzz:
    """The messages, in sending order, and how many of each kind were made."""

    messages: list[list[int]]
    kinds: Counter[str]

    def bursts(self) -> Iterator[list[list[int]]]:
        for start in range(0, len(self.messages), BURST):
            yield self.messages[start : start + BURST]


def fuzz_messages(count: int = COUNT, seed: int = SEED) -> Fuzz:
    """``count`` raw messages (lists of byte values 0-255), the same for the same seed."""
    rng = random.Random(seed)
    out: list[list[int]] = []
    kinds: Counter[str] = Counter()
    melody_at, melody_on, melody_next = 0, None, 0

    def data(n: int) -> list[int]:
        return [rng.randrange(128) for _ in range(n)]

    def add(kind: str, message: list[int]) -> None:
        out.append(message)
        kinds[kind] += 1

    while len(out) < count:
        if len(out) >= melody_next:  # the real melody, interleaved
            melody_next += MELODY_EVERY
            if melody_on is None:
                melody_on = MELODY[melody_at % len(MELODY)]
                melody_at += 1
                add("melody", [0x90, melody_on, rng.randint(60, 100)])
            else:
                add("melody", [0x80, melody_on, 64])
                melody_on = None
            continue
        r = rng.random()
        status = rng.choice(list(_LENGTH)) | rng.randrange(16)
        if r < 0.22:
            add("random bytes", [rng.randrange(256) for _ in range(rng.randint(1, 3))])
        elif r < 0.25:  # longer than 3 bytes without F0: rtmidi refuses it
            add("long junk", [rng.randrange(256) for _ in range(rng.randint(4, 12))])
        elif r < 0.35:
            n = _LENGTH[status & 0xF0] - 1
            add(
                "truncated",
                [status, *data(rng.randrange(n))]
                if rng.random() < 0.85
                else rng.choice([[0xF2, rng.randrange(128)], [0xF1], [0xF3]]),
            )
        elif r < 0.43:
            add("running status", data(rng.randint(1, 3)))
        elif r < 0.47:
            s = rng.random()
            if s < 0.35:
                add("sysex", [0xF0, *data(rng.randrange(64)), 0xF7])
            elif s < 0.45:
                for _ in range(rng.randint(10, 40)):
                    add("sysex flood", [0xF0, *data(rng.randrange(256)), 0xF7])
            elif s < 0.50:  # JACK drops events over about 16 KB without a word
                add("huge sysex", [0xF0, *data(rng.randint(1000, 20_000)), 0xF7])
            elif s < 0.62:
                add(
                    "sysex with status bytes",
                    [0xF0, *(rng.randrange(256) for _ in range(rng.randrange(40))), 0xF7],
                )
            elif s < 0.70:
                add("unterminated sysex", [0xF0, *data(rng.randrange(30))])
            else:
                add("stray sysex end", [0xF7, *data(rng.randrange(3))])
        elif r < 0.59:
            if rng.random() < 0.7:
                add("real-time", [rng.choice(REALTIME)])
            else:  # a real-time byte in the middle of a message
                message = [0x90 | rng.randrange(16), *data(2)]
                message.insert(rng.randint(1, 2), rng.choice(REALTIME))
                add("real-time inside", message[:3] if rng.random() < 0.5 else message)
        elif r < 0.66:
            message = [0x90 | rng.randrange(16), *data(2)]
            message[rng.randint(1, 2)] = rng.randrange(128, 256)
            add("note-on data > 127", message)
        else:
            s, ch = rng.random(), rng.randrange(16)
            if s < 0.35:
                add("note-on", [0x90 | ch, rng.randrange(128), rng.randint(1, 127)])
            elif s < 0.55:
                add("note-off", [0x80 | ch, rng.randrange(128), rng.randrange(128)])
            elif s < 0.62:
                add("note-on velocity 0", [0x90 | ch, rng.randrange(128), 0])
            elif s < 0.80:
                add(
                    "control change",
                    [
                        0xB0 | ch,
                        rng.choice((1, 7, 64, 64, 120, 121, 123, rng.randrange(128))),
                        rng.randrange(128),
                    ],
                )
            elif s < 0.95:
                kind = rng.choice((0xA0, 0xC0, 0xD0, 0xE0))
                add("other channel message", [kind | ch, *data(_LENGTH[kind] - 1)])
            else:
                add(
                    "system common",
                    rng.choice([[0xF1, rng.randrange(128)], [0xF3, 1], [0xF6], [0xF2, *data(2)]]),
                )
    return Fuzz(out[:count], kinds)


@pytest.fixture(scope="module")
def fuzz() -> Fuzz:
    return fuzz_messages()


@pytest.fixture(scope="module")
def models() -> Path:
    require((SHIPPED / "bach" / "model.onnx").exists(), "no shipped bach model")
    return SHIPPED


@pytest.fixture(scope="module")
def loader(models) -> Callable[[str], model_files.Model]:
    """Loads a shipped model by name, each once for the module."""
    cache: dict[str, model_files.Model] = {}

    def load(name: str) -> model_files.Model:
        if name not in cache:
            cache[name] = model_files.load(models / name)
        return cache[name]

    return load


def is_note_on(m: Sequence[int]) -> bool:
    return len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0


def notes_only(messages: Iterable[Sequence[int]]) -> list[tuple[int, ...]]:
    """Note-ons and note-offs: the accounting must balance without all-notes-off's help."""
    return [tuple(m) for m in messages if m[0] & 0xF0 in (0x80, 0x90)]


def test_fuzz_is_what_it_says(fuzz):
    """The generator makes every kind it claims, in earnest amounts."""
    assert len(fuzz.messages) == COUNT
    assert fuzz_messages(1000) == fuzz_messages(1000), "not repeatable"
    for kind in (
        "random bytes",
        "long junk",
        "truncated",
        "running status",
        "sysex",
        "sysex flood",
        "huge sysex",
        "sysex with status bytes",
        "unterminated sysex",
        "stray sysex end",
        "real-time",
        "real-time inside",
        "note-on data > 127",
        "note-on",
        "note-off",
        "note-on velocity 0",
        "control change",
        "other channel message",
        "system common",
    ):
        assert fuzz.kinds[kind] >= 40, f"only {fuzz.kinds[kind]} {kind}"
    assert fuzz.kinds["melody"] == COUNT // MELODY_EVERY
    junk = sum(parse_message(m) is None for m in fuzz.messages)
    assert 0.4 * COUNT < junk < 0.7 * COUNT
    assert all(all(0 <= b <= 255 for b in m) for m in fuzz.messages)


# --- in process ---------------------------------------------------------------------------------


def test_engine_takes_the_fuzz_in_process(fuzz, loader):
    """Every burst arrives at once (the service handles its queue before it ticks); what falls
    due between bursts is ticked at its time; then a clean phrase, then ``stop``."""
    engine = Engine(Config(), loader, seed=1)
    driver = Driver(engine, prepare=False)  # the edge: junk is dropped and counted there
    out: list[MidiOut] = []
    clock = 1000.0

    def tick_until(until: float) -> None:
        nonlocal clock
        for _ in range(10_000):
            due = engine.next_time()
            if due is None or due > until:
                return
            clock = max(clock, due)
            out.extend(driver.tick(clock))
        raise AssertionError(f"Engine.next_time still due by {until} after 10,000 ticks")

    t0 = time.perf_counter()
    for b, burst in enumerate(fuzz.bursts()):
        start = 1000.0 + b * PERIOD
        tick_until(start)
        for k, message in enumerate(burst):
            clock = start + k * SPACING
            out.extend(driver.send(message, clock))
        engine.prepare()
    end = clock + 0.5
    tick_until(end)
    fuzz_seconds = time.perf_counter() - t0

    # a clean phrase after the fuzz: alto, tenor and bass sound under every note
    out.extend(driver.send(SYSEX_END, end))
    fresh = 0
    for i, pitch in enumerate(CLEAN_PHRASE):
        at = end + 0.01 + i * CLEAN_STEP
        tick_until(at)
        before = len(out)
        out.extend(driver.send((0x90, pitch, 90), at))
        clock = at
        struck = [m for m in out[before:] if is_note_on(m)]
        fresh += {m[0] & 0x0F for m in struck} == set(HARMONY)
        assert all(m[2] == 90 for m in struck), "harmony velocity is the melody's"
        sounding = Synth().play(notes_only(out)).keys
        assert sorted(ch for ch, _ in sounding) == list(HARMONY), (
            f"note {pitch}: sounding {sorted(sounding)}"
        )
        tick_until(at + CLEAN_STEP * 0.9)
        out.extend(driver.send((0x80, pitch, 64), at + CLEAN_STEP * 0.9))
    assert fresh >= len(CLEAN_PHRASE) - 2, f"only {fresh} clean notes struck three voices"
    end = at + CLEAN_STEP
    tick_until(end)
    out.extend(engine.stop(end))

    stats = engine.stats()
    clean = 1 + 2 * len(CLEAN_PHRASE)
    assert driver.invalid == sum(parse_message(m) is None for m in fuzz.messages) + 1
    assert stats["messages_in"] == COUNT + clean - driver.invalid
    note_ons_in = [m for m in fuzz.messages if parse_message(m) is not None and is_note_on(m)]
    assert stats["notes_in"] == len(note_ons_in) + len(CLEAN_PHRASE)
    assert all(parse_message(m) == tuple(m) for m in out), "the engine sent junk"
    assert {m[0] & 0x0F for m in out} <= {*HARMONY, Config().continue_.channel}
    assert stats["notes_out"] == sum(map(is_note_on, out))
    assert stats["harmony_steps"] > COUNT // MELODY_EVERY // 2
    synth = Synth().play(notes_only(out))  # strict: no double note-on, no stray note-off
    assert not synth.keys, f"note-ons without their note-off: {sorted(synth.keys)}"
    assert (stats["sounding"], stats["pending"], stats["stopped"]) == (0, 0, True)
    print(
        f"\nin process: {COUNT} messages in {fuzz_seconds:.1f} s, {driver.invalid} "
        f"invalid, {stats['notes_in']} notes in, {stats['notes_out']} out, "
        f"{stats['harmony_steps']} harmony steps"
    )


@pytest.mark.parametrize("melody", [(96, 72), (60, 48)], ids=["96 then 72", "60 then 48"])
def test_harmony_stays_below_a_melody_that_leaves_the_soprano_range(loader, melody):
    """A melody outside the model's soprano range is harmonized octaves away and moved back;
    when the next note needs another shift, a held voice must move with it (it once left, for
    96 then 72, alto 91 and tenor 88 sounding above the melody)."""
    engine = Engine(Config(), loader, seed=0)
    out: list[MidiOut] = []
    now = 100.0
    for pitch in melody:  # legato: the next note-on replaces the melody note
        while (due := engine.next_time()) is not None and due <= now:
            out.extend(engine.tick(due))
        out.extend(engine.handle((0x90, pitch, 80), now))
        now += 0.3
    sounding = Synth().play(notes_only(out)).keys
    assert sorted(ch for ch, _ in sounding) == list(HARMONY)
    above = sorted(p for _, p in sounding if p >= melody[-1])
    assert not above, f"harmony {sorted(sounding)} at or above the melody's {melody[-1]}"


# --- over JACK ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jack() -> Iterator[JackServer]:
    with jack_server() as server:
        yield server


def write_config(path: Path, models: Path) -> Path:
    """Harmonize mode with the shipped bach model, the test's ports, the default channels (melody
    from every channel, harmony on 2-4) and no control CC, so the fuzz cannot switch modes."""
    path.write_text(
        f'log_level = "info"\nmodels_dir = {json.dumps(str(models))}\n'
        'mode = "harmonize"\n'
        f'[midi]\ninput = "{KEYS}"\noutput = "{SYNTH}"\n'
        '[harmonize]\nmodel = "bach"\n'
    )
    return path


def refused_by_rtmidi(message: list[int]) -> bool:
    """What python-rtmidi's ``MidiOut.send_message`` refuses: nothing, or more than 3 bytes
    that do not start a sysex."""
    return not message or (len(message) > 3 and message[0] != 0xF0)


def velocity_runs(timed: Iterable[tuple[float, tuple[int, ...]]]) -> list[int]:
    """The velocities of harmony note-ons heard, repeats in a row counted once."""
    runs: list[int] = []
    for _, m in timed:
        if is_note_on(m) and m[0] & 0x0F in HARMONY and (not runs or runs[-1] != m[2]):
            runs.append(m[2])
    return runs


def drain(port: MidiInput) -> list[tuple[int, ...]]:
    """Everything waiting in an input port's rtmidi queue, as sent."""
    got = []
    while (event := port.get_message()) is not None:
        got.append(tuple(event[0]))
    return got


def test_daemon_survives_the_fuzz_over_jack(jack, models, fuzz, tmp_path):
    import rtmidi

    config = write_config(tmp_path / "partimento.toml", models)
    synth_port = open_input(
        MidiConfig(virtual_input=SYNTH), backend=JACK_BACKEND, client_name=SYNTH_CLIENT
    )
    listener = Listener(synth_port)
    # the tap reads the keyboard exactly as the daemon does (same opener, same rtmidi filters)
    tap = open_input(
        MidiConfig(virtual_input=TAP),
        backend=JACK_BACKEND,
        client_name=TAP_CLIENT,
        queue_limit=2 * COUNT,
    )
    keys = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, KEYS_CLIENT)
    keys.open_virtual_port(KEYS)
    daemon = None
    try:
        jack.connect(
            jack.wait_for_port(f"{KEYS_CLIENT}:{KEYS}"), jack.wait_for_port(f"{TAP_CLIENT}:{TAP}")
        )
        daemon = Daemon(jack, config, tmp_path)
        ready = daemon.wait_ready(READY_TIMEOUT)
        assert ready.endswith(f"in {KEYS_CLIENT}:{KEYS}, out {SYNTH_CLIENT}:{SYNTH})"), ready
        time.sleep(0.1)

        # the fuzz: bursts of BURST messages back to back, one every PERIOD seconds
        refused: Counter[str] = Counter()
        accepted = 0
        start = time.monotonic()
        for b, burst in enumerate(fuzz.bursts()):
            delay = start + b * PERIOD - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for message in burst:
                try:
                    keys.send_message(message)
                    accepted += 1
                except ValueError as exc:
                    refused[str(exc)] += 1
        fuzz_end = time.monotonic()
        fuzz_seconds = fuzz_end - start
        assert sum(refused.values()) == sum(map(refused_by_rtmidi, fuzz.messages)), refused

        # the sentinel: wait until the daemon has worked through the fuzz
        for message in [SYSEX_END, *PANIC]:
            keys.send_message(message)
        time.sleep(0.05)
        for pitch, velocity in SENTINEL:
            keys.send_message([0x90, pitch, velocity])
            time.sleep(0.05)
            keys.send_message([0x80, pitch, 64])
            time.sleep(0.05)
        wanted = [v for _, v in SENTINEL]
        while velocity_runs(listener.since(start))[-len(wanted) :] != wanted:
            assert daemon.process.poll() is None, f"the daemon died: {daemon.stderr()[-2000:]}"
            assert time.monotonic() < fuzz_end + CATCH_UP_TIMEOUT, (
                f"no harmony in velocities {wanted} within {CATCH_UP_TIMEOUT} s of the fuzz; "
                f"heard last {velocity_runs(listener.since(start))[-8:]} "
                f"({len(listener.since(fuzz_end))} messages since the fuzz); "
                f"daemon: {daemon.stderr()[-1500:]}"
            )
            time.sleep(0.02)
        backlog = time.monotonic() - fuzz_end
        time.sleep(0.2)

        # a clean phrase: alto, tenor and bass sound under every note, struck at once
        played: list[tuple[float, int]] = []
        for pitch in CLEAN_PHRASE:
            keys.send_message([0x90, pitch, 90])
            played.append((time.monotonic(), pitch))
            time.sleep(CLEAN_STEP * 0.9)
            keys.send_message([0x80, pitch, 64])
            time.sleep(CLEAN_STEP * 0.1)
        time.sleep(0.2)
        fresh, latency = 0, []
        for t, pitch in played:
            struck = note_ons(listener.since(t, t + REPLY_WINDOW))
            latency += [struck[0][0] - t] if struck else []
            fresh += {m[0] & 0x0F for _, m in struck} == set(HARMONY)
            assert all(m[2] == 90 for _, m in struck), "harmony velocity is the melody's"
            sounding = Synth().play(notes_only(m for _, m in listener.since(0, t + REPLY_WINDOW)))
            assert sorted(ch for ch, _ in sounding.keys) == list(HARMONY), (
                f"clean note {pitch}: sounding {sorted(sounding.keys)}"
            )
        assert fresh >= len(CLEAN_PHRASE) - 2, f"only {fresh} clean notes struck three voices"
        assert daemon.process.poll() is None

        # SIGTERM: exit 0, every note-on answered by its note-off
        stopped_at = time.monotonic()
        code, took = daemon.terminate()
        time.sleep(0.1)
        err = daemon.stderr()
        assert code == 0, err[-2000:]
        assert took < 3.0
        assert "Traceback" not in err
        strays = [line for line in err.splitlines() if not line.startswith("INFO ")]
        assert not strays, f"unexpected stderr lines: {strays[:5]}"
        heard = [m for _, m in listener.since(0)]
        last = [m for _, m in listener.since(stopped_at)]
        synth = Synth().play(notes_only(heard))
        assert not synth.keys, f"note-ons without their note-off: {sorted(synth.keys)}"
        for ch in HARMONY:
            assert (0xB0 | ch, 123, 0) in last and (0xB0 | ch, 64, 0) in last
        Synth().play(heard)  # and nothing but notes, sustain off and all-notes-off

        # what the daemon says it took in and sent: what the tap and the synthesizer saw
        summary = [line for line in err.splitlines() if "stopped:" in line]
        assert len(summary) == 1, err[-2000:]
        found = STOPPED_RE.search(summary[0])
        assert found, summary[0]
        notes_in, notes_out, unsent = map(int, found.groups())
        tapped = drain(tap)
        clean = [m for m in map(clean_message, tapped) if m is not None]
        tapped_note_ons = sum(map(is_note_on, clean))
        sent_note_ons = (
            sum(is_note_on(m) and parse_message(m) is not None for m in fuzz.messages)
            + len(SENTINEL)
            + len(CLEAN_PHRASE)
        )
        assert notes_in == tapped_note_ons, "the daemon lost note-ons JACK had delivered"
        assert tapped_note_ons >= 0.8 * sent_note_ons, "JACK lost note-ons"
        assert notes_out == len(note_ons(listener.since(0))) > 0
        assert unsent == 0
        print(
            f"\nover JACK: {COUNT} fuzz messages in {fuzz_seconds:.1f} s: {accepted} accepted "
            f"by rtmidi, {sum(refused.values())} refused ({dict(refused)}); the tap read "
            f"{len(tapped)} events, {len(clean)} whole messages, {tapped_note_ons} note-ons "
            f"(of {sent_note_ons} sent); daemon: {notes_in} notes in, {notes_out} out, "
            f"{unsent} unsent; caught up {backlog:.2f} s after the last burst; clean notes "
            f"answered in "
            f"{', '.join(f'{x * 1e3:.0f}' for x in latency)} ms; SIGTERM to exit "
            f"{took * 1e3:.0f} ms\n{summary[0]}"
        )
    finally:
        if daemon is not None:
            daemon.kill()
        keys.close_port()
        keys.delete()
        tap.close()
        listener.stop()
        synth_port.close()
