"""The one encoding shared by training and the daemon.

Music is read on a grid of sixteenth notes. Each voice holds, at each step, one symbol:
a MIDI pitch (the note starts here), ``HOLD`` (the note sounding before goes on) or ``REST``.
Grids are kept as small integer arrays: pitches 0-127, ``REST_CODE`` and ``HOLD_CODE`` below 0.
A model reads symbols through its :class:`Vocabulary`, which travels in its ``model.json``;
nothing else in the code base decides which index a symbol has.

This module is pure: no I/O, no framework.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from partimento.core.errors import PartimentoError

STEPS_PER_QUARTER = 4
"""The grid: four steps to a quarter note (sixteenth notes)."""

REST = "r"
HOLD = "_"
START = "/"
REST_CODE = -1
HOLD_CODE = -2

VOICES = ("soprano", "alto", "tenor", "bass")
HARMONY_VOICES = ("alto", "tenor", "bass")

POSITIONS_PER_BAR = 16
"""Bar positions are counted in sixteenths modulo 16 (a 4/4 bar; 3/4 bars use 0-11)."""

MAJOR, MINOR = 0, 1

FOLK_DURATIONS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
"""Note and rest lengths (in quarters) a folk tune may have to be kept."""


class EncodingError(PartimentoError, ValueError):
    """A symbol, grid or vocabulary that does not fit the encoding."""


@dataclass(frozen=True)
class Vocabulary:
    """An ordered list of symbols; a symbol's index is its token."""

    symbols: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.symbols)) != len(self.symbols):
            raise EncodingError("vocabulary has repeated symbols")
        for s in self.symbols:
            if s not in (REST, HOLD, START) and not _is_pitch_symbol(s):
                raise EncodingError(
                    f"vocabulary symbol {s!r} is not a pitch, {REST!r}, {HOLD!r} or {START!r}"
                )
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.symbols)})

    @classmethod
    def for_pitches(cls, low: int, high: int, *, start: bool = False) -> Vocabulary:
        """``REST``, ``HOLD`` (and ``START``), then every pitch from ``low`` to ``high``."""
        if not 0 <= low <= high <= 127:
            raise EncodingError(f"pitch range {low}-{high} is not within MIDI 0-127")
        special = (REST, HOLD, START) if start else (REST, HOLD)
        return cls(special + tuple(str(p) for p in range(low, high + 1)))

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._index

    def index(self, symbol: str) -> int:
        try:
            return self._index[symbol]
        except KeyError:
            raise EncodingError(f"symbol {symbol!r} is not in the vocabulary") from None

    @functools.cached_property
    def pitches(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.symbols if _is_pitch_symbol(s))

    @functools.cached_property
    def pitch_range(self) -> tuple[int, int]:
        p = self.pitches
        if not p:
            raise EncodingError("vocabulary holds no pitch")
        return min(p), max(p)

    def code_to_token(self, code: int) -> int:
        """Grid code (pitch, ``REST_CODE`` or ``HOLD_CODE``) to token index."""
        return self.index(code_to_symbol(code))

    def token_to_code(self, token: int) -> int:
        return symbol_to_code(self.symbols[token])

    def encode(self, codes: Iterable[int]) -> np.ndarray:
        """Grid codes to tokens (``int32``); a pitch outside the vocabulary is an error."""
        table = self._code_table()
        arr = np.asarray(list(codes) if not isinstance(codes, np.ndarray) else codes, np.int64)
        shifted = arr + 2
        if arr.size and (
            shifted.min() < 0 or shifted.max() >= table.size or (table[shifted] < 0).any()
        ):
            bad = sorted({int(c) for c in arr.ravel() if not self.has_code(int(c))})
            raise EncodingError(
                f"grid codes {bad[:5]} are outside the vocabulary "
                f"{self.symbols[0]}..{self.symbols[-1]}"
            )
        return table[shifted].astype(np.int32)

    def decode(self, tokens: Iterable[int]) -> np.ndarray:
        """Tokens to grid codes (``int16``); ``START`` (outside any piece) reads as a rest."""
        codes = np.array(
            [REST_CODE if s == START else symbol_to_code(s) for s in self.symbols], np.int16
        )
        index = np.asarray(list(tokens) if not isinstance(tokens, np.ndarray) else tokens)
        result: np.ndarray = codes[index]
        return result

    def pitch_mask(self) -> np.ndarray:
        """Boolean mask over tokens: True where the token is a pitch."""
        return np.array([_is_pitch_symbol(s) for s in self.symbols])

    def has_code(self, code: int) -> bool:
        """Whether grid code ``code`` (a pitch, hold or rest) has a token."""
        try:
            return code_to_symbol(code) in self._index
        except EncodingError:
            return False

    def _code_table(self) -> np.ndarray:
        table = np.full(130, -1, np.int64)  # index code + 2: HOLD, REST, 0..127
        for i, s in enumerate(self.symbols):
            if s != START:
                table[symbol_to_code(s) + 2] = i
        return table


