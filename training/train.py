"""Train a style. Reads top to bottom: config, data, model, fit, checkpoint.

A run folder holds everything the run is: ``run.json`` (the resolved config, the encoding with
its vocabulary, the data and split), ``config.toml``, ``log.csv`` (one row per epoch),
``tensorboard/``, ``checkpoints/epoch-NNN.weights.h5`` every N epochs, ``best.weights.h5``
(lowest validation loss), ``final.weights.h5`` and, while a run is under way, ``backup/`` from
which ``--resume`` goes on.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from training import styles
from training.config import TrainConfig
from training.versions import versions

log = logging.getLogger(__name__)


def _optimizer(cfg: TrainConfig):
    import keras

    kinds = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
             "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}
    return kinds[cfg.optimizer](learning_rate=cfg.learning_rate, clipnorm=cfg.clipnorm)


def _toml(d: dict) -> str:
    lines = ["[train]"]
    for k, v in d.items():
        lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


def train(cfg: TrainConfig, run_dir: Path, *, resume: bool = False) -> Path:
    import keras
    import tensorflow as tf

    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise FileExistsError(f"run folder {run_dir} is not empty (use --resume to go on)")
    seconds_before = 0.0  # wall time of earlier sessions of a resumed run
    if resume:
        if not (run_dir / "run.json").exists():
            raise FileNotFoundError(f"nothing to resume in {run_dir}: no run.json")
        saved = json.loads((run_dir / "run.json").read_text())
        seconds_before = float(saved.get("training_seconds") or 0.0)
        cfg = TrainConfig(**{**saved["config"], "epochs": cfg.epochs})
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)

    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()

    # data
    style = styles.get(cfg.style)
    t0 = time.monotonic()
    prepared = style.prepare(cfg)
    train_split, valid_split = prepared.splits["train"], prepared.splits["valid"]
    log.info("data ready in %.0f s: %d training windows, %d validation windows",
             time.monotonic() - t0, len(train_split), len(valid_split))

    # the run's own contract, written before the first step so every checkpoint can be read
    run_info = {"style": cfg.style, "kind": style.KIND, "config": cfg.to_dict(),
                "encoding": prepared.encoding, "data": prepared.data, "versions": versions(),
                "windows": {"train": len(train_split), "valid": len(valid_split)}}
    (run_dir / "run.json").write_text(json.dumps(run_info, indent=1))
    (run_dir / "config.toml").write_text(_toml(cfg.to_dict()))

    # model
    model, _ = style.build(cfg, prepared.encoding)
    losses = {k: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for k in
              train_split.y}
    # weighted: padding (weight 0) counts neither in the loss nor in the accuracy
    model.compile(optimizer=_optimizer(cfg), loss=losses,
                  weighted_metrics={k: ["accuracy"] for k in train_split.y})
    model.summary(print_fn=log.info)

    # fit
    class EveryN(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % cfg.checkpoint_every == 0:
                name = f"epoch-{epoch + 1:03d}.weights.h5"
                self.model.save_weights(run_dir / "checkpoints" / name)

    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=resume),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False),
        keras.callbacks.ModelCheckpoint(str(run_dir / "best.weights.h5"), monitor="val_loss",
                                        save_best_only=True, save_weights_only=True),
        EveryN(),
    ]
    # --resume: an interrupted run goes on from backup/ (weights, optimizer, epoch); a finished
    # run is extended from its final weights, after the epochs its log already has
    initial_epoch = 0
    if resume and not (run_dir / "backup").exists() and (run_dir / "final.weights.h5").exists():
        model.load_weights(run_dir / "final.weights.h5")
        initial_epoch = max(0, len((run_dir / "log.csv").read_text().splitlines()) - 1)
    t0 = time.monotonic()
    model.fit(train_split.x, train_split.y, sample_weight=train_split.weight,
              validation_data=(valid_split.x, valid_split.y, valid_split.weight),
              batch_size=cfg.batch_size, epochs=cfg.epochs, initial_epoch=initial_epoch,
              shuffle=True,
              steps_per_epoch=cfg.steps_per_epoch or None, callbacks=callbacks,
              verbose=cfg.verbose)
    model.save_weights(run_dir / "final.weights.h5")
    run_info["training_seconds"] = round(seconds_before + time.monotonic() - t0, 1)
    (run_dir / "run.json").write_text(json.dumps(run_info, indent=1))
    return run_dir
