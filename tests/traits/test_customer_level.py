"""Customer-level tables (one row per customer with summaries, no orders): purchase, RFM,
lifecycle and value traits come from the summaries; yes/no outcomes stay as labels; predict
says it needs transactions (docs/loading-real-files.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from personae import PersonaeError, Project

from .conftest import traits_by_customer

TELCO = """customerID,gender,SeniorCitizen,tenure,MonthlyCharges,TotalCharges,Churn
7590-VHVEG,Female,0,1,29.85,29.85,No
5575-GNVDE,Male,0,34,56.95,1889.5,No
3668-QPYBK,Male,0,2,53.85,108.15,Yes
9237-HQITU,Female,0,2,70.70,,Yes
"""

SHOP = """CustomerID,LastPurchaseDate,NumberOfPurchases,TotalSpend,Responded,Created
c1,2024-03-30,12,600.00,yes,2023-04-01
c2,2024-01-01,3,90.00,no,2023-10-03
c3,2023-06-15,1,45.00,no,2023-06-15
c4,,0,,no,2024-02-01
"""


def test_subscription_table(tmp_path: Path, engine: str) -> None:
    (tmp_path / "telco.csv").write_text(TELCO)
    project, (p,) = Project.init([tmp_path / "telco.csv"], tmp_path)
    assert p.source.table == "customers"
    assert {k: v for k, v in p.source.columns.items() if k != "gender"} == {
        "customerID": "customer_id",
        "tenure": "tenure_months",
        "MonthlyCharges": "monthly_charges",
        "TotalCharges": "total_spend",
        "Churn": "churned",
    }
    project.ingest()
    s = project.traits(date(2024, 6, 30), engine)
    assert (s.customers, s.buyers) == (4, 4)
    assert s.notes[0].startswith("4 customers without orders have purchase traits from")
    t = traits_by_customer(project, s.run_id)
    new, loyal, left = t["7590-VHVEG"], t["5575-GNVDE"], t["3668-QPYBK"]
    assert loyal["history_source"] == "summary"
    # a month of tenure is one monthly payment
    assert (loyal["purchase_days"], loyal["frequency"], loyal["total_value"]) == (34, 33, 1889.5)
    assert loyal["avg_order_value"] == pytest.approx(1889.5 / 34)
    assert loyal["tenure_days"] == round(34 * 30.4375)
    # TotalCharges missing: monthly charges times tenure
    assert t["9237-HQITU"]["total_value"] == pytest.approx(141.4)
    assert (new["f_score"], loyal["f_score"], new["m_score"], loyal["m_score"]) == (1, 5, 1, 5)
    assert loyal["r_score"] is None and loyal["rfm_segment"] is None  # no last purchase
    assert loyal["rfm_score"] == 5.0  # F and M only
    assert left["lifecycle_stage"] == "lapsed" and t["9237-HQITU"]["lifecycle_stage"] == "lapsed"
    assert loyal["lifecycle_stage"] == "active" and new["lifecycle_stage"] == "new"
    with project.store(read_only=True) as store:
        churned = store.con.execute(
            "SELECT count(*) FILTER (WHERE churned) FROM customers"
        ).fetchall()[0][0]
    assert churned == 2  # the label stays on customers for scoring later


SHOPPING = (
    (
        "Customer ID,Age,Gender,Item Purchased,Purchase Amount (USD),Subscription Status,"
        "Previous Purchases,Frequency of Purchases\n"
    )
    + """1,55,Male,Blouse,53,Yes,14,Fortnightly
