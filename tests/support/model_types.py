"""Tiny folk models of each type (``--model lstm|transformer|gan``), trained for two steps on
20 Essen tunes and exported, once per test session and shared by the test modules."""

from __future__ import annotations

import tempfile
from pathlib import Path

KINDS = ("lstm", "transformer", "gan")
WINDOW = 16  # seq_len: the transformer's window, the GAN's phrase length
SIZES = dict(
    epochs=1,
    steps_per_epoch=2,
    batch_size=8,
    units=16,
    layers=1,
    embedding=8,
    seq_len=WINDOW,
    limit=20,
    embed_dim=16,
    num_heads=2,
    ff_dim=16,
    latent_dim=8,
    gan_hidden=32,
    conv_start=8,
    conv_hidden=16,
    progress=0,
)

_BASE = Path(tempfile.mkdtemp(prefix="partimento-model-types-"))
_MADE: dict[str, Path] = {}


def tiny_model(kind: str) -> Path:
    """The exported model folder of a tiny folk model of type ``kind`` (trained once)."""
    if kind not in _MADE:
        from partimento.training.config import resolve
        from partimento.training.export import export
        from partimento.training.train import train

        cfg = resolve("folk", overrides={**SIZES, "model": kind, "cache_dir": str(_BASE / "cache")})
        train(cfg, _BASE / f"run-{kind}")
        export(_BASE / f"run-{kind}", _BASE / kind / "folk")
        _MADE[kind] = _BASE / kind / "folk"
    return _MADE[kind]


def tiny_run(kind: str) -> Path:
    """The run folder behind :func:`tiny_model`."""
    tiny_model(kind)
    return _BASE / f"run-{kind}"


def cache_dir() -> str:
    return str(_BASE / "cache")
