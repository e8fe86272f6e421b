"""Chorales as model data: the shared vocabulary, voice ranges and transposed copies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from partimento.core.music.encoding import VOICES, Vocabulary, fits_range
from partimento.training.config import TrainConfig
from partimento.training.data import chorales as corpus
from partimento.training.data.chorales import Chorale

TRANSPOSITIONS = range(-6, 7)


@dataclass(frozen=True)
class BachData:
    splits: dict[str, list[Chorale]]
    ranges: dict[str, tuple[int, int]]  # per voice, from the training split
    vocabulary: Vocabulary

    def encoding(self) -> dict:
        return {
            "grid": "sixteenth",
            "steps_per_quarter": 4,
            "vocabulary": list(self.vocabulary.symbols),
            "voices": list(VOICES),
            "voice_ranges": {v: list(r) for v, r in self.ranges.items()},
            "transposition": "training chorales transposed by -6..+6 semitones where every "
            "voice stays in its range; live input is played as it comes",
            "conditions": {
                "position": {"size": 16, "meaning": "sixteenths since the bar line, modulo 16"},
                "fermata": {"size": 2, "meaning": "1 under a fermata"},
                "mode": {"size": 2, "meaning": "0 major, 1 minor"},
            },
        }

    def describe(self) -> dict:
        return {
            "corpus": "music21 bundled Bach chorales (SATB parts, deduplicated)",
            "split": "the standard JSB split (Boulanger-Lewandowski 2012) by tune: a "
            "chorale whose tune is a JSB test (valid) tune is test (valid), any "
            "other trains (training/data/jsb_membership.json)",
            "pieces": {k: len(v) for k, v in self.splits.items()},
            "test_pieces": [c.name for c in self.splits["test"]],
        }


def load(cfg: TrainConfig) -> BachData:
    splits = corpus.load_corpus(
        cfg.cache_path, rebuild=cfg.rebuild, limit=cfg.limit or None, progress=cfg.progress
    )
    if not splits["train"]:
        raise ValueError("no training chorales were read")
    for name in ("valid", "test"):  # a tiny run still needs something to validate on
        if not splits[name]:
            splits[name] = splits["train"][-1:]
    ranges = {}
    for v, voice in enumerate(VOICES):
        pitches = np.concatenate([c.voices[v][c.voices[v] >= 0] for c in splits["train"]])
        ranges[voice] = (int(pitches.min()), int(pitches.max()))
    everything = [c for s in splits.values() for c in s]
    low = min(
        min(r[0] for r in ranges.values()),
        min(int(c.voices[c.voices >= 0].min()) for c in everything),
    )
    high = max(max(r[1] for r in ranges.values()), max(int(c.voices.max()) for c in everything))
    return BachData(splits, ranges, Vocabulary.for_pitches(low, high))


def transposed(
    chorales: list[Chorale], ranges: dict[str, tuple[int, int]], enabled: bool
) -> list[Chorale]:
    """Every chorale in every key where each voice stays in its range."""
    if not enabled:
        return list(chorales)
    out = []
    for c in chorales:
        for shift in TRANSPOSITIONS:
            moved = np.where(c.voices >= 0, c.voices + shift, c.voices).astype(np.int16)
            if all(fits_range(moved[v], *ranges[voice]) for v, voice in enumerate(VOICES)):
                out.append(Chorale(c.name, moved, c.position, c.fermata, c.mode))
    return out


def windows(length: int, seq_len: int, stride: int) -> list[int]:
    """Window starts covering a piece of ``length`` steps (the last one flush with its end)."""
    if length <= seq_len:
        return [0]
    starts = list(range(0, length - seq_len + 1, stride))
    if starts[-1] != length - seq_len:
        starts.append(length - seq_len)
    return starts