2,19,Male,Sweater,64,Yes,2,Fortnightly
3,50,Male,Jeans,73,No,23,Weekly
"""
)


def test_last_purchase_amount_and_previous_purchases(tmp_path: Path, engine: str) -> None:
    (tmp_path / "shopping.csv").write_text(SHOPPING)
    project, (p,) = Project.init([tmp_path / "shopping.csv"], tmp_path)
    assert p.source.table == "customers"
    assert {
        k: v for k, v in p.source.columns.items() if v not in ("customer_id", "age", "gender")
    } == {
        "Purchase Amount (USD)": "last_purchase_amount",
        "Subscription Status": "subscriber",
        "Previous Purchases": "purchases",
    }
    assert any(
        n.startswith("no last purchase date: give `personae traits --as-of`") for n in p.notes
    )
    assert "Subscription Status: yes/no outcomes kept as labels on customers" in p.notes
    project.ingest()
    s = project.traits(date(2024, 1, 1), engine)
    t = traits_by_customer(project, s.run_id)
    one = t["1"]
    assert (one["purchase_days"], one["avg_order_value"], one["total_value"]) == (14, 53.0, None)
    assert one["m_score"] is None and one["r_score"] is None
    assert (t["2"]["f_score"], one["f_score"], t["3"]["f_score"]) == (1, 3, 5)
    assert one["rfm_score"] == 3.0  # F only
    with project.store(read_only=True) as store:
        labels = store.con.execute(
            "SELECT list(subscriber ORDER BY customer_id) FROM customers"
        ).fetchall()[0][0]
    assert labels == [True, True, False]


def test_summary_table_with_dates(tmp_path: Path, engine: str) -> None:
    (tmp_path / "shop.csv").write_text(SHOP)
    project, (p,) = Project.init([tmp_path / "shop.csv"], tmp_path)
    assert p.source.columns == {
        "CustomerID": "customer_id",
        "LastPurchaseDate": "last_purchase_at",
        "NumberOfPurchases": "purchases",
        "TotalSpend": "total_spend",
        "Responded": "responded",
        "Created": "created_at",
    }
    project.ingest()
    s = project.traits(None, engine)  # default as-of: the last purchase of the summaries
    assert s.as_of == "2024-03-30"
    assert (s.customers, s.buyers) == (4, 3)
    t = traits_by_customer(project, s.run_id)
    c1, c2, c3, c4 = (t[c] for c in ("c1", "c2", "c3", "c4"))
    assert (c1["purchase_days"], c1["orders"], c1["total_value"]) == (12, 12, 600.0)
    assert (c1["days_since_last"], c2["days_since_last"]) == (0, 89)
    assert c1["avg_order_value"] == 50.0
    assert c1["tenure_days"] == (date(2024, 3, 30) - date(2023, 4, 1)).days
    assert c1["interval_mean"] == pytest.approx(c1["tenure_days"] / 12)
    assert c1["first_purchase"] is None and c1["T"] is None and c1["recency"] is None
    # three buyers: percent ranks 0, 0.5 and 1 score 1, 3 and 5
    assert (c1["rfm_cell"], c2["rfm_cell"], c3["rfm_cell"]) == ("555", "333", "111")
    assert c1["rfm_segment"] == "Champions"
    assert c1["lifecycle_stage"] == "active"
    # one purchase 289 days ago, when the rhythm of those who repeat is 45 days
    assert c1["expected_interval"] == pytest.approx(364 / 12)
    assert c3["expected_interval"] == pytest.approx((364 / 12 + 179 / 3) / 2)
    assert c3["lifecycle_stage"] == "lapsed"
    assert c4["lifecycle_stage"] == "prospect" and c4["purchase_days"] == 0
    assert c4["history_source"] is None
    with pytest.raises(PersonaeError) as err:
        project.predict(engine)
    message = str(err.value)
    assert message.startswith("predict needs transactions: none of the 4 customers")
    assert "3 have purchase traits from customer-level summaries" in message
    assert "Add an orders source" in message


def test_mall_customers_predict_needs_transactions(data_dir: Path, tmp_path: Path) -> None:
    project, _ = Project.init([data_dir / "mall_customers" / "Mall_Customers.csv"], tmp_path)
    project.ingest()
    s = project.traits(date(2024, 1, 1))
    assert (s.customers, s.buyers) == (200, 0)
    with pytest.raises(PersonaeError, match="predict needs transactions: none of the 200"):
        project.predict()
    with project.store(read_only=True) as store:
        assert store.count("predictions") == 0


def test_tables_lists_the_summary_columns() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "personae.cli", "tables", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    text = json.dumps(json.loads(out.stdout))
    for column in ("purchases", "total_spend", "tenure_months", "last_purchase_at", "churned"):
        assert f'"{column}"' in text
