"""Continuation in the daemon: the :class:`Continuation` interface every continuation model
plays through, :func:`make` choosing the implementation by the contract's
``encoding["type"]``, and :class:`Continuer`, the one for sixteenth-grid melody models (folk).

Melody continuation with a stateful step model, one sixteenth token at a time.

The model's recurrent state is kept warm: every step the player plays is fed as it happens
(:meth:`Continuer.observe`), so an answer (:meth:`Continuer.continue_for`) starts at once,
without re-reading the phrase. Styles trained in one key (folk: C major / A minor) read the
player transposed by ``shift`` semitones and answer transposed back.

Pure: the model is any callable ``run(feeds, outputs) -> dict``.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np

from partimento.core.music.encoding import (
    HOLD_CODE,
    REST_CODE,
    START,
    Note,
    folk_transposition,
    grid_to_notes,
)
from partimento.core.players import sampling
from partimento.core.players.contract import Contract
from partimento.core.types import RunFn


class Continuation(Protocol):
    """What the engine asks of a continuation model, whatever its encoding.

    The engine hears the player as a monophonic sixteenth grid (the top line of what is
    played: grid codes, pitch / ``HOLD_CODE`` / ``REST_CODE``) and wants the answer as notes on
    that grid, chords allowed. ``shift`` semitones move the player into the model's key (0 for
    a model trained in every key); the answer comes back in the player's key.
    """

    temperature: float

    def observe(self, codes: int | list[int] | np.ndarray) -> None:
        """The player's next sixteenths, as they happen (keeps a recurrent state warm)."""

    def continue_notes(self, steps: int) -> list[Note]:
        """An answer of ``steps`` sixteenths: notes (pitch, start step, length in steps)."""

    def reset(self) -> None:
        """Forget the phrase."""


IMPLEMENTATIONS = {
    "grid": "partimento.core.players.continuation:Continuer",
    "events": "partimento.core.players.events:EventContinuer",
    "abc": "partimento.core.players.abc:AbcContinuer",
    "phrase": "partimento.core.players.phrases:PhraseContinuer",
}
"""``encoding["type"]`` of a continuation contract -> its :class:`Continuation` class (each
constructed like :class:`Continuer`). A contract without a type is a ``grid`` model."""


def make(contract: Contract, run: RunFn, **kwargs: Any) -> Continuation:
    """The :class:`Continuation` that plays ``contract``'s model; ``kwargs`` as
    :class:`Continuer` takes them."""
    kind = contract.encoding.get("type", "grid")
    where = IMPLEMENTATIONS.get(kind)
    if where is None:
        raise ValueError(
            f"model {contract.name}: unknown continuation encoding {kind!r} "
            f"(known: {', '.join(IMPLEMENTATIONS)})"
        )
    module, name = where.split(":")
    made: Continuation = getattr(importlib.import_module(module), name)(contract, run, **kwargs)
    return made


def check_continuation(contract: Contract) -> None:
    """:class:`ValueError` unless ``contract`` describes a continuation model."""
    if contract.kind != "continuation":
        raise ValueError(f"model {contract.name} is a {contract.kind}, not a continuation model")


class Sampler:
    """The sampling settings every continuation class keeps: temperature and top-p (checked),
    its random generator, and the ``shift`` in semitones between the player and the model."""

    temperature: float
    top_p: float
    rng: np.random.Generator
    shift: int

    def _set_sampling(self, temperature: float, top_p: float, seed: int | None, shift: int) -> None:
        self.temperature = sampling.check_temperature(temperature)
        self.top_p = sampling.check_top_p(top_p)
        self.rng = np.random.default_rng(seed)
        self.shift = shift


class TokenStepper:
    """A next-token model stepped through its contract: the recurrent state carried from call
    to call and the last step's logits kept. Every continuation class feeds its model through
    one of these.

    A model whose token input is ``(batch, 1)`` reads one token per call (a transformer over a
    bounded window, training/styles/models.py): several tokens are fed one at a time."""

    def __init__(self, contract: Contract, run: RunFn) -> None:
        self._run = run
        self._token = contract.input("token").name
        self._one_at_a_time = contract.input("token").shape[-1] == 1
        self._logits = contract.output("logits").name
        self._pairs = [(i.name, o.name, int(i.shape[1])) for i, o in contract.states]
        self.reset()

    def reset(self) -> None:
        """Zero state, no logits."""
        self.state = {i: np.zeros((1, n), np.float32) for i, _, n in self._pairs}
        self.logits: np.ndarray | None = None

    def feed(self, ids: np.ndarray) -> None:
        """Token ids, in order; afterwards :attr:`logits` score the next one."""
        ids = np.asarray(ids, np.int32).reshape(-1)
        if not ids.size:
            return
        names = [self._logits, *(o for _, o, _ in self._pairs)]
        for chunk in ids.reshape(-1, 1) if self._one_at_a_time else ids.reshape(1, -1):
            out = self._run({self._token: chunk.reshape(1, -1), **self.state}, names)
            self.state = {i: out[o] for i, o, _ in self._pairs}
            self.logits = out[self._logits][0, -1]


