"""Continue mode: call and response. When the player's phrase ends, an answer in the model's
style, at the player's tempo and in the player's key.

* Warm state: from a phrase's first note, every sixteenth of the player's playing is fed to
  the continuation model (:mod:`partimento.core.players.continuation`) one grid step after it
  ends (when it can no longer change), rendered by :meth:`ContextWindow.to_grid
  <partimento.core.timing.phrase.ContextWindow.to_grid>` over the last
  :data:`OBSERVE_WINDOW` steps, of which the new ones are fed. Rests are held back until a
  note follows, so the silence that ends a phrase is read as 1-4 steps of rest, the same count
  modulo a beat (the model has no position input; it keeps the meter from what it reads).
* The model is played through :class:`~partimento.core.players.respond.Responder`, the code
  path ``partimento sample`` uses too: it keeps the phrase (the *call*) in the model's state
  for the whole answer (the end of a tune is never sampled, nothing restarts), takes the key
  from the call (``sampling.key`` when one is given; a model trained in one key, folk, hears
  the player moved into it and answers moved back; with ``auto`` or a given key the answer
  keeps to the key's scale), and of several answers drawn keeps the one whose density and
  motifs follow the call best.
* When the phrase ends (the phrase detector: ``continue.end_silence`` or ``continue.end_cc``),
  the answer is planned on the first beat at least :data:`ANSWER_LEAD` seconds later:
  ``continue.bars`` bars of 16 sixteenths (4/4 assumed) at the current tempo, owner
  :data:`CONTINUATION`, on ``continue.channel`` at ``continue.velocity`` (None: the phrase's
  mean velocity), every note-on with its note-off. It is *made* off the engine lock: by
  :meth:`ContinueMode.prepare` (in the daemon, the worker thread), on a branch of the
  responder (:meth:`Responder.branch`), so a note played meanwhile is read at once; the next
  :meth:`ContinueMode.tick` schedules it, and the branch, which has heard the answer, takes
  the responder's place. An answer made after its planned beat starts on the next beat. A
  tick makes it itself (under the lock) only when no ``prepare`` has begun by that beat.
* A player note-on while an answer is being made, pending or sounding interrupts it at once:
  the answer's sounding notes are released in that same reply and nothing more of it is sent.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from partimento.core.music.encoding import REST_CODE, STEPS_PER_QUARTER, Note
from partimento.core.players.respond import AnswerSettings, Responder
from partimento.core.timing.scheduler import TimedNote, schedule_notes
from partimento.core.types import MidiOut, ModelLike
from partimento.engine.modes import CONTINUE
from partimento.engine.stage import EPS, Stage

log = logging.getLogger(__name__)

CONTINUATION = "continuation"
"""The scheduler's owner of continuation answers."""
OBSERVE_WINDOW = 16
"""Steps of context rendered to feed the continuer its new steps (only the tail is fed)."""
ANSWER_LEAD = 0.05
"""Seconds at least between noticing a phrase's end and the answer's first step."""
PHRASE_POLL = 0.02
"""While a phrase is open and silent, :meth:`ContinueMode.tick` is asked for this often."""
STEPS_PER_BAR = 4 * STEPS_PER_QUARTER


@dataclass
class _Answer:
    """An answer planned at a phrase's end: made off the lock by whoever takes ``making``
    first, then scheduled by a tick."""

    responder: Responder
    """A branch of the mode's responder: it makes the answer and, once played, replaces it."""
    steps: int
    at: float
    """When its first step is due (monotonic seconds)."""
    seconds_per_step: float
    velocity: int
    notes: list[Note] | None = None
    making: threading.Lock = field(default_factory=threading.Lock)

    def make(self) -> list[Note]:
        """The notes: made now, unless made already or being made (then waited for)."""
        with self.making:
            if self.notes is None:
                self.notes = self.responder.continue_notes(self.steps)
            return self.notes


