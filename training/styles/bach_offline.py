"""Style ``bach-offline``: DeepBach (Hadjeres et al. 2017), harmonizing a whole melody offline.

Each harmony voice (alto, tenor, bass) has its own network, which predicts that voice at step
``t`` from a window of ``timesteps`` (DeepBach's ``dt``) steps of past and future of all four
voices and the conditions, plus the other three voices and the conditions at ``t``:

* an embedding per input voice (and per condition) turns each window row into a vector;
* one LSTM reads the past rows ``t-dt .. t-1``, another the future rows ``t+dt .. t+1``
  (reversed, so both end next to ``t``); ``second_lstm`` stacks a second LSTM on each;
* two ReLU dense layers read step ``t`` without the predicted voice's own token;
* the three summaries are concatenated, then ``Dense(middle, relu)`` and ``Dense(V)`` logits.

The window layout and padding (the vocabulary's ``START`` token and 0 conditions outside the
piece) live in :mod:`partimento.core.players.gibbs`, which the sampler uses too. Training samples
``t`` every ``gap`` steps from a random offset in each (transposed) chorale; one example trains all
three voices. The training model reads one shared window pair; the step model exported to ONNX
reads a window pair per voice, so one call can resample a different step in each voice.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from partimento.core.music.encoding import HARMONY_VOICES, START, VOICES, Vocabulary
from partimento.core.players.contract import Contract, Tensor
from partimento.core.players.gibbs import (
    CONDITIONS,
    condition_input,
    conditions,
    token_input,
    windows,
)
from partimento.core.players.sampling import nll_and_hits
from partimento.training.config import TrainConfig
from partimento.training.data.chorales import Chorale
from partimento.training.styles import Prepared, Split, bach_data

KIND = "offline-harmonizer"
CONDITION_EMBEDDING = {"position": 8, "fermata": 4, "mode": 4}


def prepare(cfg: TrainConfig) -> Prepared:
    """Windows around every ``gap``-th step of the chorales; targets for all three voices."""
    data = bach_data.load(cfg)
    low, high = data.vocabulary.pitch_range
    data = dataclasses.replace(data, vocabulary=Vocabulary.for_pitches(low, high, start=True))
    encoding = data.encoding()
    encoding["window"] = window_spec(cfg.timesteps)
    rng = np.random.default_rng(cfg.seed)
    splits = {}
    for name in ("train", "valid", "test"):
        pieces = bach_data.transposed(
            data.splits[name], data.ranges, cfg.transpose and name == "train"
        )
        splits[name] = examples(pieces, data.vocabulary, cfg.timesteps, cfg.gap, rng)
    return Prepared(encoding=encoding, splits=splits, data=data.describe())


def window_spec(dt: int) -> dict:
    """What ``model.json`` says about the input windows."""
    return {
        "timesteps": dt,
        "rows": 2 * dt + 1,
        "layout": "rows 0..dt-1 steps t-dt..t-1; row dt step t; rows dt+1..2dt steps "
        "t+dt..t+1 (future reversed); columns soprano, alto, tenor, bass",
        "conditions": list(CONDITIONS),
        "padding": f"outside the piece every voice is {START!r} and every condition 0",
        "own_voice": "a voice's network ignores its own token at row dt",
    }


def examples(
    pieces: list[Chorale], vocab: Vocabulary, dt: int, gap: int, rng: np.random.Generator
) -> Split:
    """Token and condition windows at every ``gap``-th step (random phase per piece)."""
    pad = vocab.index(START)
    toks, conds, targets = [], [], []
    for c in pieces:
        tokens = np.stack([vocab.encode(c.voices[v]) for v in range(4)])
        times = np.arange(int(rng.integers(min(gap, c.steps))), c.steps, gap)
        tok, cond = windows(tokens, conditions(c.position, c.fermata, c.mode), times, dt, pad)
        toks.append(tok.astype(np.int16))
        conds.append(cond.astype(np.int16))
        targets.append(tokens[1:, times])
    y = np.concatenate(targets, axis=1).astype(np.int32)
    x = {"tokens": np.concatenate(toks), "conditions": np.concatenate(conds)}
    return Split(x, {v: y[i] for i, v in enumerate(HARMONY_VOICES)})


def _voice_layers(cfg: TrainConfig, V: int, sizes: dict[str, int], voice: str) -> dict:
    """The layers of one voice's network (DeepBach trains one model per voice)."""
    from keras import layers

    def lstms(side: str) -> list:
        depth = 2 if cfg.second_lstm else 1
        return [
            layers.LSTM(cfg.lstm1, return_sequences=i < depth - 1, name=f"{voice}_{side}_lstm{i}")
            for i in range(depth)
        ]

    return {
        "tokens": [layers.Embedding(V, cfg.embedding, name=f"{voice}_embed_{v}") for v in VOICES],
        "conditions": [
            layers.Embedding(sizes[k], CONDITION_EMBEDDING[k], name=f"{voice}_embed_{k}")
            for k in CONDITIONS
        ],
        "past": lstms("past"),
        "future": lstms("future"),
        "centre": [
            layers.Dense(cfg.middle, activation="relu", name=f"{voice}_centre{i}") for i in range(2)
        ],
        "dropout": layers.Dropout(cfg.dropout, name=f"{voice}_dropout"),
        "hidden": layers.Dense(cfg.middle, activation="relu", name=f"{voice}_hidden"),
        "logits": layers.Dense(V, name=voice),
    }


