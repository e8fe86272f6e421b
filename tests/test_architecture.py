"""The runtime never pulls in the training stack."""

import subprocess
import sys

from support.project import ROOT


def runtime_modules() -> list[str]:
    """Every module under daemon/, found on disk, so a new one is covered at once."""
    root = ROOT / "daemon"
    return sorted(
        "partimento." + ".".join(p.relative_to(root).with_suffix("").parts)
        for p in root.rglob("*.py")
        if p.name != "__init__.py"
    )


RUNTIME_MODULES = runtime_modules()


def imported(modules: list[str], roots: tuple[str, ...], extra: str = "") -> str:
    """Import ``modules`` in a fresh interpreter; the loaded modules under ``roots``."""
    code = (
        "import sys\n"
        f"for m in {modules!r}: __import__(m)\n"
        f"{extra}"
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {roots!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_daemon_imports_neither_tensorflow_nor_music21():
    bad = imported(
        RUNTIME_MODULES,
        ("tensorflow", "keras", "music21", "tf2onnx"),
        "from partimento import cli; cli.parser()\n",
    )
    assert bad == "", f"imported: {bad}"


def test_core_imports_no_io_library():
    core = [m for m in RUNTIME_MODULES if m.startswith("partimento.core.")]
    bad = imported(core, ("mido", "rtmidi", "onnxruntime", "aiomqtt", "asyncio", "socket"))
    assert bad == "", f"imported: {bad}"