def _is_pitch_symbol(s: str) -> bool:
    return s.isdigit() and 0 <= int(s) <= 127


def code_to_symbol(code: int) -> str:
    if code == REST_CODE:
        return REST
    if code == HOLD_CODE:
        return HOLD
    if 0 <= code <= 127:
        return str(code)
    raise EncodingError(f"grid code {code} is neither a MIDI pitch nor rest/hold")


def symbol_to_code(symbol: str) -> int:
    if symbol == REST:
        return REST_CODE
    if symbol == HOLD:
        return HOLD_CODE
    if _is_pitch_symbol(symbol):
        return int(symbol)
    raise EncodingError(f"symbol {symbol!r} has no grid code")


# --- notes <-> grids -------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """A note in grid steps: ``pitch`` from ``start`` for ``length`` steps."""

    pitch: int
    start: int
    length: int

    def __post_init__(self) -> None:
        if not 0 <= self.pitch <= 127:
            raise EncodingError(f"pitch {self.pitch} is outside MIDI 0-127")
        if self.start < 0 or self.length < 1:
            raise EncodingError(f"note at step {self.start} with length {self.length} is invalid")

    @property
    def end(self) -> int:
        return self.start + self.length


def notes_to_grid(notes: Sequence[Note], n_steps: int | None = None) -> np.ndarray:
    """A monophonic line of notes to grid codes; later notes cut earlier ones short."""
    total = max((n.end for n in notes), default=0) if n_steps is None else n_steps
    grid = np.full(total, REST_CODE, np.int16)
    for n in sorted(notes, key=lambda n: n.start):
        if n.start >= total:
            continue
        grid[n.start] = n.pitch
        grid[n.start + 1 : min(n.end, total)] = HOLD_CODE
    return grid


def grid_to_notes(grid: Sequence[int] | np.ndarray) -> list[Note]:
    """Grid codes back to notes; a hold after a rest (or at the start) is read as a rest."""
    notes: list[Note] = []
    pitch, start = None, 0
    for i, code in enumerate(list(np.asarray(grid).tolist()) + [REST_CODE]):
        if code == HOLD_CODE and pitch is not None:
            continue
        if pitch is not None:
            notes.append(Note(pitch, start, i - start))
            pitch = None
        if code >= 0:
            pitch, start = int(code), i
    return notes


def sounding_pitches(grid: np.ndarray) -> np.ndarray:
    """Per step the pitch that sounds (holds resolved to their note), ``REST_CODE`` where silent.

    Works on the last axis, so a ``(voices, steps)`` array resolves every voice at once.
    """
    g = np.asarray(grid)
    out = g.astype(np.int16).copy()
    flat = out.reshape(-1, out.shape[-1])
    for row in flat:
        current = REST_CODE
        for i, c in enumerate(row):
            if c == HOLD_CODE:
                row[i] = current
            else:
                current = c
    return out


def transpose_grid(grid: np.ndarray, semitones: int) -> np.ndarray:
    """Shift every pitch by ``semitones``; rests and holds stay."""
    g = np.asarray(grid).astype(np.int16)
    moved = g[g >= 0] + semitones
    if moved.size and (moved.min() < 0 or moved.max() > 127):
        raise EncodingError(f"transposing by {semitones} leaves the MIDI range")
    return np.where(g >= 0, g + semitones, g).astype(np.int16)


def pitch_span(grid: np.ndarray) -> tuple[int, int] | None:
    """Lowest and highest pitch in a grid, or None when it holds no note."""
    g = np.asarray(grid)
    p = g[g >= 0]
    return (int(p.min()), int(p.max())) if p.size else None


def octave_shift_into(grid: np.ndarray, low: int, high: int) -> int:
    """The whole octaves that bring most of a line's notes into ``low..high`` (0 if none)."""
    g = np.asarray(grid)
    p = g[g >= 0].astype(int)
    if not p.size:
        return 0
    shifts = range(-48, 49, 12)
    inside = [int(((p + s >= low) & (p + s <= high)).sum()) for s in shifts]
    best = max(inside)
    return min((s for s, n in zip(shifts, inside, strict=True) if n == best), key=abs)


def fits_range(grid: np.ndarray, low: int, high: int) -> bool:
    span = pitch_span(grid)
    return span is None or (span[0] >= low and span[1] <= high)


# --- folk: the key rule -------------------------------------------------------------------------


def folk_transposition(tonic_pitch_class: int, mode: int) -> int:
    """Semitones that bring a tune to C major (major) or A minor (minor), the nearer way."""
    target = 0 if mode == MAJOR else 9
    shift = (target - tonic_pitch_class) % 12
    return shift - 12 if shift > 6 else shift
