"""Harmonize mode: alto, tenor and bass under every melody note, live.

The model is stepped once per sixteenth of the tempo tracker's grid, its ``position`` input
the step index (counted from beat one) modulo 16, so what the model reads stays on the grid:

* A melody note-on is taken at the step nearest its onset (after the tracker has pulled the
  grid towards it), or the step after the last one taken if that one is already used; missed
  steps before it (at most :data:`MAX_CATCH_UP_IN_HANDLE`) are stepped silently first. Alto,
  tenor and bass go out at once on their ``harmonize.channels`` at ``harmonize.velocity``
  (None: the melody's velocity): a voice the model strikes is (re)struck, a voice it holds
  keeps sounding, a voice it rests is released. Only the notes that change are touched.
* Chords: a note-on within :data:`CHORD_SECONDS` of the melody note's onset is part of the
  same chord. A lower one is the player's own accompaniment and is not harmonized; a higher
  one becomes the melody: the step is taken again from a snapshot of the harmonizer made
  before it, and the voices that change are re-sent. So a chord (rolled or not) is
  harmonized under its top note.
* A late note: the steps while the melody is held (or in a gap) are committed when the grid
  reaches them, so harmony moves on time. A note-on that rounds to the step just committed
  takes that step over (again from the snapshot) instead of landing a step late.
* While the melody note is held, each following sixteenth steps the model with ``HOLD`` and
  the voices it moves are moved. When the melody note is released its harmony is released
  at once (the sustain pedal does not hold it). The model keeps stepping until the phrase
  ends (``continue.end_silence`` of silence): a gap of up to :data:`GAP_HOLD_STEPS` steps is
  read as the melody held (detached playing is the written line), a longer one as a rest;
  nothing sounds in a gap. After the phrase has ended the model pauses and takes up the
  grid again at the next note.
* The model's major/minor input is ``sampling.key``'s mode when a key is given; for ``auto``
  and ``none`` it is estimated (:func:`~partimento.core.music.key.player_key`, the estimate
  continue mode uses too) from the player's notes in the context window after every melody
  note, once
  :data:`~partimento.engine.stage.MIN_KEY_NOTES` are there (before that: major). The estimate
  is made by :meth:`HarmonizeMode.prepare` (in the daemon, the worker thread), on a copy of
  the context window, not while a note waits.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from partimento.core.music.encoding import HOLD_CODE, MAJOR, REST_CODE, STEPS_PER_QUARTER
from partimento.core.players.harmonizer import LiveHarmonizer
from partimento.core.types import MidiOut
from partimento.engine.modes import HARMONIZE
from partimento.engine.stage import Stage

HARMONY_VOICES = ("alto", "tenor", "bass")
HARMONY_OWNER = {v: f"harmony-{v}" for v in HARMONY_VOICES}
"""The ledger's owner of each harmony voice's notes."""

CHORD_SECONDS = 0.03
"""Note-ons this close to the melody note's onset are one chord, harmonized under its top."""
GAP_HOLD_STEPS = 4
"""A gap in the melody up to this many sixteenths is read by the harmonizer as the note held."""
MAX_CATCH_UP_IN_HANDLE = 2
"""Missed grid steps a note-on steps silently before its own; older ones are skipped."""
MAX_CATCH_UP_IN_TICK = 16
"""Grid steps one tick catches up at most (a stalled caller); older ones are skipped."""
UNDO_STEPS = 4
"""Harmonizer steps that can be taken back (a chord's top note, a late note)."""
TRASH_LIMIT = 64
"""Discarded snapshots kept for :meth:`HarmonizeMode.prepare` to free, at most."""
GAP_STEP_DELAY = 0.4
"""In a gap between melody notes the next grid step is taken this fraction of a step late:
nothing sounds there, and a note played a little late (most are, by a few milliseconds) then
takes the step itself instead of waiting for the tick that stepped it and taking it over.
Less than half a step, so the step is the same one. A held note's harmony moves on time."""
STEPS_PER_BAR = 4 * STEPS_PER_QUARTER


def nearest_step(pos: float) -> int:
    return math.floor(pos + 0.5)


@dataclass
class _Melody:
    channel: int
    pitch: int
    velocity: int
    on_time: float
    step: int


@dataclass
class _Undo:
    """How to take the last harmonizer step back: the harmonizer and bookkeeping before it."""

    harmonizer: LiveHarmonizer
    model_voice: dict[str, int | None]
    last_step: int | None
    step: int
    kind: str  # "note" or "fill"


