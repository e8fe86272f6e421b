"""The current tempo, and where ``now`` falls on the sixteenth grid.

:class:`TempoTracker` decides the tempo from, in order of precedence:

1. **clock**: MIDI beat clock (0xF8, 24 per quarter), smoothed by a least-squares fit over a
   window of ticks. It counts once ``clock_min_ticks`` have arrived and is lost
   ``clock_timeout`` seconds after the last tick. Start (0xFA), continue (0xFB) and stop (0xFC)
   move the transport, not the tempo: ticks that keep coming after a stop still set it.
2. **taps**: successive taps (``tap()`` or the configured ``tap_cc``) set the tempo from the
   median of their last few intervals; a tap more than ``tap_timeout`` seconds after the
   previous one starts a new series. A tap is a deliberate act, so a tap tempo overrides the
   onset estimate and stays until a clock takes over (the first tick after a loss) or the
   configured tempo is changed (:meth:`TempoTracker.set_bpm`); both discard it.
3. **onsets**: an estimate from the player's note onsets (:func:`estimate_onset_bpm`), once
   ``min_onsets`` have arrived. Feed the player's onsets only, never Partimento's own notes.
4. **config**: the configured tempo.

Every result is clamped to 30-300 BPM.

The grid position counts sixteenths from beat one: the first clock start, else the first onset
(or an explicit :meth:`TempoTracker.set_anchor`). While the clock transport runs, ticks pin it
(six ticks to a sixteenth; continue resumes the tick count where stop left it, since the song
position pointer is not read). Otherwise it runs freely at the current tempo, continuous across
tempo changes, and each onset pulls it halfway towards the nearest sixteenth so the grid
follows the player. The step index never goes backwards except at a start or continue.

Pure: timestamps are monotonic seconds passed in as floats; no clock is read here.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from partimento.core.music.encoding import STEPS_PER_QUARTER

MIN_BPM = 30.0
MAX_BPM = 300.0
CLOCKS_PER_QUARTER = 24
TICKS_PER_STEP = CLOCKS_PER_QUARTER // STEPS_PER_QUARTER  # 6

CLOCK, START, CONTINUE, STOP = 0xF8, 0xFA, 0xFB, 0xFC

SOURCES = ("clock", "taps", "onsets", "config")

_CHORD_SECONDS = 0.05
"""Onsets closer than this to the previous one are one onset (a chord, a rolled chord)."""
_TAP_DEBOUNCE = 0.1
"""Taps closer than this to the previous one are a bouncing switch, not a tap."""
_UNIT_WEIGHTS = np.array([0.0, 1.0, 1.0, 0.5, 0.6])
"""How likely an inter-onset interval is 0-4 eighths long (8th, quarter, dotted quarter, half)."""

_MISFIT = 0.5
"""What an interval that fits no eighth multiple costs a tempo, against 1 for a good fit."""


def clamp_bpm(bpm: float) -> float:
    return float(min(MAX_BPM, max(MIN_BPM, bpm)))


def estimate_onset_bpm(
    onsets: Sequence[float] | np.ndarray,
    *,
    low: float = 60.0,
    high: float = 180.0,
    prior_bpm: float = 100.0,
    sigma: float = 0.03,
) -> float | None:
    """The tempo of a run of onsets that fall on eighths and quarters, or None if unclear.

    Every tempo from ``low`` to ``high`` (in half-BPM steps) is scored by how well each
    inter-onset interval fits 1-4 of its eighths (Gaussian, ``sigma`` seconds; an interval
    within reach that fits none counts against it; longer gaps are rests and count for
    nothing); a log-normal prior one octave wide around ``prior_bpm`` settles the octave
    question (quarters at 140 are eighths at 70). That question has no answer in the notes
    alone: sixteenths at 70 read as eighths at 140, and a fast tune with few eighths may read
    at half speed; taps are the player's remedy. The winner is refined by a
    least-squares fit of onset times against their grid positions, run by run, so the jitter
    of a human hand averages out instead of adding up. None unless at least four intervals
    and 60 % of those in range fit the winning tempo.
    """
    t = np.sort(np.asarray(onsets, np.float64))
    iois = np.diff(t)
    if iois.size < 4:
        return None
    bpms = np.arange(low, high + 0.25, 0.5)
    units = 30.0 / bpms  # seconds per eighth
    ratio = iois[:, None] / units[None, :]
    k = np.rint(ratio).astype(int)
    valid = (k >= 1) & (k <= 4)
    err = iois[:, None] - k * units[None, :]
    gauss = np.exp(-0.5 * (err / sigma) ** 2)
    in_reach = (ratio >= 0.5) & (ratio <= 4.5)
    # An interval within reach that fits no multiple of the eighth speaks against the tempo.
    fit = np.where(valid, _UNIT_WEIGHTS[np.clip(k, 0, 4)] * gauss, 0.0) - _MISFIT * np.where(
        in_reach, 1.0 - gauss, 0.0
    )
    prior = np.exp(-0.5 * np.log2(bpms / prior_bpm) ** 2)  # one octave wide
    best = int(np.argmax(fit.sum(axis=0) * prior))
    unit = units[best]

    kb, eb = k[:, best], np.abs(err[:, best])
    in_range = (iois >= 0.5 * unit) & (iois <= 4.5 * unit)
    good = valid[:, best] & (eb < 0.3 * unit)
    if good.sum() < 4 or good.sum() < 0.6 * max(1, in_range.sum()):
        return None
    # Runs of well-fitting intervals: onset time against grid position, one intercept a run.
    sxy = sxx = 0.0
    i = 0
    while i < iois.size:
        if not good[i]:
            i += 1
            continue
        j = i
        while j < iois.size and good[j]:
            j += 1
        x = np.concatenate([[0], np.cumsum(kb[i:j])]).astype(np.float64)
        y = t[i : j + 1]
        x -= x.mean()
        sxy += float(x @ (y - y.mean()))
        sxx += float(x @ x)
        i = j
    if sxx <= 0 or sxy <= 0:
        return None
    return 30.0 / (sxy / sxx)


class TempoTracker:
    """Tempo from clock, taps, onsets or configuration; see the module docstring."""

    def __init__(
        self,
        bpm: float = 100.0,
        *,
        tap_cc: int | None = None,
        clock_window: int = 24,
        clock_min_ticks: int = 6,
        clock_timeout: float = 0.5,
        tap_timeout: float = 2.0,
        tap_window: int = 4,
        min_onsets: int = 8,
        onset_window: int = 32,
        onset_range: tuple[float, float] = (60.0, 180.0),
        phase_correction: float = 0.5,
    ) -> None:
        if not clock_window >= clock_min_ticks >= 2:
            raise ValueError("need clock_window >= clock_min_ticks >= 2")
        if clock_timeout <= 0 or tap_timeout <= 0:
            raise ValueError("clock_timeout and tap_timeout must be positive")
        if tap_window < 1 or not onset_window >= min_onsets >= 5:
            raise ValueError("need tap_window >= 1 and onset_window >= min_onsets >= 5")
        if not 0 < onset_range[0] < onset_range[1]:
            raise ValueError(f"onset_range {onset_range} is not a range of tempos")
        if not 0 <= phase_correction <= 1:
            raise ValueError("phase_correction must be 0-1")
        if tap_cc is not None and not 0 <= tap_cc <= 127:
            raise ValueError(f"tap_cc must be 0-127, got {tap_cc}")
        self.tap_cc = tap_cc
        self.clock_min_ticks = clock_min_ticks
        self.clock_timeout = clock_timeout
        self.tap_timeout = tap_timeout
        self.tap_window = tap_window
        self.min_onsets = min_onsets
        self.onset_range = onset_range
        self.phase_correction = phase_correction
        self._config_bpm = self._check_bpm(bpm)
        self._ticks: deque[float] = deque(maxlen=clock_window)
        self._clock_bpm: float | None = None
        self._running = False
        self._song_ticks = 0  # ticks counted while the transport runs, since the last start
        self._taps: deque[float] = deque(maxlen=tap_window + 1)
        self._tap_bpm: float | None = None
        self._onsets: deque[float] = deque(maxlen=onset_window)
        self._onset_count = 0  # onsets ever taken: names the onsets an estimate was made from
        self._onset_bpm: float | None = None
        self._estimate_due = False
        # The grid: position _anchor_step at _anchor_time, moving at _anchor_sps from there.
        self._anchor_time: float | None = None
        self._anchor_step = 0.0
        self._anchor_sps = self._sps(self._config_bpm)
        self._anchor_clock = False  # the anchor's speed came from the clock
        self._pinned = False  # the anchor is a clock tick of a running transport

    # -- events -----------------------------------------------------------------------------

    def clock(self, now: float) -> None:
        """A timing clock tick (0xF8)."""
        self._sync(now)
        if not self._ticks or now - self._ticks[-1] > self.clock_timeout:
            self._ticks.clear()  # a clock takes over: a tap tempo from before is stale
            self._clock_bpm = None
            self._tap_bpm = None
            self._taps.clear()
        self._ticks.append(now)
        if len(self._ticks) >= self.clock_min_ticks:
            y = np.fromiter(self._ticks, np.float64, len(self._ticks))
            x = np.arange(y.size, dtype=np.float64) - (y.size - 1) / 2
            interval = float(x @ (y - y.mean()) / (x @ x))
            if interval > 0:
                self._clock_bpm = 60.0 / (CLOCKS_PER_QUARTER * interval)
        if self._running:
            self._song_ticks += 1
            self._anchor_time = now
            self._anchor_step = (self._song_ticks - 1) / TICKS_PER_STEP
            self._anchor_sps = self.seconds_per_step(now)
            self._anchor_clock = self._clock_live(now)
            self._pinned = True
        else:
            self._rebase(now)

    def start(self, now: float) -> None:
        """Start (0xFA): beat one is the next tick (and ``now`` until it comes)."""
        self._sync(now)
        self._running = True
        self._song_ticks = 0
        self._anchor_time = now
        self._anchor_step = 0.0
        self._anchor_sps = self.seconds_per_step(now)
        self._anchor_clock = self._clock_live(now)
        self._pinned = False

    def resume(self, now: float) -> None:
        """Continue (0xFB): ticks count on from where stop left them."""
        self._sync(now)
        self._rebase(now)
        self._running = True

    def stop(self, now: float) -> None:
        """Stop (0xFC): the grid runs on freely; ticks that keep coming still set the tempo."""
        self._sync(now)
        self._rebase(now)
        self._running = False

    def realtime(self, status: int, now: float) -> bool:
        """Dispatch a system real-time byte; True if it was one of clock/start/continue/stop."""
        handler = {
            CLOCK: self.clock,
            START: self.start,
            CONTINUE: self.resume,
            STOP: self.stop,
        }.get(status)
        if handler is None:
            return False
        handler(now)
        return True

    def onset(self, now: float) -> None:
        """A note-on by the player (Partimento's own notes must not be fed here)."""
        self._sync(now)
        if self._onsets and now - self._onsets[-1] < _CHORD_SECONDS:
            return
        pos = self._pos(now)
        self._onsets.append(now)
        self._onset_count += 1
        # the estimate (about 0.3 ms) is made later, by refresh() or the next tempo query, so
        # a note-on is answered first
        self._estimate_due = len(self._onsets) >= self.min_onsets
        if self._anchor_time is None:
            self.set_anchor(now)
            return
        if not self._pinned:
            # Pull the grid towards the onset; rounding to the nearest step keeps the index
            # from going backwards.
            pos += self.phase_correction * (round(pos) - pos)
        self._rebase(now, pos)

    def tap(self, now: float) -> None:
        """A tap: two or more in a row set the tempo."""
        self._sync(now)
        if self._taps and now - self._taps[-1] < _TAP_DEBOUNCE:
            return
        if self._taps and now - self._taps[-1] > self.tap_timeout:
            self._taps.clear()
        self._taps.append(now)
        if len(self._taps) >= 2:
            intervals = np.diff(np.fromiter(self._taps, np.float64, len(self._taps)))
            self._tap_bpm = 60.0 / float(np.median(intervals))
        self._rebase(now)

    def control_change(self, control: int, value: int, now: float) -> bool:
        """A control change: a tap if it is ``tap_cc`` with value >= 64. True if consumed."""
        if self.tap_cc is None or control != self.tap_cc:
            return False
        if value >= 64:
            self.tap(now)
        return True

    def set_bpm(self, bpm: float, now: float) -> None:
        """Change the configured tempo; it discards the tap tempo and the onset estimate."""
        self._sync(now)
        self._config_bpm = self._check_bpm(bpm)
        self._tap_bpm = None
        self._taps.clear()
        self._onset_bpm = None
        self._onsets.clear()
        self._estimate_due = False
        self._rebase(now)

    def set_anchor(self, now: float) -> None:
        """Make ``now`` beat one of the grid."""
        self._sync(now)
        self._anchor_time = now
        self._anchor_step = 0.0
        self._anchor_sps = self.seconds_per_step(now)
        self._anchor_clock = self._clock_live(now)
        self._pinned = False

    # -- queries ----------------------------------------------------------------------------

    def source(self, now: float) -> str:
        """Where the tempo comes from: "clock", "taps", "onsets" or "config"."""
        if self._estimate_due:
            self.refresh(now)
        if self._clock_live(now):
            return "clock"
        if self._tap_bpm is not None:
            return "taps"
        if self._onset_bpm is not None:
            return "onsets"
        return "config"

    def refresh(self, now: float) -> None:
        """Estimate the tempo from the onsets, if new ones came since the last estimate.

        :meth:`onset` leaves this for an idle moment (the daemon calls it on its next tick);
        :meth:`bpm` does it itself when it is still due. The grid stays continuous at ``now``.
        """
        estimate = self.pending_estimate()
        if estimate is not None:
            self.apply_estimate(estimate, now)

    def pending_estimate(self) -> tuple[int, float | None] | None:
        """The onset estimate :meth:`refresh` would make, computed from a copy of the onsets
        without changing anything (so another thread may compute it while events come in),
        for :meth:`apply_estimate`; None when no estimate is due."""
        if not self._estimate_due:
            return None
        onsets = list(self._onsets)  # one call: a whole copy even while onsets are added
        return self._onset_count, estimate_onset_bpm(
            onsets, low=self.onset_range[0], high=self.onset_range[1], prior_bpm=self._config_bpm
        )

    def apply_estimate(self, estimate: tuple[int, float | None], now: float) -> bool:
        """Take an estimate from :meth:`pending_estimate` as :meth:`refresh` would have made
        it; False (nothing changed) when onsets came after it was made."""
        count, est = estimate
        if not self._estimate_due or count != self._onset_count:
            return False
        self._estimate_due = False
        if est is not None and est != self._onset_bpm:
            self._sync(now)
            self._onset_bpm = est
            self._rebase(now)
        return True

    def bpm(self, now: float) -> float:
        if self._estimate_due:
            self.refresh(now)
        return self._bpm_now(now)

    def _bpm_now(self, now: float) -> float:
        """The tempo as it stands, without reading new onsets."""
        if self._clock_live(now):
            return clamp_bpm(self._clock_bpm)  # type: ignore[arg-type]
        return self._fallback_bpm()

    def seconds_per_step(self, now: float) -> float:
        """Seconds per sixteenth at the current tempo."""
        return self._sps(self.bpm(now))

    def step_seconds_now(self, now: float) -> float:
        """Seconds per sixteenth at the tempo as it stands, without reading new onsets: it
        changes nothing, so another thread may ask while events come in."""
        return self._sps(self._bpm_now(now))

    @property
    def estimate_due(self) -> bool:
        """Whether onsets came that :meth:`refresh` has not read yet."""
        return self._estimate_due

    @property
    def anchored(self) -> bool:
        """Whether beat one is known (a clock start, an onset or :meth:`set_anchor`)."""
        return self._anchor_time is not None

    @property
    def running(self) -> bool:
        """Whether the clock transport runs (between start or continue and stop)."""
        return self._running

    def grid_position(self, now: float) -> tuple[int, float]:
        """(sixteenths since beat one, fraction 0-1 of the current one); (0, 0.0) unanchored."""
        self._sync(now)
        pos = self._pos(now)
        step = math.floor(pos)
        return step, pos - step

    # -- internals --------------------------------------------------------------------------

    @staticmethod
    def _check_bpm(bpm: float) -> float:
        if not (isinstance(bpm, (int, float)) and math.isfinite(bpm) and bpm > 0):
            raise ValueError(f"bpm must be a positive number, got {bpm!r}")
        return clamp_bpm(bpm)

    @staticmethod
    def _sps(bpm: float) -> float:
        return 60.0 / (bpm * STEPS_PER_QUARTER)

    def _clock_live(self, now: float) -> bool:
        return (
            self._clock_bpm is not None
            and bool(self._ticks)
            and now - self._ticks[-1] <= self.clock_timeout
        )

    def _fallback_bpm(self) -> float:
        for bpm in (self._tap_bpm, self._onset_bpm):
            if bpm is not None:
                return clamp_bpm(bpm)
        return self._config_bpm

    def _pos(self, now: float) -> float:
        if self._anchor_time is None:
            return 0.0
        pos = self._anchor_step + max(0.0, now - self._anchor_time) / self._anchor_sps
        if self._pinned:  # never run past the next tick before it comes
            pos = min(pos, self._anchor_step + 1 / TICKS_PER_STEP)
        return pos

    def _rebase(self, now: float, pos: float | None = None) -> None:
        """Keep the grid continuous at ``now`` while the tempo may change."""
        if self._anchor_time is None:
            return
        self._anchor_step = self._pos(now) if pos is None else pos
        self._anchor_time = now
        self._anchor_sps = self._sps(self._bpm_now(now))
        self._anchor_clock = self._clock_live(now)
        self._pinned = False

    def _sync(self, now: float) -> None:
        """If the clock was lost since the anchor, move the grid to the fallback tempo there."""
        if not self._anchor_clock or self._clock_live(now) or not self._ticks:
            return
        lost = self._ticks[-1] + self.clock_timeout
        self._running = False
        if self._anchor_time is not None and lost > self._anchor_time:
            self._anchor_step = self._pos(lost)
            self._anchor_time = lost
        self._anchor_sps = self._sps(self._fallback_bpm())
        self._anchor_clock = False
        self._pinned = False
