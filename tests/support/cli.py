"""The command line as a user runs it: ``python -m partimento.cli`` in a subprocess."""

import os
import subprocess
import sys

from support.project import ROOT


def partimento(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "partimento.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )
