"""Style ``folk``: melody continuation, one sixteenth-note token at a time.

As in Velardo's melody generator, every tune (in C major or A minor) is preceded by ``seq_len``
START tokens ("/"), and one START after its last step marks its end. The model reads token
``x[t]`` and predicts ``x[t + 1]`` at every step (many-to-many); targets inside the START prefix
weigh nothing, so the loss measures the music and the tune endings. Stacked LSTMs carry the
state, so the step model answers one token at a time at constant cost.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from partimento.core.music.encoding import FOLK_DURATIONS, START, Vocabulary
from partimento.core.players.contract import Tensor
from partimento.progress import bar
from partimento.training.config import TrainConfig
from partimento.training.data import folk as corpus
from partimento.training.data.folk import Tune
from partimento.training.styles import Prepared, Split
from partimento.training.styles.bach_data import windows
from partimento.training.styles.recurrent import state_tensors, token_lstm

KIND = "continuation"
INPUT = "token"
OUTPUT = "next"
TRANSPOSITION = (
    "to C major / A minor: tonic from the file's key (else music21's key "
    "analysis), minor when the minor third above the tonic sounds longer than the "
    "major third; moved the nearer way (at most 6 semitones)"
)


def prepare(cfg: TrainConfig) -> Prepared:
    splits = corpus.load_corpus(cfg)
    if not splits["train"]:
        raise ValueError("no training tunes were read")
    counts = {k: len(v) for k, v in splits.items()}
    for name in ("valid", "test"):  # a tiny run still needs something to validate on
        if not splits[name]:
            splits[name] = splits["train"][-1:]
    vocab = vocabulary([t for s in splits.values() for t in s])
    encoding = encoding_of(vocab, cfg.seq_len)
    if cfg.model == "gan":  # a phrase generator: the daemon plays it by phrases
        from partimento.training.styles import gan

        encoding = {**encoding, **gan.encoding(cfg)}
    arrays = {
        name: _arrays(
            bar(tunes, f"preparing {name} windows", unit="tune", level=cfg.progress),
            vocab,
            cfg.seq_len,
            cfg.window_stride if name == "train" else cfg.seq_len,
        )
        for name, tunes in splits.items()
    }
    return Prepared(encoding=encoding, splits=arrays, data=describe(counts))


def vocabulary(tunes: list[Tune]) -> Vocabulary:
    """REST, HOLD, START and every pitch from the lowest to the highest in the corpus."""
    pitches = np.concatenate([t.grid[t.grid >= 0] for t in tunes])
    return Vocabulary.for_pitches(int(pitches.min()), int(pitches.max()), start=True)


def encoding_of(vocab: Vocabulary, seq_len: int) -> dict:
    """What goes into ``model.json`` about the tokens the model reads and writes."""
    return {
        "grid": "sixteenth",
        "steps_per_quarter": 4,
        "vocabulary": list(vocab.symbols),
        "durations": list(FOLK_DURATIONS),
        "durations_meaning": "note and rest lengths in quarters a training tune may have",
        "transposition": TRANSPOSITION,
        "start": {
            "symbol": START,
            "prime": f"feed {seq_len} START tokens before the first note of a melody",
            "end": "the model predicts START after a tune's last step",
        },
        "seq_len": seq_len,
    }


def describe(counts: dict[str, int]) -> dict:
    """The corpus and split, for the contract."""
    return {
        "corpus": "music21 bundled Essen folk songs (ABC), optionally O'Neill, Ryan and "
        "Aird ABC books and a folder of **kern files; top line, ties joined, "
        "chords read as their highest note, deduplicated",
        "filter": f"every note and rest lasts one of {list(FOLK_DURATIONS)} quarters",
        "split": "by tune: sha1(interval sequence) mod 10 = 0 test, 1 valid, else train",
        "tunes": counts,
        "test_tunes": counts["test"],
    }


def tune_tokens(tune: Tune, vocab: Vocabulary) -> np.ndarray:
    """A tune's tokens followed by the START that ends it (no prefix)."""
    return np.concatenate([vocab.encode(tune.grid), [vocab.index(START)]]).astype(np.int32)


def sequence(tune: Tune, vocab: Vocabulary, seq_len: int) -> np.ndarray:
    """``seq_len`` START tokens, the tune, one START: what the model is trained on."""
    prefix = np.full(seq_len, vocab.index(START), np.int32)
    return np.concatenate([prefix, tune_tokens(tune, vocab)])


