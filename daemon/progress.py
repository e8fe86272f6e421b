"""Progress bars on stderr for the long jobs: corpus parsing, data preparation, evaluation,
comparison, harmonizing many files.

A bar is drawn only when someone is watching: stderr is a terminal, or ``-v`` asked for it
(``-v`` sets the ``partimento`` logger to INFO); never into a pipe or a test's captured output
otherwise, and never with ``level`` 0 (training's ``progress = 0``). tqdm draws it when it is
installed (it comes with the training tools); without it a plain counter does, so the runtime
needs nothing more.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")

PLAIN_INTERVAL = 0.5
"""Seconds between two updates of the plain counter on a terminal."""
PLAIN_LINES = 10
"""Lines the plain counter writes when stderr is not a terminal (about every tenth)."""


def wanted(level: int = 1, stream: IO[str] | None = None) -> bool:
    """Whether to draw: ``level`` above 0, and ``stream`` (stderr) a terminal or ``-v`` given."""
    if level <= 0:
        return False
    stream = stream if stream is not None else sys.stderr
    asked = logging.getLogger("partimento").isEnabledFor(logging.INFO)
    return asked or bool(getattr(stream, "isatty", lambda: False)())


def bar(
    items: Iterable[T],
    description: str,
    *,
    total: int | None = None,
    unit: str = "item",
    level: int = 1,
    stream: IO[str] | None = None,
) -> Iterator[T]:
    """``items``, one by one, with a bar saying ``description: n/total`` while they come."""
    stream = stream if stream is not None else sys.stderr
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not wanted(level, stream):
        yield from items
        return
    if importlib.util.find_spec("tqdm") is not None:
        from tqdm import tqdm

        yield from tqdm(
            items, desc=description, total=total, unit=unit, file=stream, dynamic_ncols=True
        )
        return
    yield from _plain(items, description, total, stream)


def echo(line: str) -> None:
    """Print ``line`` to stdout without tearing a bar that is being drawn on the terminal."""
    if importlib.util.find_spec("tqdm") is not None and sys.stdout.isatty():
        from tqdm import tqdm

        tqdm.write(line, file=sys.stdout)
    else:
        print(line, flush=True)


def _plain(items: Iterable[T], description: str, total: int | None, stream: IO[str]) -> Iterator[T]:
    """A counter without tqdm: rewritten in place on a terminal, else a few whole lines."""
    terminal = bool(getattr(stream, "isatty", lambda: False)())
    of = f"/{total}" if total else ""
    every = max(1, (total or 0) // PLAIN_LINES) if total else 100
    last = 0.0
    n = 0
    for n, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if terminal and now - last >= PLAIN_INTERVAL:
            stream.write(f"\r{description}: {n}{of}")
            stream.flush()
            last = now
        elif not terminal and n % every == 0:
            stream.write(f"{description}: {n}{of}\n")
            stream.flush()
    if terminal:
        stream.write(f"\r{description}: {n}{of}\n")
        stream.flush()
    elif n % every:
        stream.write(f"{description}: {n}{of}\n")
        stream.flush()
