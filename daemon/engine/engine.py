"""The daemon's brain: raw MIDI in, raw MIDI out, with no I/O, no asyncio and no clock.

The real service, ``partimento demo`` and the unit tests drive it alike:

* :meth:`Engine.handle` takes one raw input message (note on/off, control or program change,
  a system real-time byte) with the monotonic time it arrived and returns what to send *now*;
* :meth:`Engine.tick` returns what has fallen due by ``now`` (harmony moving under a held
  melody note, the sixteenths of a continuation answer);
* :meth:`Engine.next_time` says when :meth:`Engine.tick` should be called next (None: only
  when input comes). It may lie in the past: then call :meth:`Engine.tick` at once;
* :meth:`Engine.panic` and :meth:`Engine.stop` silence everything (:meth:`Engine.stop` for
  good: afterwards input is ignored and nothing is due);
* :meth:`Engine.set_mode`, :meth:`Engine.swap_model` and :meth:`Engine.set_temperature` do
  what the control messages do, for other controllers (MQTT); :meth:`Engine.stats` gives the
  counters (messages in, ``invalid``, ``filtered``, notes in and out, harmony steps,
  ``skipped_steps``, answers, interrupts, switches, ``model_errors``) and the state.

Every outgoing note goes through one :class:`~partimento.core.timing.ledger.NoteLedger` (the
scheduler's), so every exit path can release exactly what sounds. Messages are the ledger's
raw :data:`~partimento.core.timing.ledger.MidiOut` tuples, note-offs always on their own channel.

Input
-----
Bytes that are no complete MIDI message (wrong length, data bytes above 127, running status,
junk) are counted as ``invalid`` and ignored, and so are system exclusive and system common
messages (the engine reads none). Melody notes (and the sustain pedal, and all-notes-off) are
read from ``midi.input_channel`` (None: every channel); control and program changes, the tap CC
and the phrase-end CC from ``control.channel``. Every accepted note-on feeds the tempo tracker
(an onset; with ``tempo.estimate`` off it only anchors the grid), the phrase detector and the
context window, which hold the player's notes only. Clock, start, continue and stop bytes go to
the tempo tracker unless ``tempo.follow_clock`` is off; when the clock transport moves the grid
back (a start, the first tick after a continue), the engine's step counts follow it.

Harmonize mode
--------------
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
  and ``none`` it is estimated (:func:`~partimento.core.music.rules.estimate_key`) from the player's
  notes in the context window after every melody note, once :data:`MIN_KEY_NOTES` are there
  (before that: major). The estimate is made by the :meth:`Engine.prepare` that follows (in
  the daemon, the worker thread), on a copy of the context window, not in :meth:`Engine.handle`
  or :meth:`Engine.tick`: those hold the service's lock, and a note waits while they run.

Continue mode
-------------
* Warm state: from a phrase's first note, every sixteenth of the player's playing is fed to
  the continuation model (:mod:`partimento.core.players.continuation`) one grid step after it ends (when it can
  no longer change), rendered by :meth:`ContextWindow.to_grid
  <partimento.core.timing.phrase.ContextWindow.to_grid>` over the last :data:`OBSERVE_WINDOW` steps,
  of which the new ones are fed. Rests are held back until a note follows, so the silence
  that ends a phrase is read as 1-4 steps of rest, the same count modulo a beat (the model
  has no position input; it keeps the meter from what it reads).
* When the phrase ends (the phrase detector: ``continue.end_silence`` or ``continue.end_cc``),
  ``continue.bars`` bars of 16 sixteenths (4/4 assumed) are generated at the current tempo
  and scheduled, owner ``"continuation"``, on ``continue.channel`` at ``continue.velocity``
  (None: the phrase's mean velocity), every note-on with its note-off. The answer starts on
  the first beat at least :data:`ANSWER_LEAD` seconds after the end was noticed.
* Key: a model trained in one key (folk: C major / A minor) reads the player transposed
  (:func:`~partimento.core.music.encoding.folk_transposition`) and answers transposed back. The key is
  ``sampling.key`` when given, else estimated from the phrase when it ends; with ``auto`` or
  a given key the answer keeps to that key's scale. When the key changes, the continuer is
  rebuilt and reads the phrase again in the new transposition before it answers.
* A player note-on while an answer is pending or sounding interrupts it at once: the answer's
  sounding notes are released in that same :meth:`Engine.handle` result and nothing more of
  it is sent. (The continuer has read the whole answer when it generated it.)

Control
-------
* ``control.mode_cc``: 0-63 harmonize, 64-127 continue. A switch releases everything first
  (``release_all``: note-offs, then sustain off and all-notes-off on every output channel).
* ``control.temperature_cc``: the temperature within ``control.temperature_range``, for both
  modes, from the next step on.
* Program change: the model ``control.programs`` maps it to is loaded and the engine switches
  to the mode its contract serves (a hot swap: released first, nothing left hanging).

Models are loaded through the ``load_model`` callable and cached by name: the start mode's
at construction (a failure raises :class:`EngineError`), the other mode's at the first switch
(or :meth:`Engine.preload`). A model that fails to load at run time is logged and counted
(``model_errors``) and the engine goes on as it was.

Timing: nothing here reads a clock; every call carries ``now`` (monotonic seconds). How long
:meth:`Engine.handle` takes is the caller's to measure.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import operator
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from partimento.config import Config
from partimento.core.errors import PartimentoError
from partimento.core.music import rules
from partimento.core.music.encoding import (
    HOLD_CODE,
    MAJOR,
    REST_CODE,
    STEPS_PER_QUARTER,
    folk_transposition,
)
from partimento.core.players import continuation
from partimento.core.players.continuation import Continuation
from partimento.core.players.contract import Contract
from partimento.core.players.harmonizer import LiveHarmonizer
from partimento.core.timing.ledger import MidiOut, NoteLedger, is_note_on
from partimento.core.timing.phrase import ContextWindow, PhraseDetector
from partimento.core.timing.scheduler import Scheduler, TimedNote, schedule_notes
from partimento.core.timing.tempo import TempoTracker
from partimento.core.types import ModelLike

log = logging.getLogger(__name__)

HARMONIZE, CONTINUE = "harmonize", "continue"
KIND_MODE = {"live-harmonizer": HARMONIZE, "continuation": CONTINUE}
"""The mode each kind of model serves (offline harmonizers serve none live)."""

CONTINUATION = "continuation"
"""The scheduler owner of continuation answers."""
HARMONY_VOICES = ("alto", "tenor", "bass")
HARMONY_OWNER = {v: f"harmony-{v}" for v in HARMONY_VOICES}

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
"""Discarded snapshots kept for :meth:`Engine.prepare` to free, at most."""
MIN_KEY_NOTES = 4
"""Melody notes in the context window before the key is estimated from it."""
GAP_STEP_DELAY = 0.4
"""In a gap between melody notes the next grid step is taken this fraction of a step late:
nothing sounds there, and a note played a little late (most are, by a few milliseconds) then
takes the step itself instead of waiting for the tick that stepped it and taking it over.
Less than half a step, so the step is the same one. A held note's harmony moves on time."""
TEMPO_ESTIMATE_WAIT = 0.05
"""Seconds a due onset tempo estimate (0.3 ms of numpy) waits for :meth:`Engine.prepare`,
which makes it in the daemon's worker thread, before a tick makes it itself. A tick holds the
service's lock: a chord's next note, arriving meanwhile, would wait for it."""
OBSERVE_WINDOW = 16
"""Steps of context rendered to feed the continuer its new steps (only the tail is fed)."""
MAX_PHRASE_STEPS = 512
"""The most of a phrase read again (or read for its key) when the key changes."""
ANSWER_LEAD = 0.05
"""Seconds at least between noticing a phrase's end and the answer's first step."""
PHRASE_POLL = 0.02
"""While a phrase is open and silent, :meth:`Engine.tick` is asked for this often (seconds)."""
STEPS_PER_BAR = 4 * STEPS_PER_QUARTER
_EPS = 1e-6  # grid positions this close below a step boundary count as on it

