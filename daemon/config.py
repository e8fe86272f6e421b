"""The daemon's configuration: one TOML file read into frozen dataclasses, checked once at load.

One dataclass per table of the file (``[midi]``, ``[tempo]``, ``[sampling]``, ``[harmonize]``,
``[continue]``, ``[control]``, ``[mqtt]``) and :class:`Config` for the whole, whose own fields
are the file's top-level keys. Every key has a default, so an empty file is a valid
configuration; ``config/partimento.toml`` lists them all with what they mean.

File terms and the dataclasses' terms differ in three places, all converted by the loader:

* MIDI channels are 1-16 in the file, as musicians and synthesizer displays count, and 0-15 in
  the dataclasses, as mido counts. Program numbers likewise: 1-128 in the file, 0-127 inside.
  CC numbers are 0-119 in both (120-127 are channel mode messages) and never 64, the
  sustain pedal.
* The words ``"all"``, ``"none"`` and ``"melody"`` (and an empty path) are ``None`` inside.
* Paths are :class:`~pathlib.Path`; :func:`load` expands ``~`` and reads a relative path from
  the config file's folder, :func:`from_dict` leaves them as written.

Every dataclass checks itself on construction (so ``dataclasses.replace`` at run time, when a
CC changes the temperature, is checked too). A bad value raises :class:`ConfigError` whose
message is one line that starts with the dotted key and speaks file terms: a channel held as
16 is reported as 17. Unknown keys are errors, with the nearest known key suggested.

Pure: no I/O but reading the file in :func:`load` (and the password, when the daemon asks
:meth:`MqttConfig.resolve_password`); no MIDI library.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TypeVar

from partimento.core.errors import PartimentoError
from partimento.core.midi import SUSTAIN_CC
from partimento.core.music.encoding import MAJOR, MINOR
from partimento.core.players.harmonizer import HarmonizerSettings

MODES = ("harmonize", "continue")
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
RTMIDI_APIS = {
    "alsa": "LINUX_ALSA",
    "jack": "UNIX_JACK",
    "coremidi": "MACOSX_CORE",
    "winmm": "WINDOWS_MM",
}
"""The ``midi.api`` words and python-rtmidi's names for them (``auto``: rtmidi chooses)."""
MATCHES = ("substring", "regex")
"""Never a control: the player's pedal (the phrase detector reads it to hold notes)."""
MAX_TEMPERATURE = 10.0
"""As :func:`partimento.core.players.sampling.check_temperature` allows."""

_KEY_RE = re.compile(r"([A-Ga-g])([#b♯♭]?)\s+(major|minor)", re.IGNORECASE)
_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


class ConfigError(PartimentoError, ValueError):
    """A configuration value that is not allowed; the one-line message starts with the key."""


# --- checks, in file terms ----------------------------------------------------------------------


