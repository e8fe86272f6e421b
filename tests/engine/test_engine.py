"""The engine as the service drives it: raw MIDI in with human timing, ticks when it asks for
them, everything it sends heard through a strict simulated synthesizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from partimento.config import TempoConfig
from partimento.core.music.encoding import grid_to_notes
from partimento.engine.driver import Driver
from partimento.engine.engine import Engine, EngineError
from partimento.engine.harmonize import HarmonizeMode

from support.engine import (
    ALTO,
    ANSWER,
    HARMONY,
    MODE_CC,
    RANGES,
    TEMPERATURE_CC,
    Events,
    answer_a_phrase,
    config,
    drive,
    human,
    note_ons,
    play_phrase,
    synth_on,
)
from support.project import SHIPPED
from support.synth import Synth

# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folk(request) -> Path:
    """The shipped folk model, else a tiny one trained for the tests."""
    if (SHIPPED / "folk" / "model.onnx").exists():
        return SHIPPED / "folk"
    return request.getfixturevalue("tiny_folk_model")


# -- harmonize ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_chorale_soprano_is_harmonized_live(bach, loader, chorales):
    engine = Engine(config(bach), loader, seed=0)
    rng = np.random.default_rng(0)
    events: Events = []
    t0 = 0.5
    for chorale in chorales["test"][:3]:  # the first phrases of three test chorales
        notes = [(n.pitch, n.start, n.length) for n in grid_to_notes(chorale.voices[0])[:20]]
        bpm = float(rng.uniform(80, 100))
        events += human(notes, t0, bpm, rng)
        t0 = max(t for t, _ in events) + 2.0
    synth = Synth()
    records = drive(engine, events, t0, synth)

    melody_on = [r for r in records if r.given and r.given[0] == 0x90]
    melody_off = [r for r in records if r.given and r.given[0] == 0x80]
    assert len(melody_on) == 60
    full = ordered = 0
    for r in melody_on:
        ons = note_ons(r.out)
        assert len(ons) <= 3 and {m[0] & 0x0F for m in ons} <= set(HARMONY)
        voices = [synth_on(r, ch) for ch in HARMONY]
        assert all(len(v) <= 1 for v in voices)
        if len(ons) == 3 and all(len(v) == 1 for v in voices):
            full += 1
            alto, tenor, bass = (v.pop() for v in voices)
            ordered += bass <= tenor <= alto <= r.given[1]  # type: ignore[index]
    assert full >= 0.9 * len(melody_on), f"only {full} of 60 melody notes got three voices"
    assert ordered >= 0.9 * full, f"voices crossed in {full - ordered} of {full} chords"
    for r in melody_off:  # played detached: the harmony goes with the melody note
        assert not r.sounding, f"harmony left sounding at a melody release: {r.sounding}"

    held: set[int] = set()
    for r in records:  # no harmony without a melody note
        if r.given and r.given[0] == 0x90:
            held.add(r.given[1])
        elif r.given and r.given[0] == 0x80:
            held.discard(r.given[1])
        assert held or not r.sounding
    sent = [m for r in records for m in note_ons(r.out)]
    assert sent and {m[0] & 0x0F for m in sent} == set(HARMONY)
    for ch in HARMONY:
        low, high = RANGES[ch]
        pitches = [m[1] for m in sent if m[0] & 0x0F == ch]
        inside = sum(low <= p <= high for p in pitches)
        assert inside >= 0.95 * len(pitches), f"channel {ch + 1}: {sorted(pitches)}"
    stats = engine.stats()
    assert stats["notes_in"] == 60 and stats["notes_out"] == len(sent)
    given = sum(1 for r in records if r.given is not None)
    assert stats["harmony_steps"] > 60 and stats["messages_in"] == given

    # a note held when the daemon stops: everything it sent, replayed, leaves nothing on
    held_at_stop = engine.handle((0x90, 67, 80), t0 + 1)
    synth.play(held_at_stop)
    assert synth.keys
    last = engine.stop(t0 + 1.2)
    synth.play(last)
    assert not synth.keys
    for ch in (*HARMONY, ANSWER):
        assert (0xB0 | ch, 64, 0) in last and (0xB0 | ch, 123, 0) in last
    replay = Synth()
    replay.play([m for r in records for m in r.out] + held_at_stop + last)
    assert not replay.keys
    assert engine.handle((0x90, 60, 80), t0 + 2) == [] and engine.next_time() is None


def test_a_chord_is_harmonized_under_its_top_note(bach, loader):
    engine = Engine(config(bach), loader, seed=1)
    synth = Synth()
    synth.play(engine.handle((0x90, 60, 70), 1.000))
    assert len(synth.keys) == 3
    synth.play(engine.handle((0x90, 67, 70), 1.012))  # the top of the chord, 12 ms later
    assert synth.keys and all(p < 67 for _, p in synth.keys)
    assert engine.handle((0x90, 55, 70), 1.020) == []  # a lower chord note: not the melody
    synth.play(engine.handle((0x80, 60, 0), 1.3))  # the old melody note goes: harmony stays
    assert len(synth.keys) == 3
    synth.play(engine.handle((0x80, 67, 0), 1.4))
    assert not synth.keys


def test_harmony_moves_while_the_melody_is_held(bach, loader):
    engine = Engine(config(bach), loader, seed=2)
    synth = Synth()
    records = drive(engine, [(1.0, (0x90, 72, 80)), (5.0, (0x80, 72, 0))], 5.5, synth)
    ticks = [r for r in records if r.given is None]
    sps = 60 / (96 * 4)
    assert len(ticks) >= 0.9 * 4.0 / sps  # a step each sixteenth
    assert all(len(r.sounding) <= 3 for r in records)
    assert records[-1].sounding == frozenset()


def test_a_run_faster_than_the_grid_is_answered_from_the_prepared_steps(bach, loader):
    """30 notes/s at 96 BPM (five notes a sixteenth): every note sounds over three voices
    (struck anew, or held where the model keeps a voice), each harmony the next step, each
    looked up from what ``prepare`` answered ahead (none computed while the note waits), and
    no step is stepped twice."""
    engine = Engine(config(bach), loader, seed=3)
    synth = Synth()
    run = [72, 74, 76, 77, 79, 77, 76, 74] * 8
    t, heard = 1.0, 0
    for pitch in run:
        due = engine.next_time()
        while due is not None and due <= t:
            synth.play(engine.tick(due))
            engine.prepare()
            due = engine.next_time()
        out = engine.handle((0x90, pitch, 80), t)
        synth.play(out)
        heard += len({channel for channel, _ in synth.keys}) == 3  # three voices under it
        engine.prepare()
        synth.play(engine.handle((0x80, pitch, 0), t + 0.028))
        engine.prepare()
        t += 1 / 30
    stats = engine.stats()
    assert heard == len(run)
    assert stats["harmony_steps"] == len(run)
    assert stats["answered_ahead"] == len(run) - 1  # all but the first note
    assert not synth.keys


# -- continue -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_phrase_and_silence_get_an_answer_of_two_bars(bach, folk, loader):
    _, answer, _, beat = answer_a_phrase(bach, folk, loader)
    assert answer[-1][0] - answer[0][0] >= 4 * beat  # more than one bar


@pytest.mark.slow
def test_playing_again_interrupts_the_answer_at_once(bach, folk, loader):
    engine = Engine(config(bach, folk, mode="continue"), loader, seed=0)
    records = play_phrase(engine, until=14.0)[0]
    ons = [r.time for r in records for m in note_ons(r.out, ANSWER)]
    cut = ons[0] + 0.8  # well into the answer

    engine = Engine(config(bach, folk, mode="continue"), loader, seed=0)
    records, synth, _ = play_phrase(engine, more=[(cut, (0x90, 60, 80))], until=14.0)
    at = next(i for i, r in enumerate(records) if r.given == (0x90, 60, 80))
    before = [m for r in records[:at] for m in note_ons(r.out, ANSWER)]
    assert before, "the answer had begun"
    assert not synth_on(records[at], ANSWER)  # released in the very reply to the note-on
    assert all(m[0] & 0x0F != ANSWER for r in records[at + 1 :] for m in r.out)
    assert engine.stats()["interrupts"] == 1 and not synth.on(ANSWER)


# -- control --------------------------------------------------------------------------------


@pytest.mark.slow
def test_mode_switch_and_program_change_release_everything(bach, folk, loader):
    engine = Engine(config(bach, folk), loader, seed=0)
    synth = Synth()
    sent = engine.handle((0x90, 72, 80), 1.0)
    synth.play(sent)
    assert len(synth.keys) == 3
    out = engine.handle((0xB0, MODE_CC, 127), 1.1)
    sent += out
    synth.play(out)
    assert engine.mode == "continue" and not synth.keys
    assert (0xB0 | ALTO, 123, 0) in out and (0xB0 | ANSWER, 64, 0) in out
    assert engine.handle((0x80, 72, 0), 1.2) == []
    assert engine.handle((0xB0, MODE_CC, 100), 1.3) == []  # already there

    for message, now in (
        ((0xC0, 0), 1.4),  # program 1: the bach model, harmonize
        ((0x90, 72, 80), 1.5),
    ):
        out = engine.handle(message, now)
        sent += out
        synth.play(out)
    assert engine.mode == "harmonize" and len(synth.keys) == 3
    out = engine.handle((0xC0, 1), 1.6)  # program 2: folk, a hot swap
    sent += out
    synth.play(out)
    assert engine.mode == "continue" and not synth.keys
    stats = engine.stats()
    assert stats["mode_switches"] == 1 and stats["model_swaps"] == 2
    assert stats["messages_out"] == len(sent) and stats["notes_out"] == len(note_ons(sent))


def test_temperature_cc_and_a_bad_program_model(bach, loader):
    engine = Engine(config(bach, "no-such-model"), loader, seed=0)
    engine.handle((0xB0, TEMPERATURE_CC, 0), 1.0)
    assert engine.temperature == pytest.approx(0.5)
    engine.handle((0xB0, TEMPERATURE_CC, 127), 1.1)
    assert engine.temperature == pytest.approx(1.5)
    synth = Synth()
    synth.play(engine.handle((0x90, 72, 80), 1.2))
    assert engine.handle((0xC0, 1), 1.3) == []  # its model cannot be loaded: nothing changes
    assert engine.handle((0xB0, MODE_CC, 127), 1.4) == []
    assert engine.mode == "harmonize" and len(synth.keys) == 3
    assert engine.stats()["model_errors"] == 2


def test_a_model_that_cannot_serve_the_mode_is_refused(bach, loader):
    with pytest.raises(EngineError, match="continue mode"):
        Engine(config(bach, bach, mode="continue"), loader)


def test_junk_is_ignored(bach, loader):
    engine = Engine(config(bach), loader, seed=0)
    junk = [
        (),
        (0x90,),
        (0x90, 60),
        (0x90, 200, 10),
        (0x90, 60, 100, 5),
        (0x12, 3, 4),
        (0xF0, 1, 2, 0xF7),
        (0xC0, 200),
        (-1,),
        (256,),
        (0xF8, 0),
        (1.5, 2),
        "abc",
        None,
        b"\x90\x3c",
        42,
    ]
    driver = Driver(engine)  # the edge: junk is dropped and counted there
    for i, message in enumerate(junk):
        assert driver.send(message, 1.0 + i / 100) == []
    assert driver.invalid == len(junk) and engine.stats()["messages_in"] == 0
    assert driver.send((0xE0, 0, 64), 1.3) == []  # valid but unused: pitch bend
    assert driver.send((0xFE,), 1.3) == []  # active sensing
    synth = Synth()
    synth.play(driver.send(b"\x90\x48\x50", 1.4))  # bytes are a message like any other
    assert len(synth.keys) == 3


@pytest.mark.parametrize(
    ("melody", "expected"),
    [
        ([69, 71, 72, 74, 76, 74, 72, 71, 69, 68, 69, 64, 69], "minor"),  # A minor, G sharp
        ([60, 62, 64, 65, 67, 65, 64, 62, 60, 71, 72, 67, 60], "major"),  # C major
    ],
)
def test_the_harmony_follows_the_key_the_player_plays_in(bach, loader, melody, expected):
    """The model's major/minor input is estimated from the player's notes, in ``prepare``
    (the daemon's worker thread), not while a note waits."""
    engine = Engine(config(bach), loader, seed=4)
    synth = Synth()
    t = 1.0
    for pitch in melody:
        synth.play(engine.handle((0x90, pitch, 80), t))
        engine.prepare()
        synth.play(engine.handle((0x80, pitch, 0), t + 0.3))
        t += 0.32
    assert engine.stats()["harmony_mode"] == expected
    assert not synth.keys


@pytest.mark.slow
def test_the_harmony_sent_before_the_bookkeeping_is_the_same(bach, loader, chorales, monkeypatch):
    """Harmonize mode answers a melody note before the note's bookkeeping (the phrase
    detector, the context window, the tempo: :meth:`Engine.settle`); over a whole chorale,
    with ticks and prepared steps, every message is the same and comes in the same order as
    when the bookkeeping comes first."""
    chorale = chorales["test"][1]
    notes = [(n.pitch, n.start, n.length) for n in grid_to_notes(chorale.voices[0])]
    events = human(notes, 1.0, 84, np.random.default_rng(5))
    streams = []
    for first in (False, True):
        monkeypatch.setattr(HarmonizeMode, "replies_first", first)
        engine = Engine(config(bach), loader, seed=6)
        driver = Driver(engine)
        stream = driver.play(events, until=events[-1][0])
        stream += driver.stop(events[-1][0] + 1)
        streams.append(stream)
    assert len(streams[0]) > 100 and streams[0] == streams[1]


def test_a_late_note_after_a_gap_takes_its_step_without_a_second_model_step(bach, loader):
    """Detached eighths played 10 ms behind the grid: in the gap before each, the tick for
    its step waits a little (nothing sounds there), so the note takes the step itself; each
    step is stepped once, and every note is answered from the prepared step."""
    engine = Engine(config(bach, tempo=TempoConfig(bpm=120, estimate=False)), loader, seed=7)
    synth = Synth()
    sps = 60 / (120 * 4)
    melody = [67, 69, 71, 72, 74, 72, 71, 69] * 3
    events: Events = []
    for i, pitch in enumerate(melody):
        on = 1.0 + 2 * i * sps + (0.01 if i else 0.0)
        events += [(on, (0x90, pitch, 80)), (on + 0.9 * sps, (0x80, pitch, 0))]
    t, i = 0.0, 0
    while i < len(events):
        due = engine.next_time()
        if due is not None and due <= events[i][0]:
            t = max(t, due)
            synth.play(engine.tick(t))
        else:
            t = events[i][0]
            synth.play(engine.handle(events[i][1], t))
            i += 1
        engine.prepare()
    stats = engine.stats()
    steps = 2 * (len(melody) - 1) + 1
    assert stats["notes_out"] >= 3 * len(melody) - 3
    assert stats["harmony_steps"] == steps  # not one more per note
    assert stats["answered_ahead"] == steps - 1
    assert not synth.keys


def test_old_snapshots_are_freed_by_prepare_or_after_a_bound(bach, loader):
    """Dropped undo snapshots (each holding its prepared answers) wait for ``prepare`` to free
    them, off the note path; a driver that never prepares still keeps only a bounded number."""
    from partimento.engine.harmonize import TRASH_LIMIT

    engine = Engine(config(bach), loader, seed=8)
    t = 1.0
    for i in range(300):
        engine.handle((0x90, 60 + i % 12, 80), t)
        engine.handle((0x80, 60 + i % 12, 0), t + 0.1)
        t += 0.16
        assert len(engine.active.trash) <= TRASH_LIMIT + 1
    engine.prepare()
    assert engine.active.trash == []
