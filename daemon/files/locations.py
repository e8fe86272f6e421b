"""Where Partimento finds its files: models, the configuration, the unit templates.

Everything Partimento ships travels inside the package and is read with
:mod:`importlib.resources`, so a wheel, a ``pipx`` install and an editable install from a clone
all find the same files:

- ``partimento.models``: the shipped models (the repository's ``exported_models/``);
- ``partimento.defaults``: the default configuration (``config/``);
- ``partimento.units``: the systemd unit templates (``systemd/``);
- ``partimento.examples``: the example melody (``docs/examples/``).

Named models are looked for in order: the configured ``models_dir`` (``--models-dir``),
``$PARTIMENTO_MODELS``, the user's models folder (where ``partimento train --export NAME``
writes), then the shipped ones. The configuration in order: ``--config``,
``$PARTIMENTO_CONFIG``, ``partimento.toml`` in the user's config folder, then the shipped
default. The per-user folders are platformdirs' (``~/.local/share/partimento`` and
``~/.config/partimento`` on Linux, ``~/Library/Application Support/partimento`` on macOS,
``%LOCALAPPDATA%\\partimento`` on Windows).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import platformdirs

from partimento.core.errors import PartimentoError

APP = "partimento"
MODELS_ENV = "PARTIMENTO_MODELS"
CONFIG_ENV = "PARTIMENTO_CONFIG"
CONFIG_NAME = "partimento.toml"


class LocationError(PartimentoError):
    """A shipped file that is not there (a broken installation)."""


def shipped(package: str) -> Path:
    """The folder of one of the data packages Partimento ships (``partimento.models``...)."""
    try:
        folder = resources.files(package)
    except ModuleNotFoundError:
        raise LocationError(f"{package} is missing: reinstall partimento") from None
    if not isinstance(folder, Path):  # e.g. imported from a zip file: onnxruntime needs files
        raise LocationError(f"{package} is not on the file system ({folder}): install the wheel")
    return folder


def shipped_models() -> Path:
    return shipped("partimento.models")


def shipped_config() -> Path:
    """The default ``partimento.toml``, every key documented."""
    return shipped("partimento.defaults") / CONFIG_NAME


def shipped_train_config() -> Path:
    """The default ``train.toml``."""
    return shipped("partimento.defaults") / "train.toml"


def unit_templates() -> Path:
    return shipped("partimento.units")


def example_melody() -> Path:
    """A chorale melody as MIDI (the one ``docs/examples/chorale-melody.mid`` holds)."""
    return shipped("partimento.examples") / "chorale-melody.mid"


def user_models() -> Path:
    """The user's own models: ``partimento train --export NAME`` writes ``NAME`` here."""
    return Path(platformdirs.user_data_dir(APP, appauthor=False)) / "models"


def user_config() -> Path:
    """``partimento.toml`` in the user's config folder (``service install --user`` writes it)."""
    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / CONFIG_NAME


def models_dirs(
    models_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> list[Path]:
    """Where named models are looked for, first match wins."""
    env = os.environ if environ is None else environ
    dirs = [models_dir] if models_dir is not None else []
    if env.get(MODELS_ENV):
        dirs.append(Path(env[MODELS_ENV]).expanduser())
    dirs += [user_models(), shipped_models()]
    return dirs


def config_file(given: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The configuration to read: ``given`` (``--config``), else ``$PARTIMENTO_CONFIG``, else
    the user's ``partimento.toml`` if there is one, else the shipped default."""
    env = os.environ if environ is None else environ
    if given:
        return Path(given).expanduser()
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    user = user_config()
    return user if user.is_file() else shipped_config()
