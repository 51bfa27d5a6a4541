"""Validation and loading: one SQL pass from the staging table to a canonical table.

Each mapped column is parsed by its canonical kind. A row is rejected (kept in
`rejects_<table>` with a reason code and the raw values) when its id or another required value
is missing or unparseable, when it repeats an earlier row exactly, or when its key is taken. An
optional value that does not parse or lies out of range is set to NULL, and the row is loaded;
the problem is still written to `rejects_<table>` with `kept = true`, so nothing is lost
silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import duckdb

from personae.config import SourceConfig
from personae.errors import SourceError, closest
from personae.ingest.readers import STAGE, Staged, lit, q
from personae.store.schemas import LINEAGE, Column, Table

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
_T = "_t"  # alias of the typed rows


@dataclass
class LoadResult:
    """Counts of one source's load."""

    rows_read: int
    rows_loaded: int
    rejected: dict[str, int] = field(default_factory=dict)
    nulled: dict[str, int] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)
    derived: dict[str, int] = field(default_factory=dict)
    updated: int = 0


def _na(raw: str) -> str:
    return f"(CASE WHEN {_in(f'trim({raw})', NA_TOKENS)} THEN NULL ELSE trim({raw}) END)"


def _in(expr: str, tokens: tuple[str, ...]) -> str:
    # A regular expression, not IN: DuckDB turns an IN list (and list_contains) into a join
    # evaluated on every row, while a function inside CASE only runs on rows that reach it.
    alternatives = "|".join(re.escape(t) for t in tokens)
    return f"regexp_full_match(lower({expr}), {lit('(' + alternatives + ')')})"


def _parse(col: Column, raw: str, src: SourceConfig, source_col: str | None) -> tuple[str, str]:
    """(text, parsed) expressions: the trimmed text (NULL when empty) and the typed value
    (NULL when it does not parse). Costly fallbacks (regular expressions, NA tokens) only run
    on the few cells the plain cast cannot read."""
    text = f"NULLIF(trim({raw}), '')"
    if col.kind == "id":
        # Spreadsheets and pandas write integer ids as 17850.0; the id is 17850.
        return text, (
            f"(CASE WHEN suffix({text}, '.0') THEN "
            f"regexp_replace({text}, '^(\\d+)\\.0$', '\\1') ELSE {text} END)"
        )
    if col.kind == "text":
        return text, text
    if col.kind in ("int", "float"):
        return text, (
            f"coalesce(TRY_CAST({text} AS DOUBLE), "
            f"TRY_CAST(regexp_replace({text}, '[£$€\\s]', '', 'g') AS DOUBLE))"
        )
    if col.kind == "bool":
        return text, (
            f"(CASE WHEN {_in(text, TRUE_TOKENS)} THEN true "
            f"WHEN {_in(text, FALSE_TOKENS)} THEN false END)"
        )
    if col.kind == "gender":
        cases = " ".join(f"WHEN {_in(text, toks)} THEN {lit(g)}" for g, toks in GENDERS.items())
        return text, f"(CASE {cases} END)"
    if col.kind in ("timestamp", "date"):
        fmt = src.date_formats.get(source_col or "")
        if fmt:
            ts = f"try_strptime({text}, {lit(fmt)})"
            if "%z" in fmt or "%Z" in fmt:
                ts = f"timezone('UTC', {ts})"
        else:
            ts = f"TRY_CAST({text} AS TIMESTAMP)"
        return text, f"CAST({ts} AS {col.sql_type})"
    raise AssertionError(col.kind)


def _problem(col: Column, text: str, parsed: str, src: SourceConfig, source_col: str | None) -> str:
    """SQL giving the problem code of one cell, or NULL. NA tokens (n/a, null, ...) in a
    typed column are empty values, not problems."""
    cases: list[str] = []
    is_na = _in(text, NA_TOKENS)
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
    if col.kind == "int":
        cases.append(f"WHEN {parsed} <> trunc({parsed}) THEN 'bad_number'")
    if col.kind == "id" and src.id_pattern:
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
    return f"(CASE {' '.join(cases)} END)" if cases else "NULL::VARCHAR"


def _final(col: Column, parsed: str, src: SourceConfig, source_col: str | None) -> str:
    value = parsed
    factor = src.scale.get(source_col or "")
    if factor is not None and col.kind in ("int", "float"):
        value = f"({value} * {factor})"
    if col.kind == "int":
        value = f"CAST({value} AS BIGINT)"
    return value


