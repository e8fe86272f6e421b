"""Drive an :class:`~partimento.engine.engine.Engine` on a virtual clock, as the service does on
the real one: each input parsed at the edge (:func:`partimento.core.midi.parse`, junk counted
and dropped), handed to :meth:`Engine.handle` at its time and settled once the reply is out; a
tick whenever the engine asks for one before the next input; :meth:`Engine.prepare` after
every message and tick (in the service a worker thread does that meanwhile).

``partimento demo``, the tests and the benches share it, so what they hear is what the
daemon would play.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from partimento.core import midi
from partimento.core.errors import PartimentoError
from partimento.core.types import MidiOut
from partimento.engine.engine import Engine

MAX_CALLS = 200_000
"""Ticks and inputs one :meth:`Driver.play` makes at most: an engine that keeps asking to be
ticked is a bug, reported rather than looped on."""

Timed = tuple[float, MidiOut]
Each = Callable[[float, "MidiOut | None", list[MidiOut]], object]
"""Called after every call: its time, the input (None for a tick) and what the engine sent."""


class DriverError(PartimentoError):
    """The engine kept asking to be ticked."""


@dataclass
class Driver:
    engine: Engine
    prepare: bool = True
    """Call :meth:`Engine.prepare` after every message and tick."""
    timed: bool = False
    """Record how long each :meth:`Engine.handle` of a note-on and each tick took
    (:func:`time.perf_counter`: real seconds, unlike everything else here)."""
    now: float = 0.0
    invalid: int = 0
    """Inputs that were no MIDI message the engine reads (dropped at the edge)."""
    sent: list[Timed] = field(default_factory=list)
    handle_seconds: list[float] = field(default_factory=list)
    tick_seconds: list[float] = field(default_factory=list)
    prepare_seconds: list[float] = field(default_factory=list)
    """Wall time of each :meth:`Engine.prepare` (in the daemon: the worker thread)."""

    def send(self, data: object, at: float) -> list[MidiOut]:
        """One input at ``at``: what the engine sends back (nothing for junk)."""
        self.now = max(self.now, at)
        message = midi.parse(data)
        if message is None:
            self.invalid += 1
            return []
        began = time.perf_counter()
        out = self.engine.handle(message, at)
        if self.timed and midi.is_note_on(message):
            self.handle_seconds.append(time.perf_counter() - began)
        self.engine.settle()
        return self._after(out)

    def tick(self, at: float) -> list[MidiOut]:
        self.now = max(self.now, at)
        began = time.perf_counter()
        out = self.engine.tick(self.now)
        if self.timed:
            self.tick_seconds.append(time.perf_counter() - began)
        return self._after(out)

    def advance(self, until: float, each: Each | None = None) -> list[MidiOut]:
        """Tick whenever the engine asks, up to ``until``."""
        out: list[MidiOut] = []
        for _ in range(MAX_CALLS):
            due = self.engine.next_time()
            if due is None or due > until:
                return out
            got = self.tick(due)
            if each is not None:
                each(self.now, None, got)
            out += got
        raise DriverError(f"Engine.next_time still due by {until} after {MAX_CALLS} ticks")

    def play(
        self,
        events: Iterable[tuple[float, object]],
        until: float = math.inf,
        each: Each | None = None,
    ) -> list[MidiOut]:
        """Every input at its time (up to ``until``) and the ticks the engine asks for between
        and after them, up to ``until`` (infinity: until it asks for nothing)."""
        out: list[MidiOut] = []
        for at, data in sorted(events, key=lambda e: e[0]):
            if at > until:
                break
            out += self.advance(at, each)
            got = self.send(data, at)
            if each is not None:
                each(self.now, midi.parse(data), got)
            out += got
        return out + self.advance(until, each)

    def stop(self, at: float | None = None) -> list[MidiOut]:
        """The engine's last messages (every sounding note released)."""
        self.now = max(self.now, at if at is not None else self.now)
        out = self.engine.stop(self.now)
        self.sent += [(self.now, m) for m in out]
        return out

    def _after(self, out: list[MidiOut]) -> list[MidiOut]:
        self.sent += [(self.now, m) for m in out]
        if self.prepare:
            began = time.perf_counter()
            self.engine.prepare()
            self.prepare_seconds.append(time.perf_counter() - began)
        return out
