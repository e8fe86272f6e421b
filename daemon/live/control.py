"""MQTT control messages read into commands, and the JSON the daemon publishes. Pure.

Control topics sit under the configured prefix ``P`` (``mqtt.topic_prefix``, e.g.
``partimento`` or ``partimento/stage``):

=====================  ==========================================  ==========================
topic                  payload                                     command
=====================  ==========================================  ==========================
``P/set/mode``         ``harmonize`` or ``continue`` (any case)    :class:`SetMode`
``P/set/style``        a model name: 1-64 of ``A-Z a-z 0-9 - _``   :class:`SetStyle`
``P/set/temperature``  a number from 0.05 to 5                     :class:`SetTemperature`
``P/set/tempo``        beats per minute, a number from 30 to 300   :class:`SetTempo`
``P/set/bars``         a whole number from 1 to 32                 :class:`SetBars`
``P/cmd/panic``        anything (ignored)                          :class:`Panic`
``P/cmd/reload``       anything (ignored)                          :class:`Reload`
=====================  ==========================================  ==========================

A payload is UTF-8 text of at most :data:`MAX_PAYLOAD` bytes, whitespace around it ignored.
The value may be written plain (``continue``, ``0.8``), as a JSON scalar (``"continue"``,
``0.8``) or as a JSON object with the one key ``value`` (``{"value": 0.8}``). A number may
also come as a JSON string (``"0.8"``); a whole number may be written ``4.0``. Whether a style
names a model that exists is not checked here: the engine checks it when it applies the command.

:func:`parse` never raises, whatever the bytes: it returns a command, or a
:class:`ControlError` (a plain value, not an exception) whose ``message`` is one line that
starts with the topic after the prefix, such as
``set/temperature: expected a number from 0.05 to 5, got "hot"``. A command delivered as a
*retained* message (one stored by the broker from before this connection) is refused for
``cmd/*``: a panic or reload happens when it is sent, not again at every reconnection.
Retained ``set/*`` messages are applied (a desired setting, kept by the broker).

The payload builders give compact JSON with sorted keys; a float that is not finite (a
percentile of no measurements is NaN) becomes ``null``, and anything JSON has no word for is
written as its ``str``. What they build, and what :mod:`partimento.live.mqtt` publishes:

``P/status`` (retained)
    ``status_payload``: the daemon's ``status()`` fields plus ``"online": true`` and
    ``"time"``; ``offline_payload``: exactly ``{"online":false,"reason":"stopped"}`` at a clean
    stop, or ``{"online":false,"reason":"connection lost"}`` as the broker's last will.
``P/metrics``
    ``metrics_payload``: the daemon's ``metrics()`` fields plus ``"time"``.
``P/error``
    ``error_payload``: ``{"error": "<one line>", "time": ..., "topic": "<the full topic>"}``.

``"time"`` is Unix time in seconds (three decimals), left out when not given.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from partimento.core.errors import PartimentoError

MAX_PAYLOAD = 1024
"""Bytes; a longer control payload is refused unread."""
MODES = ("harmonize", "continue")
TEMPERATURE_RANGE = (0.05, 5.0)
TEMPO_RANGE = (30.0, 300.0)
"""As ``tempo.bpm`` in the configuration allows."""
BARS_RANGE = (1, 32)
"""As ``continue.bars`` in the configuration allows."""
STYLE_MAX = 64
SUBSCRIPTIONS = ("set/+", "cmd/+")
"""The topic filters, under the prefix, that carry control messages."""
OFFLINE_STOPPED = "stopped"
OFFLINE_LOST = "connection lost"

_STYLE_RE = re.compile(r"[A-Za-z0-9_-]+")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SHOWN_MAX = 40


# --- commands -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetMode:
    topic: ClassVar[str] = "set/mode"
    mode: str


@dataclass(frozen=True)
class SetStyle:
    topic: ClassVar[str] = "set/style"
    name: str


@dataclass(frozen=True)
class SetTemperature:
    topic: ClassVar[str] = "set/temperature"
    value: float


@dataclass(frozen=True)
class SetTempo:
    topic: ClassVar[str] = "set/tempo"
    bpm: float


@dataclass(frozen=True)
class SetBars:
    topic: ClassVar[str] = "set/bars"
    bars: int


@dataclass(frozen=True)
class Panic:
    topic: ClassVar[str] = "cmd/panic"


@dataclass(frozen=True)
class Reload:
    topic: ClassVar[str] = "cmd/reload"


Command = SetMode | SetStyle | SetTemperature | SetTempo | SetBars | Panic | Reload
"""Every command; ``type(command).topic`` (or ``command.topic``) is its topic after the prefix."""


@dataclass(frozen=True)
class ControlError:
    """A control message that was refused: ``topic`` as received, ``message`` one line that
    starts with the topic after the prefix (the whole topic when it is not under it)."""

    topic: str
    message: str

    def __str__(self) -> str:
        return self.message


class _Refused(PartimentoError):
    """Inside this module only: why a value is refused (without the topic)."""


# --- reading values -----------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A received value for a message: JSON spelling, one line, shortened."""
    if isinstance(value, float) and not math.isfinite(value):
        text = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            text = type(value).__name__
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 1] + "…"


def _topic(topic: str) -> str:
    """A received topic for a message: one line, shortened."""
    text = json.dumps(topic, ensure_ascii=False)[1:-1]
    return text if len(text) <= 2 * _SHOWN_MAX else text[: 2 * _SHOWN_MAX - 1] + "…"


