"""``--model lstm|transformer|gan`` for folk: each type trains, exports with its parity check,
steps in onnxruntime and plays in the engine's continue mode; the transformer's window is
bounded; the phrase continuer picks, repeats and transposes phrases as documented."""

from __future__ import annotations

import json

import numpy as np
import pytest

from partimento.core.music.encoding import HOLD_CODE, REST_CODE, START, Vocabulary
from partimento.core.players import continuation
from partimento.core.players.contract import Contract, Tensor
from partimento.core.players.phrases import PhraseContinuer, pitch_class_histogram
from partimento.engine.engine import Engine
from partimento.files import model

from support.engine import ANSWER, config, play_phrase
from support.model_types import KINDS, WINDOW, tiny_model
from support.project import SHIPPED, require


@pytest.fixture(scope="module", params=KINDS)
def typed(request) -> tuple[str, model.Model]:
    return request.param, model.load(tiny_model(request.param))


@pytest.mark.slow
def test_each_type_exports_checked_and_answers_through_the_continuation(typed):
    kind, m = typed
    meta = json.loads((m.folder / "model.json").read_text())
    assert meta["training"]["config"]["model"] == kind
    assert meta["training"]["parity_max_logit_difference"] <= 1e-4
    assert meta["encoding"].get("type", "grid") == ("phrase" if kind == "gan" else "grid")
    player = continuation.make(m.contract, m.run, seed=3, temperature=1.0)
    player.observe([67, HOLD_CODE, 69, HOLD_CODE, 71, REST_CODE])
    notes = player.continue_notes(40)
    assert notes, f"{kind}: no notes in 40 steps"
    low, high = m.contract.vocabulary.pitch_range
    for n in notes:
        assert n.start >= 0 and n.start + n.length <= 40 and n.length >= 1
        assert low <= n.pitch <= high
    again = continuation.make(m.contract, m.run, seed=3, temperature=1.0)
    again.observe([67, HOLD_CODE, 69, HOLD_CODE, 71, REST_CODE])
    assert again.continue_notes(40) == notes, "the same seed answers the same"


@pytest.mark.slow
def test_the_transformer_reads_a_bounded_window_one_token_at_a_time():
    m = model.load(tiny_model("transformer"))
    c = m.contract
    assert c.input("token").shape == ("batch", 1)
    shapes = {i.name: (i.dtype, i.shape) for i, _ in c.states}
    assert shapes == {
        "window_in": ("float32", ("batch", WINDOW - 1)),
        "phase_in": ("float32", ("batch", 1)),
    }

    def last_logits(tokens: list[int]) -> np.ndarray:
        state = {i.name: np.zeros((1, int(i.shape[1])), np.float32) for i, _ in c.states}
        for t in tokens:
            out = m.run({"token": np.array([[t]], np.int32), **state})
            state = {i.name: out[o.name] for i, o in c.states}
        assert state["phase_in"][0, 0] == len(tokens) % 16  # tokens since a bar line
        return out["next"][0, 0]

    rng = np.random.default_rng(1)
    seq = rng.integers(0, len(c.vocabulary), WINDOW + 4).tolist()
    old = [(seq[0] + 1) % len(c.vocabulary), *seq[1:]]  # differs before the last W tokens
    near = [*seq[:-3], (seq[-3] + 1) % len(c.vocabulary), *seq[-2:]]  # inside them
    assert np.array_equal(last_logits(seq), last_logits(old))
    assert not np.allclose(last_logits(seq), last_logits(near))
    # the continuer feeds several codes one token at a time: same state as one by one
    a = continuation.make(c, m.run, seed=0)
    b = continuation.make(c, m.run, seed=0)
    a.observe([60, HOLD_CODE, 62, REST_CODE])
    for code in (60, HOLD_CODE, 62, REST_CODE):
        b.observe(code)
    assert np.array_equal(a.logits, b.logits)


@pytest.mark.slow
def test_each_type_answers_a_phrase_in_the_engines_continue_mode(typed):
    require((SHIPPED / "bach" / "model.onnx").exists(), "no shipped bach model")
    kind, m = typed
    engine = Engine(
        config(SHIPPED / "bach", m.folder, mode="continue"), lambda name: model.load(name), seed=0
    )
    records, synth, end = play_phrase(engine, until=14.0)
    answer = [
        (r.time, msg) for r in records for msg in r.out if msg[0] & 0xF0 == 0x90 and msg[2] > 0
    ]
    assert answer, f"{kind}: no answer"
    assert all(msg[0] & 0x0F == ANSWER for _, msg in answer)
    assert min(t for t, _ in answer) >= end + 1.0 - 0.01  # after the configured silence
    assert engine.stats()["answers"] == 1
    assert not synth.keys, f"{kind}: a note left sounding"


# -- the phrase continuer, with a fake generator ---------------------------------------------

VOCAB = Vocabulary.for_pitches(60, 72, start=True)


def phrase_contract(steps: int = 8, candidates: int = 3) -> Contract:
    return Contract(
        name="fake-gan",
        style="folk",
        kind="continuation",
        encoding={
            "vocabulary": list(VOCAB.symbols),
            "type": "phrase",
            "phrase_steps": steps,
            "latent_dim": 2,
            "candidates": candidates,
        },
        inputs=(Tensor("noise", ("batch", 2), "float32", "noise"),),
        outputs=(Tensor("phrase", ("batch", steps, len(VOCAB)), "float32", "logits"),),
    )