def _show(value: Any) -> str:
    """A value as the TOML file spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value)


def _fail(key: str, what: str, value: Any, hint: str = "") -> NoReturn:
    raise ConfigError(f"{key}: must be {what}, got {_show(value)}{hint}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _one_of(choices: Iterable[str]) -> str:
    shown = [_show(c) for c in choices]
    return f"{shown[0]} or {shown[1]}" if len(shown) == 2 else "one of " + ", ".join(shown)


def _nearest(word: str, known: Iterable[str]) -> str | None:
    """The known word closest to ``word``, case aside; None if none is close."""
    lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)
    return lower[close[0]] if close else None


def _check_bool(key: str, v: Any) -> None:
    if not isinstance(v, bool):
        _fail(key, "true or false", v)


def _check_str(key: str, v: Any, *, empty: bool = True) -> None:
    if not isinstance(v, str):
        _fail(key, "a string", v)
    if not empty and not v.strip():
        raise ConfigError(f"{key}: must not be empty")


def _check_choice(key: str, v: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if v not in choices:
        near = _nearest(v, choices) if isinstance(v, str) else None
        _fail(key, _one_of(choices), v, f" (did you mean {_show(near)}?)" if near else "")


def _check_int(
    key: str,
    v: Any,
    lo: int,
    hi: int,
    what: str = "a whole number",
    *,
    offset: int = 0,
    word: str | None = None,
) -> None:
    """``lo``..``hi`` in file terms; the value is held ``offset`` lower; ``word`` is None."""
    if word is not None and v is None:
        return
    if not (_is_int(v) and lo <= v + offset <= hi):
        alt = f" or {_show(word)}" if word is not None else ""
        _fail(key, f"{what} {lo}-{hi}{alt}", v + offset if _is_int(v) else v)


def _check_number(key: str, v: Any, lo: float, hi: float, *, above: bool = False) -> None:
    """A number in ``[lo, hi]``, or ``(lo, hi]`` when ``above``."""
    ok = _is_number(v) and (lo < v if above else lo <= v) and v <= hi
    if not ok:
        span = f"above {lo:g} and at most {hi:g}" if above else f"from {lo:g} to {hi:g}"
        _fail(key, f"a number {span}", v)


def _check_channel(key: str, v: Any, *, word: str | None = None) -> None:
    _check_int(key, v, 1, 16, "a MIDI channel", offset=1, word=word)


def _check_cc(key: str, v: Any) -> None:
    _check_int(key, v, 0, 119, "a CC number", word="none")
    if v == SUSTAIN_CC:
        raise ConfigError(f"{key}: CC {SUSTAIN_CC} is the sustain pedal, choose another")


def _check_velocity(key: str, v: Any) -> None:
    _check_int(key, v, 1, 127, "a velocity", word="melody")


def _check_path(key: str, v: Any) -> None:
    if v is not None and not isinstance(v, Path):
        _fail(key, "a path", v)


def _check_type(key: str, v: Any, cls: type) -> None:
    if not isinstance(v, cls):
        _fail(key, f"a table ({cls.__name__})", v)


def parse_key(text: str) -> tuple[int, int]:
    """``"F# minor"`` → ``(6, MINOR)``: the tonic's pitch class and the mode."""
    m = _KEY_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a key: {text!r}")
    letter, accidental, mode = m.groups()
    shift = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1}[accidental]
    return (_PITCH_CLASS[letter.upper()] + shift) % 12, MINOR if mode.lower() == "minor" else MAJOR


class _Section:
    """A table of the file; ``SECTION`` is its dotted name, which starts every message.

    A table checks itself in ``_check``; then a whole number given for a float field becomes
    a float (after the check, so a message shows the value as written).
    """

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self._check()
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.type == "float" and _is_int(value):
                object.__setattr__(self, f.name, float(value))

    def _check(self) -> None:
        raise NotImplementedError

    def _key(self, name: str) -> str:
        return f"{self.SECTION}.{name}" if self.SECTION else name


