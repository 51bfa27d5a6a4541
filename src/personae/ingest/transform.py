"""Validation and loading: one SQL pass from the staging table to a canonical table.

Each mapped column is parsed by its canonical kind. A row is rejected (kept in
`rejects_<table>` with a reason code and the raw values) when its id or another required value
is missing or unparseable, when it repeats an earlier row exactly, or when its key is taken. An
optional value that does not parse or lies out of range is set to NULL, and the row is loaded;
the problem is still written to `rejects_<table>` with `kept = true`, so nothing is lost
silently.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb

from personae.config import SourceConfig
from personae.errors import SourceError, closest
from personae.ingest.readers import (
    BAD_ROWS,
    Staged,
    drop_csv_rejects,
    duckdb_read_all,
    lit,
    q,
    restage_csv,
    stage_csv_python,
    with_rows,
)
from personae.store.schemas import LINEAGE, Column, Table

log = logging.getLogger(__name__)
NA_TOKENS = ("", "na", "n/a", "null", "none", "nan", "#n/a", "-", "?")
TRUE_TOKENS = ("true", "t", "yes", "y", "1", "1.0")
FALSE_TOKENS = ("false", "f", "no", "n", "0", "0.0")
GENDERS = {
    "female": ("f", "female", "w", "woman", "women", "fem", "feminine"),
    "male": ("m", "male", "man", "men", "masculine"),
    "other": ("o", "other", "x", "diverse", "nonbinary", "non-binary"),
}
# Service and adjustment product codes seen in retail data (postage, fees, discounts, manual
# adjustments, samples, bad debt). Compared case-insensitively.
NON_PRODUCT_CODES = (
    "POST",
    "POSTAGE",
    "DOT",
    "M",
    "MANUAL",
    "C2",
    "CARRIAGE",
    "D",
    "DISCOUNT",
    "S",
    "SAMPLES",
    "BANK CHARGES",
    "AMAZONFEE",
    "CRUK",
    "PADS",
    "B",
    "ADJUST",
    "FEE",
    "SHIPPING",
)

# Order status values that mean the line was cancelled or returned (cancel_statuses overrides).
CANCEL_STATUSES = (
    "cancelled",
    "canceled",
    "cancel",
    "cancellation",
    "returned",
    "return",
    "refunded",
    "refund",
    "voided",
    "void",
    "rejected",
    "reversed",
    "chargeback",
)


def _na(raw: str) -> str:
    return f"(CASE WHEN {_in(f'trim({raw})', NA_TOKENS)} THEN NULL ELSE trim({raw}) END)"


def _in(expr: str, tokens: tuple[str, ...]) -> str:
    # A regular expression, not IN: DuckDB turns an IN list (and list_contains) into a join
    # evaluated on every row, while a function inside CASE only runs on rows that reach it.
    alternatives = "|".join(re.escape(t) for t in tokens)
    return f"regexp_full_match(lower({expr}), {lit('(' + alternatives + ')')})"


def _parse(
    col: Column, raw: str, src: SourceConfig, source_col: str | None, typed: bool = False
) -> tuple[str, str]:
    """(text, parsed) expressions: the trimmed text (NULL when empty) and the typed value
    (NULL when it does not parse). Costly fallbacks (regular expressions, NA tokens) only run
    on the few cells the plain cast cannot read. A `typed` cell was cast by DuckDB's reader
    already (see `typed_columns`): both are its value."""
    if typed:
        return raw, (raw if col.kind in ("int", "float") else f"CAST({raw} AS {col.sql_type})")
    text = trimmed(raw)
    if col.kind == "id":
        # Spreadsheets and pandas write integer ids as 17850.0; the id is 17850.
        return text, (
            f"(CASE WHEN suffix({text}, '.0') THEN "
            f"regexp_replace({text}, '^(\\d+)\\.0$', '\\1') ELSE {text} END)"
        )
    if col.kind == "text":
        return text, text
    if col.kind in ("int", "float"):
        number = (
            f"coalesce(TRY_CAST({text} AS DOUBLE), "
            f"TRY_CAST(regexp_replace({text}, '[£$€\\s]', '', 'g') AS DOUBLE))"
        )
        if src.decimal == ",":  # 1.234,56 is 1234.56; thousands may also be spaces
            plain = f"regexp_replace({text}, '[£$€\\s.]', '', 'g')"
            number = f"TRY_CAST(replace({plain}, ',', '.') AS DOUBLE)"
        if col.name == "discount_rate":  # '20%' is 0.2
            number = (
                f"(CASE WHEN suffix({text}, '%') THEN "
                f"TRY_CAST(rtrim(rtrim({text}, '%')) AS DOUBLE) / 100 ELSE {number} END)"
            )
        return text, number
    if col.kind == "bool":
        return text, (
            f"(CASE WHEN {_in(text, TRUE_TOKENS)} THEN true "
            f"WHEN {_in(text, FALSE_TOKENS)} THEN false END)"
        )
    if col.kind == "gender":
        cases = " ".join(f"WHEN {_in(text, toks)} THEN {lit(g)}" for g, toks in GENDERS.items())
        return text, f"(CASE {cases} END)"
    if col.kind in ("timestamp", "date"):
        ts = timestamp_sql(text, src.date_formats.get(source_col or ""))
        return text, f"CAST({ts} AS {col.sql_type})"
    raise AssertionError(col.kind)


def trimmed(raw: str) -> str:
    """SQL of a text cell without its outer spaces, NULL when nothing is left. Only cells
    that start or end with a space are trimmed (trimming every cell of 9 M rows of six text
    columns took 1.0 s of 1.8 s)."""
    return (
        f"(CASE WHEN {raw} = '' THEN NULL WHEN prefix({raw}, ' ') OR suffix({raw}, ' ') "
        f"THEN NULLIF(trim({raw}), '') ELSE {raw} END)"
    )


# Whether numbers and timestamps may be cast by DuckDB's CSV reader (tests turn it off to
# compare both ways of reading).
TYPED_READ = True


def typed_columns(src: SourceConfig, table: Table, staged: Staged) -> dict[str, str]:
    """Source columns DuckDB's reader may cast itself, with their DuckDB type: mapped numbers
    (decimal point, no percent sign) and timestamps or dates without a date format, read in
    place from delimited text. A value the reader cannot cast rejects its record, and the file
    is then read as text (`build_cells`), so a cast here gives what the text path gives."""
    if not (TYPED_READ and staged.read_typed and staged.kind == "csv" and staged.row_expr is None):
        return {}
    as_text = {spec.at for spec in src.events}
    types = {}
    for source_col, target in src.columns.items():
        if target not in table.names or source_col in as_text:
            continue
        kind = table.column(target).kind
        if kind in ("int", "float") and src.decimal != "," and target != "discount_rate":
            types[source_col] = "DOUBLE"
        elif kind in ("timestamp", "date") and not src.date_formats.get(source_col):
            types[source_col] = "TIMESTAMP"
    return types


def timestamp_sql(text: str, fmt: str | None) -> str:
    """SQL reading a timestamp from the text expression `text`: with the source's strptime
    format when it has one (a zone in it is converted to naive UTC), else DuckDB's cast; NULL
    when it does not parse."""
    if not fmt:
        return f"TRY_CAST({text} AS TIMESTAMP)"
    ts = f"try_strptime({text}, {lit(fmt)})"
    return f"timezone('UTC', {ts})" if "%z" in fmt or "%Z" in fmt else ts


def row_id(source_id: str, *parts: str) -> str:
    """SQL of a generated key: the source id, the row number and any further SQL parts,
    joined by ':' (unique within the source, stable while the file is)."""
    return "(" + " || ':' || ".join([f"{lit(source_id)} || ':' || _row", *parts]) + ")"


def _problem(
    col: Column,
    text: str,
    parsed: str,
    src: SourceConfig,
    source_col: str | None,
    is_key: bool = False,
    typed: bool = False,
) -> str | None:
    """SQL giving the problem code of one cell (None when nothing can go wrong). NA tokens in a
    typed column are empty values, not problems; a cell DuckDB's reader cast (`typed`) has
    no text left to be one."""
    cases: list[str] = []
    is_na = "false" if typed else _in(text, NA_TOKENS)
    if col.required:
        code = "missing_id" if col.kind == "id" else "missing_value"
        empty = (
            f"{text} IS NULL"
            if col.kind in ("id", "text")
            else (f"{text} IS NULL OR ({parsed} IS NULL AND {is_na})")
        )
        cases.append(f"WHEN {empty} THEN {lit(code)}")
    bad = {
        "id": None,
        "text": None,
        "int": "bad_number",
        "float": "bad_number",
        "bool": "bad_bool",
        "gender": "bad_category",
        "timestamp": "bad_date",
        "date": "bad_date",
    }[col.kind]
    if bad:
        cases.append(
            f"WHEN {text} IS NOT NULL AND {parsed} IS NULL AND NOT {is_na} THEN {lit(bad)}"
        )
    if col.kind in ("int", "float"):
        # NaN, inf and overflowing literals (1e309) cast to non-finite doubles: never stored
        cases.append(f"WHEN NOT isfinite({parsed}) THEN 'bad_number'")
    if col.kind == "int":
        cases.append(f"WHEN {parsed} <> trunc({parsed}) THEN 'bad_number'")
    if col.kind in ("timestamp", "date"):
        first_day, last_day = date_window(col, src)
        upper = f"{parsed} >= TIMESTAMP {lit(str(last_day + timedelta(days=1)))}"
        if col.kind == "date":
            upper = f"{parsed} > DATE {lit(str(last_day))}"
        cases.append(f"WHEN {parsed} < DATE {lit(str(first_day))} OR {upper} THEN 'out_of_range'")
    if is_key and src.id_pattern:  # the pattern describes the table's own ids only
        cases.append(f"WHEN NOT regexp_full_match({text}, {lit(src.id_pattern)}) THEN 'bad_id'")
    if source_col and source_col in src.ranges:
        low, high = src.ranges[source_col]
        cases.append(f"WHEN {parsed} NOT BETWEEN {low} AND {high} THEN 'out_of_range'")
    if col.kind in ("int", "float") and (col.low is not None or col.high is not None):
        scaled = f"({parsed} * {src.scale.get(source_col or '', 1.0)})"
        if col.low is not None:
            cases.append(f"WHEN {scaled} < {col.low} THEN 'out_of_range'")
        if col.high is not None:
            cases.append(f"WHEN {scaled} > {col.high} THEN 'out_of_range'")
    return f"(CASE {' '.join(cases)} END)" if cases else None


def date_window(col: Column, src: SourceConfig) -> tuple[date, date]:
    """The first and last plausible day of a date column: birth dates from
    `earliest_birth_date` to the day of the ingest, other dates from `earliest_date` to
    `latest_date` (by default one day after the day of the ingest, so that a file written
    in another time zone still fits)."""
    today = datetime.now(UTC).date()
    if col.name == "birth_date":
        return src.earliest_birth_date, today
    return src.earliest_date, src.latest_date or today + timedelta(days=1)


def _final(col: Column, parsed: str, src: SourceConfig, source_col: str | None) -> str:
    value = parsed
    factor = src.scale.get(source_col or "")
    if factor is not None and col.kind in ("int", "float"):
        value = f"({value} * {factor})"
    if col.kind == "int":
        value = f"CAST({value} AS BIGINT)"
    return value


# delimiters a one-column header is tried with, as they are written in personae.toml
TOML_DELIMITERS = {",": '","', ";": '";"', "\t": '"\\t"', "|": '"|"'}


def _one_column_header(name: str, src: SourceConfig, columns: list[str]) -> str:
    """Why a header came back as one column, when another delimiter splits it: a hint."""
    if len(columns) != 1:
        return ""
    for sep, written in TOML_DELIMITERS.items():
        if sep != src.delimiter and sep in columns[0]:
            said = f"delimiter = {src.delimiter!r}" if src.delimiter else "the sniffed delimiter"
            return (
                f" The header was read as one column with {said}, and {written} splits it: "
                f"set delimiter = {written} in [sources.{name}], or remove the setting to sniff."
            )
    return ""


def check_mapping(name: str, src: SourceConfig, table: Table, columns: list[str]) -> None:
    """Fail early, naming the source and column, when the mapping cannot work."""
    for source_col, target in src.columns.items():
        if source_col not in columns:
            raise SourceError(
                f"Source '{name}': column '{source_col}' in [sources.{name}.columns] is not in "
                f"the file (columns: {', '.join(columns)}).{closest(source_col, columns)}"
                + _one_column_header(name, src, columns)
            )
        if target not in table.names:
            raise SourceError(
                f"Source '{name}': '{source_col}' is mapped to '{target}', which is not a "
                f"column of {table.name} ({', '.join(table.names)})."
                f"{closest(target, table.names)}"
            )
    targets = list(src.columns.values()) + list(src.constants)
    dupes = {t for t in targets if targets.count(t) > 1}
    if dupes:
        raise SourceError(
            f"Source '{name}': several source columns map to {', '.join(sorted(dupes))}; "
            "map each canonical column once."
        )
    generated = {"order_id", "line_no", "event_id"}
    for col in table.columns:
        if col.required and col.name not in targets and col.name not in generated:
            if src.mode == "update" and col.name not in table.key:
                continue
            if src.row_ids and col.name == table.key[0]:
                continue
            raise SourceError(
                f"Source '{name}': required column '{col.name}' of table {table.name} is not "
                f'mapped. Add a line `"<source column>" = "{col.name}"` under '
                f"[sources.{name}.columns] (source columns: {', '.join(columns)})."
            )
    if table.name == "orders" and "customer_id" not in targets and src.mode != "update":
        raise SourceError(
            f"Source '{name}': no column is mapped to customer_id, so every order would be "
            "anonymous and no customer could be described. Add a line "
            f'`"<source column>" = "customer_id"` under [sources.{name}.columns] naming the '
            "column that identifies the buyer (an id, a customer name or an e-mail address); "
            f"source columns: {', '.join(columns)}."
        )
    for source_col in [*src.date_formats, *src.ranges, *src.scale, *src.wide_spend]:
        if source_col not in columns:
            raise SourceError(
                f"Source '{name}': setting names column '{source_col}', which is not in the "
                f"file.{closest(source_col, columns)}"
            )


def checked_attributes(src: SourceConfig) -> list[str]:
    """Unmapped source columns with a range check: they stay attributes but are validated."""
    return [c for c in src.ranges if c not in src.columns]


def _raw_json(columns: list[str], checked: list[str] | tuple[str, ...] = ()) -> str:
    """A JSON object of raw values; values of `checked` columns that failed become null."""
    if not columns:
        return "NULL::JSON"
    parts = [
        f"{q(c)} := CASE WHEN {q('xa_' + c)} IS NULL THEN {q(c)} END"
        if c in checked
        else f"{q(c)} := {q(c)}"
        for c in columns
    ]
    return "to_json(struct_pack(" + ", ".join(parts) + "))"


# The message of each cell-level reject reason (codes and meanings: schemas.REJECT_REASONS);
# {shown} is the source column, {col} the canonical one.
CELL_MESSAGES = {
    "missing_id": "{shown}: the id is empty",
    "missing_value": "{shown}: a required value ({col}) is empty",
    "bad_id": "{shown}: id does not match the source's id_pattern",
    "bad_date": "{shown}: not a date in the source's date format",
    "bad_number": "{shown}: not a number",
    "bad_bool": "{shown}: not a yes/no value",
    "bad_category": "{shown}: not a known {col} value",
    "out_of_range": "{shown}: outside the valid range of {col}",  # dates: _message
    "duplicate_id": "{shown}: this {col} was already loaded from an earlier row or source "
    '(set mode = "update" to fill in existing rows instead)',
}


def _message(col: Column, reason: str, source_col: str | None, src: SourceConfig) -> str:
    """The reject's message, naming the date format or date window that decided it and its
    setting. (An optional number out of range is nulled, not rejected, and its message in
    `write_rejects` gives the value; the one required number, line_no, has no bounds.)"""
    shown = source_col or col.name
    if reason == "bad_date" and shown in src.date_formats:
        return (
            f"{shown}: not a date in the format {src.date_formats[shown]!r} "
            f"(date_formats.{shown} in personae.toml)"
        )
    if reason == "out_of_range" and col.kind in ("timestamp", "date"):
        first, last = date_window(col, src)
        birth = col.name == "birth_date"
        settings = "earliest_birth_date" if birth else "earliest_date, latest_date"
        return f"{shown}: not between {first} and {last}, the plausible dates ({settings})"
    return CELL_MESSAGES.get(reason, reason).format(shown=shown, col=col.name)


@dataclass
class Plan:
    """What validating one source needs, worked out once from its config and columns."""

    name: str
    src: SourceConfig
    table: Table
    staged: Staged
    source_id: str
    present: list[str] = field(default_factory=list)
    by_target: dict[str, str] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # columns whose cells can have a problem
    dedupe: bool = False
    row_ids: bool = False  # the key is numbered from the rows (src.row_ids, no key column)
    key: list[str] = field(default_factory=list)
    conflicts: int = 0
    typed: dict[str, str] = field(default_factory=dict)  # columns DuckDB's reader cast
    raw_fetched: bool = False  # raw values of rows with a problem or clash are in _cand_raw
    updated: int = 0  # mode = update: existing rows given values
    values_changed: int = 0  # mode = update: values filled in (or overwritten)


def build_cells(
    con: duckdb.DuckDBPyConnection,
    name: str,
    src: SourceConfig,
    table: Table,
    staged: Staged,
    source_id: str = "",
) -> Plan:
    """Parse every cell once into the temp table `_cells` and find the rows that clash.

    `_cells` holds per row: the final value `v_<column>` of every canonical column (NULL where
    the cell had a problem), the hash rows are grouped by to find clashes, the unmapped
    columns (if any) as `_attrs`, and for rows with a problem only, `_x`: the problem code
    `x_<column>` of each cell, the row's fatal reason and its column, and the raw values as
    JSON (the view `_rows` unpacks it). Every later step reads `_cells`, never the
    source again, except to fetch the raw values of the few rows that clash (and, when
    DuckDB's reader cast the values, of the rows with a problem)."""
    check_mapping(name, src, table, staged.columns)
    plan = Plan(name, src, table, staged, source_id)
    plan.by_target = {t: s for s, t in src.columns.items()}
    plan.row_ids = (
        src.row_ids and table.key[0] not in plan.by_target and table.key[0] not in src.constants
    )
    plan.checked = checked_attributes(src)
    plan.unmapped = [c for c in staged.columns if c not in src.columns and c not in src.wide_spend]
    level1 = [q(c) for c in staged.columns]
    if staged.row_expr:
        level1.insert(0, f"{staged.row_expr} AS _row")
    level2, finals = ["*"], []
    plan.typed = typed_columns(src, table, staged)
    for col in table.columns:
        source_col = plan.by_target.get(col.name)
        if source_col is not None:
            raw = q(source_col)
        elif col.name in src.constants:
            raw = lit(src.constants[col.name])
        else:
            continue
        plan.present.append(col.name)
        typed = source_col in plan.typed
        text, parsed = _parse(col, raw, src, source_col, typed)
        level1 += [f"{text} AS {q('t_' + col.name)}", f"{parsed} AS {q('p_' + col.name)}"]
        is_key = col.name == table.key[0]
        prob = _problem(col, q("t_" + col.name), q("p_" + col.name), src, source_col, is_key, typed)
        final = _final(col, q("p_" + col.name), src, source_col)
        if prob is None:  # plain text: nothing can be wrong with it
            finals.append(f"{final} AS {q('v_' + col.name)}")
            continue
        plan.checks.append(col.name)
        level2.append(f"{prob} AS {q('x_' + col.name)}")
        finals.append(
            f"(CASE WHEN {q('x_' + col.name)} IS NULL THEN {final} END) AS {q('v_' + col.name)}"
        )
    for source_col in plan.checked:
        text = _na(q(source_col))
        num = f"TRY_CAST({text} AS DOUBLE)"
        low, high = src.ranges[source_col]
        level2.append(
            f"(CASE WHEN {text} IS NOT NULL AND {num} IS NULL THEN 'bad_number' "
            f"WHEN NOT isfinite({num}) THEN 'bad_number' "
            f"WHEN {num} NOT BETWEEN {low} AND {high} THEN 'out_of_range' END) "
            f"AS {q('xa_' + source_col)}"
        )
    fatal = [
        c
        for c in plan.checks
        if table.column(c).required or c in table.key or (c == table.key[0] and src.id_pattern)
    ]
    reason = " ".join(f"WHEN {q('x_' + c)} IS NOT NULL THEN {q('x_' + c)}" for c in fatal)
    reason_col = " ".join(f"WHEN {q('x_' + c)} IS NOT NULL THEN {lit(c)}" for c in fatal)
    problems = [f"x_{c}" for c in plan.checks] + [f"xa_{c}" for c in plan.checked]
    any_problem = " OR ".join(f"{q(x)} IS NOT NULL" for x in problems) or "false"
    raw_cols = ", ".join(q(c) for c in staged.columns)
    plan.dedupe = src.duplicates == "reject" or (
        src.duplicates == "auto" and table.key[0] in plan.by_target
    )
    key = [k for k in table.key if k in plan.present]
    plan.key = key if len(key) == len(table.key) and src.mode != "update" else []
    # What only rows with a problem need (the fatal reason too: a row has one only when a
    # cell has a problem) is packed into one JSON text, NULL on every other row; `_rows`
    # unpacks it. Not a struct: a struct's fields take memory even when NULL (ten fields
    # 51.6 of about 200 bytes a row, as JSON 6.8, on 20 M order lines; 92 M spilled to disk).
    # Typed values are not the text the file has: those rows' text is read again.
    raw = "NULL::JSON" if plan.typed else _raw_json(staged.columns)
    packed = [f"{q(x)} := {q(x)}" for x in problems]
    packed += [
        "_cell_reason := _cell_reason",
        f"_cell_col := (CASE {reason_col or 'WHEN false THEN NULL'} END)",
        f"_raw := {raw}",
    ]
    shape = {x: "VARCHAR" for x in [*problems, "_cell_reason", "_cell_col"]} | {"_raw": "JSON"}
    extras = [f"(CASE WHEN {any_problem} THEN to_json(struct_pack({', '.join(packed)})) END) AS _x"]
    if plan.unmapped:  # a column of NULLs still takes memory
        extras.append(f"{_raw_json(plan.unmapped, plan.checked)} AS _attrs")
    # Rows are grouped by one hash to find clashes: the key's for valid rows (exact copies
    # parse alike, so they share it too), the raw values' for the others (or for every row
    # when the source has no key).
    key_hash = f"hash({', '.join(q('p_' + k) for k in plan.key)})"
    if plan.key and plan.dedupe:
        extras.append(
            f"(CASE WHEN _cell_reason IS NULL THEN {key_hash} ELSE hash({raw_cols}) END) AS _g"
        )
    elif plan.key:
        extras.append(f"(CASE WHEN _cell_reason IS NULL THEN {key_hash} END) AS _g")
    elif plan.dedupe:
        extras.append(f"hash({raw_cols}) AS _g")
    for i, column in enumerate(src.wide_spend):
        spend = f"TRY_CAST({_na(q(column))} AS DOUBLE)"
        extras.append(f"(CASE WHEN isfinite({spend}) THEN {spend} END) AS ws_{i}")
    for i, spec in enumerate(src.events):
        if spec.at not in staged.columns:
            raise SourceError(
                f"Source '{name}': events.at names column '{spec.at}', which is not in the "
                f"file.{closest(spec.at, staged.columns)}"
            )
        ts = timestamp_sql(_na(q(spec.at)), src.date_formats.get(spec.at))
        first_day, last_day = date_window(Column(spec.at, "timestamp", ""), src)
        extras.append(
            f"(CASE WHEN CAST({ts} AS TIMESTAMP) >= DATE {lit(str(first_day))} AND CAST({ts} "
            f"AS TIMESTAMP) < DATE {lit(str(last_day + timedelta(days=1)))} THEN CAST({ts} AS "
            f"TIMESTAMP) END) AS ev_{i}"
        )
    keep = (["_row"] if staged.row_expr else []) + finals + extras
    in_place = staged.kind == "csv" and staged.row_expr is None
    if in_place:
        drop_csv_rejects(con)
    relation = staged.typed_relation(plan.typed) if plan.typed else staged.relation
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _cells AS
        WITH l1 AS (SELECT {", ".join(level1)} FROM {relation}),
             l2 AS (SELECT {", ".join(level2)} FROM l1),
             l3 AS (SELECT *,
                           (CASE {reason or "WHEN false THEN NULL"} END)::VARCHAR AS _cell_reason
                    FROM l2)
        SELECT {", ".join(keep)} FROM l3"""
    )
    if not staged.settle():  # the file's bytes, hashed meanwhile, were not what its head said
        drop_csv_rejects(con)
        restage_csv(con, name, src, staged)
        return build_cells(con, name, src, table, staged, source_id)
    cells = int(con.execute("SELECT count(*) FROM _cells").fetchall()[0][0])
    if in_place and not duckdb_read_all(con, staged, cells):
        drop_csv_rejects(con)
        if plan.typed:  # perhaps only a value the reader could not cast: read it as text
            staged.read_typed = False
            return build_cells(con, name, src, table, staged, source_id)
        # A bad record, a blank line or a quoted line break: read the file again with
        # Python's csv module, which accounts for every line (see readers.stage_csv_python).
        stage_csv_python(con, staged)
        return build_cells(con, name, src, table, staged, source_id)
    staged.rows = cells + staged.bad_rows
    # A new table's rowids are consecutive in insertion (= file) order, but a temp table's
    # start at a large offset: subtract the first one.
    first = con.execute("SELECT coalesce(min(rowid), 0) FROM _cells").fetchall()[0][0]
    cells_x = f"SELECT rowid AS _rid, *, from_json(_x, {lit(json.dumps(shape))}) AS _xs FROM _cells"
    unpacked = "* EXCLUDE (_rid, _x, _xs), _xs.*, _x IS NOT NULL AS _problem"
    rows_view = (
        f"SELECT {unpacked} FROM ({cells_x})"
        if staged.row_expr
        else with_rows(con, staged, f"SELECT _rid - {first} AS _i, {unpacked} FROM ({cells_x})")
    )
    con.execute(f"CREATE OR REPLACE TEMP VIEW _rows AS {rows_view}")
    _find_conflicts(con, plan)
    return plan


def _find_conflicts(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    """Exact copies of earlier rows and rows whose key is taken, into `_conflicts`.

    Rows are grouped by hash first; only the few rows that share a hash (or whose key is
    already in the table) are compared exactly, on raw values fetched again from the source
    into `_cand_raw`."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _conflicts (_row BIGINT, reason VARCHAR, col VARCHAR)"
    )
    parts = []
    if plan.key or plan.dedupe:  # one grouping finds both kinds (see `_g` in build_cells)
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _shared AS
            SELECT _g FROM _cells GROUP BY _g HAVING count(*) > 1 AND _g IS NOT NULL"""
        )
        if _count(con, "_shared"):
            con.execute(
                """CREATE OR REPLACE TEMP TABLE _shared_rows AS
                SELECT _row, _cell_reason IS NULL AS valid FROM _rows
                WHERE _g IN (SELECT _g FROM _shared)"""
            )
            if plan.dedupe:
                parts.append("SELECT _row, 'dup' AS why FROM _shared_rows")
            if plan.key:
                parts.append("SELECT _row, 'key' FROM _shared_rows WHERE valid")
    if plan.key:
        if _count(con, plan.table.name):
            on = " AND ".join(f"r.{q('v_' + k)} = e.{q(k)}" for k in plan.key)
            parts.append(
                f"SELECT r._row, 'old' FROM _rows r SEMI JOIN {q(plan.table.name)} e "
                f"ON {on} WHERE r._cell_reason IS NULL"
            )
    elif (
        plan.table.name == "orders"
        and plan.src.mode != "update"  # an update fills in the orders it names
        and "order_id" in plan.present
        and ("line_no" not in plan.present)
        and _count(con, "orders")
    ):
        # Line numbers are generated, so only a whole order loaded before can clash.
        parts.append(
            "SELECT _row, 'old' FROM _rows WHERE _cell_reason IS NULL AND "
            "v_order_id IN (SELECT DISTINCT order_id FROM orders)"
        )
    if plan.typed:  # the text of rows with a problem, for their rejects
        parts.append("SELECT _row, 'raw' FROM _rows WHERE _problem")
    con.execute("CREATE OR REPLACE TEMP TABLE _cands (_row BIGINT, why VARCHAR)")
    if parts:
        con.execute(f"INSERT INTO _cands {' UNION ALL '.join(parts)}")
    if not _count(con, "_cands"):
        return
    staged = plan.staged
    raw_cols = ", ".join(q(c) for c in staged.columns)
    source = (
        f"SELECT _row, {raw_cols} FROM {staged.relation}"
        if staged.row_expr
        else with_rows(
            con, staged, f"SELECT row_number() OVER () - 1 AS _i, {raw_cols} FROM {staged.relation}"
        )
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _cand_raw AS SELECT * FROM ({source}) "
        "WHERE _row IN (SELECT _row FROM _cands)"
    )
    plan.raw_fetched = True
    con.execute(
        f"""INSERT INTO _conflicts SELECT _row, 'duplicate', NULL FROM (
            SELECT _row, row_number() OVER (PARTITION BY {raw_cols} ORDER BY _row) AS n
            FROM _cand_raw WHERE _row IN (SELECT _row FROM _cands WHERE why = 'dup'))
        WHERE n > 1"""
    )
    if plan.key:
        vkey = ", ".join(q("v_" + k) for k in plan.key)
        con.execute(
            f"""INSERT INTO _conflicts SELECT _row, 'duplicate_id', {lit(plan.key[0])} FROM (
                SELECT _row, row_number() OVER (PARTITION BY {vkey} ORDER BY _row) AS n
                FROM _rows WHERE _row IN (SELECT _row FROM _cands WHERE why = 'key')
                  AND _row NOT IN (SELECT _row FROM _conflicts))
            WHERE n > 1"""
        )
    key_col = plan.key[0] if plan.key else "order_id"
    con.execute(
        f"""INSERT INTO _conflicts SELECT DISTINCT _row, 'duplicate_id', {lit(key_col)}
        FROM _cands WHERE why = 'old' AND _row NOT IN (SELECT _row FROM _conflicts)"""
    )
    plan.conflicts = _count(con, "_conflicts")
    if plan.conflicts:
        con.execute(
            """CREATE OR REPLACE TEMP VIEW _rows_c AS
            SELECT r.*, k.reason AS _clash, k.col AS _clash_col
            FROM _rows r LEFT JOIN _conflicts k USING (_row)"""
        )


def typed_rows(plan: Plan) -> str:
    """SQL of every row read with its final `_reason` (NULL when the row is loaded)."""
    if not plan.conflicts:
        return "SELECT *, _cell_reason AS _reason, _cell_col AS _reason_col FROM _rows"
    return """SELECT * EXCLUDE (_clash, _clash_col),
        CASE WHEN _clash = 'duplicate' THEN 'duplicate'
             ELSE coalesce(_cell_reason, _clash) END AS _reason,
        CASE WHEN _clash = 'duplicate' THEN NULL
             WHEN _cell_reason IS NOT NULL THEN _cell_col ELSE _clash_col END AS _reason_col
        FROM _rows_c"""


def write_rejects(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    """Rejected rows (kept = false) and nulled values (kept = true) into rejects_<table>."""
    table = plan.table
    msg_cases = " ".join(
        f"WHEN _reason_col = {lit(c)} AND _reason = {lit(r)} "
        f"THEN {lit(_message(plan.table.column(c), r, plan.by_target.get(c), plan.src))}"
        for c in plan.present
        for r in CELL_MESSAGES
    )
    raw_from_source = "NULL::JSON"
    join = ""
    if plan.raw_fetched:
        raw_from_source = "c.j"
        join = (
            f"LEFT JOIN (SELECT _row, {_raw_json(plan.staged.columns)} AS j "
            "FROM _cand_raw) c USING (_row)"
        )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _bad AS
        SELECT t.*, coalesce(t._raw, {raw_from_source}) AS _rawj
        FROM ({typed_rows(plan)}) t {join}
        WHERE t._problem OR t._reason IS NOT NULL"""
    )
    target = q("rejects_" + table.name)
    con.execute(
        f"""INSERT INTO {target}
        SELECT {lit(plan.source_id)}, _row, _rawj, _reason, _reason_col,
               CASE WHEN _reason = 'duplicate' THEN
                   'exact copy of an earlier row of this source' {msg_cases} ELSE _reason END,
               false
        FROM _bad WHERE _reason IS NOT NULL ORDER BY _row"""
    )
    if plan.staged.bad_rows:
        con.execute(
            f"""INSERT INTO {target}
            SELECT {lit(plan.source_id)}, _row, to_json(struct_pack(line := raw)), 'bad_row',
                   NULL, message, false
            FROM {BAD_ROWS} ORDER BY _row"""
        )
    for c in plan.checked:
        con.execute(
            f"""INSERT INTO {target}
            SELECT {lit(plan.source_id)}, _row, _rawj, {q("xa_" + c)}, {lit(c)},
                   {lit(c + ": ")} || (_rawj->>{lit(c)}) || ' -> NULL (' || {q("xa_" + c)}
                   || ')', true
            FROM _bad WHERE _reason IS NULL AND {q("xa_" + c)} IS NOT NULL ORDER BY _row"""
        )
    for c in plan.checks:
        shown = plan.by_target.get(c, c)
        value = f"coalesce(_rawj->>{lit(shown)}, '')" if c in plan.by_target else "''"
        con.execute(
            f"""INSERT INTO {target}
            SELECT {lit(plan.source_id)}, _row, _rawj, {q("x_" + c)}, {lit(c)},
                   {lit(shown + ": ")} || {value} || ' -> NULL (' || {q("x_" + c)} || ')', true
            FROM _bad WHERE _reason IS NULL AND {q("x_" + c)} IS NOT NULL ORDER BY _row"""
        )
    con.execute("DROP TABLE _bad")


