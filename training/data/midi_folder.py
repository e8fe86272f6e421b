"""Pieces from MIDI files, the WJazzD solo CSVs and POP909, as notes in sixteenth steps.

Every reader yields :class:`Piece`: a name (the file's path below its folder, what the split
hashes) and its notes as an ``(n, 4)`` int array of pitch, start, length (sixteenths, at
least 1) and velocity. MIDI files are read with mido (much faster than music21): every track
merged, channel 10 (drums) skipped, note-on with velocity 0 read as note-off, times in quarters
from the file's ticks per beat (tempo changes do not move the grid, as in a score). POP909
files are plain MIDI with MELODY, BRIDGE and PIANO tracks; all three are read (the whole piano
arrangement). Parsed corpora are cached under ``cfg.cache_path`` as one ``.npz``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partimento.training.data.chorales import split_of

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
RULES_VERSION = 1
DRUMS = 9  # channel 10, counted from 0
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Piece:
    name: str
    notes: np.ndarray  # (n, 4) int32: pitch, start, length, velocity; sorted by start

    @property
    def steps(self) -> int:
        return int((self.notes[:, 1] + self.notes[:, 2]).max()) if len(self.notes) else 0


def shared_data() -> Path:
    """``$PARTIMENTO_DATA``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get("PARTIMENTO_DATA", ROOT.parent / "shared" / "data")).expanduser()


def to_grid(pitch, start_q, length_q, velocity) -> np.ndarray:
    """Quarter-note times to sorted ``(n, 4)`` sixteenth-step notes (length at least 1)."""
    start = np.rint(np.asarray(start_q, float) * 4).astype(np.int64)
    end = np.rint((np.asarray(start_q, float) + np.asarray(length_q, float)) * 4)
    length = np.maximum(1, end.astype(np.int64) - start)
    arr = np.stack(
        [np.asarray(pitch, np.int64), start, length, np.asarray(velocity, np.int64)], 1
    ).astype(np.int32)
    arr = arr[(arr[:, 0] >= 0) & (arr[:, 0] <= 127) & (arr[:, 1] >= 0)]
    return arr[np.lexsort((arr[:, 0], arr[:, 1]))] if len(arr) else arr.reshape(0, 4)


def read_midi(path: Path) -> np.ndarray:
    """Every note of a MIDI file but the drums, in sixteenth steps."""
    import mido

    mid = mido.MidiFile(str(path))
    tpb = mid.ticks_per_beat
    rows: list[tuple[int, float, float, int]] = []
    for track in mid.tracks:
        now = 0
        open_: dict[tuple[int, int], tuple[int, int]] = {}
        for msg in track:
            now += msg.time
            if msg.type not in ("note_on", "note_off") or msg.channel == DRUMS:
                continue
            key = (msg.channel, msg.note)
            if key in open_:  # an off, or the same key struck again: the note ends here
                t0, vel = open_.pop(key)
                if now > t0:
                    rows.append((msg.note, t0 / tpb, (now - t0) / tpb, vel))
            if msg.type == "note_on" and msg.velocity > 0:
                open_[key] = (now, msg.velocity)
    if not rows:
        return np.zeros((0, 4), np.int32)
    p, s, d, v = zip(*rows, strict=True)
    return to_grid(p, s, d, v)


def midi_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))


def midi_pieces(folder: Path, limit: int = 0) -> Iterator[Piece]:
    """Every .mid/.midi below ``folder``, named by its path relative to it."""
    for path in midi_files(folder)[: limit or None]:
        try:
            notes = read_midi(path)
        except Exception as exc:  # one broken file must not stop the corpus
            log.warning("skipping %s: %s", path, exc)
            continue
        if len(notes):
            yield Piece(str(path.relative_to(folder)), notes)


def cache_file(cfg, source: str, folder: Path) -> Path:
    options = {"source": source, "folder": str(folder.resolve()), "rules": RULES_VERSION}
    digest = hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]
    suffix = f"-{cfg.limit}" if cfg.limit else ""
    return cfg.cache_path / f"{source}-{digest}{suffix}.npz"


def save(pieces: list[Piece], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        notes=np.concatenate([p.notes for p in pieces]) if pieces else np.zeros((0, 4)),
        lengths=np.array([len(p.notes) for p in pieces], np.int64),
        names=np.array([p.name for p in pieces], dtype=str),
    )
    tmp.replace(path)


def load(path: Path) -> list[Piece]:
    with np.load(path) as z:
        bounds = np.concatenate([[0], np.cumsum(z["lengths"])])
        notes = z["notes"].astype(np.int32)
        return [Piece(str(n), notes[bounds[i] : bounds[i + 1]]) for i, n in enumerate(z["names"])]


def cached(cfg, source: str, folder: Path, read) -> list[Piece]:
    """``read()``'s pieces, parsed once into the cache."""
    path = cache_file(cfg, source, folder)
    if cfg.rebuild or not path.exists():
        log.info("reading %s from %s into %s", source, folder, path)
        save(list(read()), path)
    return load(path)


def split(pieces: list[Piece]) -> dict[str, list[Piece]]:
    """By piece: sha1 of the file name mod 10 = 0 test, 1 valid, else train."""
    out: dict[str, list[Piece]] = {s: [] for s in SPLITS}
    for p in pieces:
        out[split_of(Path(p.name).name)].append(p)
    return out
