"""Mall customers, clean and dirty: every defect listed in shared/data/README.md is handled."""

from __future__ import annotations

from pathlib import Path

from personae import Project


def test_clean_file(data_dir: Path, tmp_path: Path) -> None:
    project, (p,) = Project.init([data_dir / "mall_customers/Mall_Customers.csv"], tmp_path)
    assert p.source.columns == {
        "CustomerID": "customer_id",
        "Genre": "gender",
        "Age": "age",
        "Annual Income (k$)": "income",
    }
    summary = project.ingest()
    assert (summary.sources[0].rows_read, summary.sources[0].rows_loaded) == (200, 200)
    assert summary.sources[0].rejected == {}
    with project.store(read_only=True) as store:
        row = store.con.execute(
            "SELECT count(*) FILTER (WHERE gender = 'female'), round(avg(age), 2), "
            "round(avg(income), 2), min(customer_id), "
            "round(avg((attributes->>'Spending Score (1-100)')::INT), 2) FROM customers"
        ).fetchall()[0]
    # README: Female=112, mean age 38.85, mean income 60.56 k$, mean score 50.20
    assert row == (112, 38.85, 60560.0, "0001", 50.2)


def test_dirty_file_defects(data_dir: Path, tmp_path: Path) -> None:
    project, (p,) = Project.init([data_dir / "mall_customers/Mall_Customers_dirty.csv"], tmp_path)
    assert p.source.id_pattern == r"^\d+$"
    assert p.source.ranges == {"Spending Score (1-100)": [1.0, 100.0]}
    assert p.source.scale == {"Annual Income (k$)": 1000.0}
    assert not p.source.wide_spend
    (s,) = project.ingest().sources
    assert s.rows_read == 203  # the blank line 104 is skipped
    assert s.rejected == {"duplicate": 3, "bad_id": 1}
    assert s.rows_loaded == 199
    assert s.values_nulled == {"bad_number": 1, "out_of_range": 1}
    with project.store(read_only=True) as store:
        rejects = store.con.execute(
            'SELECT source_row, reason, "column", kept FROM rejects_customers ORDER BY source_row'
        ).fetchall()
        assert rejects == [
            (59, "duplicate", None, False),
            (63, "out_of_range", "Spending Score (1-100)", True),
            (69, "bad_number", "income", True),
            (90, "duplicate", None, False),
            (113, "bad_id", "customer_id", False),
            (122, "duplicate", None, False),
        ]
        genders = store.con.execute(
            "SELECT source_row, gender FROM customers WHERE source_row IN (23, 87, 128) ORDER BY 1"
        ).fetchall()
        assert genders == [(23, "male"), (87, "female"), (128, "female")]
        nulls = store.con.execute(
            "SELECT source_row FROM customers WHERE age IS NULL OR income IS NULL "
            "OR attributes->>'Spending Score (1-100)' IS NULL ORDER BY 1"
        ).fetchall()
        assert nulls == [(32,), (63,), (69,), (155,)]
        raw = store.con.execute(
            "SELECT raw->>'CustomerID' FROM rejects_customers WHERE reason = 'bad_id'"
        ).fetchall()
        assert raw == [("C0109",)]
