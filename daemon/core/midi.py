"""The one MIDI table: status bytes, their names and lengths, the controllers Partimento reads,
and the pure functions that parse, check and build raw messages from it.

A message is a tuple of ints, status byte first (:data:`~partimento.core.types.MidiOut`).
:func:`parse` is the one parse of input, made at the edge (the MIDI reader thread, the
virtual-clock driver): whatever it returns is a whole, valid message, and nothing after it
checks again. :func:`note_on`, :func:`note_off` and :func:`control` build outgoing messages
from checked values; :func:`release` is the panic: sustain off and all notes off per channel.

Pure: no I/O, no ports (those are :mod:`partimento.live.midi_io`'s).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from partimento.core.errors import PartimentoError
from partimento.core.types import MidiOut

# --- status bytes -----------------------------------------------------------------------------

NOTE_OFF = 0x80
NOTE_ON = 0x90
POLY_PRESSURE = 0xA0
CONTROL_CHANGE = 0xB0
PROGRAM_CHANGE = 0xC0
CHANNEL_PRESSURE = 0xD0
PITCH_BEND = 0xE0
SYSEX = 0xF0
SYSEX_END = 0xF7
CLOCK = 0xF8
START = 0xFA
CONTINUE = 0xFB
STOP = 0xFC
ACTIVE_SENSING = 0xFE
RESET = 0xFF
REALTIME = 0xF8
"""Status bytes from here up are system real-time: one byte, anywhere in the stream."""


@dataclass(frozen=True)
class Spec:
    """One kind of message: its status byte (the high nibble for channel messages), name and
    length in bytes, status included (None: system exclusive, as long as it runs)."""

    status: int
    name: str
    length: int | None


SPECS: tuple[Spec, ...] = (
    Spec(NOTE_OFF, "note_off", 3),
    Spec(NOTE_ON, "note_on", 3),
    Spec(POLY_PRESSURE, "polytouch", 3),
    Spec(CONTROL_CHANGE, "control_change", 3),
    Spec(PROGRAM_CHANGE, "program_change", 2),
    Spec(CHANNEL_PRESSURE, "aftertouch", 2),
    Spec(PITCH_BEND, "pitchwheel", 3),
    Spec(SYSEX, "sysex", None),
    Spec(0xF1, "quarter_frame", 2),
    Spec(0xF2, "songpos", 3),
    Spec(0xF3, "song_select", 2),
    Spec(0xF6, "tune_request", 1),
    Spec(CLOCK, "clock", 1),
    Spec(START, "start", 1),
    Spec(CONTINUE, "continue", 1),
    Spec(STOP, "stop", 1),
    Spec(ACTIVE_SENSING, "active_sensing", 1),
    Spec(RESET, "reset", 1),
)
"""Every message kind MIDI 1.0 defines; the tables below are read off it."""

BY_STATUS: dict[int, Spec] = {s.status: s for s in SPECS}
CHANNEL_LENGTH: dict[int, int] = {
    s.status: s.length for s in SPECS if s.status < SYSEX and s.length is not None
}
"""Bytes in each channel message, by its status's high nibble."""
TRANSPORT = frozenset({CLOCK, START, CONTINUE, STOP})
"""The real-time messages Partimento reads: the beat clock and its transport, for the tempo."""

# --- controllers and values -------------------------------------------------------------------

SUSTAIN_CC = 64
"""Controller 64, the sustain pedal (value 0: pedal up)."""
ALL_SOUND_OFF_CC = 120
ALL_NOTES_OFF_CC = 123
ALL_OFF_CCS = (ALL_SOUND_OFF_CC, ALL_NOTES_OFF_CC)
"""Either, from the player, ends every note of the channel."""
RELEASE_VELOCITY = 64
"""Note-off velocity sent with every note-off (the MIDI default when none is known)."""


class MessageError(PartimentoError, ValueError):
    """A channel, pitch, velocity or raw message outside MIDI's ranges."""


# --- reading ----------------------------------------------------------------------------------


def kind(message: Sequence[int]) -> int:
    """The status of a system message, the high nibble of a channel message's."""
    status = message[0]
    return status if status >= SYSEX else status & 0xF0


def channel(message: Sequence[int]) -> int:
    return message[0] & 0x0F


def name(message: Sequence[int]) -> str:
    spec = BY_STATUS.get(kind(message)) if message else None
    return spec.name if spec is not None else "unknown"


def is_note_on(message: Sequence[int]) -> bool:
    """A note-on with a velocity above 0 (a note-on at velocity 0 is a note-off)."""
    return len(message) == 3 and message[0] & 0xF0 == NOTE_ON and message[2] > 0


