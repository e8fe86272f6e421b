"""The note ledger and the scheduler, heard through a small simulated synthesizer."""

from __future__ import annotations

import ast
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partimento.core.midi import ALL_NOTES_OFF_CC as ALL_NOTES_OFF
from partimento.core.midi import SUSTAIN_CC as SUSTAIN
from partimento.core.midi import MessageError as LedgerError
from partimento.core.midi import note_off as note_off_message
from partimento.core.midi import note_on as note_on_message
from partimento.core.timing.ledger import NoteLedger
from partimento.core.timing.scheduler import Scheduler, SchedulerError, TimedNote, schedule_notes
from partimento.core.types import MidiOut

from support.project import ROOT

CORE = ROOT / "daemon" / "core" / "timing"


def on(ch: int, p: int, v: int = 80) -> MidiOut:
    return (0x90 | ch, p, v)


def off(ch: int, p: int) -> MidiOut:
    return (0x80 | ch, p, 64)


def cc(ch: int, controller: int, value: int) -> MidiOut:
    return (0xB0 | ch, controller, value)


class Synth:
    """What a musician hears: one voice per channel and key, a sustain pedal per channel.

    Strict: a note-on for a key already sounding, or a note-off for a silent key, is a fault of
    the ledger and fails the test.
    """

    def __init__(self) -> None:
        self.keys: set[tuple[int, int]] = set()  # keys struck and not released
        self.pedalled: set[tuple[int, int]] = set()  # released, held on by the sustain pedal
        self.pedal: set[int] = set()
        self.attacks: list[tuple[int, int]] = []

    def play(self, messages: list[MidiOut]) -> None:
        for m in messages:
            kind, ch = m[0] & 0xF0, m[0] & 0x0F
            if kind == 0x90 and m[2] > 0:
                assert (ch, m[1]) not in self.keys, f"note-on {m} for a key already sounding"
                self.keys.add((ch, m[1]))
                self.pedalled.discard((ch, m[1]))
                self.attacks.append((ch, m[1]))
            elif kind == 0x80 or kind == 0x90:
                assert (ch, m[1]) in self.keys, f"note-off {m} for a silent key"
                self.keys.discard((ch, m[1]))
                if ch in self.pedal:
                    self.pedalled.add((ch, m[1]))
            elif kind == 0xB0 and m[1] == SUSTAIN:
                if m[2] >= 64:
                    self.pedal.add(ch)
                else:
                    self.pedal.discard(ch)
                    self.pedalled = {k for k in self.pedalled if k[0] != ch}
            elif kind == 0xB0 and m[1] == ALL_NOTES_OFF:
                released = {k for k in self.keys if k[0] == ch}
                self.keys -= released
                if ch in self.pedal:
                    self.pedalled |= released

    def sounding(self) -> set[tuple[int, int]]:
        return self.keys | self.pedalled


def play_until(sched: Scheduler, synth: Synth, now: float) -> list[MidiOut]:
    out = [m for _, m in sched.due(now)]
    synth.play(out)
    return out


# -- the ledger ---------------------------------------------------------------------------------


def test_note_on_and_off_send_explicit_channels():
    ledger = NoteLedger()
    assert ledger.note_on(9, 36, 100) == [on(9, 36, 100)]
    assert ledger.sounding() == {(9, 36)}
    assert ledger.note_off(9, 36) == [off(9, 36)]
    assert ledger.note_off(9, 36) == []  # nothing when silent
    assert ledger.sounding() == frozenset()


def test_a_repeated_note_is_restruck_not_doubled():
    ledger, synth = NoteLedger(), Synth()
    synth.play(ledger.note_on(0, 60, 90))
    second = ledger.note_on(0, 60, 70)
    assert second == [off(0, 60), on(0, 60, 70)]
    synth.play(second)
    assert synth.attacks == [(0, 60), (0, 60)]  # heard twice
    assert len(ledger) == 1  # one entry
    synth.play(ledger.note_off(0, 60))
    assert ledger.note_off(0, 60) == []
    assert synth.sounding() == set()


