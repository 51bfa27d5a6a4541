"""Readers: present any source to validation as a relation of text columns.

Everything is read as text so that validation (in `transform`) sees exactly what the source
says and can report the raw value of every rejected cell. Delimited text is read straight from
the file by DuckDB (no copy), its numbers and timestamps cast by the reader itself when every
one of them casts (`transform.typed_columns`; the text of rows with a problem is read again);
other sources are staged into the temp table `_stage` with a `_row` column. The row number is
the physical line number in a text file (header = line 1), the spreadsheet row in Excel, and
the 1-based row elsewhere.
"""

from __future__ import annotations

import atexit
import codecs
import csv
import hashlib
import io
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import duckdb
import pyarrow as pa

from personae.config import SourceConfig
from personae.errors import SourceError
from personae.ingest.sniff import (
    CHUNK,
    NATIVE_ENCODINGS,
    FileFacts,
    LineCounter,
    Lookahead,
    _open_bytes,
    _py_encoding,
    detect_format,
    file_facts,
    sniff_dialect,
    whitespace_header,
)

log = logging.getLogger(__name__)
STAGE = "_stage"
BAD_ROWS = "_bad_rows"
# DuckDB's reader puts the records it cannot read (wrong number of fields, an unclosed
# quote, an overlong line) here; any at all hands the file to the Python reader.
REJECTS = "_csv_rejects"
SCANS = "_csv_scans"
MAX_RECORD = 2 * 1024 * 1024  # characters in one record (DuckDB's max_line_size)
RAW_SHOWN = 1000  # characters of a rejected line kept in rejects.raw
BATCH = 100_000


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
    # Delimited text: the encoding the file is read in (UTF-8 after transcoding), records
    # rejected as bad_row (in the temp table `_bad_rows`), blank lines skipped, and the
    # physical lines the header, the records and the blank lines cover (-1: not counted).
    read_encoding: str = "utf-8"
    bad_rows: int = 0
    blank_lines: int = 0
    lines_accounted: int = -1
    # The file's hash and lines while they are still being computed (`stage_source` with
    # hash_while_reading): `content_hash` and `lines` are known after `settle`.
    pending: Future[FileFacts] | None = None
    # Whether validation may let DuckDB's reader cast numbers and timestamps (see
    # `transform.typed_columns`); false once a value did not cast, the file is then read as text.
    read_typed: bool = True

    def settle(self) -> bool:
        """Wait for facts computed while the file was read; False when they contradict what
        reading assumed from the file's head (UTF-8, one kind of line end): then the file
        must be staged again (`restage_csv`)."""
        if self.pending is None:
            return True
        facts = self.pending.result()
        self.content_hash, self.lines = facts.sha256, facts.lines
        if facts.encoding != "utf-8" or facts.mixed_newlines:
            return False
        self.pending = None
        return True

    def typed_relation(self, types: dict[str, str]) -> str:
        """The delimited file read in place with the columns of `types` typed by DuckDB's
        reader (a value it cannot cast makes the record a reject in `_csv_rejects`)."""
        assert self.path is not None and self.delimiter is not None
        return _read_csv_sql(
            self.path, self.read_encoding, self.delimiter, bool(self.header), self.columns, types
        )

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
    hash_while_reading: bool = False,
    lookahead: Lookahead | None = None,
) -> Staged | str:
    """Stage one source. Returns its content hash instead when that hash is in `known_hash`
    (the same content was ingested before, so nothing needs reading).

    With `hash_while_reading`, a plain UTF-8 delimited file is hashed and its lines counted
    in a thread while DuckDB reads it (see `Staged.settle`), instead of in a pass before;
    `lookahead` may have gone through its bytes already."""
    if src.url:
        staged_db = _stage_database(con, name, src, base)
        # a database is read to know its content: the hash of what the query returned
        if known_hash is not None and staged_db.content_hash in known_hash:
            return staged_db.content_hash
        return staged_db
    path = resolve_path(src, base)
    if not path.exists():
        raise SourceError(
            f"Source '{name}': file {path} not found. Fix `path` in personae.toml "
            "(relative paths start at the folder of personae.toml)."
        )
    if path.is_dir():
        raise SourceError(f"Source '{name}': {path} is a folder; point `path` at a file.")
    fmt = src.format if src.format != "auto" else detect_format(path)
    if hash_while_reading and hashed_while_read(src, path, fmt):
        plain, pending = (lookahead or Lookahead([])).take(path)
        if plain.result():
            guess = FileFacts("", -1, path.stat().st_size)
            return _stage_csv(con, name, path, src, guess, pending)
        facts = pending.result()
    else:
        facts = file_facts(path)
    if known_hash is not None and facts.sha256 in known_hash:
        return facts.sha256
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


