"""Where ``partimento`` finds its models and its configuration, as a user sees it: a model
exported by name plays by name from any folder, ``$PARTIMENTO_MODELS`` and
``$PARTIMENTO_CONFIG`` are read, the user's own config folder comes before the shipped
default, and ``--config`` before everything. Each case runs the real command in a subprocess
with its own home folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import pytest

from support.project import SHIPPED, require


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A user with empty home, config and data folders; no PARTIMENTO_* variables."""
    home = tmp_path / "home"
    home.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("PARTIMENTO_")}
    return {
        **base,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }


def partimento(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "partimento.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def bad_config(path: Path) -> Path:
    """A config that fails on a key, so the error line shows which file was read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("mode = \n")  # not TOML
    return path


def test_a_model_in_the_users_models_folder_plays_by_name(env, tmp_path):
    require((SHIPPED / "folk" / "model.onnx").exists(), "no shipped folk model")
    mine = Path(env["XDG_DATA_HOME"]) / "partimento" / "models" / "my-folk"
    shutil.copytree(SHIPPED / "folk", mine)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = partimento("sample", "my-folk", "-o", "x.mid", "--length", "2", env=env, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert len(mido.MidiFile(elsewhere / "x.mid").tracks) >= 2


def test_a_missing_model_names_every_folder_in_order(env, tmp_path):
    env["PARTIMENTO_MODELS"] = str(tmp_path / "team-models")
    done = partimento("sample", "nowhere", "-o", "x.mid", env=env, cwd=tmp_path)
    assert done.returncode == 1
    line = done.stderr.strip()
    assert "\n" not in line and line.startswith("partimento: error: no model 'nowhere'")
    user = str(Path(env["XDG_DATA_HOME"]) / "partimento" / "models")
    looked = line.split("not found in ")[1].split(", ")
    assert looked[:2] == [str(tmp_path / "team-models"), user]
    assert Path(looked[2]).name in ("models", "exported_models")  # the shipped ones
    assert (Path(looked[2]) / "bach" / "model.json").is_file()


def test_partimento_models_comes_before_the_shipped_models(env, tmp_path):
    broken = tmp_path / "team-models" / "bach"
    broken.mkdir(parents=True)
    (broken / "model.json").write_text("{")
    env["PARTIMENTO_MODELS"] = str(tmp_path / "team-models")
    melody = tmp_path / "melody.mid"
    shutil.copy(SHIPPED.parent / "docs" / "examples" / "chorale-melody.mid", melody)
    done = partimento("harmonize", str(melody), "-o", "h.mid", "--live", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert f"{broken / 'model.json'} is not readable JSON" in done.stderr


def test_config_order_flag_then_variable_then_user_folder_then_shipped(env, tmp_path):
    user = bad_config(Path(env["XDG_CONFIG_HOME"]) / "partimento" / "partimento.toml")
    done = partimento("run", env=env, cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.startswith(f"partimento: error: {user}")

    variable = bad_config(tmp_path / "from-env.toml")
    env["PARTIMENTO_CONFIG"] = str(variable)
    done = partimento("run", env=env, cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.startswith(f"partimento: error: {variable}")

    given = bad_config(tmp_path / "given.toml")
    done = partimento("run", "--config", str(given), env=env, cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.startswith(f"partimento: error: {given}")


def test_without_any_config_the_shipped_default_is_read(env):
    from partimento.files import locations

    assert locations.config_file(environ={}).name == "partimento.toml"
    code = (
        "from partimento.files import locations; from partimento.config import load; "
        "p = locations.config_file(); c = load(p); print(p, c.mode, c.midi.output)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    path, mode = done.stdout.split()[:2]
    assert Path(path) == locations.shipped_config() and mode == "harmonize"


def test_train_export_by_name_writes_into_the_users_models_folder(monkeypatch, tmp_path):
    from partimento.files import locations
    from partimento.training.commands.train import export_folder

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert export_folder("my-style") == tmp_path / "data" / "partimento" / "models" / "my-style"
    assert locations.user_models() in locations.models_dirs()
    assert export_folder("out/my-style") == Path("out/my-style")
