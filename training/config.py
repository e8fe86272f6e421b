"""One dataclass configures a training run: defaults per style, then a TOML file, then flags."""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from partimento.config import ConfigError  # one ConfigError: a bad value, the key named

STYLES = ("bach", "bach-offline", "folk", "jazz", "piano", "abc")
MODEL_TYPES = ("lstm", "transformer", "gan", "deepbach")
MODELS_BY_STYLE: dict[str, tuple[str, ...]] = {
    "bach": ("lstm",),
    "bach-offline": ("lstm", "deepbach"),
    "folk": ("lstm", "transformer", "gan"),
    "jazz": ("lstm", "transformer"),
    "piano": ("lstm", "transformer"),
    "abc": ("lstm",),
}
"""The ``--model`` types each style builds (the first is its default)."""
STRATEGIES = ("none", "mirrored", "multiworker")
DATA_MODES = ("numeric", "event")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
LOSSES = ("sparse_categorical_crossentropy",)


@dataclass(frozen=True)
class TrainConfig:
    style: str = "bach"
    # optimisation
    epochs: int = 30
    batch_size: int = 32
    seq_len: int = 64
    learning_rate: float = 2e-3
    optimizer: str = "adam"
    loss: str = "sparse_categorical_crossentropy"
    clipnorm: float = 1.0
    lr_decay: float = 1.0  # the learning rate is multiplied by this after every epoch
    # model sizes
    embedding: int = 32
    units: int = 256
    layers: int = 2
    dropout: float = 0.2
    input_dropout: float = 0.0  # LSTM styles: dropout on what enters the first LSTM
    recurrent_dropout: float = 0.0  # LSTM styles: dropout on each LSTM's recurrent state
    tie_embedding: bool = False  # token LSTMs: the input embedding is the output matrix too
    dense: int = 128
    # DeepBach (bach-offline): past and future context, sampling gap, second LSTM
    timesteps: int = 16
    gap: int = 1
    lstm1: int = 200
    middle: int = 200
    second_lstm: bool = False
    # model type (folk, jazz, piano, abc): MechanicalBach's comparison
    model: str = "lstm"
    activation: str = "relu"  # hidden dense layers
    hidden_dense: int = 0  # hidden dense layers before the output (0 = none)
    embed_dim: int = 32  # transformer (defaults: MechanicalBach's training.py)
    num_heads: int = 2
    ff_dim: int = 32
    latent_dim: int = 100  # gan
    gan_dense: int = 1
    gan_hidden: int = 1000
    conv_start: int = 64
    conv_hidden: int = 256
    # data
    data_dir: str = ""  # jazz, piano: a folder of MIDI files (or wjazzd CSVs); abc: ABC files
    data_mode: str = "numeric"  # piano: numeric (notes and chords) or event (on/off/shift/vel)
    limit: int = 0  # pieces read from the corpus, 0 = all
    transpose: bool = True
    window_stride: int = 16
    grid_step: int = 2  # jazz, piano numeric tokens: sixteenths per token (1 keeps 16th runs)
    essen: bool = True
    oneill: bool = False
    kern_dir: str = ""
    cache_dir: str = "~/.cache/partimento"
    rebuild: bool = False
    # run
    strategy: str = "none"  # none | mirrored | multiworker (tf.distribute, TF_CONFIG)
    seed: int = 1337
    checkpoint_every: int = 5
    steps_per_epoch: int = 0  # 0 = one pass over the training windows
    progress: int = 1

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ConfigError(f"style: {self.style!r} is not one of {', '.join(STYLES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"optimizer: {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}"
            )
        for key, allowed in (
            ("model", MODEL_TYPES),
            ("strategy", STRATEGIES),
            ("data_mode", DATA_MODES),
        ):
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"{key}: {getattr(self, key)!r} is not one of {', '.join(allowed)}"
                )
        if self.model not in MODELS_BY_STYLE[self.style]:
            raise ConfigError(
                f"model: {self.model} is not available for {self.style} "
                f"({', '.join(MODELS_BY_STYLE[self.style])})"
            )
        if self.model == "transformer":
            stride = self.window_stride
            if self.seq_len % stride:
                near = max(stride, self.seq_len // stride * stride)
                raise ConfigError(
                    f"seq_len: a transformer's window ({self.seq_len}) must be a "
                    f"multiple of window_stride ({stride}), e.g. {near}"
                )
            if self.embed_dim % self.num_heads:
                raise ConfigError(
                    f"embed_dim: {self.embed_dim} is not a multiple of num_heads ({self.num_heads})"
                )
        if not 1 <= self.grid_step <= 4:
            raise ConfigError(f"grid_step: must be 1-4 sixteenths, got {self.grid_step}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss: {self.loss!r} is not one of {', '.join(LOSSES)}")
        for key in (
            "epochs",
            "batch_size",
            "seq_len",
            "embedding",
            "units",
            "layers",
            "dense",
            "timesteps",
            "gap",
            "lstm1",
            "middle",
            "checkpoint_every",
            "window_stride",
        ):
            if getattr(self, key) < 1:
                raise ConfigError(
                    f"{key}: must be a whole number of at least 1, got {getattr(self, key)}"
                )
        for key in (
            "embed_dim",
            "num_heads",
            "ff_dim",
            "latent_dim",
            "gan_dense",
            "gan_hidden",
            "conv_start",
            "conv_hidden",
        ):
            if getattr(self, key) < 1:
                raise ConfigError(
                    f"{key}: must be a whole number of at least 1, got {getattr(self, key)}"
                )
        for key in ("limit", "steps_per_epoch", "seed", "hidden_dense"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: must be 0 or more, got {getattr(self, key)}")
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"learning_rate: must be between 0 and 1, got {self.learning_rate}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay: must be in (0, 1], got {self.lr_decay}")
        for key in ("dropout", "input_dropout", "recurrent_dropout"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be in [0, 1), got {getattr(self, key)}")

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


STYLE_DEFAULTS: dict[str, dict[str, Any]] = {
    "bach": {
        "epochs": 20,
        "steps_per_epoch": 200,
        "seq_len": 128,
        "units": 256,
        "layers": 2,
        "embedding": 32,
        "dropout": 0.3,
        "learning_rate": 2e-3,
        "batch_size": 32,
    },
    # the lookahead decoder (training/styles/bach_lookahead.py): the live model's network,
    # reading the melody `timesteps` sixteenths ahead
    "bach-offline": {
        "epochs": 20,
        "steps_per_epoch": 200,
        "seq_len": 128,
        "units": 256,
        "layers": 2,
        "embedding": 32,
        "dropout": 0.3,
        "learning_rate": 2e-3,
        "batch_size": 32,
        "timesteps": 32,
    },
    "folk": {
        "epochs": 8,
        "steps_per_epoch": 0,
        "seq_len": 64,
        "units": 256,
        "layers": 1,
        "embedding": 48,
        "dropout": 0.2,
        "learning_rate": 2e-3,
        "batch_size": 64,
    },
    # the jazz LSTM project: batches of 16 sequences of 64 eighth notes, a checkpoint every 10
    # epochs; here on sixteenths (an eighth grid drops a fifth of the solos' notes), so 128
    "jazz": {
        "epochs": 50,
        "steps_per_epoch": 0,
        "grid_step": 1,
        "seq_len": 128,
        "batch_size": 16,
        "units": 256,
        "layers": 2,
        "embedding": 64,
        "dropout": 0.3,
        "learning_rate": 1e-3,
        "checkpoint_every": 10,
    },
    "piano": {
        "epochs": 20,
        "steps_per_epoch": 0,
        "seq_len": 100,
        "batch_size": 64,
        "units": 256,
        "layers": 2,
        "embedding": 64,
        "dropout": 0.2,
        "learning_rate": 1e-3,
    },
    # the MIT lab's character model
    "abc": {
        "epochs": 20,
        "steps_per_epoch": 0,
        "seq_len": 100,
        "batch_size": 32,
        "embedding": 256,
        "units": 1024,
        "layers": 1,
        "dropout": 0.0,
        "learning_rate": 5e-3,
    },
}


def _coerce(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    try:
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}") from None


RENAMED = {"verbose": "progress"}
"""Training keys of earlier releases, as runs and model cards saved them, and their names now."""


def from_saved(saved: dict[str, Any]) -> TrainConfig:
    """The configuration a run folder or a model card saved (keys of earlier releases renamed)."""
    known = {f.name for f in fields(TrainConfig)}
    values = {RENAMED.get(k, k): v for k, v in saved.items()}
    return TrainConfig(**{k: v for k, v in values.items() if k in known})


def resolve(
    style: str, file: Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Defaults for the style, then the TOML file's keys, then the flags that were given."""
    types = {f.name: type(f.default) for f in fields(TrainConfig)}
    values: dict[str, Any] = {"style": style, **STYLE_DEFAULTS.get(style, {})}
    if file is not None:
        try:
            data = tomllib.loads(Path(file).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file}: {exc}") from None
        data = data.get("train", data)
        values.update({RENAMED.get(k, k): v for k, v in data.items()})  # a run's saved config
    for k, v in (overrides or {}).items():
        if v is not None:
            values[k.replace("-", "_")] = v
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown training key (known: {', '.join(sorted(types))})")
    return TrainConfig(**{k: _coerce(k, v, types[k]) for k, v in values.items()})


def flag(key: str) -> str:
    """The command-line flag of a training key (``--key-name``; a bool's off form adds ``no-``)."""
    return "--" + key.replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ("style",)) -> None:
    """A ``--flag`` for every :class:`TrainConfig` field but ``skip`` (default None: the style's
    own value or the config file's)."""
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        kind = type(f.default)
        if kind is bool:
            parser.add_argument(
                flag(f.name),
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"(default {f.default})",
            )
        else:
            parser.add_argument(
                flag(f.name),
                type=kind,
                default=None,
                metavar=kind.__name__.upper(),
                help=f"(default {f.default!r} or the style's own)",
            )


def overrides(args: argparse.Namespace, *, skip: tuple[str, ...] = ("style",)) -> dict[str, Any]:
    """The :class:`TrainConfig` values given as flags (None where not given)."""
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name not in skip}
