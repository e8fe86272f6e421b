"""Piano-roll pictures (SVG) of what was played and what Partimento answered.

``partimento demo`` draws one per take, and the README shows the harmonization's. SVG is text,
so the picture has real words in it (a title, a legend, note names, bar numbers) without any
plotting library: this module writes the XML itself.

Time runs left to right, one column of bars with their numbers on top; pitch bottom to top, one
row per semitone, the black keys' rows shaded, a line under every C and the natural notes named
on the left (C4 is middle C, MIDI 60). Each note is a rounded bar coloured by its part (the
legend says which), with a darker outline so repeated notes stay apart, and a tooltip naming it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from partimento.core import midi

PALETTE = ("#282830", "#d6604d", "#4d8cc9", "#62a65d", "#c49739", "#9662b4")
"""Part colours in order: the player's part first (dark), then each voice."""
BACKGROUND = "#faf8f2"
BLACK_KEY_ROW = "#eeebe2"
C_LINE = "#b4ae9c"
BAR_LINE = "#c8c3b4"
BEAT_LINE = "#e6e2d6"
TEXT = "#282830"
FAINT_TEXT = "#8a8578"
NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"


@dataclass(frozen=True)
class RollNote:
    start: float  # seconds
    end: float
    pitch: int
    part: int  # index into the parts (0: the player's)


@dataclass(frozen=True)
class Part:
    """A legend entry: what the part is, in a musician's words, and its colour."""

    label: str
    colour: str


def note_name(pitch: int) -> str:
    """``60`` -> ``C4`` (scientific pitch notation, sharps)."""
    return f"{NAMES[pitch % 12]}{pitch // 12 - 1}"


def parts(*labels: str) -> list[Part]:
    """One part per label, coloured from :data:`PALETTE` in order."""
    return [Part(label, PALETTE[i % len(PALETTE)]) for i, label in enumerate(labels)]


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


def _darker(colour: str) -> str:
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{int(v * 0.6):02x}" for v in rgb)


def _text(
    x: float, y: float, text: str, *, size: float, anchor: str = "start", **style: str
) -> str:
    attrs = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in style.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size:g}" text-anchor="{anchor}"{attrs}>'
        f"{escape(text)}</text>"
    )


def render(
    notes: Sequence[RollNote],
    legend: Sequence[Part],
    *,
    title: str,
    subtitle: str = "",
    bpm: float,
    beats_per_bar: int = 4,
    width: int = 1200,
    row: int | None = None,
    margin: int = 2,
) -> str:
    """The SVG document: ``title`` and ``subtitle`` on top, the legend, then the roll with bar
    numbers (bars of ``beats_per_bar`` beats at ``bpm`` from the first note) and note names;
    ``row`` pixels per semitone (None: about 320 pixels for the whole range, 9 to 16 a row)."""
    if not notes:
        raise ValueError("nothing to draw: no notes")
    low = min(n.pitch for n in notes) - margin
    high = max(n.pitch for n in notes) + margin
    row = row or max(9, min(16, 320 // (high - low + 1)))
    t0 = min(n.start for n in notes)
    beat = 60.0 / bpm
    bars = max(1, math.ceil((max(n.end for n in notes) - t0) / (beat * beats_per_bar) - 1e-6))
    left, right, top = 46, 12, 96 if subtitle else 78
    plot_w = width - left - right
    plot_h = (high - low + 1) * row
    height = top + plot_h + 26
    per_second = plot_w / (bars * beats_per_bar * beat)

    def x(t: float) -> float:
        return left + (t - t0) * per_second

    def y(pitch: int) -> float:  # the row's top edge
        return top + (high - pitch) * row

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family={quoteattr(FONT)}>',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="{BACKGROUND}"/>',
        _text(left, 24, title, size=16, font_weight="bold", fill=TEXT),
    ]
    if subtitle:
        out.append(_text(left, 44, subtitle, size=12, fill=TEXT))
    # the legend
    lx: float = left
    ly = top - 30
    for part in legend:
        out.append(
            f'<rect x="{lx}" y="{ly - 10}" width="22" height="11" rx="2" fill="{part.colour}" '
            f'stroke="{_darker(part.colour)}"/>'
        )
        out.append(_text(lx + 28, ly, part.label, size=12, fill=TEXT))
        lx += 28 + 7.5 * len(part.label) + 24
    # pitch rows, octave lines, note names
    out.append('<g class="pitches">')
    for pitch in range(low, high + 1):
        if pitch % 12 in (1, 3, 6, 8, 10):
            out.append(
                f'<rect x="{left}" y="{y(pitch)}" width="{plot_w}" height="{row}" '
                f'fill="{BLACK_KEY_ROW}"/>'
            )
        else:
            c = pitch % 12 == 0
            out.append(
                _text(
                    left - 5,
                    y(pitch) + row - 1.5,
                    note_name(pitch),
                    size=9 if c else 7.5,
                    anchor="end",
                    fill=TEXT if c else FAINT_TEXT,
                    font_weight="bold" if c else "normal",
                )
            )
        if pitch % 12 == 0:
            out.append(
                f'<line x1="{left}" x2="{left + plot_w}" y1="{y(pitch) + row}" '
                f'y2="{y(pitch) + row}" stroke="{C_LINE}"/>'
            )
    out.append("</g>")
    # beats, bars and their numbers
    out.append('<g class="bars">')
    for b in range(bars * beats_per_bar + 1):
        bx = x(t0 + b * beat)
        bar = b % beats_per_bar == 0
        out.append(
            f'<line x1="{bx:.1f}" x2="{bx:.1f}" y1="{top}" y2="{top + plot_h}" '
            f'stroke="{BAR_LINE if bar else BEAT_LINE}"/>'
        )
        if bar and b < bars * beats_per_bar:
            out.append(_text(bx + 3, top - 4, str(b // beats_per_bar + 1), size=10, fill=TEXT))
    out.append(_text(left - 5, top - 4, "bar", size=10, anchor="end", fill=FAINT_TEXT))
    out.append("</g>")
    # the notes: the player's first, the voices drawn over them
    out.append('<g class="notes">')
    for n in sorted(notes, key=lambda n: (n.part, n.start)):
        part = legend[n.part % len(legend)]
        x0 = x(n.start)
        w = max(2.0, x(n.end) - x0)
        bar_no = int((n.start - t0) / (beat * beats_per_bar)) + 1
        out.append(
            f'<rect x="{x0:.1f}" y="{y(n.pitch) + 0.5}" width="{w:.1f}" height="{row - 1}" '
            f'rx="1.5" fill="{part.colour}" stroke="{_darker(part.colour)}" stroke-width="0.8">'
            f"<title>{escape(part.label)} {note_name(n.pitch)}, bar {bar_no}</title></rect>"
        )
    out.append("</g>")
    out.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        f'stroke="{BAR_LINE}"/>'
    )
    out.append(
        _text(
            left + plot_w,
            top + plot_h + 18,
            f"{beats_per_bar}/4 at {bpm:g} BPM; note names: C4 is middle C",
            size=10,
            anchor="end",
            fill=FAINT_TEXT,
        )
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_svg(path: Path | str, document: str) -> Path:
    """``document`` (from :func:`render`) into ``path``, as UTF-8."""
    path = Path(path)
    path.write_text(document, encoding="utf-8")
    return path