def hashed_while_read(src: SourceConfig, path: Path, fmt: str | None = None) -> bool:
    """Whether the file may be hashed while DuckDB reads it: delimited text in UTF-8 (or
    left to detect). Other files are gone through once before they are read."""
    fmt = fmt or (src.format if src.format != "auto" else detect_format(path))
    return fmt == "csv" and src.encoding in ("auto", "utf-8", "utf8")


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
    delim: str,
    header: bool,
    names: list[str],
    types: dict[str, str] | None = None,
) -> str:
    """DuckDB's reader with the dialect fixed (no sniffing: its sniffer skips good lines
    when a late line is odd) and every record it cannot read stored in `_csv_rejects`.
    Columns are text unless `types` gives another DuckDB type."""
    types = types or {}
    columns = "{" + ", ".join(f"{lit(n)}: {lit(types.get(n, 'VARCHAR'))}" for n in names) + "}"
    opts = [
        lit(str(path)),
        "auto_detect = false",
        f"columns = {columns}",
        f"delim = {lit(delim)}",
        "quote = '\"'",
        "escape = '\"'",
        f"header = {str(header).lower()}",
        "skip = 0",
        f"encoding = {lit(encoding)}",
        "store_rejects = true",
        f"rejects_table = {lit(REJECTS)}",
        f"rejects_scan = {lit(SCANS)}",
    ]
    return f"read_csv({', '.join(opts)})"


_TEMP_FILES: list[Path] = []


@atexit.register
def _remove_temp_files() -> None:
    for path in _TEMP_FILES:
        path.unlink(missing_ok=True)


def _check_encoding(name: str, src: SourceConfig) -> str:
    """The Python codec name of the source's encoding setting, or a SourceError."""
    try:
        return codecs.lookup(src.encoding).name
    except LookupError:
        raise SourceError(
            f"Source '{name}': encoding = '{src.encoding}' is not a text encoding Python "
            "knows. Use auto, utf-8, latin-1, cp1252, cp1250, iso-8859-15 or utf-16."
        ) from None


def transcode(path: Path, encoding: str) -> tuple[Path, LineCounter]:
    """Copy a text file (gzip or not) to a temporary UTF-8 file in one streaming pass, for
    encodings DuckDB's reader does not read itself; returns it and its line counts."""
    fd, name = tempfile.mkstemp(prefix="personae-", suffix=".csv")
    out_path = Path(name)
    _TEMP_FILES.append(out_path)
    counter = LineCounter()
    decoder = codecs.getincrementaldecoder(_py_encoding(encoding))(errors="replace")
    with _open_bytes(path) as raw, os.fdopen(fd, "wb") as out:
        while chunk := raw.read(CHUNK):
            data = decoder.decode(chunk).encode("utf-8")
            counter.add(data)
            out.write(data)
        data = decoder.decode(b"", final=True).encode("utf-8")
        counter.add(data)
        out.write(data)
    return out_path, counter


