"""MIDI files: read a melody; write tracks (:func:`write_tracks`, the one MIDI-file writer: the
four-voice harmonization, a sample's parts and a demo's take all go through it). The edge where
mido is used for files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from partimento.core.music.encoding import STEPS_PER_QUARTER, VOICES, grid_to_notes
from partimento.core.music.melody import Melody, MelodyError, TickNote

VOICE_PROGRAM = 52  # General MIDI "Choir Aahs"
HARMONY_VELOCITY = 70
TICKS_PER_BEAT = 480
DEFAULT_TEMPO_US = 500_000  # 120 beats a minute


@dataclass(frozen=True)
class TickedNote:
    """A note in ticks: struck at ``start`` with ``velocity``, released at ``end``."""

    pitch: int
    start: int
    end: int
    velocity: int


@dataclass(frozen=True)
class Track:
    """One track of a type-1 file, on one channel: its name, the program set at its start, and
    either notes (written as note-ons and note-offs, a note-off first where one ends as another
    starts, so a repeated note is struck again; ties in pitch order) or timed messages
    (``(tick, raw MIDI bytes)``, written in the order given: what a player sent, as sent)."""

    name: str
    channel: int = 0
    program: int | None = None
    notes: Sequence[TickedNote] = ()
    messages: Sequence[tuple[int, Sequence[int]]] = ()


def write_tracks(
    path: Path | str,
    tracks: Sequence[Track],
    *,
    ticks_per_beat: int = TICKS_PER_BEAT,
    tempo_us: int = DEFAULT_TEMPO_US,
    time_signature: tuple[int, int] | None = None,
) -> None:
    """A type-1 MIDI file of ``tracks``: each starts with its name and its program change, the
    first one also with the tempo (microseconds a beat) and the time signature if given."""
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    for k, part in enumerate(tracks):
        if part.notes and part.messages:
            raise ValueError(f"track {part.name!r}: notes or timed messages, not both")
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=part.name, time=0))
        if k == 0:
            track.append(mido.MetaMessage("set_tempo", tempo=tempo_us, time=0))
            if time_signature is not None:
                num, den = time_signature
                track.append(
                    mido.MetaMessage("time_signature", numerator=num, denominator=den, time=0)
                )
        if part.program is not None:
            track.append(
                mido.Message("program_change", channel=part.channel, program=part.program, time=0)
            )
        timed = list(part.messages) + _note_messages(part.notes, part.channel)
        now = 0
        for tick, message in timed:
            track.append(mido.Message.from_bytes(list(message), time=tick - now))
            now = tick
        track.append(mido.MetaMessage("end_of_track", time=0))
        mid.tracks.append(track)
    mid.save(str(path))


def tempo_of(bpm: float) -> int:
    """Microseconds a beat at ``bpm`` beats a minute, as a MIDI file's tempo says it."""
    return mido.bpm2tempo(bpm)


def _note_messages(notes: Sequence[TickedNote], channel: int) -> list[tuple[int, list[int]]]:
    """Note-ons and note-offs (velocity 0) in time order, note-offs first at a tick."""
    events = [(n.start, 1, n.pitch, n.velocity) for n in notes]
    events += [(n.end, 0, n.pitch, 0) for n in notes]
    return [
        (tick, [(0x90 if on else 0x80) | channel, pitch, velocity])
        for tick, on, pitch, velocity in sorted(events)
    ]


def read_melody(path: Path | str) -> Melody:
    """The melody of a MIDI file: the track (or channel) with the highest notes if several."""
    path = Path(path)
    try:
        mid = mido.MidiFile(str(path))
    except FileNotFoundError:
        raise MelodyError(f"{path} does not exist") from None
    except EOFError:
        raise MelodyError(
            f"{path} is not a readable MIDI file: it ends in the middle of a chunk (cut short?)"
        ) from None
    except (OSError, ValueError, KeyError, IndexError) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise MelodyError(f"{path} is not a readable MIDI file: {reason}") from None
    if mid.ticks_per_beat <= 0:
        raise MelodyError(
            f"{path} is not a readable MIDI file: its header gives "
            f"{mid.ticks_per_beat} ticks per beat (SMPTE timing or damage)"
        )
    tempo, bar, parts = 500_000, 4.0, {}
    tempo_seen = bar_seen = False
    for ti, track in enumerate(mid.tracks):
        tick, sounding = 0, {}
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo" and not tempo_seen:
                tempo, tempo_seen = msg.tempo, True
            elif msg.type == "time_signature" and not bar_seen:
                bar, bar_seen = msg.numerator * 4 / msg.denominator, True
            elif msg.type == "note_on" and msg.velocity > 0:
                sounding[(msg.channel, msg.note)] = (tick, msg.velocity)
            elif msg.type in ("note_off", "note_on") and (msg.channel, msg.note) in sounding:
                start, vel = sounding.pop((msg.channel, msg.note))
                if tick > start:
                    parts.setdefault((ti, msg.channel), []).append(
                        TickNote(msg.note, start, tick, vel)
                    )
    if not parts:
        raise MelodyError(f"{path} holds no notes")
    top = max(parts.values(), key=lambda ns: float(np.mean([n.pitch for n in ns])))
    return Melody(_monophonic(top), mid.ticks_per_beat, tempo, bar, 0.0, path.name)


def _monophonic(notes: list[TickNote]) -> tuple[TickNote, ...]:
    """Legato overlaps are trimmed; true chords (same onset) are left for Melody to refuse."""
    ordered = sorted(notes, key=lambda n: (n.start, -n.pitch))
    out: list[TickNote] = []
    for n in ordered:
        if out and out[-1].end > n.start > out[-1].start:
            last = out[-1]
            out[-1] = TickNote(last.pitch, last.start, n.start, last.velocity, last.fermata)
        out.append(n)
    return tuple(out)


def write_satb(path: Path | str, melody: Melody, voices: np.ndarray) -> None:
    """A type-1 MIDI file with four tracks named Soprano, Alto, Tenor, Bass.

    The Soprano track is the input melody note for note (same ticks and velocities); alto,
    tenor and bass come from the grid, one MIDI channel per voice.
    """
    tpb = melody.ticks_per_beat
    per_step = tpb // STEPS_PER_QUARTER if tpb % STEPS_PER_QUARTER == 0 else tpb / 4
    tracks = []
    for v, name in enumerate(VOICES):
        if v == 0:
            notes = [
                TickedNote(n.pitch, int(n.start), int(n.end), n.velocity) for n in melody.notes
            ]
        else:
            notes = [
                TickedNote(
                    n.pitch, round(n.start * per_step), round(n.end * per_step), HARMONY_VELOCITY
                )
                for n in grid_to_notes(voices[v])
            ]
        tracks.append(Track(name.capitalize(), v, VOICE_PROGRAM, notes))
    write_tracks(
        path,
        tracks,
        ticks_per_beat=tpb,
        tempo_us=melody.tempo_us,
        time_signature=_time_signature(melody.bar_quarters),
    )


def _time_signature(bar_quarters: float) -> tuple[int, int]:
    if float(bar_quarters).is_integer():
        return int(bar_quarters), 4
    return int(round(bar_quarters * 2)), 8
