"""Synthetic data: reproducible, realistic, ingestible, and the planted truth is recoverable."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from personae import PersonaeError, Project
from personae.config import TraitsConfig
from personae.synth import _occasion_windows, generate
from personae.synth.segments import SEGMENTS
from personae.traits.moments import black_friday


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for name in ("customers", "orders", "events", "responses", "feedback", "accounts"):
        h.update((folder / f"{name}.csv").read_bytes())
    return h.hexdigest()


def test_same_seed_same_files(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", customers=800, seed=3)
    b = generate(tmp_path / "b", customers=800, seed=3)
    generate(tmp_path / "c", customers=800, seed=4)
    assert a.rows == b.rows
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(PersonaeError, match="--customers"):
        generate(tmp_path, customers=0)


@pytest.fixture(scope="module")
def synth_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    out = tmp_path_factory.mktemp("synth")
    generate(out, customers=4000, seed=11)
    project = Project.open(out)
    summary = project.ingest()
    assert all(s.rows_rejected == 0 for s in summary.sources), summary.sources
    assert all(lk.unmatched == 0 for lk in summary.links), summary.links
    return project


def test_tables_and_scale(synth_project: Project) -> None:
    tables = synth_project.status()["tables"]
    assert tables["customers"] == 4000
    assert 7 * 4000 < tables["orders"] < 14 * 4000  # about ten lines per customer
    assert tables["events"] > tables["customers"]
    assert tables["responses"] % 8 == 0 and tables["feedback"] > 50
    assert tables["accounts"] > 0


def test_planted_segments_differ(synth_project: Project) -> None:
    truth = synth_project.root / "truth" / "customers_truth.parquet"
    with synth_project.store(read_only=True) as store:
        con: duckdb.DuckDBPyConnection = store.con
        con.execute(f"CREATE TEMP VIEW truth AS SELECT * FROM read_parquet('{truth}')")
        rows = con.execute(
            """SELECT t.segment,
                      avg(date_diff('year', c.birth_date, DATE '2024-12-31')) AS age,
                      avg(o.lines) AS lines,
                      avg(o.store_share) AS store_share,
                      avg(o.discount_share) AS discount_share
               FROM truth t JOIN customers c USING (customer_id)
               JOIN (SELECT customer_id, count(*) AS lines,
                            avg((channel = 'store')::INT) AS store_share,
                            avg((discount > 0)::INT) AS discount_share
                     FROM orders GROUP BY 1) o USING (customer_id)
               GROUP BY 1"""
        ).fetchall()
        events_after = con.execute(
            "SELECT count(*) FROM orders WHERE ordered_at > TIMESTAMP '2024-12-31 23:59:59'"
        ).fetchall()[0][0]
    seg = {r[0]: r[1:] for r in rows}
    assert set(seg) == {s.name for s in SEGMENTS}
    assert seg["Loyal Seniors"][0] > 60 > seg["Young Trend Seekers"][0] + 30
    assert seg["Loyal Seniors"][2] > 0.6 > seg["Young Trend Seekers"][2]
    assert seg["Budget Families"][3] > 0.4 > seg["Premium Professionals"][3]
    assert seg["Loyal Seniors"][1] > seg["Occasional Gifters"][1]
    assert events_after == 0


def test_truth_file(synth_project: Project) -> None:
    truth = pq.read_table(synth_project.root / "truth" / "customers_truth.parquet")
    assert truth.num_rows == 4000
    assert set(truth.column_names) >= {
        "customer_id",
        "segment",
        "purchase_rate_per_year",
        "lifetime_days",
        "alive_at_end",
        "spend_level",
    }


def test_occasions_lie_in_the_traits_windows() -> None:
    """Orders planted in an occasion fall in the traits' default window of that occasion, so
    occasion_share measures what was planted."""
    years = np.arange(2015, 2035)
    first, last = (d.astype("datetime64[D]").astype(object) for d in _occasion_windows(years))
    windows = TraitsConfig().occasions
    for i, year in enumerate(years.tolist()):
        friday = black_friday(year)
        assert (first[0, i], last[0, i]) == (friday, friday + timedelta(days=3))  # to Monday
        for row, name in enumerate(("christmas", "valentines", "back_to_school"), start=1):
            lo, hi = (date.fromisoformat(f"{year}-{d}") for d in windows[name])
            assert lo <= first[row, i] <= last[row, i] <= hi, (name, year)
            assert (last[row, i] - first[row, i]).days >= 6  # holds a weekend


def test_planted_occasion_orders(synth_project: Project) -> None:
    """The share of repeat orders in the synth's own occasion windows follows the planted
    share (a weekend move keeps an occasion order in its occasion)."""
    truth = synth_project.root / "truth" / "customers_truth.parquet"
    first, last = _occasion_windows(np.arange(2022, 2025))
    days = set()
    for a, b in zip(first.ravel().tolist(), last.ravel().tolist(), strict=True):
        days.update(range(a, b + 1))
    with synth_project.store(read_only=True) as store:
        rows = store.con.execute(
            f"""SELECT t.segment, o.day FROM (
                    SELECT customer_id, order_id, min(ordered_at)::DATE - DATE '1970-01-01' AS day,
                           rank() OVER (PARTITION BY customer_id ORDER BY min(ordered_at)) AS k
                    FROM orders GROUP BY customer_id, order_id) o
                JOIN read_parquet('{truth}') t USING (customer_id) WHERE o.k > 1"""
        ).fetchall()
    share = {s.name: s.occasion for s in SEGMENTS}
    base = len(days) / (3 * 365)  # orders that land in a window by chance
    got: dict[str, list[bool]] = {}
    for segment, day in rows:
        got.setdefault(segment, []).append(day in days)
    for segment, hits in got.items():
        expected = share[segment] + (1 - share[segment]) * base
        assert abs(np.mean(hits) - expected) < 0.08, (segment, np.mean(hits), expected)
