import numpy as np
import pytest

from partimento.core.music.encoding import (
    HOLD_CODE,
    MAJOR,
    MINOR,
    REST_CODE,
    EncodingError,
    Note,
    Vocabulary,
    folk_transposition,
    grid_to_notes,
    notes_to_grid,
    sounding_pitches,
    transpose_grid,
)


def test_notes_grid_round_trip():
    notes = [Note(60, 0, 4), Note(62, 4, 2), Note(64, 8, 8)]
    grid = notes_to_grid(notes)
    assert grid.tolist() == [60, -2, -2, -2, 62, -2, -1, -1, 64] + [-2] * 7
    assert grid_to_notes(grid) == notes


def test_repeated_note_is_two_notes():
    grid = notes_to_grid([Note(67, 0, 2), Note(67, 2, 2)])
    assert grid_to_notes(grid) == [Note(67, 0, 2), Note(67, 2, 2)]


def test_vocabulary_encodes_and_decodes():
    v = Vocabulary.for_pitches(48, 72)
    grid = np.array([60, HOLD_CODE, REST_CODE, 72, 48])
    tokens = v.encode(grid)
    assert tokens.dtype == np.int32
    assert v.decode(tokens).tolist() == grid.tolist()
    assert v.symbols[:2] == ("r", "_")


def test_vocabulary_refuses_pitch_outside():
    v = Vocabulary.for_pitches(48, 72)
    with pytest.raises(EncodingError, match="outside the vocabulary"):
        v.encode([47])


def test_vocabulary_refuses_bad_symbols():
    with pytest.raises(EncodingError, match="repeated"):
        Vocabulary(("r", "r"))
    with pytest.raises(EncodingError, match="not a pitch"):
        Vocabulary(("r", "x"))


def test_start_symbol_vocabulary():
    v = Vocabulary.for_pitches(60, 62, start=True)
    assert v.symbols == ("r", "_", "/", "60", "61", "62")
    assert v.encode([60, REST_CODE]).tolist() == [3, 0]


def test_transpose_keeps_rests_and_holds():
    grid = np.array([60, HOLD_CODE, REST_CODE, 64], np.int16)
    assert transpose_grid(grid, 3).tolist() == [63, HOLD_CODE, REST_CODE, 67]
    with pytest.raises(EncodingError):
        transpose_grid(np.array([120]), 10)


def test_sounding_pitches_resolves_holds_per_voice():
    g = np.array([[60, HOLD_CODE, REST_CODE, HOLD_CODE], [48, HOLD_CODE, 50, HOLD_CODE]])
    assert sounding_pitches(g).tolist() == [[60, 60, -1, -1], [48, 48, 50, 50]]


@pytest.mark.parametrize(
    ("tonic", "mode", "shift"), [(7, MAJOR, 5), (2, MAJOR, -2), (4, MINOR, 5), (9, MINOR, 0)]
)
def test_folk_transposition_goes_to_c_major_or_a_minor(tonic, mode, shift):
    assert folk_transposition(tonic, mode) == shift
    assert (tonic + shift) % 12 == (0 if mode == MAJOR else 9)


def test_octave_shift_into_range():
    from partimento.core.music.encoding import octave_shift_into

    melody = np.array([84, HOLD_CODE, 86, 88, REST_CODE])
    assert octave_shift_into(melody, 60, 79) == -12
    assert octave_shift_into(np.array([62, 64]), 60, 79) == 0
    assert octave_shift_into(np.array([REST_CODE]), 60, 79) == 0
