"""The top category, channel and month of a buyer: the largest value wins, equal values (to
six decimals, whatever order they were summed in) go to the first alphabetically or the
earliest month, and lines without an amount rank last, on both engines."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from .conftest import shop_project, traits_by_customer

# tie: books 174.85 in March, toys 2.3 + 172.55 (174.85000000000002 as floats) in December,
# half each in store and web; unvalued: no amount on any line; zero: every amount 0;
# partly: the valued category beats the alphabetically first one without an amount
ORDERS = """order_id,customer_id,ordered_at,amount,category,channel
o1,tie,2024-03-05 10:00:00,174.85,books,web
o2,tie,2024-12-10 10:00:00,2.3,toys,store
o3,tie,2024-12-10 10:00:00,172.55,toys,store
o4,unvalued,2024-05-01 10:00:00,,garden,web
o5,unvalued,2024-06-01 10:00:00,,art,store
o6,zero,2024-05-01 10:00:00,0,music,web
o7,zero,2024-06-01 10:00:00,0,films,web
o8,partly,2024-05-01 10:00:00,,art,store
o9,partly,2024-06-01 10:00:00,12,garden,web
"""
CUSTOMERS = "customer_id\ntie\nunvalued\nzero\npartly\n"


def test_ties_go_to_the_first_and_missing_amounts_rank_last(tmp_path: Path, engine: str) -> None:
    shop = shop_project(tmp_path, ORDERS, CUSTOMERS)
    t = traits_by_customer(shop, shop.traits(date(2024, 12, 31), engine).run_id)
    picks = {c: (t[c]["top_category"], t[c]["top_channel"], t[c]["peak_month"]) for c in sorted(t)}
    assert picks == {
        "partly": ("garden", "web", 6),
        "tie": ("books", "store", 3),
        "unvalued": ("art", "store", 5),
        "zero": ("films", "web", 5),
    }
    assert t["tie"]["top_category_share"] == pytest.approx(0.5)
    assert t["partly"]["top_category_share"] == pytest.approx(1.0)
    # nothing to take a share of: NULL, not NaN
    assert t["unvalued"]["top_category_share"] is None
    assert t["zero"]["top_category_share"] is None