# --- the tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MidiConfig(_Section):
    """``[midi]``: which ports are opened, and which channel the melody is read from."""

    SECTION: ClassVar[str] = "midi"

    api: str = "auto"
    """``auto`` | ``alsa`` | ``jack`` | ``coremidi`` | ``winmm``: python-rtmidi's backend."""
    match: str = "substring"
    """How ``input``/``output`` pick a port: a case-insensitive substring, or a regex
    (Python ``re.search``, case-sensitive unless it says ``(?i)``)."""
    input: str = ""
    """The port the keyboard plays into; ``""`` matches every name, so the first listed."""
    output: str = ""
    """The port the harmony goes to; ``""``: a synthesizer listed, else the first output that is
    not a Through port, else a virtual port (:mod:`partimento.live.default_output`)."""
    virtual_input: str = ""
    """When set, a virtual port of this name is created instead of opening ``input``."""
    virtual_output: str = ""
    input_channel: int | None = None
    """Melody notes are read from this channel (0-15) only; None: from every channel."""
    input_pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    output_pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def _check(self) -> None:
        k = self._key
        _check_choice(k("api"), self.api, ("auto", *RTMIDI_APIS))
        _check_choice(k("match"), self.match, MATCHES)
        for name in ("input", "output", "virtual_input", "virtual_output"):
            _check_str(k(name), getattr(self, name))
        for direction in ("input", "output"):
            virtual = getattr(self, f"virtual_{direction}")
            if virtual and getattr(self, direction):
                raise ConfigError(
                    f"{k('virtual_' + direction)}: set either "
                    f"{k(direction)} or {k('virtual_' + direction)}, not both"
                )
            if virtual and self.api == "winmm":
                raise ConfigError(
                    f"{k('virtual_' + direction)}: the winmm backend has no virtual ports"
                )
            object.__setattr__(self, f"{direction}_pattern", self._compile(direction))
        _check_channel(k("input_channel"), self.input_channel, word="all")

    def _compile(self, direction: str) -> re.Pattern[str]:
        text = getattr(self, direction)
        if self.match == "substring":
            return re.compile(re.escape(text), re.IGNORECASE)
        try:
            return re.compile(text)
        except re.error as exc:
            raise ConfigError(
                f"{self._key(direction)}: not a valid regular expression: {exc}"
            ) from None

    @property
    def mido_backend(self) -> str:
        """The name for ``mido.Backend``, e.g. ``mido.backends.rtmidi/UNIX_JACK``."""
        base = "mido.backends.rtmidi"
        return base if self.api == "auto" else f"{base}/{RTMIDI_APIS[self.api]}"

    def find_port(self, names: Iterable[str], *, output: bool = False) -> str | None:
        """The first of ``names`` that ``input`` (or ``output``) matches, None if none does."""
        pattern = self.output_pattern if output else self.input_pattern
        return next((n for n in names if pattern.search(n)), None)


@dataclass(frozen=True)
class TempoConfig(_Section):
    """``[tempo]``: where the beat comes from. The daemon prefers the MIDI clock (when
    followed and running), then the last tapped tempo, then the estimate from onsets, then
    ``bpm``."""

    SECTION: ClassVar[str] = "tempo"

    bpm: float = 100.0
    follow_clock: bool = True
    estimate: bool = True
    tap_cc: int | None = None

    def _check(self) -> None:
        k = self._key
        _check_number(k("bpm"), self.bpm, 30, 300)
        _check_bool(k("follow_clock"), self.follow_clock)
        _check_bool(k("estimate"), self.estimate)
        _check_cc(k("tap_cc"), self.tap_cc)


@dataclass(frozen=True)
class SamplingConfig(_Section):
    """``[sampling]``: how both modes draw from their model."""

    SECTION: ClassVar[str] = "sampling"

    temperature: float = 1.0
    top_p: float = 1.0
    key: str = "none"
    """``none`` (no mask), ``auto`` (estimated from what was played) or a key, ``"A minor"``."""

    def _check(self) -> None:
        k = self._key
        _check_number(k("temperature"), self.temperature, 0, MAX_TEMPERATURE, above=True)
        _check_number(k("top_p"), self.top_p, 0, 1, above=True)
        _check_str(k("key"), self.key)
        if self.key not in ("none", "auto"):
            try:
                parse_key(self.key)
            except ValueError:
                _fail(k("key"), '"none", "auto" or a key such as "C major" or "F# minor"', self.key)

    @property
    def fixed_key(self) -> tuple[int, int] | None:
        """``(tonic pitch class, MAJOR or MINOR)`` for a configured key, else None."""
        return None if self.key in ("none", "auto") else parse_key(self.key)


@dataclass(frozen=True)
class VoiceChannels(_Section):
    """``harmonize.channels``: one output channel (0-15) per harmony voice."""

    SECTION: ClassVar[str] = "harmonize.channels"

    alto: int = 1
    tenor: int = 2
    bass: int = 3

    def _check(self) -> None:
        for name in ("alto", "tenor", "bass"):
            _check_channel(self._key(name), getattr(self, name))

    @classmethod
    def shared(cls, channel: int) -> VoiceChannels:
        return cls(channel, channel, channel)