def _voice_forward(net: dict, voice: str, tokens, conds, dt: int):
    """Logits for ``voice`` at the centre of each window."""
    from keras import layers

    toks = [emb(tokens[:, :, i]) for i, emb in enumerate(net["tokens"])]
    cnds = [emb(conds[:, :, i]) for i, emb in enumerate(net["conditions"])]
    rows = layers.Concatenate(name=f"{voice}_rows")(toks + cnds)
    past, future = rows[:, :dt], rows[:, dt + 1 :]
    for lstm in net["past"]:
        past = lstm(past)
    for lstm in net["future"]:
        future = lstm(future)
    others = [t[:, dt] for i, t in enumerate(toks) if i != VOICES.index(voice)]
    centre = layers.Concatenate(name=f"{voice}_now")(others + [c[:, dt] for c in cnds])
    for dense in net["centre"]:
        centre = dense(centre)
    merged = layers.Concatenate(name=f"{voice}_merged")([past, centre, future])
    hidden = net["dropout"](net["hidden"](net["dropout"](merged)))
    return net["logits"](hidden)


def build(cfg: TrainConfig, encoding: dict):
    """(training model on one shared window pair, step model on a window pair per voice)."""
    import keras

    V = len(encoding["vocabulary"])
    sizes = {k: int(encoding["conditions"][k]["size"]) for k in CONDITIONS}
    dt, W = cfg.timesteps, 2 * cfg.timesteps + 1
    nets = {v: _voice_layers(cfg, V, sizes, v) for v in HARMONY_VOICES}

    tokens = keras.Input((W, 4), dtype="int32", name="tokens")
    conds = keras.Input((W, len(CONDITIONS)), dtype="int32", name="conditions")
    train_model = keras.Model(
        {"tokens": tokens, "conditions": conds},
        {v: _voice_forward(nets[v], v, tokens, conds, dt) for v in HARMONY_VOICES},
        name="deepbach",
    )

    inputs, outputs = [], []
    for v in HARMONY_VOICES:
        t = keras.Input((W, 4), dtype="int32", name=token_input(v))
        c = keras.Input((W, len(CONDITIONS)), dtype="int32", name=condition_input(v))
        inputs += [t, c]
        outputs.append(_voice_forward(nets[v], v, t, c, dt))
    # lists, in the order of tensors(): tf2onnx passes inputs positionally
    step_model = keras.Model(inputs, outputs, name="deepbach_step")
    return train_model, step_model


