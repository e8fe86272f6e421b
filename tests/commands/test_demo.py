"""``partimento demo`` on a machine without MIDI: no backend named, no JACK server, and
python-rtmidi made unimportable, so the demo can only pass if it touches no MIDI port."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import mido
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
        [
            sys.executable,
            "-m",
            "partimento.cli",
            "demo",
            "-o",
            str(out_dir),
            "--wav",
            "--picture",
            str(base / "pictures" / "readme.svg"),
        ],
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
        "demo-continue.svg",
        "demo-harmonize.mid",
        "demo-harmonize.svg",
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
        r"response time on this computer: the harmony of a melody note was ready in "
        r"\d+\.\d\d ms typically, \d+\.\d\d ms at worst",
        summary,
    )
    # a musician reads it: no names from inside the program
    for internal in ("Engine", "perf_counter", "handle", "tick", "p50", "p99"):
        assert internal not in summary


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


SVG = "{http://www.w3.org/2000/svg}"


def svg_texts(path: Path) -> tuple[ET.Element, list[str]]:
    """The parsed SVG (it must be well-formed XML) and every text it shows."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    return root, ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_the_harmonize_picture_names_its_notes_bars_voices_and_tune(demo):
    _, out_dir = demo
    root, texts = svg_texts(out_dir / "demo-harmonize.svg")
    title = texts[0]
    assert "Ein feste Burg" in title
    assert any("model bach" in t and "84 BPM" in t for t in texts)
    for label in ("Melody (played)", "Alto", "Tenor", "Bass"):
        assert label in texts, f"no legend entry {label}"
    for name in ("C3", "C4", "C5", "D5", "A4"):  # every C, and the natural notes between
        assert name in texts, f"no note name {name} on the pitch axis"
    assert {"1", "2", "3", "4", "5", "6", "7"} <= set(texts)  # bar numbers
    assert "bar" in texts
    # every note of the MIDI file (30 melody notes and their harmony), named in its tooltip
    played = mido.MidiFile(out_dir / "demo-harmonize.mid")
    in_file = sum(m.type == "note_on" and m.velocity > 0 for t in played.tracks for m in t)
    notes = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    tips = [r.find(f"{SVG}title").text for r in notes]
    assert len(notes) == in_file > 30
    assert sum(t.startswith("Melody (played) ") for t in tips) == 30
    assert {t.split()[0] for t in tips} == {"Melody", "Alto", "Tenor", "Bass"}


def test_the_continue_picture_tells_phrase_from_answer(demo):
    _, out_dir = demo
    root, texts = svg_texts(out_dir / "demo-continue.svg")
    assert "Alle meine Entchen" in texts[0]
    assert any("model folk" in t and "100 BPM" in t for t in texts)
    assert {"Phrase (played)", "Answer (Partimento)", "C4", "1", "2"} <= set(texts)
    colours = {
        r.find(f"{SVG}title").text.split(" (")[0]: r.get("fill")
        for r in root.iter(f"{SVG}rect")
        if r.find(f"{SVG}title") is not None
    }
    assert colours.keys() == {"Phrase", "Answer"} and len(set(colours.values())) == 2


def test_the_readme_shows_the_picture_the_demo_draws(demo):
    """The README's picture is ``demo --picture``'s, and the README says how to redraw it."""
    _, out_dir = demo
    readme = (ROOT / "README.md").read_text()
    shown = re.search(r"!\[[^]]*\]\((docs/images/[^)]+\.svg)\)", readme)
    assert shown, "the README shows no SVG picture"
    assert f"--picture {shown.group(1)}" in readme, "the README does not say how to redraw it"
    copy = out_dir.parent / "pictures" / "readme.svg"
    assert copy.read_bytes() == (out_dir / "demo-harmonize.svg").read_bytes()
    (ours, ours_texts), (theirs, theirs_texts) = svg_texts(copy), svg_texts(ROOT / shown.group(1))
    assert ours_texts[:6] == theirs_texts[:6]  # title, subtitle, legend
    assert len(list(ours.iter(f"{SVG}rect"))) == len(list(theirs.iter(f"{SVG}rect")))


def test_the_picture_draws_in_a_browser(demo, tmp_path):
    """A real headless chromium renders the SVG to a PNG without complaint."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    require(browser is not None, "chromium (a headless browser) to render the SVG")
    assert browser is not None
    _, out_dir = demo
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,500",
            (out_dir / "demo-harmonize.svg").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.stat().st_size > 10_000  # a picture, not a blank page
