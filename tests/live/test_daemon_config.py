"""The daemon's config file: defaults, the shipped file, and one-line errors that name the key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from partimento import config
from partimento.config import Config, ConfigError, from_dict, load
from partimento.core.music.encoding import MAJOR, MINOR
from partimento.core.players.harmonizer import HarmonizerSettings

from support.project import ROOT

SHIPPED = ROOT / "config" / "partimento.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "partimento.toml"
    path.write_text(text, encoding="utf-8")
    return path


def toml_keys(cls: type, prefix: str = "") -> set[str]:
    """Every dotted key a dataclass reads, tables included as their keys."""
    keys: set[str] = set()
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        name = prefix + f.metadata.get("toml", f.name)
        if isinstance(f.default_factory, type) and f.default_factory is not config.VoiceChannels:
            keys |= toml_keys(f.default_factory, name + ".")
        else:
            keys.add(name)
    return keys


SECTIONS = ("midi", "tempo", "sampling", "harmonize", "continue", "control", "mqtt")


def file_keys(document: dict) -> set[str]:
    """Every dotted key a TOML document sets; inline tables such as channels are one key."""
    keys: set[str] = set()
    for name, value in document.items():
        if name in SECTIONS:
            keys |= {f"{name}.{k}" for k in value}
        else:
            keys.add(name)
    return keys


# --- defaults and the shipped file --------------------------------------------------------------


def test_shipped_file_loads_and_equals_the_defaults():
    assert load(SHIPPED) == Config()


def test_shipped_file_lists_every_key():
    data = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    assert file_keys(data) == toml_keys(Config)


def test_empty_file_is_the_defaults(tmp_path):
    assert load(write(tmp_path, "")) == Config()
    assert from_dict({}) == Config()


def test_defaults_in_internal_terms():
    cfg = Config()
    assert cfg.mode == "harmonize"
    assert cfg.harmonize.model == "bach" and cfg.continue_.model == "folk"
    assert cfg.harmonize.channels == config.VoiceChannels(alto=1, tenor=2, bass=3)  # 2, 3, 4
    assert cfg.continue_.channel == 0  # channel 1 in the file
    assert cfg.midi.input_channel is None and cfg.control.channel is None  # "all"
    assert cfg.tempo.tap_cc is None and cfg.continue_.end_cc is None  # "none"
    assert cfg.harmonize.velocity is None and cfg.continue_.velocity is None  # "melody"
    assert cfg.models_dir is None and cfg.mqtt.password_file is None  # ""
    assert cfg.harmonizer_settings() == HarmonizerSettings()


def test_file_terms_become_internal_terms(tmp_path):
    path = write(
        tmp_path,
        """
