"""The output ``partimento run`` plays on when the configuration names none.

The first port a backend lists is often a loopback that sounds nowhere (ALSA's "Midi Through",
the "Through" ports of other systems): harmony sent there is silence. So without
``midi.output``: a synthesizer's port first (FluidSynth, TiMidity, the Microsoft GS Wavetable
Synth...), else the first other port that is not a Through port (a hardware interface, a DAW),
else a virtual port of our own for the user to connect a synth to, where the backend can make
one. Partimento's own ports are never chosen (it would hear itself). The choice is one line,
which ``run`` prints.

Pure: it works on a list of names, so it is tested with made-up port lists.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from partimento.core.errors import PartimentoError

VIRTUAL_NAME = "Partimento out"
"""The virtual port opened when there is nothing else to play on."""
THROUGH = re.compile(r"through", re.IGNORECASE)
SYNTH = re.compile(
    r"synth|timidity|wavetable|sampler|sfz|zynaddsubfx|yoshimi|linuxsampler|qsynth",
    re.IGNORECASE,
)
"""Names that say a port makes sound (FluidSynth, "Microsoft GS Wavetable Synth", ...)."""


class NoOutputError(PartimentoError):
    """Nothing to play on, and no virtual port can be made."""


@dataclass(frozen=True)
class OutputChoice:
    name: str
    """The port to open, or the virtual port to create."""
    virtual: bool
    line: str
    """One line for the musician: what was chosen and why."""


def choose(
    names: Sequence[str], *, own: re.Pattern[str] | None = None, virtual_ok: bool = True
) -> OutputChoice:
    """The output to play on among the backend's ``names`` (``own``: Partimento's own ports,
    left out); ``virtual_ok`` False where the backend cannot make virtual ports (WinMM)."""
    usable = [n for n in names if not (own and own.match(n)) and not THROUGH.search(n)]
    skipped = [n for n in names if THROUGH.search(n)]
    why = f", {len(skipped)} Through port{'s' if len(skipped) != 1 else ''} skipped" * bool(skipped)
    synth = next((n for n in usable if SYNTH.search(n)), None)
    if synth is not None:
        return OutputChoice(
            synth, False, f"output: {synth} (the first synthesizer listed{why}; set midi.output)"
        )
    if usable:
        return OutputChoice(
            usable[0],
            False,
            f"output: {usable[0]} (no synthesizer listed: the first output{why}; set midi.output)",
        )
    if virtual_ok:
        return OutputChoice(
            VIRTUAL_NAME,
            True,
            f"output: a new virtual port {VIRTUAL_NAME!r}: connect a synthesizer to it "
            f"(no synthesizer listed{why}; set midi.output)",
        )
    listed = ", ".join(names) or "none"
    raise NoOutputError(
        f"no MIDI output to play on (outputs: {listed}): start a synthesizer, or set midi.output"
    )
