"""The layers of docs/ARCHITECTURE.md, checked on the source: which package may import which,
no I/O library in the core, no clock in the engine, the runtime never importing the training
side, and no import cycle. A violation names the module and the import."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.project import ROOT

PACKAGES = {"partimento": ROOT / "daemon", "partimento.training": ROOT / "training"}

IO_LIBRARIES = {
    "aiomqtt",
    "asyncio",
    "http",
    "keras",
    "mido",
    "music21",
    "onnxruntime",
    "paho",
    "rtmidi",
    "selectors",
    "socket",
    "sqlite3",
    "subprocess",
    "tensorflow",
    "tf2onnx",
    "urllib",
}
"""Libraries that do I/O (or drag in a framework): none of them in the pure core."""

TIMED = {"partimento.engine.driver"}
"""The driver feeds the engine on a virtual clock; it times the engine's calls (perf_counter)
for the figures ``partimento demo`` prints. The engine itself reads no clock."""

MAY_IMPORT = {
    "partimento.core": {"partimento.core"},
    "partimento.config": {"partimento.core", "partimento.config"},
    "partimento.engine": {"partimento.core", "partimento.config", "partimento.engine"},
    "partimento.files": {"partimento.core", "partimento.config", "partimento.files"},
    "partimento.live": {
        "partimento.core",
        "partimento.config",
        "partimento.engine",
        "partimento.files",
        "partimento.live",
    },
}
"""Each layer and the partimento packages its modules may import (any import, even one inside
a function); the command layer and the training side may import the runtime."""


def module_name(path: Path) -> str:
    for package, folder in sorted(PACKAGES.items(), key=lambda kv: -len(kv[0])):
        if path.is_relative_to(folder):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            return ".".join([package, *parts])
    raise ValueError(path)


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            if package == "partimento" and path.is_relative_to(PACKAGES["partimento.training"]):
                continue
            found[module_name(path)] = path
    return found


MODULES = modules()


def imports(module: str, path: Path, *, top_level_only: bool = False) -> Iterator[tuple[str, int]]:
    """Absolute names a module imports, with their line; ``top_level_only``: only those run
    when the module is imported (not inside functions, not under ``TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes: list[ast.AST]
    if top_level_only:
        nodes = []
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            nodes.extend(ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node])
    else:
        nodes = list(ast.walk(tree))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in MODULES else base), node.lineno


def layer_of(module: str) -> str | None:
    for layer in sorted(MAY_IMPORT, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def violations() -> list[str]:
    found = []
    for module, path in sorted(MODULES.items()):
        layer = layer_of(module)
        runtime = not module.startswith("partimento.training")
        for name, line in imports(module, path):
            where = f"{module} (line {line}) imports {name}"
            if runtime and name.startswith("partimento.training"):
                found.append(f"{where}: the runtime never imports the training side")
            if layer is None:
                continue
            root = name.split(".")[0]
            if layer == "partimento.core" and root in IO_LIBRARIES:
                found.append(f"{where}: the core imports no I/O library")
            clock = root == "time" and module not in TIMED
            if layer == "partimento.engine" and (root in IO_LIBRARIES or clock):
                found.append(f"{where}: the engine does no I/O and reads no clock")
            if name.startswith("partimento") and not any(
                name == allowed or name.startswith(allowed + ".") for allowed in MAY_IMPORT[layer]
            ):
                found.append(f"{where}: {layer} may import only {sorted(MAY_IMPORT[layer])}")
    return found


def test_every_layer_imports_only_what_it_may() -> None:
    assert len(MODULES) > 50, "the package was not found where the layout says"
    assert violations() == []


def test_no_import_cycle_between_modules() -> None:
    graph = {
        module: {name for name, _ in imports(module, path, top_level_only=True) if name in MODULES}
        for module, path in MODULES.items()
    }
    done: set[str] = set()
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            cycles.append(" -> ".join([*trail[trail.index(module) :], module]))
            return
        if module in done:
            return
        for name in sorted(graph[module]):
            if name != module and not module.startswith(name + "."):  # a package's own parent
                visit(name, [*trail, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []


def test_the_guard_sees_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker is not blind: a core module importing mido and the engine is caught."""
    bad = PACKAGES["partimento"] / "core" / "music" / "encoding.py"
    fake = tmp_path / "daemon" / "core" / "music" / "encoding.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(bad.read_text() + "\nimport mido\nfrom partimento.engine import engine\n")
    monkeypatch.setitem(MODULES, "partimento.core.music.encoding", fake)
    found = violations()
    assert any("imports mido: the core imports no I/O library" in v for v in found)
    assert any("imports partimento.engine" in v for v in found)


def test_run_loads_no_training_code_and_no_tensorflow() -> None:
    """What ``partimento run`` imports before it opens a port: no training module, no
    TensorFlow, Keras or music21 (a runtime install has none of them)."""
    code = (
        "import sys\n"
        "from partimento import cli\n"
        "from partimento.commands import run\n"
        "from partimento.live import service\n"
        "from partimento.files import model\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'music21', 'tf2onnx') or m.startswith('partimento.training'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