def test_a_note_restruck_by_another_owner_belongs_to_it():
    ledger = NoteLedger()
    ledger.note_on(1, 64, 80, owner="harmony-alto")
    ledger.note_on(1, 64, 80, owner="continuation")
    assert ledger.owner_of(1, 64) == "continuation"
    assert ledger.note_off(1, 64, owner="harmony-alto") == []  # alto's late note-off
    assert ledger.release_owner("harmony-alto") == []
    assert ledger.release_owner("continuation") == [off(1, 64)]
    assert len(ledger) == 0


def test_release_owner_leaves_other_owners_sounding():
    ledger = NoteLedger()
    ledger.note_on(0, 60, 80, owner="harmony-alto")
    ledger.note_on(0, 55, 80, owner="harmony-tenor")
    ledger.note_on(2, 72, 80, owner="continuation")
    ledger.note_on(2, 76, 80, owner="continuation")
    assert ledger.release_owner("continuation") == [off(2, 72), off(2, 76)]
    assert ledger.sounding() == {(0, 60), (0, 55)}


def test_release_all_ends_with_sustain_off_and_all_notes_off_on_every_used_channel():
    ledger, synth = NoteLedger(), Synth()
    synth.play(ledger.note_on(0, 60, 80))
    synth.play(ledger.note_on(3, 48, 80))
    synth.play(ledger.apply(cc(5, SUSTAIN, 127)))  # pedal down on a channel with no note
    synth.play(ledger.note_on(0, 64, 80))
    synth.play(ledger.note_off(0, 64))

    out = ledger.release_all()
    assert out[:2] == [off(0, 60), off(3, 48)]
    assert out[2:] == [
        cc(0, SUSTAIN, 0),
        cc(0, ALL_NOTES_OFF, 0),
        cc(3, SUSTAIN, 0),
        cc(3, ALL_NOTES_OFF, 0),
        cc(5, SUSTAIN, 0),
        cc(5, ALL_NOTES_OFF, 0),
    ]
    synth.play(out)
    assert ledger.sounding() == frozenset() and len(ledger) == 0
    assert synth.sounding() == set() and synth.pedal == set()


def test_release_all_also_sweeps_the_given_channels():
    ledger = NoteLedger()
    ledger.note_on(2, 60, 80)
    out = ledger.release_all(channels=[0, 1])
    assert out[0] == off(2, 60)
    assert {m[0] & 0x0F for m in out[1:]} == {0, 1, 2}
    assert ledger.release_all() == [cc(2, SUSTAIN, 0), cc(2, ALL_NOTES_OFF, 0)]  # idempotent


@pytest.mark.parametrize(
    "call, word",
    [
        (lambda lg: lg.note_on(16, 60, 80), "channel"),
        (lambda lg: lg.note_on(-1, 60, 80), "channel"),
        (lambda lg: lg.note_on(0, 128, 80), "pitch"),
        (lambda lg: lg.note_on(0, 60, 0), "velocity"),
        (lambda lg: lg.note_on(0, 60, 128), "velocity"),
        (lambda lg: lg.note_on(0, 60.5, 80), "pitch"),
        (lambda lg: lg.note_off(0, -3), "pitch"),
        (lambda lg: lg.release_all(channels=[20]), "channel"),
    ],
)
def test_invalid_values_are_named(call, word):
    ledger = NoteLedger()
    with pytest.raises(ValueError, match=word) as err:
        call(ledger)
    assert isinstance(err.value, LedgerError)
    assert len(ledger) == 0 and ledger.channels_used == frozenset()


def test_invalid_value_is_quoted_in_the_message():
    with pytest.raises(ValueError, match="got 16"):
        NoteLedger().note_on(16, 60, 80)
    with pytest.raises(ValueError, match="got 200"):
        NoteLedger().note_on(0, 200, 80)


