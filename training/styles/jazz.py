"""Style ``jazz``: the jazz LSTM project, notes and chords as tokens on an eighth-note grid.

Data: the Weimar Jazz Database solos (``<data>/wjazzd``, the default) or, with ``--data-dir``,
any folder of MIDI files (or of WJazzD CSVs). Each piece becomes numeric event tokens
(:mod:`partimento.core.players.events`: ``"60"`` a note, ``"1.5.6"`` a chord, ``"_"`` hold, ``"r"``
rest, one per eighth), framed by START (``"/"``) before and after. The vocabulary is every special
token, every single pitch of the training pieces and the most frequent chords (heard at least
:data:`MIN_COUNT` times) up to :data:`MAX_TOKENS`; a rarer chord is read as its top note
(no ``<unk>``). Training pieces are moved into all twelve keys (``transpose``, on by
default; :data:`TRANSPOSITIONS`), validation and test pieces keep their own, so the model
plays in any key (``shift`` 0 live).

Training is many-to-many (the jazz project's batches of 16 windows of 64 steps, a checkpoint
every 10 epochs): the model reads ``x[t]`` and predicts ``x[t + 1]`` at every step. The model
is :func:`build`'s embedding, stacked LSTM (explicit h/c state for the step model), optional
hidden dense layers and a dense output; ``piano`` uses the same builder. ``--model
transformer`` builds :mod:`partimento.training.styles.models`' windowed transformer instead (its
step model reads one token per call; ``seq_len`` must be a multiple of ``window_stride``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from partimento.core.music.encoding import HOLD, REST, START, Note
from partimento.core.players import events
from partimento.core.players.contract import Tensor
from partimento.progress import bar
from partimento.training.config import MODELS_BY_STYLE, TrainConfig
from partimento.training.data import midi_folder, wjazzd
from partimento.training.data.midi_folder import Piece
from partimento.training.styles import Prepared, Split
from partimento.training.styles.bach_data import windows
from partimento.training.styles.recurrent import state_tensors, token_lstm

KIND = "continuation"
INPUT = "token"
OUTPUT = "next"
MODEL_TYPES = MODELS_BY_STYLE["jazz"]  # --model: training/styles/models.py builds them
MAX_TOKENS = 256
MIN_COUNT = 5  # a chord heard fewer times in the training pieces is read as its top note
TRANSPOSITIONS = tuple(range(-5, 7))
"""Semitones every training piece is moved by (``transpose``, on by default): all twelve
keys. Validation and test pieces keep their own keys."""
TRANSPOSITION = (
    "training pieces in all twelve keys (each moved by -5..+6 semitones, notes "
    "leaving MIDI 0-127 dropped); validation and test pieces in their own keys; "
    "the model plays in every key"
)
NO_TRANSPOSITION = "none: pieces keep their own keys, so the model plays in every key"


# --- data ----------------------------------------------------------------------------------------


def data_folder(cfg: TrainConfig, default: str) -> Path:
    shared = midi_folder.shared_data() / default
    folder = Path(cfg.data_dir).expanduser() if cfg.data_dir else shared
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data folder {folder} does not exist (set --data-dir or PARTIMENTO_DATA)"
        )
    return folder


def load_pieces(cfg: TrainConfig) -> tuple[list[Piece], str]:
    """The pieces and a description of where they come from."""
    folder = data_folder(cfg, "wjazzd")
    if wjazzd.is_wjazzd(folder):
        pieces = midi_folder.cached(cfg, "wjazzd", folder, lambda: wjazzd.solos(folder, cfg.limit))
        return pieces, (
            f"Weimar Jazz Database 1.2 solos ({folder.name}: CSV of pitch, onset, "
            "duration in seconds, to quarters by the solo's average tempo)"
        )
    pieces = midi_folder.cached(
        cfg, "midi", folder, lambda: midi_folder.midi_pieces(folder, cfg.limit)
    )
    return pieces, f"every MIDI file below {folder.name}/ (drums skipped, all tracks merged)"


def transposed(pieces: list[Piece], enabled: bool) -> list[Piece]:
    """Each piece in every key of :data:`TRANSPOSITIONS` (the pieces as they are when not
    ``enabled``); notes moved outside MIDI 0-127 are dropped."""
    if not enabled:
        return pieces
    out = []
    for piece in pieces:
        for k in TRANSPOSITIONS:
            notes = piece.notes.copy()
            notes[:, 0] += k
            notes = notes[(notes[:, 0] >= 0) & (notes[:, 0] <= 127)]
            if len(notes):
                out.append(Piece(f"{piece.name}{k:+d}" if k else piece.name, notes))
    return out


def notes_of(piece: Piece) -> list[Note]:
    return [Note(int(p), int(s), int(n)) for p, s, n, _ in piece.notes]


def numeric_vocabulary(
    pieces: list[Piece],
    step: int = events.NUMERIC_STEP,
    cap: int = MAX_TOKENS,
    min_count: int = MIN_COUNT,
) -> list[str]:
    """START, REST, HOLD, every single pitch heard, then chords by frequency up to ``cap``."""
    counts = Counter(t for p in pieces for t in events.numeric_tokens(notes_of(p), step))
    singles = sorted((t for t in counts if events.is_pitch(t)), key=int)
    chords = [t for t, n in counts.most_common() if events.is_chord(t) and n >= min_count]
    base = [START, REST, HOLD, *singles]
    return base + chords[: max(0, cap - len(base))]


def fallback(known: set[str], singles: list[int]):
    """The token of a set of starting pitches: its chord if known, else its top note (folded
    by octaves into the pitches the vocabulary has)."""
    low, high = min(singles), max(singles)

    def name(pitches: frozenset[int]) -> str:
        tok = events.chord_token(pitches)
        if tok in known:
            return tok
        p = max(pitches)
        while p > high:
            p -= 12
        while p < low:
            p += 12
        return str(p) if str(p) in known else REST

    return name


def piece_tokens(piece: Piece, encoding: dict) -> list[str]:
    """A piece's tokens as the model reads them (without the START frame)."""
    tokens = encoding["tokens"]
    if encoding["mode"] == events.EVENT:
        low, high = encoding["pitch_range"]
        played = [
            events.Played(_fold(int(p), low, high), int(s), int(n), int(v))
            for p, s, n, v in piece.notes
        ]
        return events.event_tokens(played)
    singles = [int(t) for t in tokens if events.is_pitch(t)]
    return events.numeric_tokens(notes_of(piece), encoding["step"], fallback(set(tokens), singles))


