"""Choose a Bach harmonizer's decoding settings on the JSB *valid* chorales, never on test.

    python -m partimento.training.tune_bach exported_models/bach temperature=0.7,1.0 candidates=4,8
    python -m partimento.training.tune_bach exported_models/bach-offline beam=4,8 sonority=0,0.5

Every combination of the given values (fields of :class:`partimento.core.players.harmonizer.
HarmonizerSettings` for a live model, of :class:`partimento.core.players.beam.BeamSettings` for a
lookahead model) harmonizes the valid chorales (those that share no test tune) with seed 0, and one
row per combination gives what the targets speak of: agreement with Bach's alto, tenor and bass,
chord changes per bar as a share of Bach's, parallels per 100 chord changes, triads and
sevenths, and the time per step. ``--split test`` is there to report the chosen settings once.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys

from partimento.training import bach_eval
from partimento.training.config import from_saved

COLUMNS = (
    "agreement",
    "changes_vs_bach",
    "parallels",
    "bach_parallels",
    "tertian",
    "bach_tertian",
    "ms_per_step",
)


def _values(text: str) -> list:
    out = []
    for v in text.split(","):
        try:
            out.append(int(v))
        except ValueError:
            out.append(float(v))
    return out


def rows(
    model: str, grid: dict[str, list], split: str = "valid", limit: int = 0, seed: int = 0
) -> list[dict]:
    from partimento.core.players import beam, harmonizer
    from partimento.files import model as models

    m = models.load(model)
    cfg = from_saved(m.contract.training["config"])
    pieces = bach_eval.load_set(cfg, split, limit).chorales
    live = m.contract.kind == "live-harmonizer"
    base = harmonizer.HarmonizerSettings() if live else beam.BeamSettings()
    out = []
    for combo in itertools.product(*grid.values()):
        settings = dataclasses.replace(base, **dict(zip(grid, combo, strict=True)))
        play = (
            bach_eval.live_harmonize(m, settings, seed)
            if live
            else bach_eval.beam_harmonize(m, settings)
        )
        h = bach_eval.harmonization("model", play, pieces, {})
        mine, bach = h["model"], h["bach"]
        out.append(
            {
                **dict(zip(grid, combo, strict=True)),
                "agreement": mine["agreement"]["mean"],
                "changes_vs_bach": round(
                    mine["chord_changes_per_bar"] / bach["chord_changes_per_bar"], 3
                ),
                "parallels": mine["parallels_per_100"],
                "bach_parallels": bach["parallels_per_100"],
                "tertian": mine["triad_seventh_share"],
                "bach_tertian": bach["triad_seventh_share"],
                "ms_per_step": h["settings"]["ms_per_step"],
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m partimento.training.tune_bach", description=__doc__)
    p.add_argument("model")
    p.add_argument("grid", nargs="*", help="field=value,value,...")
    p.add_argument("--split", default="valid", choices=("valid", "test"))
    p.add_argument("--limit", type=int, default=0)
    args = p.parse_args(argv)
    grid = {}
    for item in args.grid:
        key, sep, values = item.partition("=")
        if not sep:
            p.error(f"{item!r}: give field=value,value")
        grid[key] = _values(values)
    try:
        table = rows(args.model, grid, args.split, args.limit)
    except (TypeError, ValueError) as exc:
        print(f"tune_bach: {exc}", file=sys.stderr)
        return 1
    keys = [*grid, *COLUMNS]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in table:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
