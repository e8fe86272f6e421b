"""Train a style. Reads top to bottom: config, data, model, fit, checkpoint.

A run folder holds everything the run is: ``run.json`` (the resolved config, the encoding with
its vocabulary, the data and split), ``config.toml``, ``log.csv`` (one row per epoch),
``tensorboard/``, ``checkpoints/epoch-NNN.weights.h5`` every N epochs, ``best.weights.h5``
(lowest validation loss), ``final.weights.h5`` and, while a run is under way, ``backup/`` from
which ``--resume`` goes on.

Every strategy shares one code path: the model is built and compiled inside
``strategy.scope()`` and fed from a ``tf.data.Dataset`` of the split's arrays, shuffled with the
config's seed and batched with the GLOBAL batch size (tf.distribute divides each batch among the
replicas). ``none`` is TensorFlow's default strategy (one device, no copies), ``mirrored`` the
devices of this machine, ``multiworker`` several machines (``TF_CONFIG``, docs/SCALE_OUT.md).
With several workers only the chief (``chief`` or ``worker`` 0) writes the run folder; every
other worker writes the same files to ``RUN.workerN`` beside it (the Keras multi-worker pattern:
a worker's own scratch folder, its own ``backup/``), which may be deleted afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from partimento.training import styles
from partimento.training.config import ConfigError, TrainConfig, from_saved
from partimento.training.versions import versions

log = logging.getLogger(__name__)


def _optimizer(cfg: TrainConfig):
    import keras

    kinds = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": keras.optimizers.SGD,
    }
    return kinds[cfg.optimizer](learning_rate=cfg.learning_rate, clipnorm=cfg.clipnorm)


def _toml(d: dict) -> str:
    lines = ["[train]"]
    for k, v in d.items():
        lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


def _strategy(name: str):
    """The tf.distribute strategy; ``multiworker`` reads TF_CONFIG (and must come first)."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return _multi_worker()
    return tf.distribute.get_strategy()  # the default strategy: one device, no copies


def _multi_worker():
    """MultiWorkerMirroredStrategy as Keras 3 (up to at least 3.15) can drive it.

    Keras calls ``strategy.reduce`` with a whole nested batch (to learn the shapes before the
    first step) and with ``axis=0`` on scalar losses and metrics; single-worker strategies let
    both through, the multi-worker one refuses ("unsupported type PerReplica", "Invalid
    reduction dimension 0", keras-team/keras#20585). Here each leaf is reduced on its own and
    a scalar across the replicas only, which is what Keras means by both.
    """
    import tensorflow as tf

    class MultiWorker(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis=None):
            def one(v):
                local = v.values[0] if isinstance(v, tf.distribute.DistributedValues) else v
                shape = getattr(local, "shape", None)
                scalar = shape is not None and shape.rank == 0
                return super(MultiWorker, self).reduce(reduce_op, v, None if scalar else axis)

            return tf.nest.map_structure(one, value)

    return MultiWorker()


