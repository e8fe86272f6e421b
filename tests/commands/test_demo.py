"""``partimento demo`` on a machine without MIDI: no backend named, no JACK server, and
python-rtmidi made unimportable, so the demo can only pass if it touches no MIDI port."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest

from support.project import ROOT, SHIPPED, require

ALTO, TENOR, BASS, ANSWER = 1, 2, 3, 4  # the default configuration's channels; the demo's answer


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    for name in ("bach", "folk"):
        require((SHIPPED / name / "model.onnx").exists(), f"no shipped {name} model")
    base = tmp_path_factory.mktemp("demo")
    blocker = base / "no-rtmidi" / "rtmidi"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('python-rtmidi is not here')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MIDO_BACKEND", "JACK_DEFAULT_SERVER")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(blocker.parent), str(ROOT), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    env["PATH"] = os.path.dirname(sys.executable)  # no fluidsynth, whatever is installed
    out_dir = base / "out"
    done = subprocess.run(
        [sys.executable, "-m", "partimento.cli", "demo", "-o", str(out_dir), "--wav"],
        cwd=base,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, out_dir


def notes(track: mido.MidiTrack) -> list[tuple[int, int, int, int]]:
    """(start tick, end tick, channel, pitch) of every note of a track."""
    t, sounding, out = 0, {}, []
    for msg in track:
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            assert (msg.channel, msg.note) not in sounding, f"note-on for a sounding key {msg}"
            sounding[msg.channel, msg.note] = t
        elif msg.type in ("note_on", "note_off"):
            start = sounding.pop((msg.channel, msg.note))
            out.append((start, t, msg.channel, msg.note))
    assert not sounding, f"notes left sounding at the end: {sounding}"
    return sorted(out)


def test_demo_runs_without_any_midi_backend(demo):
    done, out_dir = demo
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "demo-continue.mid",
        "demo-continue.png",
        "demo-harmonize.mid",
        "demo-harmonize.png",
    ]
    assert done.stdout.splitlines()[-1].startswith("no WAV: install fluidsynth")


def test_the_harmonize_file_has_harmony_under_every_melody_note(demo):
    done, out_dir = demo
    mid = mido.MidiFile(out_dir / "demo-harmonize.mid")
    assert [t.name for t in mid.tracks] == ["Melody", "Alto", "Tenor", "Bass"]
    melody = notes(mid.tracks[0])
    voices = {
        ch: notes(track) for ch, track in zip((ALTO, TENOR, BASS), mid.tracks[1:], strict=True)
    }
    for ch, ns in voices.items():
        assert ns and {n[2] for n in ns} == {ch}
    below = 0
    for start, _, _, pitch in melody:
        under = [n for ns in voices.values() for n in ns if n[0] <= start < n[1]]
        assert under, f"no harmony under the melody note {pitch} at tick {start}"
        below += all(n[3] <= pitch for n in under)
    assert below >= 0.9 * len(melody), "the harmony crosses above the melody"
    full = sum(
        1 for start, *_ in melody if all(any(n[0] == start for n in ns) for ns in voices.values())
    )
    assert full >= 0.9 * len(melody)

    harmony = sum(len(ns) for ns in voices.values())
    summary = done.stdout
    assert f"notes in {len(melody)}, notes out {harmony} (" in summary
    assert f"{len(melody)} of {len(melody)} melody notes harmonized at once" in summary
    assert re.search(
        r"processing per note-on \(Engine\.handle, time\.perf_counter\): "
        r"p50 \d+\.\d\d ms, p99 \d+\.\d\d ms",
        summary,
    )


def test_the_continue_file_answers_after_the_phrase(demo):
    done, out_dir = demo
    mid = mido.MidiFile(out_dir / "demo-continue.mid")
    assert [t.name for t in mid.tracks] == ["Phrase", "Answer"]
    phrase, answer = notes(mid.tracks[0]), notes(mid.tracks[1])
    assert len(phrase) == 11 and answer
    assert {n[2] for n in answer} == {ANSWER}
    phrase_end = max(n[1] for n in phrase)
    assert min(n[0] for n in answer) > phrase_end
    beats = (max(n[1] for n in answer) - min(n[0] for n in answer)) / mid.ticks_per_beat
    assert beats <= 8.01  # two bars at most
    assert f"notes in 11, answer {len(answer)} notes over " in done.stdout


def test_wav_rendering_with_fluidsynth(tmp_path):
    """With FluidSynth and a General MIDI soundfont installed, --wav writes audible WAVs as
    long as the music."""
    import shutil
    import wave

    import numpy as np

    require(shutil.which("fluidsynth") is not None, "fluidsynth is not installed")
    require(
        any(
            Path(p).exists()
            for p in (
                "/usr/share/sounds/sf2/FluidR3_GM.sf2",
                "/usr/share/soundfonts/FluidR3_GM.sf2",
            )
        ),
        "no General MIDI soundfont (fluid-soundfont-gm)",
    )
    done = subprocess.run(
        [sys.executable, "-m", "partimento.cli", "demo", "-o", str(tmp_path), "--wav"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    for name in ("demo-harmonize", "demo-continue"):
        with wave.open(str(tmp_path / f"{name}.wav")) as w:
            seconds = w.getnframes() / w.getframerate()
            frames = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        midi_seconds = mido.MidiFile(str(tmp_path / f"{name}.mid")).length
        assert midi_seconds <= seconds <= midi_seconds + 5
        assert np.sqrt(np.mean(frames.astype(float) ** 2)) > 100, f"{name}.wav is silent"


def read_png(path) -> np.ndarray:
    """An 8-bit RGB PNG with filter 0 rows (as daemon/pianoroll.py writes them) as pixels."""
    import struct
    import zlib

    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data, size = 8, b"", None
    while pos < len(blob):
        (n,), kind = struct.unpack(">I", blob[pos : pos + 4]), blob[pos + 4 : pos + 8]
        body = blob[pos + 8 : pos + 8 + n]
        assert (
            zlib.crc32(kind + body) & 0xFFFFFFFF
            == struct.unpack(">I", blob[pos + 8 + n : pos + 12 + n])[0]
        ), f"bad CRC in {kind}"
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            data += body
        pos += 12 + n
    w, h = size
    rows = np.frombuffer(zlib.decompress(data), np.uint8).reshape(h, 1 + 3 * w)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(h, w, 3)


def test_the_piano_roll_shows_the_melody_and_three_voices(demo):
    from partimento.files.pianoroll import PALETTE

    _, out_dir = demo
    img = read_png(out_dir / "demo-harmonize.png")
    assert img.shape[1] == 1200 and img.shape[0] > 100
    colours = {tuple(int(v) for v in px) for px in img.reshape(-1, 3)}
    for part, name in enumerate(("melody", "alto", "tenor", "bass")):
        assert PALETTE[part] in colours, f"no {name} note drawn"
    # the melody (dark) lies above every harmony note, column by column
    melody = np.all(img == PALETTE[0], axis=2)
    harmony = np.any([np.all(img == PALETTE[p], axis=2) for p in (1, 2, 3)], axis=0)
    for x in range(0, img.shape[1], 50):
        if melody[:, x].any() and harmony[:, x].any():
            assert np.flatnonzero(melody[:, x]).max() < np.flatnonzero(harmony[:, x]).min()
