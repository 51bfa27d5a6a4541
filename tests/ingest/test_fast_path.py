"""The fast way a large delimited file is read (issue 15) gives what the careful way gives:
numbers and timestamps cast by DuckDB's reader load and reject exactly as when every cell is
read as text, rejects keep the file's own text and line, the hash computed while the file is
read is the file's hash, and a file whose head hides a late surprise is read again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personae import Project
from personae.ingest import sniff, transform

TOML = """
[sources.orders]
table = "orders"
path = "{path}"
"""
HEADER = "order_id,line_no,customer_id,ordered_at,quantity,amount\n"


def _lines(n: int) -> list[str]:
    return [
        f"O{i},1,c{i % 7},2024-01-{i % 28 + 1:02d} 10:00:00,{i % 3 + 1},{i * 1.5}\n"
        for i in range(n)
    ]


def _ingest(tmp_path: Path, text: str | bytes) -> tuple[Project, object]:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "orders.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    (tmp_path / "personae.toml").write_text(TOML.format(path=path))
    project = Project.open(tmp_path)
    (summary,) = project.ingest().sources
    return project, summary


def _contents(project: Project) -> tuple[list, list]:
    with project.store(read_only=True) as store:
        orders = store.con.execute(
            "SELECT * EXCLUDE (source_id) FROM orders ORDER BY source_row"
        ).fetchall()
        rejects = store.con.execute(
            'SELECT source_row, reason, "column", message, kept, raw FROM rejects_orders '
            "ORDER BY ALL"
        ).fetchall()
    return orders, rejects


AMOUNTS = [
    "12",
    " 12 ",
    "+5",
    "-0",
    ".5",
    "5.",
    "1e3",
    "1E-2",
    "1,5",
    "£3.50",
    "NA",
    "n/a",
    "",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "0x10",
    "1_000",
    "abc",
    "12.0000000000000001",
]
DATES = [
    "2024-01-06",
    "2024-01-06 10:00",
    "2024-01-06T10:00:00",
    "2024-01-06 10:00:00.123",
    "2024-01-06 10:00:00+02",
    "2024-01-06 10:00:00Z",
    " 2024-01-06 ",
    "1850-01-01",
    "2999-01-01",
    "06/01/2024",
    "2024-13-01",
    "null",
    "",
]


@pytest.mark.parametrize(
    "column, value",
    [("amount", v) for v in AMOUNTS]
    + [("ordered_at", v) for v in DATES]
    + [("line_no", v) for v in ("2", "2.0", "2.5", "x", "")],
)
def test_a_cell_cast_by_duckdb_loads_and_rejects_as_when_read_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, column: str, value: str
) -> None:
    lines = _lines(30)
    fields = lines[12].rstrip("\n").split(",")
    fields[HEADER.rstrip("\n").split(",").index(column)] = f'"{value}"' if "," in value else value
    lines[12] = ",".join(fields) + "\n"
    text = HEADER + "".join(lines)
    got = _contents(_ingest(tmp_path / "typed", text)[0])
    monkeypatch.setattr(transform, "TYPED_READ", False)
    want = _contents(_ingest(tmp_path / "text", text)[0])
    assert got == want


def test_a_nulled_value_keeps_the_files_text_and_line(tmp_path: Path) -> None:
    lines = _lines(40)
    lines[9] = "O9,1,c2,2024-01-06 10:00,inf,1e309\n"  # line 11: both values nulled, row kept
    lines[20] = "O20,1,c2,1850-01-01 00:00,2,3.50\n"  # line 22: implausible date, rejected
    project, s = _ingest(tmp_path, HEADER + "".join(lines))
    assert (s.rows_read, s.rows_loaded, s.rows_rejected) == (40, 39, 1)
    _, rejects = _contents(project)
    assert [(r[0], r[1], r[2], r[4]) for r in rejects] == [
        (11, "bad_number", "amount", True),
        (11, "bad_number", "quantity", True),
        (22, "out_of_range", "ordered_at", False),
    ]
    raw = json.loads(rejects[0][5])
    assert (raw["amount"], raw["quantity"]) == ("1e309", "inf")
    assert rejects[0][3] == "amount: 1e309 -> NULL (bad_number)"
    raw = json.loads(rejects[2][5])
    assert (raw["ordered_at"], raw["amount"]) == ("1850-01-01 00:00", "3.50")


def test_copies_and_key_clashes_are_found_by_one_grouping(tmp_path: Path) -> None:
    lines = _lines(30)  # lines 2 to 31
    lines += [lines[3], lines[3]]  # lines 32, 33: exact copies of line 5
    lines.append(lines[7].replace(",1,c", ",1,d"))  # line 34: O7 line 1 again, other buyer
    bad = "O99,1,c1,not a date,1,2.0\n"
    lines += [bad, bad]  # lines 35, 36: a rejected row, twice
    project, s = _ingest(tmp_path, HEADER + "".join(lines))
    assert s.rejected == {"duplicate": 3, "duplicate_id": 1, "bad_date": 1}
    _, rejects = _contents(project)
    assert [(r[0], r[1]) for r in rejects] == [
        (32, "duplicate"),
        (33, "duplicate"),
        (34, "duplicate_id"),
        (35, "bad_date"),
        (36, "duplicate"),
    ]
    assert json.loads(rejects[2][5])["customer_id"] == "d0"


def test_the_hash_taken_while_reading_is_the_files_and_names_the_content(tmp_path: Path) -> None:
    text = HEADER + "".join(_lines(50))
    project, s = _ingest(tmp_path, text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    with project.store(read_only=True) as store:
        (stored,) = store.con.execute("SELECT content_hash FROM sources").fetchall()[0]
    assert stored == digest and s.source_id == f"orders@{digest[:8]}"
    assert project.ingest().sources[0].status == "unchanged"


def test_a_late_latin1_byte_past_the_head_reads_the_file_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sniff, "CHUNK", 256)
    lines = _lines(40)
    lines[35] = "O35,1,Jos\xe9,2024-01-06,1,2.0\n"
    project, s = _ingest(tmp_path, (HEADER + "".join(lines)).encode("latin-1"))
    assert (s.rows_read, s.rows_loaded) == (40, 40)
    with project.store(read_only=True) as store:
        who = store.con.execute("SELECT customer_id FROM orders WHERE source_row = 37")
        assert who.fetchall() == [("Jos\xe9",)]


def test_late_mixed_line_ends_past_the_head_are_found_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sniff, "CHUNK", 256)
    lines = _lines(40)
    lines[30] = lines[30].replace("\n", "\r\n")
    project, s = _ingest(tmp_path, HEADER + "".join(lines))
    assert (s.rows_read, s.rows_loaded, s.rows_rejected) == (40, 40, 0)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from([" ", "\t", "a", "é", "0", ".", "\n"]), max_size=8))
def test_trimming_only_cells_with_outer_spaces_is_trimming_every_cell(text: str) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (x VARCHAR)")
    con.execute("INSERT INTO t VALUES (?), (NULL)", [text])
    fast, plain = con.execute(
        f"SELECT list({transform.trimmed('x')} ORDER BY x NULLS LAST), "
        "list(NULLIF(trim(x), '') ORDER BY x NULLS LAST) FROM t"
    ).fetchall()[0]
    assert fast == plain


def test_files_gone_through_ahead_give_each_files_own_facts(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(HEADER + "".join(_lines(20)))
    second.write_text((HEADER + "".join(_lines(30))).replace("\n", "\r\n"))
    ahead = sniff.Lookahead([first, second])
    plain, facts = ahead.take(first)  # and the search of the second file starts
    assert plain.result() and facts.result() == sniff.file_facts(first)
    second.write_text(HEADER + "".join(_lines(31)))  # changed after it was searched
    plain, facts = ahead.take(second)
    assert plain.result() and facts.result() == sniff.file_facts(second)
    third = tmp_path / "c.csv"  # not named ahead
    third.write_text(HEADER + "".join(_lines(5)).replace("\n", "\r\n"))
    plain, facts = ahead.take(third)
    assert not plain.result() and facts.result().sha256 == sniff.file_facts(third).sha256


def test_several_delimited_sources_are_read_with_their_own_hashes(tmp_path: Path) -> None:
    orders = HEADER + "".join(_lines(25))
    customers = "customer_id,city\n" + "".join(f"c{i},Paris\n" for i in range(7))
    (tmp_path / "orders.csv").write_text(orders)
    (tmp_path / "customers.csv").write_text(customers)
    (tmp_path / "personae.toml").write_text(
        TOML.format(path=tmp_path / "orders.csv")
        + f'\n[sources.customers]\ntable = "customers"\npath = "{tmp_path / "customers.csv"}"\n'
    )
    project = Project.open(tmp_path)
    got = {s.name: (s.source_id, s.rows_loaded) for s in project.ingest().sources}
    assert got == {
        "orders": (f"orders@{hashlib.sha256(orders.encode()).hexdigest()[:8]}", 25),
        "customers": (f"customers@{hashlib.sha256(customers.encode()).hexdigest()[:8]}", 7),
    }
    assert {s.status for s in project.ingest().sources} == {"unchanged"}


def test_a_checked_column_with_quotes_in_its_name_keeps_its_problem(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('customer_id,"score ""0-10"""\n1,5\n2,11\n3,x\n')
    (tmp_path / "personae.toml").write_text(
        f'[sources.c]\ntable = "customers"\npath = "{path}"\n'
        '[sources.c.ranges]\n"score \\"0-10\\"" = [0, 10]\n'
    )
    project = Project.open(tmp_path)
    (s,) = project.ingest().sources
    assert (s.rows_loaded, s.values_nulled) == (3, {"out_of_range": 1, "bad_number": 1})
    with project.store(read_only=True) as store:
        rows = store.con.execute(
            "SELECT source_row, reason, kept, raw->>'score \"0-10\"' FROM rejects_customers "
            "ORDER BY 1"
        ).fetchall()
    assert rows == [(3, "out_of_range", True, "11"), (4, "bad_number", True, "x")]
