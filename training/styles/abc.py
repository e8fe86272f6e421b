"""Style ``abc``: the MIT lab's character-level model of ABC tunes, sampled as text and played.

The tunes (:mod:`partimento.training.data.abc_text`) are joined, per split, into one long string
(each tune ends with a blank line) and encoded character by character over the fixed alphabet
:data:`partimento.core.players.abc.CHARACTERS`. The model reads ``seq_len`` characters and predicts
each next one (many-to-many): Embedding -> LSTM (``cfg.layers`` x ``cfg.units``, explicit h/c state
in the step model) -> Dense over the characters. Windows do not overlap (stride ``seq_len``);
every target counts.

Contract: ``encoding["type"]`` is ``"abc"`` (played by
:class:`partimento.core.players.abc.AbcContinuer`),
``encoding["characters"]`` is the alphabet, token i being its i-th character. The contract's
``vocabulary`` holds grid symbols only (pitches, rest, hold, start), which cannot name
characters, so for this style it lists the token indices ``"0" .. "95"``: valid, and as long as
the logits, which is what the loader checks; nothing reads them as pitches (the type says so).

Sampling (for ``partimento sample abc``): :func:`sample_text`, and :func:`text_to_midi` and
:func:`abc_problem` re-exported from :mod:`partimento.files.score`.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from partimento.core.players import abc as abc_core
from partimento.core.players.contract import Tensor
from partimento.files.score import abc_problem
from partimento.files.score import text_to_midi as text_to_midi
from partimento.progress import bar
from partimento.training.config import TrainConfig
from partimento.training.data import abc_text
from partimento.training.styles import Prepared, Split
from partimento.training.styles.recurrent import state_tensors, token_lstm

log = logging.getLogger(__name__)

KIND = "continuation"
INPUT = "token"
OUTPUT = "next"


def prepare(cfg: TrainConfig) -> Prepared:
    data = abc_text.load(cfg)
    splits = data["splits"]
    if not splits["train"]:
        raise ValueError("no training tunes were read")
    for name in ("valid", "test"):  # a tiny run still needs something to validate on
        if not splits[name]:
            splits[name] = splits["train"][-1:]
    arrays = {
        name: windows(abc_core.encode_text("".join(tunes)), cfg.seq_len)
        for name, tunes in splits.items()
    }
    return Prepared(
        encoding=encoding_of(cfg.seq_len),
        splits=arrays,
        data=describe(data, {k: len(v) for k, v in splits.items()}),
    )


def encoding_of(seq_len: int) -> dict:
    """What goes into ``model.json`` about the characters the model reads and writes."""
    chars = abc_core.CHARACTERS
    return {
        "type": "abc",
        "characters": chars,
        "vocabulary": [str(i) for i in range(len(chars))],
        "vocabulary_meaning": "token indices; token i is characters[i] (grid symbols cannot "
        "name characters)",
        "header": abc_core.HEADER,
        "unit": abc_core.UNIT,
        "steps_per_quarter": 4,
        "transposition": "none in training (tunes in every key); live, the player is moved "
        "into C major / A minor by the daemon's shift and written under "
        "K:C, and the answer is moved back",
        "seq_len": seq_len,
    }


def describe(data: dict, counts: dict[str, int]) -> dict:
    return {
        "corpus": "music21 bundled ABC books (O'Neill 1850, Ryan's Mammoth, Aird's Airs) "
        "and the cleaned Nottingham Music Database (GPL-3.0), split into tunes "
        "at X: lines, normalised (fields X T M L K P Q R kept, X:1, comments "
        "dropped, printable ASCII), deduplicated by body",
        "sources": data["sources"],
        "duplicates": data["duplicates"],
        "split": "by tune: sha1(tune body) mod 10 = 0 test, 1 valid, else train",
        "tunes": counts,
        "test_tunes": counts["test"],
    }


def windows(ids: np.ndarray, seq_len: int) -> Split:
    """Non-overlapping windows of ``seq_len`` characters and the characters one later."""
    n = (len(ids) - 1) // seq_len
    if n < 1:
        raise ValueError(f"{len(ids)} characters are fewer than one window of {seq_len}")
    x = ids[: n * seq_len].reshape(n, seq_len)
    y = ids[1 : n * seq_len + 1].reshape(n, seq_len)
    return Split({INPUT: x}, {OUTPUT: y}, {OUTPUT: np.ones(y.shape, np.float32)})


def build(cfg: TrainConfig, encoding: dict):
    """(training model, step model): the same layers, the step model with explicit state."""
    V = len(encoding["characters"])
    return token_lstm(cfg, V, token=INPUT, output=OUTPUT, name="abc", embedding="char_embedding")


def tensors(cfg: TrainConfig, encoding: dict) -> tuple[list[Tensor], list[Tensor]]:
    seq = ("batch", "time")
    V = len(encoding["characters"])
    ins = [Tensor(INPUT, seq, "int32", "token")]
    outs = [Tensor(OUTPUT, (*seq, V), "float32", "logits")]
    state_in, state_out = state_tensors(cfg)
    return ins + state_in, outs + state_out


# --- sampling (for `partimento sample abc --seed-text ... --chars N`) ---------------------------


def _model(model_or_dir):
    """A loaded :class:`partimento.files.model.Model` (a folder, a shipped name, or a Model
    already)."""
    from partimento.files import model as models

    return model_or_dir if hasattr(model_or_dir, "run") else models.load(model_or_dir)


TEXT_TEMPERATURE = abc_core.TEXT_TEMPERATURE


def sample_text(
    model_or_dir,
    seed_text: str = "X:1\n",
    chars: int = 600,
    temperature: float = TEXT_TEMPERATURE,
    seed: int = 0,
) -> str:
    """:func:`partimento.core.players.abc.sample_text` on a model folder, name or Model."""
    return abc_core.sample_text(_model(model_or_dir), seed_text, chars, temperature, seed)


# --- evaluation -------------------------------------------------------------------------------


def tune_ids(tune: str) -> np.ndarray:
    return abc_core.encode_text(tune)


def evaluate(m, cfg: TrainConfig, *, limit: int = 0, seed: int = 0, samples: int = 50) -> dict:
    """NLL per character and accuracy on the test tunes (ONNX, each tune from a cold state after
    the newline that precedes it in training), next to character n-grams fitted on the train
    split and scored on the same characters; and how many of ``samples`` tunes sampled from
    ``X:1`` (600 characters, seeds ``seed`` on, at :data:`TEXT_TEMPERATURE` and at 1) parse
    with music21."""
    from partimento.core.players.sampling import nll_and_hits
    from partimento.training.baselines import NGram

    data = abc_text.load(dataclasses.replace(cfg, limit=0))
    test = data["splits"]["test"][: limit or None]
    token, logits_name = m.contract.input("token").name, m.contract.output("logits").name
    newline = int(abc_core.encode_text("\n")[0])
    nll = correct = count = 0.0
    for tune in bar(test, "scoring test tunes", unit="tune"):
        ids = tune_ids(tune)
        feeds = {token: np.concatenate([[newline], ids[:-1]]).astype(np.int32)[None]}
        feeds |= {t.name: np.zeros((1, int(t.shape[1])), np.float32) for t, _ in m.contract.states}
        logits = m.run(feeds, [logits_name])[logits_name][0]
        tune_nll, hits, n = nll_and_hits(logits, ids)
        nll, correct, count = nll + tune_nll, correct + hits, count + n
    V = len(abc_core.CHARACTERS)
    train = [tune_ids(t) for t in data["splits"]["train"]]
    test_ids = [tune_ids(t) for t in test]
    baselines = {}
    for order in (3, 6):
        ng = NGram(order, V, pad=newline).fit(train)
        baselines[f"{order}-gram"] = {
            k: round(float(v), 4) for k, v in ng.evaluate(test_ids).items()
        }
    parsed = {
        t: sum(
            abc_problem(sample_text(m, "X:1\n", 600, t, seed + i)) is None
            for i in bar(range(samples), "sampling tunes to parse", unit="tune")
        )
        for t in (TEXT_TEMPERATURE, 1.0)
    }
    return {
        "split": "test",
        "pieces": len(test),
        "tokens": int(count),
        "token": "character",
        "nll_per_token": round(float(nll / count), 4),
        "bits_per_character": round(float(nll / count / np.log(2)), 4),
        "accuracy": round(float(correct / count), 4),
        "baseline_ngram": baselines,
        "samples_parsing_with_music21": [
            {"samples": samples, "parsed": int(n), "chars": 600, "temperature": t}
            for t, n in parsed.items()
        ],
    }
