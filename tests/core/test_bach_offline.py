"""``bach-offline --model deepbach`` (DeepBach) and the pseudo-Gibbs sampler in
``partimento.core.players.gibbs``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from partimento.core.music.encoding import HOLD_CODE, REST_CODE, START, Vocabulary
from partimento.core.players.gibbs import (
    allowed_tokens,
    harmonize,
    positions,
    temperatures,
    window_rows,
    windows,
)


def _grid(steps: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Tokens where voice v at step s is ``10 * v + s + 3``; conditions ``100 + 10 * k + s``."""
    s = np.arange(steps)
    tokens = np.stack([10 * v + s + 3 for v in range(4)])
    conds = np.stack([100 + 10 * k + s for k in range(3)])
    return tokens, conds


def test_window_rows_are_past_present_reversed_future() -> None:
    assert window_rows(3).tolist() == [-3, -2, -1, 0, 3, 2, 1]


def test_windows_inside_the_piece() -> None:
    tokens, conds = _grid()
    tok, cond = windows(tokens, conds, np.array([5]), 2, pad=-7)
    assert tok.shape == (1, 5, 4) and cond.shape == (1, 5, 3)
    steps = [3, 4, 5, 7, 6]  # past, present, future from the far end inwards
    assert tok[0, :, 1].tolist() == [13 + s for s in steps]
    assert cond[0, :, 2].tolist() == [120 + s for s in steps]


def test_windows_pad_at_both_edges() -> None:
    tokens, conds = _grid(6)
    tok, cond = windows(tokens, conds, np.array([0, 5]), 3, pad=-7)
    start, end = tok[0], tok[1]
    assert (start[:3] == -7).all() and (cond[0, :3] == 0).all()  # before the first step
    assert start[3].tolist() == [3, 13, 23, 33]
    assert start[4:, 0].tolist() == [6, 5, 4]  # steps 3, 2, 1
    assert end[:3, 0].tolist() == [5, 6, 7]  # steps 2, 3, 4
    assert (end[4:] == -7).all() and (cond[1, 4:] == 0).all()  # after the last step
    assert cond[1, 3].tolist() == [105, 115, 125]


def test_windows_of_a_piece_shorter_than_the_context() -> None:
    tokens, conds = _grid(2)
    tok, _ = windows(tokens, conds, np.array([1]), 4, pad=-7)
    assert tok[0, :, 3].tolist() == [-7, -7, -7, 33, 34, -7, -7, -7, -7]


def test_windows_reject_steps_outside_the_piece() -> None:
    tokens, conds = _grid(4)
    with pytest.raises(ValueError):
        windows(tokens, conds, np.array([4]), 2, pad=0)


def test_positions_are_spread_and_dealt_to_every_voice() -> None:
    rng = np.random.default_rng(0)
    times = positions(200, 16, rng)
    assert times.shape == (3, 16)
    flat = np.sort(times.ravel())
    assert len(set(flat.tolist())) == 48
    assert np.diff(flat).min() >= 200 // 48


def test_temperatures_cool_to_the_target() -> None:
    t = temperatures(100, 1.0, 1.5)
    assert t[0] == pytest.approx(1.5) and t[-1] == 1.0 and (np.diff(t) <= 0).all()
    assert (temperatures(5, 1.0, 0.5) == 1.0).all()


def test_allowed_tokens_keep_start_out_and_pitches_in_range() -> None:
    vocab = Vocabulary.for_pitches(50, 60, start=True)
    ok = allowed_tokens(vocab, (52, 55))
    assert not ok[vocab.index(START)]
    assert {vocab.symbols[i] for i in np.flatnonzero(ok)} == {"r", "_", "52", "53", "54", "55"}


