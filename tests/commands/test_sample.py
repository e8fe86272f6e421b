"""``partimento sample``: what a listener gets from each kind of model, through the command line
(a subprocess, as a user runs it): notes in the model's range, the length asked for, the seed
first, the same file for the same seed, four voices from bach, a WAV with sound, and one clear
line when fluidsynth is missing or the request is wrong."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import mido
import numpy as np
import pytest

from support.project import ROOT, SHIPPED, require

SHIM = """
import sys
from partimento import cli
sys.exit(cli.main(sys.argv[1:]))
"""
STEPS_PER_BAR = 16
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2")


def sample(
    *args: str, env: dict | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    base = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", SHIM, "sample", *map(str, args)],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def notes(track: mido.MidiTrack, tpb: int) -> list[tuple[int, int, int]]:
    """(start step, end step, pitch) of every note of a track, in sixteenths."""
    t, sounding, out = 0, {}, []
    for msg in track:
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            sounding[msg.note] = t
        elif msg.type in ("note_on", "note_off") and msg.note in sounding:
            out.append((sounding.pop(msg.note), t, msg.note))
    assert not sounding
    step = tpb // 4
    return sorted((a // step, b // step, p) for a, b, p in out)


def model_range(folder: Path) -> tuple[int, int]:
    from partimento.files.model import read_contract

    return read_contract(folder).vocabulary.pitch_range


@pytest.fixture(scope="module")
def folk() -> Path:
    require((SHIPPED / "folk" / "model.onnx").exists(), "no shipped folk model")
    return SHIPPED / "folk"


def test_random_seed_then_the_length_asked_for_in_the_models_range(tmp_path, folk):
    out = tmp_path / "folk.mid"
    done = sample("folk", "-o", out, "--length", 4, "--seed", 5)
    assert done.returncode == 0, done.stderr
    mid = mido.MidiFile(out)
    assert [t.name for t in mid.tracks] == ["Seed", "Continuation"]
    seed, answer = (notes(t, mid.ticks_per_beat) for t in mid.tracks)
    low, high = model_range(folk)
    assert seed and answer
    assert all(low <= p <= high for *_, p in seed + answer)
    seed_end = max(end for _, end, _ in seed)
    assert min(start for start, *_ in answer) >= seed_end  # the seed first, then the answer
    last = max(end for _, end, _ in answer) - seed_end
    assert 4 * STEPS_PER_BAR - STEPS_PER_BAR < last <= 4 * STEPS_PER_BAR
    assert f"{out}: {len(answer)} notes over 4 bars" in done.stdout


def test_a_seed_file_is_played_first_and_continued(tmp_path, folk):
    melody = ROOT / "docs" / "examples" / "chorale-melody.mid"
    out = tmp_path / "continued.mid"
    done = sample("folk", "-o", out, "--seed-file", melody, "--length", 2, "--seed", 1)
    assert done.returncode == 0, done.stderr
    from partimento.files.midifile import read_melody

    given = read_melody(melody)
    mid = mido.MidiFile(out)
    seed, answer = (notes(t, mid.ticks_per_beat) for t in mid.tracks)
    assert [(s, p) for s, _, p in seed] == [(given.step_of(n.start), n.pitch) for n in given.notes]
    assert answer and min(s for s, *_ in answer) >= max(e for _, e, _ in seed)
    assert mid.tracks[0][1].tempo == given.tempo_us  # the file's tempo when --bpm is not given


def test_the_same_seed_gives_the_same_file(tmp_path, folk):
    paths = [tmp_path / f"{name}.mid" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (7, 7, 8), strict=True):
        assert sample("folk", "-o", path, "--seed", seed, "--length", 2).returncode == 0
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b and a != c


def test_a_tiny_trained_model_by_folder(tmp_path, tiny_folk_model):
    out = tmp_path / "tiny.mid"
    done = sample(tiny_folk_model, "-o", out, "--length", 2, "--seed", 3, "--bpm", 90)
    assert done.returncode == 0, done.stderr
    mid = mido.MidiFile(out)
    seed, answer = (notes(t, mid.ticks_per_beat) for t in mid.tracks)
    low, high = model_range(tiny_folk_model)
    assert all(low <= p <= high for *_, p in seed + answer)
    seed_end = max(e for _, e, _ in seed)
    assert all(e - seed_end <= 2 * STEPS_PER_BAR for _, e, _ in answer)
    assert round(mido.tempo2bpm(mid.tracks[0][1].tempo)) == 90


def test_bach_harmonizes_in_four_voices(tmp_path):
    require((SHIPPED / "bach" / "model.onnx").exists(), "no shipped bach model")
    out = tmp_path / "bach.mid"
    done = sample("bach", "-o", out, "--seed", 1)
    assert done.returncode == 0, done.stderr
    mid = mido.MidiFile(out)
    assert [t.name for t in mid.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    voices = [notes(t, mid.ticks_per_beat) for t in mid.tracks]
    assert all(len(v) >= 10 for v in voices)
    below = sum(np.mean([p for *_, p in v]) for v in voices[1:]) / 3
    assert below < np.mean([p for *_, p in voices[0]])


def test_wav_has_sound(tmp_path, folk):
    require(shutil.which("fluidsynth") is not None, "fluidsynth is not installed")
    require(any(Path(p).exists() for p in SOUNDFONTS), "no General MIDI soundfont")
    out, wav = tmp_path / "s.mid", tmp_path / "elsewhere" / "s.wav"
    done = sample("folk", "-o", out, "--length", 2, "--seed", 2, "--wav", wav)
    assert done.returncode == 0, done.stderr
    with wave.open(str(wav)) as w:
        seconds = w.getnframes() / w.getframerate()
        frames = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    assert seconds >= mido.MidiFile(out).length
    assert np.sqrt(np.mean(frames.astype(float) ** 2)) > 100, "the WAV is silent"
    assert not (tmp_path / "s.wav").exists()  # nothing else written beside the MIDI


def test_without_fluidsynth_one_line_and_the_midi(tmp_path, folk):
    out = tmp_path / "s.mid"
    done = sample(
        "folk",
        "-o",
        out,
        "--length",
        1,
        "--wav",
        tmp_path / "s.wav",
        env={"PATH": os.path.dirname(sys.executable)},
    )
    assert done.returncode == 0, done.stderr
    assert out.exists() and not (tmp_path / "s.wav").exists()
    assert done.stdout.splitlines()[-1].startswith("no WAV: install fluidsynth")


@pytest.mark.parametrize(
    "args, message",
    [
        (("no-such-model",), "no model 'no-such-model'"),
        (("folk", "--length", "0"), "--length 0: give between 1 and 256 bars"),
        (("folk", "--seed-file", "BAD"), "BAD.mid is not a readable MIDI file"),
        (("folk", "--seed-file", "missing.mid"), "seed file missing.mid does not exist"),
    ],
)
def test_errors_are_one_line(tmp_path, args, message):
    (tmp_path / "BAD.mid").write_text("not a MIDI file\n")
    args = tuple("BAD.mid" if a == "BAD" else a for a in args)
    done = sample(args[0], "-o", tmp_path / "x.mid", *args[1:], cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("partimento: error: ")
    assert message in lines[0]
    assert not (tmp_path / "x.mid").exists()


def test_sampling_needs_no_tensorflow(tmp_path, folk):
    code = (
        "import sys\nfrom partimento.commands.sample import sample\n"
        f"sample('folk', __import__('pathlib').Path({str(tmp_path / 'x.mid')!r}), bars=1,"
        " say=lambda s: None)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf2onnx')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def tiny_abc(tmp_path_factory):
    from partimento.training.config import resolve
    from partimento.training.data import abc_text

    from support.project import train_tiny

    cfg = resolve("abc")
    require(
        bool(abc_text.nottingham_files(cfg)),
        f"no Nottingham ABC files under {abc_text.data_root(cfg)} (set PARTIMENTO_DATA)",
    )
    return train_tiny(
        tmp_path_factory.mktemp("tiny-abc"), "abc", embedding=8, seq_len=32, limit=10, batch_size=8
    )


def test_abc_writes_text_from_the_seed_text_and_says_about_midi(tmp_path, tiny_abc):
    out = tmp_path / "tune.mid"
    done = sample(tiny_abc, "-o", out, "--seed-text", r"X:1\nK:D\n", "--chars", 120, "--seed", 1)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "tune.abc").read_text()
    assert text.startswith("X:1\nK:D\n") and len(text) == len("X:1\nK:D\n") + 120
    last = done.stdout.splitlines()[-1]
    # an untrained model's text rarely parses; either way the user is told
    assert (last == f"{out}: the first tune as MIDI (music21)" and out.exists()) or (
        last.startswith("no MIDI: ") and not out.exists()
    )


def write_seed(path: Path, notes: list[tuple[int, int, int]], tpb: int = 480) -> Path:
    """A one-track MIDI melody of (pitch, start step, length in steps)."""
    step = tpb // 4
    mid = mido.MidiFile(ticks_per_beat=tpb)
    track = mido.MidiTrack()
    events = sorted(
        [(s * step, 1, p) for p, s, _ in notes] + [((s + n) * step, 0, p) for p, s, n in notes]
    )
    now = 0
    for tick, on, p in events:
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=p, velocity=80 if on else 0, time=tick - now))
        now = tick
    mid.tracks.append(track)
    mid.save(str(path))
    return path


def test_the_answer_starts_on_the_seeds_next_beat_and_stays_on_its_grid(tmp_path, folk):
    # four bars of eighths in D major whose last note ends half a beat before the bar line
    scale = [62, 64, 66, 67, 69, 71, 73, 74]
    seed = write_seed(tmp_path / "call.mid", [(scale[i % 8], 2 * i, 2) for i in range(31)])
    out = tmp_path / "answer.mid"
    done = sample("folk", "-o", out, "--seed-file", seed, "--length", 4, "--seed", 4)
    assert done.returncode == 0, done.stderr
    mid = mido.MidiFile(out)
    call, answer = (notes(t, mid.ticks_per_beat) for t in mid.tracks)
    assert max(e for _, e, _ in call) == 62
    starts = [s for s, _, _ in answer]
    assert min(starts) >= 64  # the next beat after the call, not a sixteenth after it
    assert max(e for _, e, _ in answer) <= 64 + 4 * STEPS_PER_BAR
    offbeat = sum(s % 2 for s in starts) / len(starts)
    assert offbeat <= 0.2, starts  # an answer to eighths moves in eighths, on the beat
    from partimento.core.music import rules

    d_major = rules.key_scale(2, 0)
    assert sum(p % 12 in d_major for *_, p in answer) >= 0.9 * len(answer)  # the call's key


@pytest.fixture(scope="module")
def shipped_abc() -> Path:
    require((SHIPPED / "abc" / "model.onnx").exists(), "no shipped abc model")
    return SHIPPED / "abc"


def test_abc_answers_a_seed_file_for_the_length_asked(tmp_path, shipped_abc):
    melody = ROOT / "docs" / "examples" / "chorale-melody.mid"
    out = tmp_path / "abc.mid"
    done = sample("abc", "-o", out, "--seed-file", melody, "--length", 2, "--seed", 1)
    assert done.returncode == 0, done.stderr
    mid = mido.MidiFile(out)
    assert [t.name for t in mid.tracks] == ["Seed", "Continuation"]
    seed, answer = (notes(t, mid.ticks_per_beat) for t in mid.tracks)
    seed_end = max(e for _, e, _ in seed)
    start = min(s for s, _, _ in answer)
    assert seed_end <= start < seed_end + 4  # on the next beat
    assert STEPS_PER_BAR < max(e for _, e, _ in answer) - seed_end <= 2 * STEPS_PER_BAR
    assert "over 2 bars continuing seed chorale-melody.mid" in done.stdout


def test_abc_length_alone_answers_a_random_bar(tmp_path, shipped_abc):
    out = tmp_path / "abc.mid"
    done = sample("abc", "-o", out, "--length", 1, "--seed", 2)
    assert done.returncode == 0, done.stderr
    _seed, answer = (notes(t, mido.MidiFile(out).ticks_per_beat) for t in mido.MidiFile(out).tracks)
    assert answer and max(e for _, e, _ in answer) <= STEPS_PER_BAR + STEPS_PER_BAR


def test_abc_text_and_answer_options_do_not_mix(tmp_path, shipped_abc):
    done = sample("abc", "-o", tmp_path / "x.mid", "--length", 2, "--chars", 100)
    assert done.returncode == 1
    assert "give one pair or the other" in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("name", ["x.wav", "x.txt", "x"])
def test_an_unknown_output_type_is_refused_before_any_work(tmp_path, name):
    done = sample("no-such-model", "-o", tmp_path / name, cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and ".mid" in lines[0] and ".musicxml" in lines[0]
    assert "no model" not in lines[0]  # refused before the model is looked for
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_continuation_as_musicxml(tmp_path, folk):
    require(importlib.util.find_spec("music21") is not None, "music21 (the train extra)")
    from music21 import converter

    out = tmp_path / "folk.musicxml"
    done = sample("folk", "-o", out, "--length", "2", "--seed", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{out}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folk.musicxml"]
    score = converter.parse(str(out))
    assert [p.partName for p in score.parts] == ["Seed", "Continuation"]
    assert all(len(p.flatten().notes) for p in score.parts)


def test_bach_as_compressed_musicxml(tmp_path):
    require((SHIPPED / "bach" / "model.onnx").exists(), "no shipped bach model")
    require(importlib.util.find_spec("music21") is not None, "music21 (the train extra)")
    from music21 import converter

    out = tmp_path / "bach.mxl"
    done = sample("bach", "-o", out, "--seed", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{out}: 46 melody notes harmonized")  # the user's name
    assert [p.partName for p in converter.parse(str(out)).parts] == [
        "Soprano",
        "Alto",
        "Tenor",
        "Bass",
    ]
