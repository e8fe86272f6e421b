"""Model types for token-sequence styles: ``--model lstm`` or ``--model transformer``.

:func:`build_sequence_model` turns a config and a vocabulary size into a training model (a
sequence of token ids in, logits for the next token at every step out), a step model for the
daemon and the contract tensors of that step model. Any style whose data is "a window of token
ids, the same ids one step later" can use it (folk does; jazz and piano can).

- ``lstm``: embedding, ``cfg.layers`` LSTMs of ``cfg.units`` with explicit h/c state
  (:class:`partimento.training.styles.recurrent.LSTMStack`), ``cfg.hidden_dense`` hidden dense
  layers of
  ``cfg.dense`` units with ``cfg.activation``, the output layer. The step model takes any number
  of tokens and carries the state.
- ``transformer``: a decoder-only transformer over a bounded window of ``W = cfg.seq_len``
  tokens: token embedding of ``cfg.embed_dim`` plus a learned positional embedding over W
  positions, ``cfg.layers`` pre-norm blocks (causal self-attention with ``cfg.num_heads``
  heads, a feed-forward of ``cfg.ff_dim`` with gelu, ``cfg.dropout``), then the same hidden
  dense layers and output as the LSTM (MechanicalBach's transformer head).

The transformer's step model keeps its context as explicit state, so the contract's
state-in/state-out pairs carry it as they carry an LSTM's h and c: ``window_in`` holds the last
W-1 token ids, each plus one (0 is an empty slot), as float32 (the daemon's state is float32;
the graph casts), and ``phase_in`` how many tokens came before, modulo ``cfg.window_stride``
(S). One call reads one new token (the ``token`` input is ``(batch, 1)``: the daemon feeds
such a model one token at a time), attends over its context and returns the logits, the
window without its oldest slot and the next phase.

The context is phase-aligned, because the training windows start at multiples of S from the
START prefix (S = 16: on a bar line; only a tune's last window is flush with its end
instead), so a learned position also says where in the bar a token is. A plain sliding
window would put the newest token at the last position whatever its place in the bar;
measured on folk that cost 0.7 nats per token (test NLL 1.40 against 0.68 aligned, after the
same 300 steps). So the step model reads the tokens since the
latest multiple of S that leaves at least W - S + 1 of them (W - S + 1 to W tokens, positions
from 0), exactly a training window's prefix: every step of a stream is the training model on
that window (:func:`window_parity` checks it at export, the window filling and sliding).
Recomputing the window costs O(W^2) per step, a fraction of a millisecond at W = 64; a
key/value cache would save that but needs state per layer. W must be a multiple of S.

gelu is the tanh approximation: Keras's exact gelu exports an Erf pattern onnxruntime rejects.
"""

from __future__ import annotations

import numpy as np

from partimento.core.players.contract import Tensor
from partimento.training.config import TrainConfig
from partimento.training.styles.recurrent import state_tensors, token_lstm

WINDOW_IN = "window_in"
WINDOW_OUT = "window_out"
PHASE_IN = "phase_in"
PHASE_OUT = "phase_out"
MASKED = -1e9  # attention score of a key a query may not see (finite: no NaN on empty rows)


def hidden_dense(cfg: TrainConfig) -> list:
    """MechanicalBach's hidden dense layers between the sequence model and the output (gelu
    in its tanh approximation: the exact one gives an ONNX file onnxruntime refuses)."""
    import keras
    from keras import layers

    act = keras.activations.get(cfg.activation)
    if cfg.activation == "gelu":

        def act(x):
            return keras.activations.gelu(x, approximate=True)

    return [
        layers.Dense(cfg.dense, activation=act, name=f"hidden{i}") for i in range(cfg.hidden_dense)
    ]


def _head(x, dense: list, out):
    for layer in dense:
        x = layer(x)
    return out(x)


# --- lstm ---------------------------------------------------------------------------------------


def _lstm(cfg: TrainConfig, vocab_size: int, name: str, token: str, output: str):
    train_model, step_model = token_lstm(
        cfg, vocab_size, token=token, output=output, name=name, hidden=hidden_dense(cfg)
    )
    state_in, state_out = state_tensors(cfg)
    ins = [Tensor(token, ("batch", "time"), "int32", "token"), *state_in]
    outs = [Tensor(output, ("batch", "time", vocab_size), "float32", "logits"), *state_out]
    return train_model, step_model, (ins, outs)


