"""DeepBach's pseudo-Gibbs sampler (Hadjeres et al. 2017) and the one window builder it shares
with training.

A model of kind ``offline-harmonizer`` predicts one harmony voice at one step from a window of
context around that step. :func:`windows` builds those windows, for training
(``partimento.training.styles.bach_offline``) and for sampling here; nothing else decides their
layout.

Window layout, for step ``t`` and context ``dt`` (``W = 2 * dt + 1`` rows):

* rows ``0 .. dt-1``: steps ``t-dt .. t-1``, the past, in time order;
* row ``dt``: step ``t`` itself;
* rows ``dt+1 .. 2*dt``: steps ``t+dt .. t+1``, the future in reverse order, so a recurrent
  network reading the rows forward ends next to ``t`` (DeepBach's right-hand features).

Each row holds the four voices' tokens (soprano, alto, tenor, bass) and the three conditions
(bar position, fermata, mode). Steps outside the piece are padding: every voice holds the
vocabulary's ``START`` token and every condition is 0. The voice being predicted keeps its own
token in row ``dt``; its network never reads that cell (it takes only the other three voices
at ``t``), so callers need not mask it.

Pure numpy: the model is any callable from feeds to logits (an onnxruntime session, a Keras
model in tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from partimento.core.music import voiceleading
from partimento.core.music.encoding import (
    HARMONY_VOICES,
    HOLD,
    HOLD_CODE,
    REST,
    REST_CODE,
    START,
    VOICES,
    EncodingError,
    Vocabulary,
    sounding_pitches,
    symbol_to_code,
)
from partimento.core.types import RunFn

CONDITIONS = ("position", "fermata", "mode")
"""The condition columns of a window, in order."""

SWEEPS = 10
"""Default work: each harmony cell is resampled about this many times. With the default batch
of 16 cells per voice per model call, a 200-step chorale takes ``10 * 200 / 16 = 125`` calls:
about 2 s with the default ``bach-offline`` model (dt 16, one 200-unit LSTM per side) on one
core shared with a training run. DeepBach spent about 30 updates per cell; more sweeps give a
more settled harmony at proportional cost."""

DEFAULT_BATCH = 16
VOICE_LEADING = 4.0
"""Weight of the voice-leading penalty in the sampled distribution. Measured on 6 test
chorales at temperature 0.5 (parallel fifths and octaves per 100 chord changes; Bach: 0.5):
weight 0 gives about 28, 1 gives 8.8, 2 gives 3.8, 4 gives 2.3, 8 gives 1.7 with fewer
complete triads. Without it the model, which predicts one voice from all the others, often
follows a neighbour that was resampled in the same call to move the same way."""
DEFAULT_TEMPERATURE = 0.5
"""Measured with the weight above: temperature 1.0 leaves 37 % of sonorities outside
triads and sevenths (Bach 18 %); 0.5 leaves 20 %."""
START_TEMPERATURE = 1.5
"""DeepBach starts hot and cools towards the requested temperature (its "recuit")."""


def token_input(voice: str) -> str:
    """Name of the token-window input read by ``voice``'s network."""
    return f"{voice}_tokens"


def condition_input(voice: str) -> str:
    """Name of the condition-window input read by ``voice``'s network."""
    return f"{voice}_conditions"


def window_rows(dt: int) -> np.ndarray:
    """Offsets from ``t`` of the ``2 * dt + 1`` window rows: past, present, reversed future."""
    return np.concatenate([np.arange(-dt, 1), np.arange(dt, 0, -1)])


def conditions(position: np.ndarray, fermata: np.ndarray, mode: int) -> np.ndarray:
    """The ``(3, steps)`` condition grid: bar position, fermata flag, mode on every step."""
    position = np.asarray(position)
    fermata = np.asarray(fermata)
    if position.shape != fermata.shape or position.ndim != 1:
        raise ValueError(
            f"position {position.shape} and fermata {fermata.shape} must be "
            "one-dimensional and of one length"
        )
    return np.stack([position, fermata, np.full_like(position, int(mode))]).astype(np.int32)


