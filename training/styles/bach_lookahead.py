"""Style ``bach-offline``: a causal alto, tenor and bass decoder that reads the melody ahead.

The network is the live ``bach`` model's (:mod:`partimento.training.styles.bach`): at each sixteenth
it reads this step's soprano, the previous alto, tenor and bass, the bar position, fermata and
mode, and predicts the bass, then the tenor given the bass, then the alto given both. In
addition it reads the soprano and the fermata flags of the next ``timesteps`` sixteenths (rests
past the end), so it knows where the melody and its cadences go. The likelihood of a whole
harmonization is exact (a product over steps and voices, no pseudo-likelihood), and a melody
is harmonized by beam search under hard voice-leading rules (:mod:`partimento.core.players.beam`)
instead of pseudo-Gibbs sampling (``--model deepbach``,
:mod:`partimento.training.styles.bach_offline`).
"""

from __future__ import annotations

from partimento.core.players.contract import Tensor
from partimento.training.config import TrainConfig
from partimento.training.styles import Prepared, bach, bach_data
from partimento.training.styles.bach import given_heads  # noqa: F401  (heads.npz, as for bach)

KIND = "lookahead-harmonizer"


def ahead(cfg: TrainConfig) -> int:
    """Sixteenths of melody read ahead: the config's ``timesteps``."""
    return cfg.timesteps


def prepare(cfg: TrainConfig) -> Prepared:
    data = bach_data.load(cfg)
    encoding = data.encoding()
    encoding["ahead"] = {
        "steps": ahead(cfg),
        "inputs": list(bach.AHEAD),
        "layout": "at step t, the soprano tokens and fermata flags of steps "
        "t+1 .. t+ahead; past the end the rest token and 0",
    }
    encoding["conditions"]["fermata_ahead"] = {
        "size": 2,
        "meaning": "1 under a fermata, for each step ahead",
    }
    splits = {}
    for name in ("train", "valid", "test"):
        pieces = bach_data.transposed(
            data.splits[name], data.ranges, cfg.transpose and name == "train"
        )
        splits[name] = bach._arrays(
            pieces, data.vocabulary, cfg.seq_len, cfg.window_stride, ahead(cfg)
        )
    return Prepared(encoding=encoding, splits=splits, data=data.describe())


def build(cfg: TrainConfig, encoding: dict):
    return bach.build(cfg, encoding, ahead(cfg))


def tensors(cfg: TrainConfig, encoding: dict) -> tuple[list[Tensor], list[Tensor]]:
    return bach.tensors(cfg, encoding, ahead(cfg))