class Continuer(Sampler):
    """A sixteenth-grid melody model (``encoding["type"]`` ``grid``, the default)."""

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
        self.contract = contract
        self.vocab = contract.vocabulary
        self.model = TokenStepper(contract, run)
        self._set_sampling(temperature, top_p, seed, shift)
        self._start = self.vocab.index(START) if START in self.vocab else None
        low, high = self.vocab.pitch_range
        self._low, self._high = low, high
        self.mask = self._mask(allowed_pitch_classes)
        self.reset()

    def _mask(self, pcs: frozenset[int] | None) -> np.ndarray:
        """Allowed next tokens: rest, hold and (optionally) pitches of a scale; never START."""
        mask = np.ones(len(self.vocab), bool)
        if self._start is not None:
            mask[self._start] = False
        if pcs is not None:
            for i, s in enumerate(self.vocab.symbols):
                if s.isdigit() and (int(s) - self.shift) % 12 not in pcs:
                    mask[i] = False
        return mask

    @property
    def logits(self) -> np.ndarray | None:
        """Scores of the next token, after what was fed."""
        return self.model.logits

    def reset(self) -> None:
        """Forget everything; prime with START tokens as in training."""
        self.model.reset()
        self._sounding = False
        if self._start is not None:
            prime = int(self.contract.encoding.get("seq_len", 64))
            self._feed(np.full(prime, self._start, np.int32))

    def _feed(self, tokens: np.ndarray) -> None:
        self.model.feed(tokens)

    def _to_model(self, code: int) -> int:
        """A grid code as the model reads it: transposed, folded into its pitch range."""
        if code == HOLD_CODE:
            return self.vocab.code_to_token(HOLD_CODE if self._sounding else REST_CODE)
        if code < 0:
            return self.vocab.code_to_token(REST_CODE)
        p = code + self.shift
        while p > self._high:
            p -= 12
        while p < self._low:
            p += 12
        return self.vocab.code_to_token(p)

    def observe(self, codes: int | list[int] | np.ndarray) -> None:
        """Feed what was played, one grid code per sixteenth (one call may carry several)."""
        arr = np.atleast_1d(np.asarray(codes))
        tokens = []
        for c in arr.tolist():
            tokens.append(self._to_model(int(c)))
            self._sounding = c >= 0 or (c == HOLD_CODE and self._sounding)
        if tokens:
            self._feed(np.array(tokens, np.int32))

    def continue_for(self, steps: int) -> np.ndarray:
        """The next ``steps`` sixteenths in the learned style, as grid codes in the player's key.

        Each sampled token is fed back, so the state stays warm for what comes next. The end
        of a tune (START) is never sampled: the answer goes on from the call it has read, for
        as long as it was asked, and a hold never follows silence.
        """
        out = np.full(steps, REST_CODE, np.int16)
        hold = self.vocab.code_to_token(HOLD_CODE)
        for i in range(steps):
            if self.logits is None:
                break
            mask = self.mask.copy()
            if not self._sounding:
                mask[hold] = False
            p = sampling.probabilities(
                self.logits[None], self.temperature, top_p=self.top_p, mask=mask
            )
            tok = int(sampling.sample(p, self.rng)[0])
            code = int(self.vocab.token_to_code(tok))
            out[i] = code - self.shift if code >= 0 else code
            self._sounding = code >= 0 or (code == HOLD_CODE and self._sounding)
            self._feed(np.array([tok], np.int32))
        return out

    def continue_notes(self, steps: int) -> list[Note]:
        """:meth:`continue_for` as notes."""
        return grid_to_notes(self.continue_for(steps))


def trained_in_one_key(contract: Contract) -> bool:
    """Whether a continuation model was trained in C major / A minor only (folk, and abc, which
    writes the player under ``K:C``): it then reads the player moved into that key and answers
    moved back."""
    rule = str(contract.encoding.get("transposition", ""))
    return contract.style == "folk" or "C major / A minor" in rule


def model_shift(contract: Contract, key: tuple[int, int] | None) -> int:
    """Semitones that move the player into the model's key (0 for a model of every key, or
    when the key is unknown)."""
    if key is None or not trained_in_one_key(contract):
        return 0
    return folk_transposition(*key)
