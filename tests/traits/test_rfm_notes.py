"""An RFM dimension in which every buyer ties ranks no one, and the traits run says so: a
file whose purchases all carry one date (a customer table with spend columns and a single
snapshot date, e.g. marketing_campaign) puts every buyer in one RFM segment."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from personae import Project

from ..conftest import write_toml


def _traits(tmp_path: Path, orders: str, as_of: date) -> list[str]:
    (tmp_path / "orders.csv").write_text("order_id,customer_id,ordered_at,amount\n" + orders)
    write_toml(tmp_path, '[sources.orders]\ntable = "orders"\npath = "orders.csv"\n')
    project = Project.open(tmp_path)
    project.ingest()
    return project.traits(as_of).notes


def test_one_purchase_date_for_everyone(tmp_path: Path) -> None:
    orders = "1,a,2024-06-29,10\n2,b,2024-06-29,25\n3,c,2024-06-29,40\n"
    assert _traits(tmp_path, orders, date(2024, 6, 29)) == [
        "every one of the 3 buyers has the same days_since_last (0) and purchase_days (1): "
        "r_score and f_score rank no one (all 1), so the RFM segments, built from R and F, do "
        "not tell these buyers apart (do all purchases carry one date?)."
    ]


def test_one_purchase_day_each_is_said_without_the_date_question(tmp_path: Path) -> None:
    orders = "1,a,2024-06-01,10\n2,b,2024-06-15,25\n3,c,2024-06-29,40\n"
    assert _traits(tmp_path, orders, date(2024, 6, 30)) == [
        "every one of the 3 buyers has the same purchase_days (1): f_score ranks no one (all "
        "1), so the RFM segments, built from R and F, do not tell these buyers apart."
    ]


def test_no_note_when_both_vary(tmp_path: Path) -> None:
    orders = "1,a,2024-06-01,10\n2,a,2024-06-20,5\n3,b,2024-06-15,25\n4,c,2024-06-29,40\n"
    assert _traits(tmp_path, orders, date(2024, 6, 30)) == []
