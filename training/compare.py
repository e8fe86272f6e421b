"""``partimento compare --style S --models lstm,transformer,gan``: the model types side by side.

Each model type is trained with the same settings (the style's defaults, then ``--config``,
then the flags: same epochs, steps per epoch, batch size, windows and seed) into
``runs/compare-<style>-<type>``, exported next to it (``export/``, checked against Keras as
every export is) and measured through onnxruntime the way the daemon runs it:

- parameters (the training model's, so a GAN counts its discriminator too) and the size of
  ``model.onnx``;
- training time (wall time of ``fit``, from ``run.json``);
- test NLL per token and accuracy (teacher forcing from the START prefix, as ``partimento
  evaluate`` scores folk), where defined: a GAN has no likelihood;
- generated music: for each of the first ``--eval-tunes`` test tunes the daemon's answering
  code (:func:`partimento.commands.sample.respond`, seeded by the tune's index) hears
  its first ``PROMPT`` sixteenths and answers ``ANSWER`` sixteenths. From those answers:
  ``notes_per_bar`` (0: silent answers); ``pc_distance``, the total variation distance (0
  same, 1 disjoint) between their pitch-class histogram (per sounding sixteenth) and the
  whole test split's;
  ``repetition``, the share of answer bars equal to an earlier bar of the same answer; and
  ``novelty``, the share of the answers' 4-note pitch n-grams that no training tune has.
  The same figures for the test tunes' own continuations are the reference row;
- step latency: p50 of one token step (batch 1) in onnxruntime; for a phrase generator, one
  call that writes its candidate phrases, and that time per sixteenth of phrase.

The table is printed and written as ``compare.csv`` and ``compare.md`` under
``runs/compare-<style>/``. A type whose run folder already holds a finished run is not
trained again (delete the folder to retrain).

Only the sixteenth-grid styles (folk) are wired; a style module must build each type.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from partimento.core.music.encoding import grid_to_notes, sounding_pitches
from partimento.core.players.phrases import pitch_class_histogram
from partimento.progress import bar, wanted
from partimento.training.config import MODEL_TYPES, TrainConfig, resolve

log = logging.getLogger(__name__)

PROMPT = 32  # sixteenths of a test tune the model hears (2 bars)
ANSWER = 64  # sixteenths it answers (4 bars)
NGRAM = 4
COLUMNS = (
    "model",
    "parameters",
    "onnx_mb",
    "train_seconds",
    "test_nll",
    "test_accuracy",
    "notes_per_bar",
    "pc_distance",
    "repetition",
    "novelty",
    "step_ms_p50",
    "note",
)


# --- measures -----------------------------------------------------------------------------------


def notes_per_bar(grids: list[np.ndarray], bar: int = 16) -> float:
    """Notes struck per bar of the grids (0: the answers are silent)."""
    steps = sum(len(g) for g in grids)
    return sum(len(grid_to_notes(g)) for g in grids) * bar / steps if steps else 0.0


def pc_distance(grids: list[np.ndarray], reference: np.ndarray) -> float | str:
    """Total variation distance between the pitch-class histogram of ``grids`` and
    ``reference`` (a histogram summing to 1); "silent" when no grid sounds."""
    hist = sum(
        (pitch_class_histogram(g) * max(1, int((sounding_pitches(g) >= 0).sum())) for g in grids),
        np.zeros(12),
    )
    if not hist.sum():
        return "silent"
    return round(float(0.5 * np.abs(hist / hist.sum() - reference).sum()), 4)


def repetition(grids: list[np.ndarray], bar: int = 16) -> float:
    """Share of bars that equal an earlier bar of the same grid."""
    repeated = total = 0
    for g in grids:
        seen: set[bytes] = set()
        for s in range(0, len(g) - bar + 1, bar):
            key = np.asarray(g[s : s + bar], np.int16).tobytes()
            repeated += key in seen
            total += 1
            seen.add(key)
    return repeated / total if total else 0.0


def pitch_ngrams(grid: np.ndarray, n: int = NGRAM) -> set[tuple[int, ...]]:
    pitches = [note.pitch for note in grid_to_notes(grid)]
    return {tuple(pitches[i : i + n]) for i in range(len(pitches) - n + 1)}


def novelty(grids: list[np.ndarray], known: set[tuple[int, ...]]) -> float:
    """Share of the grids' pitch n-grams not in ``known``."""
    grams = [g for grid in grids for g in pitch_ngrams(grid)]
    return sum(g not in known for g in grams) / len(grams) if grams else 0.0


