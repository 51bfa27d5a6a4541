"""Airline tweets, Olist reviews and the Olist B2B funnel."""

from __future__ import annotations

from pathlib import Path

from personae import Project
from personae.store.schemas import REJECT_REASONS

from ..conftest import write_toml


def test_airline_tweets(data_dir: Path, tmp_path: Path) -> None:
    project, (p,) = Project.init([data_dir / "airline_tweets/Tweets.csv"], tmp_path)
    assert p.source.table == "feedback"
    assert p.source.columns == {
        "tweet_id": "feedback_id",
        "negativereason": "label",
        "text": "text",
        "tweet_created": "created_at",
    }
    (s,) = project.ingest().sources
    # README: 14,640 rows, 14,485 distinct ids; 36 exact copies and 119 conflicting repeats
    assert (s.rows_read, s.rows_loaded) == (14640, 14485)
    assert s.rejected == {"duplicate_id": 119, "duplicate": 36}
    assert set(s.rejected) <= set(REJECT_REASONS)  # every code is declared and documented
    with project.store(read_only=True) as store:
        row = store.con.execute(
            "SELECT count(*) FILTER (WHERE text LIKE '%' || chr(10) || '%'), "
            "min(created_at)::VARCHAR, max(created_at)::VARCHAR, "
            "count(*) FILTER (WHERE label = 'Customer Service Issue'), "
            "min(length(feedback_id)), max(length(feedback_id)) FROM feedback"
        ).fetchall()[0]
        # -0800 local times become UTC: 2015-02-16 23:36:05 -0800 = 2015-02-17 07:36:05
        assert row[1:3] == ("2015-02-17 07:36:05", "2015-02-24 19:53:37")
        assert row[0] > 0 and row[3] > 2800 and row[4:] == (18, 18)
        # a multi-line record keeps its physical line number
        first = store.con.execute(
            "SELECT min(source_row), max(source_row) FROM feedback"
        ).fetchall()[0]
        assert first[0] == 2 and first[1] > 14641


def test_olist_reviews_link_through_orders(data_dir: Path, tmp_path: Path) -> None:
    d = data_dir / "olist_reviews"
    project, props = Project.init(
        [
            d / "olist_customers_dataset.csv",
            d / "olist_orders_dataset.csv",
            d / "olist_order_reviews_dataset.csv",
        ],
        tmp_path,
    )
    assert [p.source.table for p in props] == ["customers", "orders", "feedback"]
    summary = project.ingest()
    counts = {s.table: (s.rows_read, s.rows_loaded) for s in summary.sources}
    assert counts == {"customers": (4000, 4000), "orders": (4000, 4000), "feedback": (3986, 1656)}
    # a review without text is not feedback text: rejected with its reason, nothing lost
    assert summary.sources[2].rejected == {"missing_value": 2330}
    links = {(lk.table, lk.column): (lk.keys, lk.unmatched) for lk in summary.links}
    assert links[("orders", "customer_id")] == (4000, 0)
    assert links[("feedback", "order_id")][1] == 0
    with project.store(read_only=True) as store:
        linked = store.con.execute(
            "SELECT count(*) FILTER (WHERE customer_id IS NOT NULL), count(*) FROM feedback"
        ).fetchall()[0]
        zips = store.con.execute(
            "SELECT count(*) FILTER (WHERE postal_code LIKE '0%') FROM customers"
        ).fetchall()[0][0]
    assert linked == (1656, 1656)
    assert zips == 981  # README: leading zeros kept


def test_olist_unique_ids_report_unmatched_keys(data_dir: Path, tmp_path: Path) -> None:
    """Keying customers by customer_unique_id makes the orders' per-order ids match nothing;
    the summary must say so clearly instead of silently losing the link."""
    d = data_dir / "olist_reviews"
    write_toml(
        tmp_path,
        f"""
[sources.customers]
table = "customers"
path = "{d / "olist_customers_dataset.csv"}"
columns = {{ customer_unique_id = "customer_id", customer_city = "city" }}
[sources.orders]
table = "orders"
path = "{d / "olist_orders_dataset.csv"}"
[sources.orders.columns]
order_id = "order_id"
customer_id = "customer_id"
order_purchase_timestamp = "ordered_at"
""",
    )
    summary = Project.open(tmp_path).ingest()
    assert summary.tables["customers"] == 3998  # 2 repeat buyers share a unique id
    assert summary.sources[0].rejected == {"duplicate_id": 2}
    (link,) = [lk for lk in summary.links if lk.table == "orders"]
    assert (link.column, link.target, link.keys, link.unmatched) == (
        "customer_id",
        "customers",
        4000,
        4000,
    )
    assert len(link.examples) == 5


def test_b2b_funnel_leads_then_deals(data_dir: Path, tmp_path: Path) -> None:
    d = data_dir / "olist_b2b_funnel"
    write_toml(
        tmp_path,
        f"""
[sources.leads]
table = "accounts"
path = "{d / "olist_marketing_qualified_leads_dataset.csv"}"
columns = {{ mql_id = "account_id", first_contact_date = "created_at", origin = "origin" }}
constants = {{ stage = "lead" }}
events = [{{ event_type = "lead_created", at = "first_contact_date" }}]

[sources.deals]
table = "accounts"
path = "{d / "olist_closed_deals_dataset.csv"}"
mode = "update"
constants = {{ stage = "won" }}
events = [{{ event_type = "deal_won", at = "won_date" }}]
[sources.deals.columns]
mql_id = "account_id"
won_date = "stage_at"
business_segment = "industry"
sr_id = "owner"
""",
    )
    project = Project.open(tmp_path)
    summary = project.ingest()
    leads, deals = summary.sources
    assert (leads.rows_read, leads.rows_loaded, leads.derived) == (8000, 8000, {"events": 8000})
    assert (deals.rows_read, deals.rows_loaded, deals.derived) == (842, 842, {"events": 842})
    assert summary.tables["accounts"] == 8000
    assert summary.tables["events"] == 8842
    with project.store(read_only=True) as store:
        stages = dict(
            store.con.execute("SELECT stage, count(*) FROM accounts GROUP BY 1").fetchall()
        )
        row = store.con.execute(
            "SELECT count(*) FILTER (WHERE origin IS NULL), "
            "count(*) FILTER (WHERE industry = 'jewerly'), "
            "count(*) FILTER (WHERE attributes->>'lead_behaviour_profile' = 'cat, wolf'), "
            "min(stage_at)::VARCHAR, max(stage_at)::VARCHAR FROM accounts"
        ).fetchall()[0]
    assert stages == {"lead": 7158, "won": 842}
    assert row == (60, 8, 8, "2017-12-05 02:00:00", "2018-11-14 18:04:19")


def test_init_proposes_update_for_a_second_keyed_file(data_dir: Path, tmp_path: Path) -> None:
    d = data_dir / "olist_b2b_funnel"
    _, (leads, deals) = Project.init(
        [d / "olist_marketing_qualified_leads_dataset.csv", d / "olist_closed_deals_dataset.csv"],
        tmp_path,
    )
    assert (leads.source.mode, deals.source.mode) == (None, "update")
