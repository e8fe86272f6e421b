"""Without ``midi.output``, ``partimento run`` plays on a synthesizer or a virtual port of its
own, never on a Through port (silence), and says which in one line: tested on port lists as
ALSA, JACK, CoreMIDI and WinMM name them."""

from __future__ import annotations

import re

import pytest

from partimento.live.default_output import VIRTUAL_NAME, NoOutputError, choose

OWN = re.compile(r"partimento(-\d+)?:")
ALSA_THROUGH = "Midi Through:Midi Through Port-0 14:0"
FLUID = "FLUID Synth (4511):Synth input port (4511:0) 128:0"


def test_a_synth_is_chosen_over_the_through_port_listed_first():
    choice = choose([ALSA_THROUGH, FLUID])
    assert choice.name == FLUID and not choice.virtual
    assert choice.line.startswith(f"output: {FLUID} (the first synthesizer listed")
    assert "1 Through port skipped" in choice.line and "\n" not in choice.line


def test_a_synth_is_chosen_over_a_plain_interface():
    names = ["USB MIDI Interface:USB MIDI Interface MIDI 1 20:0", "TiMidity:TiMidity port 0 128:0"]
    assert choose(names).name.startswith("TiMidity")


def test_windows_wavetable_synth():
    assert choose(["Microsoft GS Wavetable Synth 0"], virtual_ok=False).name == (
        "Microsoft GS Wavetable Synth 0"
    )


def test_without_a_synth_the_first_port_that_is_not_a_through_port():
    names = ["Midi Through Port-0", "USB MIDI Interface MIDI 1"]
    choice = choose(names)
    assert choice.name == "USB MIDI Interface MIDI 1"
    assert "no synthesizer listed: the first output" in choice.line


@pytest.mark.parametrize(
    "names",
    [
        [ALSA_THROUGH],
        ["system:midi_playback_1 Through"],
        [],
        ["partimento:out", "partimento-01:in"],  # its own ports: it would hear itself
    ],
)
def test_only_through_ports_or_none_a_virtual_port_of_our_own(names):
    choice = choose(names, own=OWN)
    assert choice.virtual and choice.name == VIRTUAL_NAME
    assert "connect a synthesizer to it" in choice.line


def test_never_through_whatever_the_case():
    for name in ("MIDI THROUGH", "midi through port", "Loop Through"):
        assert choose([name]).virtual


def test_no_virtual_ports_on_winmm_is_one_line():
    with pytest.raises(NoOutputError) as caught:
        choose(["Midi Through Port-0"], virtual_ok=False)
    message = str(caught.value)
    assert "\n" not in message and "start a synthesizer, or set midi.output" in message


def test_run_prints_the_choice_before_the_ready_line():
    from partimento.live.service import Ready

    ready = Ready("harmonize", "bach", "keys", FLUID, choose([ALSA_THROUGH, FLUID]).line)
    assert ready.output_chosen.startswith("output: FLUID Synth")
    assert Ready("harmonize", "bach", "keys", FLUID).output_chosen == ""
