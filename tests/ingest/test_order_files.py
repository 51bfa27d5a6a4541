"""Files people really have (issue 12, section 3): no id column, order status columns,
discounts given as rates, orders without an order id (docs/loading-real-files.md)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from personae import Project

from ..traits.conftest import traits_by_customer


def test_rows_numbered_as_ids(tmp_path: Path) -> None:
    path = tmp_path / "survey.csv"
    path.write_text("Gender,Age,Annual Income\nFemale,34,52000\nMale,51,61000\nFemale,23,18000\n")
    project, (p,) = Project.init([path], tmp_path)
    assert p.source.table == "customers"
    assert p.source.row_ids is True
    assert any(n.startswith("WARNING: no customer_id column: row_ids = true") for n in p.notes)
    assert "row_ids = true" in (tmp_path / "personae.toml").read_text()
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rejected) == (3, 3, {})
    assert s.flags == {"ids numbered from rows (row_ids): customer_id": 3}
    with project.store(read_only=True) as store:
        rows = store.con.execute(
            "SELECT customer_id, gender, age, income FROM customers ORDER BY source_row"
        ).fetchall()
    assert rows == [
        ("survey-2", "female", 34, 52000.0),
        ("survey-3", "male", 51, 61000.0),
        ("survey-4", "female", 23, 18000.0),
    ]


SALES = """ORDERNUMBER,QUANTITYORDERED,PRICEEACH,ORDERLINENUMBER,ORDERDATE,STATUS,CUSTOMERNAME
10100,30,5.0,1,2024-01-06,Shipped,Land of Toys
10100,50,2.0,2,2024-01-06,Shipped,Land of Toys
10101,25,4.0,1,2024-02-09,Cancelled,Land of Toys
10102,10,3.0,1,2024-03-10,Disputed,Reims Collectables
10103,20,1.5,1,2024-03-20,On Hold,Reims Collectables
10104,40,2.0,1,2024-04-02,Shipped,Reims Collectables
"""


def test_status_column_marks_cancellations(tmp_path: Path) -> None:
    (tmp_path / "sales.csv").write_text(SALES)
    project, (p,) = Project.init([tmp_path / "sales.csv"], tmp_path)
    assert p.source.table == "orders"
    assert p.source.columns == {
        "ORDERNUMBER": "order_id",
        "QUANTITYORDERED": "quantity",
        "PRICEEACH": "unit_price",
        "ORDERLINENUMBER": "line_no",
        "ORDERDATE": "ordered_at",
        "STATUS": "status",
        "CUSTOMERNAME": "customer_id",
    }
    note = next(n for n in p.notes if n.startswith("STATUS: order status"))
    assert "Cancelled make a line a cancellation" in note
    result = project.run(only=["ingest", "traits"])
    assert result["ingest"].sources[0].flags["cancelled or returned status (cancel_statuses)"] == 1
    t = traits_by_customer(project, result["traits"].run_id)
    toys = t["Land of Toys"]
    assert (toys["orders"], toys["purchase_days"], toys["total_value"]) == (1, 1, 250.0)
    assert toys["returns_share"] == pytest.approx(100 / 250)
    assert t["Reims Collectables"]["total_value"] == 30 + 30 + 80


def test_cancel_statuses_setting(tmp_path: Path) -> None:
    (tmp_path / "sales.csv").write_text(SALES)
    project, _ = Project.init([tmp_path / "sales.csv"], tmp_path)
    text = (tmp_path / "personae.toml").read_text()
    text = text.replace('table = "orders"', 'table = "orders"\ncancel_statuses = ["Disputed"]')
    (tmp_path / "personae.toml").write_text(text)
    result = Project.open(tmp_path).run(only=["ingest", "traits"])
    t = traits_by_customer(project, result["traits"].run_id)
    assert t["Land of Toys"]["total_value"] == 250.0 + 100.0  # Cancelled is now a purchase
    assert t["Reims Collectables"]["total_value"] == 30 + 80


@pytest.mark.parametrize(
    ("header", "values", "scale"),
    [
        ("Discount", ["20%", "0%", "50 %"], None),
        ("Discount", ["0.2", "0", "0.5"], None),
        ("Discount (%)", ["20", "0", "50"], 0.01),
    ],
)
def test_discount_rates(
    tmp_path: Path, header: str, values: list[str], scale: float | None
) -> None:
    rows = [("o1", "ann", "80.00"), ("o2", "ann", "30.00"), ("o3", "bob", "50.00")]
    text = f"Order ID,Customer ID,Order Date,Sales,{header}\n" + "".join(
        f"{o},{c},2024-0{i + 1}-10,{a},{v}\n"
        for i, ((o, c, a), v) in enumerate(zip(rows, values, strict=True))
    )
    (tmp_path / "orders.csv").write_text(text)
    project, (p,) = Project.init([tmp_path / "orders.csv"], tmp_path)
    assert p.source.columns[header] == "discount_rate"
    assert p.source.scale.get(header) == scale
    assert any(n.startswith(f"{header}: read as a discount rate") for n in p.notes)
    result = project.run(only=["ingest", "traits"])
    assert result["ingest"].sources[0].values_nulled == {}
    with project.store(read_only=True) as store:
        stored = store.con.execute(
            "SELECT order_id, discount_rate, discount FROM orders ORDER BY 1"
        ).fetchall()
    assert stored == [("o1", 0.2, pytest.approx(20.0)), ("o2", 0.0, 0.0), ("o3", 0.5, 50.0)]
    t = traits_by_customer(project, result["traits"].run_id)
    # ann paid 110 and was given 20 off a list price of 130
    assert t["ann"]["discount_share"] == pytest.approx(20 / 130)
    assert t["ann"]["discounted_line_share"] == 0.5
    assert t["bob"]["discount_share"] == pytest.approx(0.5)


BASKETS = """Member_number,Date,itemDescription
1000,2024-03-01,whole milk
1000,2024-03-01,yogurt
1000,2024-03-01,sausage
1000,2024-03-15,whole milk
2000,2024-03-01,rolls/buns
"""


def test_lines_at_one_time_are_one_basket(tmp_path: Path) -> None:
    (tmp_path / "groceries.csv").write_text(BASKETS)
    project, (p,) = Project.init([tmp_path / "groceries.csv"], tmp_path)
    assert p.source.columns["Member_number"] == "customer_id"
    assert any("form one order" in n for n in p.notes)
    result = project.run(only=["ingest", "traits"], as_of=date(2024, 3, 31))
    with project.store(read_only=True) as store:
        orders = store.con.execute(
            "SELECT customer_id, count(DISTINCT order_id), count(*), max(line_no) "
            "FROM orders GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert orders == [("1000", 2, 4, 3), ("2000", 1, 1, 1)]
    t = traits_by_customer(project, result["traits"].run_id)
    assert t["1000"]["orders"] == 2
    assert t["1000"]["basket_lines"] == 2.0  # 4 lines in 2 baskets


def test_one_order_per_line_when_asked(tmp_path: Path) -> None:
    (tmp_path / "groceries.csv").write_text(BASKETS)
    Project.init([tmp_path / "groceries.csv"], tmp_path)
    text = (tmp_path / "personae.toml").read_text()
    (tmp_path / "personae.toml").write_text(
        text.replace('table = "orders"', 'table = "orders"\norders_without_id = "line"')
    )
    project = Project.open(tmp_path)
    project.ingest()
    with project.store(read_only=True) as store:
        n = store.con.execute("SELECT count(DISTINCT order_id) FROM orders").fetchall()[0][0]
    assert n == 5


def test_status_found_by_its_values(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text(
        "order_id,customer_id,ordered_at,amount,Fulfilment\n"
        "1,a,2024-01-01,10,Shipped\n2,a,2024-01-02,20,Canceled\n"
        "3,b,2024-01-03,30,Delivered\n4,b,2024-01-04,40,On Hold\n"
    )
    project, (p,) = Project.init([tmp_path / "o.csv"], tmp_path)
    assert p.source.columns["Fulfilment"] == "status"
    note = next(n for n in p.notes if n.startswith("Fulfilment: order status"))
    assert "(Canceled, Delivered, On Hold, Shipped)" in note
    assert "Canceled make a line a cancellation" in note
    result = project.run(only=["ingest", "traits"])
    t = traits_by_customer(project, result["traits"].run_id)
    assert (t["a"]["total_value"], t["a"]["purchase_days"], t["b"]["total_value"]) == (
        10.0,
        1,
        70.0,
    )
