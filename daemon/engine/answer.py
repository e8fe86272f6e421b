"""Continue mode: call and response. When the player's phrase ends, an answer in the model's
style, at the player's tempo and in the player's key.

* Warm state: from a phrase's first note, every sixteenth of the player's playing is fed to
  the continuation model (:mod:`partimento.core.players.continuation`) one grid step after it
  ends (when it can no longer change), rendered by :meth:`ContextWindow.to_grid
  <partimento.core.timing.phrase.ContextWindow.to_grid>` over the last
  :data:`OBSERVE_WINDOW` steps, of which the new ones are fed. Rests are held back until a
  note follows, so the silence that ends a phrase is read as 1-4 steps of rest, the same count
  modulo a beat (the model has no position input; it keeps the meter from what it reads).
* When the phrase ends (the phrase detector: ``continue.end_silence`` or ``continue.end_cc``),
  ``continue.bars`` bars of 16 sixteenths (4/4 assumed) are generated at the current tempo
  and scheduled, owner :data:`CONTINUATION`, on ``continue.channel`` at ``continue.velocity``
  (None: the phrase's mean velocity), every note-on with its note-off. The answer starts on
  the first beat at least :data:`ANSWER_LEAD` seconds after the end was noticed.
* Key: a model trained in one key (folk: C major / A minor) reads the player transposed
  (:func:`~partimento.core.music.encoding.folk_transposition`) and answers transposed back.
  The key is ``sampling.key`` when given, else estimated from the phrase when it ends; with
  ``auto`` or a given key the answer keeps to that key's scale. When the key changes, the
  continuer is rebuilt and reads the phrase again in the new transposition before it answers.
* A player note-on while an answer is pending or sounding interrupts it at once: the answer's
  sounding notes are released in that same reply and nothing more of it is sent. (The
  continuer has read the whole answer when it generated it.)
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from partimento.core.music import rules
from partimento.core.music.encoding import REST_CODE, STEPS_PER_QUARTER, folk_transposition
from partimento.core.players import continuation
from partimento.core.players.continuation import Continuation
from partimento.core.timing.scheduler import TimedNote, schedule_notes
from partimento.core.types import MidiOut, ModelLike
from partimento.engine.modes import CONTINUE
from partimento.engine.stage import EPS, Stage

log = logging.getLogger(__name__)

CONTINUATION = "continuation"
"""The scheduler's owner of continuation answers."""
OBSERVE_WINDOW = 16
"""Steps of context rendered to feed the continuer its new steps (only the tail is fed)."""
MAX_PHRASE_STEPS = 512
"""The most of a phrase read again (or read for its key) when the key changes."""
ANSWER_LEAD = 0.05
"""Seconds at least between noticing a phrase's end and the answer's first step."""
PHRASE_POLL = 0.02
"""While a phrase is open and silent, :meth:`ContinueMode.tick` is asked for this often."""
STEPS_PER_BAR = 4 * STEPS_PER_QUARTER

ContinuerKey = tuple[int, frozenset[int] | None]
"""A continuer's transposition into its model's key and its scale (None: no mask)."""


class ContinueMode:
    """Call and response with one continuation model; see the module."""

    name = CONTINUE
    replies_first = False

    def __init__(self, stage: Stage, model: ModelLike, key: tuple[int, int] | None) -> None:
        self.stage = stage
        self.model = model
        self.key: ContinuerKey = self._continuer_key(key) if key else (0, None)
        self.continuer = self._new_continuer(*self.key)
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
        dropped = stage.scheduler.cancel(CONTINUATION)
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
        """Feed the steps the grid has passed; answer when the phrase has ended."""
        if self._observed is not None:
            pos = self.stage.position(now)
            self._observe_until(math.floor(pos + EPS) - 1, now, pos)
        if self.stage.phrase.phrase_ended(now):
            self._answer(now)
        return []

    def next_time(self, now: float) -> float | None:
        if self._observed is None:
            return None
        due = self.stage.step_time(self._observed + 2, now)
        if not self.stage.phrase.sounding(now):
            due = min(due, now + PHRASE_POLL)
        return due

    def prepare(self, now: float) -> None:
        return None

    def release(self) -> None:
        return None

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

    def _answer(self, now: float) -> None:
        """The phrase has ended: generate ``continue.bars`` bars and schedule them."""
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

        phrase_steps = max(1, min(k - self._phrase_start, MAX_PHRASE_STEPS))
        phrase = stage.context.to_grid(now - (pos - k) * sps, sps, phrase_steps, source="player")
        sounding = np.flatnonzero(phrase != REST_CODE)
        self._set_key(phrase[: int(sounding[-1]) + 1] if sounding.size else phrase)
        if rests:
            self.continuer.observe(np.full(rests, REST_CODE, np.int16))

        cfg = stage.config.continue_
        answer = self.continuer.continue_notes(cfg.bars * STEPS_PER_BAR)
        velocity = cfg.velocity or int(np.clip(round(float(np.mean(self._velocities))), 1, 127))
        notes = [
            TimedNote(n.pitch, n.start * sps, n.length * sps, cfg.channel, velocity) for n in answer
        ]
        at = now + (start - pos) * sps
        schedule_notes(stage.scheduler, notes, at=at, owner=CONTINUATION)
        self._observed = None
        stage.counters.answers += 1
        log.debug("answer of %d notes at step %d (%.3f s)", len(notes), start, at)

    def _set_key(self, phrase: np.ndarray) -> None:
        """Rebuild the continuer when the key (transposition or scale) changes; it then reads
        the phrase again."""
        key = self.stage.config.sampling.fixed_key
        if key is None:
            key = rules.estimate_key(phrase, final_weight=0.0) if (phrase >= 0).any() else None
        if key is None:
            return
        new = self._continuer_key(key)
        if new == self.key:
            return
        self.continuer = self._new_continuer(*new)
        self.key = new
        self.continuer.observe(phrase)

    def _continuer_key(self, key: tuple[int, int]) -> ContinuerKey:
        """The continuer's transposition and scale (None: no mask) for the player's key."""
        one_key = continuation.trained_in_one_key(self.model.contract)
        shift = folk_transposition(*key) if one_key else 0
        scale = None if self.stage.config.sampling.key == "none" else rules.key_scale(*key)
        return shift, scale

    def _new_continuer(self, shift: int, scale: frozenset[int] | None) -> Continuation:
        return continuation.make(
            self.model.contract,
            self.model.run,
            temperature=self.stage.temperature,
            top_p=self.stage.config.sampling.top_p,
            seed=self.stage.seed,
            shift=shift,
            allowed_pitch_classes=scale,
        )
