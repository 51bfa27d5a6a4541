"""Readers: present any source to validation as a relation of text columns.

Everything is read as text so that validation (in `transform`) sees exactly what the source
says and can report the raw value of every rejected cell. Delimited text is read straight from
the file by DuckDB (no copy); other sources are staged into the temp table `_stage` with a
`_row` column. The row number is the physical line number in a text file (header = line 1),
the spreadsheet row in Excel, and the 1-based row elsewhere.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb
import pyarrow as pa

from personae.config import SourceConfig
from personae.errors import SourceError
from personae.ingest.sniff import (
    FileFacts,
    _open_bytes,
    _py_encoding,
    detect_format,
    file_facts,
    whitespace_header,
)

log = logging.getLogger(__name__)
STAGE = "_stage"


@dataclass
class Staged:
    """A readable source: the relation to select from, its columns and identity.

    `rows` is None until counted. `row_expr` is None for delimited text read in place; its
    row numbers come from the position of each record (see `transform`)."""

    columns: list[str]
    rows: int | None
    kind: str
    location: str
    content_hash: str
    encoding: str | None = None
    delimiter: str | None = None
    header: bool | None = None
    row_expr: str | None = "_row"
    relation: str = STAGE
    lines: int = -1
    path: Path | None = None

    def count(self, con: duckdb.DuckDBPyConnection) -> int:
        if self.rows is None:
            self.rows = int(con.execute(f"SELECT count(*) FROM {self.relation}").fetchall()[0][0])
        return self.rows


def q(name: str) -> str:
    """Quote an identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """Quote a string literal for DuckDB."""
    return "'" + value.replace("'", "''") + "'"


def resolve_path(src: SourceConfig, base: Path) -> Path:
    assert src.path is not None
    path = Path(src.path)
    return path if path.is_absolute() else base / path


def stage_source(
    con: duckdb.DuckDBPyConnection,
    name: str,
    src: SourceConfig,
    base: Path,
    known_hash: set[str] | None = None,
) -> Staged | str:
    """Stage one source. Returns its content hash instead when that hash is in `known_hash`
    (the same content was ingested before, so nothing needs reading)."""
    if src.url:
        return _stage_database(con, name, src, base)
    path = resolve_path(src, base)
    if not path.exists():
        raise SourceError(
            f"Source '{name}': file {path} not found. Fix `path` in personae.toml "
            "(relative paths start at the folder of personae.toml)."
        )
    if path.is_dir():
        raise SourceError(f"Source '{name}': {path} is a folder; point `path` at a file.")
    facts = file_facts(path)
    if known_hash is not None and facts.sha256 in known_hash:
        return facts.sha256
    fmt = src.format if src.format != "auto" else detect_format(path)
    if fmt == "xlsx":
        return _stage_xlsx(con, name, path, src, facts.sha256)
    if fmt == "parquet":
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {STAGE} AS SELECT * EXCLUDE (file_row_number), "
            f"file_row_number + 1 AS _row FROM read_parquet({lit(str(path))}, "
            "file_row_number = true)"
        )
        return _finish(con, "parquet", str(path), facts.sha256)
    if fmt == "jsonl":
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {STAGE} AS SELECT *, row_number() OVER () AS _row "
            f"FROM read_json({lit(str(path))}, format = 'newline_delimited')"
        )
        return _finish(con, "jsonl", str(path), facts.sha256)
    if fmt == "whitespace":
        return _stage_whitespace(con, name, path, src, facts.sha256, facts.lines)
    return _stage_csv(con, name, path, src, facts)


def _finish(
    con: duckdb.DuckDBPyConnection, kind: str, location: str, content_hash: str, **extra: Any
) -> Staged:
    cols = [r[0] for r in con.execute(f"DESCRIBE {STAGE}").fetchall() if r[0] != "_row"]
    casts = ", ".join(f"{q(c)}::VARCHAR AS {q(c)}" for c in cols)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {STAGE} AS SELECT {casts}, _row::BIGINT AS _row FROM {STAGE}"
    )
    row = con.execute(f"SELECT count(*) FROM {STAGE}").fetchall()[0]
    return Staged(cols, int(row[0]) if row else 0, kind, location, content_hash, **extra)


def _read_csv_sql(
    path: Path,
    encoding: str,
    delim: str | None,
    header: bool | None,
    names: list[str] | None = None,
) -> str:
    opts = [lit(str(path)), "all_varchar = true", f"encoding = {lit(encoding)}"]
    if delim:
        opts.append(f"delim = {lit(delim)}")
    if header is not None:
        opts.append(f"header = {str(header).lower()}")
    if names:
        opts.append("names = [" + ", ".join(lit(n) for n in names) + "]")
    return f"read_csv({', '.join(opts)})"


