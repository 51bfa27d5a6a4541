"""Shared fixtures: the real data sets in ../shared/data and small project helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PERSONAE_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data, or skip: the real data sets live beside the repository."""
    if not DATA.is_dir():
        pytest.skip(f"real data sets not found at {DATA} (set PERSONAE_SHARED to shared/)")
    return DATA


def write_toml(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "personae.toml"
    path.write_text(text)
    return path
