"""`partimento harmonize` from the command line, on real chorale melodies."""

import shutil
import subprocess
import sys

import mido
import numpy as np
import pytest

from partimento.core.music.encoding import grid_to_notes

from support.cli import partimento
from support.project import ROOT, SHIPPED, require

pytestmark = pytest.mark.slow


def write_melody(path, grid, ticks_per_beat=480, velocity=90, extra_chord=False):
    """A one-track MIDI file of a soprano grid, with slightly human velocities."""
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("time_signature", numerator=4, denominator=4))
    step = ticks_per_beat // 4
    events = []
    for i, n in enumerate(grid_to_notes(grid)):
        events.append((n.start * step, "note_on", n.pitch, velocity - i % 7))
        events.append((n.end * step, "note_off", n.pitch, 0))
        if extra_chord and i == 2:
            events.append((n.start * step, "note_on", n.pitch - 4, 80))
            events.append((n.end * step, "note_off", n.pitch - 4, 0))
    now = 0
    for t, kind, pitch, vel in sorted(events, key=lambda e: (e[0], e[1] == "note_on")):
        tr.append(mido.Message(kind, note=pitch, velocity=vel, time=t - now))
        now = t
    mid.save(str(path))


def notes_of(track):
    t, on, out = 0, {}, []
    for m in track:
        t += m.time
        if m.type == "note_on" and m.velocity:
            on[m.note] = (t, m.velocity)
        elif m.type in ("note_on", "note_off") and m.note in on:
            start, vel = on.pop(m.note)
            out.append((m.note, start, t, vel))
    assert not on, f"notes left sounding: {on}"
    return out


@pytest.fixture(scope="module")
def test_chorale(chorales):
    return chorales["test"][0]


def test_live_harmonize_writes_four_named_tracks(tiny_live_model, test_chorale, tmp_path):
    melody = tmp_path / "melody.mid"
    write_melody(melody, test_chorale.voices[0])
    out = tmp_path / "out.mid"
    r = partimento(
        "harmonize", melody, "-o", out, "--live", "--model", tiny_live_model, "--seed", 3
    )
    assert r.returncode == 0, r.stderr
    mid = mido.MidiFile(str(out))
    assert mid.type == 1
    names = [next(m.name for m in t if m.type == "track_name") for t in mid.tracks]
    assert names == ["Soprano", "Alto", "Tenor", "Bass"]
    assert notes_of(mid.tracks[0]) == notes_of(mido.MidiFile(str(melody)).tracks[0])
    for track in mid.tracks[1:]:
        assert notes_of(track), "a harmony voice is silent"


def test_same_seed_same_harmony(tiny_live_model, test_chorale, tmp_path):
    melody = tmp_path / "melody.mid"
    write_melody(melody, test_chorale.voices[0][:64])
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}.mid"
        assert (
            partimento(
                "harmonize", melody, "-o", out, "--live", "--model", tiny_live_model, "--seed", 7
            ).returncode
            == 0
        )
        outs.append([notes_of(t) for t in mido.MidiFile(str(out)).tracks])
    assert outs[0] == outs[1]


def test_shipped_live_model_keeps_voices_in_range(test_chorale, tmp_path):
    require((SHIPPED / "bach" / "model.onnx").exists(), "no shipped bach model")
    melody = tmp_path / "melody.mid"
    write_melody(melody, test_chorale.voices[0])
    out = tmp_path / "out.mid"
    r = partimento("harmonize", melody, "-o", out, "--live", "--seed", 1)
    assert r.returncode == 0, r.stderr
    ranges = {"Alto": (53, 77), "Tenor": (45, 72), "Bass": (33, 67)}  # SATB ranges, widened
    mid = mido.MidiFile(str(out))
    for track in mid.tracks[1:]:
        pitches = [n[0] for n in notes_of(track)]
        low, high = ranges[track.name]
        inside = np.mean([low <= p <= high for p in pitches])
        assert inside >= 0.95, f"{track.name}: {pitches}"


