"""The runtime never pulls in the training stack."""

import subprocess
import sys
from pathlib import Path


def runtime_modules() -> list[str]:
    """Every module under daemon/, found on disk, so a new one is covered at once."""
    root = Path(__file__).resolve().parents[1] / "daemon"
    return sorted("daemon." + ".".join(p.relative_to(root).with_suffix("").parts)
                  for p in root.rglob("*.py") if p.name != "__init__.py")


RUNTIME_MODULES = runtime_modules()


def test_daemon_imports_neither_tensorflow_nor_music21():
    code = ("import sys\n"
            f"for m in {RUNTIME_MODULES!r}: __import__(m)\n"
            "from daemon import cli; cli.parser()\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'music21', 'tf2onnx'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"imported: {out.stdout.strip()}"


def test_core_imports_no_io_library():
    core = [m for m in RUNTIME_MODULES if m.startswith("daemon.core.")]
    code = ("import sys\n"
            f"for m in {core!r}: __import__(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('mido', 'rtmidi', 'onnxruntime', 'aiomqtt', 'asyncio', 'socket'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"imported: {out.stdout.strip()}"
