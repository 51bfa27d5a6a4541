"""Item-only baskets (no amounts, e.g. the Groceries data set): money traits and m_score are
unknown (NULL), RFM comes from R and F, predict gives purchases and P(alive) without CLV."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from personae import Project

from .conftest import traits_by_customer

BASKETS = """Member_number,Date,itemDescription
1,2024-01-02,whole milk
1,2024-01-02,yogurt
1,2024-02-10,rolls/buns
1,2024-03-25,whole milk
2,2024-03-01,soda
3,2024-01-15,beef
3,2024-03-30,beef
"""


def test_rfm_from_recency_and_frequency(tmp_path: Path, engine: str) -> None:
    (tmp_path / "groceries.csv").write_text(BASKETS)
    project, (p,) = Project.init([tmp_path / "groceries.csv"], tmp_path)
    assert "amount" not in p.source.columns.values()
    project.ingest()
    summary = project.traits(date(2024, 3, 31), engine)
    assert summary.notes == [
        "no purchase line has an amount (item-only baskets): total_value, monetary_value, "
        "avg_order_value, m_score and the spend shares are NULL (unknown), and RFM is built "
        "from R and F only (rfm_cell of two digits)."
    ]
    t = traits_by_customer(project, summary.run_id)
    for c in ("1", "2", "3"):
        assert t[c]["m_score"] is None
        assert t[c]["total_value"] is None and t[c]["monetary_value"] is None
        assert t[c]["avg_order_value"] is None
    one, two, three = t["1"], t["2"], t["3"]
    assert (one["purchase_days"], two["purchase_days"], three["purchase_days"]) == (3, 1, 2)
    assert (one["f_score"], two["f_score"], three["f_score"]) == (5, 1, 3)
    assert (one["r_score"], two["r_score"], three["r_score"]) == (3, 1, 5)
    assert (one["rfm_cell"], two["rfm_cell"], three["rfm_cell"]) == ("35", "11", "53")
    assert one["rfm_score"] == 4.0 and three["rfm_score"] == 4.0
    assert one["rfm_segment"] == "Loyal"


def _groceries(path: Path, customers: int = 600, seed: int = 3) -> None:
    """Item-only baskets of customers who buy at their own rate until they drop out."""
    rng = np.random.default_rng(seed)
    start = date(2023, 1, 1)
    lines = ["Member_number,Date,itemDescription"]
    for c in range(customers):
        rate = rng.gamma(2.0, 1 / 40)  # purchases per day
        p_drop = rng.beta(1.0, 6.0)
        day = int(rng.integers(0, 120))
        while day < 540:
            for item in rng.choice(["milk", "bread", "soda", "eggs"], int(rng.integers(1, 4))):
                lines.append(f"{1000 + c},{start + timedelta(days=day)},{item}")
            if rng.random() < p_drop:
                break
            day += 1 + int(rng.exponential(1 / rate))
    path.write_text("\n".join(lines) + "\n")


def test_predict_without_amounts(tmp_path: Path) -> None:
    _groceries(tmp_path / "groceries.csv")
    project, _ = Project.init([tmp_path / "groceries.csv"], tmp_path)
    result = project.run()
    s = result["predict"]
    assert s.model != "rfm_fallback"
    assert s.total_clv is None and s.spend_params == {}
    assert s.spend_fallback_reason is not None
    assert s.spend_fallback_reason.startswith("spend is unknown: no purchase line has an amount")
    with project.store(read_only=True) as store:
        row = store.con.execute(
            "SELECT count(*), count(expected_purchases), count(p_alive), count(expected_spend), "
            "count(clv), min(p_alive) >= 0 AND max(p_alive) <= 1 FROM predictions"
        ).fetchall()[0]
    assert row[0] == result["traits"].buyers
    assert row[1:] == (row[0], row[0], 0, 0, True)
    out = subprocess.run(
        [sys.executable, "-m", "personae.cli", "predict", "--project", str(tmp_path)],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "PATH": ""},
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "spend unknown (no amounts): no CLV." in out.stdout
    assert "total CLV" not in out.stdout


@pytest.mark.parametrize("amount", ["", "0"])
def test_zero_is_not_missing(tmp_path: Path, amount: str) -> None:
    # an empty amount is unknown; a 0 amount is a free purchase and is money
    (tmp_path / "o.csv").write_text(
        f"customer_id,ordered_at,amount\na,2024-01-01,{amount}\na,2024-02-01,{amount}\n"
    )
    project, _ = Project.init([tmp_path / "o.csv"], tmp_path)
    project.ingest()
    t = traits_by_customer(project, project.traits(date(2024, 3, 1)).run_id)["a"]
    assert t["total_value"] == (None if amount == "" else 0.0)
    assert (t["m_score"] is None) == (amount == "")
