"""``partimento ports``: the MIDI inputs and outputs the backend sees, one a line."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence

from partimento.config import RTMIDI_APIS


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Keep what the C MIDI libraries print while probing (``ALSA lib ...``, ``Cannot connect to
    server socket``) off the terminal: their reasons come back in the one-line error."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cmd_ports(args: argparse.Namespace) -> int:
    from partimento.live.midi_io import DEFAULT_BACKEND, backend_name, list_ports

    if args.api is None:
        backend = backend_name()
    elif args.api == "auto":
        backend = DEFAULT_BACKEND
    else:
        backend = f"{DEFAULT_BACKEND}/{RTMIDI_APIS[args.api]}"
    with native_stderr_silenced():
        inputs, outputs = list_ports(backend)
    for name in inputs:
        print(f"input\t{name}")
    for name in outputs:
        print(f"output\t{name}")
    if not inputs and not outputs:
        print(f"no MIDI ports ({backend})", file=sys.stderr)
    print(f"partimento: {default_output_line(outputs, backend)}", file=sys.stderr)
    return 0


def default_output_line(outputs: Sequence[str], backend: str) -> str:
    """Where ``partimento run`` plays when ``midi.output`` is not set, in one line."""
    import re

    from partimento.live.default_output import NoOutputError, choose
    from partimento.live.midi_io import CLIENT_NAME

    winmm = sys.platform == "win32" or backend.endswith("WINDOWS_MM")
    own = re.compile(rf"{re.escape(CLIENT_NAME)}(-\d+)?:")
    try:
        choice = choose(outputs, own=own, virtual_ok=not winmm)
    except NoOutputError as exc:
        return f"without midi.output, run cannot play: {exc}"
    where = f"a new virtual port {choice.name!r}" if choice.virtual else choice.name
    return f"without midi.output, run plays on {where}"


def add_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    m = subparsers.add_parser(
        "ports",
        parents=list(parents),
        help="list MIDI input and output ports",
        description="List the MIDI backend's ports, one a line: 'input<TAB>NAME' (ports "
        "Partimento can read from) then 'output<TAB>NAME'; on stderr, where run plays when "
        "midi.output is not set. The backend is --api, else the "
        "MIDO_BACKEND environment variable (e.g. mido.backends.rtmidi/UNIX_JACK), else the "
        "first that starts.",
    )
    m.add_argument(
        "--api",
        choices=("auto", *RTMIDI_APIS),
        default=None,
        help="python-rtmidi's backend, as midi.api in the config file",
    )
    m.set_defaults(func=cmd_ports)
    return m
