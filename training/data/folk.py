"""Folk tunes from ABC books and **kern files, read as single melodies on the sixteenth grid.

Each tune becomes a :class:`Tune`: one grid of codes (pitch, ``HOLD_CODE``, ``REST_CODE``) in
C major or A minor. Sources are music21's bundled Essen folk songs, optionally the O'Neill, Ryan
and Aird fiddle books, and any folder of ``*.krn`` files. As in Velardo's melody generator a tune
is kept only when every note and rest lasts one of ``FOLK_DURATIONS``; ties are joined first,
grace notes and chord symbols are ignored and a chord is read as its highest note.

Key rule: the tonic is the file's own key (``K:`` in ABC, ``*G:`` in kern), else music21's key
analysis. The mode is read from the tune: minor when the minor third above the tonic sounds
longer than the major third (Essen's ``K:`` names the tonic only, so its "major" says nothing).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partimento.core.music.encoding import (
    FOLK_DURATIONS,
    MAJOR,
    MINOR,
    STEPS_PER_QUARTER,
    Note,
    folk_transposition,
    notes_to_grid,
)
from partimento.progress import bar
from partimento.training.config import TrainConfig
from partimento.training.data.chorales import split_of

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
RULES_VERSION = 1
"""Bumped whenever reading rules change, so an old cache is not reused."""

ESSEN = "essenFolksong"
FIDDLE_BOOKS = ("oneills1850", "ryansMammoth", "airdsAirs")
MINOR_FAMILY = ("minor", "dorian", "phrygian", "aeolian", "locrian")


@dataclass(frozen=True)
class Tune:
    name: str
    grid: np.ndarray  # (steps,) int16 grid codes, already in C major / A minor
    mode: int  # MAJOR or MINOR
    shift: int  # semitones the tune was moved by

    @property
    def steps(self) -> int:
        return int(self.grid.shape[0])

    def melody_key(self) -> str:
        """The tune, independent of key and rhythm: its successive intervals."""
        onsets = self.grid[self.grid >= 0].astype(int)
        return ",".join(map(str, np.diff(onsets).tolist()))


@dataclass(frozen=True)
class Source:
    """One tune not yet parsed: a name and how to get its music21 score."""

    name: str
    load: Callable[[], object]


# --- sources --------------------------------------------------------------------------------


def corpus_dir() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def abc_chunks(text: str) -> list[tuple[str, str]]:
    """Split an ABC book into (title, text) per tune; the file header goes before each."""
    parts = re.split(r"(?m)^(?=X:)", text)
    header = "" if parts[0].startswith("X:") else parts[0]
    out = []
    for chunk in parts:
        if not chunk.startswith("X:"):
            continue
        title = re.search(r"(?m)^T:\s*(.*?)\s*$", chunk)
        out.append((title.group(1) if title else "", header + chunk))
    return out


def _abc_loader(text: str) -> Callable[[], object]:
    def load():
        from music21 import converter

        return converter.parse(text, format="abc")

    return load


def _file_loader(path: Path) -> Callable[[], object]:
    def load():
        from music21 import converter

        return converter.parse(str(path))

    return load


def abc_sources(paths: list[Path]) -> Iterator[Source]:
    """Every tune of every ABC file, named ``<file stem>-<index>: <title>``."""
    for path in paths:
        for i, (title, text) in enumerate(abc_chunks(_read_text(path)), start=1):
            yield Source(f"{path.stem}-{i:03d}: {title}".rstrip(": "), _abc_loader(text))


def kern_sources(folder: Path) -> Iterator[Source]:
    """Every ``*.krn`` file below ``folder``, named by its path relative to it."""
    for path in sorted(folder.rglob("*.krn")):
        yield Source(str(path.relative_to(folder).with_suffix("")), _file_loader(path))


def iter_sources(cfg: TrainConfig) -> Iterator[Source]:
    """The tunes the configuration asks for, in a fixed order."""
    root = corpus_dir()
    if cfg.essen:
        yield from abc_sources(sorted((root / ESSEN).glob("*.abc")))
    if cfg.oneill:
        for book in FIDDLE_BOOKS:
            yield from abc_sources(sorted((root / book).glob("*.abc")))
    if cfg.kern_dir:
        folder = Path(cfg.kern_dir).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"kern_dir {folder} is not a folder")
        yield from kern_sources(folder)


# --- one tune ------------------------------------------------------------------------------------


def melody_part(score):
    """The top part of a score (the score itself when it has no parts), ties joined."""
    parts = list(getattr(score, "parts", []))
    part = parts[0] if parts else score
    return part.stripTies()


def melody_notes(part) -> list[Note] | None:
    """The part's notes on the grid, or None when a length is not in ``FOLK_DURATIONS``.

    Rests are the gaps between notes; grace notes and chord symbols are skipped.
    """
    from music21 import harmony

    notes: list[Note] = []
    for el in part.flatten().notesAndRests:
        if isinstance(el, harmony.Harmony) or el.duration.isGrace:
            continue
        ql = float(el.quarterLength)
        if ql not in FOLK_DURATIONS:
            return None
        start = float(el.offset) * STEPS_PER_QUARTER
        if not start.is_integer():
            return None
        if el.isRest:
            continue
        pitch = max(p.midi for p in el.pitches) if el.isChord else el.pitch.midi
        notes.append(Note(pitch, int(start), int(round(ql * STEPS_PER_QUARTER))))
    return notes


def total_steps(part) -> int:
    """Length of the part in grid steps, trailing rests included."""
    return int(round(float(part.highestTime) * STEPS_PER_QUARTER))


def mode_from_third(notes: list[Note], tonic: int, fallback: int) -> int:
    """MINOR when the minor third above the tonic sounds longer than the major third."""
    minor = sum(n.length for n in notes if (n.pitch - tonic) % 12 == 3)
    major = sum(n.length for n in notes if (n.pitch - tonic) % 12 == 4)
    if minor == major:
        return fallback
    return MINOR if minor > major else MAJOR


def tune_key(score, notes: list[Note]) -> tuple[int, int]:
    """(tonic pitch class, mode): the file's tonic with the mode heard in the tune, else
    music21's key analysis."""
    from music21 import key

    found = list(score.recurse().getElementsByClass(key.Key))
    if found:
        k = found[0]
        fallback = MINOR if k.mode in MINOR_FAMILY else MAJOR
        tonic = k.tonic.pitchClass
        return tonic, mode_from_third(notes, tonic, fallback)
    k = score.analyze("key")
    return k.tonic.pitchClass, MINOR if k.mode == "minor" else MAJOR


