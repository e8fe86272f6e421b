"""``partimento export RUN -o FOLDER``: a run as ``model.onnx`` and ``model.json``, checked."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from partimento.training.commands import require_extra


def cmd_export(args: argparse.Namespace) -> int:
    require_extra("partimento export")
    from partimento.training.export import export

    contract = export(Path(args.run), Path(args.output), name=args.name)
    print(
        f"{args.output}: model.onnx and model.json for style {contract.style} "
        f"({contract.kind}); ONNX parity "
        f"{contract.training['parity_max_logit_difference']:.1e}"
    )
    return 0


def add_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    e = subparsers.add_parser(
        "export",
        parents=list(parents),
        help="export a run as model.onnx + model.json",
        description="Convert a run to an ONNX step model and its contract, after checking "
        "that the ONNX model reproduces the Keras one.",
    )
    e.add_argument("run", help="the run folder")
    e.add_argument("-o", "--output", required=True, help="the model folder to write")
    e.add_argument("--name", help="the model's name (default: the folder's name)")
    e.set_defaults(func=cmd_export)
    return e
