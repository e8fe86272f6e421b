"""The ``jazz`` and ``piano`` styles: reading MIDI folders, WJazzD solos and POP909, the split,
a tiny train -> export -> onnxruntime round for each data mode, and a jazz model answering a
phrase in the engine's continue mode."""

from __future__ import annotations

import random
from pathlib import Path

import mido
import numpy as np
import onnx
import pytest

from partimento.core.music.encoding import HOLD_CODE, REST_CODE
from partimento.core.players import continuation, events
from partimento.engine.engine import Engine
from partimento.files import model as models
from partimento.training.config import resolve
from partimento.training.data import midi_folder, wjazzd

from support.project import SHIPPED, require, train_tiny
from support.songs import write_song


@pytest.fixture(scope="module")
def midi_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("songs")
    rng = random.Random(3)
    for i in range(16):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        write_song(sub / f"song{i:02d}.mid", rng)
    return folder


@pytest.fixture(scope="module")
def tiny_jazz(midi_dir, tmp_path_factory) -> Path:
    """A jazz model trained for two steps on the generated MIDI folder and exported."""
    return train_tiny(
        tmp_path_factory.mktemp("tiny-jazz"),
        "jazz",
        embedding=8,
        seq_len=16,
        data_dir=str(midi_dir),
    )


# --- data ------------------------------------------------------------------------------------


def test_midi_reader_merges_tracks_skips_drums_and_reads_quarters(midi_dir):
    path = midi_dir / "b" / "song00.mid"
    notes = midi_folder.read_midi(path)
    assert 36 not in notes[:, 0].tolist()  # the drum track is not music here
    melody = notes[notes[:, 3] == 90]
    assert len(melody) == 64 and set(melody[:, 2].tolist()) == {2}  # eighths: 2 sixteenths
    assert melody[:, 1].tolist() == list(range(0, 128, 2))
    chords = notes[notes[:, 3] == 60]
    assert len(chords) == 24 and set(chords[:, 2].tolist()) == {16}  # whole bars
    assert len(notes) == 64 + 24
    pieces = list(midi_folder.midi_pieces(midi_dir))
    assert len(pieces) == 16 and pieces[0].name == "a/song01.mid"


def test_split_is_by_file_and_disjoint(midi_dir):
    pieces = list(midi_folder.midi_pieces(midi_dir))
    split = midi_folder.split(pieces)
    names = {k: {p.name for p in v} for k, v in split.items()}
    assert sum(map(len, names.values())) == 16
    assert not (names["train"] & names["test"]) and not (names["train"] & names["valid"])
    moved = midi_folder.Piece("elsewhere/" + pieces[0].name.split("/")[-1], pieces[0].notes)
    home = next(k for k, v in names.items() if pieces[0].name in v)
    assert midi_folder.split([moved])[home] == [moved]  # the file name decides, not the folder


def test_wjazzd_csv_seconds_become_sixteenths_at_the_solo_tempo():
    text = "60,10.0,0.25\n62,10.25,0.25\n64,10.5,0.5\n65,11.5,1.0\n"
    notes = wjazzd.solo_notes(text, bpm=120.0)  # a beat is half a second
    assert notes[:, :3].tolist() == [[60, 0, 2], [62, 2, 2], [64, 4, 4], [65, 12, 8]]


def test_the_weimar_jazz_database_is_read_and_split():
    folder = midi_folder.shared_data() / "wjazzd"
    require((folder / "score_csv.zip").exists(), f"no WJazzD at {folder} (PARTIMENTO_DATA)")
    solos = list(wjazzd.solos(folder))
    assert len(solos) == 299
    assert sum(len(s.notes) for s in solos) > 100_000
    split = midi_folder.split(solos)
    assert 0.7 < len(split["train"]) / 299 < 0.9 and split["valid"] and split["test"]
    lengths = np.concatenate([s.notes[:, 2] for s in solos])
    assert 1 <= np.median(lengths) <= 4  # jazz lines: mostly eighths and sixteenths


