"""Baselines a trained model has to beat, in plain numpy and Python.

:class:`NGram` is an order-n Markov model over tokens with add-k smoothing: the probability of a
token given the n - 1 tokens before it. Each sequence's context starts filled with a padding
token (for folk: START, as the model is primed), and only the sequence's own tokens are scored.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence

import numpy as np


class NGram:
    """Order-``order`` n-gram over ``vocab_size`` tokens, add-``k`` smoothed."""

    def __init__(self, order: int, vocab_size: int, *, k: float = 0.1, pad: int = 0) -> None:
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be at least 1, got {vocab_size}")
        if k <= 0:
            raise ValueError(f"k must be above 0, got {k}")
        self.order = order
        self.vocab_size = vocab_size
        self.k = k
        self.pad = pad
        self._counts: dict[tuple[int, ...], Counter[int]] = defaultdict(Counter)
        self._totals: Counter[tuple[int, ...]] = Counter()

    def _events(self, seq: Sequence[int]) -> Iterator[tuple[tuple[int, ...], int]]:
        """(context, token) for every token of one sequence."""
        history = [self.pad] * (self.order - 1)
        for tok in (int(t) for t in seq):
            yield tuple(history), tok
            if self.order > 1:
                history = [*history[1:], tok]

    def fit(self, sequences: Iterable[Sequence[int]]) -> NGram:
        """Count every (context, token) of the training sequences; returns self."""
        for seq in sequences:
            for ctx, tok in self._events(seq):
                if not 0 <= tok < self.vocab_size:
                    raise ValueError(f"token {tok} is outside the vocabulary of {self.vocab_size}")
                self._counts[ctx][tok] += 1
                self._totals[ctx] += 1
        return self

    def probability(self, context: Sequence[int], token: int) -> float:
        """P(token | the last order - 1 tokens of context), smoothed."""
        return self._p(self._context(context), int(token))

    def _p(self, ctx: tuple[int, ...], token: int) -> float:
        seen = self._counts[ctx][token] if ctx in self._counts else 0
        return (seen + self.k) / (self._totals[ctx] + self.k * self.vocab_size)

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """P(every token | context), a vector summing to one."""
        ctx = self._context(context)
        p = np.full(self.vocab_size, self.k, np.float64)
        for tok, n in self._counts.get(ctx, {}).items():
            p[tok] += n
        return p / (self._totals[ctx] + self.k * self.vocab_size)

    def _context(self, context: Sequence[int]) -> tuple[int, ...]:
        n = self.order - 1
        if n == 0:
            return ()
        padded = [self.pad] * n + [int(t) for t in context]
        return tuple(padded[-n:])

    def _best(self, ctx: tuple[int, ...]) -> int:
        """The argmax of the smoothed distribution (token 0 for a context never seen)."""
        counts = self._counts.get(ctx)
        return counts.most_common(1)[0][0] if counts else 0

    def nll(self, sequences: Iterable[Sequence[int]]) -> float:
        """Mean negative log-likelihood per token, in nats."""
        total, n = 0.0, 0
        for seq in sequences:
            for ctx, tok in self._events(seq):
                total -= float(np.log(self._p(ctx, tok)))
                n += 1
        if n == 0:
            raise ValueError("no tokens to score")
        return total / n

    def accuracy(self, sequences: Iterable[Sequence[int]]) -> float:
        """How often the most likely token (after the context) is the one that comes."""
        hits, n = 0, 0
        for seq in sequences:
            for ctx, tok in self._events(seq):
                hits += self._best(ctx) == tok
                n += 1
        if n == 0:
            raise ValueError("no tokens to score")
        return hits / n

    def evaluate(self, sequences: Iterable[Sequence[int]]) -> dict[str, float]:
        """``{"nll": ..., "accuracy": ...}`` on the same sequences."""
        seqs = [list(s) for s in sequences]
        return {"nll": self.nll(seqs), "accuracy": self.accuracy(seqs)}