def _stage_csv(
    con: duckdb.DuckDBPyConnection,
    name: str,
    path: Path,
    src: SourceConfig,
    facts: FileFacts,
    pending: Future[FileFacts] | None = None,
) -> Staged:
    """Delimited text is not copied: validation reads it in place, in parallel, with DuckDB.
    Files DuckDB's reader cannot follow (mixed line ends) and files in which it finds a bad
    record (see `transform.build_cells`) are read by `stage_csv_python` instead. With
    `pending`, `facts` are what the file's head says until `Staged.settle`."""
    encoding = facts.encoding if src.encoding == "auto" else _check_encoding(name, src)
    codec = codecs.lookup(_py_encoding(encoding)).name
    read_path, lines, mixed, read_encoding = path, facts.lines, facts.mixed_newlines, "utf-8"
    if codec == "iso8859-1":
        read_encoding = "latin-1"
    elif codec not in ("utf-8", "utf-8-sig"):
        read_path, counter = transcode(path, encoding)
        lines, mixed = counter.lines, counter.mixed
    assert read_encoding in NATIVE_ENCODINGS
    with _open_bytes(read_path) as fh:
        head = fh.read(1024 * 1024)
        complete = not fh.read(1)
    text = head.decode(_py_encoding(read_encoding), errors="replace")
    try:
        dialect = sniff_dialect(text, complete, src.delimiter, src.header)
    except ValueError as err:
        raise SourceError(
            f"Source '{name}': {path} does not look like a table: {err}. Point `path` at a "
            "delimited text file (CSV, TSV), or set `delimiter` for this source."
        ) from None
    staged = Staged(
        dialect.columns,
        None,
        "csv",
        str(path),
        facts.sha256,
        encoding,
        dialect.delimiter,
        dialect.header,
        row_expr=None,
        relation=_read_csv_sql(
            read_path, read_encoding, dialect.delimiter, dialect.header, dialect.columns
        ),
        lines=lines,
        path=read_path,
        read_encoding=read_encoding,
        pending=pending,
    )
    if mixed or _tail_may_open_a_quote(read_path):
        if pending is not None and not staged.settle():
            return _stage_csv(con, name, path, src, pending.result())
        stage_csv_python(con, staged)
    return staged


def restage_csv(
    con: duckdb.DuckDBPyConnection, name: str, src: SourceConfig, staged: Staged
) -> None:
    """Stage a delimited file again, in place of `staged`, by the facts of all its bytes (its
    head did not tell the whole story: a late non-UTF-8 byte or a mixed line end)."""
    path = Path(staged.location)
    facts = staged.pending.result() if staged.pending else file_facts(path)
    fresh = _stage_csv(con, name, path, src, facts)
    staged.__dict__.update(fresh.__dict__)


def _tail_may_open_a_quote(path: Path) -> bool:
    """An odd number of quote characters on the file's last line: a quote that may stay
    open to the end of the file, which DuckDB would read as a value ending in a line break.
    Python's csv reader then tells for sure (an inch mark in an unquoted value is fine)."""
    if path.suffix == ".gz":
        return False  # reading a compressed file's end means reading all of it
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - 64 * 1024))
        tail = fh.read().rstrip(b"\r\n")
    last = tail[tail.rfind(b"\n") + 1 :]
    return last.count(b'"') % 2 == 1


def duckdb_read_all(con: duckdb.DuckDBPyConnection, staged: Staged, rows: int) -> bool:
    """Whether DuckDB's reader read every record of a delimited file, one record per line:
    nothing in its rejects and every line a header or a record (no blank lines, no quoted
    line breaks). Otherwise `stage_csv_python` reads the file."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [REJECTS]
    ).fetchall()[0][0]
    if exists and con.execute(f"SELECT count(*) FROM {REJECTS}").fetchall()[0][0]:
        return False
    header = 1 if staged.header else 0
    if rows + header == staged.lines:
        staged.lines_accounted = staged.lines
        return True
    return False


def drop_csv_rejects(con: duckdb.DuckDBPyConnection) -> None:
    for table in (REJECTS, SCANS):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def with_rows(con: duckdb.DuckDBPyConnection, staged: Staged, inner: str) -> str:
    """SQL adding the line number `_row` to `inner`, a relation whose records carry their
    0-based position `_i` in the file. DuckDB reads a file only when it has one record per
    line and no blank lines (`duckdb_read_all`), so the line follows from the position."""
    offset = 2 if staged.header else 1
    return f"SELECT _i + {offset} AS _row, * EXCLUDE (_i) FROM ({inner})"


def _shown(text: str) -> str:
    text = text.rstrip("\r\n")
    if len(text) <= RAW_SHOWN:
        return text
    return f"{text[:RAW_SHOWN]}... ({len(text):,} characters)"


def stage_csv_python(con: duckdb.DuckDBPyConnection, staged: Staged) -> None:
    """Read a delimited file with Python's csv module into `_stage` (with each record's
    first physical line as `_row`), rejecting every record whose number of fields is not the
    header's, or that is longer than MAX_RECORD, into `_bad_rows` with its line and raw text.

    A record that spans several lines and has the wrong number of fields is usually an
    unclosed quote that swallowed the lines after it: those lines are read again one by one,
    so only the broken line is lost, and its message says what it swallowed. Blank lines are
    skipped and counted. Every physical line ends up as header, record, reject or blank."""
    assert staged.path is not None
    reader = _PythonCsv(con, staged)
    reader.read(staged.path)
    staged.relation = STAGE
    staged.row_expr = "_row"
    staged.bad_rows = reader.bad_count
    staged.blank_lines = reader.blank
    staged.rows = None
    staged.lines_accounted = reader.header_lines + reader.blank + reader.record_lines
    if reader.seen != staged.lines:
        raise SourceError(
            f"{staged.location}: {staged.lines:,} lines counted in its bytes but "
            f"{reader.seen:,} read as text; nothing was loaded from it. Check `encoding`."
        )


def _open_at_end(lines: list[str], delimiter: str) -> bool:
    """True when the record's text ends inside a quoted value."""
    try:
        next(csv.reader(["".join(lines)], delimiter=delimiter, strict=True), None)
    except csv.Error:
        return True
    return False


