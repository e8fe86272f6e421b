"""When the player's phrase ends, and what was played recently.

:class:`PhraseDetector` watches the player's keys and sustain pedal. A phrase starts with a
note-on and ends, once, when nothing has sounded for ``silence_seconds``, or at once when the
configured end CC arrives with value >= 64 (a footswitch; ignored when no phrase is open).

Pedal rule: a key released while the sustain pedal (CC 64 >= 64) is down goes on sounding, so
the phrase cannot end while the pedal sustains it; the silence is counted from the pedal's
release. Struck strings decay and some players rest a foot on the pedal, so a sustained note
stops counting ``max_pedal_seconds`` after its key came up (None: never). Pressing the pedal
after the keys came up sustains nothing.

:class:`ContextWindow` keeps the recent notes, the player's and Partimento's, and renders them
as the monophonic sixteenth grid the continuation model reads.

Both accept note-ons with velocity 0 as note-offs, and raw ``(status, data1, data2)`` bytes
through ``message``. Pure: timestamps are monotonic seconds passed in as floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from partimento.core.midi import ALL_OFF_CCS, CONTROL_CHANGE, NOTE_OFF, NOTE_ON, SUSTAIN_CC
from partimento.core.music.encoding import HOLD_CODE, REST_CODE

SOURCES = ("player", "partimento")


def _check_pitch(pitch: int) -> int:
    if not 0 <= pitch <= 127:
        raise ValueError(f"pitch {pitch} is outside MIDI 0-127")
    return int(pitch)


class PhraseDetector:
    """Tells when the player's phrase has ended; see the module docstring for the rules."""

    def __init__(
        self,
        silence_seconds: float,
        end_cc: int | None = None,
        *,
        max_pedal_seconds: float | None = 8.0,
    ) -> None:
        if not silence_seconds > 0:
            raise ValueError(f"silence_seconds must be positive, got {silence_seconds!r}")
        if end_cc is not None and not 0 <= end_cc <= 127:
            raise ValueError(f"end_cc must be 0-127, got {end_cc}")
        if end_cc == SUSTAIN_CC:
            raise ValueError("end_cc cannot be the sustain pedal (64)")
        if max_pedal_seconds is not None and max_pedal_seconds < 0:
            raise ValueError("max_pedal_seconds must be 0 or more")
        self.silence_seconds = float(silence_seconds)
        self.end_cc = end_cc
        self.max_pedal_seconds = max_pedal_seconds
        self.reset()

    def reset(self) -> None:
        """Forget keys, pedal and any open phrase."""
        self._keys: set[tuple[int, int]] = set()  # (channel, pitch) held down
        self._sustained: dict[tuple[int, int], float] = {}  # released under the pedal: when
        self._pedal = False
        self._quiet_since: float | None = None  # when the last sound stopped
        self._open = False  # a phrase has started and not yet ended
        self._end_requested = False

    # -- events -----------------------------------------------------------------------------

    def note_on(self, pitch: int, velocity: int, now: float, channel: int = 0) -> None:
        if velocity == 0:
            self.note_off(pitch, now, channel)
            return
        key = (channel, _check_pitch(pitch))
        self._sustained.pop(key, None)
        self._keys.add(key)
        self._quiet_since = None
        self._open = True
        self._end_requested = False

    def note_off(self, pitch: int, now: float, channel: int = 0) -> None:
        key = (channel, _check_pitch(pitch))
        if key not in self._keys:
            return
        self._keys.discard(key)
        if self._pedal:
            self._sustained[key] = now
        elif not self._keys and not self._sustained:
            self._quiet_since = now

    def control_change(self, control: int, value: int, now: float) -> None:
        if control == SUSTAIN_CC:
            self.pedal(value >= 64, now)
        elif control == self.end_cc:
            if value >= 64 and self._open:
                self._end_requested = True
        elif control in ALL_OFF_CCS:
            had_sound = bool(self._keys or self._sustained)
            self._keys.clear()
            self._sustained.clear()
            if had_sound:
                self._quiet_since = now

    def pedal(self, down: bool, now: float) -> None:
        if down == self._pedal:
            return
        self._pedal = down
        if down or not self._sustained:
            return
        stopped = now
        if self.max_pedal_seconds is not None:
            stopped = min(now, max(self._sustained.values()) + self.max_pedal_seconds)
        self._sustained.clear()
        if not self._keys:
            self._quiet_since = stopped

    def message(self, status: int, data1: int, data2: int, now: float) -> None:
        """A raw channel message; anything but note on/off and control change is ignored."""
        kind, channel = status & 0xF0, status & 0x0F
        if kind == NOTE_ON:
            self.note_on(data1, data2, now, channel)
        elif kind == NOTE_OFF:
            self.note_off(data1, now, channel)
        elif kind == CONTROL_CHANGE:
            self.control_change(data1, data2, now)

    # -- queries ----------------------------------------------------------------------------

    def phrase_ended(self, now: float) -> bool:
        """True once per phrase, at the first call after it ended."""
        if not self._open:
            return False
        if self._end_requested or self._silent_for(now) >= self.silence_seconds:
            self._open = False
            self._end_requested = False
            return True
        return False

    def playing(self, now: float) -> bool:
        """Whether a phrase is open: from its first note-on until it has ended."""
        return (
            self._open and not self._end_requested and self._silent_for(now) < self.silence_seconds
        )

    def sounding(self, now: float) -> bool:
        """Whether a key is down or the pedal sustains a note."""
        return bool(self._keys) or self._pedal_holds(now)

    @property
    def pedal_down(self) -> bool:
        return self._pedal

    def _pedal_holds(self, now: float) -> bool:
        if not self._sustained:
            return False
        if self.max_pedal_seconds is None:
            return True
        return now < max(self._sustained.values()) + self.max_pedal_seconds

    def _silent_for(self, now: float) -> float:
        """Seconds since the last sound stopped; -inf while something sounds."""
        if self._keys:
            return -np.inf
        if self._sustained:
            if self._pedal_holds(now):
                return -np.inf
            return now - (max(self._sustained.values()) + self.max_pedal_seconds)  # type: ignore[operator]
        if self._quiet_since is None:
            return -np.inf if self._open else np.inf
        return now - self._quiet_since