NOTE_OFF, NOTE_ON, CONTROL_CHANGE, PROGRAM_CHANGE = 0x80, 0x90, 0xB0, 0xC0
SUSTAIN_CC = 64
ALL_NOTES_OFF_CCS = (120, 123)
_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}


Player = LiveHarmonizer | Continuation
ContinuerKey = tuple[int, frozenset[int] | None]
"""A continuer's transposition into its model's key and its scale (None: no mask)."""


class EngineError(PartimentoError):
    """A model the engine cannot start with; the message is one line."""


def parse_message(message: Any) -> tuple[int, ...] | None:
    """A raw message as a tuple of ints if it is one complete MIDI message, else None.

    Channel messages need their exact number of data bytes, each 0-127; system real-time
    messages are one byte. Anything else (system exclusive, system common, running status,
    junk) gives None.
    """
    try:
        data = tuple(operator.index(b) for b in message)
    except TypeError:
        return None
    if not data or not 0x80 <= data[0] <= 0xFF:
        return None
    status = data[0]
    if status >= 0xF8:
        return data if len(data) == 1 else None
    if status >= 0xF0:
        return None
    if len(data) != 1 + _DATA_BYTES[status & 0xF0]:
        return None
    if any(not 0 <= b <= 127 for b in data[1:]):
        return None
    return data


def _nearest_step(pos: float) -> int:
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


@dataclass
class _Counters:
    messages_in: int = 0
    invalid: int = 0
    filtered: int = 0
    notes_in: int = 0
    notes_out: int = 0
    messages_out: int = 0
    harmony_steps: int = 0
    answered_ahead: int = 0  # harmony steps whose answer prepare() had made in advance
    skipped_steps: int = 0
    answers: int = 0
    interrupts: int = 0
    mode_switches: int = 0
    model_swaps: int = 0
    model_errors: int = 0