def _value(text: str) -> Any:
    """The value a payload carries: JSON if it is JSON, else the text itself."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if isinstance(value, dict):
        if set(value) != {"value"}:
            raise _Refused(f'expected a value or {{"value": ...}}, got {_show(value)}')
        return value["value"]
    return value


def _float(value: Any) -> float:
    """A number, or the text of one, as a float; NaN for anything else."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (numeric or (isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()))):
        return math.nan
    try:
        return float(value)
    except OverflowError:  # a whole number too large for a float
        return math.nan


def _number(value: Any, lo: float, hi: float) -> float:
    number = _float(value)
    if not lo <= number <= hi:
        raise _Refused(f"expected a number from {lo:g} to {hi:g}, got {_show(value)}")
    return number


def _whole(value: Any, lo: int, hi: int) -> int:
    number = _float(value)
    if not (lo <= number <= hi and number.is_integer()):
        raise _Refused(f"expected a whole number from {lo} to {hi}, got {_show(value)}")
    return int(number)


def _mode(value: Any, text: str) -> SetMode:
    mode = value.strip().lower() if isinstance(value, str) else None
    if mode not in MODES:
        raise _Refused(f'expected "{MODES[0]}" or "{MODES[1]}", got {_show(value)}')
    return SetMode(mode)


def _style(value: Any, text: str) -> SetStyle:
    if not isinstance(value, str) and _STYLE_RE.fullmatch(text):
        value = text  # a name JSON reads as something else: 12, true, null
    name = value.strip() if isinstance(value, str) else ""
    if not (_STYLE_RE.fullmatch(name) and len(name) <= STYLE_MAX):
        raise _Refused(
            f"expected a model name (1-{STYLE_MAX} letters, digits, - or _), got {_show(value)}"
        )
    return SetStyle(name)


_SETTERS: dict[str, Callable[[Any, str], Command]] = {
    SetMode.topic: _mode,
    SetStyle.topic: _style,
    SetTemperature.topic: lambda v, _: SetTemperature(_number(v, *TEMPERATURE_RANGE)),
    SetTempo.topic: lambda v, _: SetTempo(_number(v, *TEMPO_RANGE)),
    SetBars.topic: lambda v, _: SetBars(_whole(v, *BARS_RANGE)),
}
"""Per ``set/`` topic: the command from the payload's value and its (stripped) text."""
_ACTIONS: dict[str, Command] = {Panic.topic: Panic(), Reload.topic: Reload()}
TOPICS = (*_SETTERS, *_ACTIONS)
"""Every control topic after the prefix."""


# --- parsing ------------------------------------------------------------------------------------


def _command(suffix: str, payload: bytes, retained: bool) -> Command:
    if len(payload) > MAX_PAYLOAD:
        raise _Refused(f"payload too long ({len(payload)} bytes, at most {MAX_PAYLOAD})")
    if suffix in _ACTIONS:
        if retained:
            raise _Refused("a retained command is not acted on (publish it without retain)")
        return _ACTIONS[suffix]
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise _Refused("the payload is not UTF-8 text") from None
    return _SETTERS[suffix](_value(text), text)


def parse(
    prefix: str, topic: str, payload: bytes | bytearray | None, *, retained: bool = False
) -> Command | ControlError:
    """The command a control message carries, or why it is refused. Never raises.

    ``prefix`` is ``mqtt.topic_prefix``; ``retained``: the broker delivered a stored
    (retained) message.
    """
    head = prefix + "/"
    if not topic.startswith(head):
        return ControlError(topic, f"{_topic(topic)}: not a control topic (not under {head})")
    suffix = topic[len(head) :]
    if suffix not in TOPICS:
        return ControlError(topic, f"{_topic(suffix)}: unknown topic (known: {', '.join(TOPICS)})")
    try:
        return _command(suffix, bytes(payload or b""), retained)
    except _Refused as exc:
        return ControlError(topic, f"{suffix}: {exc}")
    except Exception as exc:  # not expected (the tests fuzz it), but never raised to the caller
        return ControlError(topic, f"{suffix}: cannot read the payload ({type(exc).__name__})")


# --- payloads -----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as None, tuples and sets as lists, keys as strings,
    anything else JSON cannot hold as its ``str``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return _jsonable(item())
        except Exception:
            pass
    return str(value)


def _dump(fields: Mapping[str, Any], now: float | None) -> bytes:
    data = dict(_jsonable(fields))
    if now is not None:
        data["time"] = round(now, 3)
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def status_payload(status: Mapping[str, Any], *, now: float | None = None) -> bytes:
    """The retained ``P/status`` message while connected: ``status`` plus ``"online": true``
    (and ``"time"`` when ``now``, Unix seconds, is given)."""
    return _dump({**status, "online": True}, now)


def offline_payload(reason: str) -> bytes:
    """The retained ``P/status`` message when the daemon is gone: ``{"online":false,
    "reason":...}`` (:data:`OFFLINE_STOPPED` or :data:`OFFLINE_LOST`, the last will)."""
    return _dump({"online": False, "reason": reason}, None)


def metrics_payload(metrics: Mapping[str, Any], *, now: float | None = None) -> bytes:
    """A ``P/metrics`` message: ``metrics`` (and ``"time"``)."""
    return _dump(metrics, now)


def error_payload(topic: str, message: str, *, now: float | None = None) -> bytes:
    """A ``P/error`` message: the full ``topic`` the refused message came on, and why."""
    return _dump({"topic": topic, "error": one_line(message)}, now)


def one_line(text: str) -> str:
    """``text`` with its line breaks as spaces (for logs and error messages)."""
    return " ".join(text.split()) if ("\n" in text or "\r" in text) else text
