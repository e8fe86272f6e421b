"""Melodies from MusicXML, ABC and **kern files through music21 (the top part if several)."""

from __future__ import annotations

import logging
from pathlib import Path

from partimento.core.music.melody import Melody, MelodyError, TickNote
from partimento.core.players.abc import first_tune

log = logging.getLogger(__name__)

TICKS_PER_BEAT = 480


def read_melody(path: Path | str) -> Melody:
    from music21 import converter, expressions, stream

    path = Path(path)
    if not path.exists():
        raise MelodyError(f"{path} does not exist")
    try:
        score = converter.parse(str(path))
    except Exception as exc:  # music21 raises many unrelated types for a bad file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MelodyError(f"{path} cannot be read as music: {first[:160]}") from None
    if isinstance(score, stream.Opus):
        if not score.scores:
            raise MelodyError(f"{path} holds no tunes")
        score = score.scores[0]
    parts = list(score.parts) if hasattr(score, "parts") and score.parts else [score]
    part = parts[0].stripTies()
    notes = []
    for n in part.flatten().notes:
        if n.duration.isGrace:
            continue
        if n.isChord:
            raise MelodyError(
                f"{path.name} has a chord at quarter {float(n.offset):g} where a melody is expected"
            )
        start = int(round(float(n.offset) * TICKS_PER_BEAT))
        end = start + max(1, int(round(float(n.quarterLength) * TICKS_PER_BEAT)))
        fermata = any(isinstance(e, expressions.Fermata) for e in n.expressions)
        vel = n.volume.velocity if n.volume.velocity else 80
        notes.append(TickNote(n.pitch.midi, start, end, int(vel), fermata))
    if not notes:
        raise MelodyError(f"{path} holds no notes")
    tempo_us = 500_000
    marks = score.flatten().getElementsByClass("MetronomeMark")
    if marks and marks[0].number:
        tempo_us = int(60_000_000 / marks[0].getQuarterBPM())
    bar, pickup = 4.0, 0.0
    sigs = part.flatten().getElementsByClass("TimeSignature")
    if sigs:
        bar = float(sigs[0].barDuration.quarterLength)
    measures = part.getElementsByClass("Measure")
    if measures and measures[0].paddingLeft:
        pickup = float(measures[0].paddingLeft)
    return Melody(tuple(notes), TICKS_PER_BEAT, tempo_us, bar, pickup, path.name)


def abc_problem(text: str) -> str | None:
    """Why the first tune of ABC ``text`` does not make music with music21 (None: it does)."""
    from music21 import converter

    tune = first_tune(text)
    if "\nK:" not in "\n" + tune:
        return "no K: line: the text has no tune body"
    try:
        score = converter.parse(tune, format="abc")
    except Exception as exc:  # music21's ABC parser raises many unrelated types
        return f"music21 cannot parse it: {type(exc).__name__}: {str(exc)[:200]}"
    if not len(score.flatten().notes):
        return "music21 parses it but finds no notes"
    return None


def text_to_midi(text: str, path: str | Path) -> bool:
    """Write the first tune of ABC ``text`` as MIDI at ``path``; False (and a logged reason,
    also from :func:`abc_problem`) when music21 cannot make music of it."""
    from music21 import converter

    problem = abc_problem(text)
    if problem is None:
        try:
            converter.parse(first_tune(text), format="abc").write("midi", fp=str(path))
            return True
        except Exception as exc:  # music21's MIDI writer on odd durations
            problem = f"music21 cannot write it as MIDI: {type(exc).__name__}: {exc}"
    log.warning("abc: no MIDI written: %s", problem)
    return False


def midi_to_musicxml(midi_path: Path | str, path: Path | str, *, title: str = "") -> Path:
    """The MIDI file ``midi_path`` as MusicXML at ``path`` (``.mxl``: compressed), one part per
    track, named as the track is; ``title`` as the work's title.

    music21 writes into a scratch folder first: its ``.mxl`` writer leaves and then deletes a
    ``.musicxml`` of the same name beside its output, which must not be the user's file.
    """
    import shutil
    import tempfile

    from music21 import converter, metadata

    path = Path(path)
    score = converter.parse(str(midi_path), format="midi", quantizePost=False)
    if title:
        score.metadata = score.metadata or metadata.Metadata()
        score.metadata.title = title
        score.metadata.movementName = title
    compressed = path.suffix.lower() == ".mxl"
    with tempfile.TemporaryDirectory(prefix="partimento-") as scratch:
        written = Path(scratch) / ("score.mxl" if compressed else "score.musicxml")
        score.write("mxl" if compressed else "musicxml", fp=str(written))
        shutil.move(str(written), str(path))
    return path