def test_a_pop909_song_reads_all_three_tracks():
    folder = midi_folder.shared_data() / "pop909"
    require((folder / "001.mid").exists(), f"no POP909 at {folder} (PARTIMENTO_DATA)")
    notes = midi_folder.read_midi(folder / "001.mid")
    tracks = mido.MidiFile(str(folder / "001.mid")).tracks
    heard = sum(1 for t in tracks for m in t if m.type == "note_on" and m.velocity > 0)
    assert len(notes) == heard
    tokens = events.numeric_tokens([events.Note(*map(int, n[:3])) for n in notes])
    assert sum(events.is_chord(t) for t in tokens) > 100  # melody over an accompaniment


def test_rare_chords_fall_back_to_their_top_note(midi_dir):
    from partimento.training.styles import jazz

    pieces = list(midi_folder.midi_pieces(midi_dir))
    tokens = jazz.numeric_vocabulary(pieces, cap=60)
    assert len(tokens) <= 60 and tokens[:3] == ["/", "r", "_"]
    name = jazz.fallback(set(tokens), [int(t) for t in tokens if events.is_pitch(t)])
    assert name(frozenset({48, 51, 55})) in tokens
    assert name(frozenset({61, 66, 71, 75})) == "75"  # an unknown chord: its top note


# --- train, export, play -----------------------------------------------------------------------


def test_jazz_trains_exports_and_steps(tiny_jazz):
    m = models.load(tiny_jazz)
    enc = m.contract.encoding
    # jazz reads sixteenths: an eighth grid kept only a step's first onset (a fifth of the
    # Weimar solos' notes lost)
    assert enc["type"] == "events" and enc["mode"] == "numeric" and enc["step"] == 1
    assert len(m.contract.output("logits").shape) == 3
    assert abs(m.contract.training["parity_max_logit_difference"]) <= 1e-4
    c = continuation.make(m.contract, m.run, temperature=1.0, seed=1)
    cold = c.continue_notes(32)  # from the START state, no phrase heard
    assert cold and all(0 <= n.start < 32 and n.start + n.length <= 32 for n in cold)
    c.reset()
    c.observe([67, HOLD_CODE, 69, HOLD_CODE, 70, HOLD_CODE, REST_CODE, REST_CODE])
    warm = c.continue_notes(16)
    assert warm and all(0 <= n.start < 16 for n in warm)
    # the sixteenth grid keeps what an eighth grid dropped: both notes of a sixteenth pair
    notes = [events.Note(60, 0, 1), events.Note(62, 1, 1), events.Note(64, 2, 2)]
    assert events.numeric_tokens(notes, enc["step"])[:3] == ["60", "62", "64"]
    assert events.numeric_tokens(notes, 2)[:2] == ["60", "64"]


def test_dropouts_and_a_tied_embedding_train_and_export_a_matching_step_model(midi_dir, tmp_path):
    from partimento.training.export import load_run

    path = train_tiny(
        tmp_path,
        "jazz",
        embedding=8,
        seq_len=16,
        data_dir=str(midi_dir),
        input_dropout=0.3,
        recurrent_dropout=0.3,
        tie_embedding=True,
    )
    m = models.load(path)
    assert abs(m.contract.training["parity_max_logit_difference"]) <= 1e-4
    run, _, _, train_model, _, _ = load_run(tmp_path / "run")
    assert run["config"]["recurrent_dropout"] == 0.3
    assert train_model.get_layer("input_dropout").rate == 0.3
    # exported with the fused LSTM operator, not a loop of small ops (3 times slower a step)
    graph = onnx.load(path / "model.onnx").graph
    assert "LSTM" in {n.op_type for n in graph.node}
    assert "Loop" not in {n.op_type for n in graph.node}
    # the output reads the embedding: only a bias of its own, one per token
    vocab = len(m.contract.encoding["tokens"])
    assert [w.shape for w in train_model.get_layer("next").weights] == [(vocab,)]
    embedding = train_model.get_layer("token_embedding").embeddings
    assert sum(v is embedding for v in train_model.trainable_variables) == 1


