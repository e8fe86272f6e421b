"""What both modes share: the settings, the note ledger and scheduler every outgoing note goes
through, the tempo tracker, the phrase detector, the context window of the player's notes,
and the counters. The :class:`~partimento.engine.engine.Engine` owns one :class:`Stage`; a mode
switch builds a new mode on the same stage."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from partimento.config import Config
from partimento.core.music.key import player_key
from partimento.core.players.harmonizer import HarmonizerSettings
from partimento.core.timing.ledger import NoteLedger
from partimento.core.timing.phrase import ContextWindow, PhraseDetector
from partimento.core.timing.scheduler import Scheduler
from partimento.core.timing.tempo import TempoTracker

MIN_KEY_NOTES = 4
"""Melody notes in the context window before the key is estimated from it."""
KEY_WINDOW_STEPS = 512
"""The most grid steps of the context window read for a key estimate."""
EPS = 1e-6
"""Grid positions this close below a step boundary count as on it."""


@dataclass
class Counters:
    messages_in: int = 0
    filtered: int = 0
    notes_in: int = 0
    notes_out: int = 0
    messages_out: int = 0
    harmony_steps: int = 0
    answered_ahead: int = 0  # harmony steps whose answer prepare() had made in advance
    skipped_steps: int = 0
    answers: int = 0
    late_answers: int = 0  # answers made after their planned beat, played on a later one
    interrupts: int = 0
    mode_switches: int = 0
    model_swaps: int = 0
    model_errors: int = 0


class Stage:
    """The engine's shared parts and the few sums both modes make with them."""

    def __init__(self, config: Config, *, seed: int | None = None) -> None:
        self.config = config
        self.seed = seed
        self.temperature = config.sampling.temperature
        self.ledger = NoteLedger()
        self.scheduler = Scheduler(self.ledger)
        self.tempo = TempoTracker(config.tempo.bpm, tap_cc=config.tempo.tap_cc)
        self.phrase = PhraseDetector(config.continue_.end_silence, config.continue_.end_cc)
        self.context = ContextWindow(config.context_seconds)
        self.counters = Counters()
        ch = config.harmonize.channels
        self.voice_channel = {"alto": ch.alto, "tenor": ch.tenor, "bass": ch.bass}
        self.out_channels = sorted({ch.alto, ch.tenor, ch.bass, config.continue_.channel})

    def position(self, now: float) -> float:
        """Where ``now`` falls on the tempo's grid of sixteenths."""
        step, frac = self.tempo.grid_position(now)
        return step + frac

    def current_step(self, now: float) -> int:
        """The grid step ``now`` falls in (a boundary within :data:`EPS` counts as reached)."""
        return math.floor(self.position(now) + EPS)

    def step_time(self, step: int, now: float) -> float:
        """When the grid reaches ``step`` at the current tempo (not before ``now``)."""
        sps = self.tempo.step_seconds_now(now)  # no onset estimate made here: see Engine.tick
        return max(now, now + (step - self.position(now)) * sps)

    def estimate_key(self, now: float) -> tuple[int, int] | None:
        """The key of the player's recent notes, from a copy of the context window: the
        harmonizer's :meth:`prepare` calls this in a worker thread while input may add notes."""
        sps = self.tempo.step_seconds_now(now)
        context = self.context.copy()
        context.prune(now)
        steps = max(1, min(KEY_WINDOW_STEPS, math.ceil(self.config.context_seconds / sps)))
        grid = context.to_grid(now, sps, steps, source="player")
        if int((grid >= 0).sum()) < MIN_KEY_NOTES:
            return None
        return player_key(grid)

    def harmonizer_settings(self) -> HarmonizerSettings:
        return dataclasses.replace(self.config.harmonizer_settings(), temperature=self.temperature)
