"""The folk style: reading tunes, the key rule, the split, the n-gram baseline and a tiny
train -> export -> onnxruntime round."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from partimento.core.music.encoding import (
    HOLD_CODE,
    MAJOR,
    MINOR,
    REST_CODE,
    START,
    grid_to_notes,
)
from partimento.training.baselines import NGram
from partimento.training.config import resolve
from partimento.training.data import folk as corpus
from partimento.training.data.folk import Tune

LIMIT = 40  # tunes read from Essen (about 20 are kept)


def essen_source(stem: str, index: int) -> corpus.Source:
    """The ``index``-th tune (from 0) of one bundled Essen file."""
    path = corpus.corpus_dir() / corpus.ESSEN / f"{stem}.abc"
    return list(corpus.abc_sources([path]))[index]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("folk-cache")


@pytest.fixture(scope="module")
def tunes(cache_dir) -> list[Tune]:
    cfg = resolve("folk", overrides={"limit": LIMIT, "cache_dir": str(cache_dir)})
    found, stats = corpus.load_tunes(cfg)
    assert stats.read == LIMIT and stats.kept == len(found) > 10
    return found


def test_round_trip_of_a_real_tune():
    src = essen_source("erk5", 0)
    tune = corpus.read_tune(src.load(), src.name)
    assert tune is not None and tune.grid.dtype == np.int16
    assert set(np.unique(tune.grid[tune.grid < 0])) <= {REST_CODE, HOLD_CODE}

    part = corpus.melody_part(src.load())
    expected = [
        (n.pitch.midi + tune.shift, round(float(n.offset) * 4), round(float(n.quarterLength) * 4))
        for n in part.flatten().notes
    ]
    got = [(n.pitch, n.start, n.length) for n in grid_to_notes(tune.grid)]
    assert got == expected
    assert tune.steps == round(float(part.highestTime) * 4)


def test_transposition_to_c_major_or_a_minor(tunes):
    src = essen_source("test0", 0)  # "Ich hab die Nacht getraeumet": K:E, sung in E minor
    tune = corpus.read_tune(src.load(), src.name)
    assert (tune.mode, tune.shift) == (MINOR, 5)
    for i in range(4):
        src = essen_source("erk5", i)
        score = src.load()
        tune = corpus.read_tune(score, src.name)
        if tune is not None:
            tonic, _ = corpus.tune_key(score, corpus.melody_notes(corpus.melody_part(score)))
            target = 0 if tune.mode == MAJOR else 9
            assert (tonic + tune.shift) % 12 == target and abs(tune.shift) <= 6
    # German songs end on their tonic, so after the move on C (major) or A (minor)
    endings = [grid_to_notes(t.grid)[-1].pitch % 12 == (0 if t.mode == MAJOR else 9) for t in tunes]
    assert sum(endings) >= 0.9 * len(endings)


def test_odd_durations_are_skipped():
    from music21 import converter

    triplets = "X:1\nT:t\nM:2/4\nL:1/8\nK:C\n(3CDE F2 | G4 |]\n"
    assert corpus.read_tune(converter.parse(triplets, format="abc"), "t") is None
    plain = "X:1\nT:p\nM:2/4\nL:1/8\nK:C\nC D E F | G4 |]\n"
    tune = corpus.read_tune(converter.parse(plain, format="abc"), "p")
    assert [n.pitch for n in grid_to_notes(tune.grid)] == [60, 62, 64, 65, 67]


def test_split_is_disjoint_and_by_melody(tunes):
    split = corpus.split_tunes(tunes)
    keys = {name: {t.melody_key() for t in ts} for name, ts in split.items()}
    names = {name: {t.name for t in ts} for name, ts in split.items()}
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not keys[a] & keys[b] and not names[a] & names[b]
    assert sum(len(v) for v in split.values()) == len(tunes)
    t = tunes[0]
    home = next(name for name, ts in split.items() if t in ts)
    moved = Tune("same tune, other key", np.where(t.grid >= 0, t.grid + 2, t.grid), t.mode, 0)
    assert [x.name for x in corpus.split_tunes([moved])[home]] == [moved.name]


def test_ngram_beats_uniform_on_held_out_tunes(tunes):
    from partimento.training.styles import folk

    vocab = folk.vocabulary(tunes)
    split = corpus.split_tunes(tunes)
    held_out = split["valid"] + split["test"]
    assert held_out
    model = NGram(3, len(vocab), k=0.1, pad=vocab.index(START))
    model.fit(folk.tune_tokens(t, vocab) for t in split["train"])
    scores = model.evaluate(folk.tune_tokens(t, vocab) for t in held_out)
    assert scores["nll"] < math.log(len(vocab)) - 1.0
    assert scores["accuracy"] > 1 / len(vocab)
    assert np.isclose(model.distribution([vocab.index(START)]).sum(), 1.0)


@pytest.mark.slow
def test_train_export_and_step_onnx(tunes, cache_dir, tmp_path):
    import onnxruntime as ort

    from partimento.training.export import export
    from partimento.training.train import train

    cfg = resolve(
        "folk",
        overrides={
            "limit": LIMIT,
            "cache_dir": str(cache_dir),
            "epochs": 1,
            "units": 16,
            "embedding": 8,
            "layers": 1,
            "seq_len": 32,
            "steps_per_epoch": 2,
            "batch_size": 8,
            "progress": 0,
        },
    )
    run = train(cfg, tmp_path / "run")
    run_info = json.loads((run / "run.json").read_text())
    assert run_info["kind"] == "continuation"
    contract = export(run, tmp_path / "model")

    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    symbols = meta["encoding"]["vocabulary"]
    assert symbols[:3] == ["r", "_", "/"] and len(symbols) == len(contract.vocabulary)
    assert meta["encoding"]["seq_len"] == 32 and meta["encoding"]["start"]["symbol"] == START
    assert meta["training"]["data"]["tunes"]["train"] > 0

    session = ort.InferenceSession(
        str(tmp_path / "model" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    state = {i.name: np.zeros((1, int(i.shape[1])), np.float32) for i, _ in contract.states}
    outs = ["next", *(o.name for _, o in contract.states)]
    for symbol in [START] * 4 + ["72", "_", "74"]:
        token = np.array([[contract.vocabulary.index(symbol)]], np.int32)
        res = session.run(outs, {"token": token, **state})
        state = {i.name: r for (i, _), r in zip(contract.states, res[1:], strict=True)}
        logits = res[0][0, 0].astype(np.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        assert p.shape == (len(symbols),) and np.isfinite(p).all() and np.isclose(p.sum(), 1)
