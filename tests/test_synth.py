"""Synthetic data: reproducible, realistic, ingestible, and the planted truth is recoverable."""

from __future__ import annotations

import hashlib
import tempfile
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personae import PersonaeError, Project
from personae.config import TraitsConfig
from personae.synth import PROGRESS_STEPS, TABLES, _occasion_windows, generate
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
    with pytest.raises(PersonaeError, match="chunk"):
        generate(tmp_path, customers=5, chunk=0)


def _read(folder: Path, name: str, fmt: str = "csv") -> pa.Table:
    if fmt == "parquet":
        return pq.read_table(folder / f"{name}.parquet")
    # every column as text, so ids read back exactly as written
    return pacsv.read_csv(
        folder / f"{name}.csv", convert_options=pacsv.ConvertOptions(column_types={})
    )


def _check_whole(folder: Path, customers: int, rows: dict[str, int], fmt: str = "csv") -> None:
    """What must hold of the files as a whole however many chunks wrote them: ids unique,
    every reference resolves, and the counts agree with the truth and with `rows`."""
    t = {name: _read(folder, name, fmt).to_pydict() for name in TABLES}
    truth = pq.read_table(folder / "truth" / "customers_truth.parquet").to_pydict()
    assert {name: len(next(iter(t[name].values()))) for name in TABLES} == rows
    ids = t["customers"]["customer_id"]
    assert ids == [f"C{i:07d}" for i in range(1, customers + 1)]
    assert truth["customer_id"] == ids
    # orders: (order, line) unique, lines 1..k, one customer per order, as many as planted
    order_lines: dict[str, list[int]] = {}
    owner: dict[str, str] = {}
    orders = t["orders"]
    for o, line, c in zip(
        orders["order_id"], orders["line_no"], orders["customer_id"], strict=True
    ):
        order_lines.setdefault(o, []).append(int(line))
        assert owner.setdefault(o, c) == c
    assert all(sorted(v) == list(range(1, len(v) + 1)) for v in order_lines.values())
    per_customer = dict.fromkeys(ids, 0)
    for c in owner.values():
        per_customer[c] += 1
    planted = [
        0 if p else 1 + int(r)
        for p, r in zip(truth["prospect"], truth["repeat_orders"], strict=True)
    ]
    assert [per_customer[c] for c in ids] == planted
    # events: unique ids; one anonymous visitor per five customers in all
    assert len(set(t["events"]["event_id"])) == rows["events"]
    anon = [a for a in t["events"]["anonymous_id"] if a]
    assert sorted(anon) == [f"anon{i:07d}" for i in range(1, customers // 5 + 1)]
    assert set(filter(None, t["events"]["customer_id"])) <= set(ids)
    # survey: every respondent answers every item once, response id from the customer number
    pairs = list(zip(t["responses"]["customer_id"], t["responses"]["item_id"], strict=True))
    assert len(set(pairs)) == len(pairs) and len(pairs) % 8 == 0
    responses = zip(t["responses"]["response_id"], t["responses"]["customer_id"], strict=True)
    assert all(r[1:] == c[1:] for r, c in responses)
    assert len(set(t["feedback"]["feedback_id"])) == rows["feedback"]
    assert set(t["feedback"]["customer_id"]) <= set(ids)
    accounts = t["accounts"]["account_id"]
    assert len(set(accounts)) == len(accounts) >= 1
    assert set(filter(None, t["customers"]["account_id"])) <= set(accounts)


def test_chunks_continue_ids(tmp_path: Path) -> None:
    """Two chunks (the second shorter) number customers, orders, events, feedback, accounts
    and anonymous visitors on from the first: unique ids and the planted counts."""
    r = generate(tmp_path, customers=1100, seed=5, chunk=600)
    _check_whole(tmp_path, 1100, r.rows)
    assert r.rows["accounts"] > 1


def test_chunk_depends_on_its_index_only(tmp_path: Path) -> None:
    """A chunk's customers come from the seed and the chunk's index, not from how many
    customers follow: the first chunk is the same file prefix for 700 and 1000 customers."""
    generate(tmp_path / "a", customers=700, seed=9, chunk=500)
    generate(tmp_path / "b", customers=1000, seed=9, chunk=500)
    a, b = (_read(tmp_path / d, "customers").slice(0, 500) for d in ("a", "b"))
    assert a.equals(b)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    customers=st.integers(1, 60),
    chunk=st.integers(1, 30),
    seed=st.integers(0, 2**32 - 1),
    fmt=st.sampled_from(["csv", "parquet"]),
)
def test_counts_match_truth_at_any_chunk_size(
    customers: int, chunk: int, seed: int, fmt: str
) -> None:
    """With chunk boundaries forced small (down to one customer a chunk), the files still
    hold unique ids and exactly the planted number of customers, orders and visitors."""
    with tempfile.TemporaryDirectory() as folder:
        r = generate(folder, customers=customers, seed=seed, fmt=fmt, chunk=chunk)
        _check_whole(Path(folder), customers, r.rows, fmt)


def test_progress_steps(tmp_path: Path) -> None:
    """The callback is called the CLI bar's seven times, the last with every customer done."""
    said: list[str] = []
    generate(tmp_path, customers=50, seed=1, chunk=7, progress=said.append)
    assert len(said) == PROGRESS_STEPS and said[-1] == "50 of 50 customers"
    said.clear()
    generate(tmp_path, customers=50, seed=1, progress=said.append)  # one chunk
    assert len(said) == PROGRESS_STEPS


@pytest.fixture(scope="module")
def synth_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    out = tmp_path_factory.mktemp("synth")
    generate(out, customers=4000, seed=11, chunk=1500)  # three chunks, the last shorter
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


def test_a_synth_that_stops_midway_leaves_no_short_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import personae.synth as synth

    made = synth._chunk

    def second_chunk_fails(*args: object, **kwargs: object) -> dict[str, pa.Table]:
        if args[2] > 0:  # lo: the second chunk
            raise OSError("No space left on device")
        return made(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(synth, "_chunk", second_chunk_fails)
    with pytest.raises(OSError):
        generate(tmp_path, customers=40, seed=1, chunk=20)
    left = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert left == [], left  # the first chunk was written, then removed with its file
    monkeypatch.setattr(synth, "_chunk", made)
    generate(tmp_path, customers=40, seed=1, chunk=20)
    assert pacsv.read_csv(tmp_path / "customers.csv").num_rows == 40
    assert not list(tmp_path.rglob("*.partial"))