def _stage_csv(
    con: duckdb.DuckDBPyConnection,
    name: str,
    path: Path,
    src: SourceConfig,
    facts: FileFacts,
) -> Staged:
    """Delimited text is not copied: validation reads it in place, in parallel."""
    encoding = facts.encoding if src.encoding == "auto" else src.encoding
    try:
        sniff = con.execute(
            f"SELECT Delimiter, HasHeader FROM sniff_csv({lit(str(path))}, "
            f"encoding = {lit(encoding)})"
        ).fetchall()[0]
        delim = src.delimiter or sniff[0]
        header = src.header if src.header is not None else bool(sniff[1])
        relation = _read_csv_sql(path, encoding, delim, header)
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
        if not header:
            relation = _read_csv_sql(
                path, encoding, delim, header, [f"column{i + 1}" for i in range(len(cols))]
            )
            cols = [f"column{i + 1}" for i in range(len(cols))]
    except duckdb.Error as err:
        raise SourceError(
            f"Source '{name}': cannot read {path} as delimited text: "
            f"{' '.join(str(err).splitlines()[:2])}. Set `delimiter`, `encoding` or "
            "`header` for this source in personae.toml."
        ) from None
    return Staged(
        cols,
        None,
        "csv",
        str(path),
        facts.sha256,
        encoding,
        delim,
        header,
        row_expr=None,
        relation=relation,
        lines=facts.lines,
        path=path,
    )


def with_rows(con: duckdb.DuckDBPyConnection, staged: Staged, inner: str) -> str:
    """SQL adding the line number `_row` to `inner`, a relation whose records carry their
    0-based position `_i` in the file.

    One record per line and no blank lines: the line follows from the position. Otherwise
    (records spanning lines, blank lines) a pass of Python's csv module finds each record's
    first line, and the mapping is a join on the temp table `_line_numbers`."""
    offset = 2 if staged.header else 1
    rows = staged.count(con)
    if rows + offset - 1 == staged.lines:
        return f"SELECT _i + {offset} AS _row, * EXCLUDE (_i) FROM ({inner})"
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = '_line_numbers'"
    ).fetchall()[0][0]
    if not exists:
        assert staged.path is not None
        _attach_line_numbers(
            con,
            staged.path,
            staged.encoding or "utf-8",
            staged.delimiter or ",",
            bool(staged.header),
            rows,
        )
    return f"SELECT n._row, t.* EXCLUDE (_i) FROM ({inner}) t JOIN _line_numbers n USING (_i)"


def _attach_line_numbers(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    encoding: str,
    delim: str,
    header: bool,
    rows: int,
) -> None:
    """Create `_line_numbers(_i, _row)`: the first physical line of every record.

    Python's csv module reports the line each record ends on; the start line is the previous
    record's end + 1 (blank lines skipped, as DuckDB does)."""
    starts: list[int] = []
    with _open_bytes(path) as raw:
        text = io.TextIOWrapper(raw, encoding=_py_encoding(encoding), newline="")
        reader = csv.reader(text, delimiter=delim)
        prev_end = 0
        first = True
        for record in reader:
            line_start = prev_end + 1
            prev_end = reader.line_num
            if not record or (len(record) <= 1 and not record[0]):
                continue
            if first and header:
                first = False
                continue
            first = False
            starts.append(line_start)
    if len(starts) != rows:
        log.warning(
            "%s: could not match %d records to lines (%d); numbering records instead",
            path,
            rows,
            len(starts),
        )
        starts = list(range(2 if header else 1, rows + (2 if header else 1)))
    numbers = pa.table({"_i": pa.array(range(rows), pa.int64()), "_row": pa.array(starts)})
    con.register("_line_numbers_arrow", numbers)
    con.execute("CREATE OR REPLACE TEMP TABLE _line_numbers AS SELECT * FROM _line_numbers_arrow")
    con.unregister("_line_numbers_arrow")


def _stage_whitespace(
    con: duckdb.DuckDBPyConnection,
    name: str,
    path: Path,
    src: SourceConfig,
    sha: str,
    lines: int,
) -> Staged:
    encoding = "utf-8" if src.encoding == "auto" else src.encoding
    sniffed_header, width = whitespace_header(path, encoding)
    header = sniffed_header if src.header is None else src.header
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _lines AS SELECT line, row_number() OVER () AS _row FROM "
        f"read_csv({lit(str(path))}, columns = {{'line': 'VARCHAR'}}, delim = '\\x01', "
        f"quote = '', escape = '', header = false, auto_detect = false, "
        f"encoding = {lit(encoding)})"
    )
    total = int(con.execute("SELECT count(*) FROM _lines").fetchall()[0][0])
    if total != lines:
        raise SourceError(
            f"Source '{name}': {path} has blank lines, which whitespace-separated files may "
            "not have. Remove them or convert the file to CSV."
        )
    first = con.execute("SELECT line FROM _lines WHERE _row = 1").fetchall()[0]
    names = first[0].split() if header and first else [f"column{i + 1}" for i in range(width)]
    if len(set(names)) != len(names):
        raise SourceError(f"Source '{name}': {path} repeats a column name in its header.")
    parts = ", ".join(f"f[{i + 1}] AS {q(n)}" for i, n in enumerate(names))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {STAGE} AS SELECT {parts}, _row FROM "
        f"(SELECT regexp_split_to_array(trim(line), '\\s+') AS f, _row FROM _lines "
        f"WHERE _row > {1 if header else 0} AND trim(line) <> '') ORDER BY _row"
    )
    con.execute("DROP TABLE _lines")
    return _finish(con, "whitespace", str(path), sha, encoding=encoding, header=header)