def test_numpy_integers_become_plain_ints():
    ledger = NoteLedger()
    out = ledger.note_on(np.int64(1), np.int16(60), np.int32(90))
    assert out == [on(1, 60, 90)] and all(type(b) is int for b in out[0])


# -- the scheduler ------------------------------------------------------------------------------


def test_events_come_out_in_time_order_with_note_offs_first_at_equal_times():
    sched = Scheduler(NoteLedger())
    sched.add(1.0, on(0, 62))
    sched.add(0.5, on(0, 60))
    sched.add(1.0, off(0, 60))
    sched.add(1.0, on(0, 60))  # the same pitch again where the first one ends
    sched.add(2.0, off(0, 62))
    sched.add(2.0, off(0, 60))
    assert len(sched) == 6 and sched.next_time() == 0.5
    assert sched.due(0.4) == []
    assert sched.due(1.0) == [
        (0.5, on(0, 60)),
        (1.0, off(0, 60)),
        (1.0, on(0, 62)),
        (1.0, on(0, 60)),
    ]
    assert sched.next_time() == 2.0
    assert sched.due(5.0) == [(2.0, off(0, 62)), (2.0, off(0, 60))]
    assert sched.next_time() is None and len(sched) == 0


def test_a_note_ending_where_the_same_pitch_starts_is_restruck_not_cut():
    sched, synth = Scheduler(NoteLedger()), Synth()
    schedule_notes(sched, [(60, 0.0, 0.5, 0, 80), (60, 0.5, 0.5, 0, 80)], at=10.0)
    play_until(sched, synth, 10.5)
    assert synth.attacks == [(0, 60), (0, 60)] and synth.sounding() == {(0, 60)}
    play_until(sched, synth, 11.0)
    assert synth.sounding() == set()


def test_every_scheduled_note_on_gets_its_note_off():
    sched, synth = Scheduler(NoteLedger()), Synth()
    notes = [TimedNote(60 + i % 5, 0.25 * i, 0.4, i % 3, 80) for i in range(12)]
    assert schedule_notes(sched, notes, at=3.0, owner="continuation") == 12
    sent: list[MidiOut] = []
    t = 3.0
    while sched.next_time() is not None:
        t = sched.next_time()
        sent += play_until(sched, synth, t)
    ons = [m for m in sent if m[0] & 0xF0 == 0x90]
    offs = [m for m in sent if m[0] & 0xF0 == 0x80]
    assert len(ons) == len(offs) == 12
    assert synth.sounding() == set() and len(sched.ledger) == 0


def test_overlapping_notes_of_one_pitch_are_ended_where_the_next_starts():
    sched = Scheduler(NoteLedger())
    schedule_notes(
        sched,
        [
            (60, 0.0, 2.0, 0, 80),
            (60, 1.0, 2.0, 0, 90),
            (64, 0.0, 1.0, 0, 80),
            (64, 0.0, 3.0, 0, 70),
        ],
    )
    assert sched.due(10.0) == [
        (0.0, on(0, 60)),
        (0.0, on(0, 64, 70)),
        (1.0, off(0, 60)),
        (1.0, on(0, 60, 90)),
        (3.0, off(0, 60)),
        (3.0, off(0, 64)),
    ]


def test_interrupting_a_continuation_leaves_nothing_sounding_and_plays_no_more():
    ledger, synth = NoteLedger(), Synth()
    sched = Scheduler(ledger)
    synth.play(ledger.note_on(0, 48, 80, owner="harmony-bass"))  # the live harmony goes on
    phrase = [
        (72, 0.0, 1.0, 1, 80),
        (74, 0.5, 1.0, 1, 80),
        (76, 1.0, 1.0, 1, 80),
        (77, 2.0, 1.0, 1, 80),
    ]
    schedule_notes(sched, phrase, at=100.0, owner="continuation")
    play_until(sched, synth, 100.7)
    assert synth.sounding() == {(0, 48), (1, 72), (1, 74)}

    out = sched.interrupt("continuation")  # the player starts a new phrase
    assert sorted(out) == [off(1, 72), off(1, 74)]
    synth.play(out)
    assert synth.sounding() == {(0, 48)}
    assert len(sched) == 0
    assert play_until(sched, synth, 200.0) == []  # no note-on, no stray note-off afterwards