def windows(
    tokens: np.ndarray, conds: np.ndarray, times: np.ndarray, dt: int, pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token and condition windows around each of ``times``.

    ``tokens`` is ``(4, steps)`` (S, A, T, B token indices), ``conds`` is ``(3, steps)``;
    returns ``(n, 2*dt+1, 4)`` tokens and ``(n, 2*dt+1, 3)`` conditions, laid out as the module
    describes, with ``pad`` tokens and 0 conditions outside the piece.
    """
    tokens, conds = np.asarray(tokens), np.asarray(conds)
    steps = tokens.shape[1]
    if conds.shape[1] != steps:
        raise ValueError(f"tokens have {steps} steps, conditions {conds.shape[1]}")
    times = np.asarray(times, np.int64)
    if times.size and (times.min() < 0 or times.max() >= steps):
        raise ValueError(f"times must lie in 0..{steps - 1}")
    padded_tok = np.pad(tokens, ((0, 0), (dt, dt)), constant_values=pad)
    padded_cond = np.pad(conds, ((0, 0), (dt, dt)), constant_values=0)
    index = times[:, None] + dt + window_rows(dt)[None, :]  # (n, W) into the padded grids
    return (padded_tok[:, index].transpose(1, 2, 0), padded_cond[:, index].transpose(1, 2, 0))


def _read_model(
    model: Any, timesteps: int | None
) -> tuple[Vocabulary, dict[str, tuple[int, int]], int]:
    """Vocabulary, voice ranges and context from a contract, its encoding or a vocabulary."""
    if isinstance(model, Vocabulary):
        vocab, ranges, dt = model, {}, timesteps
    else:
        encoding = model.encoding if hasattr(model, "encoding") else model
        vocab = Vocabulary(tuple(encoding["vocabulary"]))
        ranges = {v: (int(r[0]), int(r[1])) for v, r in encoding.get("voice_ranges", {}).items()}
        dt = timesteps or encoding.get("window", {}).get("timesteps")
    if not dt or dt < 1:
        raise ValueError("the context length (timesteps) is neither in the encoding nor given")
    if START not in vocab:
        raise EncodingError(f"the vocabulary has no {START!r} symbol to pad windows with")
    return vocab, ranges, int(dt)


def allowed_tokens(vocab: Vocabulary, low_high: tuple[int, int] | None) -> np.ndarray:
    """Tokens a harmony voice may take: rest, hold and the pitches in its range (never START)."""
    ok = np.array([s in (REST, HOLD) for s in vocab.symbols])
    pitch = vocab.pitch_mask()
    if low_high is None:
        result: np.ndarray = ok | pitch
        return result
    low, high = low_high
    in_range = np.array(
        [p and low <= int(s) <= high for s, p in zip(vocab.symbols, pitch, strict=True)]
    )
    within: np.ndarray = ok | in_range
    return within


def sample(
    logits: np.ndarray, temperature: float, allowed: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One token per row from ``softmax(logits / temperature)`` over the allowed tokens."""
    scaled = np.where(allowed, logits / temperature, -np.inf)
    gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, scaled.shape)))
    result: np.ndarray = np.argmax(scaled + gumbel, axis=-1)
    return result


def leading_costs(
    codes: np.ndarray,
    voice: int,
    times: np.ndarray,
    vocab: Vocabulary,
    ranges: Mapping[str, tuple[int, int]],
) -> np.ndarray:
    """Per cell and candidate token, the voice-leading penalty of putting that token there.

    ``codes`` is the current ``(4, steps)`` grid. For voice ``voice`` at each of ``times``,
    every token is tried: the chord it makes at ``t`` is scored against the chord before it
    and the chord after it (a hold after ``t`` carries the candidate on), with
    :func:`partimento.core.music.voiceleading.penalty`. Returns ``(len(times), len(vocab))``.
    """
    sounding = sounding_pitches(codes)
    steps = codes.shape[1]
    cand = [symbol_to_code(s) if s != START else REST_CODE for s in vocab.symbols]
    out = np.zeros((len(times), len(vocab)))
    for row, t in enumerate(np.asarray(times).tolist()):
        prev = tuple(int(x) for x in sounding[:, t - 1]) if t > 0 else None
        nxt = tuple(int(x) for x in sounding[:, t + 1]) if t + 1 < steps else None
        held_next = t + 1 < steps and codes[voice, t + 1] == HOLD_CODE
        before = sounding[voice, t - 1] if t > 0 else REST_CODE
        for k, code in enumerate(cand):
            p = int(before if code == HOLD_CODE else code)
            chord = list(int(x) for x in sounding[:, t])
            chord[voice] = p
            cost = voiceleading.penalty(prev, tuple(chord), ranges)
            if nxt is not None:
                after = list(nxt)
                if held_next:
                    after[voice] = p
                cost += voiceleading.penalty(tuple(chord), tuple(after), ranges)
            out[row, k] = cost
    return out


def positions(steps: int, per_voice: int, rng: np.random.Generator) -> np.ndarray:
    """``(3, per_voice)`` steps to resample, one row per harmony voice.

    The ``3 * per_voice`` steps are spread evenly over the piece from a random offset and dealt
    to the voices at random, so the cells updated together are as far apart as they can be.
    """
    n = 3 * per_voice
    spread = (rng.integers(steps) + np.floor(np.arange(n) * steps / n).astype(np.int64)) % steps
    return rng.permutation(spread).reshape(3, per_voice)


def temperatures(iterations: int, temperature: float, start: float) -> np.ndarray:
    """Per call: geometric cooling from ``start`` to ``temperature`` over the first 3/4."""
    if start <= temperature or iterations < 2:
        return np.full(iterations, temperature)
    cool = max(1, int(0.75 * iterations))
    ramp = start * (temperature / start) ** (np.arange(iterations) / cool)
    return np.maximum(ramp, temperature)


