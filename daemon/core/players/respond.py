"""The one continuation code path: a call heard, an answer made that develops it.

:class:`Responder` is what plays a continuation model, live in the engine and in ``partimento
sample`` alike. It wraps the model's :class:`~partimento.core.players.continuation.Continuation`
(chosen by :func:`partimento.core.players.continuation.make`) and is one itself:

* :meth:`Responder.observe` feeds the player's sixteenths to the model as they come (the
  recurrent state stays warm) and keeps them as the *call*: what was played since the last
  answer (at most :data:`MAX_CALL_STEPS`).
* :meth:`Responder.continue_notes` answers the call:

  1. The key: the configured one, else the call's (:func:`partimento.core.music.key.player_key`, the
     estimate the harmonizer uses too). A model trained in one key (folk) reads the player
     moved into it (:func:`partimento.core.players.continuation.model_shift`) and answers moved
     back; with ``keep_to_scale`` the answer keeps to the key's scale. When that changes, the
     model is built again and reads the call again, so it hears the call in the key it answers
     in.
  2. ``candidates`` answers are drawn, each from its own copy of the model's state (the call
     stays in every copy's state for the whole answer; nothing is reset, the end of a tune is
     never sampled), each with its own random stream drawn from the responder's.
  3. The answer kept is the one that follows the call best: the smallest
     ``|log(answer density / call density)| - REUSE_WEIGHT * motif reuse``
     (:mod:`partimento.core.music.motifs`: onsets per bar; the share of the answer's interval
     trigrams the call has). Its copy of the state goes on, so the next call is heard after
     this answer, as a conversation.

  Answers are notes on the call's grid (sixteenth steps from the answer's start), so an answer
  started on a beat of the call stays on its beats.

Pure: the model is any callable ``run(feeds, outputs) -> dict``.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass

import numpy as np

from partimento.core.music import key, motifs, rules
from partimento.core.music.encoding import Note, grid_to_notes
from partimento.core.players import continuation
from partimento.core.players.continuation import Continuation
from partimento.core.players.contract import Contract
from partimento.core.types import RunFn

MAX_CALL_STEPS = 512
"""The most of a call kept (32 bars): its key and density are read from these."""
REUSE_WEIGHT = 1.0
"""How much a candidate's motif reuse (0-1) counts against its density mismatch (|log ratio|,
0 when equal, 0.3 at 1.35 times). With :data:`DEFAULT_CANDIDATES`, chosen on the folk
validation tunes among weights 0, 1, 2, 4 and 8 or 16 candidates: weight 1 with 16 brought
the answers' motif reuse from 0.05 (weight 0) to 0.17 (the tunes' own continuations: 0.20)
and kept their density within 6 % of the call's, their interval and inter-onset histograms
as close to the continuations' (docs/decisions.md)."""
DEFAULT_CANDIDATES = 16
_SHARED = ("contract", "vocab", "tokens", "index", "mask", "_run", "_codes", "header")
"""Attributes a fork shares with its original: the model, its contract and fixed tables."""