def check_mapping(name: str, src: SourceConfig, table: Table, columns: list[str]) -> None:
    """Fail early, naming the source and column, when the mapping cannot work."""
    for source_col, target in src.columns.items():
        if source_col not in columns:
            raise SourceError(
                f"Source '{name}': column '{source_col}' in [sources.{name}.columns] is not in "
                f"the file (columns: {', '.join(columns)}).{closest(source_col, columns)}"
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
            raise SourceError(
                f"Source '{name}': required column '{col.name}' of table {table.name} is not "
                f'mapped. Add a line `"<source column>" = "{col.name}"` under '
                f"[sources.{name}.columns] (source columns: {', '.join(columns)})."
            )
    for source_col in [*src.date_formats, *src.ranges, *src.scale, *src.wide_spend]:
        if source_col not in columns:
            raise SourceError(
                f"Source '{name}': setting names column '{source_col}', which is not in the "
                f"file.{closest(source_col, columns)}"
            )


def build_typed(
    con: duckdb.DuckDBPyConnection,
    name: str,
    src: SourceConfig,
    table: Table,
    staged: Staged,
    source_id: str,
) -> list[str]:
    """Create temp table `_typed`: parsed values, per-cell problems and the row's reason.

    Returns the canonical columns that have a value (mapped or constant)."""
    check_mapping(name, src, table, staged.columns)
    by_target = {t: s for s, t in src.columns.items()}
    present: list[str] = []
    level1 = [f"{staged.row_expr} AS _row"] + [q(c) for c in staged.columns]
    level2 = ["*"]
    for col in table.columns:
        source_col = by_target.get(col.name)
        if source_col is not None:
            raw = q(source_col)
        elif col.name in src.constants:
            raw = lit(src.constants[col.name])
        else:
            continue
        present.append(col.name)
        text, parsed = _parse(col, raw, src, source_col)
        level1 += [f"{text} AS {q('t_' + col.name)}", f"{parsed} AS {q('p_' + col.name)}"]
        prob = _problem(col, q("t_" + col.name), q("p_" + col.name), src, source_col)
        level2.append(f"{prob} AS {q('x_' + col.name)}")
    for source_col in checked_attributes(src):
        text = _na(q(source_col))
        num = f"TRY_CAST({text} AS DOUBLE)"
        low, high = src.ranges[source_col]
        level2.append(
            f"(CASE WHEN {text} IS NOT NULL AND {num} IS NULL THEN 'bad_number' "
            f"WHEN {num} NOT BETWEEN {low} AND {high} THEN 'out_of_range' END) "
            f"AS {q('xa_' + source_col)}"
        )
    fatal = [
        c
        for c in present
        if table.column(c).required
        or c in table.key
        or (table.column(c).kind == "id" and src.id_pattern)
    ]
    reason_cases = " ".join(f"WHEN {q('x_' + c)} IS NOT NULL THEN {q('x_' + c)}" for c in fatal)
    reason_cols = " ".join(f"WHEN {q('x_' + c)} IS NOT NULL THEN {lit(c)}" for c in fatal)
    level3 = [
        "*",
        f"(CASE {reason_cases or 'WHEN false THEN NULL'} END) AS _cell_reason",
        f"(CASE {reason_cols or 'WHEN false THEN NULL'} END) AS _cell_col",
    ]
    # Views, not tables: the parsing is cheap to repeat and a 10-million-row copy is not.
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW _cells AS
        WITH l1 AS (SELECT {", ".join(level1)} FROM {STAGE}),
             l2 AS (SELECT {", ".join(level2)} FROM l1)
        SELECT {", ".join(level3)} FROM l2"""
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _conflicts (_row BIGINT, reason VARCHAR, col VARCHAR)"
    )
    reject_dupes = src.duplicates == "reject" or (
        src.duplicates == "auto" and table.key[0] in by_target
    )
    if reject_dupes:
        _find_duplicates(con, staged)
    _find_key_conflicts(con, table, present, src)
    con.execute(
        """CREATE OR REPLACE TEMP VIEW _typed AS
        SELECT c.*,
               CASE WHEN k.reason = 'duplicate' THEN 'duplicate'
                    ELSE coalesce(c._cell_reason, k.reason) END AS _reason,
               CASE WHEN k.reason = 'duplicate' THEN NULL
                    WHEN c._cell_reason IS NOT NULL THEN c._cell_col ELSE k.col END
                    AS _reason_col
        FROM _cells c LEFT JOIN _conflicts k USING (_row)"""
    )
    return present


def _find_duplicates(con: duckdb.DuckDBPyConnection, staged: Staged) -> None:
    """Rows that repeat an earlier row exactly. Rows are grouped by a hash of all their
    values first, so the exact comparison only runs on the few rows that share a hash."""
    raw_cols = ", ".join(q(c) for c in staged.columns)
    con.execute(
        f"""INSERT INTO _conflicts
        SELECT _row, 'duplicate', NULL FROM (
            SELECT {staged.row_expr} AS _row,
                   row_number() OVER (PARTITION BY {raw_cols} ORDER BY {staged.row_expr}) AS n
            FROM {STAGE}
            WHERE hash({raw_cols}) IN (SELECT h FROM (SELECT hash({raw_cols}) AS h
                                                      FROM {STAGE})
                                       GROUP BY h HAVING count(*) > 1))
        WHERE n > 1"""
    )


def _find_key_conflicts(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    present: list[str],
    src: SourceConfig,
) -> None:
    """Rows whose key an earlier row of this source, or another source, already has."""
    key = [k for k in table.key if k in present]
    if len(key) != len(table.key) or src.mode == "update":
        if table.name == "orders" and "order_id" in present and "line_no" not in present:
            # Line numbers are generated, so only a whole order loaded before can clash.
            con.execute(
                """INSERT INTO _conflicts SELECT _row, 'duplicate_id', 'order_id'
                FROM _cells c ANTI JOIN _conflicts k USING (_row)
                WHERE c._cell_reason IS NULL
                  AND p_order_id IN (SELECT DISTINCT order_id FROM orders)"""
            )
        return
    pkey = ", ".join(q("p_" + k) for k in key)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _keys AS SELECT _row, {pkey}, hash({pkey}) AS _h
        FROM _cells c ANTI JOIN _conflicts k USING (_row) WHERE c._cell_reason IS NULL"""
    )
    con.execute(
        f"""INSERT INTO _conflicts SELECT _row, 'duplicate_id', {lit(key[0])} FROM (
            SELECT _row, row_number() OVER (PARTITION BY {pkey} ORDER BY _row) AS n
            FROM _keys WHERE _h IN (SELECT _h FROM _keys GROUP BY _h HAVING count(*) > 1))
        WHERE n > 1"""
    )
    if con.execute(f"SELECT count(*) FROM {q(table.name)}").fetchall()[0][0]:
        on = " AND ".join(f"c.{q('p_' + k)} = e.{q(k)}" for k in key)
        con.execute(
            f"""INSERT INTO _conflicts SELECT c._row, 'duplicate_id', {lit(key[0])}
            FROM _keys c SEMI JOIN {q(table.name)} e ON {on}
            WHERE c._row NOT IN (SELECT _row FROM _conflicts)"""
        )
    con.execute("DROP TABLE _keys")


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


