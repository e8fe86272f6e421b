"""The one MIDI-file writer, ``partimento.files.midifile.write_tracks``, read back with mido."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from partimento.core.music.encoding import HOLD_CODE, REST_CODE
from partimento.core.music.melody import Melody, TickNote
from partimento.files.midifile import (
    TickedNote,
    Track,
    read_melody,
    tempo_of,
    write_satb,
    write_tracks,
)


def messages(track: mido.MidiTrack) -> list[tuple[int, str, dict]]:
    """(absolute tick, type, fields) of every message but the track's end."""
    out, tick = [], 0
    for m in track:
        tick += m.time
        fields = {k: v for k, v in m.dict().items() if k not in ("type", "time")}
        out.append((tick, m.type, fields))
    assert out[-1][1] == "end_of_track"
    return out[:-1]


def test_notes_and_timed_messages_in_one_file(tmp_path):
    path = tmp_path / "two.mid"
    notes = [TickedNote(64, 0, 240, 90), TickedNote(60, 0, 240, 70), TickedNote(64, 240, 480, 80)]
    sent = [(0, (0x91, 50, 60)), (100, (0xB1, 64, 127)), (240, (0x81, 50, 0))]
    write_tracks(
        path,
        [Track("Melody", 0, 52, notes), Track("Answer", 1, None, messages=sent)],
        ticks_per_beat=240,
        tempo_us=tempo_of(90),
        time_signature=(3, 4),
    )
    mid = mido.MidiFile(str(path))
    assert mid.type == 1 and mid.ticks_per_beat == 240 and len(mid.tracks) == 2
    first, second = (messages(t) for t in mid.tracks)
    assert first[:4] == [
        (0, "track_name", {"name": "Melody"}),
        (0, "set_tempo", {"tempo": 666667}),
        (0, "time_signature", {**first[2][2], "numerator": 3, "denominator": 4}),
        (0, "program_change", {"channel": 0, "program": 52}),
    ]
    notes_written = [(t, kind, f["note"], f["velocity"]) for t, kind, f in first[4:]]
    assert notes_written == [  # ties in pitch order; the note-off first where 64 is struck again
        (0, "note_on", 60, 70),
        (0, "note_on", 64, 90),
        (240, "note_off", 60, 0),
        (240, "note_off", 64, 0),
        (240, "note_on", 64, 80),
        (480, "note_off", 64, 0),
    ]
    assert second[0] == (0, "track_name", {"name": "Answer"})
    assert [m[1] for m in second] == ["track_name", "note_on", "control_change", "note_off"]
    assert [m[0] for m in second] == [0, 0, 100, 240]  # no tempo, no program: as given


def test_a_track_holds_notes_or_messages_not_both(tmp_path):
    track = Track("x", notes=[TickedNote(60, 0, 10, 80)], messages=[(0, (0x90, 60, 80))])
    with pytest.raises(ValueError, match="not both"):
        write_tracks(tmp_path / "x.mid", [track])


def test_satb_keeps_the_melody_note_for_note(tmp_path):
    melody = Melody(
        (TickNote(67, 0, 480, 91), TickNote(69, 480, 960, 77), TickNote(67, 960, 1920, 85)),
        480,
        tempo_us=600_000,
        bar_quarters=3.0,
    )
    H, R = HOLD_CODE, REST_CODE
    voices = np.array(
        [
            [67, H, H, H, 69, H, H, H, 67, H, H, H, H, H, H, H],
            [64, H, H, H, 65, H, H, H, 64, H, H, H, H, H, H, H],
            [60, H, H, H, 60, H, H, H, 60, H, H, H, R, R, R, R],
            [48, H, H, H, 53, H, H, H, 48, H, H, H, H, H, H, H],
        ]
    )
    path = tmp_path / "satb.mid"
    write_satb(path, melody, voices)
    mid = mido.MidiFile(str(path))
    assert [t.name for t in mid.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    back = read_melody(path)  # the highest track: the soprano, as it came in
    assert back.notes == melody.notes and back.tempo_us == 600_000 and back.bar_quarters == 3.0
    tenor = [(t, k, f["note"]) for t, k, f in messages(mid.tracks[2]) if k.startswith("note")]
    assert tenor[-1] == (1440, "note_off", 60)  # three beats, then the rest
