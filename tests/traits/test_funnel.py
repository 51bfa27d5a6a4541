"""The funnel by a trait: customers without a value are one named group, a trait with too
many values is refused with what to use instead, and a store without events or orders
says so instead of printing a funnel of zeros."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from personae import Project
from personae.errors import StoreError

from ..conftest import write_toml

CUSTOMERS = "customer_id,age\n" + "".join(f"c{i},{20 + i}\n" for i in range(60))
ORDERS = "order_id,customer_id,ordered_at,amount\n1,c1,2024-05-02,10\n2,c2,2024-05-03,20\n"


def _project(tmp_path: Path, orders: bool) -> Project:
    (tmp_path / "customers.csv").write_text(CUSTOMERS)
    toml = '[sources.customers]\ntable = "customers"\npath = "customers.csv"\n'
    if orders:
        (tmp_path / "orders.csv").write_text(ORDERS)
        toml += '[sources.orders]\ntable = "orders"\npath = "orders.csv"\n'
    write_toml(tmp_path, toml)
    project = Project.open(tmp_path)
    project.ingest()
    project.traits(date(2024, 6, 30))
    return project


def test_groups_without_a_value_and_too_many_groups(tmp_path: Path) -> None:
    project = _project(tmp_path, orders=True)
    rows = project.funnel("rfm_segment")
    purchased = {r["group"]: r["customers"] for r in rows if r["stage"] == "purchase"}
    # the 58 customers without a purchase have no RFM segment: one group, named
    assert purchased == {"(unknown)": 0, "Lost": 1, "New Customers": 1}
    with pytest.raises(StoreError) as err:
        project.funnel("age")
    assert str(err.value) == (
        "--by age: 60 different values, too many groups for a funnel (at most 50)."
    )
    assert "age_band" in (err.value.hint or "")


def test_no_events_or_orders(tmp_path: Path) -> None:
    project = _project(tmp_path, orders=False)
    with pytest.raises(StoreError) as err:
        project.funnel()
    assert str(err.value).startswith("No customer has reached a buying-journey stage")
