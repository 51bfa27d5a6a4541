"""Lifecycle stages, occasions and the buying journey on hand-made customers whose answers
are known, on both engines."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from personae import Project
from personae.traits.moments import black_friday

from .conftest import csv_project, traits_by_customer

AS_OF = date(2024, 12, 31)


def _orders() -> str:
    rows = ["order_id,customer_id,ordered_at,amount,category,channel"]
    n = 0

    def buy(who: str, day: date, amount: float = 10.0, hour: int = 10) -> None:
        nonlocal n
        n += 1
        rows.append(f"o{n},{who},{day} {hour:02d}:00:00,{amount},toys,web")

    for k in range(6):  # every 10 days, last 12 days ago: active
        buy("steady", AS_OF - timedelta(days=12 + 10 * (5 - k)))
    for k in range(6):  # every 10 days, last 20 days ago: at risk (2 intervals)
        buy("slipping", AS_OF - timedelta(days=20 + 10 * (5 - k)))
    for k in range(6):  # every 10 days, last 40 days ago: lapsed (4 intervals)
        buy("gone", AS_OF - timedelta(days=40 + 10 * (5 - k)))
    for k in range(5):  # every 10 days, then 60 days of silence, bought 3 days ago
        buy("back", AS_OF - timedelta(days=103 - 10 * k))
    buy("back", AS_OF - timedelta(days=3))
    buy("newbie", AS_OF - timedelta(days=4))  # one purchase, not yet overdue
    # occasions: Black Friday 2024 is 29 November; Christmas window 1-24 December
    buy("shopper", date(2024, 11, 29), 30.0, hour=20)
    buy("shopper", date(2024, 12, 2), 20.0, hour=20)  # Cyber Monday and Christmas window
    buy("shopper", date(2024, 12, 10), 25.0, hour=9)
    buy("shopper", date(2024, 7, 6), 25.0, hour=14)  # a Saturday in July
    return "\n".join(rows) + "\n"


EVENTS = """event_id,customer_id,occurred_at,event_type
e1,browser,2024-10-01 10:00:00,page_view
e2,browser,2024-10-03 10:00:00,search
e3,browser,2024-10-04 10:00:00,product_view
e4,newbie,2024-12-20 10:00:00,page_view
e5,newbie,2024-12-22 10:00:00,product_view
e6,newbie,2024-12-29 10:00:00,review
"""


@pytest.fixture
def shop(tmp_path: Path) -> Project:
    (tmp_path / "orders.csv").write_text(_orders())
    (tmp_path / "events.csv").write_text(EVENTS)
    (tmp_path / "customers.csv").write_text("customer_id,birth_date\nshopper,1990-12-05\n")
    (tmp_path / "personae.toml").write_text(
        '[sources.orders]\ntable = "orders"\npath = "orders.csv"\n'
        '[sources.events]\ntable = "events"\npath = "events.csv"\n'
        '[sources.customers]\ntable = "customers"\npath = "customers.csv"\n'
    )
    project = Project.open(tmp_path)
    project.ingest()
    return project


def test_black_friday_dates() -> None:
    assert [black_friday(y) for y in (2022, 2023, 2024, 2025)] == [
        date(2022, 11, 25),
        date(2023, 11, 24),
        date(2024, 11, 29),
        date(2025, 11, 28),
    ]


def test_lifecycle_against_own_rhythm(shop: Project, engine: str) -> None:
    t = traits_by_customer(shop, shop.traits(AS_OF, engine).run_id)
    stages = {k: v["lifecycle_stage"] for k, v in t.items()}
    assert stages == {
        "steady": "active",
        "slipping": "at risk",
        "gone": "lapsed",
        "back": "reactivated",
        "newbie": "new",
        "browser": "prospect",
        "shopper": "at risk",
    }  # median gap 8 days, silent for 21
    assert t["slipping"]["expected_interval"] == 10.0
    assert t["slipping"]["overdue_ratio"] == pytest.approx(2.0)
    # one-timers are measured against the median rhythm of everyone with repeats
    assert t["newbie"]["expected_interval"] == 10.0


def test_occasions_and_timing(shop: Project, engine: str) -> None:
    t = traits_by_customer(shop, shop.traits(AS_OF, engine).run_id)["shopper"]
    assert t["black_friday_share"] == pytest.approx(50 / 100)  # 29 Nov and Cyber Monday
    assert t["christmas_share"] == pytest.approx(45 / 100)  # 2 and 10 December
    assert t["occasion_share"] == pytest.approx(75 / 100)  # Cyber Monday counted once
    assert t["top_occasion"] == "black_friday"
    assert t["weekend_share"] == pytest.approx(25 / 100)
    assert t["evening_share"] == pytest.approx(50 / 100)
    assert t["morning_share"] == pytest.approx(25 / 100)
    assert t["peak_month"] == 12
    assert t["birthday_month_share"] == pytest.approx(45 / 100)
    with shop.store(read_only=True) as store:
        rows = store.con.execute(
            "SELECT occasion, spend FROM occasion_spend WHERE customer_id = 'shopper' "
            "AND run_id = (SELECT max(run_id) FROM occasion_spend) ORDER BY 1"
        ).fetchall()
        cats = store.con.execute(
            "SELECT category, spend, share FROM category_spend WHERE customer_id = 'shopper' "
            "AND run_id = (SELECT max(run_id) FROM category_spend)"
        ).fetchall()
    assert rows == [("black_friday", 50.0), ("christmas", 45.0)]
    assert cats == [("toys", 100.0, 1.0)]


def test_journey(shop: Project, engine: str) -> None:
    t = traits_by_customer(shop, shop.traits(AS_OF, engine).run_id)
    assert (t["browser"]["journey_stage"], t["browser"]["journey_stage_index"]) == ("evaluation", 3)
    assert t["browser"]["days_need_to_search"] == 2
    assert t["browser"]["days_search_to_evaluation"] == 1
    assert t["newbie"]["journey_stage"] == "repeat_advocacy"  # wrote a review
    assert t["newbie"]["days_evaluation_to_purchase"] == 5  # viewed 22 Dec, bought 27 Dec
    assert t["newbie"]["days_to_first_purchase"] == 7
    assert t["steady"]["journey_stage"] == "repeat_advocacy"
    rows = {(r["group"], r["stage"]): r for r in shop.funnel()}
    assert rows[("all", "purchase")]["customers"] == 6
    assert rows[("all", "evaluation")]["customers"] == 7
    assert rows[("all", "purchase")]["conversion"] == pytest.approx(6 / 7)


ORDERS_LATE = """order_id,customer_id,ordered_at,amount
o1,late,2024-12-01 10:00:00,10
o2,both,2024-12-10 10:00:00,10
"""
# `late` looked at the product only after buying; `both` compared before and after;
# `web` used a platform but never the app, `quiet` no platform at all; `tie` used two
# devices equally often (the alphabetical first wins) and `desk` mostly a desktop
EVENTS_LATE = """event_id,customer_id,occurred_at,event_type,platform,device_type
e1,late,2024-12-05 10:00:00,product_view,web,mobile
e2,late,2024-12-06 10:00:00,page_view,web,mobile
e3,both,2024-12-04 10:00:00,search,app,tablet
e4,both,2024-12-07 10:00:00,product_view,app,tablet
e5,both,2024-12-20 10:00:00,product_view,web,tablet
e6,web,2024-12-20 10:00:00,page_view,web,mobile
e7,quiet,2024-12-20 10:00:00,page_view,,
e8,tie,2024-12-20 10:00:00,page_view,app,mobile
e9,tie,2024-12-21 10:00:00,page_view,app,desktop
e10,desk,2024-12-21 10:00:00,page_view,web,desktop
e11,desk,2024-12-22 10:00:00,page_view,web,desktop
e12,desk,2024-12-23 10:00:00,page_view,web,mobile
"""


def test_events_after_buying_and_technographics(tmp_path: Path, engine: str) -> None:
    project = csv_project(tmp_path, orders=ORDERS_LATE, events=EVENTS_LATE)
    t = traits_by_customer(project, project.traits(AS_OF, engine).run_id)
    # no evaluation or earlier stage before the first purchase: no time to purchase
    assert t["late"]["journey_stage"] == "purchase"
    assert t["late"]["days_evaluation_to_purchase"] is None
    assert t["late"]["days_to_first_purchase"] is None
    # the first evaluation (7 Dec) and first stage (search, 4 Dec) before buying on 10 Dec
    assert t["both"]["days_evaluation_to_purchase"] == 3
    assert t["both"]["days_to_first_purchase"] == 6
    assert t["both"]["app_share"] == pytest.approx(2 / 3)
    assert t["web"]["app_share"] == 0.0  # a platform, never the app: 0, not unknown
    assert t["quiet"]["app_share"] is None  # no platform on any event: unknown
    assert t["quiet"]["main_device"] is None
    assert t["tie"]["main_device"] == "desktop"
    assert t["desk"]["main_device"] == "desktop"
    assert t["desk"]["events_90d"] == 3
    assert t["web"]["journey_stage"] == "need_recognition"
