"""The tests' own layout: no test module imports another (helpers live in tests/support,
fixtures in conftest.py), and every test module sits in a folder that mirrors the code."""

from __future__ import annotations

import ast
from pathlib import Path

from support.project import ROOT

TESTS = ROOT / "tests"
FOLDERS = {"core", "engine", "live", "files", "commands", "training", "integration"}
"""Where test modules live; the house rules (tests/test_*.py) sit at the top."""


def python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def imported_names(path: Path) -> list[str]:
    """Every module ``path`` imports, anywhere in the file (a relative import keeps its dots)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names += [base] + [f"{base.rstrip('.')}.{a.name}".lstrip(".") for a in node.names]
    return names


def is_test_module(name: str) -> bool:
    """A test module or a conftest, under any name it can be imported by; ``support`` is not."""
    parts = [p for p in name.split(".") if p]
    if not parts or parts[0] == "support":
        return False
    return parts[0] == "tests" or any(p.startswith("test_") or p == "conftest" for p in parts)


def test_no_test_module_imports_another():
    found = [
        f"{p.relative_to(TESTS)} imports {name}"
        for p in python_files()
        for name in imported_names(p)
        if is_test_module(name)
    ]
    assert not found, "import helpers from tests/support instead:\n" + "\n".join(found)


def test_test_modules_live_in_the_folders_that_mirror_the_code():
    stray = [
        str(p.relative_to(TESTS))
        for p in python_files()
        if p.name.startswith("test_")
        and p.parent != TESTS
        and p.relative_to(TESTS).parts[0] not in FOLDERS
    ]
    assert not stray, f"test modules outside {sorted(FOLDERS)}: {stray}"
    packages = [p for p in TESTS.glob("*/__init__.py") if p.parent.name != "support"]
    assert not packages, f"test folders are not packages (importlib mode): {packages}"


def test_the_guard_sees_every_kind_of_import(tmp_path):
    bad = tmp_path / "test_bad.py"
    bad.write_text(
        "import tests.test_engine\n"
        "from tests import synth\n"
        "from test_service_jack import Rig\n"
        "from conftest import require\n"
        "from .test_abc import BODY\n"
        "def f():\n"
        "    from tests.core.test_abc import BODY\n"
        "from support.engine import drive\n"
        "from support import engine\n"
        "import numpy\n"
    )
    found = {n for n in imported_names(bad) if is_test_module(n)}
    assert found == {
        "tests.test_engine",
        "tests",
        "tests.synth",
        "test_service_jack",
        "test_service_jack.Rig",
        "conftest",
        "conftest.require",
        ".test_abc",
        "test_abc.BODY",
        "tests.core.test_abc",
        "tests.core.test_abc.BODY",
    }
