"""The one exception hierarchy of personae.

Every message names the file, row, column or setting at fault and says how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PersonaeError(Exception):
    """Base class of every error personae raises on purpose."""


class ConfigError(PersonaeError):
    """personae.toml is missing, malformed or holds an invalid setting."""


class SourceError(PersonaeError):
    """A source file or database table cannot be read or mapped."""


class StoreError(PersonaeError):
    """The store is missing, locked or lacks a table a stage needs."""


def closest(name: str, choices: Iterable[str]) -> str:
    """A ' Did you mean ...?' hint for a misspelt key, or an empty string."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""