class Engine:
    """Partimento's behaviour, driven by :meth:`handle` and :meth:`tick`; see the module."""

    def __init__(self, config: Config, load_model: Callable[[str], ModelLike], *,
                 seed: int | None = None) -> None:
        self.config = config
        self._load_model = load_model
        self._seed = seed
        self._models: dict[str, ModelLike] = {}
        self.model_names = {HARMONIZE: config.harmonize.model, CONTINUE: config.continue_.model}
        self.temperature = config.sampling.temperature
        self.ledger = NoteLedger()
        self.scheduler = Scheduler(self.ledger)
        self.tempo = TempoTracker(config.tempo.bpm, tap_cc=config.tempo.tap_cc)
        self.phrase = PhraseDetector(config.continue_.end_silence, config.continue_.end_cc)
        self.context = ContextWindow(config.context_seconds)
        self.counters = _Counters()
        self._stopped = False
        self._tempo_estimate: tuple[int, float | None] | None = None  # made by prepare()
        self._last_now = 0.0
        ch = config.harmonize.channels
        self._voice_channel = {"alto": ch.alto, "tenor": ch.tenor, "bass": ch.bass}
        self._out_channels = sorted({ch.alto, ch.tenor, ch.bass, config.continue_.channel})
        self.mode = config.mode
        name = self.model_names[self.mode]
        try:
            model, player, ckey = self._prepare(name, self.mode)
        except Exception as exc:  # the loader is the caller's: any failure is reported alike
            raise EngineError(f"cannot start in {self.mode} mode with model {name!r}: "
                              f"{exc}") from exc
        self._install(self.mode, model, player, ckey)

    # -- public API -------------------------------------------------------------------------

    def handle(self, message: Sequence[int], now: float,
               send: Callable[[list[MidiOut]], object] | None = None) -> list[MidiOut]:
        """One raw input message that arrived at ``now``; the messages to send now, in order.

        With ``send``, a melody note's harmony is handed to ``send`` as soon as it is known,
        before the phrase detector, the context window and the tempo tracker take the note
        (nothing the harmony depends on: the nearest grid step is the same before and after
        the tracker pulls the grid towards the onset); the rest is returned. The messages
        are the same either way."""
        if self._stopped:
            return []
        self._last_now = now
        self.counters.messages_in += 1
        msg = parse_message(message)
        if msg is None:
            self.counters.invalid += 1
            return []
        status = msg[0]
        out: list[MidiOut] = []
        if status >= 0xF8:
            if self.config.tempo.follow_clock and self.tempo.realtime(status, now):
                self._follow_grid(now)
            return out
        kind, channel = status & 0xF0, status & 0x0F
        if kind == NOTE_ON and msg[2] > 0:
            out = self._note_on(channel, msg[1], msg[2], now, send)
        elif kind in (NOTE_ON, NOTE_OFF):
            out = self._note_off(channel, msg[1], now)
        elif kind == CONTROL_CHANGE:
            out = self._control_change(channel, msg[1], msg[2], now)
        elif kind == PROGRAM_CHANGE:
            out = self._program_change(channel, msg[1], now)
        return self._emit(out)

    def tick(self, now: float) -> list[MidiOut]:
        """What is due by ``now``: harmony steps, continuation input and answer notes."""
        if self._stopped:
            return []
        self._last_now = now
        out: list[MidiOut] = []
        if self.mode == HARMONIZE:
            out += self._harmony_tick(now)
        else:
            if self._observed is not None:
                pos = self._position(now)
                self._observe_until(math.floor(pos + _EPS) - 1, now, pos)
            if self.phrase.phrase_ended(now):
                self._answer(now)
        out += [m for _, m in self.scheduler.due(now)]
        estimate, self._tempo_estimate = self._tempo_estimate, None
        if estimate is not None:  # made by prepare() in the worker thread
            self.tempo.apply_estimate(estimate, now)
        self.tempo.refresh(now)  # the onset tempo estimate if still due, kept out of handle()
        return self._emit(out)

    def next_time(self) -> float | None:
        """When :meth:`tick` should be called next (monotonic seconds), None if not before
        the next input."""
        if self._stopped:
            return None
        now = self._last_now
        times = [self.scheduler.next_time()]
        if self._tempo_estimate is not None:
            times.append(now)
        elif self.tempo.estimate_due:  # prepare() may make it off the lock first
            times.append(now + TEMPO_ESTIMATE_WAIT)
        if self.mode == HARMONIZE:
            if self._last_step is not None and (self._melody is not None
                                                or self.phrase.playing(now)):
                due = self._step_time(self._last_step + 1, now)
                if self._melody is None:  # a gap: nothing sounds, a late note may still come
                    due += GAP_STEP_DELAY * self.tempo.step_seconds_now(now)
                times.append(due)
        elif self._observed is not None:
            times.append(self._step_time(self._observed + 2, now))
            if not self.phrase.sounding(now):
                times.append(now + PHRASE_POLL)
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def panic(self, now: float) -> list[MidiOut]:
        """Silence everything now: pending answers dropped, every sounding note released,
        sustain off and all-notes-off on every channel used or configured."""
        self._last_now = now
        return self._emit(self._release_all())

    def stop(self, now: float) -> list[MidiOut]:
        """:meth:`panic`, then ignore all input: the last messages the engine sends."""
        if self._stopped:
            return []
        out = self.panic(now)
        self._stopped = True
        return out

    def set_mode(self, mode: str, now: float) -> list[MidiOut]:
        """Switch mode (releasing everything first); nothing if already in it or the mode's
        model cannot be loaded."""
        if mode not in (HARMONIZE, CONTINUE):
            raise ValueError(f"mode must be {HARMONIZE!r} or {CONTINUE!r}, got {mode!r}")
        self._last_now = now
        return self._emit(self._set_mode(mode))

    def swap_model(self, name: str, now: float) -> list[MidiOut]:
        """Load model ``name`` and switch to the mode it serves (releasing everything first);
        nothing if it cannot be loaded or serves no live mode."""
        self._last_now = now
        return self._emit(self._swap_model(name))

    def set_temperature(self, temperature: float) -> None:
        """The sampling temperature of both modes, from the next step on."""
        settings = dataclasses.replace(self._harmonizer_settings(), temperature=temperature)
        self.temperature = settings.temperature
        if self._harmonizer is not None:
            self._harmonizer.settings = settings
        if self._continuer is not None:
            self._continuer.temperature = self.temperature

    def set_tempo(self, bpm: float, now: float) -> None:
        """The configured tempo (``tempo.bpm``) from now on; a tap or onset tempo is dropped,
        a live MIDI clock still leads."""
        self.tempo.set_bpm(bpm, now)
        self._last_now = now
        self.config = dataclasses.replace(
            self.config, tempo=dataclasses.replace(self.config.tempo, bpm=float(bpm)))

    def set_bars(self, bars: int) -> None:
        """How many bars the next continuation answers (``continue.bars``)."""
        self.config = dataclasses.replace(
            self.config, continue_=dataclasses.replace(self.config.continue_, bars=int(bars)))

    def load_model(self, name: str) -> None:
        """Load model ``name`` for a later :meth:`swap_model`, so the swap itself reads no file
        (safe in another thread: it only adds to the engine's models). Raises
        :class:`EngineError` when it cannot be loaded."""
        try:
            self._model(name)
        except Exception as exc:  # the loader is the caller's: any failure alike
            raise EngineError(f"cannot load model {name!r}: {exc}") from exc

    def preload(self) -> None:
        """Load both modes' models now rather than at the first switch; raises
        :class:`EngineError` when one cannot be loaded."""
        for mode, name in self.model_names.items():
            try:
                self._model(name)
            except Exception as exc:  # the loader is the caller's: any failure alike
                raise EngineError(f"cannot load the {mode} model {name!r}: {exc}") from exc

    def prepare(self) -> None:
        """Answer the next grid step in advance, for every melody note it could bring
        (:meth:`LiveHarmonizer.prepare <partimento.core.players.harmonizer.LiveHarmonizer.prepare>`), so
        that note is answered without running the model; first, after a new melody note, the
        key's mode is estimated again. For an idle moment, and safe in another thread than
        :meth:`handle` and :meth:`tick`: it reads the engine (the context window through a
        copy), writes only the harmonizer's mode (one attribute, read as a whole), and an
        answer for a state that has moved on is never used."""
        self._trash.clear()  # the garbage of the last steps, freed here rather than on a note
        if self._tempo_estimate is None and self.tempo.estimate_due:
            self._tempo_estimate = self.tempo.pending_estimate()  # tick() applies it
        h, last = self._harmonizer, self._last_step
        if self._stopped or self.mode != "harmonize" or h is None:
            return
        if self._key_dirty:  # before the answers: they are made for the harmonizer's mode
            self._key_dirty = False
            self._update_harmony_key(self._last_now)
        if last is None or (self._melody is None and not self.phrase.playing(self._last_now)):
            # before the first note or paused between phrases: the next note may fall on any
            # bar position, and it is stepped without catching up (see _melody_on), so answer
            # every position
            for position in range(STEPS_PER_BAR):
                h.prepare(position, 0)
        else:
            h.prepare((last + 1) % STEPS_PER_BAR, 0)

    def stats(self) -> dict[str, Any]:
        """Counters and state, for logs and telemetry."""
        now = self._last_now
        return {**dataclasses.asdict(self.counters),
                "mode": self.mode, "model": self.model_names[self.mode],
                "models": dict(self.model_names), "temperature": self.temperature,
                "bpm": round(self.tempo.bpm(now), 2), "tempo_source": self.tempo.source(now),
                "sounding": len(self.ledger), "pending": len(self.scheduler),
                "stopped": self._stopped,
                "harmony_mode": None if self._harmonizer is None else
                ("major" if self._harmonizer.mode == MAJOR else "minor")}

    # -- input ------------------------------------------------------------------------------

    def _melody_channel(self, channel: int) -> bool:
        wanted = self.config.midi.input_channel
        return wanted is None or channel == wanted

    def _control_channel(self, channel: int) -> bool:
        wanted = self.config.control.channel
        return wanted is None or channel == wanted

    def _note_on(self, channel: int, pitch: int, velocity: int, now: float,
                 send: Callable[[list[MidiOut]], object] | None = None) -> list[MidiOut]:
        if not self._melody_channel(channel):
            self.counters.filtered += 1
            return []
        self.counters.notes_in += 1
        was_playing = self.phrase.playing(now)
        if self.mode == HARMONIZE and send is not None:  # the harmony out first (see handle)
            send(self._emit(self._melody_on(channel, pitch, velocity, now, was_playing)))
            self._take_note(channel, pitch, velocity, now)
            return []
        self._take_note(channel, pitch, velocity, now)
        if self.mode == HARMONIZE:
            return self._melody_on(channel, pitch, velocity, now, was_playing)
        return self._phrase_note(velocity, now, was_playing)

    def _take_note(self, channel: int, pitch: int, velocity: int, now: float) -> None:
        """The player's note-on into the phrase detector, the context and the tempo."""
        self.phrase.note_on(pitch, velocity, now, channel)
        self.context.add_on(pitch, now, velocity)
        if self.config.tempo.estimate:
            self.tempo.onset(now)
        elif not self.tempo.anchored:
            self.tempo.set_anchor(now)

    def _note_off(self, channel: int, pitch: int, now: float) -> list[MidiOut]:
        if not self._melody_channel(channel):
            self.counters.filtered += 1
            return []
        self.phrase.note_off(pitch, now, channel)
        self.context.add_off(pitch, now)
        m = self._melody
        if self.mode == HARMONIZE and m is not None and (m.channel, m.pitch) == (channel, pitch):
            return self._melody_off()
        return []

    def _control_change(self, channel: int, control: int, value: int, now: float
                        ) -> list[MidiOut]:
        if control == SUSTAIN_CC or control in ALL_NOTES_OFF_CCS:
            if not self._melody_channel(channel):
                self.counters.filtered += 1
                return []
            self.phrase.control_change(control, value, now)
            if control in ALL_NOTES_OFF_CCS:
                self.context.close_all(now, "player")
                if self._melody is not None:
                    return self._melody_off()
            return []
        if not self._control_channel(channel):
            self.counters.filtered += 1
            return []
        ctl = self.config.control
        if control == ctl.mode_cc:
            return self._set_mode(HARMONIZE if value < 64 else CONTINUE)
        if control == ctl.temperature_cc:
            self.set_temperature(ctl.temperature_for(value))
            return []
        if self.tempo.control_change(control, value, now):
            return []
        if control == self.config.continue_.end_cc:
            self.phrase.control_change(control, value, now)
            if self.mode == CONTINUE and self.phrase.phrase_ended(now):
                self._answer(now)
        return []

    def _program_change(self, channel: int, program: int, now: float) -> list[MidiOut]:
        if not self._control_channel(channel):
            self.counters.filtered += 1
            return []
        name = self.config.control.model_for(program)
        return [] if name is None else self._swap_model(name)

    # -- harmonize --------------------------------------------------------------------------

    def _melody_on(self, channel: int, pitch: int, velocity: int, now: float,
                   was_playing: bool = True) -> list[MidiOut]:
        assert self._harmonizer is not None
        step = _nearest_step(self._position(now))
        m, last = self._melody, self._last_step
        chord_step = None
        if m is not None and now - m.on_time <= CHORD_SECONDS:
            if pitch <= m.pitch:
                return []  # a lower note of the chord: the player's own
            chord_step = m.step
        if chord_step is not None and self._rewind_to(chord_step):
            step = chord_step  # the chord's top note takes the chord's step
        elif (last is not None and step <= last and self._undo
              and self._undo[-1].kind == "fill" and self._rewind_to(last)):
            step = last  # a late note takes over the step just committed as a hold
        elif last is not None:
            step = max(step, last + 1)
            # a phrase after a pause starts where it falls, the pause not read (chorales go on
            # from a fermata without rests); within a phrase, missed steps are caught up
            self._catch_up(step - 1, MAX_CATCH_UP_IN_HANDLE if was_playing else 0,
                           count=False)
        self._melody = _Melody(channel, pitch, velocity, now, step)
        codes = self._step(pitch, step, "note")
        self._key_dirty = self.config.sampling.fixed_key is None
        return self._sound(codes)

    def _melody_off(self) -> list[MidiOut]:
        self._melody = None
        self._gap_from = self._last_step
        out: list[MidiOut] = []
        for v in HARMONY_VOICES:
            out += self._release_voice(v)
        return out

    def _harmony_tick(self, now: float) -> list[MidiOut]:
        if self._last_step is None:
            return []
        if self._melody is None and not self.phrase.playing(now):
            return []
        step = math.floor(self._position(now) + _EPS)
        if step <= self._last_step:
            return []
        codes = self._catch_up(step, MAX_CATCH_UP_IN_TICK)
        return self._sound(codes) if self._melody is not None and codes else []

    def _catch_up(self, until: int, limit: int, *, count: bool = True
                  ) -> tuple[int, int, int] | None:
        """Step the model with hold or rest up to step ``until``, at most ``limit`` steps (the
        older ones are skipped, and counted if ``count``); the last step's codes."""
        last = self._last_step
        if last is None or until <= last:
            return None
        if until - last > limit:
            if count:  # (a note after a pause skips the pause: no loss, not counted)
                self.counters.skipped_steps += until - last - limit
            last = until - limit
            self._last_step = last
        codes = None
        for j in range(last + 1, until + 1):
            codes = self._step(self._fill_code(j), j, "fill")
        return codes

    def _fill_code(self, step: int) -> int:
        """What the model reads of the melody at a step without an onset."""
        if self._melody is not None:
            return HOLD_CODE
        if self._gap_from is not None and step - self._gap_from <= GAP_HOLD_STEPS:
            return HOLD_CODE
        return REST_CODE

    def _step(self, soprano: int, step: int, kind: str) -> tuple[int, int, int]:
        h = self._harmonizer
        assert h is not None
        if len(self._undo) == UNDO_STEPS:  # the oldest is dropped: freed later, not here
            self._discard(self._undo[0])
        self._undo.append(_Undo(h.snapshot(), dict(self._model_voice), self._last_step, step,
                                kind))
        hits = h.prepared_hits
        codes = h.step(soprano, step % STEPS_PER_BAR, 0)
        self.counters.answered_ahead += h.prepared_hits - hits
        self._last_step = step
        for v, code in zip(HARMONY_VOICES, codes, strict=True):
            if code >= 0:
                self._model_voice[v] = code
            elif code == REST_CODE:
                self._model_voice[v] = None
        self.counters.harmony_steps += 1
        return codes

    def _discard(self, garbage: object) -> None:
        """Keep ``garbage`` for :meth:`prepare` to free. An old harmonizer snapshot holds the
        answer tables prepared for it (hundreds of small objects and arrays): freeing them
        inline cost a cold note-on about 0.1 ms before its harmony went out."""
        self._trash.append(garbage)
        if len(self._trash) > TRASH_LIMIT:  # nobody calls prepare(): free them here
            self._trash.clear()

    def _rewind_to(self, step: int) -> bool:
        """Take the harmonizer back to before ``step``, if it still can be."""
        if not any(u.step == step for u in self._undo):
            return False
        current = self._harmonizer
        assert current is not None
        while True:
            undo = self._undo.pop()
            self._discard(self._harmonizer)  # replaced: the current one, or one passed through
            undo.harmonizer.settings = current.settings  # a temperature or key set since
            undo.harmonizer.mode = current.mode
            self._harmonizer = undo.harmonizer
            self._model_voice = undo.model_voice
            self._last_step = undo.last_step
            if undo.step == step:
                return True

    def _sound(self, codes: tuple[int, int, int] | None) -> list[MidiOut]:
        """Make the sounding voices what the model has: release what changes, then strike."""
        m = self._melody
        if m is None or codes is None:
            return []
        velocity = self.config.harmonize.velocity or m.velocity
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
            out += self.ledger.note_on(self._voice_channel[v], pitch, velocity,
                                       owner=HARMONY_OWNER[v])
            self._sounding[v] = pitch
        return out

    def _release_voice(self, voice: str) -> list[MidiOut]:
        pitch = self._sounding[voice]
        if pitch is None:
            return []
        self._sounding[voice] = None
        return self.ledger.note_off(self._voice_channel[voice], pitch,
                                    owner=HARMONY_OWNER[voice])

    def _update_harmony_key(self, now: float) -> None:
        key = self._estimate_key(now)
        if key is not None and self._harmonizer is not None:
            self._harmonizer.mode = key[1]

    # -- continue ---------------------------------------------------------------------------

    def _phrase_note(self, velocity: int, now: float, was_playing: bool) -> list[MidiOut]:
        """A player note-on in continue mode: interrupt any answer; open a phrase."""
        dropped = self.scheduler.cancel(CONTINUATION)
        out = self.ledger.release_owner(CONTINUATION)
        if dropped or out:
            self.counters.interrupts += 1
        if not was_playing or self._observed is None:
            start = _nearest_step(self._position(now))
            self._observed = start - 1
            self._phrase_start = start
            self._held_rests = 0
            self._velocities = []
        self._velocities.append(velocity)
        return out

    def _observe_until(self, last: int, now: float, pos: float) -> None:
        """Feed the continuer the player's grid steps after ``_observed`` up to ``last``."""
        assert self._observed is not None and self._continuer is not None
        n = last - self._observed
        if n <= 0:
            return
        sps = self.tempo.seconds_per_step(now)
        end = now - (pos - (last + 1)) * sps  # the boundary where step ``last`` ends
        grid = self.context.to_grid(end, sps, max(OBSERVE_WINDOW, n + 1), source="player")
        self._feed(grid[-n:])
        self._observed = last

    def _feed(self, codes: np.ndarray) -> None:
        """Observe grid codes, holding trailing rests back until a note follows them."""
        assert self._continuer is not None
        sounding = np.flatnonzero(codes != REST_CODE)
        if not sounding.size:
            self._held_rests += len(codes)
            return
        last = int(sounding[-1])
        rests = np.full(self._held_rests, REST_CODE, np.int16)
        self._continuer.observe(np.concatenate([rests, codes[:last + 1]]))
        self._held_rests = len(codes) - last - 1

    def _answer(self, now: float) -> None:
        """The phrase has ended: generate ``continue.bars`` bars and schedule them."""
        if self._observed is None or self._continuer is None:
            return
        pos = self._position(now)
        k = math.floor(pos + _EPS)
        self._observe_until(k - 1, now, pos)
        sps = self.tempo.seconds_per_step(now)
        start = math.ceil(pos + ANSWER_LEAD / sps - _EPS)
        start = -(-start // STEPS_PER_QUARTER) * STEPS_PER_QUARTER  # on a beat
        rests = max(0, self._held_rests + start - 1 - self._observed)
        if rests > STEPS_PER_QUARTER:
            rests = (rests - 1) % STEPS_PER_QUARTER + 1  # the same place in the beat
        self._held_rests = 0

        phrase_steps = max(1, min(k - self._phrase_start, MAX_PHRASE_STEPS))
        phrase = self.context.to_grid(now - (pos - k) * sps, sps, phrase_steps, source="player")
        sounding = np.flatnonzero(phrase != REST_CODE)
        self._set_continuation_key(phrase[:int(sounding[-1]) + 1] if sounding.size else phrase)
        if rests:
            self._continuer.observe(np.full(rests, REST_CODE, np.int16))

        steps = self.config.continue_.bars * STEPS_PER_BAR
        answer = self._continuer.continue_notes(steps)
        cfg = self.config.continue_
        velocity = cfg.velocity or int(np.clip(round(float(np.mean(self._velocities))), 1, 127))
        notes = [TimedNote(n.pitch, n.start * sps, n.length * sps, cfg.channel, velocity)
                 for n in answer]
        at = now + (start - pos) * sps
        schedule_notes(self.scheduler, notes, at=at, owner=CONTINUATION)
        self._observed = None
        self.counters.answers += 1
        log.debug("answer of %d notes at step %d (%.3f s)", len(notes), start, at)

    def _set_continuation_key(self, phrase: np.ndarray) -> None:
        """Rebuild the continuer when the key (transposition or scale) changes; it then reads
        the phrase again."""
        assert self._continuer is not None
        sampling = self.config.sampling
        key = sampling.fixed_key
        if key is None:
            key = rules.estimate_key(phrase, final_weight=0.0) if (phrase >= 0).any() else None
        if key is None:
            return
        assert self._continuer_model is not None
        shift, scale = self._continuation_key(self._continuer_model.contract, key)
        if (shift, scale) == self._continuer_key:
            return
        self._continuer = self._new_continuer(self._continuer_model, shift, scale)
        self._continuer_key = (shift, scale)
        self._continuer.observe(phrase)

    def _continuation_key(self, contract: Contract, key: tuple[int, int]) -> ContinuerKey:
        """The continuer's transposition and scale (None: no mask) for the player's key."""
        shift = folk_transposition(*key) if continuation.trained_in_one_key(contract) else 0
        scale = None if self.config.sampling.key == "none" else rules.key_scale(*key)
        return shift, scale

    def _new_continuer(self, model: ModelLike, shift: int,
                       scale: frozenset[int] | None) -> Continuation:
        return continuation.make(model.contract, model.run, temperature=self.temperature,
                         top_p=self.config.sampling.top_p, seed=self._seed, shift=shift,
                         allowed_pitch_classes=scale)

    # -- shared -----------------------------------------------------------------------------

    def _position(self, now: float) -> float:
        step, frac = self.tempo.grid_position(now)
        return step + frac

    def _step_time(self, step: int, now: float) -> float:
        """When the grid reaches ``step`` at the current tempo (not before ``now``)."""
        sps = self.tempo.step_seconds_now(now)  # no onset estimate made here: see tick()
        return max(now, now + (step - self._position(now)) * sps)

    def _follow_grid(self, now: float) -> None:
        """When the grid jumps back (a clock start, or the first tick after a continue), the
        step counts follow it. Called only after a clock byte: notes faster than the grid run
        the harmonizer ahead of it (each note takes the next step), and that is no jump. (Found
        at 30 notes/s: a check on every tick took that for a jump, reset the steps and stepped
        twice without the answers prepared ahead.)"""
        step = math.floor(self._position(now) + _EPS)
        if self._last_step is not None and step < self._last_step - STEPS_PER_QUARTER:
            self._last_step = step - 1
            self._undo.clear()
        if self._observed is not None and step < self._observed:
            self._observed = step - 1
            self._phrase_start = min(self._phrase_start, step)

    def _estimate_key(self, now: float) -> tuple[int, int] | None:
        """From a copy of the context window: :meth:`prepare` calls this in a worker thread
        while :meth:`handle` may add notes."""
        sps = self.tempo.step_seconds_now(now)
        context = self.context.copy()
        context.prune(now)
        steps = max(1, min(512, math.ceil(self.config.context_seconds / sps)))
        grid = context.to_grid(now, sps, steps, source="player")
        if int((grid >= 0).sum()) < MIN_KEY_NOTES:
            return None
        return rules.estimate_key(grid, final_weight=0.0)

    def _harmonizer_settings(self):
        return dataclasses.replace(self.config.harmonizer_settings(),
                                   temperature=self.temperature)

    def _model(self, name: str) -> ModelLike:
        if name not in self._models:
            self._models[name] = self._load_model(name)
        return self._models[name]

    def _prepare(self, name: str, mode: str | None) -> tuple[ModelLike, Player, ContinuerKey]:
        """Load model ``name`` and build what plays it in ``mode`` (None: the mode its kind
        serves), with a continuer's transposition and scale; the running state is not
        touched. Raises whatever goes wrong."""
        model = self._model(name)
        kind = model.contract.kind
        serves = KIND_MODE.get(kind)
        if serves is None or (mode is not None and serves != mode):
            raise EngineError(f"model {model.contract.name!r} is a {kind}, which cannot serve "
                              f"{mode or 'a live'} mode")
        key = self.config.sampling.fixed_key
        if serves == HARMONIZE:
            return model, LiveHarmonizer(model.contract, model.run,
                                         settings=self._harmonizer_settings(),
                                         mode=key[1] if key else MAJOR, seed=self._seed,
                                         heads=getattr(model, "heads", None)), (0, None)
        shift, scale = self._continuation_key(model.contract, key) if key else (0, None)
        return model, self._new_continuer(model, shift, scale), (shift, scale)

    def _set_mode(self, mode: str) -> list[MidiOut]:
        if self._stopped or mode == self.mode:
            return []
        out = self._switch(self.model_names[mode], mode)
        if out is None:
            return []
        self.counters.mode_switches += 1
        log.info("mode %s (model %s)", mode, self.model_names[mode])
        return out

    def _swap_model(self, name: str) -> list[MidiOut]:
        if self._stopped:
            return []
        out = self._switch(name, None)
        if out is None:
            return []
        self.model_names[self.mode] = name
        self.counters.model_swaps += 1
        log.info("model %s loaded, mode %s", name, self.mode)
        return out

    def _switch(self, name: str, mode: str | None) -> list[MidiOut] | None:
        """Release everything and let model ``name`` play; None (logged and counted, nothing
        changed) when it cannot be loaded or cannot serve ``mode``."""
        try:
            model, player, ckey = self._prepare(name, mode)
        except Exception as exc:  # the loader is the caller's: any failure is logged alike
            self.counters.model_errors += 1
            log.warning("cannot use model %r: %s", name, exc)
            return None
        out = self._release_all()
        self._install(KIND_MODE[model.contract.kind], model, player, ckey)
        return out

    def _install(self, mode: str, model: ModelLike, player: Player, ckey: ContinuerKey
                 ) -> None:
        """Make ``player`` (built on ``model``) serve ``mode`` from a clean start."""
        self.mode = mode
        self._harmonizer: LiveHarmonizer | None = None
        self._continuer: Continuation | None = None
        self._continuer_model: ModelLike | None = None
        self._continuer_key: ContinuerKey = ckey
        self._melody: _Melody | None = None
        self._undo: deque[_Undo] = deque(maxlen=UNDO_STEPS)
        self._trash: list[object] = []  # see _discard
        self._last_step: int | None = None
        self._gap_from: int | None = None
        self._key_dirty = False
        self._model_voice: dict[str, int | None] = dict.fromkeys(HARMONY_VOICES)
        self._sounding: dict[str, int | None] = dict.fromkeys(HARMONY_VOICES)
        self._observed: int | None = None
        self._phrase_start = 0
        self._held_rests = 0
        self._velocities: list[int] = []
        self.phrase.reset()
        if isinstance(player, LiveHarmonizer):
            self._harmonizer = player
        else:
            self._continuer = player
            self._continuer_model = model

    def _release_all(self) -> list[MidiOut]:
        out = self.scheduler.stop(self._out_channels)
        self._sounding = dict.fromkeys(HARMONY_VOICES)
        self._melody = None
        return out

    def _emit(self, out: Iterable[MidiOut]) -> list[MidiOut]:
        out = list(out)
        self.counters.messages_out += len(out)
        self.counters.notes_out += sum(1 for m in out if is_note_on(m))
        return out