@pytest.mark.parametrize("mode", ["numeric", "event"])
def test_piano_trains_exports_and_plays_in_both_data_modes(mode, midi_dir, tmp_path):
    path = train_tiny(
        tmp_path, "piano", embedding=8, seq_len=24, data_dir=str(midi_dir), data_mode=mode
    )
    m = models.load(path)
    assert m.contract.encoding["mode"] == mode
    if mode == "event":
        assert {"on60", "off60", "shift16", "vel7"} <= set(m.contract.encoding["tokens"])
    c = continuation.make(m.contract, m.run, temperature=1.0, seed=2)
    c.observe([60, HOLD_CODE, 62, HOLD_CODE, 64, REST_CODE])
    notes = c.continue_notes(32)
    assert all(0 <= n.start < 32 and n.end <= 32 for n in notes)
    ensemble = c.continue_notes(32) + c.continue_notes(32) + notes
    assert ensemble, "three answers of two bars hold no note at all"


def test_the_piano_config_maps_mechanicalbachs_flags():
    cfg = resolve(
        "piano",
        overrides={
            "data_mode": "event",
            "seq_len": 50,
            "batch_size": 8,
            "epochs": 3,
            "optimizer": "rmsprop",
        },
    )
    assert (cfg.data_mode, cfg.seq_len, cfg.batch_size, cfg.epochs, cfg.optimizer, cfg.loss) == (
        "event",
        50,
        8,
        3,
        "rmsprop",
        "sparse_categorical_crossentropy",
    )


@pytest.mark.slow
def test_a_jazz_model_answers_in_the_engines_continue_mode(tiny_jazz):
    from support import engine as te

    require((SHIPPED / "bach" / "model.onnx").exists(), "no shipped bach model")
    cache: dict[str, models.Model] = {}

    def loader(name: str) -> models.Model:
        return cache.setdefault(name, models.load(name))

    answer = te.answer_a_phrase(SHIPPED / "bach", tiny_jazz, loader)[1]

    engine = Engine(te.config(SHIPPED / "bach", tiny_jazz, mode="continue"), loader, seed=0)
    cut = answer[0][0] + 0.6
    records = te.play_phrase(engine, more=[(cut, (0x90, 60, 80))], until=14.0)[0]
    at = next(i for i, r in enumerate(records) if r.given == (0x90, 60, 80))
    assert not te.synth_on(records[at], te.ANSWER)  # released in the reply to the note-on
    assert engine.stats()["interrupts"] == 1


def test_evaluate_scores_a_jazz_model_next_to_ngrams(tiny_jazz):
    import math

    from partimento.training.evaluate import evaluate

    figures = evaluate(str(tiny_jazz), write=False)
    V = len(models.load(tiny_jazz).contract.encoding["tokens"])
    assert figures["pieces"] >= 1 and figures["tokens"] > 100
    # two training steps: about uniform over the tokens
    assert abs(figures["nll_per_token"] - math.log(V)) < 0.5
    tri = figures["baseline_ngram"]["3-gram"]
    assert tri["nll"] < math.log(V) - 1.0  # the generated songs are very predictable
    assert 0 <= figures["accuracy"] <= 1 and tri["accuracy"] > 1 / V


@pytest.mark.parametrize("name", ["jazz", "piano"])
def test_the_shipped_model_answers_a_phrase_and_beats_its_baseline(name):
    folder = SHIPPED / name
    require((folder / "model.onnx").exists(), f"no shipped {name} model")
    m = models.load(folder)
    assert (folder / "model.onnx").stat().st_size < 10e6
    ev = m.contract.evaluation
    assert ev["nll_per_token"] < ev["baseline_ngram"]["3-gram"]["nll"]
    c = continuation.make(m.contract, m.run, temperature=0.9, seed=4)
    c.observe(
        [
            62,
            HOLD_CODE,
            65,
            HOLD_CODE,
            69,
            HOLD_CODE,
            72,
            HOLD_CODE,
            71,
            HOLD_CODE,
            HOLD_CODE,
            HOLD_CODE,
            REST_CODE,
            REST_CODE,
            REST_CODE,
            REST_CODE,
        ]
    )
    notes = c.continue_notes(64) + c.continue_notes(64)
    assert len(notes) >= 8, "four bars with hardly a note"
    assert all(36 <= n.pitch <= 96 for n in notes)
    assert len({n.pitch for n in notes}) >= 4  # a line, not one repeated note
