"""Marketing campaign: TAB, BOM + day-first dates and ISO dates give identical customers."""

from __future__ import annotations

from pathlib import Path

import pytest

from personae import Project

FILES = {
    "marketing_campaign.csv": "%d-%m-%Y",
    "marketing_campaign_bom_dmy_dates.csv": "%d/%m/%Y",
    "ml_project1_data.csv": "%Y-%m-%d",
}


@pytest.mark.parametrize("name", FILES)
def test_each_encoding(data_dir: Path, tmp_path: Path, name: str) -> None:
    project, (p,) = Project.init([data_dir / "marketing_campaign" / name], tmp_path)
    assert p.source.table == "customers"
    assert p.source.date_formats == {"Dt_Customer": FILES[name]}
    assert p.source.wide_spend == {
        "MntWines": "Wines",
        "MntFruits": "Fruits",
        "MntMeatProducts": "Meat",
        "MntFishProducts": "Fish",
        "MntSweetProducts": "Sweet",
        "MntGoldProds": "Gold",
    }
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rejected) == (2240, 2240, {})
    # three birth years before 1910 are implausible: nulled, reported, row kept
    assert s.values_nulled == {"out_of_range": 3}
    with project.store(read_only=True) as store:
        row = store.con.execute(
            "SELECT count(*) FILTER (WHERE income IS NULL), max(income), "
            "min(created_at)::DATE::VARCHAR, max(created_at)::DATE::VARCHAR, "
            "count(*) FILTER (WHERE education = '2n Cycle'), "
            "count(*) FILTER (WHERE marital_status = 'YOLO'), "
            "sum((attributes->>'Response')::INT) FROM customers"
        ).fetchall()[0]
        assert row == (24, 666666.0, "2012-07-30", "2014-06-29", 203, 2, 334)
        bad_years = store.con.execute(
            "SELECT raw->>'ID', raw->>'Year_Birth' FROM rejects_customers ORDER BY 1"
        ).fetchall()
        assert bad_years == [("11004", "1893"), ("1150", "1899"), ("7829", "1900")]
        spend = store.con.execute(
            "SELECT category, sum(amount)::BIGINT FROM orders GROUP BY 1 ORDER BY 1"
        ).fetchall()
        totals = store.con.execute(
            "SELECT sum((attributes->>'Teenhome')::INT) FROM customers"
        ).fetchall()[0][0]
    assert totals > 0
    assert [c for c, _ in spend] == ["Fish", "Fruits", "Gold", "Meat", "Sweet", "Wines"]


def test_all_three_agree(data_dir: Path, tmp_path: Path) -> None:
    seen = []
    for i, name in enumerate(FILES):
        project, _ = Project.init([data_dir / "marketing_campaign" / name], tmp_path / str(i))
        project.ingest()
        with project.store(read_only=True) as store:
            seen.append(
                store.con.execute(
                    "SELECT list((customer_id, birth_year, income, created_at, children) "
                    "ORDER BY customer_id), (SELECT list((order_id, category, amount) "
                    "ORDER BY order_id, category) FROM orders) FROM customers"
                ).fetchall()[0]
            )
    assert seen[0] == seen[1] == seen[2]
