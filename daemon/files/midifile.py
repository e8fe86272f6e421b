"""MIDI files: read a melody, write a four-voice harmonization. The edge where mido is used."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np

from partimento.core.music.encoding import STEPS_PER_QUARTER, VOICES, grid_to_notes
from partimento.core.music.melody import Melody, MelodyError, TickNote

VOICE_PROGRAM = 52  # General MIDI "Choir Aahs"
HARMONY_VELOCITY = 70


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
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    for v, name in enumerate(VOICES):
        if v == 0:
            events = [(n.start, n.pitch, n.velocity) for n in melody.notes]
            events += [(n.end, n.pitch, 0) for n in melody.notes]
        else:
            notes = grid_to_notes(voices[v])
            events = [(round(n.start * per_step), n.pitch, HARMONY_VELOCITY) for n in notes]
            events += [(round(n.end * per_step), n.pitch, 0) for n in notes]
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=name.capitalize(), time=0))
        if v == 0:
            track.append(mido.MetaMessage("set_tempo", tempo=melody.tempo_us, time=0))
            num, den = _time_signature(melody.bar_quarters)
            track.append(mido.MetaMessage("time_signature", numerator=num, denominator=den, time=0))
        track.append(mido.Message("program_change", channel=v, program=VOICE_PROGRAM, time=0))
        now = 0
        # note-offs before note-ons at the same tick, so a repeated note is struck again
        for tick, pitch, vel in sorted(events, key=lambda e: (e[0], e[2] > 0)):
            kind = "note_on" if vel > 0 else "note_off"
            track.append(
                mido.Message(kind, channel=v, note=pitch, velocity=vel, time=int(tick) - now)
            )
            now = int(tick)
        track.append(mido.MetaMessage("end_of_track", time=0))
        mid.tracks.append(track)
    mid.save(str(path))


def _time_signature(bar_quarters: float) -> tuple[int, int]:
    if float(bar_quarters).is_integer():
        return int(bar_quarters), 4
    return int(round(bar_quarters * 2)), 8
