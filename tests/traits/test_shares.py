"""Share traits are 0 when none of a buyer's known value falls in the part (a store-only
buyer's online_share), and NULL only when there is nothing to take a share of (no orders,
no amount or no channel), on both engines."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from personae import Project

from .conftest import shop_project, traits_by_customer

ORDERS = """order_id,customer_id,ordered_at,amount,channel
o1,store_only,2024-03-05 10:00:00,40,store
o2,store_only,2024-04-09 10:00:00,60,Store
o3,mixed,2024-03-05 10:00:00,30,web
o4,mixed,2024-04-09 10:00:00,10,store
o5,online,2024-03-05 10:00:00,25,App
o6,no_channel,2024-03-05 10:00:00,25,
o7,free,2024-03-05 10:00:00,0,store
o8,gifter,2024-12-10 10:00:00,50,store
o9,gifter,2024-03-05 10:00:00,50,store
"""
CUSTOMERS = "customer_id\nstore_only\nmixed\nonline\nno_channel\nfree\ngifter\nbrowser\n"


@pytest.fixture
def shop(tmp_path: Path) -> Project:
    return shop_project(tmp_path, ORDERS, CUSTOMERS)


def test_zero_is_not_unknown(shop: Project, engine: str) -> None:
    t = traits_by_customer(shop, shop.traits(date(2024, 12, 31), engine).run_id)
    online = {c: t[c]["online_share"] for c in t}
    assert online == {
        "store_only": 0.0,  # no online line: 0, not NULL (a sum over no rows)
        "mixed": pytest.approx(0.75),
        "online": 1.0,  # channels compare case-insensitively
        "no_channel": None,  # no line says where it was bought
        "free": None,  # nothing to take a share of
        "gifter": 0.0,
        "browser": None,  # no orders at all
    }
    occasion = {c: t[c]["occasion_share"] for c in t}
    assert occasion == {
        "store_only": 0.0,
        "mixed": 0.0,
        "online": 0.0,
        "no_channel": 0.0,
        "free": None,  # a total of 0, like weekend_share
        "gifter": 0.5,  # 10 December is in the christmas window
        "browser": None,
    }
    gifter = t["gifter"]
    assert (gifter["christmas_share"], gifter["black_friday_share"]) == (0.5, 0.0)
    assert t["free"]["christmas_share"] is None and t["free"]["weekend_share"] is None