def insert_rows(con: duckdb.DuckDBPyConnection, plan: Plan) -> int:
    """Insert the accepted rows into the canonical table; returns the count."""
    table, src = plan.table, plan.src
    values = {
        c.name: (q("v_" + c.name) if c.name in plan.present else f"NULL::{c.sql_type}")
        for c in table.columns
    }
    if plan.row_ids:
        values[table.key[0]] = key_value(plan)
        log.warning(
            "source %s: no %s column; row_ids = true numbers the rows as ids (%s-<row>)",
            plan.name,
            table.key[0],
            plan.name,
        )
    if table.name == "orders":
        _order_columns(values, plan.present, src, plan.source_id)
    if table.key == ("event_id",) and "event_id" not in plan.present:
        values["event_id"] = row_id(plan.source_id)
    values["source_id"] = lit(plan.source_id)
    values["source_row"] = "_row"
    values["attributes"] = "_attrs" if plan.unmapped else "NULL::JSON"
    names = [*table.names, *(c.name for c in LINEAGE)]
    select = ", ".join(f"{values[n]} AS {q(n)}" for n in names)
    rows = f"({typed_rows(plan)}) WHERE _reason IS NULL"
    if src.mode == "update":
        return _upsert(con, plan, names, select, rows)
    before = _count(con, table.name)
    con.execute(
        f"INSERT INTO {q(table.name)} ({', '.join(q(n) for n in names)}) "
        f"SELECT {select} FROM {rows}"
    )
    return _count(con, table.name) - before