mode = "continue"
models_dir = "models"
[midi]
api = "jack"
match = "regex"
input = "^Keystation"
virtual_output = "Partimento out"
input_channel = 16
[tempo]
bpm = 120
tap_cc = 20
[sampling]
temperature = 2
key = "F# minor"
[harmonize]
channels = 5
velocity = 70
[continue]
end_cc = 85
channel = 10
[control]
channel = 1
mode_cc = 80
temperature_cc = 21
temperature_range = [1, 2]
programs = { 1 = "bach", 2 = "folk", 128 = "reels" }
[mqtt]
enabled = true
tls = true
ca_file = "/etc/ssl/broker.pem"
username = "piano"
password_file = "~/secret"
""",
    )
    cfg = load(path)
    assert cfg.mode == "continue"
    assert cfg.models_dir == tmp_path / "models"  # relative to the file
    assert cfg.midi.input_channel == 15
    assert cfg.midi.mido_backend == "mido.backends.rtmidi/UNIX_JACK"
    assert cfg.tempo.bpm == 120.0 and isinstance(cfg.tempo.bpm, float)
    assert cfg.tempo.tap_cc == 20
    assert cfg.sampling.temperature == 2.0 and isinstance(cfg.sampling.temperature, float)
    assert cfg.sampling.fixed_key == (6, MINOR)
    assert cfg.harmonize.channels == config.VoiceChannels.shared(4)
    assert cfg.harmonize.velocity == 70
    assert cfg.continue_.channel == 9 and cfg.continue_.end_cc == 85
    assert cfg.control.channel == 0
    assert cfg.control.temperature_range == (1.0, 2.0)
    assert cfg.control.programs == ((0, "bach"), (1, "folk"), (127, "reels"))
    assert cfg.control.model_for(1) == "folk" and cfg.control.model_for(5) is None
    assert cfg.control.temperature_for(0) == 1.0 and cfg.control.temperature_for(127) == 2.0
    assert cfg.mqtt.ca_file == Path("/etc/ssl/broker.pem")
    assert cfg.mqtt.password_file == Path("~/secret").expanduser()


def test_partial_voice_channel_table_keeps_the_other_defaults():
    cfg = from_dict({"harmonize": {"channels": {"bass": 16}}})
    assert cfg.harmonize.channels == config.VoiceChannels(alto=1, tenor=2, bass=15)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("C major", (0, MAJOR)),
        ("a minor", (9, MINOR)),
        ("Bb major", (10, MAJOR)),
        ("bb minor", (10, MINOR)),
        ("F# minor", (6, MINOR)),
        ("Cb major", (11, MAJOR)),
    ],
)
def test_keys(text, expected):
    assert config.parse_key(text) == expected
    assert from_dict({"sampling": {"key": text}}).sampling.fixed_key == expected


def test_no_key_and_auto_key_are_no_fixed_key():
    assert Config().sampling.fixed_key is None
    assert from_dict({"sampling": {"key": "auto"}}).sampling.fixed_key is None


# --- ports --------------------------------------------------------------------------------------

PORTS = [
    "Midi Through:Midi Through Port-0 14:0",
    "Keystation 49 MK3:Keystation 49 MK3 MIDI 1 20:0",
    "USB MIDI (1)",
]


def test_substring_match_ignores_case_and_regex_characters():
    midi = config.MidiConfig(input="keystation", output="MIDI (1)")
    assert midi.find_port(PORTS) == PORTS[1]
    assert midi.find_port(PORTS, output=True) == PORTS[2]


def test_regex_match_and_empty_pattern():
    midi = config.MidiConfig(match="regex", input=r"^Keystation \d+", output="")
    assert midi.find_port(PORTS) == PORTS[1]
    assert midi.find_port(PORTS, output=True) == PORTS[0]  # "" = the first listed
    assert midi.find_port([]) is None
    assert config.MidiConfig(match="regex", input="Nord").find_port(PORTS) is None


def test_auto_api_leaves_the_backend_to_rtmidi():
    assert Config().midi.mido_backend == "mido.backends.rtmidi"


# --- bad values: one line, starting with the key ------------------------------------------------

BAD = [
    # wrong type
    ({"tempo": {"follow_clock": "yes"}}, 'tempo.follow_clock: must be true or false, got "yes"'),
    (
        {"sampling": {"temperature": "hot"}},
        'sampling.temperature: must be a number above 0 and at most 10, got "hot"',
    ),
    ({"continue": {"bars": 2.0}}, "continue.bars: must be a whole number 1-32, got 2.0"),
    (
        {"harmonize": {"candidates": True}},
        "harmonize.candidates: must be a whole number 1-64, got true",
    ),
    ({"midi": {"input": 3}}, "midi.input: must be a string, got 3"),
    ({"midi": 3}, "midi: must be a table, got 3"),
    ({"models_dir": 3}, "models_dir: must be a path, got 3"),
    (
        {"harmonize": {"channels": "2"}},
        "harmonize.channels: must be a MIDI channel 1-16 or a "
        'table of alto, tenor and bass channels, got "2"',
    ),
    # channels, counted 1-16 in the file
    (
        {"harmonize": {"channels": {"alto": 17}}},
        "harmonize.channels.alto: must be a MIDI channel 1-16, got 17",
    ),
    (
        {"harmonize": {"channels": {"bass": 0}}},
        "harmonize.channels.bass: must be a MIDI channel 1-16, got 0",
    ),
    ({"harmonize": {"channels": 0}}, "harmonize.channels: must be a MIDI channel 1-16, got 0"),
    ({"continue": {"channel": 17}}, "continue.channel: must be a MIDI channel 1-16, got 17"),
    (
        {"midi": {"input_channel": "none"}},
        'midi.input_channel: must be a MIDI channel 1-16 or "all", got "none"',
    ),
    ({"control": {"channel": 0}}, 'control.channel: must be a MIDI channel 1-16 or "all", got 0'),
    # regexes
    (
        {"midi": {"match": "regex", "input": "Key(stat"}},
        "midi.input: not a valid regular expression: missing ), unterminated subpattern at "
        "position 3",
    ),
    (
        {"midi": {"match": "regex", "output": "*synth"}},
        "midi.output: not a valid regular expression: nothing to repeat at position 0",
    ),
    # unknown keys, with the nearest known one
    ({"midi": {"inptu": "x"}}, "midi.inptu: unknown key (did you mean midi.input?)"),
    ({"mqt": {}}, "mqt: unknown key (did you mean mqtt?)"),
    ({"harmonise": {}}, "harmonise: unknown key (did you mean harmonize?)"),
    (
        {"harmonize": {"channels": {"soprano": 1}}},
        "harmonize.channels.soprano: unknown key (known: alto, tenor, bass)",
    ),
    ({"tempo": {"zzz": 1}}, "tempo.zzz: unknown key (known: bpm, follow_clock, estimate, tap_cc)"),
    (
        {"a\nb": 1},
        '"a\\nb": unknown key (known: mode, context_seconds, log_level, models_dir, '
        "midi, tempo, sampling, harmonize, continue, control, mqtt)",
    ),
    # names from a list
    (
        {"mode": "harmonise"},
        'mode: must be "harmonize" or "continue", got "harmonise" (did you mean "harmonize"?)',
    ),
    ({"mode": "improvise"}, 'mode: must be "harmonize" or "continue", got "improvise"'),
    (
        {"log_level": "INFO"},
        'log_level: must be one of "debug", "info", "warning", "error", '
        'got "INFO" (did you mean "info"?)',
    ),
    (
        {"midi": {"api": "alsa-seq"}},
        'midi.api: must be one of "auto", "alsa", "jack", '
        '"coremidi", "winmm", got "alsa-seq" (did you mean "alsa"?)',
    ),
    (
        {"sampling": {"key": "H major"}},
        'sampling.key: must be "none", "auto" or a key such as '
        '"C major" or "F# minor", got "H major"',
    ),
    # ranges
    (
        {"sampling": {"temperature": 0}},
        "sampling.temperature: must be a number above 0 and at most 10, got 0",
    ),
    (
        {"sampling": {"temperature": -0.5}},
        "sampling.temperature: must be a number above 0 and at most 10, got -0.5",
    ),
    (
        {"sampling": {"top_p": 1.5}},
        "sampling.top_p: must be a number above 0 and at most 1, got 1.5",
    ),
    ({"tempo": {"bpm": float("inf")}}, "tempo.bpm: must be a number from 30 to 300, got inf"),
    ({"tempo": {"bpm": 20}}, "tempo.bpm: must be a number from 30 to 300, got 20"),
    ({"tempo": {"tap_cc": 120}}, 'tempo.tap_cc: must be a CC number 0-119 or "none", got 120'),
    (
        {"harmonize": {"velocity": 0}},
        'harmonize.velocity: must be a velocity 1-127 or "melody", got 0',
    ),
    (
        {"harmonize": {"voice_leading": -1}},
        "harmonize.voice_leading: must be a number from 0 to 100, got -1",
    ),
    ({"context_seconds": 0}, "context_seconds: must be a number above 0 and at most 600, got 0"),
    ({"mqtt": {"port": 0}}, "mqtt.port: must be a port number 1-65535, got 0"),
    (
        {"mqtt": {"metrics_interval": 0.5}},
        "mqtt.metrics_interval: must be 0 (off) or a number from 1 to 3600, got 0.5",
    ),
    # keys that depend on each other
    (
        {"midi": {"input": "Keystation", "virtual_input": "Partimento in"}},
        "midi.virtual_input: set either midi.input or midi.virtual_input, not both",
    ),
    (
        {"midi": {"api": "winmm", "virtual_output": "Partimento out"}},
        "midi.virtual_output: the winmm backend has no virtual ports",
    ),
    (
        {"continue": {"end_silence": 0}},
        "continue.end_silence: must be a number above 0 and at most 30, got 0",
    ),
    ({"continue": {"end_cc": 64}}, "continue.end_cc: CC 64 is the sustain pedal, choose another"),
    (
        {"tempo": {"tap_cc": 20}, "control": {"mode_cc": 20}},
        "control.mode_cc: CC 20 is already used by tempo.tap_cc",
    ),
    (
        {"control": {"mode_cc": 21, "temperature_cc": 21}},
        "control.temperature_cc: CC 21 is already used by control.mode_cc",
    ),
    (
        {"control": {"temperature_range": [1.5, 0.5]}},
        "control.temperature_range: must be [low, high] with low below high, got [1.5, 0.5]",
    ),
    (
        {"control": {"temperature_range": [0, 1]}},
        "control.temperature_range: must be two "
        "temperatures above 0 and at most 10, got [0.0, 1.0]",
    ),
    (
        {"control": {"temperature_range": 1.0}},
        "control.temperature_range: must be [low, high], two temperatures, got 1.0",
    ),
    # program numbers, counted 1-128 in the file
    (
        {"control": {"programs": {"129": "bach"}}},
        "control.programs.129: must be a program number 1-128, got 129",
    ),
    (
        {"control": {"programs": {"0": "bach"}}},
        "control.programs.0: must be a program number 1-128, got 0",
    ),
    (
        {"control": {"programs": {"piano": "bach"}}},
        'control.programs."piano": the key must be a program number 1-128',
    ),
    (
        {"control": {"programs": {"1": "bach", "01": "folk"}}},
        "control.programs.01: program 1 is given twice",
    ),
    ({"control": {"programs": {"1": ""}}}, "control.programs.1: must not be empty"),
    ({"control": {"programs": {"1": 2}}}, "control.programs.1: must be a string, got 2"),
    # mqtt
    ({"mqtt": {"password": "secret"}}, "mqtt.password: needs mqtt.username"),
    (
        {"mqtt": {"username": "u", "password": "x", "password_env": "PW"}},
        "mqtt.password_env: set only one of mqtt.password, mqtt.password_env and "
        "mqtt.password_file",
    ),
    (
        {"mqtt": {"username": "u", "password_env": "MY-PW"}},
        'mqtt.password_env: must be an environment variable name, got "MY-PW"',
    ),
    ({"mqtt": {"ca_file": "ca.pem"}}, "mqtt.ca_file: needs mqtt.tls = true"),
    (
        {"mqtt": {"topic_prefix": "home/#"}},
        'mqtt.topic_prefix: must be a topic without the wildcards + and #, got "home/#"',
    ),
    (
        {"mqtt": {"topic_prefix": "home/"}},
        'mqtt.topic_prefix: must be a topic without a leading or trailing /, got "home/"',
    ),
    ({"mqtt": {"host": ""}}, "mqtt.host: must not be empty"),
]


@pytest.mark.parametrize("data, message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_value_names_the_key_in_one_line(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_bad_value_in_a_file(tmp_path):
    path = write(tmp_path, "[harmonize.channels]\nalto = 17\n")
    with pytest.raises(
        ConfigError,
        match=r"^harmonize\.channels\.alto: must be a MIDI channel "
        r"1-16, got 17$",
    ):
        load(path)


@pytest.mark.parametrize(
    "text, line",
    [
        ('mode = "harmonize"\n[midi]\ninput = "Key\n', 3),
        ("[midi]\napi = \n", 2),
        ("[tempo]\nbpm = 90\n[tempo]\n", 3),
    ],
)
def test_malformed_toml_names_the_file_and_line(tmp_path, text, line):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid TOML: ")
    assert f"line {line}" in message
    assert "\n" not in message


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match=r": no such config file$"):
        load(tmp_path / "nowhere.toml")
    (tmp_path / "latin1.toml").write_bytes(b'mode = "harmonize" # caf\xe9\n')
    with pytest.raises(ConfigError, match=r"latin1\.toml: not UTF-8 text$"):
        load(tmp_path / "latin1.toml")


# --- frozen, and checked again on replace -------------------------------------------------------


@pytest.mark.parametrize(
    "obj, name, value",
    [
        (Config(), "mode", "continue"),
        (Config().midi, "input", "x"),
        (Config().tempo, "bpm", 90.0),
        (Config().sampling, "temperature", 2.0),
        (Config().harmonize, "candidates", 4),
        (Config().harmonize.channels, "alto", 5),
        (Config().continue_, "bars", 4),
        (Config().control, "mode_cc", 80),
        (Config().mqtt, "host", "broker"),
    ],
)
def test_dataclasses_are_frozen(obj, name, value):
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, name, value)


def test_replace_is_checked_too():
    sampling = Config().sampling
    assert dataclasses.replace(sampling, temperature=1.5).temperature == 1.5
    with pytest.raises(ConfigError, match=r"^sampling\.temperature: "):
        dataclasses.replace(sampling, temperature=0.0)
    with pytest.raises(ConfigError, match=r"^harmonize\.channels\.tenor: .* got 17$"):
        config.VoiceChannels(tenor=16)


def test_configs_are_hashable_and_compare_by_value():
    a = from_dict({"midi": {"match": "regex", "input": "^Key"}})
    b = from_dict({"midi": {"match": "regex", "input": "^Key"}})
    assert a == b and hash(a) == hash(b)
    assert a != Config()


# --- the password -------------------------------------------------------------------------------


def test_password_is_kept_out_of_repr():
    mqtt = config.MqttConfig(username="u", password="hunter2")
    assert "hunter2" not in repr(mqtt)
    assert mqtt.resolve_password() == "hunter2"


def test_password_from_the_environment():
    mqtt = config.MqttConfig(username="u", password_env="PARTIMENTO_MQTT_PASSWORD")
    assert mqtt.resolve_password({"PARTIMENTO_MQTT_PASSWORD": "s3cret"}) == "s3cret"
    with pytest.raises(
        ConfigError,
        match=r"^mqtt\.password_env: the environment variable "
        r"PARTIMENTO_MQTT_PASSWORD is not set$",
    ):
        mqtt.resolve_password({})


def test_password_from_a_file_read_when_asked(tmp_path):
    path = write(tmp_path, '[mqtt]\nusername = "u"\npassword_file = "secret"\n')
    cfg = load(path)  # the file need not exist at load
    assert cfg.mqtt.password_file == tmp_path / "secret"
    with pytest.raises(ConfigError, match=r"^mqtt\.password_file: cannot read .*secret: "):
        cfg.mqtt.resolve_password()
    (tmp_path / "secret").write_text("s3cret\n", encoding="utf-8")
    assert cfg.mqtt.resolve_password() == "s3cret"


def test_no_password():
    assert Config().mqtt.resolve_password() is None


def test_loading_imports_no_midi_or_mqtt_library():
    code = (
        "import sys\n"
        "from partimento import config\n"
        f"config.load({str(SHIPPED)!r})\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mido', 'rtmidi', 'aiomqtt', 'paho', 'onnxruntime'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
