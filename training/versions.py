"""Versions of what made a model, recorded in its contract."""

from __future__ import annotations

import contextlib
import platform
from importlib import metadata


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in (
        "partimento",
        "tensorflow",
        "keras",
        "tf2onnx",
        "onnx",
        "onnxruntime",
        "music21",
        "numpy",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out
