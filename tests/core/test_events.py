"""The event encodings of ``jazz`` and ``piano`` (partimento.core.players.events): notes and chords
on the eighth grid, on/off/shift/velocity events, each round-tripping, and chords voiced where a
player would expect them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from partimento.core.music.encoding import HOLD, REST, Note
from partimento.core.players import events
from partimento.core.players.events import Played


def test_chords_are_pitch_classes_in_normal_order():
    assert events.chord_token([60]) == "60"
    assert events.chord_token([60, 64, 67]) == "0.4.7"  # C major
    assert events.chord_token([64, 67, 72]) == "0.4.7"  # any inversion, any octave
    assert events.chord_token([62, 65, 69, 72]) == "9.0.2.5"  # Dm7: the smallest span
    assert events.chord_token([61, 65, 66]) == "1.5.6"  # the example
    assert events.chord_token([59, 62, 65, 67]) == "11.2.5.7"  # G7 in normal order
    assert events.chord_token([60, 72]) == "72"  # an octave is its top note


def test_a_chord_is_voiced_in_close_position_below_the_reference():
    assert events.voice("0.4.7", 60) == [60, 64, 67]
    assert events.voice("0.4.7", 71) == [60, 64, 67]
    assert events.voice("7.11.2", 60) == [55, 59, 62]
    assert events.voice("9.0.4", 72) == [69, 72, 76]


def test_numeric_tokens_of_a_phrase():
    notes = [Note(60, 0, 4), Note(64, 4, 2), Note(60, 8, 4), Note(64, 8, 4), Note(67, 8, 4)]
    assert events.numeric_tokens(notes) == ["60", HOLD, "64", REST, "0.4.7", HOLD]
    back = events.numeric_notes(["60", HOLD, "64", REST, "0.4.7", HOLD])
    assert back == [Note(60, 0, 4), Note(64, 4, 2), Note(60, 8, 4), Note(64, 8, 4), Note(67, 8, 4)]


def test_a_fast_run_is_not_a_chord():
    run = [Note(60, 0, 1), Note(62, 1, 1), Note(64, 2, 1), Note(65, 3, 1)]
    assert events.numeric_tokens(run) == ["60", "64"]


eighth_lines = st.lists(
    st.tuples(st.integers(40, 90), st.integers(0, 3), st.integers(1, 4)), min_size=1, max_size=20
)


@given(eighth_lines)
def test_numeric_round_trip_of_eighth_note_lines(line):
    """A monophonic line on the eighth grid comes back note for note."""
    notes, t = [], 0
    for pitch, gap, length in line:
        t += 2 * gap
        notes.append(Note(pitch, t, 2 * length))
        t += 2 * length
    tokens = events.numeric_tokens(notes)
    assert events.numeric_notes(tokens) == notes


@given(st.lists(st.sets(st.integers(48, 84), min_size=1, max_size=4), min_size=1, max_size=12))
def test_numeric_round_trip_of_chords_keeps_pitch_classes(chords):
    """Block chords come back with the same pitch classes at the same times."""
    notes = [Note(p, 4 * i, 4) for i, ps in enumerate(chords) for p in ps]
    back = events.numeric_notes(events.numeric_tokens(notes))
    for i, ps in enumerate(chords):
        got = {n.pitch for n in back if n.start == 4 * i}
        if len({p % 12 for p in ps}) == 1:
            assert got == {max(ps)}
        else:
            assert {p % 12 for p in got} == {p % 12 for p in ps}
            assert max(got) - min(got) < 12  # close position
    assert all(n.length == 4 for n in back)


played = st.lists(
    st.tuples(st.integers(21, 108), st.integers(0, 40), st.integers(1, 40), st.integers(1, 127)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=200)
@given(played)
def test_event_round_trip(rows):
    """Notes that do not overlap on the same pitch come back exactly (velocity to its bin)."""
    notes, ends = [], {}
    for pitch, start, length, vel in sorted(rows, key=lambda r: r[1]):
        if ends.get(pitch, -1) > start:
            continue
        notes.append(Played(pitch, start, length, vel))
        ends[pitch] = start + length
    tokens = events.event_tokens(notes)
    assert set(tokens) <= set(events.event_vocabulary())
    back = events.event_notes(tokens)
    key = sorted((n.pitch, n.start, n.length, events.velocity_bin(n.velocity)) for n in notes)
    assert (
        sorted((n.pitch, n.start, n.length, events.velocity_bin(n.velocity)) for n in back) == key
    )


def test_event_tokens_of_two_notes():
    tokens = events.event_tokens([Played(60, 0, 4, 100), Played(64, 2, 20, 40)])
    assert tokens == [
        "vel6",
        "on60",
        "shift2",
        "vel2",
        "on64",
        "shift2",
        "off60",
        "shift16",
        "shift2",
        "off64",
    ]


def test_a_note_struck_again_ends_the_one_sounding():
    tokens = events.event_tokens([Played(60, 0, 8), Played(60, 4, 4)])
    back = events.event_notes(tokens)
    assert [(n.pitch, n.start, n.length) for n in back] == [(60, 0, 4), (60, 4, 4)]


def test_the_events_module_is_pure():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(events.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    allowed = {"__future__", "collections", "dataclasses", "numpy", "partimento"}
    assert {m.split(".")[0] for m in names} <= allowed
