"""Evaluate an exported model on its test split, through onnxruntime (what ships, not Keras).

Bach models: on the standard JSB test chorales (:mod:`training.bach_eval`), NLL per voice and
sixteenth in the JSB representation and per token, accuracy, an n-gram baseline; then every
test soprano is harmonized (live stepping, offline beam search, or DeepBach's pseudo-Gibbs)
and measured next to Bach's own chorales and the rule-based harmonizer, all by the same code
(agreement with Bach's voices, chord changes per bar, voice leading).
Continuation styles: NLL and accuracy next to n-gram baselines, and their answers to held-out
calls next to the tunes' own continuations (training/answers.py).
The figures are printed and written into the model's ``model.json`` under ``evaluation``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from partimento.core.players import beam, harmonizer
from partimento.files import model as models
from partimento.training.config import TrainConfig, from_saved

log = logging.getLogger(__name__)

LIVE_SETTINGS = harmonizer.HarmonizerSettings()  # the daemon's defaults
BEAM_SETTINGS = beam.BeamSettings()


def _ngram_baseline(
    train_seqs: list[np.ndarray], test_seqs: list[np.ndarray], order: int, vocab_size: int
) -> dict:
    from partimento.training.baselines import NGram

    ng = NGram(order=order, vocab_size=vocab_size).fit(train_seqs)
    return {
        "order": order,
        "nll": round(float(ng.nll(test_seqs)), 4),
        "accuracy": round(float(ng.accuracy(test_seqs)), 4),
    }


def _round(d: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


# --- bach ---------------------------------------------------------------------------------------


def _bach(m: models.Model, cfg: TrainConfig, limit: int, seed: int, split: str) -> dict:
    """Any Bach harmonizer on the JSB chorales of ``split`` (:mod:`training.bach_eval`)."""
    from partimento.core.players import gibbs
    from partimento.training import bach_eval
    from partimento.training.styles import bach_data

    kind = m.contract.kind
    chosen = bach_eval.load_set(cfg, split, limit)
    vocab = m.contract.vocabulary
    pieces, unreadable = bach_eval.readable(chosen.chorales, vocab)
    if not pieces:
        raise ValueError(
            f"no JSB {split} chorale is in the model's range {vocab.symbols[0]}.."
            f"{vocab.symbols[-1]}"
        )
    figures: dict = {"split": split, "set": chosen.source, "pieces": len(pieces)}
    if unreadable:  # a pitch the model has no token for: it cannot be scored on that chorale
        figures["unreadable"] = unreadable
    if kind == "offline-harmonizer":  # DeepBach: each voice given all the others
        from partimento.training.styles import bach_offline

        figures |= bach_offline.test_nll(m, cfg, pieces)
        rng = np.random.default_rng(seed)
        settings = {
            "seed": seed,
            "temperature": gibbs.DEFAULT_TEMPERATURE,
            "voice_leading": gibbs.VOICE_LEADING,
            "sweeps": gibbs.SWEEPS,
        }
        figures["harmonization"] = bach_eval.harmonization(
            "offline",
            lambda c: gibbs.harmonize(
                c.voices[0],
                c.position,
                c.fermata,
                c.mode,
                m.contract,
                m.run,
                temperature=gibbs.DEFAULT_TEMPERATURE,
                rng=rng,
            ),
            pieces,
            settings,
        )
        return figures
    ahead = int(m.contract.encoding.get("ahead", {}).get("steps", 0))
    outputs = {v: m.contract.output("logits", v).name for v in bach_eval.HARMONY}
    figures |= bach_eval.likelihood(
        m.run, bach_eval.chorale_feeds(m, ahead), pieces, vocab, outputs
    )
    train = bach_data.load(cfg).splits["train"]
    figures["baseline_ngram"] = bach_eval.ngram_baseline(train, pieces, vocab)
    if kind == "live-harmonizer":
        settings = LIVE_SETTINGS
        figures["harmonization"] = bach_eval.harmonization(
            "live",
            bach_eval.live_harmonize(m, settings, seed),
            pieces,
            {**dataclasses.asdict(settings), "seed": seed},
        )
    else:
        settings = BEAM_SETTINGS
        figures["harmonization"] = bach_eval.harmonization(
            "offline", bach_eval.beam_harmonize(m, settings), pieces, dataclasses.asdict(settings)
        )
    return figures


# --- folk ---------------------------------------------------------------------------------------


def _folk(m: models.Model, cfg: TrainConfig, limit: int, seed: int) -> dict:
    from partimento.training.styles import folk

    return folk.evaluate(m, cfg, limit=limit, seed=seed)


def _events(m: models.Model, cfg: TrainConfig, limit: int, seed: int) -> dict:
    """jazz and piano (``encoding["type"]`` ``events``): the folk figures on their tokens."""
    from partimento.training.styles import jazz

    return jazz.evaluate(m, cfg, limit=limit, seed=seed)


def _call_response(m: models.Model, cfg: TrainConfig, limit: int, seed: int) -> dict:
    """Every continuation style: its answers to held-out calls (training/answers.py)."""
    from partimento.training import answers

    excerpts = answers.EXCERPTS[cfg.style](cfg, seed)
    return answers.evaluate(m, excerpts[: limit or None], seed=seed)


def evaluate(
    name: str, *, write: bool = True, limit: int = 0, seed: int = 0, split: str = "test"
) -> dict:
    m = models.load(name)
    cfg = from_saved(m.contract.training["config"])
    kind = m.contract.kind
    t0 = time.monotonic()
    if kind in ("live-harmonizer", "offline-harmonizer", "lookahead-harmonizer"):
        figures = _bach(m, cfg, limit, seed, split)
    elif m.contract.encoding.get("type") == "events":
        figures = _events(m, cfg, limit, seed)
    elif m.contract.encoding.get("type") == "abc":
        from partimento.training.styles import (
            abc,  # characters: NLL per character, music21 parse rate
        )

        figures = abc.evaluate(m, cfg, limit=limit, seed=seed)
    else:
        figures = _folk(m, cfg, limit, seed)
    if kind == "continuation":
        figures["call_response"] = _call_response(m, cfg, limit, seed)
    figures["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(figures, indent=1))
    if write and not limit and figures.get("split", "test") == "test":
        path = Path(m.folder) / "model.json"
        data = json.loads(path.read_text())
        data["evaluation"] = figures
        path.write_text(json.dumps(data, indent=1) + "\n")
        print(f"written to {path}")
    return figures