def _cell_text(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, date | time):
        return v.isoformat()
    return str(v)


def _stage_xlsx(
    con: duckdb.DuckDBPyConnection, name: str, path: Path, src: SourceConfig, sha: str
) -> Staged:
    from python_calamine import CalamineWorkbook

    try:
        book = CalamineWorkbook.from_path(str(path))
        sheet = book.get_sheet_by_name(src.sheet) if src.sheet else book.get_sheet_by_index(0)
    except Exception as err:  # calamine raises its own error types
        raise SourceError(
            f"Source '{name}': cannot open {path} as an Excel workbook ({err}). "
            "Check the file and the `sheet` setting."
        ) from None
    rows = sheet.to_python(skip_empty_area=False)
    if not rows:
        raise SourceError(f"Source '{name}': sheet of {path} is empty.")
    header = (
        src.header if src.header is not None else all(isinstance(v, str) and v for v in rows[0])
    )
    width = max(len(r) for r in rows)
    names = (
        [str(v) if v not in (None, "") else f"column{i + 1}" for i, v in enumerate(rows[0])]
        if header
        else [f"column{i + 1}" for i in range(width)]
    )
    names += [f"column{i + 1}" for i in range(len(names), width)]
    data = rows[1:] if header else rows
    first_row = 2 if header else 1
    keep = [i for i, r in enumerate(data) if any(v not in (None, "") for v in r)]
    columns = {
        n: pa.array(
            [_cell_text(data[i][j]) if j < len(data[i]) else None for i in keep], pa.string()
        )
        for j, n in enumerate(names)
    }
    columns["_row"] = pa.array([i + first_row for i in keep], pa.int64())
    con.register("_xlsx", pa.table(columns))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {STAGE} AS SELECT * FROM _xlsx")
    con.unregister("_xlsx")
    return _finish(con, "xlsx", str(path), sha, header=header)


def _stage_database(
    con: duckdb.DuckDBPyConnection, name: str, src: SourceConfig, base: Path
) -> Staged:
    assert src.url is not None
    url = src.url
    query = src.query or f"SELECT * FROM {src.source_table}"
    scheme = urlparse(url).scheme.split("+")[0]
    try:
        if scheme == "duckdb":
            db_path = _url_path(url, base)
            other = duckdb.connect(db_path, read_only=True)
            reader = other.sql(query).to_arrow_reader()
        elif scheme == "sqlite":
            import adbc_driver_sqlite.dbapi as sqlite_dbapi

            db = sqlite_dbapi.connect(_url_path(url, base))
            cur = db.cursor()
            cur.execute(query)
            reader = cur.fetch_record_batch()
        elif scheme in ("postgresql", "postgres"):
            import adbc_driver_postgresql.dbapi as pg_dbapi

            db = pg_dbapi.connect(url.replace("postgresql+psycopg", "postgresql"))
            cur = db.cursor()
            cur.execute(query)
            reader = cur.fetch_record_batch()
        else:
            raise SourceError(
                f"Source '{name}': unsupported database URL scheme '{scheme}' in {url}. "
                "Use duckdb:///file.duckdb, sqlite:///file.db or postgresql://user@host/db."
            )
        con.register("_db", reader)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {STAGE} AS SELECT *, row_number() OVER () AS _row "
            "FROM _db"
        )
        con.unregister("_db")
    except SourceError:
        raise
    except Exception as err:
        raise SourceError(
            f"Source '{name}': query against {_safe_url(url)} failed: "
            f"{str(err).splitlines()[0]}. Check `url`, `query` or `source_table`."
        ) from None
    staged = _finish(con, "database", _safe_url(url), "")
    cols = ", ".join(q(c) for c in staged.columns)
    fp = con.execute(
        f"SELECT count(*), coalesce(sum(hash({cols})::HUGEINT), 0) FROM {STAGE}"
    ).fetchall()[0]
    text = f"{_safe_url(url)}\n{query}\n{fp}"
    staged.content_hash = hashlib.sha256(text.encode()).hexdigest()
    return staged


def _url_path(url: str, base: Path) -> str:
    path = re.sub(r"^[a-z+]+:///", "", url)
    p = Path(path)
    return str(p if p.is_absolute() else base / p)


def _safe_url(url: str) -> str:
    """The URL with any password masked, for logs and the sources table."""
    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", url)
