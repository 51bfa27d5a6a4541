"""CDNOW: whitespace-separated text, YYYYMMDD dates, with and without a header line."""

from __future__ import annotations

from pathlib import Path

from personae import Project


def test_master_with_header(data_dir: Path, tmp_path: Path) -> None:
    project, (p,) = Project.init([data_dir / "cdnow/CDNOW_master.txt"], tmp_path)
    assert p.staged.kind == "whitespace" and p.source.header is True
    assert p.source.date_formats == {"date": "%Y%m%d"}
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rejected) == (69659, 69659, {})
    with project.store(read_only=True) as store:
        row = store.con.execute(
            "SELECT count(DISTINCT customer_id), sum(quantity)::BIGINT, round(sum(amount), 2), "
            "count(*) FILTER (WHERE amount = 0), min(ordered_at)::DATE::VARCHAR, "
            "max(ordered_at)::DATE::VARCHAR, min(source_row), max(source_row) FROM orders"
        ).fetchall()[0]
    # README: 23,570 customers, 167,881 CDs, $2,500,315.63, 80 zero-value lines
    assert row == (23570, 167881, 2500315.63, 80, "1997-01-01", "1998-06-30", 2, 69660)


def test_sample_without_header(data_dir: Path, tmp_path: Path) -> None:
    project, (p,) = Project.init([data_dir / "cdnow/CDNOW_sample.txt"], tmp_path)
    assert p.source.header is False
    assert p.source.columns == {
        "column1": "customer_id",
        "column3": "ordered_at",
        "column4": "quantity",
        "column5": "amount",
    }
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded) == (6919, 6919)
    with project.store(read_only=True) as store:
        row = store.con.execute(
            "SELECT count(DISTINCT customer_id), sum(quantity)::BIGINT, round(sum(amount), 2), "
            "count(DISTINCT attributes->>'column2') FROM orders"
        ).fetchall()[0]
    # README: 2,357 customers, 16,479 CDs, $244,091.94
    assert row == (2357, 16479, 244091.94, 2357)
