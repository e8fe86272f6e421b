"""The two ways Partimento plays, behind one small protocol.

A :class:`Mode` is built for one model and lives until the next mode switch or model swap,
which builds a new one (on the same :class:`~partimento.engine.stage.Stage`). The engine reads
the input, keeps the shared parts up to date and hands each event to the active mode:

* ``note_on`` / ``note_off``: a melody note from the player (``pitch`` None: all notes off);
* ``tick``: what has fallen due by ``now`` (the scheduler's notes are the engine's to send);
* ``next_time``: when ``tick`` should come next (None: not before the next input);
* ``prepare``: answer ahead, off the engine's lock (the daemon's worker thread);
* ``release``: forget what sounds (the engine has released every note through the ledger);
* ``regrid``: the grid jumped back to ``step`` (a MIDI clock start or continue).
"""

from __future__ import annotations

from typing import Any, Protocol

from partimento.core.types import MidiOut

HARMONIZE, CONTINUE = "harmonize", "continue"
MODES = (HARMONIZE, CONTINUE)
KIND_MODE = {"live-harmonizer": HARMONIZE, "continuation": CONTINUE}
"""The mode each kind of model serves (offline harmonizers serve none live)."""


class Mode(Protocol):
    name: str
    """:data:`HARMONIZE` or :data:`CONTINUE`."""
    replies_first: bool
    """Whether a melody note-on is answered before the engine's bookkeeping of the note (the
    phrase detector, the context window, the tempo), which it does not depend on: the reply
    can then leave before that bookkeeping is done (:meth:`Engine.settle`)."""

    def note_on(
        self, channel: int, pitch: int, velocity: int, now: float, was_playing: bool
    ) -> list[MidiOut]: ...

    def note_off(self, channel: int, pitch: int | None, now: float) -> list[MidiOut]: ...

    def tick(self, now: float) -> list[MidiOut]: ...

    def next_time(self, now: float) -> float | None: ...

    def prepare(self, now: float) -> None: ...

    def release(self) -> None: ...

    def regrid(self, step: int) -> None: ...

    def set_temperature(self, temperature: float) -> None: ...

    def state(self) -> dict[str, Any]: ...
