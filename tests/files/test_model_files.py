"""Exported models: contract checks and clear errors for damaged files."""

import json
import shutil

import numpy as np
import pytest

from partimento.core.players.contract import Contract, ContractError
from partimento.files import model

pytestmark = pytest.mark.slow


def test_exported_model_loads_and_steps(tiny_live_model):
    m = model.load(tiny_live_model)
    c = m.contract
    assert c.kind == "live-harmonizer" and c.style == "bach"
    assert {v for v in ("alto", "tenor", "bass")} == {
        t.voice for t in c.outputs if t.role == "logits"
    }
    assert c.training["parity_max_logit_difference"] <= 1e-4
    feeds = {t.name: np.zeros((1, 1), np.int32) for t in c.inputs if t.role != "state-in"}
    feeds |= {
        t.name: np.zeros((1, int(t.shape[1])), np.float32) for t in c.inputs if t.role == "state-in"
    }
    out = m.run(feeds)
    logits = out[c.output("logits", "bass").name]
    assert logits.shape == (1, 1, len(c.vocabulary))
    for i, o in c.states:  # every state-in has its state-out, same shape
        assert out[o.name].shape == feeds[i.name].shape


def _copy(src, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def test_corrupt_onnx_is_one_clear_error(tiny_live_model, tmp_path):
    d = _copy(tiny_live_model, tmp_path)
    (d / "model.onnx").write_bytes(b"this is not an onnx file")
    with pytest.raises(model.ModelError, match=r"model\.onnx cannot be loaded") as e:
        model.load(d)
    assert "\n" not in str(e.value)


def test_truncated_onnx_is_refused(tiny_live_model, tmp_path):
    d = _copy(tiny_live_model, tmp_path)
    blob = (d / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(model.ModelError, match="cannot be loaded"):
        model.load(d)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("name", "melody", "inputs missing ['melody'], unexpected ['soprano']"),
        ("dtype", "float32", "input soprano is int32 of rank 2, contract says float32"),
    ],
)
def test_contract_that_does_not_match_onnx(tiny_live_model, tmp_path, key, value, message):
    d = _copy(tiny_live_model, tmp_path)
    data = json.loads((d / "model.json").read_text())
    data["tensors"]["inputs"][0][key] = value
    (d / "model.json").write_text(json.dumps(data))
    with pytest.raises(model.ModelError) as e:
        model.load(d)
    assert "does not match" in str(e.value) and message in str(e.value)


def test_heads_are_exported_and_loaded(tiny_live_model):
    m = model.load(tiny_live_model)
    assert m.contract.heads["file"] == "heads.npz" and m.heads is not None
    assert m.heads.source == "h0_out"  # the tiny model has one LSTM layer


def test_damaged_heads_are_one_clear_error(tiny_live_model, tmp_path):
    d = _copy(tiny_live_model, tmp_path)
    blob = (d / "heads.npz").read_bytes()
    (d / "heads.npz").write_bytes(blob[:-10] + bytes(10))
    with pytest.raises(model.ModelError, match=r"heads\.npz does not match the checksum"):
        model.load(d)
    (d / "heads.npz").unlink()
    with pytest.raises(model.ModelError, match=r"heads\.npz cannot be read"):
        model.load(d)


def test_heads_of_another_model_are_refused(tiny_live_model, tmp_path):
    """Weights that fit the shapes but not the graph: the load-time check finds them."""
    import hashlib
    import io

    d = _copy(tiny_live_model, tmp_path)
    with np.load(d / "heads.npz") as arrays:
        changed = {k: v * 1.5 for k, v in arrays.items()}
    buffer = io.BytesIO()
    np.savez(buffer, **changed)
    (d / "heads.npz").write_bytes(buffer.getvalue())
    data = json.loads((d / "model.json").read_text())
    data["heads"]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (d / "model.json").write_text(json.dumps(data))
    with pytest.raises(model.ModelError, match="does not give the model's logits"):
        model.load(d)


def test_model_json_not_json(tiny_live_model, tmp_path):
    d = _copy(tiny_live_model, tmp_path)
    (d / "model.json").write_text("{ nope")
    with pytest.raises(model.ModelError, match="not readable JSON"):
        model.load(d)


def test_unknown_model_name():
    with pytest.raises(model.ModelError, match="no model 'nonesuch'"):
        model.load("nonesuch")


def test_contract_round_trip_and_checks(tiny_live_model):
    data = json.loads((tiny_live_model / "model.json").read_text())
    c = Contract.from_dict(data)
    assert Contract.from_dict(c.to_dict()) == c
    broken = json.loads(json.dumps(data))
    for t in broken["tensors"]["outputs"]:
        if t["role"] == "state-out":
            t["pairs_with"] = "nothing"
            break
    with pytest.raises(ContractError, match="pairs with"):
        Contract.from_dict(broken)
    broken = json.loads(json.dumps(data))
    broken["encoding"]["vocabulary"].append("r")
    with pytest.raises(ContractError, match="repeated"):
        Contract.from_dict(broken)