def test_cancel_plus_release_owner_gives_exactly_the_needed_note_offs():
    ledger, synth = NoteLedger(), Synth()
    sched = Scheduler(ledger)
    schedule_notes(
        sched,
        [(60, 0.0, 1.0, 0, 80), (62, 0.2, 0.2, 0, 80), (64, 2.0, 1.0, 0, 80)],
        owner="continuation",
    )
    sched.add(3.0, cc(0, 7, 100))  # not the continuation's: survives the cancel
    play_until(sched, synth, 0.5)  # 60 sounding, 62 came and went, 64 not yet struck
    assert sched.cancel("continuation") == 3  # 60's note-off, 64's note-on and note-off
    out = ledger.release_owner("continuation")
    assert out == [off(0, 60)]
    synth.play(out)
    assert synth.sounding() == set()
    assert sched.cancel("continuation") == 0
    assert sched.due(10.0) == [(3.0, cc(0, 7, 100))]


def test_a_due_note_off_after_release_all_is_dropped():
    sched, synth = Scheduler(NoteLedger()), Synth()
    schedule_notes(sched, [(60, 0.0, 1.0, 0, 80)], owner="continuation")
    play_until(sched, synth, 0.0)
    synth.play(sched.ledger.release_all())
    assert play_until(sched, synth, 1.0) == []


def test_stop_clears_the_queue_and_silences_everything():
    sched, synth = Scheduler(NoteLedger()), Synth()
    schedule_notes(sched, [(60, 0.0, 1.0, 0, 80), (67, 0.5, 1.0, 4, 80)], owner="continuation")
    play_until(sched, synth, 0.6)
    out = sched.stop()
    synth.play(out)
    assert out[-4:] == [
        cc(0, SUSTAIN, 0),
        cc(0, ALL_NOTES_OFF, 0),
        cc(4, SUSTAIN, 0),
        cc(4, ALL_NOTES_OFF, 0),
    ]
    assert len(sched) == 0 and synth.sounding() == set()


def test_clear_drops_pending_events():
    sched = Scheduler(NoteLedger())
    sched.add(1.0, on(0, 60))
    sched.add(2.0, off(0, 60))
    assert sched.clear() == 2 and len(sched) == 0 and sched.next_time() is None


@pytest.mark.parametrize(
    "call, word",
    [
        (lambda s: s.add(float("nan"), on(0, 60)), "time"),
        (lambda s: s.add(float("inf"), on(0, 60)), "time"),
        (lambda s: s.add(1.0, (0x90, 60)), "data byte"),
        (lambda s: s.add(1.0, (0x90, 60, 200)), "data byte"),
        (lambda s: s.add(1.0, (0x40, 60, 20)), "status"),
        (lambda s: s.due(float("nan")), "now"),
        (lambda s: schedule_notes(s, [(60, 0.0, 0.0, 0, 80)]), "duration"),
        (lambda s: schedule_notes(s, [(60, -1.0, 1.0, 0, 80)]), "start"),
        (lambda s: schedule_notes(s, [(60, 0.0, 1.0, 16, 80)]), "channel"),
        (lambda s: schedule_notes(s, [(130, 0.0, 1.0, 0, 80)]), "pitch"),
    ],
)
def test_unschedulable_events_are_refused(call, word):
    sched = Scheduler(NoteLedger())
    with pytest.raises(ValueError, match=word):
        call(sched)
    assert len(sched) == 0
    assert issubclass(SchedulerError, ValueError)


