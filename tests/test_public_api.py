"""The public surface is what `personae.__all__` says, and nothing else is needed to use it."""

from __future__ import annotations

import personae


def test_exported_members() -> None:
    assert sorted(personae.__all__) == sorted(
        ["Project", "PersonaeError", "ConfigError", "SourceError", "StoreError", "__version__"]
    )
    for name in personae.__all__:
        assert getattr(personae, name) is not None
    assert issubclass(personae.SourceError, personae.PersonaeError)