def key_value(plan: Plan) -> str:
    """SQL of the row's key: its parsed value, or the numbered row with row_ids."""
    key = plan.table.key[0]
    if plan.row_ids:
        return f"({lit(plan.name + '-')} || _row)"
    return q("v_" + key)


def _order_columns(
    values: dict[str, str], present: list[str], src: SourceConfig, source_id: str
) -> None:
    if "order_id" not in present:
        # One order per basket (a customer's lines at one timestamp), or per line; anonymous
        # lines cannot be grouped and stay one order each.
        line_id = row_id(source_id)
        if src.orders_without_id == "basket" and "customer_id" in present:
            basket = (
                f"({lit(source_id + ':')} || {values['customer_id']} || ':' || "
                f"strftime({values['ordered_at']}, '%Y-%m-%dT%H:%M:%S'))"
            )
            values["order_id"] = (
                f"(CASE WHEN {values['customer_id']} IS NULL OR {values['ordered_at']} IS NULL "
                f"THEN {line_id} ELSE {basket} END)"
            )
        else:
            values["order_id"] = line_id
    if "line_no" not in present:
        values["line_no"] = f"row_number() OVER (PARTITION BY {values['order_id']} ORDER BY _row)"
    if "amount" not in present and {"quantity", "unit_price"} <= set(present):
        values["amount"] = f"({values['quantity']} * {values['unit_price']})"
    if "discount" not in present and "discount_rate" in present:
        # amount is what was paid: the list price is amount / (1 - rate)
        rate = values["discount_rate"]
        values["discount"] = (
            f"(CASE WHEN {rate} < 1 THEN {values['amount']} * {rate} / (1 - {rate}) END)"
        )
    if "currency" not in present and src.currency:
        values["currency"] = lit(src.currency)
    if "is_return" not in present:
        values["is_return"] = return_expr(values, src)
    codes = tuple(c.upper() for c in (src.non_product_codes or NON_PRODUCT_CODES))
    values["is_non_product"] = (
        f"coalesce({_in(values['product_id'], tuple(c.lower() for c in codes))}, false)"
    )


