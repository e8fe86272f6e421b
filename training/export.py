"""Export a run as ``model.onnx`` plus ``model.json``, checked before anything is written.

The step model is converted with tf2onnx, loaded back in onnxruntime, and fed token by token
(state carried from step to step) on a random sequence; its logits must match the full-sequence
Keras model within ``TOLERANCE``. A style with heads that can run without the graph
(``given_heads``: the live harmonizer's tenor and alto) also gets ``heads.npz``, checked against
the graph's logits the way the daemon checks it at load. Only then are the files written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from partimento.core.errors import PartimentoError
from partimento.core.players.contract import Contract
from partimento.training import styles
from partimento.training.config import TrainConfig, flag, from_saved, resolve
from partimento.training.versions import versions

log = logging.getLogger(__name__)

TOLERANCE = 1e-4
OPSET = 17


HEADS_FILE = "heads.npz"


class ExportError(PartimentoError, RuntimeError):
    pass


def _given_heads(
    style, cfg: TrainConfig, step_model, contract: Contract, session, out_dir: Path
) -> tuple[bytes, dict]:
    """``heads.npz`` and the contract's ``heads`` entry, checked as the daemon checks them."""
    from partimento.core.players.heads import GivenHeads
    from partimento.files import model as model_files

    source, arrays = style.given_heads(cfg, step_model)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    blob = buffer.getvalue()
    entry = {"file": HEADS_FILE, "sha256": hashlib.sha256(blob).hexdigest(), "source": source}
    contract = dataclasses.replace(contract, heads=entry)
    units = next(int(o.shape[-1]) for _, o in contract.states if o.name == source)
    heads = GivenHeads.from_arrays(arrays, source, units=units, vocabulary=len(contract.vocabulary))
    try:
        model_files.check_heads(model_files.Model(out_dir, contract, session, heads))
    except model_files.ModelError as exc:
        raise ExportError(f"{exc}; nothing written") from None
    log.info("heads.npz: tenor and alto heads without the graph, checked")
    return blob, entry


def load_run(run_dir: Path):
    run_dir = Path(run_dir)
    try:
        run = json.loads((run_dir / "run.json").read_text())
    except FileNotFoundError:
        raise ExportError(f"{run_dir} is not a run folder: no run.json") from None
    cfg = from_saved(run["config"])
    style = styles.get(cfg.style, cfg.model)
    # built without recurrent dropout (the same weights; dropout does nothing at inference):
    # with it, tf2onnx writes each LSTM as a Loop of small ops, about 3 times slower a step
    # than its fused LSTM operator
    inference = dataclasses.replace(cfg, recurrent_dropout=0.0)
    train_model, step_model = style.build(inference, run["encoding"])
    for name in ("best.weights.h5", "final.weights.h5"):
        if (run_dir / name).exists():
            train_model.load_weights(run_dir / name)
            return run, cfg, style, train_model, step_model, name
    ckpts = sorted((run_dir / "checkpoints").glob("epoch-*.weights.h5"))
    if not ckpts:
        raise ExportError(f"{run_dir} has no weights yet")
    train_model.load_weights(ckpts[-1])
    return run, cfg, style, train_model, step_model, ckpts[-1].name


NOT_SETTINGS = ("style", "progress", "cache_dir", "rebuild", "seed")


def train_command(cfg: TrainConfig) -> str:
    """The ``partimento train`` command that trains ``cfg`` again: the style, every key that
    differs from the style's defaults as a flag, and the seed."""
    defaults = resolve(cfg.style).to_dict()
    flags = []
    for key, value in cfg.to_dict().items():
        if key in NOT_SETTINGS or value == defaults.get(key):
            continue
        if isinstance(value, bool):
            flags.append(flag(key) if value else flag(f"no_{key}"))
        else:
            flags.append(f"{flag(key)} {value}")
    return " ".join(["partimento train", cfg.style, *flags, "--seed", str(cfg.seed)])


