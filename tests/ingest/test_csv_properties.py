"""Properties of CSV sniffing and reading: whatever the delimiter, quoting and line ends, and
wherever a few bad lines fall, the sniffer finds the dialect and every line is read, rejected
or counted as blank (hypothesis builds the files)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personae.config import SourceConfig
from personae.ingest.readers import BAD_ROWS, STAGE, stage_csv_python, stage_source
from personae.ingest.sniff import sniff_dialect

NAMES = ["customer_id", "first_name", "city", "spend", "joined"]
cell = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
    | st.sampled_from([",", ";", '"', " ", "|", "\t"]),
    max_size=12,
)


@st.composite
def tables(draw: st.DrawFn) -> tuple[str, str, list[list[str]], dict[int, str]]:
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(1, 10**6).map(str),
                cell,
                cell,
                st.floats(0, 1e6, allow_nan=False).map(lambda v: f"{v:.2f}"),
                st.dates().map(str),
            ).map(list),
            min_size=5,
            max_size=60,
        )
    )
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    writer.writerow(NAMES)
    writer.writerows(rows)
    lines = out.getvalue().splitlines(keepends=True)
    # bad lines: one field too many (unquoted delimiter), inserted at random places
    bad = draw(st.lists(st.integers(1, len(lines)), max_size=3, unique=True))
    inserted: dict[int, str] = {}
    for at in sorted(bad, reverse=True):
        line = delimiter.join(["x"] * (len(NAMES) + 1)) + newline
        lines.insert(at, line)
    for i, line in enumerate(lines, start=1):
        if line == delimiter.join(["x"] * (len(NAMES) + 1)) + newline:
            inserted[i] = line
    return delimiter, "".join(lines), rows, inserted


@settings(max_examples=150, deadline=None)
@given(tables())
def test_the_sniffer_finds_delimiter_and_header(table: tuple) -> None:
    delimiter, text, _, _ = table
    dialect = sniff_dialect(text, complete=True)
    assert (dialect.delimiter, dialect.header, dialect.columns) == (delimiter, True, NAMES)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tables())
def test_every_line_is_a_record_a_reject_or_blank(tmp_path: Path, table: tuple) -> None:
    _, text, rows, inserted = table
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    con = duckdb.connect()
    staged = stage_source(con, "t", SourceConfig(table="customers", path=str(path)), tmp_path)
    assert not isinstance(staged, str)
    stage_csv_python(con, staged)
    got = con.execute(f"SELECT * EXCLUDE (_row) FROM {STAGE} ORDER BY _row").fetchall()
    assert [[v or "" for v in r] for r in got] == rows
    bad = con.execute(f"SELECT _row FROM {BAD_ROWS} ORDER BY 1").fetchall()
    assert [r[0] for r in bad] == sorted(inserted)
    assert staged.lines_accounted == staged.lines
