"""``partimento evaluate NAME``: test-split figures next to baselines, into ``model.json``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from partimento.training.commands import require_extra


def cmd_evaluate(args: argparse.Namespace) -> int:
    require_extra("partimento evaluate")
    from partimento.training.evaluate import evaluate

    evaluate(
        args.model, write=not args.no_write, limit=args.limit, seed=args.seed, split=args.split
    )
    return 0


def add_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    v = subparsers.add_parser(
        "evaluate",
        parents=list(parents),
        help="evaluate a model on the test split",
        description="NLL and accuracy on the test split next to a baseline; for bach models "
        "on the standard JSB test chorales (NLL per voice and sixteenth in the JSB "
        "representation), also harmonize every test soprano and measure agreement and voice "
        "leading next to Bach's own chorales and the rules. Test figures go into model.json.",
    )
    v.add_argument("model", help="model name or folder")
    v.add_argument("--limit", type=int, default=0, help="only the first N test pieces")
    v.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed of the sampling that harmonizes the test sopranos (default 0)",
    )
    v.add_argument("--no-write", action="store_true", help="print, but leave model.json as is")
    v.add_argument(
        "--split",
        default="test",
        choices=("test", "valid"),
        help="bach models: the JSB chorales to measure (valid: for choosing settings; never "
        "written)",
    )
    v.set_defaults(func=cmd_evaluate)
    return v
