"""Piano-roll pictures (PNG) of what was played and what Partimento answered.

``partimento demo`` draws one per take, and the README shows the harmonization's. No plotting
library: the picture is a numpy array of pixels, written as a PNG with :mod:`zlib` (the format
is a signature, a header chunk, the compressed rows and an end chunk).

Time runs left to right, pitch bottom to top (one row band per semitone, a line at every C);
each note is a bar coloured by its part (the player's melody dark, each voice its own colour),
with a darker outline so repeated notes stay apart.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partimento.core import midi

BACKGROUND = (250, 248, 242)
BLACK_KEY_ROW = (238, 235, 226)
C_LINE = (200, 195, 180)
BEAT_LINE = (230, 226, 214)
PALETTE = (
    (40, 40, 48),
    (214, 96, 77),
    (77, 140, 201),
    (98, 166, 93),
    (196, 151, 57),
    (150, 98, 180),
)
"""Part colours in order: the melody first, then each voice."""


@dataclass(frozen=True)
class RollNote:
    start: float  # seconds
    end: float
    pitch: int
    part: int  # index into the palette (0: the melody)


def notes_from_messages(
    timed: Iterable[tuple[float, tuple[int, ...]]], part_of_channel: Mapping[int, int]
) -> list[RollNote]:
    """Notes from timed MIDI messages (note-on/off), each channel's part as given (channels
    not given are left out); a note-on without its note-off is drawn to the last time."""
    sounding: dict[tuple[int, int], float] = {}
    notes: list[RollNote] = []
    last = 0.0
    for t, m in sorted(timed, key=lambda e: e[0]):
        last = max(last, t)
        if not (midi.is_note_on(m) or midi.is_note_off(m)):
            continue
        channel, pitch = midi.channel(m), m[1]
        if channel not in part_of_channel:
            continue
        key = (channel, pitch)
        if key in sounding:  # a note-off, or a re-strike ending the note before
            notes.append(RollNote(sounding.pop(key), t, pitch, part_of_channel[channel]))
        if midi.is_note_on(m):
            sounding[key] = t
    notes += [RollNote(s, last, p, part_of_channel[c]) for (c, p), s in sounding.items()]
    return notes


def render(
    notes: list[RollNote],
    *,
    width: int = 1200,
    row: int = 6,
    beat: float | None = None,
    margin: int = 2,
) -> np.ndarray:
    """An ``(height, width, 3)`` uint8 picture of ``notes``; ``beat`` seconds between faint
    vertical lines (None: none)."""
    if not notes:
        raise ValueError("nothing to draw: no notes")
    low = min(n.pitch for n in notes) - margin
    high = max(n.pitch for n in notes) + margin
    t0, t1 = min(n.start for n in notes), max(n.end for n in notes)
    span = max(t1 - t0, 1e-6)
    height = (high - low + 1) * row
    img = np.empty((height, width, 3), np.uint8)
    img[:] = BACKGROUND
    for pitch in range(low, high + 1):
        y = (high - pitch) * row
        if pitch % 12 in (1, 3, 6, 8, 10):
            img[y : y + row] = BLACK_KEY_ROW
        if pitch % 12 == 0:
            img[y + row - 1] = C_LINE
    if beat:
        t = t0
        while t <= t1:
            img[:, min(width - 1, int((t - t0) / span * (width - 1)))] = BEAT_LINE
            t += beat
    for n in sorted(notes, key=lambda n: n.part):  # the melody first, voices drawn over it
        x0 = int((n.start - t0) / span * (width - 1))
        x1 = max(x0 + 2, int((n.end - t0) / span * (width - 1)))
        y0 = (high - n.pitch) * row
        colour = np.array(PALETTE[n.part % len(PALETTE)], np.int16)
        img[y0 : y0 + row, x0:x1] = colour
        img[y0, x0:x1] = img[y0 + row - 1, x0:x1] = (colour * 0.6).astype(np.uint8)
        img[y0 : y0 + row, x0] = (colour * 0.6).astype(np.uint8)
    return img


def write_png(path: Path | str, img: np.ndarray) -> Path:
    """``img`` (``(h, w, 3)`` uint8) as an 8-bit RGB PNG."""
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))  # filter 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
    path = Path(path)
    path.write_bytes(png)
    return path