def return_expr(values: dict[str, str], src: SourceConfig) -> str:
    parts = [
        f"coalesce({values['quantity']} < 0, false)",
        f"coalesce({values['quantity']} IS NULL AND {values['amount']} < 0, false)",
    ]
    if src.cancel_pattern:
        parts.append(
            f"coalesce(regexp_matches({values['order_id']}, {lit(src.cancel_pattern)}), false)"
        )
    if values.get("status", "NULL") != "NULL" and not values["status"].startswith("NULL::"):
        parts.append(f"coalesce({_in(values['status'], cancel_statuses(src))}, false)")
    return "(" + " OR ".join(parts) + ")"


def cancel_statuses(src: SourceConfig) -> tuple[str, ...]:
    """Status values (lower case) that make a line a cancellation or return."""
    given = src.cancel_statuses
    return tuple(v.strip().lower() for v in given) if given is not None else CANCEL_STATUSES


def _upsert(
    con: duckdb.DuckDBPyConnection, plan: Plan, names: list[str], select: str, rows: str
) -> int:
    """mode = update: fill in empty columns of existing rows by key (every given value with
    overwrite = true; a source's `constants` are always written, they are what the update
    says, e.g. stage = won); insert rows with a new key. Counts rows updated and values
    changed into the plan."""
    table = plan.table
    con.execute(f"CREATE OR REPLACE TEMP TABLE _new AS SELECT {select} FROM {rows}")
    key = table.key
    on = " AND ".join(f"t.{q(k)} = n.{q(k)}" for k in key)
    cols = [n for n in names if n not in key and n not in ("source_id", "source_row", "attributes")]
    wins = [n for n in cols if plan.src.overwrite or n in plan.src.constants]
    sets = ", ".join(
        f"{q(n)} = coalesce(n.{q(n)}, t.{q(n)})"
        if n in wins
        else f"{q(n)} = coalesce(t.{q(n)}, n.{q(n)})"
        for n in cols
    )
    takes = [
        f"(n.{q(n)} IS NOT NULL AND n.{q(n)} IS DISTINCT FROM t.{q(n)})"
        if n in wins
        else f"(t.{q(n)} IS NULL AND n.{q(n)} IS NOT NULL)"
        for n in cols
    ]
    changed = " + ".join(f"{t}::INT" for t in takes) or "0"
    row = con.execute(
        f"SELECT count(*), coalesce(sum({changed}), 0) FROM {q(table.name)} t JOIN _new n ON {on}"
    ).fetchall()[0]
    plan.updated, plan.values_changed = int(row[0]), int(row[1])
    con.execute(
        f"""UPDATE {q(table.name)} t SET {sets},
            attributes = CASE WHEN t.attributes IS NULL THEN n.attributes
                              WHEN n.attributes IS NULL THEN t.attributes
                              ELSE json_merge_patch(t.attributes, n.attributes) END
        FROM _new n WHERE {on}"""
    )
    con.execute(
        f"INSERT INTO {q(table.name)} SELECT n.* FROM _new n ANTI JOIN {q(table.name)} t ON {on}"
    )
    return _count(con, "_new")


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {q(table)}").fetchall()[0]
    return int(row[0]) if row else 0