def _arrays(tunes: Iterable[Tune], vocab: Vocabulary, seq_len: int, stride: int) -> Split:
    """Windows of ``seq_len`` inputs and the tokens one step later, per tune."""
    xs, ys, ws = [], [], []
    for tune in tunes:
        seq = sequence(tune, vocab, seq_len)
        weight = np.ones(len(seq), np.float32)
        weight[:seq_len] = 0.0  # targets inside the START prefix
        for s in windows(len(seq), seq_len + 1, stride):
            xs.append(seq[s : s + seq_len])
            ys.append(seq[s + 1 : s + seq_len + 1])
            ws.append(weight[s + 1 : s + seq_len + 1])
    return Split({INPUT: np.stack(xs)}, {OUTPUT: np.stack(ys)}, {OUTPUT: np.stack(ws)})


def build(cfg: TrainConfig, encoding: dict):
    """(training model, step model): the same layers, the step model with explicit state."""
    V = len(encoding["vocabulary"])
    if cfg.model == "gan":  # other model types: training/styles/models.py, gan.py
        from partimento.training.styles import gan

        return gan.build(cfg, V)
    if cfg.model != "lstm" or cfg.hidden_dense:
        from partimento.training.styles.models import build_sequence_model

        return build_sequence_model(cfg, V, name="folk", token=INPUT, output=OUTPUT)[:2]
    return token_lstm(cfg, V, token=INPUT, output=OUTPUT, name="folk")


def tensors(cfg: TrainConfig, encoding: dict) -> tuple[list[Tensor], list[Tensor]]:
    seq = ("batch", "time")
    V = len(encoding["vocabulary"])
    if cfg.model == "gan":
        from partimento.training.styles import gan

        return gan.tensors(cfg, V)
    if cfg.model != "lstm" or cfg.hidden_dense:
        from partimento.training.styles.models import sequence_tensors

        return sequence_tensors(cfg, V, token=INPUT, output=OUTPUT)
    ins = [Tensor(INPUT, seq, "int32", "token")]
    outs = [Tensor(OUTPUT, (*seq, V), "float32", "logits")]
    state_in, state_out = state_tensors(cfg)
    return ins + state_in, outs + state_out


def parity(cfg: TrainConfig, contract, train_model, session) -> float:
    """The export check for each model type (LSTM: stepped against the sequence model)."""
    from partimento.training import export
    from partimento.training.styles import gan, models

    if cfg.model == "gan":
        return gan.parity(cfg, contract, train_model, session)
    if cfg.model == "transformer":
        return models.window_parity(cfg, contract, train_model, session)
    return export.step_parity(contract, train_model, session)


def evaluate(m, cfg: TrainConfig, *, limit: int = 0, seed: int = 0) -> dict:
    """NLL per token and accuracy on the test tunes (through the ONNX model), next to n-grams.

    Each tune is read from the START prefix as in training; scored are its steps and the START
    that ends it, for the model and the n-grams alike.
    """
    from partimento.core.players.sampling import nll_and_hits
    from partimento.training.baselines import NGram

    splits = corpus.load_corpus(cfg)
    vocab = m.contract.vocabulary
    test = splits["test"][: limit or None]
    if cfg.model == "gan":
        return {
            "split": "test",
            "pieces": len(test),
            "note": "a phrase generator has no likelihood: see partimento compare",
        }
    nll = correct = count = 0.0
    token = m.contract.input("token").name
    logits_name = m.contract.output("logits").name
    for tune in bar(test, "scoring test tunes", unit="tune"):
        seq = sequence(tune, vocab, cfg.seq_len)
        feeds = {token: seq[None, :-1]}
        feeds |= {t.name: np.zeros((1, int(t.shape[1])), np.float32) for t, _ in m.contract.states}
        if cfg.model == "transformer":  # one token per call
            from partimento.training.compare import stream_logits

            logits = stream_logits(m, seq[:-1])[cfg.seq_len - 1 :]
        else:
            logits = m.run(feeds, [logits_name])[logits_name][0, cfg.seq_len - 1 :]
        tune_nll, hits, n = nll_and_hits(logits, seq[cfg.seq_len :])
        nll += tune_nll
        correct += hits
        count += n
    train_seqs = [tune_tokens(t, vocab) for t in splits["train"]]
    test_seqs = [tune_tokens(t, vocab) for t in test]
    baselines = {}
    for order in (3, 6):
        ng = NGram(order, len(vocab), pad=vocab.index(START)).fit(train_seqs)
        baselines[f"{order}-gram"] = {
            k: round(float(v), 4) for k, v in ng.evaluate(test_seqs).items()
        }
    return {
        "split": "test",
        "pieces": len(test),
        "tokens": int(count),
        "nll_per_token": round(float(nll / count), 4),
        "accuracy": round(float(correct / count), 4),
        "baseline_ngram": baselines,
    }