@dataclass(frozen=True)
class HarmonizeConfig(_Section):
    """``[harmonize]``: four-voice harmony under every melody note."""

    SECTION: ClassVar[str] = "harmonize"

    model: str = "bach"
    channels: VoiceChannels = field(default_factory=VoiceChannels)
    velocity: int | None = None
    """1-127, or None: each harmony note takes the velocity of the melody note."""
    candidates: int = 16
    voice_leading: float = 3.0
    sonority: float = 0.15
    movement: float = 2.0

    def _check(self) -> None:
        k = self._key
        _check_str(k("model"), self.model, empty=False)
        _check_type(k("channels"), self.channels, VoiceChannels)
        _check_velocity(k("velocity"), self.velocity)
        _check_int(k("candidates"), self.candidates, 1, 64)
        _check_number(k("voice_leading"), self.voice_leading, 0, 100)
        _check_number(k("sonority"), self.sonority, 0, 100)
        _check_number(k("movement"), self.movement, 0, 100)


@dataclass(frozen=True)
class ContinueConfig(_Section):
    """``[continue]``: an answer to every phrase the player ends."""

    SECTION: ClassVar[str] = "continue"

    model: str = "folk"
    end_silence: float = 1.0
    """Seconds without a sounding note that end a phrase (``end_cc`` ends it at once)."""
    end_cc: int | None = None
    bars: int = 2
    channel: int = 0
    velocity: int | None = None
    """1-127, or None: the mean velocity of the phrase answered."""

    def _check(self) -> None:
        k = self._key
        _check_str(k("model"), self.model, empty=False)
        _check_number(k("end_silence"), self.end_silence, 0, 30, above=True)
        _check_cc(k("end_cc"), self.end_cc)
        _check_int(k("bars"), self.bars, 1, 32)
        _check_channel(k("channel"), self.channel)
        _check_velocity(k("velocity"), self.velocity)


@dataclass(frozen=True)
class ControlConfig(_Section):
    """``[control]``: mode, model and temperature switched from the keyboard."""

    SECTION: ClassVar[str] = "control"

    channel: int | None = None
    """Control changes and program changes are obeyed from this channel (0-15); None: all."""
    mode_cc: int | None = None
    """Values 0-63 select harmonize, 64-127 continue."""
    temperature_cc: int | None = None
    temperature_range: tuple[float, float] = (0.5, 1.5)
    """The temperatures CC value 0 and CC value 127 give, linear in between."""
    programs: tuple[tuple[int, str], ...] = ()
    """``(program 0-127, model)`` pairs, by program; a program change loads that model and
    switches to the mode its ``model.json`` serves."""

    def _check(self) -> None:
        k = self._key
        _check_channel(k("channel"), self.channel, word="all")
        _check_cc(k("mode_cc"), self.mode_cc)
        _check_cc(k("temperature_cc"), self.temperature_cc)
        if self.mode_cc is not None and self.mode_cc == self.temperature_cc:
            raise ConfigError(
                f"{k('temperature_cc')}: CC {self.temperature_cc} is already used by {k('mode_cc')}"
            )
        rng = self.temperature_range
        if not (isinstance(rng, tuple) and len(rng) == 2 and all(_is_number(t) for t in rng)):
            _fail(k("temperature_range"), "[low, high], two temperatures", rng)
        for t in rng:
            if not 0 < t <= MAX_TEMPERATURE:
                _fail(
                    k("temperature_range"),
                    f"two temperatures above 0 and at most {MAX_TEMPERATURE:g}",
                    rng,
                )
        if not rng[0] < rng[1]:
            _fail(k("temperature_range"), "[low, high] with low below high", rng)
        if not isinstance(self.programs, tuple):
            _fail(k("programs"), "a table of program = model", self.programs)
        seen: set[int] = set()
        for item in self.programs:
            if not (isinstance(item, tuple) and len(item) == 2 and _is_int(item[0])):
                _fail(k("programs"), "(program, model) pairs", item)
            program, model = item
            key = f"{k('programs')}.{program + 1}"
            _check_int(key, program, 1, 128, "a program number", offset=1)
            if program in seen:
                raise ConfigError(f"{key}: program {program + 1} is given twice")
            seen.add(program)
            _check_str(key, model, empty=False)

    def temperature_for(self, value: int) -> float:
        """The temperature a ``temperature_cc`` value 0-127 selects."""
        low, high = self.temperature_range
        return low + (high - low) * min(max(value, 0), 127) / 127

    def model_for(self, program: int) -> str | None:
        """The model program ``program`` (0-127) selects, None if it selects nothing."""
        return dict(self.programs).get(program)