def order_flags(con: duckdb.DuckDBPyConnection, plan: Plan) -> dict[str, int]:
    """Counts of usable-but-special order lines, over every row read (before duplicates are
    removed, so they match counts taken on the raw file)."""
    v = {
        c: (q("v_" + c) if c in plan.present else "NULL")
        for c in (
            "customer_id",
            "quantity",
            "unit_price",
            "amount",
            "order_id",
            "product_id",
            "status",
        )
    }
    src = plan.src
    codes = tuple(c.lower() for c in (src.non_product_codes or NON_PRODUCT_CODES))
    exprs = {
        "anonymous (no customer id)": f"{v['customer_id']} IS NULL",
        "negative quantity": f"{v['quantity']} < 0",
        "zero price": f"{v['unit_price']} = 0",
        "negative price": f"{v['unit_price']} < 0",
        "non-positive price": f"{v['unit_price']} <= 0",
        "zero amount": f"{v['amount']} = 0",
        "non-product codes": _in(v["product_id"], codes),
    }
    if src.cancel_pattern:
        exprs["cancelled orders (lines)"] = (
            f"regexp_matches({v['order_id']}, {lit(src.cancel_pattern)})"
        )
    if "status" in plan.present:
        exprs["cancelled or returned status (cancel_statuses)"] = _in(
            v["status"], cancel_statuses(src)
        )
    exprs["returns and cancellations (is_return)"] = return_expr(v, src)
    select = ", ".join(f"count(*) FILTER (WHERE {e})" for e in exprs.values())
    row = con.execute(f"SELECT {select} FROM _cells").fetchall()[0]
    return {k: int(n) for k, n in zip(exprs, row, strict=True) if n}


