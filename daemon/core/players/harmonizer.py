"""Live four-voice harmonization, one sixteenth step at a time.

This is the stepping code the daemon runs and ``partimento harmonize --live`` runs: the causal
``bach`` model is fed this step's soprano and the previous step's alto, tenor and bass; it
predicts bass, then tenor given the bass, then alto given both. A few candidate chords are
sampled that way and the one with the best log-probability minus voice-leading penalty is
chosen, so parallels and crossings the model would risk are ruled out causally.

Pure: the model is any callable ``run(feeds, outputs) -> dict`` (an onnxruntime session in
the daemon, a fake in unit tests).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from partimento.core.music import voiceleading
from partimento.core.music.encoding import HOLD_CODE, MAJOR, REST_CODE
from partimento.core.players import sampling
from partimento.core.players.contract import Contract
from partimento.core.players.heads import GivenHeads
from partimento.core.types import RunFn

_PREV = {"alto": "alto_prev", "tenor": "tenor_prev", "bass": "bass_prev"}
_VERSIONS = itertools.count()


ABOVE_MELODY = 1000.0
"""Cost of a chord with a harmony voice above the melody (with voice leading on): one is
taken only when every candidate has one, as the beam search treats its hard rules."""


@dataclass(frozen=True)
class HarmonizerSettings:
    temperature: float = 1.0
    top_p: float = 1.0
    candidates: int = 16
    """Chords sampled per step; 1 turns the voice-leading choice off."""
    voice_leading: float = 3.0
    """How much a voice-leading penalty weighs against the model's log-probability."""
    sonority: float = 0.15
    """Cost of a four-voice chord that is no complete triad or seventh chord."""
    movement: float = 2.0
    """Bonus, in nats, for each voice a candidate chord strikes (a new or repeated note):
    the likeliest chord holds more often than Bach does, and this brings the chord changes
    per bar back towards his.

    The defaults were chosen on the JSB valid chorales (``python -m
    partimento.training.tune_bach``): with 8 candidates, 2.0 gave 1.04 times Bach's chord changes
    per bar (0 gives 0.64), and voice leading 3 with sonority 0.15 kept parallels within Bach's
    and complete triads and sevenths within 2 points of his. For the bach model shipped with
    recurrent dropout, 16 candidates: 25.2 % agreement with Bach's voices against 24.2 % with 8,
    1.09 times his chord changes, 0.02 parallels per 100 chord changes, triads and sevenths
    2.7 points above his (docs/decisions.md)."""

    def __post_init__(self) -> None:
        sampling.check_temperature(self.temperature)
        sampling.check_top_p(self.top_p)
        if not 1 <= self.candidates <= 64:
            raise ValueError(f"candidates must be 1-64, got {self.candidates}")
        if self.voice_leading < 0 or self.sonority < 0:
            raise ValueError("voice_leading and sonority must be 0 or more")


