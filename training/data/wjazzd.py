"""The Weimar Jazz Database solos: ``score_csv.zip`` (or a folder of the same CSVs).

Each CSV (no header) has rows ``pitch, onset, duration`` with times in seconds. ``df_solos.csv``
gives each solo's average tempo (``avgtempo``, beats per minute, keyed by ``base_name`` = the
CSV name without ``_solo.csv``); times become quarters as ``seconds * avgtempo / 60``, with the
first onset moved to 0 (the solos' beat phase is not in these files). A solo without a tempo
is read at the median tempo of the others (34 of the 299 solos have no row there). Velocities
are not transcribed: every note gets 80.
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from partimento.training.data.midi_folder import Piece, to_grid

log = logging.getLogger(__name__)

DEFAULT_BPM = 120.0
VELOCITY = 80


def is_wjazzd(folder: Path) -> bool:
    return (folder / "score_csv.zip").exists() or any(folder.glob("*_solo.csv"))


def tempos(folder: Path) -> dict[str, float]:
    path = folder / "df_solos.csv"
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        return {
            r["base_name"]: float(r["avgtempo"]) for r in csv.DictReader(f) if r.get("avgtempo")
        }


def solo_notes(text: str, bpm: float) -> np.ndarray:
    """One CSV's rows as sixteenth-step notes."""
    rows = np.array(
        [[float(x) for x in line.split(",")[:3]] for line in text.splitlines() if line.strip()],
        float,
    )
    if not len(rows):
        return np.zeros((0, 4), np.int32)
    beats = bpm / 60.0
    onset = (rows[:, 1] - rows[:, 1].min()) * beats
    return to_grid(np.rint(rows[:, 0]), onset, rows[:, 2] * beats, np.full(len(rows), VELOCITY))


def _csvs(folder: Path) -> Iterator[tuple[str, str]]:
    zpath = folder / "score_csv.zip"
    if zpath.exists():
        with zipfile.ZipFile(zpath) as z:
            for name in sorted(z.namelist()):
                if name.endswith(".csv"):
                    yield Path(name).name, io.TextIOWrapper(z.open(name)).read()
    else:
        for path in sorted(folder.glob("*_solo.csv")):
            yield path.name, path.read_text()


def solos(folder: Path, limit: int = 0) -> Iterator[Piece]:
    bpm = tempos(folder)
    fallback = float(np.median(list(bpm.values()))) if bpm else DEFAULT_BPM
    for i, (name, text) in enumerate(_csvs(folder)):
        if limit and i >= limit:
            break
        base = name.removesuffix("_solo.csv")
        if base not in bpm:
            log.debug("%s: no tempo in df_solos.csv, read at %g bpm", name, fallback)
        notes = solo_notes(text, bpm.get(base, fallback))
        if len(notes):
            yield Piece(name, notes)
