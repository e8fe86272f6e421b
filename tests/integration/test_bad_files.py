"""What a user sees when a file or name is wrong: ``partimento run`` and ``partimento
harmonize`` as real subprocesses, each failing with exit code 1 and exactly one line on stderr,
``partimento: error: ...``, which names the file, key or port and says what is wrong. No
traceback, nothing on stdout, nothing written.

Cases: the config file (missing, not UTF-8, not TOML, a bad value, an unknown key); a model
folder (``model.onnx`` random bytes or cut short, ``model.json`` not JSON or lacking a key,
a vocabulary that does not fit the graph's logits) through ``run``'s ``models_dir`` and
through ``harmonize --model``; the melody file (random bytes, a cut header or track, no notes,
missing); a MIDI port name that matches nothing, on a private jackd (tests/support/jack.py; skipped
without jackd, failed without it under ``CI=true``).

Defects found and not fixed here are ``xfail(strict=True)``: they fail loudly once fixed, so
the marker is removed with the fix.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import mido
import pytest

from partimento.config import MidiConfig
from partimento.live.midi_io import open_input, open_output

from support.jack import JACK_BACKEND, JackServer, jack_server
from support.project import ROOT, SHIPPED, require

ERROR = "partimento: error: "
TIMEOUT = 60


# --- running the command line -------------------------------------------------------------------


def base_env(**extra: str) -> dict[str, str]:
    """This interpreter's environment, the checkout importable, no models from elsewhere."""
    env = {k: v for k, v in os.environ.items() if k != "PARTIMENTO_MODELS"}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def partimento(
    *args: object, cwd: Path, env: dict[str, str] | None = None, script: bool = False
) -> subprocess.CompletedProcess[str]:
    """``python -m partimento.cli ARGS`` (or the installed ``partimento`` script) in ``cwd``."""
    if script:
        found = shutil.which("partimento", path=str(Path(sys.executable).parent))
        if found is None:
            pytest.skip("the partimento script is not installed beside this interpreter")
        command = [found]
    else:
        command = [sys.executable, "-m", "partimento.cli"]
    return subprocess.run(
        [*command, *map(str, args)],
        cwd=cwd,
        env=env or base_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    """The one stderr line of a failed command, after ``partimento: error: ``."""
    shown = f"exit {out.returncode}, stdout {out.stdout!r}, stderr {out.stderr!r}"
    assert out.returncode == 1, shown
    assert "Traceback" not in out.stderr, shown
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and out.stderr == lines[0] + "\n", f"not one line: {shown}"
    assert lines[0].startswith(ERROR), shown
    assert out.stdout == "", shown
    return lines[0][len(ERROR) :]


@pytest.fixture(scope="module")
def melody(tmp_path_factory) -> Path:
    """A good one-track melody, eight quarter notes."""
    path = tmp_path_factory.mktemp("melody") / "melody.mid"
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for pitch in (67, 69, 71, 72, 74, 72, 71, 67):
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=480))
    mid.save(str(path))
    return path


# --- the config file ----------------------------------------------------------------------------

CONFIGS: list[tuple[str, bytes | None, str]] = [
    # (case, the file's bytes (None: no file), the line after "partimento: error: ")
    ("missing", None, r"{path}: no such config file"),
    ("binary garbage", random.Random(3).randbytes(300), r"{path}: not UTF-8 text"),
    (
        "text that is not TOML",
        b"listen to the keyboard, please\n",
        r"{path}: not valid TOML: .+ \(at line 1, column \d+\)",
    ),
    (
        "truncated table header",
        b'[midi\ninput = "Keystation"\n',
        r"{path}: not valid TOML: Expected ']' at the end of a table declaration "
        r"\(at line 1, column 6\)",
    ),
    (
        "cut off in a value",
        b"[harmonize]\nchannels = { alto = 2, tenor = ",
        r"{path}: not valid TOML: .+ \(at end of document\)",
    ),
    (
        "channel out of range",
        b"[midi]\ninput_channel = 99\n",
        r'midi\.input_channel: must be a MIDI channel 1-16 or "all", got 99',
    ),
    (
        "harmony channel out of range",
        b"[harmonize]\nchannels = { alto = 17 }\n",
        r"harmonize\.channels\.alto: must be a MIDI channel 1-16, got 17",
    ),
    (
        "unknown key",
        b"[midi]\nchannel = 99\n",
        r"midi\.channel: unknown key \(did you mean midi\.input_channel\?\)",
    ),
    (
        "unknown table",
        b'[harmonise]\nmodel = "bach"\n',
        r"harmonise: unknown key \(did you mean harmonize\?\)",
    ),
    (
        "wrong type",
        b'[tempo]\nbpm = "fast"\n',
        r'tempo\.bpm: must be a number from 30 to 300, got "fast"',
    ),
]


