"""The one exception family: every error Partimento reports to its user derives from
:class:`PartimentoError`, whose message is one line. The command line prints it as
``partimento: error: <message>`` and exits with :attr:`PartimentoError.exit_code`.

Each module keeps its own subclass (``EncodingError``, ``ModelError``, ``MidiError``...), so a
caller can catch what it can survive; errors from libraries are re-raised into the family with
``from``. Some subclasses are also ``ValueError``\\ s, where a bad value is what they report.
"""

from __future__ import annotations


class PartimentoError(Exception):
    """An error for the user: the message is one line that names what went wrong."""

    exit_code: int = 1


class CommandError(PartimentoError):
    """A command that cannot do what it was asked (a missing extra, a bad option value)."""
