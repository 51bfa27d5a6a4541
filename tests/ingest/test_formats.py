"""Parquet, JSON lines and small Excel files; empty and wrong files; appending a new file."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from personae import Project, SourceError

ORDERS = [
    {
        "Invoice": "1",
        "Customer ID": "a",
        "Invoice Date": "2024-01-02 10:00:00",
        "Qty": "2",
        "Price": "3.5",
    },
    {
        "Invoice": "1",
        "Customer ID": "a",
        "Invoice Date": "2024-01-02 10:00:00",
        "Qty": "1",
        "Price": "10",
    },
    {"Invoice": "2", "Customer ID": "b", "Invoice Date": "not a date", "Qty": "1", "Price": "1"},
    {
        "Invoice": "3",
        "Customer ID": None,
        "Invoice Date": "2024-02-01 09:30:00",
        "Qty": "-1",
        "Price": "3.5",
    },
]


def _check(project: Project) -> None:
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rejected) == (4, 3, {"bad_date": 1})
    assert s.flags["anonymous (no customer id)"] == 1
    assert s.flags["returns and cancellations (is_return)"] == 1
    with project.store(read_only=True) as store:
        rows = store.con.execute(
            "SELECT order_id, line_no, amount, is_return, source_row FROM orders ORDER BY 1, 2"
        ).fetchall()
    assert rows == [("1", 1, 7.0, False, 1), ("1", 2, 10.0, False, 2), ("3", 1, -3.5, True, 4)]


def test_parquet(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(ORDERS), tmp_path / "orders.parquet")
    project, (p,) = Project.init([tmp_path / "orders.parquet"], tmp_path)
    assert p.staged.kind == "parquet" and p.source.table == "orders"
    _check(project)


def test_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ORDERS) + "\n")
    project, (p,) = Project.init([path], tmp_path)
    assert p.staged.kind == "jsonl"
    _check(project)


def test_small_xlsx(tmp_path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(list(ORDERS[0]))
    for r in ORDERS:
        ws.append([r[k] for k in ORDERS[0]])
    wb.save(tmp_path / "orders.xlsx")
    project, (p,) = Project.init([tmp_path / "orders.xlsx"], tmp_path)
    assert p.staged.kind == "xlsx"
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded) == (4, 3)
    with project.store(read_only=True) as store:
        rows = store.con.execute("SELECT min(source_row), max(source_row) FROM orders")
        assert rows.fetchall() == [(2, 5)]  # spreadsheet rows: the header is row 1


def test_header_only_file_loads_nothing(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("customer_id,gender\n")
    (tmp_path / "personae.toml").write_text('[sources.c]\ntable = "customers"\npath = "c.csv"\n')
    summary = Project.open(tmp_path).ingest()
    assert (summary.sources[0].rows_read, summary.tables["customers"]) == (0, 0)
    assert Project.open(tmp_path).status()["tables"]["customers"] == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary file"),
    ],
)
def test_wrong_files_name_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "x.csv").write_bytes(content)
    (tmp_path / "personae.toml").write_text('[sources.x]\ntable = "customers"\npath = "x.csv"\n')
    with pytest.raises(SourceError, match=message) as err:
        Project.open(tmp_path).ingest()
    assert "x.csv" in str(err.value)


def test_a_new_file_in_a_folder_appends_and_clashing_keys_are_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "people"
    folder.mkdir()
    (folder / "a.csv").write_text("customer_id,city\n1,Oslo\n2,Rome\n")
    (tmp_path / "personae.toml").write_text(
        '[sources.people]\ntable = "customers"\npath = "people"\n'
    )
    assert Project.open(tmp_path).ingest().tables["customers"] == 2
    (folder / "b.csv").write_text("customer_id,city\n2,Rome\n3,Lima\n")
    summary = Project.open(tmp_path).ingest()
    assert summary.tables["customers"] == 3
    assert [(s.status, s.rejected) for s in summary.sources] == [("loaded", {"duplicate_id": 1})]
    status = Project.open(tmp_path).status()
    assert [s["rows_loaded"] for s in status["sources"]] == [2, 1]


def test_every_reject_message_is_for_a_declared_reason() -> None:
    from personae.ingest.transform import CELL_MESSAGES
    from personae.store.schemas import REJECT_REASONS

    assert set(CELL_MESSAGES) <= set(REJECT_REASONS)