def fake_generator(steps: int = 8):
    """Candidate k: pitch 60 + 2k held for 4 steps, then 4 rests; START wanted at the end
    (the continuer never plays START: it is masked)."""
    calls = []

    def run(feeds, names):
        batch = feeds["noise"].shape[0]
        calls.append(batch)
        logits = np.full((batch, steps, len(VOCAB)), -50.0, np.float32)
        for k in range(batch):
            pattern = [str(60 + 2 * k), "_", "_", "_", "r", "r", "r", "r"]
            for i, s in enumerate(pattern[:steps]):
                logits[k, i, VOCAB.index(s)] = 50.0
            logits[k, -1, VOCAB.index(START)] = 80.0
        return {"phrase": logits}

    return run, calls


def test_the_phrase_nearest_the_player_is_kept_repeated_and_transposed_back():
    run, calls = fake_generator()
    p = continuation.make(phrase_contract(), run, seed=0, shift=3)
    assert isinstance(p, PhraseContinuer)
    p.observe([61, HOLD_CODE, HOLD_CODE, REST_CODE])  # 61 + 3 = 64 in the model's key
    out = p.continue_for(20)
    assert calls == [3]  # the candidates in one batch
    assert out[:8].tolist() == [61, -2, -2, -2, -1, -1, -1, -1]  # candidate 2 (64), back -3
    assert out[8:16].tolist() == out[:8].tolist() and out[16:].tolist() == out[:4].tolist()
    notes = p.continue_notes(16)
    assert [(n.pitch, n.start, n.length) for n in notes] == [(61, 0, 4), (61, 8, 4)]


def test_without_a_phrase_heard_the_first_candidate_plays_and_the_key_mask_holds():
    run, _ = fake_generator()
    p = continuation.make(phrase_contract(), run, seed=0)
    assert p.continue_for(8)[0] == 60
    p.observe([64, REST_CODE])
    p.reset()
    assert p.continue_for(8)[0] == 60, "reset forgets the phrase"
    # C# and E not allowed: every pitch the fake strongly wants is masked away
    masked = continuation.make(
        phrase_contract(candidates=1),
        run,
        seed=0,
        allowed_pitch_classes=frozenset({0, 2, 4, 5, 7, 9, 11}),
    )
    codes = masked.continue_for(64)
    assert all(int(c) % 12 in {0, 2, 4, 5, 7, 9, 11} for c in codes if c >= 0)


def test_pitch_class_histogram_counts_held_sixteenths():
    h = pitch_class_histogram(np.array([60, HOLD_CODE, HOLD_CODE, REST_CODE, 67, HOLD_CODE]))
    assert h[0] == pytest.approx(0.6) and h[7] == pytest.approx(0.4) and h.sum() == 1
    assert not pitch_class_histogram(np.array([REST_CODE, HOLD_CODE])).any()


@pytest.mark.slow
def test_partimento_evaluate_scores_a_transformer_and_explains_a_gan():
    from partimento.training.evaluate import evaluate

    figures = evaluate(str(tiny_model("transformer")), write=False, limit=3)
    assert 0 < figures["nll_per_token"] < 10 and 0 <= figures["accuracy"] <= 1
    gan = evaluate(str(tiny_model("gan")), write=False, limit=3)
    assert "no likelihood" in gan["note"] and "nll_per_token" not in gan


# -- partimento compare ---------------------------------------------------------------------


def test_compare_measures_repetition_novelty_and_pitch_classes():
    from partimento.training import compare

    bar_a = [60, HOLD_CODE, 62, HOLD_CODE] * 4
    bar_b = [64, HOLD_CODE, 65, REST_CODE] * 4
    grid = np.array(bar_a + bar_a + bar_b + bar_a, np.int16)
    assert compare.repetition([grid]) == 0.5  # bars 2 and 4 repeat bar 1
    known = compare.pitch_ngrams(np.array(bar_a, np.int16))  # 60 62 60 62 ...
    assert compare.novelty([np.array(bar_a, np.int16)], known) == 0
    assert 0 < compare.novelty([grid], known) < 1
    c_only = np.zeros(12)
    c_only[0] = 1
    assert compare.pc_distance([np.array([60, HOLD_CODE], np.int16)], c_only) == 0
    assert compare.pc_distance([np.array([62], np.int16)], c_only) == 1
    assert compare.pc_distance([np.full(16, REST_CODE, np.int16)], c_only) == "silent"
    assert compare.notes_per_bar([grid]) == 8  # four two-step notes per half bar


@pytest.mark.slow
def test_compare_writes_a_row_per_model_type(tmp_path):
    from partimento.training import compare

    from support.model_types import SIZES, cache_dir, tiny_run

    for kind in KINDS:  # the tiny runs stand in for trainings (compare reuses finished runs)
        (tmp_path / f"compare-folk-{kind}").symlink_to(tiny_run(kind))
    overrides = {**SIZES, "cache_dir": cache_dir()}
    rows = compare.compare(
        "folk", list(KINDS), config=None, overrides=overrides, runs=tmp_path, eval_tunes=3
    )
    assert [r["model"] for r in rows] == ["test tunes (reference)", *KINDS]
    table = (tmp_path / "compare-folk" / "compare.md").read_text()
    assert table.count("\n") == 2 + 4 and "| gan |" in table
    lstm, transformer, gan = rows[1:]
    for r in (lstm, transformer):
        assert 0 < r["test_nll"] < 10 and r["step_ms_p50"] > 0 and r["parameters"] > 0
    assert gan["test_nll"] == "–" and "phrases" in gan["note"]
    csv_rows = (tmp_path / "compare-folk" / "compare.csv").read_text().splitlines()
    assert csv_rows[0].startswith("model,parameters") and len(csv_rows) == 5