def is_note_off(message: Sequence[int]) -> bool:
    """A note-off, or a note-on at velocity 0."""
    return len(message) == 3 and (
        message[0] & 0xF0 == NOTE_OFF or (message[0] & 0xF0 == NOTE_ON and message[2] == 0)
    )


def is_realtime(message: Sequence[int]) -> bool:
    return len(message) == 1 and message[0] >= REALTIME


def parse(data: object) -> MidiOut | None:
    """Raw bytes as one whole message Partimento reads, or None.

    Kept: channel messages with their exact number of data bytes, each 0-127 (a note-on at
    velocity 0 becomes a note-off at :data:`RELEASE_VELOCITY` on its channel), and system
    real-time bytes alone. Dropped: system exclusive and common messages, running status,
    anything not made of ints 0-255.
    """
    try:
        msg = tuple(operator.index(b) for b in data)  # type: ignore[attr-defined]
    except TypeError:
        return None
    if not msg or not 0x80 <= msg[0] <= 0xFF:
        return None
    status = msg[0]
    if status >= REALTIME:
        return msg if len(msg) == 1 else None
    if status >= SYSEX:
        return None
    if len(msg) != CHANNEL_LENGTH[status & 0xF0] or any(not 0 <= b <= 127 for b in msg[1:]):
        return None
    if status & 0xF0 == NOTE_ON and msg[2] == 0:
        return (NOTE_OFF | (status & 0x0F), msg[1], RELEASE_VELOCITY)
    return msg


def is_sendable(message: Sequence[int]) -> bool:
    """Whether ``message`` is one whole MIDI message of any kind (sysex included)."""
    if not message or not all(isinstance(b, int) and 0 <= b <= 0xFF for b in message):
        return False
    status = message[0]
    if status == SYSEX:
        return (
            len(message) >= 2 and message[-1] == SYSEX_END and all(b < 0x80 for b in message[1:-1])
        )
    spec = BY_STATUS.get(kind(message)) if status >= 0x80 else None
    return spec is not None and spec.length == len(message) and all(b < 0x80 for b in message[1:])


# --- checking and building --------------------------------------------------------------------


def _midi_int(value: object, what: str, low: int, high: int) -> int:
    try:
        v = operator.index(value)  # type: ignore[arg-type]  # int or numpy integer
    except TypeError:
        v = None
    if v is None or isinstance(value, bool) or not low <= v <= high:
        raise MessageError(f"{what} must be an integer {low}-{high}, got {value!r}")
    return v


def check_channel(channel: int) -> int:
    return _midi_int(channel, "MIDI channel", 0, 15)


def check_pitch(pitch: int) -> int:
    return _midi_int(pitch, "MIDI pitch", 0, 127)


def check_velocity(velocity: int) -> int:
    return _midi_int(velocity, "note-on velocity", 1, 127)


def check_message(message: Sequence[int]) -> MidiOut:
    """A channel message with the right number of data bytes, each 0-127; raises
    :class:`MessageError` naming what is wrong."""
    if not message:
        raise MessageError("empty MIDI message")
    status = _midi_int(message[0], "MIDI channel-message status byte", 0x80, 0xEF)
    expected = CHANNEL_LENGTH[status & 0xF0] - 1
    if len(message) != 1 + expected:
        raise MessageError(f"MIDI message {tuple(message)!r} needs {expected} data byte(s)")
    return (status, *(_midi_int(b, "MIDI data byte", 0, 127) for b in message[1:]))


def note_on(channel: int, pitch: int, velocity: int) -> MidiOut:
    return (NOTE_ON | check_channel(channel), check_pitch(pitch), check_velocity(velocity))


def note_off(channel: int, pitch: int) -> MidiOut:
    return (NOTE_OFF | check_channel(channel), check_pitch(pitch), RELEASE_VELOCITY)


def control(channel: int, controller: int, value: int) -> MidiOut:
    return check_message((CONTROL_CHANGE | check_channel(channel), controller, value))


def program(channel: int, number: int) -> MidiOut:
    return check_message((PROGRAM_CHANGE | check_channel(channel), number))


def release(channels: Iterable[int]) -> Iterator[MidiOut]:
    """The panic for ``channels``: sustain off, then all notes off, on each (in order)."""
    for ch in sorted(set(channels)):
        yield control(ch, SUSTAIN_CC, 0)
        yield control(ch, ALL_NOTES_OFF_CC, 0)