def _random_run(vocab_size: int, dt: int):
    """A stand-in model: random logits, checking the feeds it is given."""
    rng = np.random.default_rng(1)

    def run(feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        out = {}
        for voice in names:
            tok, cond = feeds[f"{voice}_tokens"], feeds[f"{voice}_conditions"]
            assert tok.shape[1:] == (2 * dt + 1, 4) and cond.shape == (*tok.shape[:2], 3)
            assert tok.dtype == np.int32 and cond.dtype == np.int32
            out[voice] = rng.normal(size=(tok.shape[0], vocab_size)).astype(np.float32)
        return out

    return run


def test_harmonize_with_a_stand_in_model() -> None:
    vocab = Vocabulary.for_pitches(40, 80, start=True)
    encoding = {
        "vocabulary": list(vocab.symbols),
        "window": {"timesteps": 4},
        "voice_ranges": {"alto": [55, 70], "tenor": [48, 65], "bass": [40, 60]},
    }
    soprano = np.array([72, HOLD_CODE, 74, HOLD_CODE, REST_CODE, 76, 77, HOLD_CODE] * 5, np.int16)
    steps = soprano.size
    out = harmonize(
        soprano,
        np.arange(steps) % 16,
        np.zeros(steps, np.int8),
        0,
        encoding,
        _random_run(len(vocab), 4),
        iterations=20,
        rng=np.random.default_rng(0),
        batch=4,
    )
    assert out.shape == (4, steps) and out.dtype == np.int16
    assert (out[0] == soprano).all()
    for v, (low, high) in enumerate(([55, 70], [48, 65], [40, 60]), start=1):
        pitches = out[v][out[v] >= 0]
        assert ((pitches >= low) & (pitches <= high)).all()
        assert out[v][0] != HOLD_CODE


def test_harmonize_needs_a_start_symbol() -> None:
    with pytest.raises(ValueError):
        harmonize(
            np.array([60]),
            np.zeros(1),
            np.zeros(1),
            0,
            Vocabulary.for_pitches(50, 70),
            _random_run(23, 2),
            timesteps=2,
        )


# --- the real thing: train, export, sample --------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, chorales):
    """A tiny model trained on 12 real chorales and exported to ONNX."""
    from partimento.training.config import resolve
    from partimento.training.data import chorales as corpus
    from partimento.training.export import export
    from partimento.training.train import train

    root = tmp_path_factory.mktemp("bach_offline")
    some = [c for split in chorales.values() for c in split][:12]
    corpus.save(some, root / "cache" / f"chorales-v{corpus.CACHE_VERSION}-12.npz")
    cfg = resolve(
        "bach-offline",
        overrides=dict(
            model="deepbach",
            limit=12,
            cache_dir=str(root / "cache"),
            epochs=1,
            steps_per_epoch=2,
            batch_size=16,
            timesteps=4,
            gap=4,
            embedding=4,
            lstm1=8,
            middle=8,
            progress=0,
        ),
    )
    train(cfg, root / "run")
    contract = export(root / "run", root / "model")
    return cfg, contract, root / "model"


@pytest.mark.slow
def test_second_lstm_stacks_and_the_step_model_shares_weights() -> None:
    from partimento.training.config import resolve
    from partimento.training.styles import bach_offline

    cfg = resolve(
        "bach-offline",
        overrides=dict(
            model="deepbach", timesteps=3, embedding=4, lstm1=6, middle=5, second_lstm=True
        ),
    )
    encoding = {
        "vocabulary": ["r", "_", START, *map(str, range(50, 60))],
        "conditions": {"position": {"size": 16}, "fermata": {"size": 2}, "mode": {"size": 2}},
    }
    train_model, step_model = bach_offline.build(cfg, encoding)
    lstms = [layer.name for layer in train_model.layers if "lstm" in layer.name]
    assert sorted(lstms) == sorted(
        f"{v}_{side}_lstm{i}"
        for v in ("alto", "tenor", "bass")
        for side in ("past", "future")
        for i in (0, 1)
    )
    assert train_model.count_params() == step_model.count_params()
    rng = np.random.default_rng(0)
    tok = rng.integers(0, 13, (2, 7, 4)).astype(np.int32)
    cond = np.stack([rng.integers(0, n, (2, 7)) for n in (16, 2, 2)], -1).astype(np.int32)
    ref = train_model({"tokens": tok, "conditions": cond}, training=False)
    got = step_model([tok, cond] * 3, training=False)
    for v, voice in enumerate(("alto", "tenor", "bass")):
        assert np.allclose(np.asarray(ref[voice]), np.asarray(got[v]), atol=1e-6)


@pytest.mark.slow
def test_export_contract(exported) -> None:
    _, contract, _ = exported
    assert contract.kind == "offline-harmonizer" and not contract.states
    assert contract.encoding["window"]["timesteps"] == 4
    assert START in contract.vocabulary
    assert contract.training["parity_max_logit_difference"] <= 1e-4
    assert [t.name for t in contract.outputs] == ["alto", "tenor", "bass"]


def _session(model_dir: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    every = [o.name for o in session.get_outputs()]

    def run(feeds: dict[str, np.ndarray], names: list[str] | None = None) -> dict[str, np.ndarray]:
        wanted = every if names is None else names
        return dict(zip(wanted, session.run(wanted, feeds), strict=True))

    return run


@pytest.mark.slow
def test_a_voice_never_reads_its_own_present_token(exported) -> None:
    from partimento.training.styles.bach_offline import random_feeds

    cfg, contract, model_dir = exported
    run = _session(model_dir)
    feeds = random_feeds(contract, 3)
    before = run(feeds)
    for column, voice in enumerate(("alto", "tenor", "bass"), start=1):
        changed = {k: v.copy() for k, v in feeds.items()}
        tok = changed[f"{voice}_tokens"]
        tok[:, cfg.timesteps, column] = (tok[:, cfg.timesteps, column] + 1) % len(
            contract.vocabulary
        )
        assert np.allclose(run(changed)[voice], before[voice], atol=1e-6)
        tok[:, cfg.timesteps, 0] = (tok[:, cfg.timesteps, 0] + 1) % len(contract.vocabulary)
        assert not np.allclose(run(changed)[voice], before[voice], atol=1e-6)


@pytest.mark.slow
def test_harmonize_a_test_chorale(exported) -> None:
    from partimento.training.styles import bach_data

    cfg, contract, model_dir = exported
    chorale = bach_data.load(cfg).splits["test"][0]
    soprano = chorale.voices[0].copy()
    out = harmonize(
        soprano,
        chorale.position,
        chorale.fermata,
        chorale.mode,
        contract,
        _session(model_dir),
        rng=np.random.default_rng(0),
        iterations=30,
    )
    assert out.shape == (4, chorale.steps)
    assert (out[0] == soprano).all()
    pitches = set(contract.vocabulary.pitches)
    ranges = contract.encoding["voice_ranges"]
    for v, voice in enumerate(("alto", "tenor", "bass"), start=1):
        sounding = out[v][out[v] >= 0].tolist()
        assert sounding and set(sounding) <= pitches
        low, high = ranges[voice]
        assert all(low <= p <= high for p in sounding)
