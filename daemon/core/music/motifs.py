"""How an answer relates to its call: note density, melodic motifs, key, grid.

The measures a continuation is chosen by (:mod:`partimento.core.players.respond`) and judged by
(``training/answers.py``), so both read the music the same way:

* the *top line* of some notes: per onset step the highest note that starts there (a chord is
  one onset, heard by its top note, as the engine hears the player);
* *density*: onsets per bar of 16 sixteenths;
* *interval trigrams*: three successive pitch intervals of the top line (four notes), the
  shape of a motif whatever its key;
* *motif reuse*: the share of the answer's interval trigrams that the call also has.

Pure: numpy and the standard library.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

import numpy as np

from partimento.core.music.encoding import Note, grid_to_notes

STEPS_PER_BAR = 16
TRIGRAM = 3
"""Intervals per motif: three intervals, four notes."""


def top_line(notes: Iterable[Note]) -> list[Note]:
    """Per onset step the highest note starting there, in time order."""
    best: dict[int, Note] = {}
    for n in notes:
        if n.start not in best or n.pitch > best[n.start].pitch:
            best[n.start] = n
    return [best[s] for s in sorted(best)]


def onsets(notes: Iterable[Note]) -> int:
    """How many distinct onset steps the notes have (a chord is one onset)."""
    return len({n.start for n in notes})


def density(notes: Sequence[Note], steps: int) -> float:
    """Onsets per bar over ``steps`` sixteenths."""
    return onsets(notes) * STEPS_PER_BAR / steps if steps > 0 else 0.0


def density_log_ratio(
    answer: Sequence[Note], answer_steps: int, call: Sequence[Note], call_steps: int
) -> float:
    """log(answer density / call density), each with half an onset added so that a silent
    answer or call stays finite (a silent answer to a played call is far below 0)."""
    a = (onsets(answer) + 0.5) / max(1, answer_steps)
    c = (onsets(call) + 0.5) / max(1, call_steps)
    return math.log(a / c)


def intervals(notes: Sequence[Note]) -> list[int]:
    """Successive pitch intervals of the top line, in semitones."""
    line = top_line(notes)
    return [b.pitch - a.pitch for a, b in itertools.pairwise(line)]


def interval_trigrams(notes: Sequence[Note]) -> list[tuple[int, ...]]:
    """Every run of :data:`TRIGRAM` successive intervals of the top line."""
    iv = intervals(notes)
    return [tuple(iv[i : i + TRIGRAM]) for i in range(len(iv) - TRIGRAM + 1)]


def motif_reuse(answer: Sequence[Note], call: Sequence[Note]) -> float | None:
    """The share of the answer's interval trigrams found among the call's; None when either
    has none (fewer than four notes)."""
    mine, theirs = interval_trigrams(answer), set(interval_trigrams(call))
    if not mine or not theirs:
        return None
    return sum(t in theirs for t in mine) / len(mine)


def in_key_share(notes: Sequence[Note], scale: frozenset[int]) -> float | None:
    """The share of notes whose pitch class is in ``scale``; None without notes."""
    if not notes:
        return None
    return sum(n.pitch % 12 in scale for n in notes) / len(notes)


def active_steps(codes: np.ndarray) -> int:
    """The steps a call takes, from its first onset to the end of its last note, rounded up
    to whole beats (at least one): what its density is measured over."""
    notes = grid_to_notes(np.asarray(codes))
    if not notes:
        return 0
    span = max(n.end for n in notes) - notes[0].start
    return max(4, -(-span // 4) * 4)
