"""A load that succeeds but gives little or nothing says so, and a reject names the setting
that decided it: a wrong date format, an empty file, a wrong delimiter, a range."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from personae import Project
from personae.errors import SourceError

from ..conftest import write_toml

ORDERS = """order_id,customer_id,ordered_at,amount
1,a,2024-01-05 10:00:00,10.5
2,b,2024-02-11 09:30:00,20
3,a,2024-03-02 17:45:00,7.25
"""


def _project(tmp_path: Path, text: str, settings: str = "") -> Project:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "orders.csv").write_text(text)
    write_toml(
        tmp_path,
        f'[sources.orders]\ntable = "orders"\npath = "orders.csv"\n{settings}',
    )
    return Project.open(tmp_path)


def _rejects(project: Project) -> list[tuple[int, str, str]]:
    with project.store(read_only=True) as store:
        return store.con.execute(
            "SELECT source_row, reason, message FROM rejects_orders ORDER BY source_row"
        ).fetchall()


def test_a_clean_file_has_no_warning(tmp_path: Path) -> None:
    (s,) = _project(tmp_path, ORDERS).ingest().sources
    assert (s.rows_loaded, s.warnings) == (3, [])


def test_a_wrong_date_format_rejects_every_row_and_says_so(tmp_path: Path) -> None:
    project = _project(tmp_path, ORDERS, 'date_formats = { ordered_at = "%d/%m/%Y" }\n')
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rejected) == (3, 0, {"bad_date": 3})
    assert s.warnings == [
        "all 3 rows were rejected (3 bad_date): `personae export rejects_orders --out "
        "rejects.csv` shows why; a wrong column mapping, date format or delimiter in "
        "personae.toml is the usual cause"
    ]
    message = "ordered_at: not a date in the format '%d/%m/%Y' (date_formats.ordered_at in "
    assert _rejects(project) == [(r, "bad_date", message + "personae.toml)") for r in (2, 3, 4)]


def test_most_rows_rejected_is_a_warning_too(tmp_path: Path) -> None:
    text = ORDERS + "".join(f"{i},c,someday,1\n" for i in range(4, 8))
    (s,) = _project(tmp_path, text).ingest().sources
    assert (s.rows_loaded, s.rejected) == (3, {"bad_date": 4})
    assert s.warnings[0].startswith("4 of the 7 rows were rejected (4 bad_date): ")
    text = ORDERS + "4,c,someday,1\n"  # one of four: the rejects table is enough
    (s,) = _project(tmp_path / "few", text).ingest().sources
    assert (s.rows_loaded, s.rejected, s.warnings) == (3, {"bad_date": 1}, [])


def test_a_header_only_file_is_said_to_be_empty(tmp_path: Path) -> None:
    (s,) = _project(tmp_path, ORDERS.splitlines()[0] + "\n").ingest().sources
    assert s.rows_read == 0
    assert s.warnings == [
        f"{tmp_path / 'orders.csv'} has no data rows (empty, or a header only): nothing was loaded"
    ]


def test_a_wrong_delimiter_is_named(tmp_path: Path) -> None:
    project = _project(
        tmp_path, ORDERS, 'delimiter = ";"\n[sources.orders.columns]\norder_id = "order_id"\n'
    )
    with pytest.raises(SourceError) as err:
        project.ingest()
    assert str(err.value).endswith(
        "The header was read as one column with delimiter = ';', and \",\" splits it: set "
        'delimiter = "," in [sources.orders], or remove the setting to sniff.'
    )


def test_date_rejects_name_their_window(tmp_path: Path) -> None:
    project = _project(tmp_path, ORDERS + "4,c,1850-03-09 10:00:00,3\n")
    (s,) = project.ingest().sources
    assert (s.rows_loaded, s.rejected) == (3, {"out_of_range": 1})  # ordered_at is required
    ((row, reason, message),) = _rejects(project)
    assert (row, reason) == (5, "out_of_range")
    assert message.startswith("ordered_at: not between 1900-01-01 and ")
    assert message.endswith(", the plausible dates (earliest_date, latest_date)")


def test_piped_output_is_not_cut_at_80_columns(tmp_path: Path) -> None:
    _project(tmp_path, ORDERS, 'date_formats = { ordered_at = "%d/%m/%Y" }\n')
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    res = subprocess.run(
        [sys.executable, "-m", "personae.cli", "ingest", "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**env, "NO_COLOR": "1"},
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert (
        "Rejected rows and nulled values are in the rejects_<table> tables: "
        "`personae export rejects_orders --out rejects_orders.csv`." in lines
    )
    assert any(
        line.startswith("Warning: source orders: all 3 rows were rejected") for line in lines
    )


def test_init_on_a_header_only_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(ORDERS.splitlines()[0] + "\n")
    _, (p,) = Project.init([tmp_path / "orders.csv"], tmp_path)
    assert p.source.table == "orders"  # from the column names
    assert p.notes[0].startswith("WARNING: the file has no data rows (a header only)")
    assert not any("no single date format" in n for n in p.notes)