@dataclass(frozen=True)
class AnswerSettings:
    """How a :class:`Responder` answers.

    Attributes:
        temperature: softmax temperature, (0, 10].
        top_p: nucleus mass, (0, 1].
        seed: the random stream's seed (None: fresh entropy).
        fixed_key: a configured ``(tonic, mode)``; None: the call's key.
        keep_to_scale: keep the answer to the key's scale (the daemon's ``sampling.key``
            ``auto`` or a given key).
        candidates: answers drawn per call, the one that follows the call best kept (1: the
            model's first draw).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    fixed_key: key.Key | None = None
    keep_to_scale: bool = False
    candidates: int = DEFAULT_CANDIDATES

    def __post_init__(self) -> None:
        if not isinstance(self.candidates, int) or not 1 <= self.candidates <= 64:
            raise ValueError(f"candidates must be 1-64, got {self.candidates!r}")


def fork(player: Continuation, seed: int) -> Continuation:
    """A copy of ``player`` that owns its state (recurrent state, what it has heard and
    written) but shares its model and fixed tables, drawing from a new random stream."""
    memo: dict[int, object] = {}
    for owner in (player, getattr(player, "model", None)):
        for name in _SHARED:
            if owner is not None and hasattr(owner, name):
                value = getattr(owner, name)
                memo[id(value)] = value
    twin = copy.deepcopy(player, memo)
    twin.rng = np.random.default_rng(seed)  # type: ignore[attr-defined]
    return twin


def answer_score(answer: list[Note], steps: int, call: list[Note], call_steps: int) -> float:
    """How badly an answer follows its call (lower is better); 0 for a call with no note."""
    if not call or call_steps <= 0:
        return 0.0
    mismatch = abs(motifs.density_log_ratio(answer, steps, call, call_steps))
    return mismatch - REUSE_WEIGHT * (motifs.motif_reuse(answer, call) or 0.0)


class Responder:
    """A continuation model answering calls (see the module doc)."""

    def __init__(
        self, contract: Contract, run: RunFn, settings: AnswerSettings = AnswerSettings()
    ) -> None:
        continuation.check_continuation(contract)
        self.contract, self._run_model, self.settings = contract, run, settings
        self.rng = np.random.default_rng(settings.seed)
        self.call: deque[int] = deque(maxlen=MAX_CALL_STEPS)
        self.key: key.Key | None = settings.fixed_key
        self.shift, self.scale = self._transposition(self.key)
        self.player = self._make(self.shift, self.scale)
        self.last_candidates: list[tuple[float, list[Note]]] = []

    # the Continuation protocol ------------------------------------------------------------
    @property
    def temperature(self) -> float:
        return self.player.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.player.temperature = value

    def observe(self, codes: int | list[int] | np.ndarray) -> None:
        """The player's next sixteenths: fed to the model at once, and kept as the call."""
        arr = np.atleast_1d(np.asarray(codes, np.int16))
        self.call.extend(arr.tolist())
        self.player.observe(arr)

    def branch(self) -> Responder:
        """A copy that owns its state (the call, the model's recurrent state, its random
        stream) and shares the model: it may answer in another thread while this one is left
        untouched, and take this one's place once its answer is played."""
        twin = copy.copy(self)
        twin.call = deque(self.call, maxlen=MAX_CALL_STEPS)
        twin.player = fork(self.player, int(self.rng.integers(2**63)))
        twin.rng = np.random.default_rng(int(self.rng.integers(2**63)))
        twin.last_candidates = []
        return twin

    def reset(self) -> None:
        """Forget everything heard and answered."""
        self.call.clear()
        self.player.reset()

    def continue_notes(self, steps: int) -> list[Note]:
        """The answer to the call heard since the last answer: ``steps`` sixteenths of notes
        (start steps from the answer's first step), in the player's key."""
        call = np.array(self.call, np.int16)
        self.call.clear()
        self._follow_key(call)
        heard = grid_to_notes(call)
        heard_steps = motifs.active_steps(call)
        best: tuple[float, list[Note], Continuation] | None = None
        self.last_candidates = []
        for _ in range(self.settings.candidates):
            twin = fork(self.player, int(self.rng.integers(2**63)))
            notes = twin.continue_notes(steps)
            score = answer_score(notes, steps, heard, heard_steps)
            self.last_candidates.append((score, notes))
            if best is None or score < best[0]:
                best = (score, notes, twin)
        assert best is not None
        self.player = best[2]
        return best[1]

    # key ----------------------------------------------------------------------------------
    def _transposition(self, k: key.Key | None) -> tuple[int, frozenset[int] | None]:
        scale = rules.key_scale(*k) if k is not None and self.settings.keep_to_scale else None
        return continuation.model_shift(self.contract, k), scale

    def _follow_key(self, call: np.ndarray) -> None:
        """Take the call's key (unless one is configured); rebuild the model's player when
        its transposition or scale changes, and let it hear the call again."""
        if self.settings.fixed_key is not None:
            return
        found = key.player_key(call)
        if found is None:
            return
        self.key = found
        shift, scale = self._transposition(found)
        if (shift, scale) == (self.shift, self.scale):
            return
        self.shift, self.scale = shift, scale
        self.player = self._make(shift, scale)
        self.player.observe(call)

    def _make(self, shift: int, scale: frozenset[int] | None) -> Continuation:
        s = self.settings
        return continuation.make(
            self.contract,
            self._run_model,
            temperature=s.temperature,
            top_p=s.top_p,
            seed=int(self.rng.integers(2**63)),
            shift=shift,
            allowed_pitch_classes=scale,
        )
