"""Generated MIDI songs for the jazz and piano readers: no data set needed."""

from __future__ import annotations

import random
from pathlib import Path

import mido

SCALE = (0, 2, 3, 5, 7, 9, 10)  # dorian


def write_song(path: Path, rng: random.Random, *, drums: bool = True) -> None:
    """A random-walk melody in eighths over a chord per bar, and a drum track."""
    mid = mido.MidiFile(ticks_per_beat=96)
    melody, chords, kit = mido.MidiTrack(), mido.MidiTrack(), mido.MidiTrack()
    mid.tracks += [melody, chords] + ([kit] if drums else [])
    pitch = 67
    for _ in range(64):
        pitch = min(84, max(55, pitch + rng.choice((-2, -1, 1, 2, 3))))
        pitch += 0 if pitch % 12 in SCALE else 1
        melody += [
            mido.Message("note_on", note=pitch, velocity=90, time=0),
            mido.Message("note_on", note=pitch, velocity=0, time=48),
        ]
    for bar in range(8):
        root = 48 + (0, 5, 7, 2)[bar % 4]
        chords += [
            mido.Message("note_on", note=root + i, velocity=60, time=0, channel=1)
            for i in (0, 3, 7)
        ]
        chords += [
            mido.Message(
                "note_off", note=root + i, velocity=0, channel=1, time=384 if i == 0 else 0
            )
            for i in (0, 3, 7)
        ]
    kit += [
        mido.Message("note_on", note=36, velocity=100, time=0, channel=9),
        mido.Message("note_off", note=36, velocity=0, time=96, channel=9),
    ]
    mid.save(str(path))