def _fold(p: int, low: int, high: int) -> int:
    while p > high:
        p -= 12
    while p < low:
        p += 12
    return p


def sequence(piece: Piece, encoding: dict) -> np.ndarray:
    """START, the piece's tokens, START: what the model is trained and scored on."""
    index = {t: i for i, t in enumerate(encoding["tokens"])}
    toks = [START, *piece_tokens(piece, encoding), START]
    return np.array([index[t] for t in toks], np.int32)


def arrays(pieces: list[Piece], encoding: dict, seq_len: int, stride: int) -> Split:
    """Windows of ``seq_len`` inputs and the tokens one step later; short pieces padded with
    START at weight 0."""
    xs, ys, ws = [], [], []
    for piece in pieces:
        seq = sequence(piece, encoding)
        if len(seq) < seq_len + 1:
            pad = seq_len + 1 - len(seq)
            weight = np.concatenate([np.ones(len(seq) - 1), np.zeros(pad)]).astype(np.float32)
            seq = np.concatenate([seq, np.full(pad, seq[-1], np.int32)])
        else:
            weight = np.ones(len(seq) - 1, np.float32)
        for s in windows(len(seq), seq_len + 1, stride):
            xs.append(seq[s : s + seq_len])
            ys.append(seq[s + 1 : s + seq_len + 1])
            ws.append(weight[s : s + seq_len])
    return Split({INPUT: np.stack(xs)}, {OUTPUT: np.stack(ys)}, {OUTPUT: np.stack(ws)})


def encoding_of(
    tokens: list[str],
    mode: str,
    step: int,
    seq_len: int,
    transposition: str = TRANSPOSITION,
    **extra,
) -> dict:
    """What goes into ``model.json`` about the tokens the model reads and writes."""
    grid = [t for t in tokens if t in (START, REST, HOLD) or events.is_pitch(t)]
    return {
        "type": "events",
        "mode": mode,
        "step": step,
        "steps_per_quarter": 4,
        "tokens": tokens,
        "vocabulary": grid,
        "vocabulary_meaning": "the grid symbols among the tokens (partimento.core.music.encoding "
        "cannot hold chords or events); the model scores `tokens`",
        "transposition": transposition,
        "start": {
            "symbol": START,
            "prime": "feed one START before a piece",
            "end": "the model predicts START after a piece's last token",
        },
        "seq_len": seq_len,
        **extra,
    }


def prepare_pieces(cfg: TrainConfig, pieces: list[Piece], corpus: str, mode: str) -> Prepared:
    splits = midi_folder.split(pieces)
    counts = {k: len(v) for k, v in splits.items()}
    if not splits["train"]:
        raise ValueError("no training pieces were read")
    for name in ("valid", "test"):  # a tiny run still needs something to validate on
        if not splits[name]:
            splits[name] = splits["train"][-1:]
    splits["train"] = transposed(splits["train"], cfg.transpose)
    rule = TRANSPOSITION if cfg.transpose else NO_TRANSPOSITION
    if mode == events.EVENT:
        low, high = 21, 108
        encoding = encoding_of(
            events.event_vocabulary(low, high),
            mode,
            1,
            cfg.seq_len,
            rule,
            pitch_range=[low, high],
            velocity_bins=events.VELOCITY_BINS,
        )
    else:
        # in twelve keys a chord is heard twelve times as often: the same threshold per key
        tokens = numeric_vocabulary(
            splits["train"],
            cfg.grid_step,
            min_count=MIN_COUNT * (len(TRANSPOSITIONS) if cfg.transpose else 1),
        )
        encoding = encoding_of(tokens, mode, cfg.grid_step, cfg.seq_len, rule)
    split_arrays = {
        name: arrays(
            ps, encoding, cfg.seq_len, cfg.window_stride if name == "train" else cfg.seq_len
        )
        for name, ps in splits.items()
    }
    data = {
        "corpus": corpus,
        "mode": mode,
        "split": "by piece: sha1(file name) mod 10 = 0 test, 1 valid, else train",
        "pieces": counts,
        "test_pieces": counts["test"],
    }
    return Prepared(encoding=encoding, splits=split_arrays, data=data)