class HarmonizeMode:
    """The live harmonizer played on the grid; see the module."""

    name = HARMONIZE
    replies_first = True

    def __init__(self, stage: Stage, harmonizer: LiveHarmonizer) -> None:
        self.stage = stage
        self.harmonizer = harmonizer
        self.melody: _Melody | None = None
        self.last_step: int | None = None
        self.trash: list[object] = []  # see _discard
        self._undo: deque[_Undo] = deque(maxlen=UNDO_STEPS)
        self._gap_from: int | None = None
        self._key_dirty = False
        self._model_voice: dict[str, int | None] = dict.fromkeys(HARMONY_VOICES)
        self._sounding: dict[str, int | None] = dict.fromkeys(HARMONY_VOICES)

    # -- the protocol -----------------------------------------------------------------------

    def note_on(
        self, channel: int, pitch: int, velocity: int, now: float, was_playing: bool
    ) -> list[MidiOut]:
        step = nearest_step(self.stage.position(now))
        m, last = self.melody, self.last_step
        chord_step = None
        if m is not None and now - m.on_time <= CHORD_SECONDS:
            if pitch <= m.pitch:
                return []  # a lower note of the chord: the player's own
            chord_step = m.step
        if chord_step is not None and self._rewind_to(chord_step):
            step = chord_step  # the chord's top note takes the chord's step
        elif (
            last is not None
            and step <= last
            and self._undo
            and self._undo[-1].kind == "fill"
            and self._rewind_to(last)
        ):
            step = last  # a late note takes over the step just committed as a hold
        elif last is not None:
            step = max(step, last + 1)
            # a phrase after a pause starts where it falls, the pause not read (chorales go on
            # from a fermata without rests); within a phrase, missed steps are caught up
            self._catch_up(step - 1, MAX_CATCH_UP_IN_HANDLE if was_playing else 0, count=False)
        self.melody = _Melody(channel, pitch, velocity, now, step)
        codes = self._step(pitch, step, "note")
        self._key_dirty = self.stage.config.sampling.fixed_key is None
        return self._sound(codes)

    def note_off(self, channel: int, pitch: int | None, now: float) -> list[MidiOut]:
        m = self.melody
        if m is None or (pitch is not None and (m.channel, m.pitch) != (channel, pitch)):
            return []
        self.melody = None
        self._gap_from = self.last_step
        out: list[MidiOut] = []
        for v in HARMONY_VOICES:
            out += self._release_voice(v)
        return out

    def tick(self, now: float) -> list[MidiOut]:
        if self.last_step is None:
            return []
        if self.melody is None and not self.stage.phrase.playing(now):
            return []
        step = self.stage.current_step(now)
        if step <= self.last_step:
            return []
        codes = self._catch_up(step, MAX_CATCH_UP_IN_TICK)
        return self._sound(codes) if self.melody is not None and codes else []

    def next_time(self, now: float) -> float | None:
        if self.last_step is None or (self.melody is None and not self.stage.phrase.playing(now)):
            return None
        due = self.stage.step_time(self.last_step + 1, now)
        if self.melody is None:  # a gap: nothing sounds, a late note may still come
            due += GAP_STEP_DELAY * self.stage.tempo.step_seconds_now(now)
        return due

    def prepare(self, now: float) -> None:
        """Answer the next grid step in advance, for every melody note it could bring
        (:meth:`LiveHarmonizer.prepare
        <partimento.core.players.harmonizer.LiveHarmonizer.prepare>`), so that note is
        answered without running the model; first, after a new melody note, the key's mode is
        estimated again. Safe in another thread than :meth:`note_on` and :meth:`tick`: it
        reads the mode's state (the context window through a copy), writes only the
        harmonizer's mode (one attribute, read as a whole), and an answer for a state that
        has moved on is never used."""
        self.trash.clear()  # the garbage of the last steps, freed here rather than on a note
        h, last = self.harmonizer, self.last_step
        if self._key_dirty:  # before the answers: they are made for the harmonizer's mode
            self._key_dirty = False
            key = self.stage.estimate_key(now)
            if key is not None:
                h.mode = key[1]
        if last is None or (self.melody is None and not self.stage.phrase.playing(now)):
            # before the first note or paused between phrases: the next note may fall on any
            # bar position, and it is stepped without catching up (see note_on), so answer
            # every position
            for position in range(STEPS_PER_BAR):
                h.prepare(position, 0)
        else:
            h.prepare((last + 1) % STEPS_PER_BAR, 0)

    def release(self) -> None:
        self._sounding = dict.fromkeys(HARMONY_VOICES)
        self.melody = None

    def regrid(self, step: int) -> None:
        if self.last_step is not None and step < self.last_step - STEPS_PER_QUARTER:
            self.last_step = step - 1
            self._undo.clear()

    def set_temperature(self, temperature: float) -> None:
        self.harmonizer.settings = self.stage.harmonizer_settings()

    def state(self) -> dict[str, Any]:
        return {"harmony_mode": "major" if self.harmonizer.mode == MAJOR else "minor"}

    # -- stepping ---------------------------------------------------------------------------

    def _catch_up(
        self, until: int, limit: int, *, count: bool = True
    ) -> tuple[int, int, int] | None:
        """Step the model with hold or rest up to step ``until``, at most ``limit`` steps (the
        older ones are skipped, and counted if ``count``); the last step's codes."""
        last = self.last_step
        if last is None or until <= last:
            return None
        if until - last > limit:
            if count:  # (a note after a pause skips the pause: no loss, not counted)
                self.stage.counters.skipped_steps += until - last - limit
            last = until - limit
            self.last_step = last
        codes = None
        for j in range(last + 1, until + 1):
            codes = self._step(self._fill_code(j), j, "fill")
        return codes

    def _fill_code(self, step: int) -> int:
        """What the model reads of the melody at a step without an onset."""
        if self.melody is not None:
            return HOLD_CODE
        if self._gap_from is not None and step - self._gap_from <= GAP_HOLD_STEPS:
            return HOLD_CODE
        return REST_CODE

    def _step(self, soprano: int, step: int, kind: str) -> tuple[int, int, int]:
        h = self.harmonizer
        if len(self._undo) == UNDO_STEPS:  # the oldest is dropped: freed later, not here
            self._discard(self._undo[0])
        self._undo.append(_Undo(h.snapshot(), dict(self._model_voice), self.last_step, step, kind))
        hits = h.prepared_hits
        codes = h.step(soprano, step % STEPS_PER_BAR, 0)
        counters = self.stage.counters
        counters.answered_ahead += h.prepared_hits - hits
        self.last_step = step
        for v, code in zip(HARMONY_VOICES, codes, strict=True):
            if code >= 0:
                self._model_voice[v] = code
            elif code == REST_CODE:
                self._model_voice[v] = None
        counters.harmony_steps += 1
        return codes

    def _discard(self, garbage: object) -> None:
        """Keep ``garbage`` for :meth:`prepare` to free. An old harmonizer snapshot holds the
        answer tables prepared for it (hundreds of small objects and arrays): freeing them
        inline cost a cold note-on about 0.1 ms before its harmony went out."""
        self.trash.append(garbage)
        if len(self.trash) > TRASH_LIMIT:  # nobody calls prepare(): free them here
            self.trash.clear()

    def _rewind_to(self, step: int) -> bool:
        """Take the harmonizer back to before ``step``, if it still can be."""
        if not any(u.step == step for u in self._undo):
            return False
        current = self.harmonizer
        while True:
            undo = self._undo.pop()
            self._discard(self.harmonizer)  # replaced: the current one, or one passed through
            undo.harmonizer.settings = current.settings  # a temperature or key set since
            undo.harmonizer.mode = current.mode
            self.harmonizer = undo.harmonizer
            self._model_voice = undo.model_voice
            self.last_step = undo.last_step
            if undo.step == step:
                return True

    # -- sounding ---------------------------------------------------------------------------

    def _sound(self, codes: tuple[int, int, int] | None) -> list[MidiOut]:
        """Make the sounding voices what the model has: release what changes, then strike."""
        m = self.melody
        if m is None or codes is None:
            return []
        velocity = self.stage.config.harmonize.velocity or m.velocity
        offs: list[MidiOut] = []
        strikes: list[tuple[str, int]] = []
        for v, code in zip(HARMONY_VOICES, codes, strict=True):
            target = self._model_voice[v]
            if target is not None and not 0 <= target <= 127:
                target = None
            current = self._sounding[v]
            if code >= 0 and target is not None:
                offs += self._release_voice(v)
                strikes.append((v, target))
            elif target != current:
                offs += self._release_voice(v)
                if target is not None:
                    strikes.append((v, target))
        out = offs
        for v, pitch in strikes:
            out += self.stage.ledger.note_on(
                self.stage.voice_channel[v], pitch, velocity, owner=HARMONY_OWNER[v]
            )
            self._sounding[v] = pitch
        return out

    def _release_voice(self, voice: str) -> list[MidiOut]:
        pitch = self._sounding[voice]
        if pitch is None:
            return []
        self._sounding[voice] = None
        return self.stage.ledger.note_off(
            self.stage.voice_channel[voice], pitch, owner=HARMONY_OWNER[voice]
        )
