"""UCI Online Retail: every count in shared/data/README.md must come out of the ingest summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from personae import Project

from ..conftest import ONLINE_RETAIL_COLUMNS, online_retail_source, write_toml

README_FLAGS = {
    "anonymous (no customer id)": 135080,
    "negative quantity": 10624,
    "zero price": 2515,
    "negative price": 2,
    "non-positive price": 2517,
    "non-product codes": 2916,
    "cancelled orders (lines)": 9288,
    "returns and cancellations (is_return)": 10624,
}


def _check(project: Project) -> None:
    summary = project.ingest()
    (s,) = summary.sources
    assert s.rows_read == 541909
    assert s.rejected == {"duplicate": 5268}
    assert s.rows_loaded == 541909 - 5268
    assert s.flags == README_FLAGS
    assert s.attributes == ["Country"]
    with project.store(read_only=True) as store:
        row = store.con.execute(
            "SELECT count(DISTINCT customer_id), count(DISTINCT order_id), "
            "count(*) FILTER (WHERE is_return), min(ordered_at)::VARCHAR, "
            "max(ordered_at)::VARCHAR, count(*) FILTER (WHERE is_non_product) FROM orders"
        ).fetchone()
        # after exact duplicates are dropped (checked with pandas drop_duplicates):
        # 10,587 return lines and 2,910 non-product lines remain
        assert row == (4372, 25900, 10587, "2010-12-01 08:26:00", "2011-12-09 12:50:00", 2910)
        # the pound sign survives the Latin-1 file
        names = store.con.execute(
            "SELECT DISTINCT product_name FROM orders WHERE product_id = 'gift_0001_40'"
        ).fetchall()
        assert ("Dotcomgiftshop Gift Voucher £40.00",) in names
        dup = store.con.execute(
            "SELECT source_row, reason, kept FROM rejects_orders ORDER BY source_row LIMIT 1"
        ).fetchone()
        # pandas: the first repeated row is data row 517, i.e. line 519 (a copy of line 496)
        assert dup == (519, "duplicate", False)
    # the same content again adds nothing
    again = project.ingest()
    assert again.sources[0].status == "unchanged"
    assert again.tables["orders"] == 541909 - 5268


def test_csv_via_init_reproduces_readme_counts(data_dir: Path, tmp_path: Path) -> None:
    project, (proposal,) = Project.init([data_dir / "online_retail/online_retail.csv.gz"], tmp_path)
    assert proposal.source.table == "orders"
    assert proposal.source.encoding == "latin-1"
    assert proposal.source.date_formats == {"InvoiceDate": "%m/%d/%Y %H:%M"}
    assert proposal.source.cancel_pattern == "^C"
    assert proposal.source.columns == ONLINE_RETAIL_COLUMNS
    _check(project)


@pytest.mark.slow
def test_xlsx_gives_the_same_counts(data_dir: Path, tmp_path: Path) -> None:
    write_toml(tmp_path, online_retail_source(data_dir / "online_retail/Online_Retail.xlsx"))
    _check(Project.open(tmp_path))