def prepare(cfg: TrainConfig) -> Prepared:
    pieces, corpus = load_pieces(cfg)
    return prepare_pieces(cfg, pieces, corpus, events.NUMERIC)


# --- model ---------------------------------------------------------------------------------------


def build(cfg: TrainConfig, encoding: dict):
    """(training model, step model): the same layers, the step model with explicit state."""
    V = len(encoding["tokens"])
    if cfg.model != "lstm":  # other model types: training/styles/models.py
        if cfg.model not in MODEL_TYPES:
            raise ValueError(
                f"style {cfg.style} builds models {', '.join(MODEL_TYPES)}, not {cfg.model!r}"
            )
        from partimento.training.styles.models import build_sequence_model

        return build_sequence_model(cfg, V, name=cfg.style, token=INPUT, output=OUTPUT)[:2]
    from partimento.training.styles.models import hidden_dense

    return token_lstm(cfg, V, token=INPUT, output=OUTPUT, name=cfg.style, hidden=hidden_dense(cfg))


def tensors(cfg: TrainConfig, encoding: dict) -> tuple[list[Tensor], list[Tensor]]:
    seq = ("batch", "time")
    V = len(encoding["tokens"])
    if cfg.model != "lstm":
        from partimento.training.styles.models import sequence_tensors

        return sequence_tensors(cfg, V, token=INPUT, output=OUTPUT)
    state_in, state_out = state_tensors(cfg)
    return (
        [Tensor(INPUT, seq, "int32", "token"), *state_in],
        [Tensor(OUTPUT, (*seq, V), "float32", "logits"), *state_out],
    )


def parity(cfg: TrainConfig, contract, train_model, session) -> float:
    """The export check for each model type: an LSTM stepped against the sequence model, a
    transformer fed one token at a time against the training model on the same window."""
    from partimento.training import export
    from partimento.training.styles import models

    if cfg.model == "transformer":
        return models.window_parity(cfg, contract, train_model, session)
    return export.step_parity(contract, train_model, session)


# --- evaluation ----------------------------------------------------------------------------------


def evaluate(m, cfg: TrainConfig, *, limit: int = 0, seed: int = 0) -> dict:
    """NLL per token and accuracy on the test pieces (through the ONNX model, from START as
    in training), next to 3- and 6-gram baselines scored on the same tokens."""
    from partimento.core.players.sampling import nll_and_hits
    from partimento.training import styles
    from partimento.training.baselines import NGram

    enc = m.contract.encoding
    pieces, _ = styles.get(cfg.style).load_pieces(cfg)
    splits = midi_folder.split(pieces)
    test = splits["test"][: limit or None]
    token = m.contract.input("token").name
    logits_name = m.contract.output("logits").name
    nll = correct = count = 0.0
    for piece in bar(test, "scoring test pieces", unit="piece"):
        seq = sequence(piece, enc)
        feeds = {token: seq[None, :-1]}
        feeds |= {t.name: np.zeros((1, int(t.shape[1])), np.float32) for t, _ in m.contract.states}
        if m.contract.input("token").shape[-1] == 1:  # a transformer: one token per call
            from partimento.training.compare import stream_logits

            logits = stream_logits(m, seq[:-1])
        else:
            logits = m.run(feeds, [logits_name])[logits_name][0]
        n_, h_, c_ = nll_and_hits(logits, seq[1:])
        nll, correct, count = nll + n_, correct + h_, count + c_
    pad = enc["tokens"].index(START)
    baselines = {}
    for order in (3, 6):
        ng = NGram(order, len(enc["tokens"]), pad=pad).fit(
            sequence(p, enc)[1:] for p in splits["train"]
        )
        baselines[f"{order}-gram"] = {
            k: round(float(v), 4)
            for k, v in ng.evaluate(sequence(p, enc)[1:] for p in test).items()
        }
    if cfg.transpose:  # the same n-gram fitted on the training pieces in all twelve keys too
        ng = NGram(3, len(enc["tokens"]), pad=pad).fit(
            sequence(p, enc)[1:] for p in transposed(splits["train"], True)
        )
        baselines["3-gram, train in 12 keys"] = {
            k: round(float(v), 4)
            for k, v in ng.evaluate(sequence(p, enc)[1:] for p in test).items()
        }
    return {
        "split": "test",
        "pieces": len(test),
        "tokens": int(count),
        "nll_per_token": round(float(nll / count), 4),
        "accuracy": round(float(correct / count), 4),
        "baseline_ngram": baselines,
    }