class ContinueMode:
    """Call and response with one continuation model; see the module."""

    name = CONTINUE
    replies_first = False

    def __init__(self, stage: Stage, model: ModelLike) -> None:
        self.stage = stage
        self.model = model
        sampling = stage.config.sampling
        settings = AnswerSettings(
            temperature=stage.temperature,
            top_p=sampling.top_p,
            seed=stage.seed,
            fixed_key=sampling.fixed_key,
            keep_to_scale=sampling.key != "none",
        )
        self.continuer = Responder(model.contract, model.run, settings)
        self.pending: _Answer | None = None
        """The answer planned at the last phrase's end, until a tick schedules it."""
        self._observed: int | None = None
        self._phrase_start = 0
        self._held_rests = 0
        self._velocities: list[int] = []

    # -- the protocol -----------------------------------------------------------------------

    def note_on(
        self, channel: int, pitch: int, velocity: int, now: float, was_playing: bool
    ) -> list[MidiOut]:
        """A player note-on: interrupt any answer; open a phrase."""
        stage = self.stage
        dropped = stage.scheduler.cancel(CONTINUATION) or self.pending is not None
        self.pending = None  # a branch: the responder has not heard it
        out = stage.ledger.release_owner(CONTINUATION)
        if dropped or out:
            stage.counters.interrupts += 1
        if not was_playing or self._observed is None:
            start = math.floor(stage.position(now) + 0.5)
            self._observed = start - 1
            self._phrase_start = start
            self._held_rests = 0
            self._velocities = []
        self._velocities.append(velocity)
        return out

    def note_off(self, channel: int, pitch: int | None, now: float) -> list[MidiOut]:
        return []

    def tick(self, now: float) -> list[MidiOut]:
        """Feed the steps the grid has passed; plan an answer when the phrase has ended;
        schedule the planned answer once it is made."""
        if self._observed is not None:
            pos = self.stage.position(now)
            self._observe_until(math.floor(pos + EPS) - 1, now, pos)
        if self.stage.phrase.phrase_ended(now):
            self._plan(now)
        pending = self.pending
        if pending is not None and (pending.notes is not None or now >= pending.at - EPS):
            pending.make()  # made by prepare() by now, but for a missed prepare
            self._schedule(pending, now)
        return []

    def next_time(self, now: float) -> float | None:
        pending = self.pending
        if pending is not None:  # made: schedule it now; else look again, and make it when due
            return now if pending.notes is not None else min(now + PHRASE_POLL, pending.at)
        if self._observed is None:
            return None
        due = self.stage.step_time(self._observed + 2, now)
        if not self.stage.phrase.sounding(now):
            due = min(due, now + PHRASE_POLL)
        return due

    def prepare(self, now: float) -> None:
        """Make the planned answer (off the engine lock: it only touches its branch)."""
        pending = self.pending
        if pending is not None:
            pending.make()

    def release(self) -> None:
        self.pending = None

    def regrid(self, step: int) -> None:
        if self._observed is not None and step < self._observed:
            self._observed = step - 1
            self._phrase_start = min(self._phrase_start, step)

    def set_temperature(self, temperature: float) -> None:
        self.continuer.temperature = temperature

    def state(self) -> dict[str, Any]:
        return {"harmony_mode": None}

    # -- listening --------------------------------------------------------------------------

    def _observe_until(self, last: int, now: float, pos: float) -> None:
        """Feed the continuer the player's grid steps after ``_observed`` up to ``last``."""
        assert self._observed is not None
        n = last - self._observed
        if n <= 0:
            return
        sps = self.stage.tempo.seconds_per_step(now)
        end = now - (pos - (last + 1)) * sps  # the boundary where step ``last`` ends
        grid = self.stage.context.to_grid(end, sps, max(OBSERVE_WINDOW, n + 1), source="player")
        self._feed(grid[-n:])
        self._observed = last

    def _feed(self, codes: np.ndarray) -> None:
        """Observe grid codes, holding trailing rests back until a note follows them."""
        sounding = np.flatnonzero(codes != REST_CODE)
        if not sounding.size:
            self._held_rests += len(codes)
            return
        last = int(sounding[-1])
        rests = np.full(self._held_rests, REST_CODE, np.int16)
        self.continuer.observe(np.concatenate([rests, codes[: last + 1]]))
        self._held_rests = len(codes) - last - 1

    # -- answering --------------------------------------------------------------------------

    def _plan(self, now: float) -> None:
        """The phrase has ended: plan ``continue.bars`` bars on the first beat at least
        :data:`ANSWER_LEAD` seconds on, to be made off the lock (:meth:`prepare`)."""
        if self._observed is None:
            return
        stage = self.stage
        pos = stage.position(now)
        k = math.floor(pos + EPS)
        self._observe_until(k - 1, now, pos)
        sps = stage.tempo.seconds_per_step(now)
        start = math.ceil(pos + ANSWER_LEAD / sps - EPS)
        start = -(-start // STEPS_PER_QUARTER) * STEPS_PER_QUARTER  # on a beat
        assert self._observed is not None
        rests = max(0, self._held_rests + start - 1 - self._observed)
        if rests > STEPS_PER_QUARTER:
            rests = (rests - 1) % STEPS_PER_QUARTER + 1  # the same place in the beat
        self._held_rests = 0
        if rests:
            self.continuer.observe(np.full(rests, REST_CODE, np.int16))
        cfg = stage.config.continue_
        velocity = cfg.velocity or int(np.clip(round(float(np.mean(self._velocities))), 1, 127))
        at = now + (start - pos) * sps
        self.pending = _Answer(self.continuer.branch(), cfg.bars * STEPS_PER_BAR, at, sps, velocity)
        self._observed = None

    def _schedule(self, answer: _Answer, now: float) -> None:
        """Schedule a made answer at its beat, or at the next beat if that has passed; its
        branch, which has heard the answer, becomes the responder."""
        assert answer.notes is not None
        sps = answer.seconds_per_step
        beat = STEPS_PER_QUARTER * sps
        at = answer.at
        if at < now - sps:  # later than a sixteenth: the next beat
            at += math.ceil((now - at) / beat - EPS) * beat
            self.stage.counters.late_answers += 1
        cfg = self.stage.config.continue_
        notes = [
            TimedNote(n.pitch, n.start * sps, n.length * sps, cfg.channel, answer.velocity)
            for n in answer.notes
        ]
        schedule_notes(self.stage.scheduler, notes, at=at, owner=CONTINUATION)
        self.continuer = answer.responder
        self.pending = None
        self.stage.counters.answers += 1
        log.debug("answer of %d notes at %.3f s", len(notes), at)
