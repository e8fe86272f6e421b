"""Beam search for a lookahead harmonizer: a whole melody's alto, tenor and bass at once.

A model of kind ``lookahead-harmonizer`` (style ``bach-offline``) is the live model's causal
decoder that also reads the melody ahead: at each sixteenth it takes this step's soprano, the
previous alto, tenor and bass, the conditions and the next ``ahead`` soprano tokens and fermata
flags, and gives the bass logits and its recurrent state; the tenor and alto heads
(:class:`partimento.core.players.heads.GivenHeads`) then score the tenor given a bass and the alto
given both, in numpy, for every candidate at once.

The search keeps ``beam`` harmonizations. At each step every one is extended by its ``basses``
likeliest basses, each by its ``tenors`` likeliest tenors, each by its ``altos`` likeliest altos;
a candidate scores its harmonization's log-probability minus its voice-leading costs
(:func:`partimento.core.music.voiceleading.move_penalties` against its own previous chord), and the
best
``beam`` go on. Parallel fifths and octaves, crossings and voices out of range cost
:data:`HARD` each, so they are taken only when nothing else is left. One model call per step,
on ``beam`` rows.

Pure: the model is any callable ``run(feeds, outputs) -> dict``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from partimento.core.music import voiceleading
from partimento.core.music.encoding import HOLD_CODE, REST_CODE
from partimento.core.players.contract import Contract
from partimento.core.players.heads import GivenHeads
from partimento.core.players.sampling import log_softmax

RunFn = Callable[[dict[str, np.ndarray], list[str]], dict[str, np.ndarray]]

HARD = 1000.0
"""Cost of a parallel fifth or octave, a crossing or a voice out of range."""

_HARMONY = ("alto", "tenor", "bass")


@dataclass(frozen=True)
class BeamSettings:
    beam: int = 8
    """Harmonizations kept from step to step."""
    basses: int = 4
    tenors: int = 3
    altos: int = 3
    """Tokens tried per voice and harmonization at each step (the likeliest ones)."""
    spacing: float = 1.5
    """Cost of more than an octave between soprano and alto or alto and tenor."""
    leap: float = 1.0
    """Cost of an inner voice leaping more than an octave."""
    sonority: float = 0.0
    """Cost of a four-voice chord that is no complete triad or seventh chord."""

    def __post_init__(self) -> None:
        for name in ("beam", "basses", "tenors", "altos"):
            if not 1 <= getattr(self, name) <= 64:
                raise ValueError(f"{name} must be 1-64, got {getattr(self, name)}")
        if min(self.spacing, self.leap, self.sonority) < 0:
            raise ValueError("spacing, leap and sonority must be 0 or more")

    def weights(self) -> voiceleading.PenaltyWeights:
        return voiceleading.PenaltyWeights(
            parallel_fifth=HARD,
            parallel_octave=HARD,
            crossing=HARD,
            spacing=self.spacing,
            out_of_range=HARD,
            out_of_range_semitone=0.0,
            inner_leap=self.leap,
        )


def ahead_windows(line: np.ndarray, ahead: int, pad: int) -> np.ndarray:
    """``(steps, ahead)`` int32: at step ``t`` the values of ``line`` at ``t+1 .. t+ahead``,
    ``pad`` past its end. The one layout training and the search share."""
    line = np.asarray(line)
    padded = np.concatenate([line, np.full(ahead, pad, line.dtype)])
    index = np.arange(len(line))[:, None] + 1 + np.arange(ahead)[None, :]
    result: np.ndarray = padded[index].astype(np.int32)
    return result


def _top(logp: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best tokens of each row and their log-probabilities, best first."""
    k = min(k, logp.shape[1])
    idx = np.argpartition(-logp, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(logp, idx, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(vals, order, axis=1)


class BeamHarmonizer:
    """Harmonizes whole melodies with one lookahead model."""

    def __init__(
        self,
        contract: Contract,
        run: RunFn,
        heads: GivenHeads,
        *,
        settings: BeamSettings | None = None,
    ) -> None:
        if contract.kind != "lookahead-harmonizer":
            raise ValueError(
                f"model {contract.name} is a {contract.kind}, not a lookahead harmonizer"
            )
        self.contract, self.run, self.heads = contract, run, heads
        self.settings = settings or BeamSettings()
        self.vocab = contract.vocabulary
        self.ahead = int(contract.encoding["ahead"]["steps"])
        self.ranges = {
            v: (int(r[0]), int(r[1])) for v, r in contract.encoding["voice_ranges"].items()
        }
        self._rest = self.vocab.code_to_token(REST_CODE)
        self._hold = self.vocab.code_to_token(HOLD_CODE)
        self._code = np.array(
            [
                REST_CODE if s == "/" else self.vocab.token_to_code(t)
                for t, s in enumerate(self.vocab.symbols)
            ],
            np.int64,
        )
        self._bass_out = contract.output("logits", "bass").name
        self._states = [(i.name, o.name, int(i.shape[-1])) for i, o in contract.states]
        self._allowed = {v: self._allowed_tokens(v) for v in _HARMONY}

    def _allowed_tokens(self, voice: str) -> np.ndarray:
        """Rest, hold and the pitches inside the voice's range (never START)."""
        low, high = self.ranges[voice]
        code = self._code
        ok = (code == REST_CODE) | (code == HOLD_CODE) | ((code >= low) & (code <= high))
        ok[[i for i, s in enumerate(self.vocab.symbols) if s == "/"]] = False
        result: np.ndarray = ok
        return result

    def harmonize(
        self, soprano: np.ndarray, position: np.ndarray, fermata: np.ndarray, mode: int
    ) -> np.ndarray:
        """``(4, steps)`` grid codes: the soprano as given, alto, tenor and bass found.

        ``soprano`` holds grid codes inside the model's vocabulary (move a melody by octaves
        into the soprano range first)."""
        soprano = np.asarray(soprano)
        steps = soprano.size
        if steps == 0:
            raise ValueError("the soprano is empty")
        if np.shape(position) != soprano.shape or np.shape(fermata) != soprano.shape:
            raise ValueError(
                f"soprano has {steps} steps, position {np.shape(position)} and "
                f"fermata {np.shape(fermata)}"
            )
        st = self.settings
        s_tok = self.vocab.encode(soprano)
        s_sound = _sounding(soprano)
        fermata = np.asarray(fermata, np.int32)
        s_ahead = ahead_windows(s_tok, self.ahead, self._rest)
        f_ahead = ahead_windows(fermata, self.ahead, 0)
        weights = st.weights()

        n = 1
        states = {i: np.zeros((1, u), np.float32) for i, _, u in self._states}
        prev = np.full((1, 3), self._rest, np.int64)  # alto, tenor, bass tokens
        sounding = np.full((1, 4), REST_CODE, np.int64)  # S A T B pitches
        score = np.zeros(1)
        parents: list[np.ndarray] = []
        chosen: list[np.ndarray] = []
        for t in range(steps):
            feeds = {
                "soprano": np.full((n, 1), s_tok[t], np.int32),
                "alto_prev": prev[:, 0:1].astype(np.int32),
                "tenor_prev": prev[:, 1:2].astype(np.int32),
                "bass_prev": prev[:, 2:3].astype(np.int32),
                "position": np.full((n, 1), int(position[t]) % 16, np.int32),
                "fermata": np.full((n, 1), int(bool(fermata[t])), np.int32),
                "mode": np.full((n, 1), int(mode), np.int32),
                "bass_given": np.full((n, 1), self._rest, np.int32),
                "tenor_given": np.full((n, 1), self._rest, np.int32),
                "soprano_ahead": np.repeat(s_ahead[t][None, None], n, axis=0),
                "fermata_ahead": np.repeat(f_ahead[t][None, None], n, axis=0),
            }
            feeds |= states
            outs = [self._bass_out, *(o for _, o, _ in self._states)]
            if self.heads.source not in outs:
                outs.append(self.heads.source)
            out = self.run(feeds, outs)

            silent = sounding[:, 1:] < 0  # (n, 3) alto tenor bass: a hold would hold nothing
            lb = self._masked(out[self._bass_out][:, -1], "bass", silent[:, 2])
            bass, vb = _top(lb, st.basses)  # (n, kb)
            kb = bass.shape[1]
            x = np.repeat(out[self.heads.source], kb, axis=0)
            bass = bass.reshape(-1)
            lt = self._masked(self.heads.tenor(x, bass), "tenor", np.repeat(silent[:, 1], kb))
            tenor, vt = _top(lt, st.tenors)  # (n*kb, kt)
            kt = tenor.shape[1]
            x = np.repeat(x, kt, axis=0)
            bass = np.repeat(bass, kt)
            tenor = tenor.reshape(-1)
            la = self._masked(
                self.heads.alto(x, bass, tenor), "alto", np.repeat(silent[:, 0], kb * kt)
            )
            alto, va = _top(la, st.altos)  # (n*kb*kt, ka)
            ka = alto.shape[1]

            per_beam = kb * kt * ka
            parent = np.repeat(np.arange(n), per_beam)
            logp = (
                np.repeat(score, per_beam)
                + np.repeat(vb.reshape(-1), kt * ka)
                + np.repeat(vt.reshape(-1), ka)
                + va.reshape(-1)
            )
            toks = np.stack([alto.reshape(-1), np.repeat(tenor, ka), np.repeat(bass, ka)], 1)
            codes = self._code[toks]
            chord = np.empty((len(parent), 4), np.int64)
            chord[:, 0] = s_sound[t]
            chord[:, 1:] = np.where(codes == HOLD_CODE, sounding[parent, 1:], codes)
            cost = voiceleading.move_penalties(sounding[parent], chord, self.ranges, weights)
            if st.sonority:
                cost = cost + st.sonority * ~voiceleading.tertian(chord)
            total = logp - cost
            keep = min(st.beam, len(total))
            best = np.argpartition(-total, keep - 1)[:keep]
            best = best[np.argsort(-total[best], kind="stable")]

            parents.append(parent[best])
            chosen.append(toks[best])
            states = {i: out[o][parent[best]] for i, o, _ in self._states}
            prev, sounding, score = toks[best], chord[best], total[best]
            n = keep

        row = 0
        tokens = np.empty((steps, 3), np.int64)
        for t in range(steps - 1, -1, -1):
            tokens[t] = chosen[t][row]
            row = int(parents[t][row])
        result = np.empty((4, steps), np.int16)
        result[0] = soprano
        result[1:] = self._code[tokens.T]
        return result

    def _masked(self, logits: np.ndarray, voice: str, silent: np.ndarray) -> np.ndarray:
        """Log-probabilities over the voice's allowed tokens (no hold after a rest)."""
        allowed = np.broadcast_to(self._allowed[voice], logits.shape).copy()
        allowed[silent, self._hold] = False
        return np.where(allowed, log_softmax(np.where(allowed, logits, -np.inf)), -np.inf)


def _sounding(grid: np.ndarray) -> np.ndarray:
    """Per step the pitch that sounds (holds resolved), -1 where silent."""
    out = np.empty(len(grid), np.int64)
    current = REST_CODE
    for i, code in enumerate(np.asarray(grid).tolist()):
        current = current if code == HOLD_CODE else code
        out[i] = current
    return out