def insert_wide_spend(con: duckdb.DuckDBPyConnection, plan: Plan) -> int:
    """Per-customer spend columns (e.g. MntWines) become one order per customer with a line
    per category, dated `spend_date`, so that category spend is in `orders` like any other."""
    src = plan.src
    if not src.wide_spend:
        return 0
    if not src.spend_date:
        raise SourceError(
            f"Source '{plan.name}': wide_spend needs `spend_date` (YYYY-MM-DD), the date the "
            f"spend totals were taken. Add it to [sources.{plan.name}]."
        )
    parts = []
    for i, (column, category) in enumerate(src.wide_spend.items()):
        parts.append(
            f"SELECT {key_value(plan)} || ':spend' AS order_id, {i + 1} AS line_no, "
            f"{key_value(plan)} AS v_customer_id, "
            f"{lit(category)} AS category, ws_{i} AS amount, _row, "
            f'to_json(struct_pack(aggregate := true, "column" := {lit(column)})) '
            f"AS attributes FROM ({typed_rows(plan)}) WHERE _reason IS NULL AND ws_{i} > 0"
        )
    before = _count(con, "orders")
    con.execute(
        f"""INSERT INTO orders (order_id, line_no, customer_id, ordered_at, category, amount,
                currency, is_return, is_non_product, source_id, source_row, attributes)
        SELECT order_id, line_no, v_customer_id, TIMESTAMP {lit(src.spend_date)}, category,
               amount, {lit(src.currency) if src.currency else "NULL"}, false, false,
               {lit(plan.source_id)}, _row, attributes
        FROM ({" UNION ALL ".join(parts)}) ORDER BY _row, line_no"""
    )
    return _count(con, "orders") - before