def _worker(strategy) -> tuple[bool, int]:
    """(is this the chief, task index): the chief is task ``chief``, else ``worker`` 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True, 0
    kind, index = resolver.task_type, int(resolver.task_id or 0)
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return kind == "chief" or (kind == "worker" and index == 0 and not has_chief), index


def _dataset(split, batch_size: int, *, seed: int | None, repeat: bool, drop_remainder: bool):
    """A split as a tf.data pipeline of (x, y, weight) batches; shuffled when ``seed`` is
    given, endless when ``repeat`` (``steps_per_epoch`` then decides an epoch)."""
    import tensorflow as tf

    parts = (split.x, split.y) if split.weight is None else (split.x, split.y, split.weight)
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if seed is not None:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()  # every worker makes the same batches and keeps its share
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def train(cfg: TrainConfig, run_dir: Path, *, resume: bool = False) -> Path:
    import keras
    import tensorflow as tf

    strategy = _strategy(cfg.strategy)
    chief, index = _worker(strategy)
    # the chief writes the run folder; any other worker the same files to a scratch folder
    run_dir = Path(run_dir) if chief else Path(f"{run_dir}.worker{index}")
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise FileExistsError(f"run folder {run_dir} is not empty (use --resume to go on)")
    seconds_before = 0.0  # wall time of earlier sessions of a resumed run
    if resume:
        if not (run_dir / "run.json").exists():
            raise FileNotFoundError(f"nothing to resume in {run_dir}: no run.json")
        saved = json.loads((run_dir / "run.json").read_text())
        seconds_before = float(saved.get("training_seconds") or 0.0)
        cfg = dataclasses.replace(from_saved(saved["config"]), epochs=cfg.epochs)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)

    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()

    # data
    style = styles.get(cfg.style, cfg.model)
    t0 = time.monotonic()
    prepared = style.prepare(cfg)
    train_split, valid_split = prepared.splits["train"], prepared.splits["valid"]
    log.info(
        "data ready in %.0f s: %d training windows, %d validation windows",
        time.monotonic() - t0,
        len(train_split),
        len(valid_split),
    )

    # the run's own contract, written before the first step so every checkpoint can be read
    run_info = {
        "style": cfg.style,
        "kind": style.KIND,
        "config": cfg.to_dict(),
        "encoding": prepared.encoding,
        "data": prepared.data,
        "versions": versions(),
        "windows": {"train": len(train_split), "valid": len(valid_split)},
    }
    (run_dir / "run.json").write_text(json.dumps(run_info, indent=1))
    (run_dir / "config.toml").write_text(_toml(cfg.to_dict()))

    # input pipeline: global batches; a multi-worker step needs the same batch on every worker
    multi = cfg.strategy == "multiworker"
    fewest = min(len(train_split), len(valid_split))
    if multi and fewest < cfg.batch_size:
        raise ConfigError(
            f"batch_size: {cfg.batch_size} is more than the {fewest} windows of a "
            "split; multiworker drops partial batches"
        )
    train_data = _dataset(
        train_split,
        cfg.batch_size,
        seed=cfg.seed,
        repeat=bool(cfg.steps_per_epoch),
        drop_remainder=multi,
    )
    valid_data = _dataset(
        valid_split, cfg.batch_size, seed=None, repeat=False, drop_remainder=multi
    )

    # model
    with strategy.scope():
        model, _ = style.build(cfg, prepared.encoding)
        losses = {
            k: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for k in train_split.y
        }
        # weighted: padding (weight 0) counts neither in the loss nor in the accuracy
        model.compile(
            optimizer=_optimizer(cfg),
            loss=losses,
            weighted_metrics={k: ["accuracy"] for k in train_split.y},
        )
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
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "best.weights.h5"),
            monitor="val_loss",
            save_best_only=True,
            save_weights_only=True,
        ),
        EveryN(),
    ]
    if cfg.lr_decay != 1.0:  # from the epoch number alone, so a resumed run decays alike;
        # first, so the log's learning_rate column is the epoch's own
        callbacks.insert(
            0,
            keras.callbacks.LearningRateScheduler(
                lambda epoch: cfg.learning_rate * cfg.lr_decay**epoch
            ),
        )
    # --resume: an interrupted run goes on from backup/ (weights, optimizer, epoch); a finished
    # run is extended from its final weights, after the epochs its log already has
    initial_epoch = 0
    if resume and not (run_dir / "backup").exists() and (run_dir / "final.weights.h5").exists():
        model.load_weights(run_dir / "final.weights.h5")
        initial_epoch = max(0, len((run_dir / "log.csv").read_text().splitlines()) - 1)
    t0 = time.monotonic()
    model.fit(
        train_data,
        validation_data=valid_data,
        epochs=cfg.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=cfg.steps_per_epoch or None,
        shuffle=False,  # the pipeline shuffles
        callbacks=callbacks,
        verbose=cfg.progress,
    )
    model.save_weights(run_dir / "final.weights.h5")
    run_info["training_seconds"] = round(seconds_before + time.monotonic() - t0, 1)
    (run_dir / "run.json").write_text(json.dumps(run_info, indent=1))
    return run_dir