def read_tune(score, name: str) -> Tune | None:
    """One parsed score as a tune in C major / A minor, or None when it is not kept."""
    part = melody_part(score)
    notes = melody_notes(part)
    if not notes:
        return None
    tonic, mode = tune_key(score, notes)
    shift = folk_transposition(tonic, mode)
    moved = [Note(n.pitch + shift, n.start, n.length) for n in notes]
    n_steps = max(total_steps(part), max(n.end for n in moved))
    return Tune(name, notes_to_grid(moved, n_steps), mode, shift)


# --- the corpus ----------------------------------------------------------------------------------


@dataclass
class Stats:
    """What a parse did: tunes read, kept, dropped for their lengths (or for holding no note),
    failed to parse, dropped as exact duplicates, and the seconds it took."""

    read: int = 0
    kept: int = 0
    odd_durations: int = 0
    failed: int = 0
    duplicates: int = 0
    seconds: float = 0.0


def read_sources(
    sources: Iterable[Source], limit: int | None, stats: Stats, progress: int = 1
) -> list[Tune]:
    """Parse tunes one by one, with a bar on a terminal (``progress`` 0: none); a tune that
    fails is logged and skipped."""
    tunes: list[Tune] = []
    seen: set[bytes] = set()
    t0 = time.monotonic()
    listed = list(sources)[: limit or None]  # splitting files into tunes is quick, parsing not
    for src in bar(listed, "parsing folk tunes", unit="tune", level=progress):
        if limit and stats.read >= limit:
            break
        stats.read += 1
        try:
            tune = read_tune(src.load(), src.name)
        except Exception as exc:  # one unreadable tune must not stop the corpus
            log.warning("skipping %s: %s", src.name, exc)
            stats.failed += 1
            continue
        if tune is None:
            stats.odd_durations += 1
        elif tune.grid.tobytes() in seen:
            stats.duplicates += 1
        else:
            seen.add(tune.grid.tobytes())
            tunes.append(tune)
        if stats.read % 500 == 0:
            log.info(
                "folk: %d tunes read, %d kept, %.0f s",
                stats.read,
                len(tunes),
                time.monotonic() - t0,
            )
    stats.kept = len(tunes)
    stats.seconds = round(time.monotonic() - t0, 1)
    return tunes


