"""Awkward input has a defined treatment on both engines (see docs/traits.md)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from personae import Project, StoreError

from .conftest import shop_project, traits_by_customer

ORDERS = """order_id,line_no,customer_id,ordered_at,amount,quantity,discount,product_id
o1,1,single,2024-01-10 10:00:00,20,1,0,p1
o2,1,early,2023-12-01 09:00:00,10,1,0,p1
o3,1,early,2024-02-01 09:00:00,30,1,5,p1
o3,2,early,2024-02-01 09:00:00,5,1,0,POST
o4,1,early,2024-03-01 09:00:00,50,1,0,p2
o4,2,early,2024-03-01 12:00:00,-10,-1,0,p2
o5,1,returner,2024-02-02 10:00:00,-15,-1,0,p1
o6,1,early,2024-06-01 09:00:00,99,1,0,p3
o7,1,,2024-01-05 09:00:00,7,1,0,p1
"""
CUSTOMERS = """customer_id,created_at
single,2024-01-01
early,2024-01-15
returner,2023-06-01
quiet,2024-01-01
"""


@pytest.fixture
def shop(tmp_path: Path) -> Project:
    return shop_project(tmp_path, ORDERS, CUSTOMERS)


def test_treatments(shop: Project, engine: str) -> None:
    summary = shop.traits(date(2024, 3, 31), engine)
    assert summary.ignored_after_as_of == 1  # the June order is after the as-of date
    t = traits_by_customer(shop, summary.run_id)
    assert set(t) == {"single", "early", "returner", "quiet"}  # anonymous o7 is nobody's
    single, early, returner, quiet = t["single"], t["early"], t["returner"], t["quiet"]
    # a single purchase day
    assert (single["frequency"], single["recency"], single["monetary_value"]) == (0, 0.0, 0.0)
    assert single["interval_mean"] is None and single["interval_cv"] is None
    # bought before created_at: acquisition is the first purchase (2023-12-01)
    assert early["tenure_days"] == (date(2024, 3, 31) - date(2023, 12, 1)).days
    assert early["purchase_days"] == 3 and early["frequency"] == 2
    # postage is not a purchase, the -10 line on 1 March is a return
    assert early["total_value"] == 90.0
    assert early["monetary_value"] == pytest.approx((30 + 50) / 2)
    assert early["returns_share"] == pytest.approx(10 / 90)
    assert early["discount_share"] == pytest.approx(5 / 95)
    assert early["interval_median"] == pytest.approx(
        ((date(2024, 2, 1) - date(2023, 12, 1)).days + 29) / 2
    )
    # only returns: no purchase traits, no RFM
    assert returner["purchase_days"] == 0 and returner["frequency"] is None
    assert returner["rfm_segment"] is None and returner["tenure_days"] is not None
    # never bought
    assert quiet["purchase_days"] == 0 and quiet["r_score"] is None


def test_no_orders_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "customers.csv").write_text(CUSTOMERS)
    (tmp_path / "personae.toml").write_text(
        '[sources.customers]\ntable = "customers"\npath = "customers.csv"\n'
    )
    project = Project.open(tmp_path)
    project.ingest()
    with pytest.raises(StoreError, match="Ingest orders first"):
        project.traits()
    summary = project.traits(date(2024, 1, 1))  # with a date it works: nobody has bought
    # 'early' was created on 2024-01-15: not a customer yet on the as-of date
    assert (summary.customers, summary.buyers, summary.not_yet_customers) == (3, 0, 1)


def test_mixed_currencies_are_never_added(tmp_path: Path, engine: str) -> None:
    (tmp_path / "orders.csv").write_text(
        "order_id,customer_id,ordered_at,amount,currency\n"
        "o1,a,2024-01-01 10:00:00,10,EUR\n"
        "o2,a,2024-01-05 10:00:00,100,USD\n"
        "o3,a,2024-01-09 10:00:00,20,EUR\n"
        "o4,b,2024-01-02 10:00:00,5,EUR\n"
    )
    (tmp_path / "personae.toml").write_text(
        '[sources.orders]\ntable = "orders"\npath = "orders.csv"\n'
    )
    project = Project.open(tmp_path)
    project.ingest()
    summary = project.traits(date(2024, 1, 31), engine)
    assert (summary.currency, summary.other_currency_lines) == ("EUR", 1)
    a = traits_by_customer(project, summary.run_id)["a"]
    assert (a["purchase_days"], a["total_value"]) == (3, 30.0)  # the USD day counts, its money not
    assert a["monetary_value"] == pytest.approx(20 / 2)