def test_shipped_offline_model_harmonizes_musicxml(tmp_path):
    require((SHIPPED / "bach-offline" / "model.onnx").exists(), "no shipped bach-offline model")
    from music21 import corpus

    src = corpus.getWork("bwv269")  # a chorale file: its top part is the melody
    out = tmp_path / "out.mid"
    r = partimento("harmonize", src, "-o", out, "--seed", 1, "--iterations", 300)
    assert r.returncode == 0, r.stderr
    mid = mido.MidiFile(str(out))
    assert [t.name for t in mid.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert all(notes_of(t) for t in mid.tracks)


@pytest.mark.parametrize("content", [b"", b"MThd garbage", b"\x00" * 100])
def test_unreadable_melody_is_one_line_error(content, tiny_live_model, tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(content)
    r = partimento("harmonize", bad, "-o", tmp_path / "o.mid", "--live", "--model", tiny_live_model)
    assert r.returncode == 1
    assert r.stderr.startswith("partimento: error: ") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.mid").exists()


def test_empty_midi_says_no_notes(tiny_live_model, tmp_path):
    empty = tmp_path / "empty.mid"
    mido.MidiFile().save(str(empty))
    r = partimento(
        "harmonize", empty, "-o", tmp_path / "o.mid", "--live", "--model", tiny_live_model
    )
    assert r.returncode == 1 and "holds no notes" in r.stderr


def test_chord_where_melody_expected(tiny_live_model, test_chorale, tmp_path):
    melody = tmp_path / "chords.mid"
    write_melody(melody, test_chorale.voices[0][:64], extra_chord=True)
    r = partimento(
        "harmonize", melody, "-o", tmp_path / "o.mid", "--live", "--model", tiny_live_model
    )
    assert r.returncode == 1 and "chord" in r.stderr and "melody is expected" in r.stderr


def test_missing_file(tmp_path):
    r = partimento("harmonize", tmp_path / "nope.mid", "-o", tmp_path / "o.mid", "--live")
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_corrupt_model_is_one_line_error(tiny_live_model, test_chorale, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_live_model, broken)
    (broken / "model.onnx").write_bytes(b"\x08\x01garbage")
    melody = tmp_path / "melody.mid"
    write_melody(melody, test_chorale.voices[0][:32])
    r = partimento("harmonize", melody, "-o", tmp_path / "o.mid", "--live", "--model", broken)
    assert r.returncode == 1
    assert "model.onnx cannot be loaded" in r.stderr and "Traceback" not in r.stderr


def test_unknown_style_is_refused():
    r = partimento("train", "polka")
    assert r.returncode == 2 and "invalid choice: 'polka'" in r.stderr


def test_bad_training_value_names_the_key(tmp_path):
    r = partimento("train", "folk", "--dropout", "1.5", "--run-dir", tmp_path / "run")
    assert r.returncode == 1
    assert "dropout: must be in [0, 1)" in r.stderr


def test_bad_config_file_names_the_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nepochs = 'many'\n")
    r = partimento("train", "bach", "--config", cfg, "--run-dir", tmp_path / "run")
    assert r.returncode == 1 and "epochs: expected int" in r.stderr


EXAMPLE = ROOT / "docs" / "examples" / "chorale-melody.mid"


def shipped_bach() -> None:
    require((SHIPPED / "bach" / "model.onnx").exists(), "no shipped bach model")


@pytest.mark.parametrize("suffix", [".musicxml", ".xml", ".mxl"])
def test_a_musicxml_name_writes_a_score_with_four_named_parts(suffix, tmp_path):
    shipped_bach()
    from music21 import converter

    out = tmp_path / f"chorale{suffix}"
    r = partimento("harmonize", EXAMPLE, "-o", out, "--live", "--seed", 1)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{out}: 46 melody notes harmonized in four voices")
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # nothing beside it
    score = converter.parse(str(out))
    assert [p.partName for p in score.parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert len(score.parts[0].flatten().notes) == 46
    assert all(len(p.flatten().notes) for p in score.parts)
    assert score.metadata.bestTitle == "chorale-melody, harmonized"


def test_writing_mxl_leaves_a_musicxml_of_the_same_name_alone(tmp_path):
    shipped_bach()
    mine = tmp_path / "chorale.musicxml"
    mine.write_text("the user's own file")
    r = partimento("harmonize", EXAMPLE, "-o", tmp_path / "chorale.mxl", "--live")
    assert r.returncode == 0, r.stderr
    assert mine.read_text() == "the user's own file"


@pytest.mark.parametrize("name", ["out.wav", "out.pdf", "out"])
def test_an_unknown_output_type_is_refused_in_one_line_before_any_work(name, tmp_path):
    r = partimento("harmonize", tmp_path / "not-read.mid", "-o", tmp_path / name, "--live")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("partimento: error: ")
    assert ".mid" in r.stderr and ".musicxml" in r.stderr
    assert "does not exist" not in r.stderr  # refused before the melody is even looked at
    assert list(tmp_path.iterdir()) == []


def test_musicxml_without_music21_says_what_to_install(tmp_path):
    code = (
        "import sys; sys.modules['music21'] = None\n"
        "from partimento.cli import main\n"
        f"sys.exit(main(['harmonize', {str(EXAMPLE)!r}, '-o', {str(tmp_path / 'x.musicxml')!r},"
        " '--live']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1
    assert "MusicXML needs music21" in r.stderr and "partimento[train]" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_many_melodies_into_a_folder_with_progress(tmp_path):
    shipped_bach()
    melodies = []
    for name in ("first", "second", "third"):
        melodies.append(tmp_path / f"{name}.mid")
        shutil.copyfile(EXAMPLE, melodies[-1])
    out = tmp_path / "harmonized"
    r = partimento("harmonize", *melodies, "-o", out, "--live", "-v")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["first.mid", "second.mid", "third.mid"]
    assert len(r.stdout.splitlines()) == 3
    assert "harmonizing" in r.stderr and "3/3" in r.stderr  # -v asks for the bar
    for path in out.iterdir():
        names = [t.name for t in mido.MidiFile(str(path)).tracks]
        assert names == ["Soprano", "Alto", "Tenor", "Bass"]
    quiet = partimento("harmonize", *melodies, "-o", out, "--live", "--format", "musicxml")
    assert quiet.returncode == 0 and quiet.stderr == ""  # no bar into a pipe without -v
    assert len(list(out.glob("*.musicxml"))) == 3


def test_many_melodies_of_the_same_name_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        shutil.copyfile(EXAMPLE, tmp_path / folder / "tune.mid")
    r = partimento("harmonize", tmp_path / "a/tune.mid", tmp_path / "b/tune.mid", "-o", tmp_path)
    assert r.returncode == 1 and "would both be written to" in r.stderr
