"""The stacked LSTM the step models share, with its state as explicit inputs and outputs, and
the plain token model built on it (token -> embedding -> LSTMs -> logits)."""

from __future__ import annotations

from partimento.core.players.contract import Tensor
from partimento.training.config import TrainConfig


class LSTMStack:
    """``cfg.layers`` LSTMs of ``cfg.units`` with dropout after each (``cfg.input_dropout``
    before the first, ``cfg.recurrent_dropout`` on each one's state), callable with or without
    initial state; the step model feeds ``h{i}_in``/``c{i}_in`` and reads ``h{i}_out``/
    ``c{i}_out``."""

    def __init__(self, cfg: TrainConfig) -> None:
        from keras import layers

        self.cfg = cfg
        self.lstms = [
            layers.LSTM(
                cfg.units,
                return_sequences=True,
                return_state=True,
                recurrent_dropout=cfg.recurrent_dropout,
                name=f"lstm{i}",
            )
            for i in range(cfg.layers)
        ]
        self.drop = layers.Dropout(cfg.dropout, name="dropout")
        self.drop_in = layers.Dropout(cfg.input_dropout, name="input_dropout")

    def __call__(self, x, states: list | None = None):
        """The sequence output and the final ``[h0, c0, h1, c1, ...]``."""
        new_states = []
        if self.cfg.input_dropout:
            x = self.drop_in(x)
        for i, lstm in enumerate(self.lstms):
            init = None if states is None else states[2 * i : 2 * i + 2]
            x, h, c = lstm(x, initial_state=init)
            new_states += [h, c]
            x = self.drop(x)
        return x, new_states

    def state_inputs(self) -> list:
        import keras

        return [
            keras.Input((self.cfg.units,), name=f"{s}{i}_in")
            for i in range(self.cfg.layers)
            for s in ("h", "c")
        ]

    @staticmethod
    def state_outputs(states_in: list, states_out: list) -> list:
        """The final states under the names that pair them with their inputs."""
        from keras import layers

        return [
            layers.Identity(name=t.name.replace("_in", "_out"))(s)
            for t, s in zip(states_in, states_out, strict=True)
        ]


def state_tensors(cfg: TrainConfig) -> tuple[list[Tensor], list[Tensor]]:
    """Contract entries for the stack's state, each state-in paired with its state-out."""
    ins, outs = [], []
    for i in range(cfg.layers):
        for s in ("h", "c"):
            ins.append(
                Tensor(
                    f"{s}{i}_in",
                    ("batch", cfg.units),
                    "float32",
                    "state-in",
                    pairs_with=f"{s}{i}_out",
                )
            )
            outs.append(
                Tensor(
                    f"{s}{i}_out",
                    ("batch", cfg.units),
                    "float32",
                    "state-out",
                    pairs_with=f"{s}{i}_in",
                )
            )
    return ins, outs


def tied_output(embed, width: int, name: str):
    """The output layer of a model whose input embedding is its output matrix too (Press and
    Wolf 2017): the LSTM's output projected to the embedding's ``width``, multiplied by the
    embedding's transpose, plus a bias per token."""
    import keras
    from keras import layers

    class TiedLogits(layers.Layer):
        def build(self, input_shape) -> None:
            self.bias = self.add_weight(shape=(embed.input_dim,), initializer="zeros", name="bias")

        def call(self, x):
            # the embedding's own variable, not tracked here: the embedding layer owns it
            return keras.ops.matmul(x, keras.ops.transpose(embed.embeddings)) + self.bias

    project = layers.Dense(width, name=f"{name}_projection")
    logits = TiedLogits(name=name)
    return lambda x: logits(project(x))


def token_lstm(
    cfg: TrainConfig,
    vocab_size: int,
    *,
    token: str,
    output: str,
    name: str,
    embedding: str = "token_embedding",
    hidden: list | None = None,
):
    """(training model, step model) of a next-token LSTM: ``token`` ids through an embedding
    (layer ``embedding``), ``cfg.layers`` LSTMs, the ``hidden`` dense layers if any and a
    dense ``output`` of logits; the step model has the same layers with the state as explicit
    inputs and outputs."""
    import keras
    from keras import layers

    embed = layers.Embedding(vocab_size, cfg.embedding, name=embedding)
    stack = LSTMStack(cfg)
    if cfg.tie_embedding:
        out = tied_output(embed, cfg.embedding, output)
    else:
        out = layers.Dense(vocab_size, name=output)

    def forward(ids, states: list | None):
        x, new_states = stack(embed(ids), states)
        for layer in hidden or ():
            x = layer(x)
        return out(x), new_states

    ids = keras.Input((None,), dtype="int32", name=token)
    logits, _ = forward(ids, None)
    train_model = keras.Model({token: ids}, {output: logits}, name=name)

    ids2 = keras.Input((None,), dtype="int32", name=token)
    states_in = stack.state_inputs()
    logits2, states_out = forward(ids2, states_in)
    named_states = stack.state_outputs(states_in, states_out)
    # lists, in the order of tensors(): tf2onnx passes inputs positionally
    step_model = keras.Model([ids2, *states_in], [logits2, *named_states], name=f"{name}_step")
    return train_model, step_model
