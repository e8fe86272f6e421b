"""Exported models on disk: ``model.json`` read as a contract, ``model.onnx`` as an onnxruntime
session, and the two checked against each other before anything plays."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partimento.core.errors import PartimentoError
from partimento.core.players.contract import Contract, ContractError
from partimento.core.players.heads import GivenHeads
from partimento.files import locations

HEADS_TOLERANCE = 1e-3
"""Largest logit difference allowed between ``heads.npz`` and the graph's own heads at load."""
_ORT_TYPES = {"tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(float)": "float32"}


class ModelError(PartimentoError):
    """A model that cannot be used; the message is one line naming the file."""


def models_dirs() -> list[Path]:
    """Where named models are looked for, first match wins: ``$PARTIMENTO_MODELS``, the
    user's models folder, the shipped models (:mod:`partimento.files.locations`)."""
    return locations.models_dirs()


def find(name_or_path: str | Path) -> Path:
    """A model folder from a path, or from a name under the models folders."""
    p = Path(name_or_path)
    if (p / "model.json").exists():
        return p
    for d in models_dirs():
        if (d / str(name_or_path) / "model.json").exists():
            return d / str(name_or_path)
    looked = ", ".join(str(d) for d in models_dirs())
    raise ModelError(
        f"no model {str(name_or_path)!r}: not a model folder and not found in {looked}"
    )


def read_contract(folder: Path) -> Contract:
    path = folder / "model.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path} is not readable JSON: {str(exc).splitlines()[0]}") from None
    try:
        return Contract.from_dict(data)
    except ContractError as exc:
        raise ModelError(f"{path}: {str(exc).removeprefix('model.json ')}") from None


@dataclass
class Model:
    """A loaded model: its contract and a session that runs it."""

    folder: Path
    contract: Contract
    session: object  # onnxruntime.InferenceSession
    heads: GivenHeads | None = None
    """The tenor and alto heads in numpy, when the contract has them."""

    def run(
        self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        names = outputs or [t.name for t in self.contract.outputs]
        return dict(zip(names, self.session.run(names, feeds), strict=True))  # type: ignore[attr-defined]


def load(name_or_path: str | Path, *, threads: int = 1) -> Model:
    """Load and check a model; any problem is a :class:`ModelError` with a one-line message."""
    import onnxruntime as ort

    folder = find(name_or_path)
    contract = read_contract(folder)
    onnx_path = folder / "model.onnx"
    if not onnx_path.exists():
        raise ModelError(f"{onnx_path} does not exist")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{onnx_path} cannot be loaded: {first[:200]}") from None
    check(contract, session, onnx_path)
    model = Model(folder, contract, session)
    if contract.heads:
        model.heads = load_heads(folder, contract)
        check_heads(model)
    return model


def load_heads(folder: Path, contract: Contract) -> GivenHeads:
    """``heads.npz`` as the contract names it, its checksum and shapes checked."""
    path = folder / str(contract.heads["file"])
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path} cannot be read: {exc.strerror}") from None
    if hashlib.sha256(blob).hexdigest() != contract.heads["sha256"]:
        raise ModelError(f"{path} does not match the checksum in model.json")
    state = next(o for _, o in contract.states if o.name == contract.heads["source"])
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
            return GivenHeads.from_arrays(
                dict(arrays),
                state.name,
                units=int(state.shape[-1]),
                vocabulary=len(contract.vocabulary),
            )
    except ValueError as exc:
        raise ModelError(f"{path}: {str(exc).splitlines()[0]}") from None


def check_heads(model: Model) -> None:
    """The numpy heads must give the graph's own tenor and alto logits (a few random rows)."""
    assert model.heads is not None
    contract, heads = model.contract, model.heads
    rng = np.random.default_rng(0)
    rows, vocab = 4, len(contract.vocabulary)
    feeds: dict[str, np.ndarray] = {}
    for t in contract.inputs:
        if t.role == "state-in":
            feeds[t.name] = rng.normal(0, 0.5, (rows, int(t.shape[-1]))).astype(np.float32)
        else:
            high = vocab if t.role in ("token", "given") else 2
            extra = tuple(int(d) for d in t.shape[2:])  # a window per step: its width
            feeds[t.name] = rng.integers(0, high, (rows, 1, *extra)).astype(t.dtype)
    names = [contract.output("logits", v).name for v in ("tenor", "alto")]
    out = model.run(feeds, [*names, heads.source])
    x = out[heads.source]
    bass = feeds[contract.input("given", "bass").name][:, 0]
    tenor = feeds[contract.input("given", "tenor").name][:, 0]
    diff = max(
        float(np.abs(heads.tenor(x, bass) - out[names[0]][:, -1]).max()),
        float(np.abs(heads.alto(x, bass, tenor) - out[names[1]][:, -1]).max()),
    )
    if not diff <= HEADS_TOLERANCE:
        raise ModelError(
            f"{model.folder / str(contract.heads['file'])} does not give the "
            f"model's logits (off by {diff:.2g})"
        )


def check(contract: Contract, session, onnx_path: Path) -> None:
    """The contract's tensors must be the graph's, with the same element types and ranks."""
    for kind, declared, actual in (
        ("input", contract.inputs, session.get_inputs()),
        ("output", contract.outputs, session.get_outputs()),
    ):
        got = {a.name: a for a in actual}
        want = {t.name: t for t in declared}
        if set(got) != set(want):
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            raise ModelError(
                f"model.json does not match {onnx_path}: {kind}s missing "
                f"{missing or 'none'}, unexpected {extra or 'none'}"
            )
        for name, t in want.items():
            dtype = _ORT_TYPES.get(got[name].type, got[name].type)
            if dtype != t.dtype or len(got[name].shape) != len(t.shape):
                raise ModelError(
                    f"model.json does not match {onnx_path}: {kind} {name} is "
                    f"{dtype} of rank {len(got[name].shape)}, contract says "
                    f"{t.dtype} of rank {len(t.shape)}"
                )
    # the vocabulary lives in model.json only: the graph's logits must score exactly its symbols
    # (an events model scores its own token list, encoding["tokens"]:
    # partimento.core.players.events)
    symbols = len(contract.encoding.get("tokens") or contract.vocabulary)
    graph = {o.name: o for o in session.get_outputs()}
    for t in contract.outputs:
        size = graph[t.name].shape[-1] if t.role == "logits" and graph[t.name].shape else None
        if isinstance(size, int) and size != symbols:
            raise ModelError(
                f"model.json does not match {onnx_path}: its vocabulary has "
                f"{symbols} symbols, the graph's {t.name} logits {size}"
            )
