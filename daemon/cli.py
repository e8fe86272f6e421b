"""The ``partimento`` command line: a list of commands, nothing more.

Each command lives in a module of its own that owns its parser (``add_parser``) and its work;
only the module of the command being run is imported (``partimento run`` loads no training
module, ``partimento --help`` none at all). Runtime commands live in
:mod:`partimento.commands`, training commands in :mod:`partimento.training.commands`.

Every error of the :class:`~partimento.core.errors.PartimentoError` family (and a file that
cannot be read or written) comes out as one line, ``partimento: error: ...``, and its exit code;
anything else as one line naming its type (``-v`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NamedTuple

# numpy's BLAS (OpenBLAS) starts a thread per core that spins after every call: for the live
# harmonizer's small matrix products that kept a second core busy (measured: the daemon at 124 %
# of a core at 20 notes/s, 26 % with one thread). Set before anything imports numpy; OpenMP,
# which TensorFlow's kernels use for training, is left alone.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from partimento.core.errors import PartimentoError

log = logging.getLogger("partimento")


class Command(NamedTuple):
    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "run": Command("partimento.commands.run", "run the live daemon on MIDI ports"),
    "demo": Command(
        "partimento.commands.demo", "play built-in melodies through the engine (no MIDI needed)"
    ),
    "harmonize": Command("partimento.commands.harmonize", "harmonize a melody file in four voices"),
    "sample": Command("partimento.commands.sample", "write a sample of a model as MIDI (and WAV)"),
    "ports": Command("partimento.commands.ports", "list MIDI input and output ports"),
    "service": Command("partimento.commands.service", "run Partimento as a systemd service"),
    "train": Command(
        "partimento.training.commands.train", "train a style (needs the training extra)"
    ),
    "export": Command(
        "partimento.training.commands.export", "export a run as model.onnx + model.json"
    ),
    "evaluate": Command(
        "partimento.training.commands.evaluate", "evaluate a model on the test split"
    ),
    "compare": Command(
        "partimento.training.commands.compare",
        "train model types on the same budget and compare them",
    ),
}
"""Every command: the module that owns it (its ``add_parser(subparsers, parents)``) and the
line ``partimento --help`` shows."""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("partimento")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _verbose_flag(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="log what happens (a traceback on an unexpected error)",
    )


def parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the full parsers of ``commands`` (None: every command) and the others
    named with their help line only."""
    wanted = set(COMMANDS) if commands is None else set(commands)
    p = argparse.ArgumentParser(
        prog="partimento",
        description="A real-time MIDI accompanist: "
        "live four-voice chorale harmonization and melody continuation.",
    )
    _verbose_flag(p, False)
    p.add_argument("--version", action="version", version=f"partimento {version()}")
    common = argparse.ArgumentParser(add_help=False)
    _verbose_flag(common, argparse.SUPPRESS)  # after the command too, without resetting it
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        if name in wanted:
            importlib.import_module(command.module).add_parser(sub, [common])
        else:
            sub.add_parser(name, help=command.help)
    return p


def _command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (the first word that is one), or None."""
    return next((a for a in argv if a in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    try:
        p = parser([command] if command else [])
    except ImportError as exc:  # a command whose extra is not installed
        print(f"partimento: error: {command} cannot start: {exc}", file=sys.stderr)
        return 1
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except PartimentoError as exc:
        print(f"partimento: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError) as exc:
        print(f"partimento: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("partimento: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(
            f"partimento: error: {type(exc).__name__}: {first} (run with -v for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
