"""What a user gets from ``pip install partimento``: the wheel and the source archive hold the
shipped models, the default configuration, the unit templates, the example melody and the
licence, and say which licence and Python versions they are for.

The archives are built with ``python -m build`` (sdist, then the wheel from the sdist, as a
release is built), or taken from ``$PARTIMENTO_WHEEL_DIR`` when .ci/run has built them already.
"""

from __future__ import annotations

import email
import importlib.util
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from support.project import ROOT, SHIPPED, require

pytestmark = pytest.mark.wheel


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("PARTIMENTO_WHEEL_DIR")
    if given:
        return Path(given)
    require(importlib.util.find_spec("build") is not None, "the build package (dev extra)")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "-o", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


def one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"{pattern} in {folder}: {found}"
    return found[0]


def shipped_files() -> list[str]:
    """Every file of every shipped model, relative to ``exported_models/``."""
    return sorted(
        p.relative_to(SHIPPED).as_posix()
        for p in SHIPPED.rglob("*")
        if p.is_file() and p.suffix in (".onnx", ".json", ".npz")
    )


def test_the_wheel_holds_models_config_units_example_and_licence(dist: Path) -> None:
    names = set(zipfile.ZipFile(one(dist, "partimento-*.whl")).namelist())
    models = shipped_files()
    assert {"bach/model.onnx", "bach/heads.npz", "folk/model.onnx"} <= set(models)
    assert {f"partimento/models/{m}" for m in models} <= names
    assert {
        "partimento/defaults/partimento.toml",
        "partimento/defaults/train.toml",
        "partimento/units/partimento.service",
        "partimento/units/partimento-user.service",
        "partimento/examples/chorale-melody.mid",
        "partimento/cli.py",
        "partimento/training/train.py",
    } <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "daemon/", "exported_models/"))]


def test_the_wheel_says_its_licence_and_pythons(dist: Path) -> None:
    wheel = zipfile.ZipFile(one(dist, "partimento-*.whl"))
    meta = email.message_from_bytes(
        wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")))
    )
    assert meta["License-Expression"] == "MIT"
    assert meta["Requires-Python"] == ">=3.11"
    classifiers = meta.get_all("Classifier")
    assert "Programming Language :: Python :: 3.12" in classifiers
    assert "Programming Language :: Python :: 3.13" not in classifiers  # see docs/decisions.md
    requires = meta.get_all("Requires-Dist")
    assert not [r for r in requires if "tensorflow" in r and "extra" not in r]


def test_the_source_archive_holds_the_same_and_the_docs(dist: Path) -> None:
    with tarfile.open(one(dist, "partimento-*.tar.gz")) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert {f"exported_models/{m}" for m in shipped_files()} <= names
    assert {
        "LICENSE",
        "README.md",
        "config/partimento.toml",
        "systemd/partimento.service",
        "docs/INSTALL.md",
        "docs/SERVICE.md",
        "docs/examples/chorale-melody.mid",
    } <= names


def test_the_python_versions_said_are_the_ones_declared() -> None:
    """README and INSTALL.md say 3.11 or 3.12, as the classifiers do; 3.13 is a note of what
    it needs (python-rtmidi has no 3.13 wheel: docs/decisions.md)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    minors = {
        c.rsplit(".", 1)[1]
        for c in project["classifiers"]
        if c.startswith("Programming Language :: Python :: 3.")
    }
    assert minors == {"11", "12"} and project["requires-python"] == ">=3.11"
    assert f"{sys.version_info.minor}" in minors or sys.version_info >= (3, 13)
    readme = " ".join((ROOT / "README.md").read_text().split())
    install = " ".join((ROOT / "docs" / "INSTALL.md").read_text().split())
    assert "Python 3.11 or 3.12" in readme and "3.11-3.13" not in readme
    assert "**Python 3.11 or 3.12**" in install
    assert "sudo apt install g++ pkg-config libasound2-dev libjack-jackd2-dev" in install
