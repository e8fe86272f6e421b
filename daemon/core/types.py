"""Type aliases shared across Partimento, each defined here once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from partimento.core.players.contract import Contract

MidiOut = tuple[int, ...]
"""A raw MIDI message: status byte then data bytes, e.g. ``(0x90 | channel, pitch, velocity)``
(:mod:`partimento.core.midi` builds and checks them)."""

Feeds = dict[str, np.ndarray]
"""A model's inputs by name."""

Outputs = dict[str, np.ndarray]
"""A model's outputs by name."""

RunFn = Callable[[Feeds, list[str]], Outputs]
"""Runs a model: its inputs, the names of the outputs wanted, those outputs by name."""


class ModelLike(Protocol):
    """What plays a model: its contract and a way to run it (:class:`partimento.files.model.Model`,
    or a test's fake)."""

    @property
    def contract(self) -> Contract: ...

    def run(self, feeds: Feeds, outputs: list[str] | None = None) -> Outputs: ...