# --- transformer --------------------------------------------------------------------------------


def _window_transformer_class():
    """The layer class, defined on first use so importing this module needs no Keras."""
    import keras
    from keras import layers, ops

    class WindowTransformer(layers.Layer):
        """Token ids (+1, 0 = empty slot) of a window -> one vector per slot, causal."""

        def __init__(self, vocab_size: int, window: int, cfg: TrainConfig, **kw) -> None:
            super().__init__(**kw)
            if cfg.embed_dim % cfg.num_heads:
                raise ValueError(
                    f"embed_dim {cfg.embed_dim} is not a multiple of num_heads {cfg.num_heads}"
                )
            d, self.heads, self.window = cfg.embed_dim, cfg.num_heads, window
            self.tokens = layers.Embedding(vocab_size + 1, d, name="token_embedding")
            self.positions = layers.Embedding(window, d, name="position_embedding")
            self.blocks = []
            for i in range(cfg.layers):
                self.blocks.append(
                    {
                        "norm1": layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_norm1"),
                        "qkv": layers.Dense(3 * d, name=f"block{i}_qkv"),
                        "proj": layers.Dense(d, name=f"block{i}_proj"),
                        "norm2": layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_norm2"),
                        "ff1": layers.Dense(cfg.ff_dim, name=f"block{i}_ff1"),
                        "ff2": layers.Dense(d, name=f"block{i}_ff2"),
                    }
                )
            self.drop = layers.Dropout(cfg.dropout)
            self.norm = layers.LayerNormalization(epsilon=1e-5, name="final_norm")

        def _attention(self, block: dict, x, bias, training):
            b, n = ops.shape(x)[0], ops.shape(x)[1]
            d = x.shape[-1]
            dh = d // self.heads
            q, k, v = ops.split(block["qkv"](x), 3, axis=-1)

            def heads(t):
                return ops.transpose(ops.reshape(t, (b, n, self.heads, dh)), (0, 2, 1, 3))

            scores = ops.matmul(heads(q), ops.transpose(heads(k), (0, 1, 3, 2)))
            weights = ops.softmax(scores / float(np.sqrt(dh)) + bias, axis=-1)
            y = ops.transpose(
                ops.matmul(self.drop(weights, training=training), heads(v)), (0, 2, 1, 3)
            )
            return block["proj"](ops.reshape(y, (b, n, d)))

        def call(self, ids, training=None):
            valid = ops.cast(ids > 0, "int32")
            pos = ops.clip(ops.cumsum(valid, axis=1) - 1, 0, self.window - 1)
            x = self.tokens(ids) + self.positions(pos)
            idx = ops.arange(ops.shape(ids)[1])
            causal = ops.expand_dims(idx, 1) >= ops.expand_dims(idx, 0)  # (query, key)
            seen = ops.logical_and(
                ops.expand_dims(causal, 0), ops.expand_dims(valid > 0, 1)
            )  # (batch, query, key)
            bias = ops.expand_dims(ops.where(seen, 0.0, MASKED), 1)  # one for every head
            x = self.drop(x, training=training)
            for block in self.blocks:
                x = x + self.drop(
                    self._attention(block, block["norm1"](x), bias, training), training=training
                )
                h = keras.activations.gelu(block["ff1"](block["norm2"](x)), approximate=True)
                x = x + self.drop(block["ff2"](h), training=training)
            return self.norm(x)

    return WindowTransformer


