"""The one exception hierarchy of personae.

Every message names the file, row, column or setting at fault and says how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PersonaeError(Exception):
    """Base class of every error personae raises on purpose. `hint`, when given, is what to
    do about it (`--json` prints it apart from the message)."""

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(PersonaeError):
    """personae.toml is missing, malformed or holds an invalid setting."""


class SourceError(PersonaeError):
    """A source file or database table cannot be read or mapped."""


class StoreError(PersonaeError):
    """The store is missing, locked or lacks a table a stage needs."""


class OutputError(PersonaeError):
    """A file personae was asked to write (an export) cannot be written: its name, its
    folder, permissions or a full disk."""


def closest(name: str, choices: Iterable[str]) -> str:
    """A ' Did you mean ...?' hint for a misspelt key, or an empty string."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""
