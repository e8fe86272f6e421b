"""Styles: each module knows its data, its Keras model and the tensors of its step model.

A style module provides ``KIND``, ``prepare(cfg) -> Prepared``, ``build(cfg, encoding) ->
(training model, step model)`` and ``tensors(cfg, encoding) -> (inputs, outputs)``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

MODULES = {
    "bach": "partimento.training.styles.bach",
    "bach-offline": "partimento.training.styles.bach_lookahead",
    "folk": "partimento.training.styles.folk",
    "jazz": "partimento.training.styles.jazz",
    "piano": "partimento.training.styles.piano",
    "abc": "partimento.training.styles.abc",
}
MODEL_MODULES = {("bach-offline", "deepbach"): "partimento.training.styles.bach_offline"}
"""A model type a style builds in a module of its own (``--model deepbach``: DeepBach)."""


@dataclass(frozen=True)
class Split:
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    weight: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(next(iter(self.x.values())))


@dataclass(frozen=True)
class Prepared:
    encoding: dict
    splits: dict[str, Split]
    data: dict = field(default_factory=dict)


def get(style: str, model: str | None = None) -> ModuleType:
    try:
        return importlib.import_module(MODEL_MODULES.get((style, model), MODULES[style]))
    except KeyError:
        raise ValueError(f"unknown style {style!r} (known: {', '.join(MODULES)})") from None
