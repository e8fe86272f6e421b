"""The project's folders, the CI rule for missing pieces, and tiny trained models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "exported_models"
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, why: str) -> None:
    """Skip with a message, except under CI where a missing piece is a failure."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required under CI: {why}")
        pytest.skip(why)


def train_tiny(base: Path, style: str, **sizes) -> Path:
    """Train ``style`` for two steps on a few pieces (cached under ``base``) and export it."""
    from partimento.training.config import resolve
    from partimento.training.export import export
    from partimento.training.train import train

    cfg = resolve(
        style,
        overrides=dict(
            epochs=1,
            steps_per_epoch=2,
            units=16,
            layers=1,
            progress=0,
            cache_dir=str(base / "cache"),
            **sizes,
        ),
    )
    train(cfg, base / "run")
    export(base / "run", base / f"{style}-tiny")
    return base / f"{style}-tiny"
