"""Evaluate an exported model on its test split, through onnxruntime (what ships, not Keras).

Bach models: NLL per token and accuracy per voice (teacher forcing), next to an n-gram
baseline; then every test soprano is harmonized (live, or offline with pseudo-Gibbs) and its
voice leading measured next to Bach's own chorales and the rule-based harmonizer, all measured
the same way. Folk: NLL and accuracy next to an n-gram baseline, and a sample's statistics.
The figures are printed and written into the model's ``model.json`` under ``evaluation``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from partimento.core.music import rules, voiceleading
from partimento.core.players import harmonizer
from partimento.core.players.sampling import nll_and_hits
from partimento.files import model as models
from partimento.progress import bar
from partimento.training.config import TrainConfig, from_saved

log = logging.getLogger(__name__)

LIVE_SETTINGS = harmonizer.HarmonizerSettings(temperature=1.0, candidates=8)


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


def _bach_live(m: models.Model, cfg: TrainConfig, limit: int, seed: int) -> dict:
    from partimento.training.styles import bach, bach_data

    data = bach_data.load(cfg)
    test = data.splits["test"][: limit or None]
    vocab = m.contract.vocabulary
    sums = {v: [0.0, 0, 0] for v in bach.HEADS}
    for c in bar(test, "scoring test chorales", unit="piece"):
        arrays = bach.piece_arrays(c, vocab)
        feeds = {
            t.name: arrays[t.name][None]
            for t in m.contract.inputs
            if t.role in ("token", "condition", "given")
        }
        feeds |= {t.name: np.zeros((1, int(t.shape[1])), np.float32) for t, _ in m.contract.states}
        out = m.run(feeds, list(bach.HEADS))
        for v in bach.HEADS:
            nll, correct, n = nll_and_hits(out[v][0], arrays[v])
            sums[v][0] += nll
            sums[v][1] += correct
            sums[v][2] += n
    figures: dict = {
        "split": "test",
        "pieces": len(test),
        "nll_per_token": {v: round(s[0] / s[2], 4) for v, s in sums.items()},
        "accuracy": {v: round(s[1] / s[2], 4) for v, s in sums.items()},
    }
    figures["nll_per_token"]["mean"] = round(
        sum(s[0] for s in sums.values()) / sum(s[2] for s in sums.values()), 4
    )
    figures["baseline_ngram"] = {
        v: _ngram_baseline(
            [vocab.encode(c.voices[i]) for c in data.splits["train"]],
            [vocab.encode(c.voices[i]) for c in test],
            3,
            len(vocab),
        )
        for i, v in ((1, "alto"), (2, "tenor"), (3, "bass"))
    }

    h = harmonizer.LiveHarmonizer(
        m.contract, m.run, settings=LIVE_SETTINGS, seed=seed, heads=m.heads
    )
    t0 = time.monotonic()
    generated = []
    for c in bar(test, "harmonizing test sopranos", unit="piece"):
        h.mode = c.mode
        generated.append(harmonizer.harmonize(h, c.voices[0], c.position, c.fermata))
    steps = sum(c.steps for c in test)
    figures["harmonization"] = _harmonization(
        "live",
        generated,
        test,
        {
            **dataclasses.asdict(LIVE_SETTINGS),
            "seed": seed,
            "ms_per_step": round((time.monotonic() - t0) / steps * 1e3, 3),
        },
    )
    return figures


def _bach_offline(m: models.Model, cfg: TrainConfig, limit: int, seed: int) -> dict:
    from partimento.core.players import gibbs
    from partimento.training.styles import bach_data, bach_offline

    data = bach_data.load(cfg)
    test = data.splits["test"][: limit or None]
    figures: dict = {"split": "test", "pieces": len(test)}
    figures |= bach_offline.test_nll(m, cfg, test)
    rng = np.random.default_rng(seed)
    t0 = time.monotonic()
    generated = [
        gibbs.harmonize(
            c.voices[0],
            c.position,
            c.fermata,
            c.mode,
            m.contract,
            m.run,
            temperature=gibbs.DEFAULT_TEMPERATURE,
            rng=rng,
        )
        for c in bar(test, "harmonizing test sopranos", unit="piece")
    ]
    figures["harmonization"] = _harmonization(
        "offline",
        generated,
        test,
        {
            "seed": seed,
            "temperature": gibbs.DEFAULT_TEMPERATURE,
            "voice_leading": gibbs.VOICE_LEADING,
            "sweeps": gibbs.SWEEPS,
            "seconds_per_piece": round((time.monotonic() - t0) / max(1, len(test)), 2),
        },
    )
    return figures


def _harmonization(kind: str, generated: list[np.ndarray], test: list, settings: dict) -> dict:
    ranges = voiceleading.SATB_RANGES
    bach_voices = [c.voices for c in test]
    rule_voices = [rules.harmonize(c.voices[0]) for c in test]

    def agreement(pieces):
        m = [
            voiceleading.pitch_class_matches(g, c.voices) for g, c in zip(pieces, test, strict=True)
        ]
        return round(sum(a for a, _ in m) / max(1, sum(b for _, b in m)), 4)

    out = {"settings": settings}
    for name, pieces in ((kind, generated), ("bach", bach_voices), ("rules", rule_voices)):
        figs = _round(
            {
                k: v
                for k, v in voiceleading.corpus_metrics(pieces, ranges).items()
                if not k.startswith("n_") and k not in voiceleading.COUNT_KEYS
            }
        )
        if name != "bach":
            figs["pitch_class_agreement_with_bach"] = agreement(pieces)
        out[name] = figs
    return out


# --- folk ---------------------------------------------------------------------------------------


def _folk(m: models.Model, cfg: TrainConfig, limit: int, seed: int) -> dict:
    from partimento.training.styles import folk

    return folk.evaluate(m, cfg, limit=limit, seed=seed)


def _events(m: models.Model, cfg: TrainConfig, limit: int, seed: int) -> dict:
    """jazz and piano (``encoding["type"]`` ``events``): the folk figures on their tokens."""
    from partimento.training.styles import jazz

    return jazz.evaluate(m, cfg, limit=limit, seed=seed)


def evaluate(name: str, *, write: bool = True, limit: int = 0, seed: int = 0) -> dict:
    m = models.load(name)
    cfg = from_saved(m.contract.training["config"])
    kind = m.contract.kind
    t0 = time.monotonic()
    if kind == "live-harmonizer":
        figures = _bach_live(m, cfg, limit, seed)
    elif kind == "offline-harmonizer":
        figures = _bach_offline(m, cfg, limit, seed)
    elif m.contract.encoding.get("type") == "events":
        figures = _events(m, cfg, limit, seed)
    elif m.contract.encoding.get("type") == "abc":
        from partimento.training.styles import (
            abc,  # characters: NLL per character, music21 parse rate
        )

        figures = abc.evaluate(m, cfg, limit=limit, seed=seed)
    else:
        figures = _folk(m, cfg, limit, seed)
    figures["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(figures, indent=1))
    if write and not limit:
        path = Path(m.folder) / "model.json"
        data = json.loads(path.read_text())
        data["evaluation"] = figures
        path.write_text(json.dumps(data, indent=1) + "\n")
        print(f"written to {path}")
    return figures