class _PythonCsv:
    """The record-by-record reader behind `stage_csv_python`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, staged: Staged) -> None:
        self.con = con
        self.staged = staged
        self.width = len(staged.columns)
        self.delim = staged.delimiter or ","
        self.cols: list[list[str | None]] = [[] for _ in range(self.width)]
        self.rows: list[int] = []
        self.bad: list[tuple[int, str, str]] = []
        self.pending_header = bool(staged.header)
        self.header_lines = self.blank = self.record_lines = self.seen = self.bad_count = 0
        self.buf: list[str] = []
        self.at_end = False
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {STAGE} ("
            + ", ".join(f"{q(c)} VARCHAR" for c in staged.columns)
            + ", _row BIGINT)"
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {BAD_ROWS} (_row BIGINT, raw VARCHAR, message VARCHAR)"
        )

    def read(self, path: Path) -> None:
        csv.field_size_limit(max(csv.field_size_limit(), 64 * 1024 * 1024))
        with _open_bytes(path) as raw:
            text = io.TextIOWrapper(
                raw,
                encoding=_py_encoding(self.staged.read_encoding),
                errors="replace",
                newline="",
            )
            lines = self._lines(text)
            while True:
                try:
                    for fields in csv.reader(lines, delimiter=self.delim, strict=False):
                        self._record(fields, *self._take())
                    break
                except csv.Error as err:  # e.g. a field over the size limit
                    start, taken = self._take()
                    if taken:
                        self._swallowed(start, taken, f"cannot be read as CSV ({err})")
        self._flush()

    def _lines(self, text: io.TextIOWrapper) -> Iterator[str]:
        for line in text:
            self.seen += 1
            self.buf.append(line)
            yield line
        self.at_end = True  # a record delivered now was still open when the file ended

    def _take(self) -> tuple[int, list[str]]:
        """The lines of the record just read and the first one's number."""
        taken = self.buf[:]
        self.buf.clear()
        return self.seen - len(taken) + 1, taken

    def _wrong_width(self, found: int) -> str:
        where = "the header has" if self.staged.header else "the other lines have"
        return f"{found} fields where {where} {self.width}"

    def _reject(self, line: int, lines: list[str], message: str) -> None:
        self.bad.append((line, _shown("".join(lines)), message))
        self.record_lines += len(lines)
        if len(self.bad) >= BATCH:
            self._flush()

    def _record(self, fields: list[str], start: int, lines: list[str]) -> None:
        if not fields or (len(fields) == 1 and not fields[0].strip() and self.width > 1):
            self.blank += len(lines)
            return
        if self.pending_header:
            self.pending_header = False
            self.header_lines = len(lines)
            return
        size = sum(map(len, lines))
        if self.at_end and _open_at_end(lines, self.delim):
            why = "a quote opened on this line is never closed"
            if len(lines) > 1:  # the lines it took in are read again one by one
                self._swallowed(start, lines, why)
            else:
                self._reject(start, lines, f"{why}: the value would run to the end of the file")
        elif size > MAX_RECORD:
            self._reject(
                start,
                lines,
                f"a record of {size:,} characters, more than the {MAX_RECORD:,} one "
                "record may have",
            )
        elif len(fields) != self.width:
            if len(lines) > 1:
                self._swallowed(start, lines, self._wrong_width(len(fields)))
            else:
                self._reject(start, lines, self._wrong_width(len(fields)))
        elif len(lines) > 2 and self._looks_swallowed(lines):
            self._swallowed(start, lines, "a quoted value runs over several lines")
        else:
            for col, value in zip(self.cols, fields, strict=True):
                col.append(value if value != "" else None)
            self.rows.append(start)
            self.record_lines += len(lines)
            if len(self.rows) >= BATCH:
                self._flush()

    def _looks_swallowed(self, lines: list[str]) -> bool:
        """True when most lines inside a multi-line record read as whole records on their
        own: an unclosed quote took them in, not a text with line breaks."""
        inner = lines[1:-1]
        whole = sum(
            len(next(csv.reader([line], delimiter=self.delim, strict=False), [])) == self.width
            for line in inner
        )
        return self.width > 1 and whole >= 0.8 * len(inner)

    def _swallowed(self, start: int, lines: list[str], why: str) -> None:
        """A record over several lines that cannot be right: its first line is rejected,
        the lines it swallowed are read again one by one."""
        self._reject(
            start,
            lines[:1],
            f"{why}; an unclosed quote on this line swallowed the next {len(lines) - 1} "
            f"line{'s' if len(lines) > 2 else ''} (to line {start + len(lines) - 1}), "
            "read again one by one",
        )
        for i, line in enumerate(lines[1:], start=1):
            fields = next(csv.reader([line], delimiter=self.delim, strict=False), [])
            self._record(fields, start + i, [line])

    def _flush(self) -> None:
        if self.rows:
            arrays = [pa.array(c, pa.string()) for c in self.cols]
            arrays.append(pa.array(self.rows, pa.int64()))
            batch = pa.Table.from_arrays(arrays, names=[*self.staged.columns, "_row"])
            self.con.register("_csv_batch", batch)
            self.con.execute(f"INSERT INTO {STAGE} SELECT * FROM _csv_batch")
            self.con.unregister("_csv_batch")
            for col in self.cols:
                col.clear()
            self.rows.clear()
        if self.bad:
            self.con.executemany(f"INSERT INTO {BAD_ROWS} VALUES (?, ?, ?)", self.bad)
            self.bad_count += len(self.bad)
            self.bad.clear()


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


