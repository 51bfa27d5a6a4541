"""A small segment's warning names the limit it is below, not both."""

from __future__ import annotations

from personae.config import SegmentsConfig
from personae.segments.build import _warning


def _says(size: int, total: int) -> str | None:
    return _warning("x", size, total=total, stability=None, cfg=SegmentsConfig())


def test_the_limit_that_failed_is_named() -> None:
    assert _says(30, 4_300) == "tiny: 30 customers (0.7%), below min_share 1%"
    assert _says(29, 1_000) == "tiny: 29 customers (2.9%), below min_size 30"
    assert _says(12, 4_300) == "tiny: 12 customers (0.3%), below min_size 30 and min_share 1%"
    assert _says(30, 1_000) is None
    assert _says(0, 1_000) == "empty: no customer is in it"
