"""Continuation by whole phrases: a generator model (``encoding["type"]`` ``phrase``, a GAN's
generator, training/styles/gan.py) writes ``phrase_steps`` sixteenths at once from noise.

A generator does not read the player, so :meth:`PhraseContinuer.observe` only remembers the
last ``phrase_steps`` sixteenths played. An answer draws ``candidates`` noise vectors from the
seeded generator (one batch through the model), samples every step's token with the
temperature, top-p and key mask, and keeps the candidate whose pitch-class histogram (each
pitch weighted by how long it sounds) is nearest, in L1, the player's remembered phrase; with
nothing played it keeps the first. The phrase is repeated to fill the answer (folk tunes
repeat their phrases) and transposed back by ``-shift`` into the player's key.

Decoding: START (a tune's end) is masked, never sampled; a hold after a rest or at the start
of the phrase is read as a rest.

Pure: numpy only; the model is any callable ``run(feeds, outputs) -> dict``.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from partimento.core.music import rules
from partimento.core.music.encoding import REST_CODE, START, Note, grid_to_notes
from partimento.core.players import sampling
from partimento.core.players.continuation import Sampler, check_continuation
from partimento.core.players.contract import Contract
from partimento.core.types import RunFn


def pitch_class_histogram(codes: np.ndarray) -> np.ndarray:
    """Sixteenths per pitch class of a grid (holds count for their note), summing to 1 (or all
    zeros when nothing sounds)."""
    hist = rules.pitch_class_durations(codes)
    total = hist.sum()
    return hist / total if total else hist


class PhraseContinuer(Sampler):
    """A phrase generator played as a :class:`partimento.core.players.continuation.Continuation`."""

    def __init__(
        self,
        contract: Contract,
        run: RunFn,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        shift: int = 0,
        allowed_pitch_classes: frozenset[int] | None = None,
    ) -> None:
        check_continuation(contract)
        enc = contract.encoding
        self.contract, self.vocab, self._run = contract, contract.vocabulary, run
        self._set_sampling(temperature, top_p, seed, shift)
        self.steps = int(enc["phrase_steps"])
        self.candidates = max(1, int(enc.get("candidates", 4)))
        noise = contract.input("noise")
        self._noise, self._latent = noise.name, int(noise.shape[-1])
        self._logits = contract.output("logits").name
        self._codes = np.array(
            [
                self.vocab.token_to_code(i) if s != START else REST_CODE
                for i, s in enumerate(self.vocab.symbols)
            ],
            np.int16,
        )  # masked
        self.mask = self._mask(allowed_pitch_classes)
        self.reset()

    def _mask(self, pcs: frozenset[int] | None) -> np.ndarray:
        """Allowed tokens: everything but START, pitches only of the scale when one is given."""
        mask = np.ones(len(self.vocab), bool)
        if START in self.vocab:
            mask[self.vocab.index(START)] = False
        if pcs is not None:
            for i, s in enumerate(self.vocab.symbols):
                if s.isdigit() and (int(s) - self.shift) % 12 not in pcs:
                    mask[i] = False
        return mask

    def reset(self) -> None:
        self.heard: deque[int] = deque(maxlen=self.steps)

    def observe(self, codes: int | list[int] | np.ndarray) -> None:
        """Remember the player's last phrase (in the model's key)."""
        for c in np.atleast_1d(np.asarray(codes)).tolist():
            self.heard.append(int(c) + self.shift if c >= 0 else int(c))

    def phrases(self) -> np.ndarray:
        """``candidates`` generated phrases as grid codes in the model's key."""
        noise = self.rng.standard_normal((self.candidates, self._latent)).astype(np.float32)
        logits = self._run({self._noise: noise}, [self._logits])[self._logits]
        p = sampling.probabilities(logits, self.temperature, top_p=self.top_p, mask=self.mask)
        result: np.ndarray = self._codes[sampling.sample(p, self.rng)]
        return result

    def choose(self, phrases: np.ndarray) -> np.ndarray:
        """The phrase whose pitch-class histogram is nearest the player's (the first if none)."""
        heard = pitch_class_histogram(np.array(self.heard, np.int16))
        if not heard.any():
            result: np.ndarray = phrases[0]
            return result
        dist = [np.abs(pitch_class_histogram(p) - heard).sum() for p in phrases]
        nearest: np.ndarray = phrases[int(np.argmin(dist))]
        return nearest

    def continue_for(self, steps: int) -> np.ndarray:
        """``steps`` sixteenths in the player's key: the chosen phrase, repeated."""
        phrase = self.choose(self.phrases())
        out = np.resize(phrase, steps).astype(np.int16)
        return np.where(out >= 0, out - self.shift, out).astype(np.int16)

    def continue_notes(self, steps: int) -> list[Note]:
        return grid_to_notes(self.continue_for(steps))
