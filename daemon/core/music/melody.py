"""A melody as read from a file: notes in ticks, and the same melody on the sixteenth grid.

Pure: file readers (MIDI through mido, MusicXML/ABC/kern through music21) fill it in.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from partimento.core.errors import PartimentoError
from partimento.core.music.encoding import (
    HOLD_CODE,
    POSITIONS_PER_BAR,
    REST_CODE,
    STEPS_PER_QUARTER,
)


class MelodyError(PartimentoError, ValueError):
    """A file that holds no usable melody."""


@dataclass(frozen=True)
class TickNote:
    pitch: int
    start: int  # ticks
    end: int
    velocity: int = 80
    fermata: bool = False


@dataclass(frozen=True)
class Melody:
    notes: tuple[TickNote, ...]
    ticks_per_beat: int
    tempo_us: int = 500_000  # microseconds per quarter note
    bar_quarters: float = 4.0  # length of a bar in quarters (from the first time signature)
    pickup_quarters: float = 0.0  # how far into a bar the melody starts
    name: str = ""

    def __post_init__(self) -> None:
        if not self.notes:
            raise MelodyError(f"{self.name or 'the file'} holds no notes")
        ordered = sorted(self.notes, key=lambda n: n.start)
        for a, b in itertools.pairwise(ordered):
            if b.start == a.start:
                raise MelodyError(
                    f"{self.name or 'the melody'} has a chord at tick {a.start} "
                    f"(pitches {a.pitch} and {b.pitch}) where a melody is expected"
                )

    @property
    def bpm(self) -> float:
        return 60_000_000 / self.tempo_us

    def step_of(self, tick: int) -> int:
        return int(round(tick * STEPS_PER_QUARTER / self.ticks_per_beat))

    def grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(soprano grid codes, bar position, fermata) on the sixteenth grid.

        Onsets are rounded to the nearest sixteenth; a note that would vanish lasts one step;
        a note is cut short where the next one starts. The grid ends where the last note ends
        (no trailing step), so what follows it starts on the melody's own grid.
        """
        ordered = sorted(self.notes, key=lambda n: n.start)
        steps = max(
            max(self.step_of(n.end) for n in ordered),
            max(self.step_of(n.start) for n in ordered) + 1,
        )
        codes = np.full(steps, REST_CODE, np.int16)
        fermata = np.zeros(steps, np.int8)
        starts = [self.step_of(n.start) for n in ordered]
        for i, n in enumerate(ordered):
            s = starts[i]
            e = max(s + 1, self.step_of(n.end))
            if i + 1 < len(ordered):
                e = min(e, max(s + 1, starts[i + 1]))
            if codes[s] >= 0 and s > 0 and i > 0 and starts[i - 1] == s:
                continue  # two onsets rounded onto one step: the first wins
            codes[s] = n.pitch
            codes[s + 1 : e] = HOLD_CODE
            if n.fermata:
                fermata[s:e] = 1
        bar = max(1, int(round(self.bar_quarters * STEPS_PER_QUARTER)))
        pickup = int(round(self.pickup_quarters * STEPS_PER_QUARTER))
        position = ((np.arange(steps) + pickup) % bar % POSITIONS_PER_BAR).astype(np.int8)
        return codes, position, fermata