def test_the_messages_are_plain_note_bytes():
    assert note_on_message(15, 127, 1) == (0x9F, 127, 1)
    assert note_off_message(15, 0) == (0x8F, 0, 64)


@pytest.mark.parametrize("module", ["ledger", "scheduler"])
def test_ledger_and_scheduler_are_pure(module):
    tree = ast.parse((CORE / f"{module}.py").read_text())
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert imported <= {
        "__future__",
        "collections",
        "dataclasses",
        "heapq",
        "math",
        "operator",
        "numpy",
        "partimento",
    }, imported
    code = (
        "import sys\n"
        f"import partimento.core.timing.{module}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mido', 'rtmidi', 'onnxruntime', 'aiomqtt', 'asyncio', 'socket'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=CORE.parents[2],
    )
    assert out.stdout.strip() == "", f"imported: {out.stdout.strip()}"


# -- any sequence of operations, then release_all -----------------------------------------------

CHANNELS = st.integers(0, 2)
PITCHES = st.integers(60, 63)  # few pitches, so notes collide and re-strike
OWNERS = st.sampled_from(["harmony-alto", "harmony-tenor", "continuation"])
NOTES = st.lists(
    st.tuples(
        PITCHES,
        st.sampled_from([0.0, 0.25, 0.5, 1.0]),
        st.sampled_from([0.25, 0.5, 1.0]),
        CHANNELS,
        st.integers(1, 127),
    ),
    max_size=6,
)
OPERATIONS = st.one_of(
    st.tuples(st.just("on"), CHANNELS, PITCHES, st.integers(1, 127), st.none() | OWNERS),
    st.tuples(st.just("off"), CHANNELS, PITCHES, st.none() | OWNERS),
    st.tuples(st.just("schedule"), NOTES, st.sampled_from([0.0, 0.25, 0.5]), OWNERS),
    st.tuples(st.just("advance"), st.sampled_from([0.0, 0.25, 0.5, 1.0])),
    st.tuples(st.just("pedal"), CHANNELS, st.sampled_from([0, 127])),
    st.tuples(st.just("cancel"), OWNERS),
    st.tuples(st.just("release_owner"), OWNERS),
    st.tuples(st.just("interrupt"), OWNERS),
    st.tuples(st.just("release_all"), st.none() | st.lists(CHANNELS, max_size=2)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPERATIONS, max_size=40))
def test_any_sequence_then_release_all_leaves_no_note_sounding(ops):
    ledger, synth = NoteLedger(), Synth()
    sched = Scheduler(ledger)
    now = 1000.0
    for op in ops:
        kind = op[0]
        if kind == "on":
            out = ledger.note_on(op[1], op[2], op[3], owner=op[4])
        elif kind == "off":
            out = ledger.note_off(op[1], op[2], owner=op[3])
        elif kind == "schedule":
            schedule_notes(sched, op[1], at=now + op[2], owner=op[3])
            out = []
        elif kind == "advance":
            now += op[1]
            out = [m for _, m in sched.due(now)]
        elif kind == "pedal":
            out = ledger.apply(cc(op[1], SUSTAIN, op[2]))
        elif kind == "cancel":
            sched.cancel(op[1])
            out = []
        elif kind == "release_owner":
            out = ledger.release_owner(op[1])
        elif kind == "interrupt":
            out = sched.interrupt(op[1])
            assert op[1] not in {ledger.owner_of(*k) for k in ledger.sounding()}
        else:
            out = ledger.release_all(op[1])
        synth.play(out)  # strict: no doubled note-on, no stray note-off
        assert synth.keys == ledger.sounding()

    synth.play(ledger.release_all())
    assert ledger.sounding() == frozenset()
    assert synth.sounding() == set() and synth.pedal == set()
    sched.clear()
    assert sched.due(now + 100.0) == []
