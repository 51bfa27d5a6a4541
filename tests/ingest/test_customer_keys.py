"""Customer keys under other names, orders without a customer key, and stages that would
describe nobody (issue 12, section 3; docs/loading-real-files.md)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from personae import PersonaeError, Project, SourceError

# one line per (customer, day): ann buys twice, bob once
LINES = [
    ("ann", "2024-01-05", "10.00"),
    ("ann", "2024-02-05", "30.00"),
    ("bob", "2024-01-20", "5.50"),
]


def _orders(path: Path, key: str, values: dict[str, str] | None = None) -> Path:
    values = values or {}
    text = f"{key},InvoiceDate,Amount\n" + "".join(
        f"{values.get(c, c)},{d},{a}\n" for c, d, a in LINES
    )
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "key",
    ["CUSTOMERNAME", "Member_number", "client", "buyer", "account name", "Customer Email"],
)
def test_customer_key_names(tmp_path: Path, key: str) -> None:
    project, (p,) = Project.init([_orders(tmp_path / "orders.csv", key)], tmp_path)
    assert p.source.table == "orders"
    assert p.source.columns[key] == "customer_id"
    result = project.run()
    assert result["ingest"].sources[0].flags.get("anonymous (no customer id)", 0) == 0
    t = result["traits"]
    assert (t.customers, t.buyers) == (2, 2)
    with project.store(read_only=True) as store:
        rows = store.con.execute(
            "SELECT customer_id, purchase_days, total_value FROM traits ORDER BY 1"
        ).fetchall()
    assert rows == [("ann", 2, 40.0), ("bob", 1, 5.5)]


def test_email_is_the_key_only_without_an_id(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "Email,CustomerID,InvoiceDate,Amount,StockCode\n"
        "a@x.org,1,2024-01-05,10,p1\nb@x.org,2,2024-01-06,20,p2\n"
    )
    _, (p,) = Project.init([path], tmp_path)
    assert p.source.table == "orders"
    assert p.source.columns["CustomerID"] == "customer_id"
    assert "Email" not in p.source.columns


def test_customers_file_keyed_by_email(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("Name,Email,Age\nAnn,ann@x.org,34\nBob,bob@x.org,51\n")
    project, (p,) = Project.init([path], tmp_path)
    assert p.source.table == "customers"
    assert p.source.columns["Email"] == "customer_id"
    assert any("Email is the customer key" in n for n in p.notes)
    (s,) = project.ingest().sources
    assert s.rows_loaded == 2


def test_orders_without_a_customer_key(tmp_path: Path) -> None:
    path = tmp_path / "sales.csv"
    path.write_text("InvoiceDate,Amount,Product\n2024-01-05,10,p1\n2024-01-06,20,p2\n")
    project, (p,) = Project.init([path], tmp_path)
    assert p.source.table == "orders"
    assert "customer_id" not in p.source.columns.values()
    assert any(n.startswith("NO CUSTOMER KEY") for n in p.notes)
    with pytest.raises(SourceError) as err:
        project.ingest()
    message = str(err.value)
    assert "no column is mapped to customer_id" in message
    assert "source columns: InvoiceDate, Amount, Product" in message
    with project.store(read_only=True) as store:
        assert store.count("orders") == 0


def test_traits_of_nobody_is_an_error(tmp_path: Path) -> None:
    # the key column is mapped but every value is empty: all orders are anonymous
    path = _orders(tmp_path / "orders.csv", "CustomerID", {"ann": "", "bob": ""})
    project, _ = Project.init([path], tmp_path)
    project.ingest()
    with pytest.raises(PersonaeError) as err:
        project.traits(date(2024, 3, 1))
    message = str(err.value)
    assert message.startswith("Traits of 0 customers: all 3 order lines are anonymous")
    assert '"customer_id"' in message and "personae ingest" in message
    with project.store(read_only=True) as store:
        failed = store.con.execute(
            "SELECT status FROM runs WHERE stage = 'traits' ORDER BY seq DESC LIMIT 1"
        ).fetchall()
        assert failed == [("failed",)]
        assert store.count("traits") == 0
