"""``partimento run``: the live daemon on MIDI ports, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import IO, TYPE_CHECKING

from partimento.core.errors import CommandError

if TYPE_CHECKING:
    from partimento.live.service import Ready


class StartupStderr:
    """Holds what goes to stderr (log lines, and what the C MIDI libraries print, such as
    ``ALSA lib ... failed`` while rtmidi tries a backend) until the daemon is ready.

    :meth:`release` (the daemon is up) writes out what was held, in order, and gives stderr
    back. A start that fails drops it, so the user reads one line: the error (its reason
    already names the file, key or port). ``hold=False`` (``-v``) holds nothing.
    """

    def __init__(self, *, hold: bool) -> None:
        self._hold = hold
        self._saved: int | None = None
        self._file: IO[bytes] | None = None

    def __enter__(self) -> StartupStderr:
        if self._hold:
            import tempfile

            sys.stderr.flush()
            self._file = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        return self

    def release(self, *, show: bool = True) -> None:
        if self._saved is None or self._file is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._saved = None
        if show:
            self._file.seek(0)
            held = self._file.read()
            out = getattr(sys.stderr, "buffer", None)
            if held and out is not None:
                with contextlib.suppress(OSError, ValueError):  # never stop the daemon
                    out.write(held)
                    sys.stderr.flush()
        self._file.close()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release(show=kind is None)


def cmd_run(args: argparse.Namespace) -> int:
    from partimento.config import load
    from partimento.files import locations

    path = locations.config_file(args.config)
    config = load(path)
    level = config.logging_level
    logging.getLogger().setLevel(min(level, logging.INFO) if args.verbose else level)
    try:
        from partimento.live import eventloop
        from partimento.live.service import serve
    except ImportError as exc:  # python-rtmidi, or the ALSA library it links, is missing
        raise CommandError(
            f"partimento run needs python-rtmidi and its MIDI libraries: {exc}"
        ) from exc

    held = StartupStderr(hold=not args.verbose)  # a failure to start is one line

    def ready(r: Ready) -> None:
        held.release()
        if r.output_chosen:
            print(f"partimento: {r.output_chosen}", flush=True)
        print(r.line, flush=True)

    with held:
        logging.getLogger("partimento").info("configuration %s", path)
        return eventloop.run(serve(config, config_path=path, on_ready=ready))


def add_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    r = subparsers.add_parser(
        "run",
        parents=list(parents),
        help="run the live daemon on MIDI ports",
        description="Run the daemon: read the melody from the MIDI input, play harmony or "
        "answers on the MIDI output, until SIGINT or SIGTERM (which release every sounding "
        "note). Prints one ready line when the models are loaded and the ports open. The "
        "backend is midi.api, else MIDO_BACKEND.",
    )
    r.add_argument(
        "--config",
        help="the TOML configuration (default: $PARTIMENTO_CONFIG, else partimento.toml in "
        "your config folder, else the shipped default)",
    )

    r.set_defaults(func=cmd_run)
    return r
