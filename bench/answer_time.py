"""How long continue mode takes to make an answer, per shipped continuation model.

    python bench/answer_time.py [--answers 10] [--bars 2] [--candidates 16]

An answer is made as the daemon makes it, off the engine lock
(:class:`partimento.core.players.respond.Responder`: the call in the model's state, then
``--candidates`` answers of ``--bars`` bars drawn and the one that follows the call best kept).
The call is the first four bars of the example chorale melody. Prints, per model, p50 / max of
the wall time of one answer in milliseconds; the answer waits for the beat after it is made,
so this decides how soon after a phrase's end an answer can start. Figures are recorded in
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from partimento.core.players.respond import AnswerSettings, Responder
from partimento.files import midifile, model

ROOT = Path(__file__).resolve().parents[1]
CALL = ROOT / "docs" / "examples" / "chorale-melody.mid"
STYLES = ("folk", "abc", "jazz", "piano")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--answers", type=int, default=10)
    p.add_argument("--bars", type=int, default=2)
    p.add_argument("--candidates", type=int, default=16)
    args = p.parse_args()
    soprano, _, _ = midifile.read_melody(CALL).grid()
    call = np.asarray(soprano[:64], np.int16)
    for name in STYLES:
        m = model.load(name)
        times = []
        for seed in range(args.answers):
            settings = AnswerSettings(seed=seed, candidates=args.candidates)
            responder = Responder(m.contract, m.run, settings)
            responder.observe(call)
            t0 = time.perf_counter()
            responder.continue_notes(args.bars * 16)
            times.append(time.perf_counter() - t0)
        ms = np.array(times) * 1e3
        print(
            f"{name:6s} {args.candidates} candidates x {args.bars} bars: "
            f"p50 {np.percentile(ms, 50):.0f} ms  max {ms.max():.0f} ms"
        )


if __name__ == "__main__":
    main()