class LiveHarmonizer:
    """Carries the model's recurrent state and the voices' last notes from step to step."""

    def __init__(
        self,
        contract: Contract,
        run: RunFn,
        *,
        settings: HarmonizerSettings | None = None,
        mode: int = MAJOR,
        seed: int | None = None,
        heads: GivenHeads | None = None,
    ) -> None:
        if contract.kind != "live-harmonizer":
            raise ValueError(f"model {contract.name} is a {contract.kind}, not a live harmonizer")
        self.contract = contract
        self.vocab = contract.vocabulary
        self._run = run
        self.heads = heads
        """Tenor and alto heads in numpy (the model's ``heads.npz``): the candidates then cost
        one LSTM run for all of them instead of three."""
        self.settings = settings or HarmonizerSettings()
        self.mode = mode
        self.rng = np.random.default_rng(seed)
        self.ranges = {v: tuple(r) for v, r in contract.encoding["voice_ranges"].items()}
        self._rest = self.vocab.code_to_token(REST_CODE)
        self._hold = self.vocab.code_to_token(HOLD_CODE)
        self._logit_names = [contract.output("logits", v).name for v in ("bass", "tenor", "alto")]
        self._state_pairs = [(i.name, o.name, int(i.shape[1])) for i, o in contract.states]
        self._code_of = np.array(
            [self.vocab.token_to_code(t) for t in range(len(self.vocab))], np.int64
        )  # token -> grid code
        self.reset()

    def snapshot(self) -> LiveHarmonizer:
        """A copy to go back to, as :func:`copy.copy` makes it but in a third of the time:
        :meth:`step` replaces the state arrays and answer tables, never changes them, so the
        copy shares them; only the voices' last tokens are copied."""
        other = object.__new__(LiveHarmonizer)
        other.__dict__.update(self.__dict__)
        other.prev_tokens = dict(self.prev_tokens)
        return other

    def reset(self) -> None:
        """Back to the start of a piece: silent voices, zero state."""
        self.state = {i: np.zeros((1, n), np.float32) for i, _, n in self._state_pairs}
        self.prev_tokens = {"alto": self._rest, "tenor": self._rest, "bass": self._rest}
        self.sounding = (REST_CODE, REST_CODE, REST_CODE, REST_CODE)  # S A T B, model octave
        self._soprano_sounding = False
        self._shift = 0  # octaves between the melody as played and as the model reads it
        self._version = next(_VERSIONS)  # names this state; prepare()'s answers are for one
        # answers prepared ahead, by _table_key: per soprano token, the answer and its state
        self._tables: dict[tuple[Any, ...], dict[int, Any]] = {}
        self.prepared_hits = 0

    # -- one step -----------------------------------------------------------------------------

    def step(self, soprano: int, position: int, fermata: int = 0) -> tuple[int, int, int]:
        """This step's alto, tenor and bass as grid codes (pitch, ``HOLD_CODE`` or rest).

        ``soprano`` is a grid code. A melody outside the model's soprano range is read octaves
        up or down, and the harmony comes back in the melody's own octave. When
        :meth:`prepare` has answered this step in advance, the answer is taken from there.
        """
        old_shift = self._shift
        if soprano >= 0:
            self._shift = self._octave_shift(soprano)
            s_pitch = soprano + self._shift
            s_tok = self.vocab.code_to_token(s_pitch)
            self._soprano_sounding = True
        elif soprano == HOLD_CODE and self._soprano_sounding:
            s_tok, s_pitch = self._hold, self.sounding[0]
        else:
            s_tok, s_pitch = self._rest, REST_CODE
            self._soprano_sounding = False

        table = self._tables.get(self._table_key(position, fermata))
        if table is not None and s_tok in table:
            chosen, self.state = table[s_tok]
            self.prepared_hits += 1
        else:
            answers, states = self._answers(self._base(position, fermata), [s_tok], [s_pitch])
            chosen, self.state = answers[0], {n: st[0:1] for n, st in states.items()}
        codes = []
        sounding = [s_pitch]
        for voice in ("alto", "tenor", "bass"):
            tok = chosen[voice]
            code = self.vocab.token_to_code(tok)
            prev = self.sounding[("alto", "tenor", "bass").index(voice) + 1]
            sounding.append(prev if code == HOLD_CODE else code)
            if code == HOLD_CODE and prev >= 0 and self._shift != old_shift:
                code = prev  # the melody moved by octaves: a held voice is struck again there
            codes.append(code)
            self.prev_tokens[voice] = tok
        self.sounding = tuple(sounding)  # type: ignore[assignment]
        self._version = next(_VERSIONS)  # last: prepare() reading this version sees it all
        return tuple(c - self._shift if c >= 0 else c for c in codes)  # type: ignore[return-value]

    def prepare(self, position: int, fermata: int = 0) -> None:
        """Answer the next step in advance for every soprano it could bring.

        Every soprano token the model reads in its soprano range, plus hold and rest, goes
        through the model as one batch; :meth:`step` then only looks its answer up, so a
        melody note is answered in microseconds. The answers hold while the harmonizer's
        state, mode and settings are unchanged. Safe to run in another thread than
        :meth:`step`: it only reads the state, and an answer made for a state that has moved
        on is never used.
        """
        key = self._table_key(position, fermata)
        if key in self._tables:
            return  # already answered for this state and position
        state, prev, sounding = self.state, dict(self.prev_tokens), self.sounding
        low, high = self.ranges["soprano"]
        vlow, vhigh = self.vocab.pitch_range
        pitches = list(range(max(low, vlow), min(high, vhigh) + 1))
        toks = [self.vocab.code_to_token(p) for p in pitches] + [self._rest]
        s_pitches = pitches + [REST_CODE]
        if self._soprano_sounding:
            toks.append(self._hold)
            s_pitches.append(sounding[0])
        base = self._base(position, fermata, prev)
        answers, states = self._answers(base, toks, s_pitches, state=state, sounding=sounding)
        table = {
            t: (a, {n: st[i : i + 1] for n, st in states.items()})
            for i, (t, a) in enumerate(zip(toks, answers, strict=True))
        }
        if key == self._table_key(position, fermata):  # the state did not move meanwhile
            # a new dict, swapped in whole: step() in another thread sees the old or the new
            self._tables = {**{k: t for k, t in self._tables.items() if k[0] == key[0]}, key: table}

    def _table_key(self, position: int, fermata: int) -> tuple[Any, ...]:
        return (
            self._version,
            int(position) % 16,
            int(bool(fermata)),
            int(self.mode),
            self.settings,
        )

    def _base(
        self, position: int, fermata: int, prev: dict[str, int] | None = None
    ) -> dict[str, int]:
        base = {
            "position": int(position) % 16,
            "fermata": int(bool(fermata)),
            "mode": int(self.mode),
        }
        base.update({_PREV[v]: t for v, t in (prev or self.prev_tokens).items()})
        return base

    def _octave_shift(self, pitch: int) -> int:
        low, high = self.ranges["soprano"]
        shift = 0
        while pitch + shift > high and pitch + shift - 12 >= 0:
            shift -= 12
        while pitch + shift < low and pitch + shift + 12 <= 127:
            shift += 12
        vlow, vhigh = self.vocab.pitch_range
        while pitch + shift > vhigh:
            shift -= 12
        while pitch + shift < vlow:
            shift += 12
        return shift

    def _allowed(self, melody: np.ndarray, width: int, sounding: int) -> np.ndarray:
        """The tokens a voice may take, per row: under a sounding melody note (``melody``)
        no rest, and no hold of a voice that is silent, so a melody note never stands alone
        (:func:`sampling.probabilities` ignores a mask that would forbid everything)."""
        allowed = np.ones((len(melody), width), bool)
        silent = np.array([self._rest] if sounding >= 0 else [self._rest, self._hold])
        allowed[np.ix_(melody, silent)] = False
        return allowed

    def _feeds(
        self,
        base: dict[str, int],
        soprano: np.ndarray,
        bass: np.ndarray,
        tenor: np.ndarray,
        state: dict[str, np.ndarray],
    ) -> dict[str, np.ndarray]:
        rows = len(soprano)
        feeds = {name: np.full((rows, 1), value, np.int32) for name, value in base.items()}
        feeds["soprano"] = np.asarray(soprano, np.int32).reshape(rows, 1)
        feeds["bass_given"] = np.asarray(bass, np.int32).reshape(rows, 1)
        feeds["tenor_given"] = np.asarray(tenor, np.int32).reshape(rows, 1)
        for name, st in state.items():  # one state before this step, for every row
            feeds[name] = np.repeat(st, rows, axis=0)
        return feeds

    def _answers(
        self,
        base: dict[str, int],
        s_toks: list[int],
        s_pitches: list[int],
        *,
        state: dict[str, np.ndarray] | None = None,
        sounding: tuple[int, int, int, int] | None = None,
    ) -> tuple[list[dict[str, int]], dict[str, np.ndarray]]:
        """For each soprano token, the chosen alto, tenor and bass tokens; and the state after
        each (one row per soprano token). All sopranos and candidates go as one batch."""
        st = self.settings
        k, n = st.candidates, len(s_toks)
        state = self.state if state is None else state
        sounding = self.sounding if sounding is None else sounding
        sop = np.asarray(s_toks)
        rest_n, rest_nk = np.full(n, self._rest), np.full(n * k, self._rest)
        first = self._run(
            self._feeds(base, sop, rest_n, rest_n, state),
            [self._logit_names[0], *(o for _, o, _ in self._state_pairs)],
        )
        states = {i: first[o] for i, o, _ in self._state_pairs}

        sop_k = np.repeat(sop, k)
        bass_logits = first[self._logit_names[0]][:, -1]
        melody = np.asarray(s_pitches) >= 0  # the rows with a melody note sounding
        bass_p = np.repeat(
            sampling.probabilities(
                bass_logits,
                st.temperature,
                top_p=st.top_p,
                mask=self._allowed(melody, bass_logits.shape[-1], sounding[3]),
            ),
            k,
            axis=0,
        )
        melody = np.repeat(melody, k)
        bass = sampling.sample(bass_p, self.rng)
        heads = self.heads
        if heads is not None:  # the heads on the LSTMs' output, without running them again
            x = np.repeat(first[heads.source], k, axis=0)
            tenor_logits = heads.tenor(x, bass)
        else:
            tenor_logits = self._run(
                self._feeds(base, sop_k, bass, rest_nk, state), [self._logit_names[1]]
            )[self._logit_names[1]][:, -1]
        tenor_p = sampling.probabilities(
            tenor_logits,
            st.temperature,
            top_p=st.top_p,
            mask=self._allowed(melody, tenor_logits.shape[-1], sounding[2]),
        )
        tenor = sampling.sample(tenor_p, self.rng)
        if heads is not None:
            alto_logits = heads.alto(x, bass, tenor)
        else:
            alto_logits = self._run(
                self._feeds(base, sop_k, bass, tenor, state), [self._logit_names[2]]
            )[self._logit_names[2]][:, -1]
        alto_p = sampling.probabilities(
            alto_logits,
            st.temperature,
            top_p=st.top_p,
            mask=self._allowed(melody, alto_logits.shape[-1], sounding[1]),
        )
        alto = sampling.sample(alto_p, self.rng)

        rows = np.arange(n * k)
        logp = (
            np.log(bass_p[rows, bass] + 1e-12)
            + np.log(tenor_p[rows, tenor] + 1e-12)
            + np.log(alto_p[rows, alto] + 1e-12)
        )
        score = logp
        if k > 1:  # the voice-leading choice among each soprano's candidates, all at once
            chords = np.empty((n * k, 4), np.int64)
            chords[:, 0] = np.repeat(np.asarray(s_pitches, np.int64), k)
            for col, tokens in ((1, alto), (2, tenor), (3, bass)):
                codes = self._code_of[tokens]
                chords[:, col] = np.where(codes == HOLD_CODE, sounding[col], codes)
            if st.voice_leading:
                score = score - st.voice_leading * voiceleading.penalties(
                    sounding, chords, self.ranges
                )
                # no harmony voice above the melody while there is a candidate without one
                above = (chords[:, 1:] > chords[:, :1]).any(axis=1) & (chords[:, 0] >= 0)
                score = score - ABOVE_MELODY * above
            if st.sonority:
                score = score - st.sonority * ~voiceleading.tertian(chords)
            if st.movement:
                struck = sum(
                    (self._code_of[t] >= 0).astype(np.float64) for t in (alto, tenor, bass)
                )
                score = score + st.movement * struck
        best = np.argmax(score.reshape(n, k), axis=1) + np.arange(n) * k  # the first of equals
        answers = [
            {"alto": int(alto[i]), "tenor": int(tenor[i]), "bass": int(bass[i])}
            for i in best.tolist()
        ]
        return answers, states


def harmonize(
    harmonizer: LiveHarmonizer,
    soprano: np.ndarray,
    position: np.ndarray,
    fermata: np.ndarray | None = None,
) -> np.ndarray:
    """A whole melody through the live stepping code: (4, steps) grid codes, soprano unchanged."""
    harmonizer.reset()
    steps = len(soprano)
    out = np.full((4, steps), REST_CODE, np.int16)
    out[0] = soprano
    for i in range(steps):
        f = 0 if fermata is None else int(fermata[i])
        out[1:, i] = harmonizer.step(int(soprano[i]), int(position[i]), f)
    return out