def random_feeds(contract: Contract, steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A random but valid sequence for every token, given and condition input."""
    rng = np.random.default_rng(seed)
    sizes = contract.encoding.get("conditions", {})
    feeds = {}
    for t in contract.inputs:
        shape = (1, steps, *(int(d) for d in t.shape[2:]))  # a window per step: its width
        if t.role in ("token", "given"):
            size = len(contract.encoding.get("tokens") or contract.vocabulary)
            feeds[t.name] = rng.integers(0, size, shape, dtype=np.int32)
        elif t.role == "condition":
            feeds[t.name] = rng.integers(0, sizes[t.name]["size"], shape, dtype=np.int32)
    return feeds


def step_parity(contract: Contract, train_model, session, steps: int = 48) -> float:
    """Max |logit difference| between the Keras sequence model and ONNX stepped one at a time."""
    feeds = random_feeds(contract, steps)
    ref = train_model({k: v for k, v in feeds.items()}, training=False)
    ref = {k: np.asarray(v) for k, v in ref.items()}
    state = {t.name: np.zeros((1, int(t.shape[1])), np.float32) for t, _ in contract.states}
    worst = 0.0
    logit_names = [t.name for t in contract.outputs if t.role == "logits"]
    out_names = logit_names + [o.name for _, o in contract.states]
    for i in range(steps):
        step = {k: v[:, i : i + 1] for k, v in feeds.items()}
        res = dict(zip(out_names, session.run(out_names, {**step, **state}), strict=True))
        for name in logit_names:
            worst = max(worst, float(np.abs(res[name][:, 0] - ref[name][:, i]).max()))
        state = {i_.name: res[o.name] for i_, o in contract.states}
    return worst


def export(run_dir: Path, out_dir: Path, *, name: str | None = None) -> Contract:
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    run, cfg, style, train_model, step_model, weights = load_run(run_dir)
    ins, outs = style.tensors(cfg, run["encoding"])
    out_dir = Path(out_dir)
    contract = Contract(
        name=name or out_dir.name,
        style=cfg.style,
        kind=style.KIND,
        encoding=run["encoding"],
        inputs=tuple(ins),
        outputs=tuple(outs),
        training={
            "config": cfg.to_dict(),
            "data": run["data"],
            "weights": weights,
            "windows": run.get("windows"),
            "seconds": run.get("training_seconds"),
            "command": train_command(cfg),
        },
        versions=versions(),
    )

    dtypes = {"int32": tf.int32, "int64": tf.int64, "float32": tf.float32}
    spec = []
    for t in step_model.inputs:
        meta = next(x for x in contract.inputs if x.name == t.name)
        shape = [None if isinstance(d, str) else d for d in meta.shape]
        spec.append(tf.TensorSpec(shape, dtypes[meta.dtype], name=t.name))
    proto, _ = tf2onnx.convert.from_keras(step_model, input_signature=spec, opset=OPSET)
    blob = proto.SerializeToString()

    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    got_in = {i.name for i in session.get_inputs()}
    got_out = {o.name for o in session.get_outputs()}
    want_in = {t.name for t in contract.inputs}
    want_out = {t.name for t in contract.outputs}
    if got_in != want_in or got_out != want_out:
        raise ExportError(
            f"ONNX tensors {sorted(got_in)} -> {sorted(got_out)} do not match the "
            f"contract {sorted(want_in)} -> {sorted(want_out)}"
        )
    if contract.states and not hasattr(style, "parity"):
        diff = step_parity(contract, train_model, session)
    else:
        diff = style.parity(cfg, contract, train_model, session)
    log.info("ONNX parity: max logit difference %.2e", diff)
    if not diff <= TOLERANCE:
        raise ExportError(
            f"ONNX model differs from Keras by {diff:.2e} (> {TOLERANCE:.0e}); nothing written"
        )

    heads_blob, heads = b"", {}
    if hasattr(style, "given_heads"):
        heads_blob, heads = _given_heads(style, cfg, step_model, contract, session, out_dir)

    previous = out_dir / "model.json"
    evaluation = {}
    if previous.exists():  # keep earlier evaluation figures only if they are for this model
        try:
            old = json.loads(previous.read_text())
            if old.get("training", {}).get("config") == cfg.to_dict():
                evaluation = old.get("evaluation", {})
        except ValueError:
            pass
    contract = dataclasses.replace(
        contract,
        evaluation=evaluation,
        training={
            **contract.training,
            "parity_max_logit_difference": diff,
            "parameters": int(train_model.count_params()),
        },
        heads=heads,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.onnx").write_bytes(blob)
    if heads:
        (out_dir / HEADS_FILE).write_bytes(heads_blob)
    (out_dir / "model.json").write_text(json.dumps(contract.to_dict(), indent=1) + "\n")
    return contract
