"""The live harmonizer's tenor and alto heads in numpy, so candidates cost no LSTM run.

The ``bach`` step model reads a step's tokens through its LSTMs, then three small heads: bass
from the top LSTM's output ``x``; tenor from ``x`` and the bass chosen (``bass_given``); alto
from ``x``, the bass and the tenor. Each head is ``Dense(relu)`` then ``Dense`` to logits, the
given voices read through the model's pitch embedding.

Sampling ``k`` candidate chords for ``n`` sopranos needs the tenor and alto heads on ``n * k``
rows, but the LSTMs only on ``n`` (they read nothing the candidates change). Through the ONNX
graph each head call would run the LSTMs again for every row, about 85 % of the work; here the
heads run on the top LSTM's new ``h`` (its output for a one-step input, read from the state
output :attr:`GivenHeads.source`), with the same weights, exported as ``heads.npz`` beside
``model.onnx`` and checked against the graph's own logits at export and at load.

Pure: numpy arrays in, numpy arrays out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

LAYERS = ("tenor_hidden", "tenor", "alto_hidden", "alto")
"""The dense layers ``heads.npz`` holds, each as ``<layer>/kernel`` and ``<layer>/bias``."""
EMBEDDING = "pitch_embedding"


@dataclass(frozen=True, eq=False)
class GivenHeads:
    """The tenor and alto heads: ``source`` names the state output they read as ``x``."""

    source: str
    embedding: np.ndarray  # (vocabulary, embedding)
    weights: Mapping[str, tuple[np.ndarray, np.ndarray]]  # layer -> (kernel (in, out), bias)

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, np.ndarray], source: str, *, units: int, vocabulary: int
    ) -> GivenHeads:
        """Check the shapes against the model's ``units`` and ``vocabulary`` size; raises
        :class:`ValueError` naming the array that does not fit."""

        def get(name: str) -> np.ndarray:
            if name not in arrays:
                raise ValueError(f"heads lack the array {name!r}")
            return np.asarray(arrays[name], np.float32)

        emb = get(EMBEDDING)
        if emb.ndim != 2 or emb.shape[0] != vocabulary:
            raise ValueError(f"{EMBEDDING} is {emb.shape}, expected ({vocabulary}, E)")
        e = emb.shape[1]
        weights = {layer: (get(f"{layer}/kernel"), get(f"{layer}/bias")) for layer in LAYERS}
        hidden = {h: weights[f"{h}_hidden"][0].shape[-1] for h in ("tenor", "alto")}
        expected = {
            "tenor_hidden": (units + e, hidden["tenor"]),
            "tenor": (hidden["tenor"], vocabulary),
            "alto_hidden": (units + 2 * e, hidden["alto"]),
            "alto": (hidden["alto"], vocabulary),
        }
        for layer, (kernel, bias) in weights.items():
            if kernel.shape != expected[layer] or bias.shape != (expected[layer][1],):
                raise ValueError(
                    f"{layer} is {kernel.shape} + {bias.shape}, expected "
                    f"{expected[layer]} + ({expected[layer][1]},)"
                )
        return cls(source, emb, weights)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays as ``heads.npz`` stores them."""
        out = {EMBEDDING: self.embedding}
        for layer, (kernel, bias) in self.weights.items():
            out[f"{layer}/kernel"], out[f"{layer}/bias"] = kernel, bias
        return out

    def tenor(self, x: np.ndarray, bass: np.ndarray) -> np.ndarray:
        """Tenor logits (rows, vocabulary) from ``x`` (rows, units) and the bass tokens."""
        return self._head("tenor", np.concatenate([x, self.embedding[bass]], axis=1))

    def alto(self, x: np.ndarray, bass: np.ndarray, tenor: np.ndarray) -> np.ndarray:
        """Alto logits (rows, vocabulary) from ``x``, the bass and the tenor tokens."""
        return self._head(
            "alto", np.concatenate([x, self.embedding[bass], self.embedding[tenor]], axis=1)
        )

    def _head(self, voice: str, inputs: np.ndarray) -> np.ndarray:
        kernel, bias = self.weights[f"{voice}_hidden"]
        hidden = np.maximum(inputs @ kernel + bias, 0.0)
        kernel, bias = self.weights[voice]
        result: np.ndarray = hidden @ kernel + bias
        return result
