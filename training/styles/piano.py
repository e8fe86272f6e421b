"""Style ``piano``: MechanicalBach's polyphonic piano model on POP909 or any MIDI folder.

``--data-mode numeric``: the jazz style's notes-and-chords tokens on an eighth grid (chords as
pitch classes in normal order, a rare chord read as its top note). ``--data-mode event``:
MechanicalBach's performance events ``on<p>``, ``off<p>``, ``shift<k>`` (k sixteenths, 1..16)
and ``vel<b>`` (8 velocity bins) for piano pitches 21..108 (others folded by octaves).

POP909 songs have three tracks: MELODY (the vocal line), BRIDGE (secondary melodies) and PIANO
(the accompaniment); all three are read, the whole arrangement a pianist would play. The model
is the jazz style's (:func:`partimento.training.styles.jazz.build`); MechanicalBach's flags map to
``TrainConfig`` keys: ``--seq-len``, ``--batch-size``, ``--epochs``, ``--loss``,
``--optimizer``; its weights path and TensorBoard folder are the run folder's
``best.weights.h5``/``checkpoints/`` and ``tensorboard/``.
"""

from __future__ import annotations

from partimento.training.config import TrainConfig
from partimento.training.data import midi_folder
from partimento.training.data.midi_folder import Piece
from partimento.training.styles import Prepared
from partimento.training.styles.jazz import (
    KIND,
    MODEL_TYPES,
    build,
    data_folder,
    evaluate,
    parity,
    prepare_pieces,
    tensors,
)

__all__ = [
    "KIND",
    "MODEL_TYPES",
    "build",
    "evaluate",
    "load_pieces",
    "parity",
    "prepare",
    "tensors",
]


def load_pieces(cfg: TrainConfig) -> tuple[list[Piece], str]:
    folder = data_folder(cfg, "pop909")
    pieces = midi_folder.cached(
        cfg, "midi", folder, lambda: midi_folder.midi_pieces(folder, cfg.limit)
    )
    name = "POP909 piano arrangements" if folder.name == "pop909" else f"MIDI below {folder.name}/"
    return pieces, f"{name} (MELODY, BRIDGE and PIANO tracks merged, drums skipped)"


def prepare(cfg: TrainConfig) -> Prepared:
    pieces, corpus = load_pieces(cfg)
    return prepare_pieces(cfg, pieces, corpus, cfg.data_mode)
