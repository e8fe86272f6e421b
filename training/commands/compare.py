"""``partimento compare --style folk --models lstm,transformer,gan``: every model type trained
with the same budget on the same data, then one table (:mod:`partimento.training.compare`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from partimento.training.commands import require_extra
from partimento.training.config import add_flags, overrides

SKIP = ("style", "model")


def cmd_compare(args: argparse.Namespace) -> int:
    require_extra("partimento compare")
    from partimento.training.compare import compare, markdown

    rows = compare(
        args.style,
        [k.strip() for k in args.models.split(",") if k.strip()],
        config=Path(args.config) if args.config else None,
        overrides=overrides(args, skip=SKIP),
        runs=Path(args.runs),
        eval_tunes=args.eval_tunes,
    )
    print(markdown(rows), end="")
    print(f"written: {Path(args.runs) / f'compare-{args.style}'}/compare.csv and compare.md")
    return 0


def add_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        parents=list(parents),
        help="train model types on the same budget and compare them",
        description="Train each model type with the same budget on the same data and print a "
        "table: parameters, training time, test NLL, pitch-class distance to the test set, "
        "repetition, novelty, step latency.",
    )
    p.add_argument("--style", default="folk", help="the style (default folk)")
    p.add_argument(
        "--models",
        default="lstm,transformer,gan",
        help="comma-separated model types (default lstm,transformer,gan)",
    )
    p.add_argument("--config", help="a training TOML file, as for train")
    p.add_argument("--runs", default="runs", help="where the run folders go (default runs)")
    p.add_argument(
        "--eval-tunes", type=int, default=100, help="test tunes scored and prompted (default 100)"
    )
    add_flags(p, skip=SKIP)
    p.set_defaults(func=cmd_compare)
    return p
