"""The event loop the daemon runs on.

aiomqtt drives paho-mqtt's socket with ``loop.add_reader``/``add_writer``, which Windows'
default event loop (the proactor) does not have: there the daemon runs on a selector loop, as
aiomqtt's own documentation asks. Everywhere else the default loop is a selector loop already.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory(platform: str = sys.platform) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop to build on ``platform`` (``sys.platform``'s spelling); None: the default."""
    if platform == "win32":
        return asyncio.SelectorEventLoop
    return None


def run(main: Coroutine[Any, Any, T], *, platform: str = sys.platform) -> T:
    """``asyncio.run(main)`` on the loop :func:`loop_factory` chooses for ``platform``."""
    with asyncio.Runner(loop_factory=loop_factory(platform)) as runner:
        return runner.run(main)