def _message(col: str, reason: str, source_col: str | None) -> str:
    shown = source_col or col
    texts = {
        "missing_id": f"{shown}: the id is empty",
        "missing_value": f"{shown}: a required value ({col}) is empty",
        "bad_id": f"{shown}: id does not match the source's id_pattern",
        "bad_date": f"{shown}: not a date in the source's date format",
        "bad_number": f"{shown}: not a number",
        "bad_bool": f"{shown}: not a yes/no value",
        "bad_category": f"{shown}: not a known {col} value",
        "out_of_range": f"{shown}: outside the valid range of {col}",
        "duplicate_id": f"{shown}: this {col} was already loaded from an earlier row or "
        'source (set mode = "update" to fill in existing rows instead)',
    }
    return texts.get(reason, reason)


def write_rejects(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    src: SourceConfig,
    staged: Staged,
    present: list[str],
    source_id: str,
) -> None:
    by_target = {t: s for s, t in src.columns.items()}
    raw = _raw_json(staged.columns)
    msg_cases = " ".join(
        f"WHEN _reason_col = {lit(c)} AND _reason = {lit(r)} "
        f"THEN {lit(_message(c, r, by_target.get(c)))}"
        for c in present
        for r in (
            "missing_id",
            "missing_value",
            "bad_id",
            "bad_date",
            "bad_number",
            "duplicate_id",
            "out_of_range",
        )
    )
    # One scan of the typed rows keeps every row with any problem; the rest reads that.
    cells = [q("x_" + c) for c in present] + [q("xa_" + c) for c in checked_attributes(src)]
    any_problem = " OR ".join(["_reason IS NOT NULL", *(f"{c} IS NOT NULL" for c in cells)])
    con.execute(f"CREATE OR REPLACE TEMP TABLE _bad AS SELECT * FROM _typed WHERE {any_problem}")
    con.execute(
        f"""INSERT INTO {q("rejects_" + table.name)}
        SELECT {lit(source_id)}, _row, {raw}, _reason, _reason_col,
               CASE WHEN _reason = 'duplicate' THEN
                   'exact copy of an earlier row of this source' {msg_cases} ELSE _reason END,
               false
        FROM _bad WHERE _reason IS NOT NULL"""
    )
    for c in checked_attributes(src):
        con.execute(
            f"""INSERT INTO {q("rejects_" + table.name)}
            SELECT {lit(source_id)}, _row, {raw}, {q("xa_" + c)}, {lit(c)},
                   {lit(c + ": ")} || {q(c)} || ' -> NULL (' || {q("xa_" + c)} || ')', true
            FROM _bad WHERE _reason IS NULL AND {q("xa_" + c)} IS NOT NULL"""
        )
    for c in present:
        shown = by_target.get(c, c)
        con.execute(
            f"""INSERT INTO {q("rejects_" + table.name)}
            SELECT {lit(source_id)}, _row, {raw}, {q("x_" + c)}, {lit(c)},
                   {lit(shown + ": ")} || coalesce({q(shown) if c in by_target else "NULL"},
                   '') || ' -> NULL (' || {q("x_" + c)} || ')', true
            FROM _bad WHERE _reason IS NULL AND {q("x_" + c)} IS NOT NULL"""
        )
    con.execute("DROP TABLE _bad")


