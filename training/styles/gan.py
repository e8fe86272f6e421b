"""Model type ``--model gan``: a phrase generator trained against a discriminator.

The generator (what ships) maps a noise vector of ``cfg.latent_dim`` to a whole phrase of
``cfg.seq_len`` sixteenths at once, as MechanicalBach's GAN does: ``cfg.gan_dense`` dense
layers of ``cfg.gan_hidden`` units, a dense layer reshaped to ``seq_len / 4`` steps of
``cfg.conv_start`` channels, two transposed convolutions (stride 2) and one more convolution
of ``cfg.conv_hidden`` channels, then per step logits over the style's vocabulary.

The discriminator reads a phrase as one probability vector per step, a Gumbel-softmax
sample (temperature ``GUMBEL_TAU``): of the generator's logits for generated phrases (so
gradients flow into the generator), of smoothed one-hots (``REAL_SMOOTHING``) for real ones,
so soft against hard rows gives nothing away (with plain one-hot real rows the generator
drove its logits into the thousands and collapsed to one held note; so its logits are also
bounded, ``LOGIT_BOUND`` * tanh, about as sharp as a smoothed real row). It is two strided
convolutions of ``cfg.conv_hidden`` channels, dropout ``cfg.dropout``, the flattened
features plus their spread over the batch (a collapsed generator's batch has none) and one
logit.

Training goes through ``training/train.py`` unchanged: :class:`PhraseGAN` is a Keras model
whose ``compile`` accepts and ignores the per-token losses and metrics train.py passes (the
given optimizer trains the generator, a second Adam with beta_1 0.5 the discriminator) and
whose ``train_step`` makes one discriminator and one generator update per batch. Real phrases
are the style's training windows whose every step is music (weight 1): the windows that reach
into the START prefix are left out. Its ``loss`` (what the best-weights checkpoint watches)
is the generator's non-saturating loss plus, weighted by ``MARGINAL_WEIGHT``, feature
matching on the token frequencies: KL(real || generated) between the batch's real tokens and
the mean of the generator's softmax. Against the discriminator alone the generator's logits
sat at the bound, nearly uniform over the vocabulary: holds were 7 % of its steps and it
played 3-4 times the data's notes per bar; matching the frequencies brings holds, rests
and pitch classes to the data's. ``d_loss`` is logged beside it. Real labels are smoothed
to 0.9.

Exported is the generator alone: input ``noise`` (float32, (batch, latent_dim)), output
``phrase`` logits (batch, seq_len, vocabulary); the contract's ``encoding`` says
``type: phrase`` and the phrase length, and the daemon plays it with
:class:`partimento.core.players.phrases.PhraseContinuer`.
"""

from __future__ import annotations

import numpy as np

from partimento.core.players.contract import Tensor
from partimento.training.config import TrainConfig

NOISE = "noise"
PHRASE = "phrase"
GUMBEL_TAU = 0.5
REAL_SMOOTHING = 0.1  # probability mass real one-hots spread over the vocabulary
LOGIT_BOUND = 4.0  # generator logits within +-4: as sharp as the smoothed real rows, no more
REAL_LABEL = 0.9
MARGINAL_WEIGHT = 10.0
"""Weight of the generator's feature-matching term: KL(real || generated) between the
batch's token frequencies (real windows' one-hots, the generator's softmax), so the share of
holds, rests and onsets, and with it the notes per bar, is the data's."""
CANDIDATES = 4  # phrases the daemon draws per answer, keeping the one nearest the player's


def encoding(cfg: TrainConfig) -> dict:
    """What the contract's ``encoding`` adds for a phrase generator."""
    return {
        "type": "phrase",
        "phrase_steps": cfg.seq_len,
        "latent_dim": cfg.latent_dim,
        "candidates": CANDIDATES,
        "phrase": (
            f"the generator writes {cfg.seq_len} sixteenths from noise; the daemon "
            f"draws {CANDIDATES}, keeps the one whose pitch-class histogram is "
            "nearest the player's phrase, and repeats it to fill an answer"
        ),
    }


def _check(cfg: TrainConfig) -> None:
    if cfg.seq_len % 4:
        raise ValueError(f"seq_len {cfg.seq_len}: a GAN phrase length must be a multiple of 4")


