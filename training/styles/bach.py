"""Style ``bach``: the live, causal four-voice harmonizer.

At each sixteenth step the model reads the soprano of this step, alto, tenor and bass of the
step before, the bar position, the fermata flag and the mode, and predicts this step's bass,
then tenor given the bass, then alto given both (the ``given`` inputs). Two stacked LSTMs carry
the state, so a step costs the same at bar 1 and bar 100.

With ``ahead`` > 0 (style ``bach-offline``, :mod:`partimento.training.styles.bach_lookahead`) the
same network also reads, at each step, the soprano and the fermata flags of the next ``ahead``
sixteenths (rests past the end of the piece) through one dense layer: a causal alto, tenor
and bass decoder that knows where the melody goes.
"""

from __future__ import annotations

import numpy as np

from partimento.core.music.encoding import REST_CODE
from partimento.core.players.beam import ahead_windows
from partimento.core.players.contract import Tensor
from partimento.progress import bar
from partimento.training.config import TrainConfig
from partimento.training.styles import Prepared, Split, bach_data
from partimento.training.styles.recurrent import LSTMStack, state_tensors

TOKENS = ("soprano", "alto_prev", "tenor_prev", "bass_prev")
CONDITIONS = {"position": 16, "fermata": 2, "mode": 2}
GIVEN = ("bass_given", "tenor_given")
AHEAD = ("soprano_ahead", "fermata_ahead")
HEADS = ("bass", "tenor", "alto")
KIND = "live-harmonizer"


def prepare(cfg: TrainConfig) -> Prepared:
    data = bach_data.load(cfg)
    encoding = data.encoding()
    vocab = data.vocabulary
    splits = {}
    for name in ("train", "valid", "test"):
        pieces = bach_data.transposed(
            data.splits[name], data.ranges, cfg.transpose and name == "train"
        )
        pieces = bar(pieces, f"preparing {name} windows", unit="piece", level=cfg.progress)
        splits[name] = _arrays(pieces, vocab, cfg.seq_len, cfg.window_stride)
    return Prepared(encoding=encoding, splits=splits, data=data.describe())


def piece_arrays(c, vocab, ahead: int = 0) -> dict[str, np.ndarray]:
    """Every input, target and weight of one whole chorale, step by step (teacher forcing)."""
    tok = np.stack([vocab.encode(c.voices[v]) for v in range(4)])  # S A T B
    rest = vocab.code_to_token(REST_CODE)
    prev = np.concatenate([np.full((4, 1), rest, np.int32), tok[:, :-1]], axis=1)
    out = {
        "soprano": tok[0],
        "alto_prev": prev[1],
        "tenor_prev": prev[2],
        "bass_prev": prev[3],
        "position": c.position.astype(np.int32),
        "fermata": c.fermata.astype(np.int32),
        "mode": np.full(c.steps, c.mode, np.int32),
        "bass_given": tok[3],
        "tenor_given": tok[2],
        "bass": tok[3],
        "tenor": tok[2],
        "alto": tok[1],
        "weight": np.ones(c.steps, np.float32),
    }
    if ahead:
        out["soprano_ahead"] = ahead_windows(tok[0], ahead, rest)
        out["fermata_ahead"] = ahead_windows(c.fermata.astype(np.int32), ahead, 0)
    return out


def _arrays(pieces, vocab, seq_len: int, stride: int, ahead: int = 0) -> Split:
    cols: dict[str, list[np.ndarray]] = {}
    rest = vocab.code_to_token(REST_CODE)
    for c in pieces:
        full = piece_arrays(c, vocab, ahead)
        for s in bach_data.windows(c.steps, seq_len, stride):
            for k, arr in full.items():
                w = arr[s : s + seq_len]
                if len(w) < seq_len:  # a short piece: pad with rests that weigh nothing
                    pad = (
                        0.0
                        if k == "weight"
                        else (rest if k in (*TOKENS, *GIVEN, *HEADS, "soprano_ahead") else 0)
                    )
                    w = np.concatenate([w, np.full((seq_len - len(w), *w.shape[1:]), pad, w.dtype)])
                cols.setdefault(k, []).append(w)
    arrays = {k: np.stack(v) for k, v in cols.items()}
    x = {k: arrays[k] for k in (*TOKENS, *CONDITIONS, *GIVEN, *(AHEAD if ahead else ()))}
    y = {k: arrays[k] for k in HEADS}
    w = {k: arrays["weight"] for k in HEADS}
    return Split(x, y, w)


