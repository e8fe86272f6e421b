"""What a Windows (or macOS) user runs works without the POSIX-only modules: ``--help``,
``demo``, ``harmonize``, ``ports`` and ``run``'s start, each in a real subprocess where ``pwd``,
``grp`` and ``fcntl`` cannot be imported (as on Windows). The daemon's event loop is a selector
loop on Windows (aiomqtt needs one), and a virtual port asked of Windows MultiMedia, which has
none, is refused in one line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import mido
import pytest

from support.project import ROOT

POSIX_ONLY = ("pwd", "grp", "fcntl")
SHIM = f"""
import sys
for name in {POSIX_ONLY!r}:
    sys.modules[name] = None  # import fails, as on Windows
from partimento import cli
sys.exit(cli.main(sys.argv[1:]))
"""
MELODY = ROOT / "docs" / "examples" / "chorale-melody.mid"


def without_posix(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SHIM, *args],
        cwd=cwd,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_shim_makes_the_posix_modules_unimportable(tmp_path):
    for name in POSIX_ONLY:
        code = SHIM.split("from partimento")[0] + f"import {name}\n"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["service", "--help"]])
def test_help_without_posix_modules(tmp_path, args):
    done = without_posix(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "usage: partimento" in done.stdout and done.stderr == ""


def test_demo_and_harmonize_without_posix_modules(tmp_path):
    done = without_posix("demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("demo-harmonize.mid", "demo-continue.mid", "demo-harmonize.svg"):
        assert (tmp_path / name).stat().st_size > 0
    done = without_posix(
        "harmonize", str(MELODY), "-o", "h.mid", "--live", "--seed", "1", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert [t.name for t in mido.MidiFile(tmp_path / "h.mid").tracks][-3:] == [
        "Alto",
        "Tenor",
        "Bass",
    ]


def test_ports_and_run_start_without_posix_modules(jack, tmp_path):
    done = without_posix("ports", cwd=tmp_path, env=jack.env())
    assert done.returncode == 0, done.stderr
    config = tmp_path / "partimento.toml"
    config.write_text(
        '[midi]\napi = "jack"\ninput = "no-such-keyboard"\noutput = "no-such-synth"\n'
    )
    done = without_posix("run", "--config", str(config), cwd=tmp_path, env=jack.env())
    assert done.returncode == 1
    assert done.stderr.startswith("partimento: error: no MIDI ")
    assert "matches 'no-such-" in done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == ""


def test_the_daemon_runs_on_a_selector_loop_on_windows():
    from partimento.live import eventloop

    async def which() -> type:
        return type(asyncio.get_running_loop())

    assert eventloop.loop_factory("win32") is asyncio.SelectorEventLoop
    assert eventloop.loop_factory("linux") is None and eventloop.loop_factory("darwin") is None
    assert issubclass(eventloop.run(which(), platform="win32"), asyncio.SelectorEventLoop)
    assert eventloop.run(which(), platform="linux") is type(asyncio.new_event_loop())


class WinMM:
    """python-rtmidi's MidiIn/MidiOut as on Windows MultiMedia: ports, but no virtual ones."""

    deleted = 0

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def get_current_api(self) -> int:
        import rtmidi

        return rtmidi.API_WINDOWS_MM

    def ignore_types(self, **kwargs: object) -> None:
        pass

    def open_virtual_port(self, name: str) -> None:
        raise NotImplementedError("Virtual ports are not supported by the Windows MM API.")

    def delete(self) -> None:
        WinMM.deleted += 1


@pytest.mark.parametrize("direction", ["input", "output"])
def test_a_virtual_port_on_windows_mm_is_refused_in_one_line(monkeypatch, direction):
    from partimento.config import MidiConfig
    from partimento.live import midi_io

    monkeypatch.setattr(midi_io, "_client", lambda cls, backend, name, **kw: WinMM())
    WinMM.deleted = 0
    cfg = MidiConfig(**{f"virtual_{direction}": "Partimento"})
    opener = midi_io.open_input if direction == "input" else midi_io.open_output
    with pytest.raises(midi_io.MidiError) as caught:
        opener(cfg)
    message = str(caught.value)
    assert message.startswith(f"cannot open virtual MIDI {direction} 'Partimento': WINDOWS_MM")
    assert f"midi.virtual_{direction} empty" in message and "loopMIDI" in message
    assert "\n" not in message and WinMM.deleted == 1
