"""As-of dates outside the data and all-zero amounts: never a negative duration, never NaN,
and predict says when there is no holdout to compare models on."""

from __future__ import annotations

import math
import random
from datetime import date
from pathlib import Path

import pytest

from personae import Project
from personae.errors import StoreError

from ..conftest import write_toml


def _shop(root: Path, amount: str = "{a}") -> Project:
    rng = random.Random(3)
    lines = ["order_id,customer_id,ordered_at,amount"]
    for i in range(4000):
        day = date(2023, 1, 1).toordinal() + rng.randrange(365)
        a = amount.format(a=round(rng.uniform(5, 90), 2))
        lines.append(f"o{i},c{rng.randrange(400)},{date.fromordinal(day)},{a}")
    (root / "orders.csv").write_text("\n".join(lines) + "\n")
    (root / "customers.csv").write_text(
        "customer_id,birth_date,created_at\n"
        + "".join(f"c{i},1990-05-0{1 + i % 9},2023-0{1 + i % 9}-01\n" for i in range(400))
        + "late,2030-01-01,2024-06-01\n"  # born and created after every order
    )
    write_toml(
        root,
        """
[sources.orders]
table = "orders"
path = "orders.csv"

[sources.customers]
table = "customers"
path = "customers.csv"

[predict]
min_repeat_buyers = 10
""",
    )
    project = Project.open(root)
    project.ingest()
    return project


def test_as_of_before_all_data_is_refused_with_the_range(tmp_path: Path) -> None:
    project = _shop(tmp_path)
    with pytest.raises(StoreError, match=r"before all of the data.*2023-01-01 to 2024-06-01"):
        project.traits(date(2020, 1, 1))


def test_customers_who_did_not_exist_yet_are_left_out_and_nothing_is_negative(
    tmp_path: Path,
) -> None:
    project = _shop(tmp_path)
    summary = project.traits(date(2023, 3, 31))
    # created in months 1-9 of 2023 (c0-c399 cycle), 'late' in 2024: created after
    # March 31 and no order by then means not a customer yet
    with project.store(read_only=True) as store:
        expected = store.query(
            """SELECT count(*) AS n FROM (
                SELECT customer_id, min(d) AS d FROM (
                    SELECT customer_id, created_at AS d FROM customers
                    UNION ALL SELECT customer_id, ordered_at FROM orders) GROUP BY 1)
               WHERE d::DATE > DATE '2023-03-31'"""
        )[0]["n"]
        worst = store.query(
            "SELECT min(tenure_days) AS tenure, min(age) AS age, min(T) AS t, "
            "min(days_since_last) AS since, count(*) AS n FROM traits WHERE run_id = ?",
            [summary.run_id],
        )[0]
    assert summary.not_yet_customers == expected > 0
    assert summary.customers == worst["n"] == 401 - expected
    assert worst["tenure"] >= 0 and worst["t"] >= 0 and worst["since"] >= 0
    assert worst["age"] >= 0


def test_as_of_after_the_data_says_there_is_no_holdout(tmp_path: Path) -> None:
    project = _shop(tmp_path)
    project.traits(date(2026, 6, 30))
    summary = project.predict()
    assert summary.holdout == {}
    assert summary.holdout_note is not None
    assert "no holdout comparison" in summary.holdout_note
    assert "2023-12-31" in summary.holdout_note  # the last order
    with project.store(read_only=True) as store:
        rows = store.query(
            "SELECT count(*) AS n FROM model_evaluations WHERE run_id = ?", [summary.run_id]
        )
    assert rows[0]["n"] == 0


def test_all_zero_amounts_give_null_shares_never_nan(tmp_path: Path) -> None:
    project = _shop(tmp_path, amount="0")
    run = project.traits()
    predicted = project.predict()
    assert not math.isnan(predicted.total_clv)
    with project.store(read_only=True) as store:
        doubles = [
            r["column_name"]
            for r in store.query(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'traits' "
                "AND data_type = 'DOUBLE'"
            )
        ]
        nans = {
            c: store.query(
                f'SELECT count(*) AS n FROM traits WHERE run_id = ? AND isnan("{c}")',
                [run.run_id],
            )[0]["n"]
            for c in doubles
        }
        shares = store.query(
            "SELECT count(*) FILTER (WHERE top_category_share IS NULL) AS null_top, "
            "count(*) AS n FROM traits WHERE run_id = ?",
            [run.run_id],
        )[0]
        spend = store.query(
            "SELECT count(*) FILTER (WHERE isnan(share)) AS nan FROM category_spend "
            "WHERE run_id = ?",
            [run.run_id],
        )[0]
        pred_nan = store.query(
            "SELECT count(*) FILTER (WHERE isnan(clv) OR isnan(expected_spend) "
            "OR isnan(expected_purchases)) AS n FROM predictions WHERE run_id = ?",
            [predicted.run_id],
        )[0]
    assert {c: n for c, n in nans.items() if n} == {}
    assert shares["null_top"] == shares["n"]
    assert spend["nan"] == 0 and pred_nan["n"] == 0
