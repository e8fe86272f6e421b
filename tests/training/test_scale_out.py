"""Scale-out training: two workers of one multi-worker run (two local processes, TF_CONFIG on
two free localhost ports, gRPC and collective all-reduce between them) end with the same
weights, the chief writing the run folder and the other worker its scratch folder; a mirrored
run on this machine's one CPU device trains like any other."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import h5py
import numpy as np
import pytest

from partimento.training.config import resolve

from support.project import ROOT

pytestmark = pytest.mark.slow

TINY = dict(
    epochs=1,
    steps_per_epoch=2,
    units=8,
    layers=1,
    embedding=4,
    seq_len=16,
    limit=20,
    batch_size=8,
    progress=0,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def weights(path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        names: list[str] = []
        f.visit(names.append)
        return {n: np.array(f[n]) for n in names if isinstance(f[n], h5py.Dataset)}


def flags(cache) -> list[str]:
    out = []
    for k, v in {**TINY, "cache_dir": str(cache)}.items():
        out += ["--" + k.replace("_", "-"), str(v)]
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The folk corpus parsed once, so the workers do not both write the cache."""
    from partimento.training.data import folk

    path = tmp_path_factory.mktemp("folk-cache")
    folk.load_corpus(resolve("folk", overrides={**TINY, "cache_dir": str(path)}))
    return path


def test_two_workers_finish_with_identical_weights(tmp_path, cache):
    ports = [free_port(), free_port()]
    run = tmp_path / "run"
    procs = []
    for index in range(2):
        tf_config = {
            "cluster": {"worker": [f"localhost:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(tf_config),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": str(ROOT),
        }
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "partimento.cli",
                    "train",
                    "folk",
                    "--strategy",
                    "multiworker",
                    "--run-dir",
                    str(run),
                    *flags(cache),
                ],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-2000:]

    worker = tmp_path / "run.worker1"
    # only the chief writes the run folder; the worker's files are its own
    assert (run / "run.json").exists() and (worker / "run.json").exists()
    assert not any(p.name.startswith("worker") for p in run.iterdir())
    chief_w, worker_w = weights(run / "final.weights.h5"), weights(worker / "final.weights.h5")
    assert chief_w.keys() == worker_w.keys() and len(chief_w) >= 5
    for name, a in chief_w.items():
        assert np.array_equal(a, worker_w[name]), name
    # the metrics are global (all-reduced), so both logs say the same
    log = (run / "log.csv").read_text()
    assert log == (worker / "log.csv").read_text() and len(log.splitlines()) == 2


def test_mirrored_on_one_cpu_trains(tmp_path, cache):
    from partimento.training.train import train

    cfg = resolve("folk", overrides={**TINY, "cache_dir": str(cache), "strategy": "mirrored"})
    train(cfg, tmp_path / "run")
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) == 2 and "val_loss" in rows[0]
    assert (tmp_path / "run" / "final.weights.h5").exists()
