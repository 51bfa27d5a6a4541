"""Engines for the trait tests: the same test body runs on DuckDB and on Spark (local mode).

All Spark tests go to one xdist worker (group "spark") so the suite starts one session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from personae import Project

ENGINES = [
    pytest.param("duckdb", id="duckdb"),
    pytest.param("spark", id="spark", marks=[pytest.mark.spark, pytest.mark.xdist_group("spark")]),
]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "spark" and shutil.which("java") is None:
        pytest.fail("Spark tests need Java 17: `java` is not on PATH (make test checks for it)")
    return str(request.param)


def traits_by_customer(project: object, run_id: str) -> dict[str, dict[str, object]]:
    """The traits of one run as {customer_id: {trait: value}} (small test data only)."""
    with project.store(read_only=True) as store:  # type: ignore[attr-defined]
        cur = store.con.execute("SELECT * FROM traits WHERE run_id = ?", [run_id])
        names = [d[0] for d in cur.description]
        return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def csv_project(root: Path, **tables: str) -> Project:
    """A project of small CSV files, one per canonical table (`orders=...`), ingested."""
    config = ""
    for table, text in tables.items():
        (root / f"{table}.csv").write_text(text)
        config += f'[sources.{table}]\ntable = "{table}"\npath = "{table}.csv"\n'
    (root / "personae.toml").write_text(config)
    project = Project.open(root)
    project.ingest()
    return project


def shop_project(root: Path, orders: str, customers: str) -> Project:
    """A project of two small CSV files (orders and customers), ingested."""
    return csv_project(root, customers=customers, orders=orders)
