"""Bach chorales from music21's bundled corpus, read onto the sixteenth grid.

Each chorale becomes a :class:`Chorale`: four voice grids (soprano, alto, tenor, bass), and per
step the position in the bar, a fermata flag and the mode. Only the four vocal parts are read,
also from versions that add instruments. Exact duplicates are dropped. A chorale is named by its
corpus file name (``bwv277.krn`` and ``bwv277.mxl`` are two chorales). The split is the standard
JSB one, by tune (:mod:`partimento.training.data.jsb_split`), so no JSB valid or test melody ever
trains.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partimento.core.music.encoding import (
    HOLD_CODE,
    MAJOR,
    MINOR,
    POSITIONS_PER_BAR,
    REST_CODE,
    STEPS_PER_QUARTER,
    VOICES,
)
from partimento.progress import bar

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Chorale:
    name: str
    voices: np.ndarray  # (4, steps) int16 grid codes, soprano first
    position: np.ndarray  # (steps,) int8, sixteenths since the bar line, modulo 16
    fermata: np.ndarray  # (steps,) int8, 1 under a fermata in any voice
    mode: int  # MAJOR or MINOR

    @property
    def steps(self) -> int:
        return int(self.voices.shape[1])

    def melody_key(self) -> str:
        """The tune, independent of key and rhythm: successive soprano intervals."""
        s = self.voices[0]
        onsets = s[s >= 0].astype(int)
        intervals = np.diff(onsets)
        return ",".join(map(str, intervals.tolist()))

    def content_key(self) -> str:
        v = self.voices.copy()
        low = v[v >= 0].min()
        v[v >= 0] -= low
        return hashlib.sha1(v.tobytes()).hexdigest()


def split_of(melody_key: str) -> str:
    """Deterministic split by tune: 80 % train, 10 % valid, 10 % test."""
    bucket = int(hashlib.sha1(melody_key.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


_NAMES = {
    "soprano": ("soprano", "sopran", "s.", "canto", "cantus", "discant"),
    "alto": ("alto", "alt", "a.", "altus"),
    "tenor": ("tenor", "t.", "tenore"),
    "bass": ("bass", "basso", "b.", "bassus"),
}


def _vocal_parts(score) -> list | None:
    """The soprano, alto, tenor and bass parts of a score, or None."""
    parts = list(score.parts)
    found = {}
    for voice, names in _NAMES.items():
        for p in parts:
            label = f"{p.id or ''} {p.partName or ''}".strip().lower()
            words = label.replace("_", " ").split()
            if any(w in names for w in words) or label in names:
                if "instrument" in label or "continuo" in label:
                    continue
                found.setdefault(voice, p)
    if len(found) == 4:
        return [found[v] for v in VOICES]
    if len(parts) == 4:
        return parts
    return None


def _voice_grid(part, n_steps: int) -> np.ndarray | None:
    grid = np.full(n_steps, REST_CODE, np.int16)
    for n in part.flatten().notes:
        if n.duration.isGrace:
            continue
        start = int(round(float(n.offset) * STEPS_PER_QUARTER))
        length = int(round(float(n.quarterLength) * STEPS_PER_QUARTER))
        if length < 1 or start >= n_steps:
            continue
        pitch = max(p.midi for p in n.pitches) if n.isChord else n.pitch.midi
        grid[start] = pitch
        grid[start + 1 : min(start + length, n_steps)] = HOLD_CODE
    return grid


def read_chorale(path: Path | str, name: str | None = None) -> Chorale | None:
    """One chorale file onto the grid, or None when it has no four vocal parts."""
    from music21 import converter, expressions

    score = converter.parse(str(path))
    parts = _vocal_parts(score)
    if parts is None:
        return None
    parts = [p.stripTies() for p in parts]
    n_steps = int(round(float(max(p.highestTime for p in parts)) * STEPS_PER_QUARTER))
    if n_steps < STEPS_PER_QUARTER * 4:
        return None
    voices = np.stack([_voice_grid(p, n_steps) for p in parts])

    fermata = np.zeros(n_steps, np.int8)
    for p in parts:
        for n in p.flatten().notes:
            if any(isinstance(e, expressions.Fermata) for e in n.expressions):
                start = int(round(float(n.offset) * STEPS_PER_QUARTER))
                length = max(1, int(round(float(n.quarterLength) * STEPS_PER_QUARTER)))
                fermata[start : start + length] = 1

    position = np.zeros(n_steps, np.int8)
    for m in parts[0].getElementsByClass("Measure"):
        start = int(round(float(m.offset) * STEPS_PER_QUARTER))
        pad = int(round(float(m.paddingLeft) * STEPS_PER_QUARTER))
        length = int(round(float(m.duration.quarterLength) * STEPS_PER_QUARTER))
        for i in range(start, min(start + max(length, 1), n_steps)):
            position[i] = (i - start + pad) % POSITIONS_PER_BAR

    key = score.analyze("key")
    mode = MINOR if key.mode == "minor" else MAJOR
    return Chorale(name or Path(path).stem, voices, position, fermata, mode)


def corpus_paths() -> list[Path]:
    from music21 import corpus

    return sorted(Path(p) for p in corpus.getComposer("bach"))


def iter_corpus(limit: int | None = None, progress: int = 1) -> Iterator[Chorale]:
    """Every chorale music21 reads, with a bar on a terminal (``progress`` 0: none)."""
    for path in bar(corpus_paths()[:limit], "parsing Bach chorales", unit="file", level=progress):
        try:
            c = read_chorale(path, path.name)
        except Exception as exc:  # one unreadable file must not stop the corpus
            log.warning("skipping %s: %s", path.name, exc)
            continue
        if c is not None:
            yield c


def deduplicate(chorales: list[Chorale]) -> list[Chorale]:
    seen: set[str] = set()
    out = []
    for c in chorales:
        k = c.content_key()
        if k not in seen:
            seen.add(k)
            out.append(c)
    return out


def save(chorales: list[Chorale], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for i, c in enumerate(chorales):
        arrays[f"{i}/voices"] = c.voices
        arrays[f"{i}/position"] = c.position
        arrays[f"{i}/fermata"] = c.fermata
        arrays[f"{i}/mode"] = np.array(c.mode, np.int8)
        arrays[f"{i}/name"] = np.array(c.name)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, count=np.array(len(chorales)), **arrays)
    tmp.replace(path)


def load(path: Path) -> list[Chorale]:
    with np.load(path) as z:
        return [
            Chorale(
                str(z[f"{i}/name"]),
                z[f"{i}/voices"],
                z[f"{i}/position"],
                z[f"{i}/fermata"],
                int(z[f"{i}/mode"]),
            )
            for i in range(int(z["count"]))
        ]


CACHE_VERSION = 2
"""Bumped when the cached chorales change (2: named by file name, not by stem)."""


def load_chorales(
    cache_dir: Path, *, rebuild: bool = False, limit: int | None = None, progress: int = 1
) -> list[Chorale]:
    """Every usable chorale, deduplicated; parsed once, then read from the cache."""
    stem = f"chorales-v{CACHE_VERSION}" + (f"-{limit}" if limit else "")
    cache = cache_dir / f"{stem}.npz"
    if rebuild or not cache.exists():
        log.info("parsing music21's Bach chorales (a few minutes, once)")
        save(deduplicate(list(iter_corpus(limit, progress))), cache)
    return load(cache)


def load_corpus(
    cache_dir: Path,
    *,
    rebuild: bool = False,
    limit: int | None = None,
    jsb_path: Path | None = None,
    progress: int = 1,
) -> dict[str, list[Chorale]]:
    """Every usable chorale, split as the standard JSB split is (by tune)."""
    from partimento.training.data import jsb_split

    chorales = load_chorales(cache_dir, rebuild=rebuild, limit=limit, progress=progress)
    return jsb_split.split(chorales, jsb_split.membership(chorales, jsb_path))
