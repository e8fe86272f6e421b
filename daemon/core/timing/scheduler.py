"""Outgoing MIDI events in time order, on a monotonic clock the caller reads.

Times are float seconds on the daemon's monotonic clock, always passed in: the scheduler never
reads a clock and never sleeps. The daemon's player task asks :meth:`Scheduler.next_time`, waits
until then (or until woken), and sends what :meth:`Scheduler.due` returns.

How every note-on keeps its note-off, even when a phrase is interrupted:

1. :func:`schedule_notes` adds, for each note, a note-on at its start and a note-off at its end,
   both tagged with the phrase's owner (e.g. ``"continuation"``).
2. The scheduler holds the :class:`~partimento.core.timing.ledger.NoteLedger`, and
:meth:`Scheduler.due`
   routes every note message through it. A note enters the ledger exactly when its note-on is
   handed out for sending, and leaves it when its note-off is.
3. Interrupting an owner (the player starts a new phrase) is :meth:`Scheduler.interrupt`:
   :meth:`Scheduler.cancel` drops the owner's pending events (the note-ons not yet sent, with
   their note-offs, and the note-offs of notes already sounding); then
   ``ledger.release_owner(owner)`` returns a note-off for exactly the notes whose note-on went
   out and whose note-off had not: the ones step 2 put in the ledger. Nothing of that owner is
   sent afterwards: no late note-on, no stray note-off.
4. A due note-off whose note no longer sounds (silenced by ``release_all``, or re-struck by
   another owner, who then owns it) is dropped by the ledger, so no note-off goes out twice.
5. :meth:`Scheduler.stop` is the exit path for everything: it clears the queue and returns
   ``ledger.release_all()``.

Equal times come out note-offs first, then everything else in the order added, so a note that
ends where the same pitch starts again is re-struck rather than cut. Within one
:func:`schedule_notes` call, a note that overlaps a later note of the same pitch and channel is
ended where that note starts, so the later one sounds for its whole length.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

from partimento.core.errors import PartimentoError
from partimento.core.midi import (
    check_channel,
    check_message,
    check_pitch,
    check_velocity,
    is_note_off,
    note_off,
    note_on,
)
from partimento.core.timing.ledger import NoteLedger
from partimento.core.types import MidiOut


class SchedulerError(PartimentoError, ValueError):
    """A time or note that cannot be scheduled."""


def _check_time(t: float, what: str) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        raise SchedulerError(f"{what} must be a finite number of seconds, got {t!r}")
    return float(t)


class Scheduler:
    """A time-ordered queue of raw MIDI messages, each with an optional owner tag."""

    __slots__ = ("_heap", "_ledger", "_seq")

    def __init__(self, ledger: NoteLedger) -> None:
        self._ledger = ledger
        self._heap: list[tuple[float, int, int, MidiOut, str | None]] = []
        self._seq = 0  # insertion order: keeps equal times stable

    @property
    def ledger(self) -> NoteLedger:
        return self._ledger

    def add(self, at: float, message: MidiOut, *, owner: str | None = None) -> None:
        """Queue ``message`` for time ``at`` (seconds, monotonic clock)."""
        t = _check_time(at, "event time")
        msg = check_message(message)
        rank = 0 if is_note_off(msg) else 1
        heapq.heappush(self._heap, (t, rank, self._seq, msg, owner))
        self._seq += 1

    def due(self, now: float) -> list[tuple[float, MidiOut]]:
        """Pop every event at or before ``now``, in time order (note-offs first at equal times),
        routed through the ledger: the ``(at, message)`` pairs to send now."""
        t = _check_time(now, "now")
        out: list[tuple[float, MidiOut]] = []
        while self._heap and self._heap[0][0] <= t:
            at, _, _, msg, owner = heapq.heappop(self._heap)
            out.extend((at, m) for m in self._ledger.apply(msg, owner=owner))
        return out

    def next_time(self) -> float | None:
        """When the earliest pending event is due; ``None`` when nothing is pending."""
        return self._heap[0][0] if self._heap else None

    def cancel(self, owner: str) -> int:
        """Drop every pending event of ``owner``; how many were dropped.

        Notes of ``owner`` already sounding stay in the ledger: :meth:`interrupt` also
        releases them."""
        kept = [e for e in self._heap if e[4] != owner]
        dropped = len(self._heap) - len(kept)
        if dropped:
            heapq.heapify(kept)
            self._heap = kept
        return dropped

    def interrupt(self, owner: str) -> list[MidiOut]:
        """Stop ``owner``'s phrase now: cancel its pending events and return the note-offs of
        its notes still sounding."""
        self.cancel(owner)
        return self._ledger.release_owner(owner)

    def clear(self) -> int:
        """Drop every pending event; how many were dropped. Sounding notes go on sounding:
        :meth:`stop` also silences them."""
        dropped = len(self._heap)
        self._heap = []
        return dropped

    def stop(self, channels: Iterable[int] | None = None) -> list[MidiOut]:
        """Drop everything pending and silence everything sounding (``release_all``)."""
        self.clear()
        return self._ledger.release_all(channels)

    def __len__(self) -> int:
        return len(self._heap)


@dataclass(frozen=True)
class TimedNote:
    """A note to play: start and duration in seconds (start relative to the phrase's start)."""

    pitch: int
    start: float
    duration: float
    channel: int
    velocity: int = 80

    def __post_init__(self) -> None:
        check_pitch(self.pitch)
        check_channel(self.channel)
        check_velocity(self.velocity)
        if _check_time(self.start, "note start") < 0:
            raise SchedulerError(f"note start must be 0 or more, got {self.start!r}")
        if _check_time(self.duration, "note duration") <= 0:
            raise SchedulerError(
                f"note duration must be above 0, got {self.duration!r} "
                f"(pitch {self.pitch} at {self.start})"
            )

    @property
    def end(self) -> float:
        return self.start + self.duration


NoteLike = TimedNote | tuple[int, float, float, int, int]


def schedule_notes(
    scheduler: Scheduler, notes: Iterable[NoteLike], *, at: float = 0.0, owner: str | None = None
) -> int:
    """Queue a note-on and its note-off for every note, ``at`` seconds added to each time;
    how many notes were queued.

    ``notes`` are :class:`TimedNote` or ``(pitch, start, duration, channel, velocity)`` tuples.
    A note overlapping a later note of the same pitch and channel is ended where that one
    starts; of two starting together, the longer one is kept.
    """
    t0 = _check_time(at, "phrase start")
    by_key: dict[tuple[int, int], list[TimedNote]] = {}
    for n in notes:
        note = n if isinstance(n, TimedNote) else TimedNote(*n)
        by_key.setdefault((note.channel, note.pitch), []).append(note)

    count = 0
    for same_key in by_key.values():
        for start, end, note in _without_overlaps(same_key):
            on_at = t0 + start
            off_at = max(t0 + end, math.nextafter(on_at, math.inf))  # never rounded onto on_at
            scheduler.add(on_at, note_on(note.channel, note.pitch, note.velocity), owner=owner)
            scheduler.add(off_at, note_off(note.channel, note.pitch), owner=owner)
            count += 1
    return count


def _without_overlaps(notes: list[TimedNote]) -> list[tuple[float, float, TimedNote]]:
    """(start, end, note) for notes of one pitch and channel, each ended by the next's start."""
    ordered = sorted(notes, key=lambda n: (n.start, -n.duration))
    out: list[tuple[float, float, TimedNote]] = []
    for note in ordered:
        if out and note.start == out[-1][0]:
            continue  # starts with a longer (or equal) note already kept
        if out and note.start < out[-1][1]:
            out[-1] = (out[-1][0], note.start, out[-1][2])
        out.append((note.start, note.end, note))
    return out