def tensors(cfg: TrainConfig, encoding: dict) -> tuple[list[Tensor], list[Tensor]]:
    """Per harmony voice a token window and a condition window in; per voice logits out."""
    W = 2 * cfg.timesteps + 1
    ins: list[Tensor] = []
    for v in HARMONY_VOICES:
        ins.append(Tensor(token_input(v), ("batch", W, 4), "int32", "token", voice=v))
        ins.append(
            Tensor(condition_input(v), ("batch", W, len(CONDITIONS)), "int32", "condition", voice=v)
        )
    V = len(encoding["vocabulary"])
    outs = [Tensor(v, ("batch", V), "float32", "logits", voice=v) for v in HARMONY_VOICES]
    return ins, outs


def random_feeds(contract: Contract, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random but valid windows for every input of the step model."""
    rng = np.random.default_rng(seed)
    sizes = [int(contract.encoding["conditions"][k]["size"]) for k in CONDITIONS]
    feeds = {}
    for t in contract.inputs:
        shape = (batch, *(int(d) for d in t.shape[1:]))
        if t.role == "token":
            feeds[t.name] = rng.integers(0, len(contract.vocabulary), shape, dtype=np.int32)
        else:
            feeds[t.name] = np.stack(
                [rng.integers(0, n, shape[:-1], dtype=np.int32) for n in sizes], axis=-1
            )
    return feeds


def parity(cfg: TrainConfig, contract: Contract, train_model, session, batch: int = 6) -> float:
    """Max |logit difference| between the Keras training model and the ONNX step model.

    Each voice gets its own random windows, so the check also proves each ONNX output reads
    its own voice's inputs.
    """
    feeds = random_feeds(contract, batch)
    names = [t.name for t in contract.outputs]
    got = dict(zip(names, session.run(names, feeds), strict=True))
    worst = 0.0
    for v in HARMONY_VOICES:
        ref = train_model(
            {"tokens": feeds[token_input(v)], "conditions": feeds[condition_input(v)]},
            training=False,
        )[v]
        worst = max(worst, float(np.abs(np.asarray(ref) - got[v]).max()))
    return worst


def test_nll(m, cfg: TrainConfig, pieces: list[Chorale]) -> dict:
    """NLL per token and accuracy of each harmony voice at every step, all other voices true.

    Runs the exported ONNX model (``m`` is a loaded :class:`partimento.files.model.Model`).
    """
    vocab = m.contract.vocabulary
    dt = int(m.contract.encoding["window"]["timesteps"])
    pad = vocab.index(START)
    sums = {v: [0.0, 0, 0] for v in HARMONY_VOICES}
    for c in pieces:
        tokens = np.stack([vocab.encode(c.voices[v]) for v in range(4)])
        conds = conditions(c.position, c.fermata, c.mode)
        for start in range(0, c.steps, 256):
            times = np.arange(start, min(start + 256, c.steps))
            tok, cond = windows(tokens, conds, times, dt, pad)
            feeds = {}
            for v in HARMONY_VOICES:
                feeds[token_input(v)] = tok.astype(np.int32)
                feeds[condition_input(v)] = cond.astype(np.int32)
            out = m.run(feeds)
            for i, v in enumerate(HARMONY_VOICES):
                nll, hits, n = nll_and_hits(np.asarray(out[v], np.float64), tokens[1 + i, times])
                sums[v][0] += nll
                sums[v][1] += hits
                sums[v][2] += n
    nll = {v: round(s[0] / s[2], 4) for v, s in sums.items()}
    nll["mean"] = round(sum(s[0] for s in sums.values()) / sum(s[2] for s in sums.values()), 4)
    return {
        "nll_per_token": nll,
        "accuracy": {v: round(s[1] / s[2], 4) for v, s in sums.items()},
        "context": "every other voice known at every step (DeepBach's conditional)",
    }
