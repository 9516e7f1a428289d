"""Mistakes of the caller, told apart from bugs: a command prints them as one line, not a traceback."""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """A setting, name or argument the caller got wrong; the message says which, and what is allowed.

    Raise it (or a subclass) where the mistake is found, however deep: ``shared.cli.CommandGroup``
    turns it into ``Error: <message>`` and exit status 1. Anything else is a bug and keeps its
    traceback.
    """
