"""Broken files lose nothing silently: every line is loaded, rejected (with its line and raw
text) or reported as blank, and a gap between lines, rows read, loaded and rejected fails the
run. The files are in tests/data/broken/ (see its README) or built in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personae import Project, SourceError
from personae.ingest import transform

BROKEN = Path(__file__).resolve().parents[1] / "data" / "broken"
ORDERS_TOML = """
[sources.orders]
table = "orders"
path = "{path}"

[sources.orders.columns]
order_id = "order_id"
customer_id = "customer_id"
ordered_at = "ordered_at"
amount = "amount"
"""


def _orders_project(tmp_path: Path, path: Path, extra: str = "") -> Project:
    (tmp_path / "personae.toml").write_text(ORDERS_TOML.format(path=path) + extra)
    return Project.open(tmp_path)


def _rejects(project: Project, table: str = "orders") -> list[tuple]:
    with project.store(read_only=True) as store:
        return store.con.execute(
            f"SELECT source_row, reason, raw, message FROM rejects_{table} ORDER BY 1"
        ).fetchall()


def _lines(text: str) -> list[str]:
    return [f"{i},c{i % 50},2024-01-{i % 28 + 1:02d},{i * 1.5}\n" for i in range(1, 1 + int(text))]


def test_a_late_row_with_one_field_too_many_is_a_bad_row(tmp_path: Path) -> None:
    project = _orders_project(tmp_path, BROKEN / "late_extra_field.csv")
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rejected) == (1002, 1001, {"bad_row": 1})
    ((line, reason, raw, message),) = _rejects(project)
    assert (line, reason) == (1003, "bad_row")
    assert json.loads(raw)["line"] == "1002,c2,2024-01-03,3,5 Main St, Springfield"
    assert message == "6 fields where the header has 4"


def test_init_on_a_late_bad_row_keeps_the_header(tmp_path: Path) -> None:
    project, (p,) = Project.init([BROKEN / "late_extra_field.csv"], tmp_path)
    assert p.staged.columns == ["order_id", "customer_id", "ordered_at", "amount"]
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rows_rejected) == (1002, 1001, 1)


def test_a_text_file_is_refused_not_read_as_one_row(tmp_path: Path) -> None:
    toml = '[sources.notes]\ntable = "customers"\npath = "{}"\n'
    (tmp_path / "personae.toml").write_text(toml.format(BROKEN / "notes.txt"))
    with pytest.raises(SourceError, match="does not look like a table") as err:
        Project.open(tmp_path).ingest()
    assert "notes.txt" in str(err.value)


def test_one_unclosed_quote_rejects_its_line_only_and_ids_carry_no_quotes(
    tmp_path: Path,
) -> None:
    project, (p,) = Project.init([BROKEN / "unclosed_quote.csv"], tmp_path)
    assert p.source.columns["order_id"] == "order_id"
    assert not any('"' in c for c in p.staged.columns)
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rejected) == (2000, 1999, {"bad_row": 1})
    ((line, reason, raw, message),) = _rejects(project)
    assert (line, reason) == (1003, "bad_row")
    assert json.loads(raw)["line"] == '1002,"c2,2024-01-03,3'
    assert message == (
        "5 fields where the header has 4; an unclosed quote on this line swallowed the next "
        "1 line (to line 1004), read again one by one"
    )
    with project.store(read_only=True) as store:
        quoted = store.con.execute(
            "SELECT count(*) FROM orders WHERE contains(order_id, '\"') "
            "OR contains(customer_id, '\"')"
        ).fetchall()[0][0]
        rows = store.con.execute("SELECT min(source_row), max(source_row) FROM orders")
        assert rows.fetchall() == [(2, 2001)]
    assert quoted == 0


def test_an_unclosed_quote_in_the_last_field_does_not_swallow_the_file(tmp_path: Path) -> None:
    rows = _lines("400")
    rows[99] = '100,c1,2024-01-01,"3\n'
    path = tmp_path / "o.csv"
    path.write_text("order_id,customer_id,ordered_at,amount\n" + "".join(rows))
    (s,) = _orders_project(tmp_path, path).ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rejected) == (400, 399, {"bad_row": 1})


def test_mixed_line_endings_load_every_row(tmp_path: Path) -> None:
    project = _orders_project(tmp_path, BROKEN / "mixed_newlines.csv")
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rows_rejected) == (300, 300, 0)
    with project.store(read_only=True) as store:
        row = store.con.execute(
            "SELECT count(*) FILTER (WHERE contains(amount::VARCHAR, chr(13))), "
            "max(source_row), sum(amount) FROM orders"
        ).fetchall()[0]
    assert row == (0, 301, sum(i * 1.5 for i in range(1, 301)))


def test_init_on_mixed_line_endings_gives_no_useless_advice(tmp_path: Path) -> None:
    project, (p,) = Project.init([BROKEN / "mixed_newlines.csv"], tmp_path)
    assert p.source.table == "orders"
    assert project.ingest().sources[0].rows_loaded == 300


def test_a_row_with_500_extra_fields_is_a_bad_row_cut_to_size(tmp_path: Path) -> None:
    project = _orders_project(tmp_path, BROKEN / "wide_row.csv")
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rejected) == (300, 299, {"bad_row": 1})
    ((line, _, raw, message),) = _rejects(project)
    assert line == 152 and message == "504 fields where the header has 4"
    assert json.loads(raw)["line"].startswith("151,c1,2024-01-01,1,x,x")


def test_a_5_mb_line_is_a_bad_row_with_its_text_cut(tmp_path: Path) -> None:
    rows = _lines("200")
    rows[49] = "50,c1,2024-01-01," + "9" * 5_000_000 + "\n"
    path = tmp_path / "o.csv"
    path.write_text("order_id,customer_id,ordered_at,amount\n" + "".join(rows))
    project = _orders_project(tmp_path, path)
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rejected) == (200, 199, {"bad_row": 1})
    ((line, _, raw, message),) = _rejects(project)
    assert line == 51 and "5,000,018 characters" in message
    assert len(json.loads(raw)["line"]) < 1100


def test_blank_lines_are_skipped_and_reported(tmp_path: Path) -> None:
    project = _orders_project(tmp_path, BROKEN / "blank_lines.csv")
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rows_rejected) == (300, 300, 0)
    assert s.flags["blank lines skipped"] == 3
    with project.store(read_only=True) as store:
        rows = store.con.execute("SELECT source_row FROM orders WHERE order_id = '101'")
        assert rows.fetchall() == [(103,)]  # the line after the first blank one


@pytest.mark.parametrize("value", ["NaN", "inf", "-inf", "1e309"])
def test_non_finite_numbers_are_bad_number_and_never_stored(tmp_path: Path, value: str) -> None:
    rows = _lines("20")
    rows[4] = f"5,c1,2024-01-01,{value}\n"
    path = tmp_path / "o.csv"
    path.write_text("order_id,customer_id,ordered_at,amount\n" + "".join(rows))
    project = _orders_project(tmp_path, path)
    (s,) = project.ingest().sources
    assert s.values_nulled == {"bad_number": 1} and s.rows_loaded == 20
    with project.store(read_only=True) as store:
        row = store.con.execute(
            "SELECT count(*) FILTER (WHERE NOT isfinite(amount)), "
            "count(*) FILTER (WHERE amount IS NULL) FROM orders"
        ).fetchall()[0]
    assert row == (0, 1)


def test_non_finite_numbers_in_the_corpus(tmp_path: Path) -> None:
    (s,) = _orders_project(tmp_path, BROKEN / "nan_inf.csv").ingest().sources
    assert s.values_nulled == {"bad_number": 4}


def test_implausible_order_dates_are_out_of_range(tmp_path: Path) -> None:
    project = _orders_project(tmp_path, BROKEN / "implausible_dates.csv")
    (s,) = project.ingest().sources
    assert (s.rows_loaded, s.rejected) == (298, {"out_of_range": 2})
    assert [r[0] for r in _rejects(project)] == [22, 23]
    with project.store(read_only=True) as store:
        latest = store.con.execute("SELECT max(ordered_at)::DATE::VARCHAR FROM orders")
        assert latest.fetchall() == [("2024-01-28",)]


def test_the_date_window_is_a_setting(tmp_path: Path) -> None:
    toml = ORDERS_TOML.format(path=BROKEN / "implausible_dates.csv").replace(
        'path = "', 'earliest_date = 1000-01-01\nlatest_date = 3000-01-01\npath = "'
    )
    (tmp_path / "personae.toml").write_text(toml)
    (s,) = Project.open(tmp_path).ingest().sources
    assert (s.rows_loaded, s.rows_rejected) == (300, 0)


def test_implausible_birth_dates_are_nulled_as_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "customer_id,birth_date,created_at\n"
        "1,1985-03-01,2020-01-01\n2,1850-01-01,2020-01-01\n3,2999-01-01,2999-01-01\n"
    )
    (tmp_path / "personae.toml").write_text(f'[sources.c]\ntable = "customers"\npath = "{path}"\n')
    project = Project.open(tmp_path)
    (s,) = project.ingest().sources
    assert (s.rows_loaded, s.values_nulled) == (3, {"out_of_range": 3})
    with project.store(read_only=True) as store:
        rows = store.con.execute(
            "SELECT customer_id, birth_date::VARCHAR, created_at::DATE::VARCHAR "
            "FROM customers ORDER BY 1"
        ).fetchall()
    assert rows == [("1", "1985-03-01", "2020-01-01"), ("2", None, "2020-01-01"), ("3", None, None)]


def test_a_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="ends early: truncated download") as err:
        _orders_project(tmp_path, BROKEN / "truncated.csv.gz").ingest()
    assert "truncated.csv.gz" in str(err.value)


def test_a_gap_between_read_and_loaded_plus_rejected_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = transform.insert_rows

    def loses_one(con, plan):  # type: ignore[no-untyped-def]
        n = real(con, plan)
        con.execute("DELETE FROM orders WHERE source_row = 2")
        return n - 1

    monkeypatch.setattr(transform, "insert_rows", loses_one)
    project = _orders_project(tmp_path, BROKEN / "late_extra_field.csv")
    with pytest.raises(SourceError, match="1 rows unaccounted for") as err:
        project.ingest()
    assert "Source 'orders'" in str(err.value) and "1,002 rows were read" in str(err.value)
    monkeypatch.undo()
    assert Project.open(tmp_path).status()["tables"].get("orders", 0) == 0


def test_lines_not_accounted_for_fail_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from personae.ingest import readers

    real = readers.duckdb_read_all

    def miscount(con, staged, rows):  # type: ignore[no-untyped-def]
        ok = real(con, staged, rows)
        staged.lines_accounted -= 1
        return ok

    monkeypatch.setattr(transform, "duckdb_read_all", miscount)
    path = tmp_path / "o.csv"
    path.write_text("order_id,customer_id,ordered_at,amount\n" + "".join(_lines("10")))
    with pytest.raises(SourceError, match="has 11 lines but only 10 were read"):
        _orders_project(tmp_path, path).ingest()


@pytest.mark.parametrize("path", sorted(BROKEN.glob("*.*")), ids=lambda p: p.name)
def test_every_broken_file_gives_counts_or_an_error_never_a_traceback(
    tmp_path: Path, path: Path
) -> None:
    if path.name == "README.md":
        pytest.skip("the corpus's description")
    try:
        project, _ = Project.init([path], tmp_path)
        summary = project.ingest()
    except SourceError as err:
        assert path.name in str(err)
        return
    for s in summary.sources:
        assert s.rows_read == s.rows_loaded + s.rows_rejected
        assert s.rows_read > 0


def test_a_quote_left_open_on_the_last_line_is_a_bad_row_but_an_inch_mark_is_not(
    tmp_path: Path,
) -> None:
    rows = [f"{i},c{i % 40},2024-03-01,7.00,ok" for i in range(400)]
    for name, last, rejected in (
        ("open.csv", '400,c1,2024-03-02,7.00,"never closed', {"bad_row": 1}),
        ("inch.csv", '400,c1,2024-03-02,7.00,27" screen', {}),
    ):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        (folder / name).write_text(
            "order_id,customer_id,ordered_at,amount,note\n" + "\n".join([*rows, last]) + "\n"
        )
        Project.init([folder / name], folder)
        s = Project.open(folder).ingest().sources[0]
        assert (s.rows_read, s.rows_loaded, s.rejected) == (401, 401 - len(rejected), rejected)


def test_decimal_commas_are_found_by_init_and_read_by_ingest(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text(
        "order_id;customer_id;ordered_at;amount\n"
        "1;k1;2024-03-01;12,34\n2;k2;2024-03-02;1.234,50\n3;k1;2024-03-03;0,99\n"
        "4;k3;2024-03-04;7\n5;k3;2024-03-05;-2,5\n"
    )
    _, (proposal,) = Project.init([tmp_path / "b.csv"], tmp_path)
    assert proposal.source.decimal == ","
    project = Project.open(tmp_path)
    s = project.ingest().sources[0]
    assert (s.rows_loaded, s.rejected, s.values_nulled) == (5, {}, {})
    with project.store(read_only=True) as store:
        amounts = dict(store.con.execute("SELECT order_id, amount FROM orders").fetchall())
    assert amounts == {"1": 12.34, "2": 1234.5, "3": 0.99, "4": 7.0, "5": -2.5}
