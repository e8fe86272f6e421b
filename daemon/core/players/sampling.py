"""Sampling maths: logits to probabilities with temperature, top-p and masks. Pure numpy."""

from __future__ import annotations

import numpy as np

from partimento.core.errors import PartimentoError


class SamplingError(PartimentoError, ValueError):
    pass


def check_temperature(t: float) -> float:
    if not (isinstance(t, (int, float)) and 0 < t <= 10):
        raise SamplingError(f"temperature must be in (0, 10], got {t!r}")
    return float(t)


def check_top_p(p: float) -> float:
    if not (isinstance(p, (int, float)) and 0 < p <= 1):
        raise SamplingError(f"top-p must be in (0, 1], got {p!r}")
    return float(p)


def probabilities(
    logits: np.ndarray,
    temperature: float = 1.0,
    *,
    top_p: float = 1.0,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Softmax of ``logits / temperature`` over the last axis, masked and nucleus-trimmed.

    ``mask`` is boolean (True = allowed). If a mask would forbid everything it is ignored for
    that row, so sampling always has something to choose.
    """
    z = np.asarray(logits, np.float64) / temperature
    if mask is not None:
        m = np.broadcast_to(np.asarray(mask, bool), z.shape)
        empty = ~m.any(axis=-1, keepdims=True)
        z = np.where(m | empty, z, -np.inf)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    if top_p < 1.0:
        order = np.argsort(-p, axis=-1)
        sorted_p = np.take_along_axis(p, order, axis=-1)
        before = np.cumsum(sorted_p, axis=-1) - sorted_p
        keep_sorted = before < top_p  # the smallest set whose mass reaches top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        p = np.where(keep, p, 0.0)
        p /= p.sum(axis=-1, keepdims=True)
    result: np.ndarray = p
    return result


def sample(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of a (..., V) probability array."""
    flat = p.reshape(-1, p.shape[-1])
    u = rng.random((flat.shape[0], 1))
    idx = (np.cumsum(flat, axis=-1) < u).sum(axis=-1)
    result: np.ndarray = np.minimum(idx, p.shape[-1] - 1).reshape(p.shape[:-1])
    return result


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    result: np.ndarray = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return result


def nll_and_hits(logits: np.ndarray, targets: np.ndarray) -> tuple[float, int, int]:
    """Summed negative log-likelihood (nats) of ``targets`` under ``logits`` (rows), how many
    rows' argmax is the target, and the number of rows."""
    targets = np.asarray(targets)
    lp = log_softmax(logits)
    nll = -float(lp[np.arange(len(targets)), targets].sum())
    return nll, int((np.asarray(logits).argmax(-1) == targets).sum()), len(targets)


def scale_mask(pitches: tuple[int, ...], tonic_pc: int, scale_pcs: tuple[int, ...]) -> np.ndarray:
    """True for every pitch whose pitch class belongs to the scale on ``tonic_pc``."""
    allowed = {(tonic_pc + s) % 12 for s in scale_pcs}
    return np.array([p % 12 in allowed for p in pitches])


MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)  # natural minor with the raised seventh