# The sqlglot dialect of each database URL scheme a source may use.
_SQL_DIALECTS = {"duckdb": "duckdb", "sqlite": "sqlite", "postgresql": "postgres"}


def source_query(name: str, src: SourceConfig, scheme: str) -> str:
    """The SQL to read a database source: `source_table` as quoted identifiers, or `query`
    when it is exactly one read-only SELECT. Anything else is a SourceError naming the
    setting, before any connection is opened."""
    if not src.query:
        assert src.source_table is not None
        parts = src.source_table.split(".")
        if not all(p.strip() for p in parts) or len(parts) > 3:
            raise SourceError(
                f"Source '{name}': source_table '{src.source_table}' is not a table name. "
                "Give a table name, or schema.table."
            )
        return "SELECT * FROM " + ".".join(q(p) for p in parts)
    query = src.query.strip().rstrip(";").strip()
    why = _not_one_select(query, _SQL_DIALECTS[scheme])
    if why:
        raise SourceError(
            f"Source '{name}': query must be exactly one read-only SELECT ({why}). "
            "Settings cannot write, copy files, attach databases or change configuration; "
            "see docs/security.md."
        )
    return query


def _not_one_select(query: str, dialect: str) -> str | None:
    """Why `query` is not exactly one read-only SELECT, or None when it is one."""
    import sqlglot
    from sqlglot import exp

    try:
        statements = [s for s in sqlglot.parse(query, read=dialect) if s is not None]
    except sqlglot.errors.SqlglotError as err:
        return f"it does not parse: {str(err).splitlines()[0]}"
    if len(statements) != 1:
        return f"found {len(statements)} statements"
    (tree,) = statements
    if not isinstance(tree, exp.Select | exp.SetOperation):
        return f"found a {tree.key.upper()} statement"
    forbidden = (
        exp.Insert,
        exp.Update,
        exp.Delete,
        exp.Merge,
        exp.Create,
        exp.Drop,
        exp.Alter,
        exp.Command,
        exp.Copy,
        exp.Into,
        exp.Lock,
        exp.Pragma,
        exp.Set,
        exp.Use,
        exp.Attach,
        exp.Detach,
        exp.Install,
    )
    # Writes, DDL, COPY/ATTACH/INSTALL and friends, SELECT ... INTO (creates a table in
    # PostgreSQL) and row locks (FOR UPDATE) are refused wherever they sit in the tree.
    for node in tree.walk():
        if isinstance(node, forbidden):
            return f"it contains {type(node).__name__.upper()}"
    if dialect == "duckdb":
        # DuckDB's own parser has the last word on what it would run.
        kinds = [s.type.name for s in duckdb.extract_statements(query)]
        if kinds != ["SELECT"]:
            return f"DuckDB reads it as {', '.join(kinds) or 'no statement'}"
    return None


