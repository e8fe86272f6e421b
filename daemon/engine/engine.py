"""The daemon's brain: parsed MIDI in, raw MIDI out, with no I/O, no asyncio and no clock.

The real service, ``partimento demo``, the benches and the unit tests drive it alike (the last
three through :class:`~partimento.engine.driver.Driver`, on a virtual clock):

* :meth:`Engine.handle` takes one input message, parsed at the edge
  (:func:`partimento.core.midi.parse`: note on/off, control or program change, a system
  real-time byte), with the monotonic time it arrived, and returns what to send *now*;
* :meth:`Engine.settle` does the bookkeeping of the last note (the phrase detector, the
  context window, the tempo) that a harmonize reply does not wait for: the service calls it
  once the reply is sent; every other call does it first if nobody did;
* :meth:`Engine.tick` returns what has fallen due by ``now`` (harmony moving under a held
  melody note, the sixteenths of a continuation answer);
* :meth:`Engine.next_time` says when :meth:`Engine.tick` should be called next (None: only
  when input comes). It may lie in the past: then call :meth:`Engine.tick` at once;
* :meth:`Engine.prepare` answers ahead, in another thread if wanted (see the mode's own);
* :meth:`Engine.panic` and :meth:`Engine.stop` silence everything (:meth:`Engine.stop` for
  good: afterwards input is ignored and nothing is due);
* :meth:`Engine.set_mode`, :meth:`Engine.swap_model` and :meth:`Engine.set_temperature` do
  what the control messages do, for other controllers (MQTT); :meth:`Engine.stats` gives the
  counters (messages in, ``filtered``, notes in and out, harmony steps, ``skipped_steps``,
  answers, interrupts, switches, ``model_errors``) and the state.

What a melody note brings is the active mode's: :class:`~partimento.engine.harmonize.
HarmonizeMode` or :class:`~partimento.engine.answer.ContinueMode`, behind the small
:class:`~partimento.engine.modes.Mode` protocol; a mode switch or a model swap builds a new
one. Every outgoing note goes through one :class:`~partimento.core.timing.ledger.NoteLedger`
(the scheduler's, on the shared :class:`~partimento.engine.stage.Stage`), so every exit path
can release exactly what sounds; note-offs always go out on their own channel.

Input
-----
Melody notes (and the sustain pedal, and all-notes-off) are read from ``midi.input_channel``
(None: every channel); control and program changes, the tap CC and the phrase-end CC from
``control.channel``. Every accepted note-on feeds the tempo tracker (an onset; with
``tempo.estimate`` off it only anchors the grid), the phrase detector and the context window,
which hold the player's notes only. Clock, start, continue and stop bytes go to the tempo
tracker unless ``tempo.follow_clock`` is off; when the clock transport moves the grid back
(a start, the first tick after a continue), the mode's step counts follow it.

Control
-------
* ``control.mode_cc``: 0-63 harmonize, 64-127 continue. A switch releases everything first
  (note-offs, then sustain off and all-notes-off on every output channel).
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
from collections.abc import Callable, Iterable
from typing import Any

from partimento.config import Config
from partimento.core import midi
from partimento.core.errors import PartimentoError
from partimento.core.music.encoding import MAJOR
from partimento.core.players.harmonizer import LiveHarmonizer
from partimento.core.types import MidiOut, ModelLike
from partimento.engine.answer import ContinueMode
from partimento.engine.harmonize import HarmonizeMode
from partimento.engine.modes import CONTINUE, HARMONIZE, KIND_MODE, MODES, Mode
from partimento.engine.stage import Counters, Stage

log = logging.getLogger(__name__)

TEMPO_ESTIMATE_WAIT = 0.05
"""Seconds a due onset tempo estimate (0.3 ms of numpy) waits for :meth:`Engine.prepare`,
which makes it in the daemon's worker thread, before a tick makes it itself. A tick holds the
service's lock: a chord's next note, arriving meanwhile, would wait for it."""

LoadModel = Callable[[str], ModelLike]


class EngineError(PartimentoError):
    """A model the engine cannot start with; the message is one line."""


class Engine:
    """Partimento's behaviour, driven by :meth:`handle` and :meth:`tick`; see the module."""

    def __init__(self, config: Config, load_model: LoadModel, *, seed: int | None = None) -> None:
        self.stage = Stage(config, seed=seed)
        self._load_model = load_model
        self._models: dict[str, ModelLike] = {}
        self.model_names = {HARMONIZE: config.harmonize.model, CONTINUE: config.continue_.model}
        self._stopped = False
        self._tempo_estimate: tuple[int, float | None] | None = None  # made by prepare()
        self._last_now = 0.0
        self._pending: tuple[int, int, int, float] | None = None  # a note's bookkeeping
        name = self.model_names[config.mode]
        try:
            self.active: Mode = self._build(name, config.mode)
        except Exception as exc:  # the loader is the caller's: any failure is reported alike
            raise EngineError(
                f"cannot start in {config.mode} mode with model {name!r}: {exc}"
            ) from exc
        self.stage.phrase.reset()

    # -- state --------------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self.stage.config

    @property
    def mode(self) -> str:
        """The active mode's name, ``"harmonize"`` or ``"continue"``."""
        return self.active.name

    @property
    def temperature(self) -> float:
        return self.stage.temperature

    @property
    def counters(self) -> Counters:
        return self.stage.counters

    # -- input --------------------------------------------------------------------------------

    def handle(self, message: MidiOut, now: float) -> list[MidiOut]:
        """One input message (as :func:`partimento.core.midi.parse` returns them) that arrived
        at ``now``; the messages to send now, in order. A melody note's bookkeeping may be
        left for :meth:`settle` (the reply does not depend on it)."""
        if self._stopped:
            return []
        self.settle()
        self._last_now = now
        self.stage.counters.messages_in += 1
        status = message[0]
        if status >= midi.REALTIME:
            if self.config.tempo.follow_clock and self.stage.tempo.realtime(status, now):
                self._regrid(now)
            return []
        kind, channel = status & 0xF0, status & 0x0F
        out: list[MidiOut] = []
        if kind == midi.NOTE_ON and message[2] > 0:
            out = self._note_on(channel, message[1], message[2], now)
        elif kind in (midi.NOTE_ON, midi.NOTE_OFF):
            out = self._note_off(channel, message[1], now)
        elif kind == midi.CONTROL_CHANGE:
            out = self._control_change(channel, message[1], message[2], now)
        elif kind == midi.PROGRAM_CHANGE:
            out = self._program_change(channel, message[1])
        return self._emit(out)

    def settle(self) -> None:
        """The last melody note into the phrase detector, the context window and the tempo,
        if :meth:`handle` left it for after the reply."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._take_note(*pending)

    def tick(self, now: float) -> list[MidiOut]:
        """What is due by ``now``: harmony steps, continuation input and answer notes."""
        if self._stopped:
            return []
        self.settle()
        self._last_now = now
        out = self.active.tick(now)
        out += [m for _, m in self.stage.scheduler.due(now)]
        tempo = self.stage.tempo
        estimate, self._tempo_estimate = self._tempo_estimate, None
        if estimate is not None:  # made by prepare() in the worker thread
            tempo.apply_estimate(estimate, now)
        tempo.refresh(now)  # the onset tempo estimate if still due, kept out of handle()
        return self._emit(out)

    def next_time(self) -> float | None:
        """When :meth:`tick` should be called next (monotonic seconds), None if not before
        the next input."""
        if self._stopped:
            return None
        self.settle()
        now = self._last_now
        times = [self.stage.scheduler.next_time(), self.active.next_time(now)]
        if self._tempo_estimate is not None:
            times.append(now)
        elif self.stage.tempo.estimate_due:  # prepare() may make it off the lock first
            times.append(now + TEMPO_ESTIMATE_WAIT)
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def prepare(self) -> None:
        """Work ahead for an idle moment, safe in another thread than :meth:`handle` and
        :meth:`tick` (it never settles a note): the onset tempo estimate when one is due
        (:meth:`tick` applies it), then the active mode's :meth:`Mode.prepare`."""
        tempo = self.stage.tempo
        if self._tempo_estimate is None and tempo.estimate_due:
            self._tempo_estimate = tempo.pending_estimate()
        if self._stopped:
            return
        self.active.prepare(self._last_now)

    # -- control ------------------------------------------------------------------------------

    def panic(self, now: float) -> list[MidiOut]:
        """Silence everything now: pending answers dropped, every sounding note released,
        sustain off and all-notes-off on every channel used or configured."""
        self.settle()
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
        if mode not in MODES:
            raise ValueError(f"mode must be {HARMONIZE!r} or {CONTINUE!r}, got {mode!r}")
        self.settle()
        self._last_now = now
        return self._emit(self._set_mode(mode))

    def swap_model(self, name: str, now: float) -> list[MidiOut]:
        """Load model ``name`` and switch to the mode it serves (releasing everything first);
        nothing if it cannot be loaded or serves no live mode."""
        self.settle()
        self._last_now = now
        return self._emit(self._swap_model(name))

    def set_temperature(self, temperature: float) -> None:
        """The sampling temperature of both modes, from the next step on."""
        settings = dataclasses.replace(
            self.stage.harmonizer_settings(), temperature=temperature
        )  # checks it
        self.stage.temperature = settings.temperature
        self.active.set_temperature(settings.temperature)

    def set_tempo(self, bpm: float, now: float) -> None:
        """The configured tempo (``tempo.bpm``) from now on; a tap or onset tempo is dropped,
        a live MIDI clock still leads."""
        self.settle()
        self.stage.tempo.set_bpm(bpm, now)
        self._last_now = now
        self.stage.config = dataclasses.replace(
            self.config, tempo=dataclasses.replace(self.config.tempo, bpm=float(bpm))
        )

    def set_bars(self, bars: int) -> None:
        """How many bars the next continuation answers (``continue.bars``)."""
        self.stage.config = dataclasses.replace(
            self.config, continue_=dataclasses.replace(self.config.continue_, bars=int(bars))
        )

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

    def stats(self) -> dict[str, Any]:
        """Counters and state, for logs and telemetry."""
        now = self._last_now
        stage = self.stage
        return {
            **dataclasses.asdict(stage.counters),
            "mode": self.mode,
            "model": self.model_names[self.mode],
            "models": dict(self.model_names),
            "temperature": stage.temperature,
            "bpm": round(stage.tempo.bpm(now), 2),
            "tempo_source": stage.tempo.source(now),
            "sounding": len(stage.ledger),
            "pending": len(stage.scheduler),
            "stopped": self._stopped,
            **self.active.state(),
        }

    # -- the ways in --------------------------------------------------------------------------

    def _melody_channel(self, channel: int) -> bool:
        wanted = self.config.midi.input_channel
        return wanted is None or channel == wanted

    def _control_channel(self, channel: int) -> bool:
        wanted = self.config.control.channel
        return wanted is None or channel == wanted

    def _note_on(self, channel: int, pitch: int, velocity: int, now: float) -> list[MidiOut]:
        if not self._melody_channel(channel):
            self.stage.counters.filtered += 1
            return []
        self.stage.counters.notes_in += 1
        was_playing = self.stage.phrase.playing(now)
        if self.active.replies_first:  # the reply first, the bookkeeping in settle()
            out = self.active.note_on(channel, pitch, velocity, now, was_playing)
            self._pending = (channel, pitch, velocity, now)
            return out
        self._take_note(channel, pitch, velocity, now)
        return self.active.note_on(channel, pitch, velocity, now, was_playing)

    def _take_note(self, channel: int, pitch: int, velocity: int, now: float) -> None:
        """The player's note-on into the phrase detector, the context and the tempo."""
        stage = self.stage
        stage.phrase.note_on(pitch, velocity, now, channel)
        stage.context.add_on(pitch, now, velocity)
        if self.config.tempo.estimate:
            stage.tempo.onset(now)
        elif not stage.tempo.anchored:
            stage.tempo.set_anchor(now)

    def _note_off(self, channel: int, pitch: int, now: float) -> list[MidiOut]:
        if not self._melody_channel(channel):
            self.stage.counters.filtered += 1
            return []
        self.stage.phrase.note_off(pitch, now, channel)
        self.stage.context.add_off(pitch, now)
        return self.active.note_off(channel, pitch, now)

    def _control_change(self, channel: int, control: int, value: int, now: float) -> list[MidiOut]:
        stage = self.stage
        if control == midi.SUSTAIN_CC or control in midi.ALL_OFF_CCS:
            if not self._melody_channel(channel):
                stage.counters.filtered += 1
                return []
            stage.phrase.control_change(control, value, now)
            if control in midi.ALL_OFF_CCS:
                stage.context.close_all(now, "player")
                return self.active.note_off(channel, None, now)
            return []
        if not self._control_channel(channel):
            stage.counters.filtered += 1
            return []
        ctl = self.config.control
        if control == ctl.mode_cc:
            return self._set_mode(HARMONIZE if value < 64 else CONTINUE)
        if control == ctl.temperature_cc:
            self.set_temperature(ctl.temperature_for(value))
            return []
        if stage.tempo.control_change(control, value, now):
            return []
        if control == self.config.continue_.end_cc:
            stage.phrase.control_change(control, value, now)
            if self.mode == CONTINUE and stage.phrase.phrase_ended(now):
                return self.active.tick(now)  # the answer, scheduled
        return []

    def _program_change(self, channel: int, program: int) -> list[MidiOut]:
        if not self._control_channel(channel):
            self.stage.counters.filtered += 1
            return []
        name = self.config.control.model_for(program)
        return [] if name is None else self._swap_model(name)

    def _regrid(self, now: float) -> None:
        """When the grid jumps back (a clock start, or the first tick after a continue), the
        mode's step counts follow it. Called only after a clock byte: notes faster than the
        grid run the harmonizer ahead of it (each note takes the next step), and that is no
        jump. (Found at 30 notes/s: a check on every tick took that for a jump, reset the
        steps and stepped twice without the answers prepared ahead.)"""
        self.active.regrid(self.stage.current_step(now))

    # -- models and modes ---------------------------------------------------------------------

    def _model(self, name: str) -> ModelLike:
        if name not in self._models:
            self._models[name] = self._load_model(name)
        return self._models[name]

    def _build(self, name: str, mode: str | None) -> Mode:
        """Load model ``name`` and build the mode that plays it (``mode``, or None: the mode its
        kind serves); the running state is not touched. Raises whatever goes wrong."""
        model = self._model(name)
        kind = model.contract.kind
        serves = KIND_MODE.get(kind)
        if serves is None or (mode is not None and serves != mode):
            raise EngineError(
                f"model {model.contract.name!r} is a {kind}, which cannot serve "
                f"{mode or 'a live'} mode"
            )
        key = self.config.sampling.fixed_key
        if serves == HARMONIZE:
            harmonizer = LiveHarmonizer(
                model.contract,
                model.run,
                settings=self.stage.harmonizer_settings(),
                mode=key[1] if key else MAJOR,
                seed=self.stage.seed,
                heads=getattr(model, "heads", None),
            )
            return HarmonizeMode(self.stage, harmonizer)
        return ContinueMode(self.stage, model)

    def _set_mode(self, mode: str) -> list[MidiOut]:
        if self._stopped or mode == self.mode:
            return []
        out = self._switch(self.model_names[mode], mode)
        if out is None:
            return []
        self.stage.counters.mode_switches += 1
        log.info("mode %s (model %s)", mode, self.model_names[mode])
        return out

    def _swap_model(self, name: str) -> list[MidiOut]:
        if self._stopped:
            return []
        out = self._switch(name, None)
        if out is None:
            return []
        self.model_names[self.mode] = name
        self.stage.counters.model_swaps += 1
        log.info("model %s loaded, mode %s", name, self.mode)
        return out

    def _switch(self, name: str, mode: str | None) -> list[MidiOut] | None:
        """Release everything and let model ``name`` play in a new mode; None (logged and
        counted, nothing changed) when it cannot be loaded or cannot serve ``mode``."""
        try:
            new = self._build(name, mode)
        except Exception as exc:  # the loader is the caller's: any failure is logged alike
            self.stage.counters.model_errors += 1
            log.warning("cannot use model %r: %s", name, exc)
            return None
        out = self._release_all()
        self.active = new
        self.stage.phrase.reset()
        return out

    def _release_all(self) -> list[MidiOut]:
        out = self.stage.scheduler.stop(self.stage.out_channels)
        self.active.release()
        return out

    def _emit(self, out: Iterable[MidiOut]) -> list[MidiOut]:
        out = list(out)
        counters = self.stage.counters
        counters.messages_out += len(out)
        counters.notes_out += sum(1 for m in out if midi.is_note_on(m))
        return out
