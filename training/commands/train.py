"""``partimento train STYLE``: train a style, and with ``--export NAME`` make it playable."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from partimento.training.commands import require_extra
from partimento.training.config import STYLES, add_flags, overrides


def export_folder(name: str) -> Path:
    """Where ``--export NAME`` writes: the folder NAME when it holds a path separator, else
    NAME in the user's models folder, where every command finds it by name."""
    from partimento.files import locations

    if "/" in name or "\\" in name:
        return Path(name)
    return locations.user_models() / name


def cmd_train(args: argparse.Namespace) -> int:
    require_extra("partimento train")
    from partimento.training.config import resolve
    from partimento.training.train import train

    cfg = resolve(args.style, Path(args.config) if args.config else None, overrides(args))
    run_dir = Path(args.run_dir or f"runs/{args.style}")
    train(cfg, run_dir, resume=args.resume)
    if not args.export:
        print(
            f"trained {args.style}: run folder {run_dir}; next: partimento export {run_dir} "
            f"-o {export_folder(args.style)}"
        )
        return 0
    from partimento.training.export import export

    out = export_folder(args.export)
    contract = export(run_dir, out)
    print(
        f"trained {args.style} (run folder {run_dir}) and exported it to {out}: play it with "
        f'[continue] model = "{out}" (or set/style over MQTT), or partimento sample '
        f"{out} -o sample.mid"
        if contract.kind == "continuation"
        else f"trained {args.style} (run folder {run_dir}) and exported it to {out}"
    )
    return 0


def add_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    t = subparsers.add_parser(
        "train",
        parents=list(parents),
        help="train a style (needs the training extra)",
        description="Train a style. Defaults per style, then --config FILE.toml ([train] "
        "table), then these flags.",
    )
    t.add_argument("style", choices=STYLES)
    t.add_argument("--config", help="a TOML file with a [train] table of the keys below")
    t.add_argument("--run-dir", help="the run folder (default runs/STYLE)")
    t.add_argument("--resume", action="store_true", help="go on with an interrupted run")
    t.add_argument(
        "--export",
        metavar="NAME",
        help="then export the run as NAME in your models folder (or to the folder NAME if it "
        "contains a /), ready for partimento run, sample and evaluate by name",
    )
    add_flags(t)
    t.set_defaults(func=cmd_train)
    return t
