"""CDNOW sample as of 1997-09-30 in weeks: frequency, recency and T equal the published
summary (within 0.01) for all 2,357 customers, and monetary value equals its zbar; on DuckDB
and on Spark."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from personae import Project

from ..conftest import cdnow_sample_source, write_toml


@pytest.fixture(scope="module")
def cdnow(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("cdnow")
    write_toml(
        root,
        cdnow_sample_source(data_dir)
        + """
[traits]
time_unit = "weeks"
""",
    )
    project = Project.open(root)
    project.ingest()
    return project


def test_matches_published_summary(cdnow: Project, engine: str, data_dir: Path) -> None:
    summary = cdnow.traits(date(1997, 9, 30), engine)
    assert (summary.customers, summary.buyers) == (2357, 2357)
    assert summary.ignored_after_as_of == 1959  # README: 1,959 holdout lines
    with cdnow.store(read_only=True) as store:
        row = store.con.execute(
            f"""SELECT count(*), count(*) FILTER (WHERE s.frequency <> t.frequency),
                   max(abs(s.recency - t.recency)), max(abs(s.T - t.T)),
                   max(abs(z.zbar - t.monetary_value)), sum(t.frequency)
            FROM read_csv('{data_dir / "cdnow/cdnow_customers_summary.csv"}') s
            JOIN traits t ON t.customer_id::INT = s.ID AND t.run_id = ?
            JOIN read_csv('{data_dir / "cdnow/cdnow_customers_summary_with_transactions.csv"}') z
              ON z.ID = s.ID""",
            [summary.run_id],
        ).fetchall()[0]
    assert row[0] == 2357 and row[1] == 0
    assert row[2] < 0.01 and row[3] < 0.01 and row[4] < 0.01
    assert row[5] == 2457  # README: 2,457 repeat transactions in calibration


def test_rfm_is_deterministic_and_complete(cdnow: Project, engine: str) -> None:
    summary = cdnow.traits(date(1997, 9, 30), engine)
    with cdnow.store(read_only=True) as store:
        rows = store.con.execute(
            """SELECT count(*) FILTER (WHERE rfm_segment IS NULL),
                      count(DISTINCT f_score) FILTER (WHERE purchase_days = 1),
                      min(r_score), max(r_score), min(m_score), max(m_score)
               FROM traits WHERE run_id = ?""",
            [summary.run_id],
        ).fetchall()[0]
        ties = store.con.execute(
            """SELECT count(*) FROM (SELECT days_since_last FROM traits WHERE run_id = ?
               GROUP BY 1 HAVING count(DISTINCT r_score) > 1)""",
            [summary.run_id],
        ).fetchall()[0][0]
    assert rows == (0, 1, 1, 5, 1, 5)  # every buyer named; one-day buyers share F = 1
    assert ties == 0  # equal values always share a score