@pytest.mark.parametrize(("case", "content", "expected"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_a_bad_config_file_is_one_line(tmp_path, case, content, expected):
    path = tmp_path / "partimento.toml"
    if content is not None:
        path.write_bytes(content)
    line = one_line(partimento("run", "--config", path, cwd=tmp_path))
    assert re.fullmatch(expected.format(path=re.escape(str(path))), line), line


def test_a_missing_config_through_the_installed_script(tmp_path):
    line = one_line(partimento("run", "--config", "nowhere.toml", cwd=tmp_path, script=True))
    assert line == "nowhere.toml: no such config file"


def test_a_config_that_is_a_folder(tmp_path):
    (tmp_path / "conf.d").mkdir()
    line = one_line(partimento("run", "--config", "conf.d", cwd=tmp_path))
    assert line == "conf.d: cannot read: Is a directory"


# --- model folders ------------------------------------------------------------------------------


def _onnx_random(folder: Path) -> None:
    (folder / "model.onnx").write_bytes(random.Random(1).randbytes(5000))


def _onnx_truncated(folder: Path) -> None:
    blob = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(blob[: len(blob) // 2])


def _json_not_json(folder: Path) -> None:
    text = (folder / "model.json").read_text()
    (folder / "model.json").write_text(text[: len(text) // 3])


def _json_binary(folder: Path) -> None:
    (folder / "model.json").write_bytes(b"\x89PNG\r\n\x1a\n{ not json")


def _json_lacks_tensors(folder: Path) -> None:
    data = json.loads((folder / "model.json").read_text())
    del data["tensors"]
    (folder / "model.json").write_text(json.dumps(data))


def _vocabulary_too_small(folder: Path) -> None:
    data = json.loads((folder / "model.json").read_text())
    data["encoding"]["vocabulary"] = data["encoding"]["vocabulary"][:40]
    (folder / "model.json").write_text(json.dumps(data))


def _vocabulary_too_large(folder: Path) -> None:
    """The vocabulary and the contract's logits shapes grown alike: only the graph disagrees."""
    data = json.loads((folder / "model.json").read_text())
    data["encoding"]["vocabulary"] += [str(p) for p in range(100, 110)]
    for t in data["tensors"]["outputs"]:
        if t["role"] == "logits":
            t["shape"][-1] = len(data["encoding"]["vocabulary"])
    (folder / "model.json").write_text(json.dumps(data))


ONNX_CANNOT_LOAD = r"{folder}/model\.onnx cannot be loaded: .*INVALID_PROTOBUF.*"
JSON_NOT_READABLE = r"{folder}/model\.json is not readable JSON: .+"
MODELS: list[tuple[str, Callable[[Path], None], str]] = [
    ("onnx random bytes", _onnx_random, ONNX_CANNOT_LOAD),
    ("onnx truncated", _onnx_truncated, ONNX_CANNOT_LOAD),
    ("json cut short", _json_not_json, JSON_NOT_READABLE),
    ("json binary", _json_binary, JSON_NOT_READABLE),
    ("json lacks a key", _json_lacks_tensors, r"{folder}/model\.json: .*lacks 'tensors'"),
    (
        "vocabulary smaller than the logits",
        _vocabulary_too_small,
        r"model\.json does not match {folder}/model\.onnx: its vocabulary has 40 symbols, "
        r"the graph's \w+ logits 48",
    ),
    (
        "vocabulary larger than the logits",
        _vocabulary_too_large,
        r"model\.json does not match {folder}/model\.onnx: its vocabulary has 58 symbols, "
        r"the graph's \w+ logits 48",
    ),
]


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory) -> dict[str, Path]:
    """Per case, a models folder holding a damaged copy of the shipped live ``bach``."""
    require((SHIPPED / "bach" / "model.onnx").exists(), "no shipped bach model")
    base = tmp_path_factory.mktemp("models")
    out = {}
    for i, (case, damage, _) in enumerate(MODELS):
        models = base / f"case{i}"
        shutil.copytree(SHIPPED / "bach", models / "bach")
        damage(models / "bach")
        out[case] = models
    return out


def _expected(pattern: str, folder: Path) -> str:
    return pattern.format(folder=re.escape(str(folder)))


@pytest.mark.parametrize(
    ("case", "pattern"), [(c, p) for c, _, p in MODELS], ids=[c for c, _, _ in MODELS]
)
def test_a_broken_model_stops_run_in_one_line(broken_models, tmp_path, case, pattern):
    """Reported before any MIDI port is opened: no MIDI backend is needed to see it."""
    models = broken_models[case]
    config = tmp_path / "partimento.toml"
    config.write_text(f'models_dir = {json.dumps(str(models))}\n[harmonize]\nmodel = "bach"\n')
    line = one_line(partimento("run", "--config", config, cwd=tmp_path))
    prefix = "cannot start in harmonize mode with model 'bach': "
    assert line.startswith(prefix), line
    assert re.fullmatch(_expected(pattern, models / "bach"), line[len(prefix) :]), line


@pytest.mark.parametrize(
    ("case", "pattern"), [(c, p) for c, _, p in MODELS], ids=[c for c, _, _ in MODELS]
)
def test_a_broken_model_stops_harmonize_in_one_line(broken_models, melody, tmp_path, case, pattern):
    folder = broken_models[case] / "bach"
    out = tmp_path / "out.mid"
    line = one_line(
        partimento(
            "harmonize", melody, "-o", out, "--live", "--model", folder, "--seed", 1, cwd=tmp_path
        )
    )
    assert re.fullmatch(_expected(pattern, folder), line), line
    assert not out.exists()


def test_an_offline_model_with_the_wrong_vocabulary(melody, tmp_path):
    """The graph check finds it: the offline model's graph scores the bass (its tenor and
    alto come from numpy heads)."""
    require((SHIPPED / "bach-offline" / "model.onnx").exists(), "no shipped bach-offline")
    folder = tmp_path / "bach-offline"
    shutil.copytree(SHIPPED / "bach-offline", folder)
    data = json.loads((folder / "model.json").read_text())
    size = len(data["encoding"]["vocabulary"])
    data["encoding"]["vocabulary"] += [str(p) for p in range(100, 103)]
    (folder / "model.json").write_text(json.dumps(data))
    line = one_line(
        partimento("harmonize", melody, "-o", tmp_path / "out.mid", "--model", folder, cwd=tmp_path)
    )
    assert line == (
        f"model.json does not match {folder}/model.onnx: its vocabulary has "
        f"{size + 3} symbols, the graph's bass logits {size}"
    )


def test_a_model_name_found_nowhere(tmp_path):
    config = tmp_path / "partimento.toml"
    config.write_text('[harmonize]\nmodel = "bahc"\n')
    line = one_line(partimento("run", "--config", config, cwd=tmp_path))
    assert line.startswith(
        "cannot start in harmonize mode with model 'bahc': no model 'bahc': "
        "not a model folder and not found in "
    ), line


# --- melody files -------------------------------------------------------------------------------


def _write(content: bytes) -> Callable[[Path, Path], None]:
    return lambda path, good: path.write_bytes(content)


def _cut(size: int) -> Callable[[Path, Path], None]:
    return lambda path, good: path.write_bytes(good.read_bytes()[:size])


def _no_notes(path: Path, good: Path) -> None:
    mid = mido.MidiFile(type=1)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500_000))
    track.append(mido.Message("program_change", program=52))
    track.append(mido.Message("control_change", control=7, value=100, time=480))
    mid.save(str(path))


NOT_MIDI = r"{path} is not a readable MIDI file: .*"
MELODIES: list[tuple[str, Callable[[Path, Path], None], str]] = [
    (
        "random bytes",
        _write(random.Random(5).randbytes(2000)),
        r"{path} is not a readable MIDI file: MThd not found. Probably not a MIDI file",
    ),
    ("empty", _write(b""), NOT_MIDI),
    ("header cut short", _cut(10), NOT_MIDI),
    ("track cut short", _cut(40), NOT_MIDI),
    (
        "undefined status byte",
        lambda path, good: path.write_bytes(
            good.read_bytes()[:14] + b"MTrk\x00\x00\x00\x08\x00\xf5\x01\x02\x00\xff\x2f\x00"
        ),
        r"{path} is not a readable MIDI file: undefined status byte 0xf5",
    ),
    ("no notes", _no_notes, r"{path} holds no notes"),
]


@pytest.mark.parametrize(("case", "make", "pattern"), MELODIES, ids=[c for c, _, _ in MELODIES])
def test_a_bad_melody_file_is_one_line(melody, tmp_path, case, make, pattern):
    path = tmp_path / "tune.mid"
    make(path, melody)
    out = tmp_path / "out.mid"
    line = one_line(partimento("harmonize", path, "-o", out, cwd=tmp_path))
    assert re.fullmatch(pattern.format(path=re.escape(str(path))), line), line
    assert not out.exists()


def test_a_missing_melody_file(tmp_path):
    line = one_line(partimento("harmonize", "nothing.mid", "-o", "out.mid", cwd=tmp_path))
    assert line == "nothing.mid does not exist"
    assert not (tmp_path / "out.mid").exists()


def test_a_cut_midi_file_says_why(melody, tmp_path):
    path = tmp_path / "tune.mid"
    _cut(10)(path, melody)
    line = one_line(partimento("harmonize", path, "-o", tmp_path / "out.mid", cwd=tmp_path))
    assert not line.endswith(": "), line


def test_a_midi_file_with_zero_ticks_per_beat_names_the_file(melody, tmp_path):
    path = tmp_path / "tune.mid"
    blob = melody.read_bytes()
    path.write_bytes(blob[:12] + b"\x00\x00" + blob[14:])  # the header's division: 0
    line = one_line(partimento("harmonize", path, "-o", tmp_path / "out.mid", cwd=tmp_path))
    assert line.startswith(f"{path} "), line


# --- MIDI ports that are not there --------------------------------------------------------------

KEYS, SYNTH = "bf-keys", "bf-synth"
KEYS_CLIENT, SYNTH_CLIENT = "bf-test-keys", "bf-test-synth"


@pytest.fixture(scope="module")
def jack() -> Iterator[JackServer]:
    """A private jackd with a keyboard (a port to read) and a synthesizer (one to write)."""
    with jack_server() as server:
        synth = open_input(
            MidiConfig(virtual_input=SYNTH), backend=JACK_BACKEND, client_name=SYNTH_CLIENT
        )
        keys = open_output(
            MidiConfig(virtual_output=KEYS), backend=JACK_BACKEND, client_name=KEYS_CLIENT
        )
        try:
            yield server
        finally:
            keys.close()
            synth.close()


def _run_with(jack: JackServer, tmp_path: Path, midi: str, *, backend: bool = True) -> str:
    config = tmp_path / "partimento.toml"
    config.write_text(f"[midi]\n{midi}")
    env = {**jack.env(), "PYTHONPATH": str(ROOT)}
    if not backend:
        env.pop("MIDO_BACKEND")
    env.pop("PARTIMENTO_MODELS", None)
    return one_line(partimento("run", "--config", config, cwd=tmp_path, env=env))


def test_a_keyboard_that_is_not_there(jack, tmp_path):
    """The output opens (a panic is even sent to it), the input does not: one line, not the
    start-up's log lines nor the stop's summary."""
    line = _run_with(jack, tmp_path, f'input = "Keystation 49"\noutput = "{SYNTH}"\n')
    assert re.fullmatch(r"no MIDI input matches 'Keystation 49' \(inputs: .+\)", line), line
    assert f"{KEYS_CLIENT}:{KEYS}" in line


def test_a_synthesizer_that_is_not_there(jack, tmp_path):
    line = _run_with(jack, tmp_path, f'input = "{KEYS}"\noutput = "Nord Stage"\n')
    assert re.fullmatch(r"no MIDI output matches 'Nord Stage' \(outputs: .+\)", line), line
    assert f"{SYNTH_CLIENT}:{SYNTH}" in line


def test_a_regex_that_matches_nothing(jack, tmp_path):
    line = _run_with(jack, tmp_path, f'match = "regex"\ninput = "^Key.*49$"\noutput = "{SYNTH}"\n')
    assert line.startswith(r"no MIDI input matches '^Key.*49$' (inputs: "), line
    assert f"{KEYS_CLIENT}:{KEYS}" in line


def test_a_keyboard_that_is_not_there_with_the_backend_left_to_rtmidi(jack, tmp_path):
    """``midi.api = "auto"`` and no ``MIDO_BACKEND``: rtmidi tries ALSA first, whose C library
    prints to stderr where it is missing; that is not let through either."""
    line = _run_with(jack, tmp_path, 'input = "Keystation 49"\n', backend=False)
    assert line.startswith("no MIDI input matches 'Keystation 49' (inputs: "), line
