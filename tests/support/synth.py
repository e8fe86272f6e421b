"""A strict synthesizer for tests: it fails on anything a real synth would leave hanging."""

from __future__ import annotations

from partimento.core.midi import parse as parse_message


class Synth:
    """One voice per channel and key. A note-on for a sounding key, a note-off for a silent
    one, or anything but notes, sustain off and all-notes-off fails the test."""

    def __init__(self) -> None:
        self.keys: set[tuple[int, int]] = set()

    def play(self, messages) -> Synth:
        for m in messages:
            assert parse_message(m) == tuple(m) and len(m) == 3, f"unexpected {m}"
            kind, ch = m[0] & 0xF0, m[0] & 0x0F
            if kind == 0x90 and m[2] > 0:
                assert (ch, m[1]) not in self.keys, f"note-on {m} for a sounding key"
                self.keys.add((ch, m[1]))
            elif kind in (0x80, 0x90):
                assert (ch, m[1]) in self.keys, f"note-off {m} for a silent key"
                self.keys.discard((ch, m[1]))
            elif kind == 0xB0 and m[1] == 123:
                self.keys = {k for k in self.keys if k[0] != ch}
            else:
                assert kind == 0xB0 and m[1] == 64 and m[2] == 0, f"unexpected {m}"
        return self

    def on(self, channel: int) -> set[int]:
        return {p for c, p in self.keys if c == channel}
