"""Per-step cost of the shipped models in onnxruntime, as the daemon runs them.

    python bench/step_latency.py [--steps 2000]

Prints, per model, the time of one raw model step (batch 1) and of one full live harmonizer
step (bass, tenor and alto for 8 candidate chords plus the voice-leading choice), p50 / p99 /
max in milliseconds. A transformer (``--model transformer``: one token and its window per
step) is timed as a raw step; a phrase generator (``--model gan``) as one call writing the
candidate phrases the daemon draws per answer. Besides the shipped models it times the
folk transformer and GAN that ``python -m partimento.training.compare`` exports under ``runs/`` when
they are there (``--models`` names others). Figures are recorded in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from partimento.core.players import harmonizer
from partimento.files import model


def percentiles(samples: list[float]) -> str:
    a = np.array(samples) * 1e3
    return (
        f"p50 {np.percentile(a, 50):.3f} ms  p99 {np.percentile(a, 99):.3f} ms  "
        f"max {a.max():.3f} ms"
    )


COMPARED = ("runs/compare-folk-transformer/export", "runs/compare-folk-gan/export")


def phrase_call(m: model.Model, steps: int) -> list[float]:
    """One generator call: the daemon's candidate phrases from noise, in one batch."""
    c = m.contract
    noise = c.input("noise")
    batch = int(c.encoding.get("candidates", 1))
    feeds = {noise.name: np.zeros((batch, int(noise.shape[-1])), np.float32)}
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        m.run(feeds)
        times.append(time.perf_counter() - t0)
    return times


def raw_step(m: model.Model, steps: int) -> list[float]:
    c = m.contract
    if c.encoding.get("type") == "phrase":
        return phrase_call(m, steps)
    feeds = {
        t.name: np.zeros((1, 1), np.int32)
        for t in c.inputs
        if t.role in ("token", "condition", "given")
    }
    feeds |= {t.name: np.zeros((1, int(t.shape[1])), np.float32) for t, _ in c.states}
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        out = m.run(feeds)
        times.append(time.perf_counter() - t0)
        feeds |= {i.name: out[o.name] for i, o in c.states}
    return times


def live_step(m: model.Model, steps: int) -> list[float]:
    h = harmonizer.LiveHarmonizer(m.contract, m.run, seed=0, heads=m.heads)
    low, high = m.contract.encoding["voice_ranges"]["soprano"]
    rng = np.random.default_rng(0)
    times = []
    for i in range(steps):
        soprano = int(rng.integers(low, high + 1)) if i % 4 == 0 else -2
        t0 = time.perf_counter()
        h.step(soprano, i % 16)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument(
        "--models",
        default="",
        help="comma-separated model names or folders "
        "(default: bach, folk and the compare exports found under runs/)",
    )
    args = ap.parse_args()
    names = [n for n in args.models.split(",") if n] or ["bach", "folk", *COMPARED]
    for name in names:
        try:
            m = model.load(name)
        except model.ModelError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        raw_step(m, 50)
        what = (
            "one phrase call     "
            if m.contract.encoding.get("type") == "phrase"
            else "one model step      "
        )
        print(f"{name:6s} {what} {percentiles(raw_step(m, args.steps))}")
        if m.contract.kind == "live-harmonizer":
            live_step(m, 50)
            print(f"{name:6s} one harmonizer step  {percentiles(live_step(m, args.steps))}")


if __name__ == "__main__":
    main()