@dataclass(frozen=True)
class MqttConfig(_Section):
    """``[mqtt]``: control and telemetry over an MQTT broker."""

    SECTION: ClassVar[str] = "mqtt"

    enabled: bool = False
    host: str = "localhost"
    port: int = 1883
    tls: bool = False
    ca_file: Path | None = None
    """With ``tls``: the CA certificates to trust; None: the system's."""
    username: str = ""
    password: str = field(default="", repr=False)
    """Allowed, but ``password_env`` or ``password_file`` keep it out of the config file."""
    password_env: str = ""
    password_file: Path | None = None
    topic_prefix: str = "partimento"
    client_id: str = ""
    """``""``: the daemon uses ``partimento-<hostname>``."""
    metrics_interval: float = 10.0
    """Seconds between telemetry messages; 0: none."""

    def _check(self) -> None:
        k = self._key
        for name in ("enabled", "tls"):
            _check_bool(k(name), getattr(self, name))
        _check_str(k("host"), self.host, empty=False)
        _check_int(k("port"), self.port, 1, 65535, "a port number")
        for name in ("ca_file", "password_file"):
            _check_path(k(name), getattr(self, name))
        if self.ca_file is not None and not self.tls:
            raise ConfigError(f"{k('ca_file')}: needs {k('tls')} = true")
        for name in ("username", "password", "password_env", "client_id"):
            _check_str(k(name), getattr(self, name))
        if self.password_env and not _ENV_NAME_RE.fullmatch(self.password_env):
            _fail(k("password_env"), "an environment variable name", self.password_env)
        given = [n for n in ("password", "password_env", "password_file") if getattr(self, n)]
        if len(given) > 1:
            raise ConfigError(
                f"{k(given[1])}: set only one of {k('password')}, "
                f"{k('password_env')} and {k('password_file')}"
            )
        if given and not self.username:
            raise ConfigError(f"{k(given[0])}: needs {k('username')}")
        _check_str(k("topic_prefix"), self.topic_prefix, empty=False)
        if any(c in self.topic_prefix for c in "+#\0"):
            _fail(k("topic_prefix"), "a topic without the wildcards + and #", self.topic_prefix)
        if self.topic_prefix.startswith("/") or self.topic_prefix.endswith("/"):
            _fail(k("topic_prefix"), "a topic without a leading or trailing /", self.topic_prefix)
        m = self.metrics_interval
        if not (_is_number(m) and (m == 0 or 1 <= m <= 3600)):
            _fail(k("metrics_interval"), "0 (off) or a number from 1 to 3600", m)

    def resolve_password(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The password from wherever it is configured (reads the file or the environment
        now, not at load); None when none is configured."""
        if self.password:
            return self.password
        if self.password_env:
            env = os.environ if environ is None else environ
            if self.password_env not in env:
                raise ConfigError(
                    f"{self._key('password_env')}: the environment variable "
                    f"{self.password_env} is not set"
                )
            return env[self.password_env]
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ConfigError(
                    f"{self._key('password_file')}: cannot read {self.password_file}: {reason}"
                ) from None
        return None


@dataclass(frozen=True)
class Config(_Section):
    """The whole file. Its own fields are the top-level keys, written before any table."""

    mode: str = "harmonize"
    """The mode the daemon starts in."""
    context_seconds: float = 16.0
    """How many seconds of what was played the daemon keeps (key estimation, phrases)."""
    log_level: str = "info"
    models_dir: Path | None = None
    """Looked in first for named models; then ``$PARTIMENTO_MODELS``, the user's models folder
    and the shipped models (:mod:`partimento.files.locations`)."""
    midi: MidiConfig = field(default_factory=MidiConfig)
    tempo: TempoConfig = field(default_factory=TempoConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    harmonize: HarmonizeConfig = field(default_factory=HarmonizeConfig)
    continue_: ContinueConfig = field(default_factory=ContinueConfig, metadata={"toml": "continue"})
    control: ControlConfig = field(default_factory=ControlConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)

    def _check(self) -> None:
        _check_choice("mode", self.mode, MODES)
        _check_number("context_seconds", self.context_seconds, 0, 600, above=True)
        _check_choice("log_level", self.log_level, LOG_LEVELS)
        _check_path("models_dir", self.models_dir)
        for f in fields(self):
            if isinstance(f.default_factory, type):
                _check_type(_toml_name(f), getattr(self, f.name), f.default_factory)
        # one CC, one job: checked in file order, the later key is named
        used: dict[int, str] = {}
        for key, cc in (
            ("tempo.tap_cc", self.tempo.tap_cc),
            ("continue.end_cc", self.continue_.end_cc),
            ("control.mode_cc", self.control.mode_cc),
            ("control.temperature_cc", self.control.temperature_cc),
        ):
            if cc is None:
                continue
            if cc in used:
                raise ConfigError(f"{key}: CC {cc} is already used by {used[cc]}")
            used[cc] = key

    @property
    def logging_level(self) -> int:
        return LOG_LEVELS[self.log_level]

    def harmonizer_settings(self) -> HarmonizerSettings:
        """The live harmonizer's settings: sampling from ``[sampling]``, the rest from
        ``[harmonize]``."""
        h = self.harmonize
        return HarmonizerSettings(
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            candidates=h.candidates,
            voice_leading=h.voice_leading,
            sonority=h.sonority,
            movement=h.movement,
        )


# --- file terms → dataclasses -------------------------------------------------------------------

Reader = Callable[[str, Any], Any]
_T = TypeVar("_T")


def _toml_name(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("toml", f.name))


def _word_or_int(word: str, offset: int = 0) -> Reader:
    """``word`` → None, a whole number → ``offset`` lower; anything else passes on unchanged
    for the dataclass to report."""

    def read(key: str, raw: Any) -> Any:
        if raw == word:
            return None
        return raw - offset if _is_int(raw) else raw

    return read


def _channel(key: str, raw: Any) -> Any:
    return raw - 1 if _is_int(raw) else raw


def _path(key: str, raw: Any) -> Any:
    if raw == "":
        return None
    return Path(raw) if isinstance(raw, str) else raw


def _voice_channels(key: str, raw: Any) -> VoiceChannels:
    if _is_int(raw):
        _check_channel(key, raw - 1)
        return VoiceChannels.shared(raw - 1)
    if isinstance(raw, dict):
        return _build(VoiceChannels, raw, key)
    _fail(key, "a MIDI channel 1-16 or a table of alto, tenor and bass channels", raw)


def _temperature_range(key: str, raw: Any) -> Any:
    if isinstance(raw, list):
        return tuple(float(t) if _is_int(t) else t for t in raw)
    return raw


def _programs(key: str, raw: Any) -> Any:
    if not isinstance(raw, dict):
        _fail(key, 'a table of program = model, such as { 1 = "bach" }', raw)
    pairs: dict[int, str] = {}
    for name, model in raw.items():
        if not (name.isascii() and name.isdigit()):
            raise ConfigError(f"{key}.{_show(name)}: the key must be a program number 1-128")
        program = int(name) - 1
        if program in pairs:
            raise ConfigError(f"{key}.{name}: program {program + 1} is given twice")
        pairs[program] = model
    return tuple(sorted(pairs.items()))


_READERS: dict[tuple[type, str], Reader] = {
    (MidiConfig, "input_channel"): _word_or_int("all", 1),
    (TempoConfig, "tap_cc"): _word_or_int("none"),
    (VoiceChannels, "alto"): _channel,
    (VoiceChannels, "tenor"): _channel,
    (VoiceChannels, "bass"): _channel,
    (HarmonizeConfig, "channels"): _voice_channels,
    (HarmonizeConfig, "velocity"): _word_or_int("melody"),
    (ContinueConfig, "end_cc"): _word_or_int("none"),
    (ContinueConfig, "channel"): _channel,
    (ContinueConfig, "velocity"): _word_or_int("melody"),
    (ControlConfig, "channel"): _word_or_int("all", 1),
    (ControlConfig, "mode_cc"): _word_or_int("none"),
    (ControlConfig, "temperature_cc"): _word_or_int("none"),
    (ControlConfig, "temperature_range"): _temperature_range,
    (ControlConfig, "programs"): _programs,
    (MqttConfig, "ca_file"): _path,
    (MqttConfig, "password_file"): _path,
    (Config, "models_dir"): _path,
}
_TABLES = (
    MidiConfig,
    TempoConfig,
    SamplingConfig,
    HarmonizeConfig,
    ContinueConfig,
    ControlConfig,
    MqttConfig,
)


def _build(cls: type[_T], table: Any, key: str) -> _T:
    """A dataclass from one TOML table; ``key`` is the table's dotted name ("" for the root)."""
    if not isinstance(table, dict):
        _fail(key, "a table", table)
    shape: Any = cls  # a dataclass: every section is one
    by_name = {_toml_name(f): f for f in fields(shape) if f.init}
    kwargs: dict[str, Any] = {}
    for name, raw in table.items():
        shown = name if _BARE_KEY_RE.fullmatch(name) else _show(name)
        dotted = f"{key}.{shown}" if key else shown
        f = by_name.get(name)
        if f is None:
            near = _nearest(name, by_name)
            hint = (
                f"did you mean {key + '.' if key else ''}{near}?"
                if near
                else "known: " + ", ".join(by_name)
            )
            raise ConfigError(f"{dotted}: unknown key ({hint})")
        if f.default_factory in _TABLES:
            value = _build(f.default_factory, raw, dotted)
        elif (cls, f.name) in _READERS:
            value = _READERS[cls, f.name](dotted, raw)
        else:
            value = raw
        kwargs[f.name] = value
    return cls(**kwargs)


def from_dict(data: Mapping[str, Any]) -> Config:
    """A configuration from a parsed TOML document; raises :class:`ConfigError`."""
    return _build(Config, dict(data), "")


def _anchor(path: Path | None, key: str, base: Path) -> Path | None:
    if path is None:
        return None
    try:
        path = path.expanduser()
    except RuntimeError:
        raise ConfigError(f"{key}: cannot expand ~ in {_show(path)}") from None
    return path if path.is_absolute() else base / path


def load(path: str | Path) -> Config:
    """Read and check a TOML config file. Relative paths in it are read from its folder.

    A file that is missing or not TOML gives a :class:`ConfigError` that starts with the
    file's path (TOML errors carry the line and column); a bad value one that starts with
    the key.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    cfg = from_dict(data)
    base = path.absolute().parent
    mqtt = cfg.mqtt
    return dataclasses.replace(
        cfg,
        models_dir=_anchor(cfg.models_dir, "models_dir", base),
        mqtt=dataclasses.replace(
            mqtt,
            ca_file=_anchor(mqtt.ca_file, "mqtt.ca_file", base),
            password_file=_anchor(mqtt.password_file, "mqtt.password_file", base),
        ),
    )
