"""The standard JSB split: tunes, the shipped membership, alignment and the JSB likelihood."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from partimento.core.music.encoding import HOLD_CODE, REST_CODE, Vocabulary, sounding_pitches
from partimento.training.data import jsb, jsb_split

from support.project import require

JSB = jsb.default_path()


def test_a_tune_ignores_key_rhythm_and_repeated_notes() -> None:
    a = np.array([60, 60, HOLD_CODE, 62, 64, REST_CODE, 64, 62])
    b = np.array([65, HOLD_CODE, 67, HOLD_CODE, HOLD_CODE, 69, 67])
    assert jsb.tune(sounding_pitches(a)) == jsb.tune(sounding_pitches(b)) == (2, 2, -2)


def test_a_shared_opening_or_ending_of_twelve_intervals_is_the_same_tune() -> None:
    opening = tuple(range(1, 13))
    assert jsb.same_tune((*opening, 5, 5), (*opening, -3))
    assert jsb.same_tune((9, *opening), (-9, -9, *opening))
    assert not jsb.same_tune((*opening[:11], 5, 5), (*opening[:11], -3))
    assert not jsb.same_tune((1, 2), (1, 3))


def test_the_shipped_membership_round_trips(tmp_path) -> None:
    shipped = jsb_split.Membership.load()
    assert shipped.source["chorales"] == {"train": 229, "valid": 76, "test": 77}
    shipped.save(tmp_path / "m.json")
    again = jsb_split.Membership.load(tmp_path / "m.json")
    assert again == shipped
    assert len(shipped.versions["test"]) == 77 and len(shipped.versions["valid"]) == 76
    names = [n for s in jsb.SPLITS for n in shipped.splits[s]]
    assert len(names) == len(set(names))  # each chorale in one split


def test_a_file_that_is_no_membership_is_one_clear_error(tmp_path) -> None:
    (tmp_path / "m.json").write_text('{"format": "something else"}')
    with pytest.raises(jsb.JsbError, match="not a JSB membership file"):
        jsb_split.Membership.load(tmp_path / "m.json")


@pytest.mark.slow
def test_no_valid_or_test_tune_ever_trains(chorales) -> None:
    """On the real corpus (music21 parsing): no training chorale shares a tune, by the rule,
    with a JSB valid or test chorale, or with a music21 chorale of those splits."""
    train = [jsb.chorale_tune(c) for c in chorales["train"]]
    held = [jsb.chorale_tune(c) for s in ("valid", "test") for c in chorales[s]]
    assert not any(jsb.same_tune(t, h) for t in train for h in held)
    if JSB.exists():
        pieces = jsb.read(JSB)
        jsb_held = [jsb.tune(p[0]) for s in ("valid", "test") for p in pieces[s]]
        assert not any(jsb.same_tune(t, h) for t in train for h in jsb_held)
    assert len(chorales["train"]) >= 150 and len(chorales["test"]) >= 77


@pytest.mark.slow
def test_without_the_jsb_file_the_shipped_split_is_the_derived_one(chorales, tmp_path) -> None:
    everything = [c for split in chorales.values() for c in split]
    shipped = jsb_split.membership(everything, tmp_path / "absent.json")
    assert shipped == jsb_split.Membership.load()
    require(JSB.exists(), f"no {JSB}")
    derived = jsb_split.membership(everything, JSB)
    assert derived.splits == shipped.splits
    assert derived.versions == shipped.versions


@pytest.mark.slow
def test_a_chorale_the_file_does_not_name_is_split_by_its_tune(chorales, tmp_path) -> None:
    stranger = dataclasses.replace(chorales["test"][0], name="not-in-the-file.mxl")
    member = jsb_split.membership(
        [*chorales["train"][:3], *chorales["test"], stranger], tmp_path / "absent.json"
    )
    assert member.split_of("not-in-the-file.mxl") == "test"


@pytest.mark.slow
def test_a_jsb_chorale_takes_conditions_and_articulation_from_its_music21_version() -> None:
    """JSB test chorale 2 is bwv393 note for note: its pitches stay, and the repeated notes
    music21 strikes again are struck again."""
    require(JSB.exists(), f"no {JSB}")
    from music21 import corpus

    from partimento.training.data.chorales import read_chorale

    path = next(p for p in corpus.getComposer("bach") if str(p).endswith("bwv393.mxl"))
    version = read_chorale(path, "bwv393.mxl")
    piece = jsb.read(JSB)["test"][2]
    found = jsb.align(piece, [version])
    assert found is not None and found.matched == 1.0 and found.shift == 0
    c = jsb.from_jsb(piece, version, found, "jsb-test-02")
    assert (sounding_pitches(c.voices) == piece).all()
    assert (c.voices == version.voices).all()  # every strike and hold as in music21
    assert (c.position == version.position).all() and c.fermata.sum() > 0


@pytest.mark.slow
def test_the_evaluation_set_is_the_77_jsb_test_chorales(chorales) -> None:
    require(JSB.exists(), f"no {JSB}")
    everything = [c for split in chorales.values() for c in split]
    pieces, source = jsb_split.evaluation_set("test", everything, jsb_split.membership(everything))
    assert len(pieces) == 77 and "JSB test" in source
    raw = jsb.read(JSB)["test"]
    assert all((sounding_pitches(c.voices) == p).all() for c, p in zip(pieces, raw, strict=True))


def test_a_held_note_is_the_same_pitch_again_in_the_jsb_likelihood() -> None:
    from partimento.training.bach_eval import jsb_log_probs

    vocab = Vocabulary.for_pitches(60, 62)  # r _ 60 61 62
    p = np.array([[0.1, 0.2, 0.3, 0.3, 0.1]] * 4)  # the same distribution at every step
    codes = np.array([60, HOLD_CODE, 60, 62])  # struck, held, struck again, another
    got = np.exp(jsb_log_probs(np.log(p), codes, vocab))
    assert got == pytest.approx([0.3, 0.2 + 0.3, 0.2 + 0.3, 0.1])
    rests = np.array([REST_CODE, REST_CODE, 61])
    assert np.exp(jsb_log_probs(np.log(p[:3]), rests, vocab)) == pytest.approx(
        [0.1 + 0.2, 0.1 + 0.2, 0.3]
    )  # silence before the piece: a rest after a rest
