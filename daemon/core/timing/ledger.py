"""The ledger of every note Partimento has sounding, per output channel and pitch.

Every note-on and note-off Partimento sends goes through a :class:`NoteLedger`, which answers
with the raw MIDI messages to send. So the ledger always knows what the synthesizer holds, and
every exit path (a stop, an interrupted continuation, a crash being cleaned up) can silence
exactly those notes with :meth:`NoteLedger.release_all` or :meth:`NoteLedger.release_owner`.

Messages are raw bytes, :data:`MidiOut` tuples such as ``(0x90 | channel, pitch, velocity)``;
the I/O layer turns them into port messages. Note-offs are always ``0x80 | channel`` with the
channel they were struck on, never a channel-less default.

One sounding note per channel and pitch. A synthesizer keeps at most one voice per key and
channel, and the ledger mirrors that:

* a note-on for a pitch already sounding on that channel **re-strikes** it: the ledger sends a
  note-off then the new note-on (the repeated attack is heard), keeps one entry, and hands the
  note to the new note's owner;
* a note-off with an owner only releases the note if that owner still holds it: when another
  owner has re-struck the pitch since, the later striker owns it and its own note-off (or
  :meth:`~NoteLedger.release_owner`, or :meth:`~NoteLedger.release_all`) ends it. A note-off
  without an owner releases the pitch whoever holds it.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from partimento.core.midi import (
    check_channel,
    is_note_off,
    is_note_on,
    note_off,
    note_on,
    release,
)
from partimento.core.types import MidiOut


class NoteLedger:
    """What sounds, per (channel, pitch), and who struck it.

    Owners are free tags (``"harmony-alto"``, ``"continuation"``) or ``None``.
    """

    __slots__ = ("_owners", "_used")

    def __init__(self) -> None:
        self._owners: dict[tuple[int, int], str | None] = {}
        self._used: set[int] = set()

    def note_on(
        self, channel: int, pitch: int, velocity: int, *, owner: str | None = None
    ) -> list[MidiOut]:
        """Strike a note; re-strikes (note-off then note-on) a pitch already sounding."""
        on = note_on(channel, pitch, velocity)
        key = (on[0] & 0x0F, on[1])
        out = [note_off(*key)] if key in self._owners else []
        self._owners[key] = owner
        self._used.add(key[0])
        out.append(on)
        return out

    def note_off(self, channel: int, pitch: int, *, owner: str | None = None) -> list[MidiOut]:
        """Release a sounding note; nothing if it is silent or (given ``owner``) held by another
        owner since a re-strike."""
        off = note_off(channel, pitch)
        key = (off[0] & 0x0F, off[1])
        if key not in self._owners or (owner is not None and self._owners[key] != owner):
            return []
        del self._owners[key]
        return [off]

    def release_owner(self, owner: str) -> list[MidiOut]:
        """Note-offs for every note ``owner`` holds, which leave the ledger."""
        keys = sorted(k for k, o in self._owners.items() if o == owner)
        for k in keys:
            del self._owners[k]
        return [note_off(ch, p) for ch, p in keys]

    def release_all(self, channels: Iterable[int] | None = None) -> list[MidiOut]:
        """Silence everything: a note-off for each sounding note, then sustain off (CC 64 = 0)
        and all notes off (CC 123) on every channel ever used and every one in ``channels``
        (e.g. all configured channels, at start-up after a crash). The ledger is left empty."""
        extra = {check_channel(c) for c in channels} if channels is not None else set()
        out = [note_off(ch, p) for ch, p in sorted(self._owners)]
        self._owners.clear()
        out.extend(release(self._used | extra))
        return out

    def apply(self, message: MidiOut, *, owner: str | None = None) -> list[MidiOut]:
        """Route a checked raw message: note-ons and note-offs through the ledger, others (a sustain
        pedal, a program change) unchanged; their channel counts as used."""
        msg = message  # checked where it was made or queued (Scheduler.add)
        if is_note_on(msg):
            return self.note_on(msg[0] & 0x0F, msg[1], msg[2], owner=owner)
        if is_note_off(msg):
            return self.note_off(msg[0] & 0x0F, msg[1], owner=owner)
        self._used.add(msg[0] & 0x0F)
        return [msg]

    def sounding(self) -> frozenset[tuple[int, int]]:
        """Every (channel, pitch) sounding now."""
        return frozenset(self._owners)

    def owner_of(self, channel: int, pitch: int) -> str | None:
        """Who holds a sounding note (``None`` also when silent: see :meth:`sounding`)."""
        return self._owners.get((channel, pitch))

    @property
    def channels_used(self) -> frozenset[int]:
        """Every channel a message went out on through the ledger since it was made."""
        return frozenset(self._used)

    def __len__(self) -> int:
        return len(self._owners)
