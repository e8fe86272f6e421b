"""The engine as the service drives it, on a virtual clock: raw MIDI in with human timing,
ticks when it asks for them, everything it sends heard through a strict synthesizer; a phrase
to answer and what every continuation model must do with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partimento.config import (
    Config,
    ContinueConfig,
    ControlConfig,
    HarmonizeConfig,
    TempoConfig,
    VoiceChannels,
)
from partimento.engine.driver import Driver
from partimento.engine.engine import Engine

from support.synth import Synth

ALTO, TENOR, BASS, ANSWER = 1, 2, 3, 4
HARMONY = (ALTO, TENOR, BASS)
RANGES = {ALTO: (50, 77), TENOR: (45, 72), BASS: (33, 67)}  # bach's voice ranges, +- 3
MODE_CC, TEMPERATURE_CC = 20, 21


# -- a strict synthesizer and a driver ------------------------------------------------------


@dataclass
class Record:
    time: float
    given: tuple[int, ...] | None  # the input message, None for a tick
    out: list[tuple[int, ...]]
    sounding: frozenset[tuple[int, int]]


Events = list[tuple[float, tuple[int, ...]]]


def synth_on(record: Record, channel: int) -> set[int]:
    return {p for c, p in record.sounding if c == channel}


def drive(engine: Engine, events: Events, until: float, synth: Synth) -> list[Record]:
    """Feed ``events`` at their times and tick whenever the engine asks, up to ``until``."""
    records: list[Record] = []

    def each(t: float, given: tuple[int, ...] | None, out: list[tuple[int, ...]]) -> None:
        synth.play(out)
        records.append(Record(t, given, out, frozenset(synth.keys)))

    Driver(engine, prepare=False).play(events, until, each)
    return records


def note_ons(messages, channel: int | None = None) -> list[tuple[int, ...]]:
    return [
        m
        for m in messages
        if m[0] & 0xF0 == 0x90 and m[2] > 0 and (channel is None or m[0] & 0x0F == channel)
    ]


def human(
    notes, t0: float, bpm: float, rng: np.random.Generator, *, legato: float = 0.88
) -> Events:
    """(pitch, start step, length in steps) as a player plays them: onsets a little early or
    late, notes released a little before the next, velocities that vary."""
    sps = 60 / (bpm * 4)
    events: Events = []
    for pitch, start, length in notes:
        on = t0 + start * sps + float(rng.normal(0, 0.008))
        off = on + length * sps * float(rng.uniform(legato - 0.05, legato + 0.05))
        events += [(on, (0x90, pitch, int(rng.integers(55, 96)))), (off, (0x80, pitch, 40))]
    return events


def config(bach: Path, folk: Path | str = "folk", **kw) -> Config:
    return Config(
        **{
            "tempo": TempoConfig(bpm=96),
            "harmonize": HarmonizeConfig(
                model=str(bach), channels=VoiceChannels(ALTO, TENOR, BASS)
            ),
            "continue_": ContinueConfig(model=str(folk), bars=2, end_silence=1.0, channel=ANSWER),
            "control": ControlConfig(
                mode_cc=MODE_CC,
                temperature_cc=TEMPERATURE_CC,
                programs=((0, str(bach)), (1, str(folk))),
            ),
            **kw,
        }
    )


# -- continue -------------------------------------------------------------------------------

PHRASE = [
    (67, 0, 2),
    (69, 2, 2),
    (71, 4, 2),
    (72, 6, 2),
    (74, 8, 4),
    (71, 12, 4),
    (72, 16, 2),
    (71, 18, 2),
    (69, 20, 2),
    (67, 22, 2),
    (66, 24, 4),
    (67, 28, 8),
]


def play_phrase(engine: Engine, rng_seed: int = 1, *, more: Events = (), until: float = 9.0):
    events = human(PHRASE, 1.0, 100, np.random.default_rng(rng_seed)) + list(more)
    synth = Synth()
    records = drive(engine, events, until, synth)
    end = max(t for t, m in events if m[0] == 0x80 and t < 7)  # the phrase's last release
    return records, synth, end


def answer_a_phrase(bach: Path, continuation: Path | str, loader, *, seed: int = 0):
    """Continue mode with the ``continuation`` model: :data:`PHRASE` played, then silence.
    Asserts what every continuation model must do: one answer, on the answer channel, on the
    first beat after the silence, at most two bars long, every note-on with its note-off.
    Returns the engine, the answer's messages with their times, the phrase's end and a beat."""
    engine = Engine(config(bach, continuation, mode="continue"), loader, seed=seed)
    records, synth, end = play_phrase(engine, until=14.0)
    answer = [(r.time, m) for r in records for m in r.out]
    assert answer and all(m[0] & 0x0F == ANSWER for _, m in answer)
    first, last = answer[0][0], answer[-1][0]
    beat = 60 / engine.stats()["bpm"]
    assert end + 1.0 <= first <= end + 1.0 + beat + 0.1  # after the silence, on the next beat
    assert last - first <= 2 * 4 * beat + 0.01  # at most two bars at the tempo
    assert engine.stats()["answers"] == 1
    assert not synth.keys  # every note-on had its note-off
    return engine, answer, end, beat