def _value(
    c: str, present: list[str], table: Table, src: SourceConfig, by_target: dict[str, str]
) -> str:
    if c not in present:
        return f"NULL::{table.column(c).sql_type}"
    col = table.column(c)
    final = _final(col, q("p_" + c), src, by_target.get(c))
    return f"(CASE WHEN {q('x_' + c)} IS NULL THEN {final} END)"


def insert_rows(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    src: SourceConfig,
    staged: Staged,
    present: list[str],
    source_id: str,
) -> int:
    """Insert the accepted rows of `_typed` into the canonical table; returns the count."""
    by_target = {t: s for s, t in src.columns.items()}
    values = {c.name: _value(c.name, present, table, src, by_target) for c in table.columns}
    if table.name == "orders":
        _order_columns(values, present, src, source_id)
    if table.key == ("event_id",) and "event_id" not in present:
        values["event_id"] = f"({lit(source_id + ':')} || _row)"
    unmapped = [c for c in staged.columns if c not in by_target and c not in src.wide_spend]
    values["source_id"] = lit(source_id)
    values["source_row"] = "_row"
    values["attributes"] = _raw_json(unmapped, checked_attributes(src))
    names = [*table.names, *(c.name for c in LINEAGE)]
    select = ", ".join(f"{values[n]} AS {q(n)}" for n in names)
    if src.mode == "update":
        return _upsert(con, table, names, select)
    before = _count(con, table.name)
    con.execute(
        f"INSERT INTO {q(table.name)} ({', '.join(q(n) for n in names)}) "
        f"SELECT {select} FROM _typed WHERE _reason IS NULL"
    )
    return _count(con, table.name) - before


def _order_columns(
    values: dict[str, str], present: list[str], src: SourceConfig, source_id: str
) -> None:
    if "order_id" not in present:
        values["order_id"] = f"({lit(source_id + ':')} || _row)"
    if "line_no" not in present:
        values["line_no"] = f"row_number() OVER (PARTITION BY {values['order_id']} ORDER BY _row)"
    if "amount" not in present and {"quantity", "unit_price"} <= set(present):
        values["amount"] = f"({values['quantity']} * {values['unit_price']})"
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
    return "(" + " OR ".join(parts) + ")"