def generator(cfg: TrainConfig, vocab_size: int):
    import keras
    from keras import layers

    _check(cfg)
    noise = keras.Input((cfg.latent_dim,), name=NOISE)
    x = noise
    for i in range(cfg.gan_dense):
        x = layers.Dense(cfg.gan_hidden, activation=cfg.activation, name=f"g_dense{i}")(x)
    x = layers.Dense(cfg.seq_len // 4 * cfg.conv_start, activation=cfg.activation, name="g_start")(
        x
    )
    x = layers.Reshape((cfg.seq_len // 4, cfg.conv_start))(x)
    for i in range(2):
        x = layers.Conv1DTranspose(
            cfg.conv_hidden,
            4,
            strides=2,
            padding="same",
            activation=cfg.activation,
            name=f"g_up{i}",
        )(x)
    x = layers.Conv1D(cfg.conv_hidden, 3, padding="same", activation=cfg.activation, name="g_conv")(
        x
    )
    raw = layers.Conv1D(vocab_size, 1, name="g_logits")(x)
    logits = layers.Lambda(_bounded, name=PHRASE)(raw)
    return keras.Model(noise, logits, name="generator")


def _bounded(x):
    """Logits within +-``LOGIT_BOUND`` (a scaled tanh)."""
    from keras import ops

    return LOGIT_BOUND * ops.tanh(x / LOGIT_BOUND)


def discriminator(cfg: TrainConfig, vocab_size: int):
    import keras
    from keras import layers

    phrase = keras.Input((cfg.seq_len, vocab_size), name="phrase_probabilities")
    x = phrase
    for i in range(2):
        x = layers.Conv1D(cfg.conv_hidden, 4, strides=2, padding="same", name=f"d_conv{i}")(x)
        x = layers.LeakyReLU(0.2)(x)
        x = layers.Dropout(cfg.dropout)(x)
    x = layers.Flatten()(x)
    x = layers.Lambda(_minibatch_spread, name="minibatch_spread")(x)
    return keras.Model(phrase, layers.Dense(1, name="d_real")(x), name="discriminator")


def _minibatch_spread(x):
    """The features and, appended, their mean standard deviation over the batch: a batch of
    identical phrases (a collapsed generator) is then told from a varied real batch."""
    from keras import ops

    spread = ops.mean(ops.std(x, axis=0))
    return ops.concatenate([x, ops.ones_like(x[:, :1]) * spread], axis=-1)


def _single(t):
    """The one target (or weight) array of a style's split, given as a dict or alone."""
    return next(iter(t.values())) if isinstance(t, dict) else t


def _gan_class():
    import keras
    import tensorflow as tf
    from keras import ops

    class PhraseGAN(keras.Model):
        """Generator and discriminator, trained by :meth:`train_step` through ``fit``."""

        def __init__(self, gen, disc, latent_dim: int, vocab_size: int, seed: int, **kw):
            super().__init__(**kw)
            self.generator, self.discriminator = gen, disc
            self.latent_dim, self.vocab_size = latent_dim, vocab_size
            self.seeds = keras.random.SeedGenerator(seed)
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.d_tracker = keras.metrics.Mean(name="d_loss")

        def call(self, inputs, training=None):
            tokens = inputs["token"] if isinstance(inputs, dict) else inputs
            noise = ops.zeros((ops.shape(tokens)[0], self.latent_dim))
            return {"next": self.generator(noise, training=training)}

        def compile(self, optimizer=None, loss=None, weighted_metrics=None, **kw):
            """train.py's per-token losses and metrics mean nothing here: ignored."""
            super().compile(optimizer=optimizer)
            lr = float(ops.convert_to_numpy(optimizer.learning_rate))
            self.d_optimizer = keras.optimizers.Adam(learning_rate=lr, beta_1=0.5)

        @property
        def metrics(self):
            return [self.loss_tracker, self.d_tracker]

        def _gan_losses(self, data, training: bool):
            _, y, w = keras.utils.unpack_x_y_sample_weight(data)
            y, w = _single(y), _single(w)
            keep = ops.cast(ops.all(w > 0, axis=1), "float32")  # windows of music only
            hot = ops.one_hot(ops.cast(y, "int32"), self.vocab_size)
            b = ops.shape(hot)[0]
            noise = keras.random.normal((b, self.latent_dim), seed=self.seeds)
            logits = self.generator(noise, training=training)
            # real phrases relaxed the same way, from smoothed one-hots: sharpness gives
            # nothing away, so the generator need not drive its logits to extremes
            smooth = ops.log(hot * (1.0 - REAL_SMOOTHING) + REAL_SMOOTHING / self.vocab_size)
            real = self._gumbel_softmax(smooth)
            fake = self._gumbel_softmax(logits)
            d_real = self.discriminator(real, training=training)[:, 0]
            d_fake = self.discriminator(fake, training=training)[:, 0]

            def bce(logit, label):
                return ops.binary_crossentropy(ops.full_like(logit, label), logit, from_logits=True)

            n = ops.maximum(ops.sum(keep), 1.0)
            d_loss = ops.sum(keep * bce(d_real, REAL_LABEL)) / n + ops.mean(bce(d_fake, 0.0))
            real_freq = ops.sum(hot * keep[:, None, None], axis=(0, 1)) / (
                n * ops.cast(ops.shape(hot)[1], "float32")
            )
            fake_freq = ops.mean(ops.softmax(logits, axis=-1), axis=(0, 1))
            marginal = ops.sum(real_freq * (ops.log(real_freq + 1e-8) - ops.log(fake_freq + 1e-8)))
            g_loss = ops.mean(bce(d_fake, 1.0)) + MARGINAL_WEIGHT * marginal
            return d_loss, g_loss

        def _gumbel_softmax(self, logits):
            u = keras.random.uniform(ops.shape(logits), 1e-6, 1.0 - 1e-6, seed=self.seeds)
            return ops.softmax((logits - ops.log(-ops.log(u))) / GUMBEL_TAU, axis=-1)

        def train_step(self, data):
            with tf.GradientTape(persistent=True) as tape:
                d_loss, g_loss = self._gan_losses(data, training=True)
            d_vars = self.discriminator.trainable_variables
            g_vars = self.generator.trainable_variables
            d_grads, g_grads = tape.gradient(d_loss, d_vars), tape.gradient(g_loss, g_vars)
            self.d_optimizer.apply_gradients(zip(d_grads, d_vars, strict=True))
            self.optimizer.apply_gradients(zip(g_grads, g_vars, strict=True))
            del tape
            return self._track(d_loss, g_loss)

        def test_step(self, data):
            return self._track(*self._gan_losses(data, training=False))

        def _track(self, d_loss, g_loss):
            self.loss_tracker.update_state(g_loss)
            self.d_tracker.update_state(d_loss)
            return {m.name: m.result() for m in self.metrics}

    return PhraseGAN


def build(cfg: TrainConfig, vocab_size: int):
    """(training model: the GAN, step model: the generator)."""
    gen, disc = generator(cfg, vocab_size), discriminator(cfg, vocab_size)
    gan = _gan_class()(gen, disc, cfg.latent_dim, vocab_size, cfg.seed, name="phrase_gan")
    gan({"token": np.zeros((1, cfg.seq_len), np.int32)})  # build every weight
    return gan, gen


def tensors(cfg: TrainConfig, vocab_size: int) -> tuple[list[Tensor], list[Tensor]]:
    return (
        [Tensor(NOISE, ("batch", cfg.latent_dim), "float32", "noise")],
        [Tensor(PHRASE, ("batch", cfg.seq_len, vocab_size), "float32", "logits")],
    )


def parity(cfg: TrainConfig, contract, train_model, session) -> float:
    """Max |logit difference| between the Keras generator and the ONNX one on random noise,
    relative to the largest logit when that is above 1.

    Unbounded, a generator trained against a discriminator drove its logits into the
    thousands, where float32 itself resolves only about 1e-3; relative to the logits' scale
    the check stays as strict as for the sequence models. (With ``LOGIT_BOUND`` the scale is
    at most 4.)"""
    noise = np.random.default_rng(0).normal(size=(4, cfg.latent_dim)).astype(np.float32)
    ref = np.asarray(train_model.generator(noise, training=False))
    got = session.run([PHRASE], {NOISE: noise})[0]
    return float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))