def _stage_database(
    con: duckdb.DuckDBPyConnection, name: str, src: SourceConfig, base: Path
) -> Staged:
    assert src.url is not None
    url = src.url
    scheme = urlparse(url).scheme.split("+")[0]
    scheme = "postgresql" if scheme == "postgres" else scheme
    if scheme not in _SQL_DIALECTS:
        raise SourceError(
            f"Source '{name}': unsupported database URL scheme '{scheme}' in {url}. "
            "Use duckdb:///file.duckdb, sqlite:///file.db or postgresql://user@host/db."
        )
    query = source_query(name, src, scheme)
    if scheme in ("duckdb", "sqlite"):
        db_path = Path(_url_path(url, base))
        if not db_path.is_file():
            raise SourceError(
                f"Source '{name}': the database file {db_path} does not exist"
                f"{' (it is a folder)' if db_path.is_dir() else ''}. Check `url`."
            )
    try:
        reader, close = read_only_query(scheme, url, base, query)
        try:
            con.register("_db", reader)
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {STAGE} AS SELECT *, row_number() OVER () AS _row "
                "FROM _db"
            )
            con.unregister("_db")
        finally:
            close()
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


# A DuckDB source is opened read-only, with every file, network and extension access
# disabled (only its own file is open) and the configuration locked, so that no query can
# switch that back on.
DUCKDB_SOURCE_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "lock_configuration": True,
}


def read_only_query(
    scheme: str, url: str, base: Path, query: str
) -> tuple[pa.RecordBatchReader, Any]:
    """Run `query` on a read-only connection to the source database; returns the Arrow
    reader and the function that closes the connection. The connection itself refuses
    writes (a second line of defence behind `source_query`):
    DuckDB: read_only, no external access, locked configuration;
    SQLite: opened with mode=ro and PRAGMA query_only;
    PostgreSQL: every transaction of the session is READ ONLY."""
    if scheme == "duckdb":
        other = duckdb.connect(_url_path(url, base), read_only=True, config=DUCKDB_SOURCE_CONFIG)
        try:
            return other.sql(query).to_arrow_reader(), other.close
        except Exception:
            other.close()
            raise
    if scheme == "sqlite":
        import adbc_driver_sqlite.dbapi as sqlite_dbapi

        path = Path(_url_path(url, base)).resolve()
        db = sqlite_dbapi.connect(f"file:{quote(str(path))}?mode=ro")
    else:
        import adbc_driver_postgresql.dbapi as pg_dbapi

        db = pg_dbapi.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True)
    try:
        cur = db.cursor()
        if scheme == "sqlite":
            cur.execute("PRAGMA query_only = ON")
        else:
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        cur.execute(query)
        reader = cur.fetch_record_batch()
    except Exception:
        db.close()
        raise

    def close() -> None:  # the cursor lives as long as its reader; nothing is committed
        cur.close()
        db.close()

    return reader, close


def _url_path(url: str, base: Path) -> str:
    path = re.sub(r"^[a-z+]+:///", "", url)
    p = Path(path)
    return str(p if p.is_absolute() else base / p)


def _safe_url(url: str) -> str:
    """The URL with any password masked, for logs and the sources table."""
    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", url)
