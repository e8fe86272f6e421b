"""Training runs: the run folder, checkpoints, resume, determinism, and the chorale corpus."""

import csv
import subprocess
import sys

import h5py
import numpy as np
import pytest

from partimento.training.config import ConfigError, resolve

from support.project import ROOT

pytestmark = pytest.mark.slow


def tiny(cache, **kw):
    base = dict(
        epochs=2,
        steps_per_epoch=2,
        units=8,
        layers=1,
        dense=8,
        embedding=4,
        seq_len=32,
        limit=12,
        progress=0,
        checkpoint_every=1,
        cache_dir=str(cache),
    )
    return resolve("bach", overrides=base | kw)


def epochs_logged(run):
    with open(run / "log.csv") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def test_run_folder_checkpoints_and_resume(tmp_path):
    from partimento.training.train import train

    run = tmp_path / "run"
    train(tiny(tmp_path / "cache"), run)
    for name in (
        "run.json",
        "config.toml",
        "best.weights.h5",
        "final.weights.h5",
        "checkpoints/epoch-001.weights.h5",
        "checkpoints/epoch-002.weights.h5",
    ):
        assert (run / name).exists(), name
    assert any((run / "tensorboard").rglob("*"))
    assert epochs_logged(run) == [0, 1]
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny(tmp_path / "cache"), run)
    train(tiny(tmp_path / "cache", epochs=3), run, resume=True)
    assert epochs_logged(run) == [0, 1, 2]


def test_learning_rate_decays_each_epoch_and_after_a_resume(tmp_path):
    from partimento.training.train import train

    run = tmp_path / "run"
    train(tiny(tmp_path / "cache", learning_rate=0.004, lr_decay=0.5), run)
    train(tiny(tmp_path / "cache", epochs=3, learning_rate=0.004, lr_decay=0.5), run, resume=True)
    with open(run / "log.csv") as f:
        rates = [float(r["learning_rate"]) for r in csv.DictReader(f)]
    assert rates == pytest.approx([0.004, 0.002, 0.001])
    with pytest.raises(ConfigError, match=r"^lr_decay: must be in \(0, 1\]"):
        resolve("bach", overrides={"lr_decay": 1.5})


def test_a_models_train_command_trains_the_same_config_again():
    import argparse

    from partimento.training.config import add_flags, overrides
    from partimento.training.export import NOT_SETTINGS, train_command

    cfg = resolve(
        "jazz",
        overrides={"window_stride": 64, "lr_decay": 0.6, "dropout": 0.4, "transpose": False},
    )
    words = train_command(cfg).split()
    assert words[:3] == ["partimento", "train", "jazz"] and "--no-transpose" in words
    parser = argparse.ArgumentParser()
    add_flags(parser)
    again = resolve("jazz", overrides=overrides(parser.parse_args(words[3:])))
    same = {k: v for k, v in cfg.to_dict().items() if k not in NOT_SETTINGS}
    assert {k: v for k, v in again.to_dict().items() if k not in NOT_SETTINGS} == same
    assert again.seed == cfg.seed


def test_same_seed_same_weights(tmp_path):
    from partimento.training.train import train

    weights = []
    for i in range(2):
        run = tmp_path / f"run{i}"
        train(tiny(tmp_path / "cache", epochs=1), run)
        with h5py.File(run / "final.weights.h5") as f:
            names: list[str] = []
            f.visit(names.append)
            weights.append([np.array(f[n]) for n in names if isinstance(f[n], h5py.Dataset)])
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))


def test_config_file_then_flags(tmp_path):
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text("[train]\nepochs = 7\nunits = 64\n")
    cfg = resolve("bach", cfg_file, {"units": 32})
    assert (cfg.epochs, cfg.units, cfg.layers) == (7, 32, 2)
    with pytest.raises(ConfigError, match=r"^colour: unknown training key"):
        resolve("bach", None, {"colour": "blue"})


def test_a_run_folders_saved_config_trains_again(tmp_path):
    """A run's config.toml of an earlier release (``verbose``, now ``progress``) is a valid
    --config file."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('[train]\nstyle = "bach"\nunits = 24\nverbose = 2\n')
    got = resolve("bach", cfg)
    assert (got.units, got.progress) == (24, 2)


def test_training_without_the_extra_names_it(tmp_path):
    """With TensorFlow not importable, `partimento train` says which extra to install."""
    code = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'tensorflow' else real(n, *a)\n"
        "from partimento.cli import main\n"
        f"sys.exit(main(['train', 'bach', '--run-dir', {str(tmp_path / 'r')!r}]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "partimento: error: partimento train needs the training extra "
        "(tensorflow missing): pip install 'partimento[train]'"
    )


def test_chorale_round_trip_from_the_file(chorales):
    """A chorale file → grid → tokens → grid → notes: every note of every voice as in music21."""
    from music21 import corpus

    from partimento.core.music.encoding import STEPS_PER_QUARTER, Vocabulary, grid_to_notes
    from partimento.training.data.chorales import read_chorale

    path = corpus.getWork("bwv269")
    c = read_chorale(path)
    score = corpus.parse(path)
    vocab = Vocabulary.for_pitches(30, 90)
    for v, part in enumerate(score.parts[:4]):
        tokens = vocab.encode(c.voices[v])
        notes = grid_to_notes(vocab.decode(tokens))
        expected = [
            (
                n.pitch.midi,
                int(round(float(n.offset) * STEPS_PER_QUARTER)),
                int(round(float(n.quarterLength) * STEPS_PER_QUARTER)),
            )
            for n in part.stripTies().flatten().notes
        ]
        assert [(n.pitch, n.start, n.length) for n in notes] == expected
    assert c.fermata.sum() > 0 and set(np.unique(c.position)) <= set(range(16))


def test_split_is_by_tune_and_disjoint(chorales):
    """The standard JSB split by tune (tests/training/test_jsb_split.py checks the rule itself)."""
    keys = {name: {c.melody_key() for c in split} for name, split in chorales.items()}
    assert not keys["train"] & keys["test"]
    assert not keys["train"] & keys["valid"]
    assert not keys["valid"] & keys["test"]
    assert len(chorales["test"]) >= 77 and len(chorales["train"]) >= 150


def test_documented_config_file_names_every_key():
    from dataclasses import fields

    from partimento.training.config import TrainConfig
    from partimento.training.config import tomllib as toml

    path = ROOT / "config" / "train.toml"
    documented = set(toml.loads(path.read_text())["train"])
    assert documented == {f.name for f in fields(TrainConfig)} - {"style"}
    assert resolve("folk", path).units == 256


def test_train_and_export_in_one_command_then_sample(tmp_path, capsys):
    """``partimento train STYLE --export NAME``: a model ready to play, in one command."""
    from partimento.cli import main

    out = tmp_path / "my-style"
    code = main(
        [
            "train",
            "folk",
            "--run-dir",
            str(tmp_path / "run"),
            "--export",
            str(out),
            "--limit",
            "20",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--units",
            "16",
            "--layers",
            "1",
            "--embedding",
            "8",
            "--seq-len",
            "16",
            "--progress",
            "0",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    said = capsys.readouterr().out
    assert code == 0 and (out / "model.onnx").exists() and (out / "model.json").exists()
    assert f"exported it to {out}" in said and "partimento sample" in said
    assert main(["sample", str(out), "-o", str(tmp_path / "s.mid"), "--length", "2"]) == 0
    assert (tmp_path / "s.mid").stat().st_size > 0