def percentile_ms(samples: list[float], q: float = 50) -> float:
    return float(np.percentile(np.array(samples) * 1e3, q))


# --- through onnxruntime ------------------------------------------------------------------------


def stream_logits(m, tokens: np.ndarray) -> np.ndarray:
    """Logits after each token, the model fed as the daemon feeds it (state carried; a model
    reading one token per call is fed one at a time)."""
    c = m.contract
    token, logits = c.input("token").name, c.output("logits").name
    state = {i.name: np.zeros((1, int(i.shape[1])), np.float32) for i, _ in c.states}
    chunk = 1 if c.input("token").shape[-1] == 1 else len(tokens)
    rows = []
    for s in range(0, len(tokens), chunk):
        feeds = {token: tokens[None, s : s + chunk].astype(np.int32), **state}
        out = m.run(feeds, [logits, *(o.name for _, o in c.states)])
        state = {i.name: out[o.name] for i, o in c.states}
        rows.append(out[logits][0])
    return np.concatenate(rows)


def test_nll(m, tunes, seq_len: int) -> tuple[float, float]:
    from partimento.core.players.sampling import nll_and_hits
    from partimento.training.styles import folk

    nll = hits = count = 0.0
    for tune in bar(tunes, "scoring test tunes", unit="tune"):
        seq = folk.sequence(tune, m.contract.vocabulary, seq_len)
        logits = stream_logits(m, seq[:-1])[seq_len - 1 :]
        a, b, n = nll_and_hits(logits, seq[seq_len:])
        nll, hits, count = nll + a, hits + b, count + n
    return nll / count, hits / count


