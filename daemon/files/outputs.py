"""What an output file's name asks for, checked before any work: MIDI (``.mid``, ``.midi``,
``.smf``) or MusicXML (``.musicxml``, ``.xml``, ``.mxl``), which music21 writes (the ``train``
extra). Any other suffix, or MusicXML without music21, is refused in one line.

A command writes MIDI to the path :func:`midi_for` gives; for MusicXML that is a scratch file
turned into the score when the block ends.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from partimento.core.errors import PartimentoError

MIDI_SUFFIXES = (".mid", ".midi", ".smf")
MUSICXML_SUFFIXES = (".musicxml", ".xml", ".mxl")
TRAIN_EXTRA = "pip install 'partimento[train]'"

Kind = Literal["midi", "musicxml"]


class OutputError(PartimentoError):
    """An output file name Partimento cannot write; the message is one line."""


def kind(path: Path) -> Kind:
    """``midi`` or ``musicxml`` by the suffix; :class:`OutputError` for any other, or for
    MusicXML when music21 is not installed."""
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        return "midi"
    if suffix in MUSICXML_SUFFIXES:
        if importlib.util.find_spec("music21") is None:
            raise OutputError(
                f"{path}: writing MusicXML needs music21: {TRAIN_EXTRA} (or write a .mid file)"
            )
        return "musicxml"
    raise OutputError(
        f"{path}: cannot write {suffix or 'a file without a suffix'}: give .mid or .midi "
        "(MIDI), or .musicxml, .xml or .mxl (MusicXML, with the train extra)"
    )


@contextmanager
def midi_for(path: Path, *, title: str = "") -> Iterator[Path]:
    """Where to write the MIDI for ``path``: ``path`` itself, or for MusicXML a scratch file
    that becomes ``path`` (through music21, with ``title``) when the block ends without an
    error, if a MIDI file was written."""
    if kind(path) == "midi":
        yield path
        return
    from partimento.files.score import midi_to_musicxml

    with tempfile.TemporaryDirectory(prefix="partimento-") as scratch:
        midi = Path(scratch) / (path.stem + ".mid")
        yield midi
        if not midi.exists():  # nothing was written (a sample that made no music)
            return
        try:
            midi_to_musicxml(midi, path, title=title)
        except Exception as exc:  # music21 raises many unrelated types
            raise OutputError(
                f"{path}: music21 cannot write it as MusicXML: {type(exc).__name__}: {exc}"
            ) from exc