def initial_voices(
    soprano: np.ndarray, vocab: Vocabulary, allowed: dict[str, np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Alto, tenor and bass tokens that follow the soprano's rhythm with random pitches."""
    hold, rest = vocab.index(HOLD), vocab.index(REST)
    out = np.empty((3, soprano.size), np.int64)
    pitch = vocab.pitch_mask()
    for i, voice in enumerate(HARMONY_VOICES):
        choices = np.flatnonzero(allowed[voice] & pitch)
        out[i] = rng.choice(choices, soprano.size)
        out[i][1:][soprano[1:] == hold] = hold  # a hold at step 0 would hold nothing
        out[i][soprano == rest] = rest
    return out


def feeds(
    tokens: np.ndarray, conds: np.ndarray, times: np.ndarray, dt: int, pad: int
) -> dict[str, np.ndarray]:
    """Model inputs: for each harmony voice the windows around its row of ``times``."""
    out: dict[str, np.ndarray] = {}
    for i, voice in enumerate(HARMONY_VOICES):
        tok, cond = windows(tokens, conds, times[i], dt, pad)
        out[token_input(voice)] = tok.astype(np.int32)
        out[condition_input(voice)] = cond.astype(np.int32)
    return out


def harmonize(
    soprano: np.ndarray,
    position: np.ndarray,
    fermata: np.ndarray,
    mode: int,
    model: Any,
    run: RunFn,
    *,
    iterations: int | None = None,
    temperature: float = 1.0,
    rng: np.random.Generator | None = None,
    batch: int = DEFAULT_BATCH,
    start_temperature: float = START_TEMPERATURE,
    timesteps: int | None = None,
    voice_leading: float = VOICE_LEADING,
) -> np.ndarray:
    """Alto, tenor and bass under a soprano, by DeepBach's parallel pseudo-Gibbs sampling.

    ``soprano`` holds grid codes; ``position``, ``fermata`` and ``mode`` are the conditions.
    ``model`` is a contract, its encoding (vocabulary, ``voice_ranges`` and
    ``window.timesteps``) or a bare vocabulary (then ``timesteps`` is required). ``run`` maps
    feeds (``{voice}_tokens``, ``{voice}_conditions`` for every harmony voice) to logits keyed
    by voice. Each call resamples ``batch`` far-apart cells per harmony voice; ``iterations``
    calls are made, by default enough for each cell to be resampled :data:`SWEEPS` times.
    With ``voice_leading`` > 0 each cell is drawn from the model's distribution times
    ``exp(-voice_leading * penalty)`` (see :func:`leading_costs`): the model's choice,
    constrained by the same voice-leading rules the live harmonizer uses.
    Returns ``(4, steps)`` grid codes, the soprano exactly as given.
    """
    vocab, ranges, dt = _read_model(model, timesteps)
    soprano = np.asarray(soprano)
    steps = soprano.size
    if steps == 0:
        raise ValueError("the soprano is empty")
    rng = rng if rng is not None else np.random.default_rng()
    conds = conditions(position, fermata, mode)
    if conds.shape[1] != steps:
        raise ValueError(f"soprano has {steps} steps, conditions {conds.shape[1]}")
    allowed = {v: allowed_tokens(vocab, ranges.get(v)) for v in HARMONY_VOICES}
    no_hold_first = {
        v: a & (np.arange(len(vocab)) != vocab.index(HOLD)) for v, a in allowed.items()
    }
    tokens = np.empty((4, steps), np.int64)
    tokens[0] = vocab.encode(soprano)
    tokens[1:] = initial_voices(tokens[0], vocab, allowed, rng)
    per_voice = max(1, min(batch, steps // 3))
    if iterations is None:
        iterations = int(np.ceil(SWEEPS * steps / per_voice))
    pad = vocab.index(START)
    vl_ranges: dict[str, tuple[int, int]] = {}
    for v in VOICES:
        low, high = ranges.get(v, voiceleading.SATB_RANGES[v])
        vl_ranges[v] = (int(low), int(high))
    for temp in temperatures(iterations, temperature, start_temperature):
        times = positions(steps, per_voice, rng)
        logits = run(feeds(tokens, conds, times, dt, pad), list(HARMONY_VOICES))
        for i, voice in enumerate(HARMONY_VOICES):
            mask = np.where((times[i] == 0)[:, None], no_hold_first[voice], allowed[voice])
            scores = np.asarray(logits[voice], np.float64)
            if voice_leading:
                costs = leading_costs(vocab.decode(tokens), 1 + i, times[i], vocab, vl_ranges)
                scores = scores - voice_leading * float(temp) * costs
            tokens[1 + i, times[i]] = sample(scores, float(temp), mask, rng)
    out = vocab.decode(tokens)
    out[0] = soprano
    return out