@dataclass(frozen=True)
class ContextNote:
    """A note as played: monotonic seconds; ``off_time`` is None while it sounds."""

    pitch: int
    on_time: float
    off_time: float | None
    velocity: int
    source: str

    def __post_init__(self) -> None:
        _check_pitch(self.pitch)
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.off_time is not None and self.off_time < self.on_time:
            raise ValueError(f"note {self.pitch} ends at {self.off_time} before it starts")


class ContextWindow:
    """A rolling record of recent notes, ``seconds`` long or ``steps`` sixteenths long.

    A note is dropped once it ended more than the window's length ago; a note still sounding
    is kept however long ago it began. In ``steps`` mode :meth:`prune` and :meth:`notes` need
    the current ``seconds_per_step``.
    """

    def __init__(
        self, seconds: float | None = None, *, steps: int | None = None, max_notes: int = 1024
    ) -> None:
        if (seconds is None) == (steps is None):
            raise ValueError("give the window's length as seconds or as steps, not both")
        if seconds is not None and not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds!r}")
        if steps is not None and not steps > 0:
            raise ValueError(f"steps must be positive, got {steps!r}")
        if max_notes < 1:
            raise ValueError("max_notes must be 1 or more")
        self.seconds = seconds
        self.steps = steps
        self.max_notes = max_notes
        self._notes: list[ContextNote] = []
        self._open: dict[tuple[int, str], ContextNote] = {}  # sounding notes, for add_off

    def length_seconds(self, seconds_per_step: float | None = None) -> float:
        if self.seconds is not None:
            return self.seconds
        if seconds_per_step is None:
            raise ValueError("a window measured in steps needs seconds_per_step")
        return self.steps * seconds_per_step  # type: ignore[operator]

    # -- events -----------------------------------------------------------------------------

    def add_on(self, pitch: int, now: float, velocity: int = 64, source: str = "player") -> None:
        """A note starts; a note-on with velocity 0 is a note-off. Re-striking a sounding
        pitch of the same source ends the note before."""
        if velocity == 0:
            self.add_off(pitch, now, source)
            return
        self.add_off(pitch, now, source)
        note = ContextNote(_check_pitch(pitch), now, None, int(velocity), source)
        self._notes.append(note)
        self._open[(note.pitch, source)] = note
        if len(self._notes) > self.max_notes:
            del self._notes[: len(self._notes) - self.max_notes]

    def add_off(self, pitch: int, now: float, source: str = "player") -> None:
        n = self._open.pop((pitch, source), None)
        if n is None:
            return  # not sounding: the common case of a note-on costs no search
        for i in range(len(self._notes) - 1, -1, -1):  # a recent note: found near the end
            if self._notes[i] is n:
                self._notes[i] = ContextNote(
                    n.pitch, n.on_time, max(now, n.on_time), n.velocity, n.source
                )
                return

    def close_all(self, now: float, source: str | None = None) -> None:
        """End every sounding note (of one source), as on a stop or all-notes-off."""
        for i, n in enumerate(self._notes):
            if n.off_time is None and (source is None or n.source == source):
                self._notes[i] = ContextNote(
                    n.pitch, n.on_time, max(now, n.on_time), n.velocity, n.source
                )
                self._open.pop((n.pitch, n.source), None)

    def message(
        self, status: int, data1: int, data2: int, now: float, source: str = "player"
    ) -> None:
        """A raw note on/off (anything else is ignored)."""
        kind = status & 0xF0
        if kind == NOTE_ON:
            self.add_on(data1, now, data2, source)
        elif kind == NOTE_OFF:
            self.add_off(data1, now, source)

    def clear(self) -> None:
        self._notes.clear()
        self._open.clear()

    def copy(self) -> ContextWindow:
        """The same notes in a new window, which changes apart from this one. Each container
        is copied in one call, so a copy taken in another thread while notes are added is
        whole."""
        window = ContextWindow(self.seconds, steps=self.steps, max_notes=self.max_notes)
        window._notes = list(self._notes)
        window._open = dict(self._open)
        return window

    # -- queries ----------------------------------------------------------------------------

    def prune(self, now: float, seconds_per_step: float | None = None) -> None:
        """Drop the notes that ended more than the window's length before ``now``."""
        horizon = now - self.length_seconds(seconds_per_step)
        self._notes = [n for n in self._notes if n.off_time is None or n.off_time >= horizon]

    def notes(
        self, now: float, seconds_per_step: float | None = None, source: str | None = None
    ) -> list[ContextNote]:
        """The notes in the window, oldest onset first (of one source, or all)."""
        self.prune(now, seconds_per_step)
        return sorted(
            (n for n in self._notes if source is None or n.source == source),
            key=lambda n: n.on_time,
        )

    def to_grid(
        self,
        now: float,
        seconds_per_step: float,
        steps: int,
        source: str | None = None,
        *,
        origin: float | None = None,
    ) -> np.ndarray:
        """The last ``steps`` sixteenths as a monophonic grid (``int16`` grid codes).

        Per step the highest sounding note: its pitch where it starts (or where it becomes the
        highest), ``HOLD_CODE`` while it goes on, ``REST_CODE`` where nothing sounds. Onsets and
        releases are rounded to the nearest step; a note lasts at least one step; a note that
        ends less than 3/4 of a step after a later note begins (legato) is cut where that one
        starts. A note begun before the grid and still sounding at its first step shows its
        pitch there. The grid ends at ``now``, or with ``origin`` (a time on a step boundary,
        such as beat one) at the step boundary nearest ``now``, so it lies on the beat.
        Notes are not pruned here: ``steps`` may reach further back than the window.
        """
        if not seconds_per_step > 0:
            raise ValueError(f"seconds_per_step must be positive, got {seconds_per_step!r}")
        if steps < 1:
            raise ValueError(f"steps must be 1 or more, got {steps}")
        if source is not None and source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES} or None, got {source!r}")
        sps = float(seconds_per_step)
        end = now
        if origin is not None:
            end = origin + round((now - origin) / sps) * sps
        t0 = end - steps * sps
        chosen = sorted(
            (n for n in self._notes if (source is None or n.source == source) and n.on_time <= end),
            key=lambda n: n.on_time,
        )
        grid = np.full(steps, REST_CODE, np.int16)
        if not chosen:
            return grid
        on = np.fromiter((n.on_time for n in chosen), np.float64, len(chosen))
        off = np.fromiter(
            (np.nan if n.off_time is None else n.off_time for n in chosen), np.float64, len(chosen)
        )
        pitch = np.fromiter((n.pitch for n in chosen), np.int64, len(chosen))
        ended = ~np.isnan(off)
        start = np.rint((on - t0) / sps).astype(np.int64)
        stop = np.where(ended, np.rint((np.nan_to_num(off) - t0) / sps), steps).astype(np.int64)
        # legato: the first later onset within 3/4 step before a note's end cuts it there
        j = np.searchsorted(on, np.maximum(on, off - 0.75 * sps), side="right")
        cut = ended & (j < len(on))
        cut[cut] &= on[j[cut]] < off[cut]
        stop[cut] = np.minimum(stop[cut], np.rint((on[j[cut]] - t0) / sps).astype(np.int64))
        stop = np.maximum(stop, start + 1)
        keep = (stop > 0) & (start < steps)
        if not keep.any():
            return grid
        a, b = np.maximum(start[keep], 0), np.minimum(stop[keep], steps)
        pitch, start = pitch[keep], start[keep]
        # per step the highest note, the later start winning among equal pitches, the earlier
        # note among equal both: the largest key (pitch, start, -index), packed in an int64
        index = np.arange(len(a), dtype=np.int64)
        key = (
            (pitch << 40)
            | (np.clip(start + (1 << 29), 0, (1 << 30) - 1) << 10)
            | (1023 - np.minimum(index, 1023))
        )
        lengths = b - a
        rows = np.repeat(index, lengths)
        at = a[rows] + np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        top = np.full(steps, -1, np.int64)
        np.maximum.at(top, at, key[rows])
        sounding = top >= 0
        grid[sounding] = (top[sounding] >> 40).astype(np.int16)
        held = sounding.copy()
        held[0] = False
        held[1:] &= top[1:] == top[:-1]  # the same note as the step before: held
        grid[held] = HOLD_CODE
        return grid
