"""The abc style: characters <-> ids, the pure ABC writer and reader, the continuer's priming
and answers (with scripted models), the corpus reader, and a tiny train -> export -> step."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partimento.core.music.encoding import HOLD_CODE, REST_CODE, Note, grid_to_notes
from partimento.core.players import abc
from partimento.core.players.contract import Contract, Tensor

BODY = "X:1\nT:\nM:4/4\nL:1/8\nK:C\n"


# -- characters ---------------------------------------------------------------------------------


@given(st.text(alphabet=st.sampled_from(abc.CHARACTERS), max_size=200))
def test_characters_round_trip(text):
    ids = abc.encode_text(text)
    assert ids.dtype == np.int32 and len(ids) == len(text)
    assert abc.decode_text(ids) == text


def test_characters_outside_the_alphabet_are_dropped():
    assert abc.decode_text(abc.encode_text("A\tB\u00e9C\r\n")) == "ABC\n"
    assert len(abc.CHARACTERS) == 96 and abc.CHARACTERS[0] == "\n"


# -- writer and reader --------------------------------------------------------------------------

grids = st.lists(
    st.one_of(st.integers(36, 96), st.just(HOLD_CODE), st.just(REST_CODE)), min_size=1, max_size=80
)


@settings(max_examples=300, deadline=None)
@given(grids)
def test_written_abc_reads_back_as_the_same_notes(grid):
    text = abc.write(grid)
    assert abc.read(text).notes == grid_to_notes(np.array(grid))
    assert abc.read(text).end == len(grid)


@settings(max_examples=100, deadline=None)
@given(grids)
def test_the_writer_streams_each_note_once_it_ends(grid):
    w = abc.AbcWriter()
    pieces = [w.feed(c) for c in grid]
    assert "".join(pieces) + w.flush() == abc.write(grid)


def test_a_note_is_written_when_it_ends_and_ties_across_the_bar():
    w = abc.AbcWriter()
    assert w.feed(60) == "" and w.feed(HOLD_CODE) == ""  # C, still sounding: no text yet
    assert w.feed(62) == "C"  # the next onset ends it: now its length is known
    whole = abc.write([60, HOLD_CODE, 62] + [HOLD_CODE] * 15 + [64])
    assert whole == "CD7-|DE/2"
    assert abc.read(whole).notes == [Note(60, 0, 2), Note(62, 2, 16), Note(64, 18, 1)]


def test_the_writer_spells_in_c_and_restates_accidentals_per_bar():
    # F#, F# (no sign again), F natural, then after the bar line F# needs its sign again
    grid = [66, 66, 65, 65] + [REST_CODE] * 12 + [66, HOLD_CODE, 70, 48, 84]
    text = abc.write(grid)
    assert text == "^F/2F/2=F/2F/2z6|^F_B/2C,/2c'/2"
    assert [n.pitch for n in abc.read(text).notes] == [66, 66, 65, 65, 66, 70, 48, 84]


def test_the_reader_knows_the_common_abc_of_the_corpus():
    text = (
        '"Am"(3ABc d>e f<g [CEG]2 z2 | ^F F =F|F A2-|A2 !trill!B{ag}B ~c/ x/\n'
        "K:G\nF2 [K:F]B2 % a comment with ABC in it\n|:G2:|"
    )
    r = abc.read(text)
    got = [(n.pitch, n.start, n.length) for n in r.notes]
    assert got[:3] == [(69, 0, 1), (71, 1, 2), (72, 3, 1)]  # a triplet of eighths
    assert got[3:7] == [(74, 4, 3), (76, 7, 1), (77, 8, 1), (79, 9, 3)]  # broken rhythm
    assert got[7:10] == [(60, 12, 4), (64, 12, 4), (67, 12, 4)]  # a chord, then a rest
    assert got[10:14] == [(66, 20, 2), (66, 22, 2), (65, 24, 2), (65, 26, 2)]  # accidentals
    assert got[14] == (69, 28, 8)  # tied across the bar
    assert got[15:17] == [(71, 36, 2), (71, 38, 2)]  # decoration and grace notes skipped
    assert got[17] == (72, 40, 1)
    assert got[18:] == [(66, 42, 4), (70, 46, 4), (67, 50, 4)]  # K:G, then K:F inline
    assert r.end == 54 and r.complete


def test_the_reader_stops_inside_what_is_still_being_written():
    assert abc.read('AB "Am').notes == [Note(69, 0, 2), Note(71, 2, 2)]
    assert not abc.read('AB "Am').complete
    assert abc.read("AB\nT:a ti").end == 4 and not abc.read("AB\nT:a ti").complete
    assert abc.read("A B\nL:1/16\nC2").notes[-1] == Note(60, 4, 2)


@pytest.mark.parametrize(
    "field, sharps",
    [
        ("G", {"F": 1}),
        ("Bb", {"B": -1, "E": -1}),
        ("Em", {"F": 1}),
        ("D dor", {}),
        ("A mix", {"F": 1, "C": 1}),
        ("F#m", {"F": 1, "C": 1, "G": 1}),
    ],
)
def test_key_signatures(field, sharps):
    assert abc.key_signature(field) == sharps


# -- the continuer, with scripted models --------------------------------------------------------


def contract(units: int = 4) -> Contract:
    V = len(abc.CHARACTERS)
    return Contract(
        name="scripted",
        style="abc",
        kind="continuation",
        encoding={
            "type": "abc",
            "characters": abc.CHARACTERS,
            "header": abc.HEADER,
            "vocabulary": [str(i) for i in range(V)],
            "transposition": "to C major / A minor",
        },
        inputs=(
            Tensor("token", ("batch", "time"), "int32", "token"),
            Tensor("h0_in", ("batch", units), "float32", "state-in", pairs_with="h0_out"),
        ),
        outputs=(
            Tensor("next", ("batch", "time", V), "float32", "logits"),
            Tensor("h0_out", ("batch", units), "float32", "state-out", pairs_with="h0_in"),
        ),
    )


class Scripted:
    """A "model" that always writes ``script`` again, whatever it read; it records its input."""

    def __init__(self, script: str) -> None:
        self.script = abc.encode_text(script)
        self.i = 0
        self.read: list[int] = []

    def __call__(self, feeds, outputs):
        ids = feeds["token"][0].tolist()
        self.read += ids
        logits = np.full((1, len(ids), len(abc.CHARACTERS)), -30.0, np.float32)
        logits[0, -1, self.script[self.i % len(self.script)]] = 30.0
        self.i += 1
        return {"next": logits, "h0_out": feeds["h0_in"] + 1}


def test_the_continuer_primes_with_the_header_and_the_phrase_as_abc():
    run = Scripted("C")
    c = abc.AbcContinuer(contract(), run, shift=2)  # e.g. the player in B flat
    assert abc.decode_text(run.read) == abc.HEADER
    c.observe([58, HOLD_CODE, 60, HOLD_CODE])  # Bb, C moved up a tone: C, D
    assert abc.decode_text(run.read).endswith("K:C\nC")  # D is not over yet
    c.observe([REST_CODE])
    assert abc.decode_text(run.read).endswith("K:C\nCD")
    c.reset()
    assert c.text == abc.HEADER


def test_an_answer_covers_the_steps_and_comes_back_in_the_players_key():
    run = Scripted("c2 d/2e/2|")
    c = abc.AbcContinuer(contract(), run, shift=-3, seed=0)
    c.observe([63, HOLD_CODE, 65, HOLD_CODE])
    run.i = 0  # the next run (writing the pending note) predicts the script's first character
    notes = c.continue_notes(8)
    # c2 (a quarter) d/2 e/2 (sixteenths) | c2 in C, moved back up 3 semitones; the last
    # note clipped to the 8 steps asked for
    assert notes == [Note(75, 0, 4), Note(77, 4, 1), Note(79, 5, 1), Note(75, 6, 2)]
    assert c.text.endswith("K:C\nCDc2 d/2e/2|c ")


def test_an_answer_always_ends_even_when_the_model_writes_no_music():
    run = Scripted('"chord" ')
    c = abc.AbcContinuer(contract(), run, seed=0)
    assert c.continue_notes(16) == []
    assert run.i <= abc.CHARS_PER_STEP * 16 + 64 + 3


def test_a_major_scale_keeps_accidentals_out_and_minor_pitches_are_moved_into_the_scale():
    c = abc.AbcContinuer(
        contract(), Scripted("^c2"), seed=0, allowed_pitch_classes=frozenset({0, 2, 4, 5, 7, 9, 11})
    )
    assert not c.mask[abc.CHARACTERS.index("^")] and c.mask[abc.CHARACTERS.index("c")]
    minor = frozenset({9, 11, 0, 2, 4, 5, 7, 8})  # A minor with G sharp, no F sharp
    c = abc.AbcContinuer(contract(), Scripted("^f2"), seed=0, allowed_pitch_classes=minor)
    assert {n.pitch for n in c.continue_notes(4)} == {77}  # F sharp moved down to F


def test_continuation_make_picks_the_abc_continuer():
    from partimento.core.players import continuation

    c = continuation.make(contract(), Scripted("C"), temperature=0.5, shift=0)
    assert isinstance(c, abc.AbcContinuer) and c.temperature == 0.5


# -- the corpus and a tiny model ----------------------------------------------------------------


def test_tunes_are_normalised_and_split_at_x_lines():
    from partimento.training.data import abc_text

    book = "%header\nX: 7\nT: One\nS: source\nL: 1/8\nK:G\n% c\nAB\tc|\n\nX:8\nT:Two\nK:D\nd\n"
    tunes = [abc_text.normalise(t) for t in abc_text.split_tunes(book)]
    assert tunes == ["X:1\nT:One\nL:1/8\nK:G\nAB c|\n\n", "X:1\nT:Two\nK:D\nd\n\n"]
    assert abc_text.body(tunes[0]) == "AB c|\n\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from partimento.training.config import resolve
    from partimento.training.data import abc_text

    from support.project import require

    cfg = resolve("abc", overrides={"cache_dir": str(tmp_path_factory.mktemp("abc-cache"))})
    require(
        bool(abc_text.nottingham_files(cfg)),
        f"no Nottingham ABC files under {abc_text.data_root(cfg)} (set PARTIMENTO_DATA)",
    )
    return abc_text.load(cfg)


@pytest.mark.slow
def test_the_corpus_has_four_sources_split_by_tune(corpus):
    from partimento.training.data import abc_text

    assert set(corpus["sources"]) == {"oneills1850", "ryansMammoth", "airdsAirs", "nottingham"}
    assert corpus["sources"]["nottingham"] > 1000
    splits = corpus["splits"]
    n = sum(len(v) for v in splits.values())
    assert 0.7 < len(splits["train"]) / n < 0.9 and len(splits["test"]) > 0.05 * n
    bodies = {k: {abc_text.body(t) for t in v} for k, v in splits.items()}
    assert not bodies["train"] & bodies["test"] and not bodies["train"] & bodies["valid"]
    assert all(t.startswith("X:1\n") and "\nK:" in t for t in splits["test"])


@pytest.fixture(scope="module")
def tiny_abc(tmp_path_factory):
    from support.project import train_tiny

    return train_tiny(
        tmp_path_factory.mktemp("tiny-abc"), "abc", embedding=8, seq_len=32, limit=10, batch_size=8
    )


@pytest.mark.slow
def test_tiny_abc_trains_exports_and_steps(tiny_abc):
    from partimento.files import model as models

    meta = json.loads((tiny_abc / "model.json").read_text())
    assert meta["kind"] == "continuation" and meta["encoding"]["type"] == "abc"
    assert meta["encoding"]["characters"] == abc.CHARACTERS
    assert meta["training"]["parity_max_logit_difference"] <= 1e-4
    m = models.load(tiny_abc)
    state = {i.name: np.zeros((1, int(i.shape[1])), np.float32) for i, _ in m.contract.states}
    for ch in "X:1\nK:C\nAB":
        res = m.run({"token": abc.encode_text(ch)[None], **state})
        state = {i.name: res[o.name] for i, o in m.contract.states}
        logits = res["next"][0, -1].astype(np.float64)
        assert logits.shape == (96,) and np.isfinite(logits).all()


@pytest.mark.slow
def test_sampled_text_from_a_tiny_model_parses_or_says_why(tiny_abc, tmp_path):
    from partimento.training.styles import abc as style

    text = style.sample_text(tiny_abc, "X:1\nT:\nM:4/4\nL:1/8\nK:C\n", 120, 1.0, 0)
    assert text.startswith("X:1\nT:") and len(text) == len(BODY) + 120
    assert style.sample_text(tiny_abc, "X:1\n", 50, 1.0, 3) == style.sample_text(
        tiny_abc, "X:1\n", 50, 1.0, 3
    )
    problem = style.abc_problem(text)
    written = style.text_to_midi(text, tmp_path / "t.mid")
    assert written == (problem is None) == (tmp_path / "t.mid").exists()
    assert style.abc_problem("no tune here") == "no K: line: the text has no tune body"
    assert style.abc_problem('X:1\nK:C\n"C" | |\n') == "music21 parses it but finds no notes"
    assert style.text_to_midi(BODY + "CDEF GABc|c8|]\n", tmp_path / "ok.mid")


def test_a_long_session_is_primed_afresh_after_an_answer(monkeypatch):
    monkeypatch.setattr(abc, "REPRIME_AFTER", 40)
    run = Scripted("c2")
    c = abc.AbcContinuer(contract(), run, seed=0)
    c.observe([60, HOLD_CODE] * 8)
    c.continue_notes(8)
    assert c.text.startswith(abc.HEADER) and "c2" in c.text  # 38 characters read: kept
    c.observe([62, HOLD_CODE] * 8)
    notes = c.continue_notes(8)
    assert notes and c.text == abc.HEADER  # over 40: the next phrase starts a fresh tune