def _upsert(con: duckdb.DuckDBPyConnection, table: Table, names: list[str], select: str) -> int:
    """mode = update: fill in columns of existing rows by key; insert rows with a new key."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _new AS SELECT {select} FROM _typed WHERE _reason IS NULL"
    )
    key = table.key
    on = " AND ".join(f"t.{q(k)} = n.{q(k)}" for k in key)
    sets = ", ".join(
        f"{q(n)} = coalesce(n.{q(n)}, t.{q(n)})"
        for n in names
        if n not in key and n not in ("source_id", "source_row", "attributes")
    )
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


def order_flags(
    con: duckdb.DuckDBPyConnection, present: list[str], src: SourceConfig
) -> dict[str, int]:
    """Counts of usable-but-special order lines, over every row read (before duplicates are
    removed, so they match counts taken on the raw file)."""
    p = {
        c: (q("p_" + c) if c in present else "NULL")
        for c in ("customer_id", "quantity", "unit_price", "amount", "order_id", "product_id")
    }
    codes = tuple(c.upper() for c in (src.non_product_codes or NON_PRODUCT_CODES))
    exprs = {
        "anonymous (no customer id)": f"{p['customer_id']} IS NULL",
        "negative quantity": f"{p['quantity']} < 0",
        "zero price": f"{p['unit_price']} = 0",
        "negative price": f"{p['unit_price']} < 0",
        "non-positive price": f"{p['unit_price']} <= 0",
        "zero amount": f"{p['amount']} = 0",
        "non-product codes": _in(p["product_id"], tuple(c.lower() for c in codes)),
    }
    if src.cancel_pattern:
        exprs["cancelled orders (lines)"] = (
            f"regexp_matches({p['order_id']}, {lit(src.cancel_pattern)})"
        )
    exprs["returns and cancellations (is_return)"] = return_expr(p, src)
    select = ", ".join(f"count(*) FILTER (WHERE {e})" for e in exprs.values())
    row = con.execute(f"SELECT {select} FROM _typed").fetchall()[0]
    assert row is not None
    return {k: int(v) for k, v in zip(exprs, row, strict=True) if v}


def insert_wide_spend(
    con: duckdb.DuckDBPyConnection, name: str, src: SourceConfig, source_id: str
) -> int:
    """Per-customer spend columns (e.g. MntWines) become one order per customer with a line
    per category, dated `spend_date`, so that category spend is in `orders` like any other."""
    if not src.wide_spend:
        return 0
    if not src.spend_date:
        raise SourceError(
            f"Source '{name}': wide_spend needs `spend_date` (YYYY-MM-DD), the date the spend "
            "totals were taken. Add it to [sources." + name + "]."
        )
    parts = []
    for i, (column, category) in enumerate(src.wide_spend.items(), start=1):
        amount = f"TRY_CAST({_na(q(column))} AS DOUBLE)"
        parts.append(
            f"SELECT p_customer_id || ':spend' AS order_id, {i} AS line_no, p_customer_id, "
            f"{lit(category)} AS category, {amount} AS amount, _row, "
            f'to_json(struct_pack(aggregate := true, "column" := {lit(column)})) AS attributes '
            f"FROM _typed WHERE _reason IS NULL AND {amount} > 0"
        )
    before = _count(con, "orders")
    con.execute(
        f"""INSERT INTO orders (order_id, line_no, customer_id, ordered_at, category, amount,
                currency, is_return, is_non_product, source_id, source_row, attributes)
        SELECT order_id, line_no, p_customer_id, TIMESTAMP {lit(src.spend_date)}, category,
               amount, {lit(src.currency) if src.currency else "NULL"}, false, false,
               {lit(source_id)}, _row, attributes
        FROM ({" UNION ALL ".join(parts)}) ORDER BY _row, line_no"""
    )
    return _count(con, "orders") - before


def insert_derived_events(
    con: duckdb.DuckDBPyConnection,
    name: str,
    src: SourceConfig,
    table: Table,
    staged: Staged,
    source_id: str,
) -> int:
    """Events derived from date columns of an accounts or customers source."""
    if not src.events:
        return 0
    who = {"accounts": "account_id", "customers": "customer_id"}.get(table.name)
    if who is None:
        raise SourceError(
            f"Source '{name}': `events` can be derived from accounts or customers sources only."
        )
    before = _count(con, "events")
    for spec in src.events:
        if spec.at not in staged.columns:
            raise SourceError(
                f"Source '{name}': events.at names column '{spec.at}', which is not in the "
                f"file.{closest(spec.at, staged.columns)}"
            )
        fmt = src.date_formats.get(spec.at)
        ts = (
            f"try_strptime({_na(q(spec.at))}, {lit(fmt)})"
            if fmt
            else f"TRY_CAST({_na(q(spec.at))} AS TIMESTAMP)"
        )
        con.execute(
            f"""INSERT INTO events (event_id, {who}, occurred_at, event_type, source_id,
                    source_row)
            SELECT {lit(source_id + ":")} || _row || {lit(":" + spec.event_type)},
                   {q("p_" + who)}, CAST({ts} AS TIMESTAMP), {lit(spec.event_type)},
                   {lit(source_id)}, _row
            FROM _typed WHERE _reason IS NULL AND {ts} IS NOT NULL ORDER BY _row"""
        )
    return _count(con, "events") - before
