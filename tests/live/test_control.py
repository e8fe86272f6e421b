"""MQTT control payloads read into commands, refused with one-line reasons; the JSON payloads."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partimento.live.control import (
    MAX_PAYLOAD,
    TOPICS,
    ControlError,
    Panic,
    Reload,
    SetBars,
    SetMode,
    SetStyle,
    SetTemperature,
    SetTempo,
    error_payload,
    metrics_payload,
    offline_payload,
    parse,
    status_payload,
)

P = "partimento"


def refused(suffix: str, payload: bytes, prefix: str = P, **kw) -> str:
    result = parse(prefix, f"{prefix}/{suffix}", payload, **kw)
    assert isinstance(result, ControlError), result
    assert result.topic == f"{prefix}/{suffix}"
    assert "\n" not in result.message and str(result) == result.message
    return result.message


@pytest.mark.parametrize(
    ("suffix", "payload", "command"),
    [
        ("set/mode", b"continue", SetMode("continue")),
        ("set/mode", b"  harmonize\n", SetMode("harmonize")),
        ("set/mode", b"Continue", SetMode("continue")),
        ("set/mode", b'"continue"', SetMode("continue")),
        ("set/mode", b'{"value": "harmonize"}', SetMode("harmonize")),
        ("set/style", b"bach", SetStyle("bach")),
        ("set/style", b"bach-offline", SetStyle("bach-offline")),
        ("set/style", b'"my_folk2"', SetStyle("my_folk2")),
        ("set/style", b'{"value":"folk"}', SetStyle("folk")),
        ("set/style", b"12", SetStyle("12")),  # a name JSON would read as a number
        ("set/style", b"a" * 64, SetStyle("a" * 64)),
        ("set/temperature", b"0.8", SetTemperature(0.8)),
        ("set/temperature", b"1", SetTemperature(1.0)),
        ("set/temperature", b"0.05", SetTemperature(0.05)),
        ("set/temperature", b"5", SetTemperature(5.0)),
        ("set/temperature", b'"1.5"', SetTemperature(1.5)),
        ("set/temperature", b'{"value": 2.5}', SetTemperature(2.5)),
        ("set/temperature", b" 7e-1 ", SetTemperature(0.7)),
        ("set/tempo", b"120", SetTempo(120.0)),
        ("set/tempo", b"30", SetTempo(30.0)),
        ("set/tempo", b"300", SetTempo(300.0)),
        ("set/tempo", b"92.5", SetTempo(92.5)),
        ("set/tempo", b'{"value":"60"}', SetTempo(60.0)),
        ("set/bars", b"4", SetBars(4)),
        ("set/bars", b"1", SetBars(1)),
        ("set/bars", b"32", SetBars(32)),
        ("set/bars", b"8.0", SetBars(8)),
        ("set/bars", b'{"value": 2}', SetBars(2)),
        ("cmd/panic", b"", Panic()),
        ("cmd/panic", b"now!", Panic()),
        ("cmd/panic", b"\xff\xfe", Panic()),  # the payload is not read
        ("cmd/reload", b"", Reload()),
        ("cmd/reload", b'{"value": 1}', Reload()),
    ],
)
def test_every_topic_reads_plain_text_json_scalars_and_value_objects(suffix, payload, command):
    result = parse(P, f"{P}/{suffix}", payload)
    assert result == command
    assert type(result) is type(command)
    assert result.topic == suffix


@pytest.mark.parametrize(
    ("suffix", "payload", "message"),
    [
        ("set/temperature", b"hot", 'set/temperature: expected a number from 0.05 to 5, got "hot"'),
        ("set/temperature", b"0.01", "set/temperature: expected a number from 0.05 to 5, got 0.01"),
        ("set/temperature", b"NaN", "set/temperature: expected a number from 0.05 to 5, got nan"),
        ("set/temperature", b"1e999", "set/temperature: expected a number from 0.05 to 5, got inf"),
        ("set/temperature", b"true", "set/temperature: expected a number from 0.05 to 5, got true"),
        ("set/temperature", b"", 'set/temperature: expected a number from 0.05 to 5, got ""'),
        ("set/tempo", b"29.9", "set/tempo: expected a number from 30 to 300, got 29.9"),
        ("set/tempo", b"[120]", "set/tempo: expected a number from 30 to 300, got [120]"),
        ("set/tempo", b"1_000", 'set/tempo: expected a number from 30 to 300, got "1_000"'),
        ("set/bars", b"4.5", "set/bars: expected a whole number from 1 to 32, got 4.5"),
        ("set/bars", b"0", "set/bars: expected a whole number from 1 to 32, got 0"),
        ("set/bars", b"33", "set/bars: expected a whole number from 1 to 32, got 33"),
        ("set/bars", b"four", 'set/bars: expected a whole number from 1 to 32, got "four"'),
        ("set/mode", b"loud", 'set/mode: expected "harmonize" or "continue", got "loud"'),
        ("set/mode", b"null", 'set/mode: expected "harmonize" or "continue", got null'),
        (
            "set/mode",
            b'{"mode": "continue"}',
            'set/mode: expected a value or {"value": ...}, got {"mode": "continue"}',
        ),
        (
            "set/mode",
            b'{"value": "continue", "x": 1}',
            'set/mode: expected a value or {"value": ...}, got {"value": "continue", "x": 1}',
        ),
        (
            "set/style",
            b"",
            'set/style: expected a model name (1-64 letters, digits, - or _), got ""',
        ),
        (
            "set/style",
            b"../etc",
            'set/style: expected a model name (1-64 letters, digits, - or _), got "../etc"',
        ),
        (
            "set/style",
            b"two words",
            'set/style: expected a model name (1-64 letters, digits, - or _), got "two words"',
        ),
        ("set/mode", b"\xffcontinue", "set/mode: the payload is not UTF-8 text"),
    ],
)
def test_bad_payloads_give_one_line_that_names_the_topic_and_the_value(suffix, payload, message):
    assert refused(suffix, payload) == message


def test_a_long_value_is_shortened_in_the_message():
    message = refused("set/style", b"a" * 65)
    assert message.startswith(
        'set/style: expected a model name (1-64 letters, digits, - or _), got "aaaa'
    )
    assert message.endswith("…") and len(message) < 130


def test_payload_size_limit():
    padded = b'"folk"'.ljust(MAX_PAYLOAD)  # whitespace around the value is ignored
    assert parse(P, f"{P}/set/style", padded) == SetStyle("folk")
    assert refused("set/style", padded + b" ") == (
        f"set/style: payload too long ({MAX_PAYLOAD + 1} bytes, at most {MAX_PAYLOAD})"
    )
    assert refused("cmd/panic", b" " * (MAX_PAYLOAD + 1)).startswith("cmd/panic: payload too long")


def test_unknown_and_foreign_topics():
    assert refused("set/volume", b"3") == (
        "set/volume: unknown topic (known: set/mode, set/style, set/temperature, set/tempo, "
        "set/bars, cmd/panic, cmd/reload)"
    )
    assert refused("cmd/panic/now", b"").startswith("cmd/panic/now: unknown topic")
    assert refused("set/mode\nx", b"continue").startswith("set/mode\\nx: unknown topic")
    other = parse(P, "elsewhere/set/mode", b"continue")
    assert other == ControlError(
        "elsewhere/set/mode", "elsewhere/set/mode: not a control topic (not under partimento/)"
    )
    # the prefix is a whole topic level, not a string prefix
    assert isinstance(parse(P, "partimentos/set/mode", b"continue"), ControlError)


def test_a_prefix_of_several_levels():
    prefix = "partimento/stage"
    assert parse(prefix, "partimento/stage/set/bars", b"3") == SetBars(3)
    assert isinstance(parse(prefix, "partimento/set/bars", b"3"), ControlError)
    assert refused("set/bars", b"x", prefix=prefix).startswith("set/bars: expected")


def test_retained_commands_are_refused_and_retained_settings_applied():
    assert refused("cmd/panic", b"", retained=True) == (
        "cmd/panic: a retained command is not acted on (publish it without retain)"
    )
    assert refused("cmd/reload", b"", retained=True).startswith("cmd/reload: a retained")
    assert parse(P, f"{P}/set/mode", b"continue", retained=True) == SetMode("continue")


def test_commands_are_frozen_values():
    command = SetTempo(100.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        command.bpm = 90.0  # type: ignore[misc]
    assert Panic() == Panic() and hash(SetMode("continue")) == hash(SetMode("continue"))
    assert sorted(TOPICS) == sorted(
        c.topic for c in (SetMode, SetStyle, SetTemperature, SetTempo, SetBars, Panic, Reload)
    )


@settings(max_examples=400, deadline=None)
@given(
    suffix=st.sampled_from([*TOPICS, "set/volume", "", "set/", "cmd/panic/x"]),
    payload=st.one_of(
        st.binary(max_size=1100),
        st.text(max_size=300).map(lambda t: t.encode()),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
            lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    ),
    retained=st.booleans(),
)
def test_parse_never_raises(suffix, payload, retained):
    result = parse(P, f"{P}/{suffix}", payload, retained=retained)
    if isinstance(result, ControlError):
        assert result.message.startswith(suffix.replace("\n", "\\n") + ":")
        assert "\n" not in result.message and "\r" not in result.message
    else:
        assert result.topic == suffix


@given(st.binary(max_size=60), st.text(max_size=60))
def test_parse_never_raises_on_any_topic(payload, topic):
    result = parse(P, topic, payload)
    assert isinstance(result, ControlError) or topic.startswith(P + "/")


def test_deeply_nested_json_is_refused_not_raised():
    assert isinstance(parse(P, f"{P}/set/tempo", b"[" * 1000), ControlError)
    assert isinstance(parse(P, f"{P}/set/tempo", b"9" * 1000), ControlError)
    assert isinstance(
        parse(P, f"{P}/set/bars", b'{"value":' * 100 + b"1" + b"}" * 100), ControlError
    )


# --- payloads -----------------------------------------------------------------------------------


def test_status_payload_is_compact_sorted_json_with_online_true():
    payload = status_payload(
        {
            "mode": "continue",
            "style": "folk",
            "online": False,
            "ports": ("in", "out"),
            "p99": math.nan,
        },
        now=1700000000.12345,
    )
    assert payload == (
        b'{"mode":"continue","online":true,"p99":null,"ports":["in","out"],'
        b'"style":"folk","time":1700000000.123}'
    )


def test_offline_payloads_are_exact():
    assert offline_payload("stopped") == b'{"online":false,"reason":"stopped"}'
    assert offline_payload("connection lost") == b'{"online":false,"reason":"connection lost"}'


def test_metrics_and_error_payloads():
    assert (
        metrics_payload({"notes_in": 3, "latency_p50": math.inf, "nested": {"b": 1, "a": 2}})
        == b'{"latency_p50":null,"nested":{"a":2,"b":1},"notes_in":3}'
    )
    assert error_payload("p/set/tempo", 'set/tempo: bad\nvalue "x"', now=2.0) == (
        b'{"error":"set/tempo: bad value \\"x\\"","time":2.0,"topic":"p/set/tempo"}'
    )


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
            max_leaves=10,
        ),
        max_size=6,
    )
)
def test_payloads_are_always_strict_json(fields):
    def strict(text: str):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))

    status = strict(status_payload(fields).decode())
    assert status["online"] is True
    assert set(status) == {*fields, "online"}
    assert set(strict(metrics_payload(fields).decode())) == set(fields)


def test_control_imports_no_io_library():
    code = (
        "import sys, partimento.live.control\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('aiomqtt', 'paho', 'asyncio', 'socket', 'mido', 'rtmidi', 'onnxruntime'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
