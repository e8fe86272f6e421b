"""Shared fixtures: the chorale cache, a tiny trained and exported live model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.project import SHIPPED, require, train_tiny


@pytest.fixture(scope="session")
def chorales(tmp_path_factory):
    """music21's Bach chorales, split; parsed once into the user cache (about a minute)."""
    from partimento.training.data import chorales as corpus

    cache = Path(os.environ.get("PARTIMENTO_CACHE", "~/.cache/partimento")).expanduser()
    return corpus.load_corpus(cache)


@pytest.fixture(scope="session")
def tiny_live_model(tmp_path_factory):
    """A live bach model trained for a few steps on 12 chorales and exported (seconds)."""
    return train_tiny(tmp_path_factory.mktemp("tiny-bach"), "bach", dense=16, seq_len=32, limit=12)


@pytest.fixture(scope="session")
def tiny_folk_model(tmp_path_factory):
    """A folk model trained for a few steps on 20 Essen tunes and exported (seconds)."""
    return train_tiny(
        tmp_path_factory.mktemp("tiny-folk"), "folk", embedding=8, seq_len=16, limit=20
    )


@pytest.fixture(scope="module")
def jack():
    """A private jackd (dummy backend) for the module's tests, stopped after them."""
    from support.jack import jack_server

    with jack_server() as server:
        yield server


@pytest.fixture(scope="module")
def models() -> Path:
    """The folder of the shipped bach and folk models."""
    for name in ("bach", "folk"):
        require((SHIPPED / name / "model.onnx").exists(), f"no shipped {name} model")
    return SHIPPED


@pytest.fixture(scope="module")
def bach() -> Path:
    require((SHIPPED / "bach" / "model.onnx").exists(), "no shipped bach model")
    return SHIPPED / "bach"


@pytest.fixture(scope="module")
def loader():
    """model.load, each model loaded once for the module."""
    from partimento.files import model

    cache: dict[str, model.Model] = {}

    def load(name: str) -> model.Model:
        if name not in cache:
            cache[name] = model.load(name)
        return cache[name]

    return load
