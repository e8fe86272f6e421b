"""The training commands (``partimento train``, ``export``, ``evaluate``, ``compare``): each
module owns its parser and its work; the command line imports one only when it runs."""

from __future__ import annotations

import importlib.util

from partimento.core.errors import CommandError

TRAIN_EXTRA = "pip install 'partimento[train]'"


def require_extra(what: str) -> None:
    """Refuse in one line when TensorFlow, tf2onnx or music21 is missing."""
    missing = [
        m for m in ("tensorflow", "tf2onnx", "music21") if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise CommandError(
            f"{what} needs the training extra ({', '.join(missing)} missing): {TRAIN_EXTRA}"
        )
