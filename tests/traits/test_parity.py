"""Engine parity: every trait of a synthetic data set is the same on DuckDB and on Spark,
row for row."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from personae import Project
from personae.synth import generate
from personae.traits.catalog import TRAITS


@pytest.mark.spark
@pytest.mark.xdist_group("spark")
def test_duckdb_and_spark_agree(tmp_path: Path) -> None:
    generate(tmp_path, customers=1500, seed=21)
    project = Project.open(tmp_path)
    project.ingest()
    runs = {e: project.traits(engine=e).run_id for e in ("duckdb", "spark")}
    names = ["customer_id", *(t.name for t in TRAITS)]
    with project.store(read_only=True) as store:
        got = {
            e: store.con.execute(
                f"SELECT {', '.join(chr(34) + n + chr(34) for n in names)} FROM traits "
                "WHERE run_id = ? ORDER BY customer_id",
                [run],
            ).fetchall()
            for e, run in runs.items()
        }
    assert len(got["duckdb"]) == len(got["spark"]) == 1500
    for a, b in zip(got["duckdb"], got["spark"], strict=True):
        for name, x, y in zip(names, a, b, strict=True):
            if isinstance(x, float) and isinstance(y, float):
                assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9), (a[0], name, x, y)
            else:
                assert x == y, (a[0], name, x, y)