def cache_file(cfg: TrainConfig) -> Path:
    """``folk-<hash of the sources and rules>[-<limit>].npz`` in the cache folder."""
    options = {
        "essen": cfg.essen,
        "oneill": cfg.oneill,
        "rules": RULES_VERSION,
        "kern_dir": str(Path(cfg.kern_dir).expanduser().resolve()) if cfg.kern_dir else "",
    }
    digest = hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]
    return cfg.cache_path / (
        f"folk-{digest}-{cfg.limit}.npz" if cfg.limit else f"folk-{digest}.npz"
    )


def save(tunes: list[Tune], stats: Stats, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    grids = [t.grid for t in tunes]
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        grids=np.concatenate(grids) if grids else np.zeros(0, np.int16),
        lengths=np.array([len(g) for g in grids], np.int64),
        names=np.array([t.name for t in tunes], dtype=str),
        modes=np.array([t.mode for t in tunes], np.int8),
        shifts=np.array([t.shift for t in tunes], np.int8),
        stats=np.array(json.dumps(stats.__dict__)),
    )
    tmp.replace(path)


def load(path: Path) -> tuple[list[Tune], Stats]:
    with np.load(path) as z:
        bounds = np.concatenate([[0], np.cumsum(z["lengths"])])
        grids = z["grids"].astype(np.int16)
        tunes = [
            Tune(str(name), grids[bounds[i] : bounds[i + 1]], int(mode), int(shift))
            for i, (name, mode, shift) in enumerate(
                zip(z["names"], z["modes"], z["shifts"], strict=True)
            )
        ]
        stats = Stats(**json.loads(str(z["stats"])))
    return tunes, stats


def load_tunes(cfg: TrainConfig) -> tuple[list[Tune], Stats]:
    """Every kept tune, parsed once and then read from the cache."""
    cache = cache_file(cfg)
    if cfg.rebuild or not cache.exists():
        log.info("parsing folk tunes into %s (minutes for all of Essen, once)", cache)
        stats = Stats()
        tunes = read_sources(iter_sources(cfg), cfg.limit or None, stats, cfg.progress)
        log.info(
            "folk: %d of %d tunes kept (%d with other lengths, %d failed, %d duplicates) in %.0f s",
            stats.kept,
            stats.read,
            stats.odd_durations,
            stats.failed,
            stats.duplicates,
            stats.seconds,
        )
        save(tunes, stats, cache)
    return load(cache)


def split_tunes(tunes: list[Tune]) -> dict[str, list[Tune]]:
    """By tune: sha1 of the interval sequence mod 10 = 0 test, 1 valid, else train."""
    split: dict[str, list[Tune]] = {s: [] for s in SPLITS}
    for t in tunes:
        split[split_of(t.melody_key())].append(t)
    return split


def load_corpus(cfg: TrainConfig) -> dict[str, list[Tune]]:
    """Every usable tune, deduplicated and split."""
    return split_tunes(load_tunes(cfg)[0])