def _transformer(cfg: TrainConfig, vocab_size: int, name: str, token: str, output: str):
    import keras
    from keras import layers, ops

    window, align = cfg.seq_len, cfg.window_stride
    if window % align:
        raise ValueError(
            f"seq_len {window} must be a multiple of window_stride {align} for "
            "a transformer (its windows are aligned to the training windows)"
        )
    body = _window_transformer_class()(vocab_size, window, cfg, name="transformer")
    dense, out = hidden_dense(cfg), layers.Dense(vocab_size, name=output)

    tokens = keras.Input((None,), dtype="int32", name=token)
    x = body(tokens + 1)
    train_model = keras.Model({token: tokens}, {output: _head(x, dense, out)}, name=name)

    new = keras.Input((1,), dtype="int32", name=token)
    past = keras.Input((window - 1,), dtype="float32", name=WINDOW_IN)
    phase = keras.Input((1,), dtype="float32", name=PHASE_IN)
    ids = ops.concatenate([ops.cast(past, "int32"), new + 1], axis=1)
    # the newest `keep` slots: back to the latest multiple of `align` leaving >= W - align + 1
    keep = ops.cast(phase, "int32") + (window - align + 1)  # (batch, 1)
    age = ops.arange(window - 1, -1, -1)  # of each slot, the newest 0
    last = body(ids * ops.cast(keep > ops.expand_dims(age, 0), "int32"))[:, -1:, :]
    logits = _head(last, dense, out)
    shifted = layers.Identity(name=WINDOW_OUT)(ops.cast(ids[:, 1:], "float32"))
    phase_next = layers.Identity(name=PHASE_OUT)(ops.mod(phase + 1.0, float(align)))
    step_model = keras.Model([new, past, phase], [logits, shifted, phase_next], name=f"{name}_step")

    return train_model, step_model, sequence_tensors(cfg, vocab_size, token=token, output=output)


def build_sequence_model(
    cfg: TrainConfig, vocab_size: int, *, name: str, token: str = "token", output: str = "next"
):
    """(training model, step model, (contract inputs, contract outputs)) for ``cfg.model``."""
    kinds = {"lstm": _lstm, "transformer": _transformer}
    if cfg.model not in kinds:
        raise ValueError(f"model {cfg.model!r} is not a sequence model ({', '.join(kinds)})")
    return kinds[cfg.model](cfg, vocab_size, name, token, output)


def sequence_tensors(
    cfg: TrainConfig, vocab_size: int, *, token: str = "token", output: str = "next"
) -> tuple[list[Tensor], list[Tensor]]:
    """The contract tensors of :func:`build_sequence_model`'s step model, without Keras."""
    if cfg.model == "transformer":
        w = cfg.seq_len
        return (
            [
                Tensor(token, ("batch", 1), "int32", "token"),
                Tensor(WINDOW_IN, ("batch", w - 1), "float32", "state-in", pairs_with=WINDOW_OUT),
                Tensor(PHASE_IN, ("batch", 1), "float32", "state-in", pairs_with=PHASE_OUT),
            ],
            [
                Tensor(output, ("batch", 1, vocab_size), "float32", "logits"),
                Tensor(WINDOW_OUT, ("batch", w - 1), "float32", "state-out", pairs_with=WINDOW_IN),
                Tensor(PHASE_OUT, ("batch", 1), "float32", "state-out", pairs_with=PHASE_IN),
            ],
        )
    state_in, state_out = state_tensors(cfg)
    return (
        [Tensor(token, ("batch", "time"), "int32", "token"), *state_in],
        [Tensor(output, ("batch", "time", vocab_size), "float32", "logits"), *state_out],
    )


def window_parity(cfg: TrainConfig, contract, train_model, session, extra: int = 16) -> float:
    """Max |logit difference| between the ONNX step model fed one token at a time and the
    Keras training model run on the same window (from the latest multiple of the stride that
    leaves at least W - stride + 1 tokens), over W + ``extra`` steps of random tokens, so the
    window fills and then slides."""
    window, align = cfg.seq_len, cfg.window_stride
    token = contract.input("token").name
    logits = contract.output("logits").name
    rng = np.random.default_rng(0)
    seq = rng.integers(0, len(contract.vocabulary), (1, window + extra), dtype=np.int32)
    state = {
        WINDOW_IN: np.zeros((1, window - 1), np.float32),
        PHASE_IN: np.zeros((1, 1), np.float32),
    }
    worst = 0.0
    for i in range(seq.shape[1]):
        got, win, phase = session.run(
            [logits, WINDOW_OUT, PHASE_OUT], {token: seq[:, i : i + 1], **state}
        )
        state = {WINDOW_IN: win, PHASE_IN: phase}
        start = max(0, i - (window - align) - i % align)
        ref = train_model({token: seq[:, start : i + 1]}, training=False)
        worst = max(worst, float(np.abs(got[:, 0] - np.asarray(ref[logits])[:, -1]).max()))
    return worst
