"""The player's key: one estimate for the harmonizer's mode and the continuation's key.

:func:`player_key` is the only key estimate of live playing: the engine's harmonizer takes its
mode from it, and a continuation (:mod:`partimento.core.players.respond`, live and in ``partimento
sample`` alike) its transposition and scale. It is the Krumhansl-Schmuckler method (the key
profile, of all 24 rotations, that correlates best with the duration-weighted pitch-class
histogram) with Temperley's Kostka-Payne profiles, and no weight on the last note (a phrase
still being played need not end on its tonic).

Why these profiles: on the first four bars of held-out tunes with labelled keys they find the
key that moves a one-key model the right way (the tonic of the key or of its relative) far
more often than Krumhansl-Kessler's (:data:`partimento.core.music.rules.KRUMHANSL_MAJOR`), which
take the dominant for the tonic: Essen folk validation tunes 0.88 against 0.57, ABC validation tunes
(O'Neill, Ryan, Aird, Nottingham; ``K:`` fields) 0.90 against 0.75; chosen on the validation
splits among Krumhansl-Kessler, Temperley, Aarden-Essen, Bellman-Budge and
Albrecht-Shanahan (docs/decisions.md).

A model trained in one key (folk: C major / A minor) reads the player moved into that key by
:func:`model_shift` and answers moved back.

Pure: numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from partimento.core.music import rules
from partimento.core.music.encoding import MAJOR, MINOR

Key = tuple[int, int]
"""(tonic pitch class 0-11, ``MAJOR`` or ``MINOR``)."""


TEMPERLEY_MAJOR = (
    0.748,
    0.060,
    0.488,
    0.082,
    0.670,
    0.460,
    0.096,
    0.715,
    0.104,
    0.366,
    0.057,
    0.400,
)
TEMPERLEY_MINOR = (
    0.712,
    0.084,
    0.474,
    0.618,
    0.049,
    0.460,
    0.105,
    0.747,
    0.404,
    0.067,
    0.133,
    0.330,
)
"""Temperley's key profiles from the Kostka-Payne harmony textbook excerpts (Music and
Probability, 2007), tonic first."""


def _profiles(major: Sequence[float], minor: Sequence[float]) -> np.ndarray:
    """The 24 rotated profiles (major tonics 0-11, then minor), centred and normed."""
    rows = [np.roll(p, tonic) for p in (major, minor) for tonic in range(12)]
    out = np.asarray(rows, np.float64)
    out -= out.mean(axis=1, keepdims=True)
    result: np.ndarray = out / np.sqrt((out**2).sum(axis=1, keepdims=True))
    return result


_PROFILES = _profiles(TEMPERLEY_MAJOR, TEMPERLEY_MINOR)


def player_key(codes: Sequence[int] | np.ndarray) -> Key | None:
    """The key of a line of grid codes as played; None when no note sounds in it."""
    hist = rules.pitch_class_durations(codes)
    if not hist.any():
        return None
    best = int(np.argmax(_PROFILES @ (hist - hist.mean())))  # the first of equals
    return best % 12, (MAJOR, MINOR)[best // 12]