def step_latency(m, steps: int = 300) -> tuple[float, str]:
    """p50 ms of one step (or of one phrase call, with a note saying so)."""
    c = m.contract
    if c.encoding.get("type") == "phrase":
        noise = c.input("noise")
        batch = int(c.encoding.get("candidates", 1))
        feeds = {noise.name: np.zeros((batch, int(noise.shape[-1])), np.float32)}
        times = []
        for _ in range(steps // 10 + 5):
            t0 = time.perf_counter()
            m.run(feeds, [c.output("logits").name])
            times.append(time.perf_counter() - t0)
        ms = percentile_ms(times[5:])
        phrase = int(c.encoding["phrase_steps"])
        return ms / phrase, (
            f"one call writes {batch} phrases of {phrase} steps in {ms:.2f} ms; per step shown"
        )
    feeds = {c.input("token").name: np.zeros((1, 1), np.int32)}
    feeds |= {i.name: np.zeros((1, int(i.shape[1])), np.float32) for i, _ in c.states}
    times = []
    for _ in range(steps + 20):
        t0 = time.perf_counter()
        out = m.run(feeds)
        times.append(time.perf_counter() - t0)
        feeds |= {i.name: out[o.name] for i, o in c.states}
    return percentile_ms(times[20:]), ""


def answers(m, tunes, seed: int) -> list[np.ndarray]:
    """Each tune's first ``PROMPT`` sixteenths heard as the call, ``ANSWER`` sixteenths
    answered through the daemon's code path (:func:`partimento.commands.sample.respond`: the
    call's key, the call in the model's state, the candidate that follows it best)."""
    from partimento.commands.sample import respond
    from partimento.core.music.encoding import notes_to_grid

    out = []
    for i, tune in enumerate(bar(tunes, "answering test prompts", unit="tune")):
        notes, _ = respond(m, tune.grid[:PROMPT], ANSWER, temperature=1.0, seed=seed + i)
        out.append(np.asarray(notes_to_grid(notes, ANSWER), np.int16))
    return out


# --- one model type -----------------------------------------------------------------------------


def train_and_export(cfg: TrainConfig, run_dir: Path) -> Path:
    from partimento.training.export import export
    from partimento.training.train import train

    done = run_dir / "run.json"
    if not (done.exists() and json.loads(done.read_text()).get("training_seconds")):
        train(cfg, run_dir)
    export(run_dir, run_dir / "export", name=f"{run_dir.name}")
    return run_dir / "export"


def measure(folder: Path, data: dict, seq_len: int, seed: int) -> dict:
    from partimento.files import model

    m = model.load(folder)
    c = m.contract
    row = {
        "model": c.training["config"]["model"],
        "parameters": c.training.get("parameters"),
        "onnx_mb": round((folder / "model.onnx").stat().st_size / 1e6, 2),
        "train_seconds": c.training.get("seconds"),
    }
    if c.encoding.get("type", "grid") == "grid":
        nll, acc = test_nll(m, data["nll_tunes"], seq_len)
        row |= {"test_nll": round(nll, 4), "test_accuracy": round(acc, 4)}
    else:
        row |= {"test_nll": "–", "test_accuracy": "–"}
    grids = answers(m, data["prompt_tunes"], seed)
    row |= {
        "notes_per_bar": round(notes_per_bar(grids), 2),
        "pc_distance": pc_distance(grids, data["test_histogram"]),
        "repetition": round(repetition(grids), 4),
        "novelty": round(novelty(grids, data["train_ngrams"]), 4),
    }
    ms, note = step_latency(m)
    row |= {"step_ms_p50": round(ms, 4), "note": note}
    return row


def reference_data(cfg: TrainConfig, eval_tunes: int) -> dict:
    """Test tunes to score and prompt, the test histogram, the training n-grams, and the
    figures of the test tunes' own continuations."""
    from partimento.training.data import folk as corpus

    splits = corpus.load_corpus(cfg)
    test = splits["test"]
    prompt = [t for t in test if len(t.grid) >= PROMPT + ANSWER][:eval_tunes]
    hist = sum((pitch_class_histogram(t.grid) * len(t.grid) for t in test), np.zeros(12))
    known = set().union(*(pitch_ngrams(t.grid) for t in splits["train"]))
    own = [t.grid[PROMPT : PROMPT + ANSWER] for t in prompt]
    reference = {
        "model": "test tunes (reference)",
        "notes_per_bar": round(notes_per_bar(own), 2),
        "repetition": round(repetition(own), 4),
        "novelty": round(novelty(own, known), 4),
        "note": f"their own next {ANSWER} sixteenths",
    }
    reference["pc_distance"] = pc_distance(own, hist / hist.sum())
    return {
        "nll_tunes": test[:eval_tunes],
        "prompt_tunes": prompt,
        "test_histogram": hist / hist.sum(),
        "train_ngrams": known,
        "reference": reference,
    }


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(str(r.get(k, "–")) if r.get(k) not in (None, "") else "–" for k in COLUMNS)
            + " |"
        )
    return "\n".join(lines) + "\n"


def compare(
    style: str,
    kinds: list[str],
    *,
    config: Path | None,
    overrides: dict,
    runs: Path,
    eval_tunes: int,
) -> list[dict]:
    import keras

    if style != "folk":
        raise ValueError(f"compare: style {style!r} is not wired yet (folk is)")
    unknown = [k for k in kinds if k not in MODEL_TYPES]
    if unknown:
        raise ValueError(
            f"compare: unknown model type {unknown[0]!r} (known: {', '.join(MODEL_TYPES)})"
        )
    base = resolve(style, config, {k: v for k, v in overrides.items() if k != "model"})
    data = reference_data(base, eval_tunes)
    rows = [data["reference"]]
    for n, kind in enumerate(kinds, start=1):
        cfg = resolve(style, config, {**overrides, "model": kind})
        if wanted(cfg.progress):
            print(f"compare: model type {n} of {len(kinds)}: {kind}", file=sys.stderr, flush=True)
        keras.backend.clear_session()
        log.info("compare: %s", kind)
        folder = train_and_export(cfg, runs / f"compare-{style}-{kind}")
        rows.append(measure(folder, data, cfg.seq_len, cfg.seed))
    out = runs / f"compare-{style}"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "compare.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in COLUMNS} for r in rows)
    (out / "compare.md").write_text(markdown(rows))
    return rows