def build(cfg: TrainConfig, encoding: dict, ahead: int = 0):
    """(training model, step model): the same layers, the step model with explicit state."""
    import keras
    from keras import layers

    V = len(encoding["vocabulary"])
    pitch = layers.Embedding(V, cfg.embedding, name="pitch_embedding")
    cond = {
        k: layers.Embedding(n, 8 if k == "position" else 4, name=f"{k}_embedding")
        for k, n in CONDITIONS.items()
    }
    project = layers.Dense(cfg.units, activation="relu", name="input_projection")
    stack = LSTMStack(cfg)
    hidden = {h: layers.Dense(cfg.dense, activation="relu", name=f"{h}_hidden") for h in HEADS}
    out = {h: layers.Dense(V, name=h) for h in HEADS}
    if ahead:
        ahead_width = ahead * (cfg.embedding + 4)
        flatten = layers.Reshape((-1, ahead_width), name="ahead_rows")
        read_ahead = layers.Dense(cfg.units, activation="relu", name="ahead")

    def forward(inp: dict, states: list | None):
        parts = [pitch(inp[k]) for k in TOKENS] + [cond[k](inp[k]) for k in CONDITIONS]
        if ahead:
            rows = layers.Concatenate(axis=-1)(
                [pitch(inp["soprano_ahead"]), cond["fermata"](inp["fermata_ahead"])]
            )
            parts.append(read_ahead(flatten(rows)))
        x = layers.Concatenate(axis=-1)(parts)
        x, new_states = stack(project(x), states)
        gb, gt = pitch(inp["bass_given"]), pitch(inp["tenor_given"])
        logits = {
            "bass": out["bass"](hidden["bass"](x)),
            "tenor": out["tenor"](hidden["tenor"](layers.Concatenate()([x, gb]))),
            "alto": out["alto"](hidden["alto"](layers.Concatenate()([x, gb, gt]))),
        }
        return logits, new_states

    def inputs():
        seq = {
            k: keras.Input((None,), dtype="int32", name=k) for k in (*TOKENS, *CONDITIONS, *GIVEN)
        }
        if ahead:
            seq |= {k: keras.Input((None, ahead), dtype="int32", name=k) for k in AHEAD}
        return seq

    inp = inputs()
    logits, _ = forward(inp, None)
    train_model = keras.Model(inp, logits, name="bach_live")

    inp2 = inputs()
    states_in = stack.state_inputs()
    logits2, states_out = forward(inp2, states_in)
    named_states = stack.state_outputs(states_in, states_out)
    # lists, in the order of tensors(): tf2onnx passes inputs positionally
    step_model = keras.Model(
        [*inp2.values(), *states_in],
        [*(logits2[h] for h in HEADS), *named_states],
        name="bach_step",
    )
    return train_model, step_model


def given_heads(cfg: TrainConfig, step_model) -> tuple[str, dict[str, np.ndarray]]:
    """The tenor and alto heads' weights for ``heads.npz`` (:mod:`partimento.core.players.heads`),
    and the state output they read: the top LSTM's ``h`` is its output for a one-step input."""
    from partimento.core.players.heads import EMBEDDING, LAYERS

    arrays = {EMBEDDING: step_model.get_layer(EMBEDDING).get_weights()[0]}
    for name in LAYERS:
        kernel, bias = step_model.get_layer(name).get_weights()
        arrays[f"{name}/kernel"], arrays[f"{name}/bias"] = kernel, bias
    return f"h{cfg.layers - 1}_out", arrays


def tensors(cfg: TrainConfig, encoding: dict, ahead: int = 0) -> tuple[list[Tensor], list[Tensor]]:
    seq = ("batch", "time")
    voice_of = {
        "soprano": "soprano",
        "alto_prev": "alto",
        "tenor_prev": "tenor",
        "bass_prev": "bass",
        "bass_given": "bass",
        "tenor_given": "tenor",
    }
    ins = [Tensor(k, seq, "int32", "token", voice=voice_of[k]) for k in TOKENS]
    ins += [Tensor(k, seq, "int32", "condition") for k in CONDITIONS]
    ins += [Tensor(k, seq, "int32", "given", voice=voice_of[k]) for k in GIVEN]
    if ahead:
        ins += [
            Tensor("soprano_ahead", (*seq, ahead), "int32", "token"),
            Tensor("fermata_ahead", (*seq, ahead), "int32", "condition"),
        ]
    V = len(encoding["vocabulary"])
    outs = [Tensor(h, (*seq, V), "float32", "logits", voice=h) for h in HEADS]
    state_in, state_out = state_tensors(cfg)
    return ins + state_in, outs + state_out
