"""Shared fixtures: the real data sets in ../shared/data and small project helpers."""

from __future__ import annotations

import os
import subprocess
import sys
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


CLI_ENV = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}


def personae(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `personae` command line in a real process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "personae.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=CLI_ENV,
        timeout=600,
    )


def write_toml(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "personae.toml"
    path.write_text(text)
    return path


# The UCI online retail columns and their canonical names (shared/data/online_retail).
ONLINE_RETAIL_COLUMNS = {
    "InvoiceNo": "order_id",
    "StockCode": "product_id",
    "Description": "product_name",
    "Quantity": "quantity",
    "InvoiceDate": "ordered_at",
    "UnitPrice": "unit_price",
    "CustomerID": "customer_id",
}


def online_retail_source(path: Path, settings: str = "") -> str:
    """personae.toml lines for an online retail file (csv.gz or xlsx) with its mapping."""
    columns = "".join(f'{k} = "{v}"\n' for k, v in ONLINE_RETAIL_COLUMNS.items())
    return (
        f'[sources.retail]\ntable = "orders"\npath = "{path}"\ncancel_pattern = "^C"\n'
        f"{settings}\n[sources.retail.columns]\n{columns}"
    )


def cdnow_sample_source(data: Path) -> str:
    """personae.toml lines for CDNOW_sample.txt keyed by the sample id (the ID of the
    published summaries), as in shared/data/cdnow/README.md."""
    return f"""
[sources.cdnow]
table = "orders"
path = "{data / "cdnow/CDNOW_sample.txt"}"
header = false
date_formats = {{ column3 = "%Y%m%d" }}

[sources.cdnow.columns]
column2 = "customer_id"
column3 = "ordered_at"
column4 = "quantity"
column5 = "amount"
"""
