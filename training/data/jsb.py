"""The standard JSB chorale split (Boulanger-Lewandowski et al. 2012) and its tunes.

``Jsb16thSeparated.json`` holds 229 train, 76 valid and 77 test chorales as four MIDI pitches
per sixteenth (soprano, alto, tenor, bass; -1 silent): no articulation (a repeated note reads
as a held one), no bar lines, no fermatas, no mode. It is read from the shared data folder
(``$PARTIMENTO_DATA``, else ``../shared/data`` beside the repository), never copied into the
repository.

Two things are built on it here:

* tunes: a melody as the intervals between its successive distinct soprano pitches (repeats
  merged, rests dropped), so a tune is the same whatever its key, rhythm or articulation; two
  chorales have the same tune when their intervals are equal or when they share their first
  or their last :data:`SHARED_INTERVALS` intervals (Bach set many tunes several times, with
  small changes);
* the alignment of a JSB chorale with a music21 version of it (:func:`align`), which lends the
  JSB pitches what the JSON lacks: bar positions, fermatas, mode and which repeated pitches are
  struck again (:func:`from_jsb`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partimento.core.music.encoding import HOLD_CODE, REST_CODE, sounding_pitches
from partimento.training.data.chorales import Chorale
from partimento.training.data.midi_folder import shared_data

JSB_FILE = Path("jsb-chorales") / "Jsb16thSeparated.json"
SPLITS = ("train", "valid", "test")
SHARED_INTERVALS = 12
"""A shared opening or ending of this many intervals makes two melodies one tune."""
JUMP_COST = 4.0
"""Alignment cost of leaving the music21 version's order (a repeat the JSON writes out)."""

Tune = tuple[int, ...]


class JsbError(ValueError):
    """A JSB file that cannot be read as the standard split."""


def default_path() -> Path:
    return shared_data() / JSB_FILE


def read(path: Path | None = None) -> dict[str, list[np.ndarray]]:
    """The JSB chorales per split, each a ``(4, steps)`` int16 array of MIDI pitches (-1 silent).

    Raises :class:`FileNotFoundError` when the file is absent and :class:`JsbError` when it is
    not the standard split."""
    path = Path(path) if path is not None else default_path()
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise JsbError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or set(data) != set(SPLITS):
        raise JsbError(f"{path} does not hold the train, valid and test splits")
    out = {}
    for split in SPLITS:
        pieces = []
        for i, piece in enumerate(data[split]):
            arr = np.asarray(piece, np.int16)
            if arr.ndim != 2 or arr.shape[1] != 4 or not len(arr):
                raise JsbError(f"{path}: {split} chorale {i} is not four voices per step")
            pieces.append(np.ascontiguousarray(arr.T))
        out[split] = pieces
    return out


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- tunes ---------------------------------------------------------------------------------------


def tune(soprano: np.ndarray) -> Tune:
    """Intervals between successive distinct pitches of a line of sounding pitches (-1 silent)."""
    p = np.asarray(soprano, np.int64)
    p = p[p >= 0]
    if not p.size:
        return ()
    p = p[np.concatenate([[True], p[1:] != p[:-1]])]
    return tuple(np.diff(p).tolist())


def chorale_tune(c: Chorale) -> Tune:
    return tune(sounding_pitches(c.voices[0]))


def same_tune(a: Tune, b: Tune, shared: int = SHARED_INTERVALS) -> bool:
    """Equal intervals, or a shared opening or ending of ``shared`` intervals."""
    if a == b:
        return True
    if len(a) < shared or len(b) < shared:
        return False
    return a[:shared] == b[:shared] or a[-shared:] == b[-shared:]


# --- alignment with a music21 version -----------------------------------------------------------


@dataclass(frozen=True)
class Alignment:
    """JSB step ``t`` is the music21 version's step ``path[t]``, ``shift`` semitones higher."""

    name: str
    shift: int
    path: np.ndarray
    cost: float
    matched: float  # share of JSB steps whose four pitches the aligned step has
    jumps: int

    def describe(self) -> dict:
        return {
            "music21": self.name,
            "shift": self.shift,
            "steps": int(len(self.path)),
            "matched": round(self.matched, 4),
            "jumps": self.jumps,
        }


def _path(jsb: np.ndarray, other: np.ndarray, jump: float) -> tuple[np.ndarray, float]:
    """Dynamic programming: each JSB step takes a step of ``other``; the next step of ``other``
    is free, any other costs ``jump``; each step costs the voices whose pitch differs."""
    cost = (jsb[:, :, None] != other[:, None, :]).sum(axis=0).astype(np.float64)
    steps, width = cost.shape
    total = cost[0].copy()
    back = np.zeros((steps, width), np.int64)
    ahead = np.arange(width) - 1
    for t in range(1, steps):
        follow = np.concatenate([[np.inf], total[:-1]])
        best = int(total.argmin())
        leap = total[best] + jump
        back[t] = np.where(leap < follow, best, ahead)
        total = np.minimum(follow, leap) + cost[t]
    u = int(total.argmin())
    path = [u]
    for t in range(steps - 1, 0, -1):
        u = int(back[t, u])
        path.append(u)
    return np.array(path[::-1], np.int64), float(total.min())


def align(jsb: np.ndarray, candidates: list[Chorale], jump: float = JUMP_COST) -> Alignment | None:
    """The candidate (and transposition) the JSB chorale ``jsb`` ``(4, steps)`` aligns best
    with, or None without candidates."""
    best: Alignment | None = None
    for c in candidates:
        sounding = sounding_pitches(c.voices).astype(np.int64)
        for shift in range(-6, 7):
            moved = np.where(sounding >= 0, sounding + shift, REST_CODE)
            path, cost = _path(jsb, moved, jump)
            if best is None or cost < best.cost:
                matched = float((moved[:, path] == jsb).all(axis=0).mean())
                best = Alignment(
                    c.name, shift, path, cost, matched, int((np.diff(path) != 1).sum())
                )
    return best


def from_jsb(jsb: np.ndarray, version: Chorale, alignment: Alignment, name: str) -> Chorale:
    """A JSB chorale as a :class:`Chorale`: the JSB pitches, struck where the pitch changes or
    where the aligned music21 version strikes that same pitch again; bar position, fermata and
    mode from the aligned steps of the music21 version."""
    path = alignment.path
    codes = version.voices[:, path].astype(np.int64)
    sounding = sounding_pitches(version.voices).astype(np.int64)[:, path]
    sounding = np.where(sounding >= 0, sounding + alignment.shift, REST_CODE)
    pitches = jsb.astype(np.int64)
    previous = np.concatenate([np.full((4, 1), REST_CODE), pitches[:, :-1]], axis=1)
    struck_again = (codes >= 0) & (sounding == pitches)
    strike = (pitches != previous) | struck_again
    voices = np.where(pitches < 0, REST_CODE, np.where(strike, pitches, HOLD_CODE))
    return Chorale(
        name,
        voices.astype(np.int16),
        version.position[path].copy(),
        version.fermata[path].copy(),
        version.mode,
    )