def insert_derived_events(con: duckdb.DuckDBPyConnection, plan: Plan) -> int:
    """Events derived from date columns of an accounts or customers source."""
    src = plan.src
    if not src.events:
        return 0
    who = {"accounts": "account_id", "customers": "customer_id"}.get(plan.table.name)
    if who is None:
        raise SourceError(
            f"Source '{plan.name}': `events` can be derived from accounts or customers "
            "sources only."
        )
    before = _count(con, "events")
    for i, spec in enumerate(src.events):
        con.execute(
            f"""INSERT INTO events (event_id, {who}, occurred_at, event_type, source_id,
                    source_row)
            SELECT {row_id(plan.source_id, lit(spec.event_type))},
                   {key_value(plan)}, ev_{i}, {lit(spec.event_type)}, {lit(plan.source_id)},
                   _row
            FROM ({typed_rows(plan)}) WHERE _reason IS NULL AND ev_{i} IS NOT NULL
            ORDER BY _row"""
        )
    return _count(con, "events") - before


def reconcile(con: duckdb.DuckDBPyConnection, plan: Plan, summary: Any) -> None:
    """The invariant of every ingest, per source: every line of a text file is the header, a
    record or a skipped blank line, and every record read is loaded or rejected. Raises a
    SourceError naming the source and the gap when either fails, so that the run fails and
    publishes nothing; reports skipped blank lines in `summary.flags`."""
    staged = plan.staged
    problems = []
    if staged.kind == "csv" and staged.lines_accounted != staged.lines:
        problems.append(
            f"the file has {staged.lines:,} lines but only {staged.lines_accounted:,} were "
            "read as its header, records and blank lines"
        )
    gap = summary.rows_read - summary.rows_loaded - summary.rows_rejected
    if gap:
        problems.append(
            f"{summary.rows_read:,} rows were read but {summary.rows_loaded:,} loaded and "
            f"{summary.rows_rejected:,} rejected: {abs(gap):,} rows "
            + ("unaccounted for" if gap > 0 else "counted twice")
        )
    if problems:
        raise SourceError(
            f"Source '{plan.name}' ({staged.location}): {'; '.join(problems)}. Nothing of this "
            "run is kept. This is a bug in personae's reader: please report it with the file."
        )
    if staged.blank_lines:
        summary.flags["blank lines skipped"] = staged.blank_lines
    if plan.row_ids:
        summary.flags[f"ids numbered from rows (row_ids): {plan.table.key[0]}"] = (
            summary.rows_loaded
        )
    con.execute(f"DROP TABLE IF EXISTS {BAD_ROWS}")
