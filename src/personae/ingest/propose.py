"""`personae init`: look at files and propose a source configuration for each.

The proposal is only a starting point written into personae.toml with comments; the user edits
it. Nothing is loaded here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from personae.config import SourceConfig
from personae.errors import SourceError
from personae.ingest.mapping import (
    guess_from_values,
    guess_table,
    normalize,
    range_from_name,
    scale_from_name,
)
from personae.ingest.readers import Staged, q, stage_source
from personae.ingest.sniff import guess_date_format
from personae.ingest.transform import CANCEL_STATUSES, timestamp_sql
from personae.store.schemas import TABLES, Table

SAMPLE_ROWS = 5000


@dataclass
class Proposal:
    """A proposed source with notes to show the user."""

    name: str
    source: SourceConfig
    staged: Staged
    notes: list[str] = field(default_factory=list)

    @property
    def unmapped(self) -> list[str]:
        return [
            c
            for c in self.staged.columns
            if c not in self.source.columns and c not in self.source.wide_spend
        ]


def source_name(location: str, taken: set[str]) -> str:
    stem = Path(location.split("#")[0]).name
    stem = re.sub(r"(\.gz|\.csv|\.tsv|\.txt|\.parquet|\.jsonl?|\.xlsx)+$", "", stem, flags=re.I)
    base = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_") or "source"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def propose(location: str, base: Path, taken: set[str]) -> Proposal:
    """Sniff one file (or `URL#table`) and guess its table, mapping and formats."""
    name = source_name(location, taken)
    if "://" in location:
        url, _, table_name = location.partition("#")
        if not table_name:
            raise SourceError(
                f"{location}: give the table or a query after '#', e.g. "
                "sqlite:///shop.db#orders or 'sqlite:///shop.db#SELECT * FROM orders'."
            )
        if re.match(r"\s*(select|with)\s", table_name, flags=re.I):
            src = SourceConfig(table="customers", url=url, query=table_name)
        else:
            src = SourceConfig(table="customers", url=url, source_table=table_name)
    else:
        path = Path(location).resolve()
        if not path.exists():
            raise SourceError(
                f"File {location} not found"
                + ("." if Path(location).is_absolute() else f" (looked for {path})."),
                hint="Give `personae init` the path of a customer file (CSV or other "
                "delimited text, Excel .xlsx, Parquet, JSON lines) from the current folder, "
                "or a database table as URL#table.",
            )
        try:
            shown = path.relative_to(base.resolve())
        except ValueError:
            shown = path
        src = SourceConfig(table="customers", path=str(shown))
    con = duckdb.connect()
    try:
        staged = stage_source(con, name, src, base)
        assert isinstance(staged, Staged)
        staged.count(con)
        samples = _samples(con, staged)
        return _guess(con, name, src, staged, samples)
    finally:
        con.close()


def _decimal_comma_columns(
    mapping: dict[str, str], table: Table, samples: dict[str, list[str]]
) -> list[str]:
    """Numeric columns whose sampled values are mostly numbers with a decimal comma (12,34 or
    1.234,56) and hardly ever plain numbers: the file writes decimals the European way."""
    found = []
    for col, target in mapping.items():
        if table.column(target).kind not in ("int", "float"):
            continue
        values = [v.strip() for v in samples.get(col, []) if v.strip()]
        comma = sum(bool(DECIMAL_COMMA.fullmatch(v)) for v in values)
        if values and comma >= 0.5 * len(values):
            found.append(col)
    return found


DECIMAL_COMMA = re.compile(r"-?[£$€]?\s?\d{1,3}(?:[.\s]\d{3})*,\d+|-?\d+,\d+")


def _samples(con: duckdb.DuckDBPyConnection, staged: Staged) -> dict[str, list[str]]:
    cols = ", ".join(q(c) for c in staged.columns)
    rows = con.execute(
        f"SELECT {cols} FROM {staged.relation} USING SAMPLE {SAMPLE_ROWS} ROWS (reservoir, 7)"
    ).fetchall()
    return {c: [r[i] for r in rows if r[i] is not None] for i, c in enumerate(staged.columns)}


def _guess(
    con: duckdb.DuckDBPyConnection,
    name: str,
    src: SourceConfig,
    staged: Staged,
    samples: dict[str, list[str]],
) -> Proposal:
    notes: list[str] = []
    date_formats = {}
    for col, values in samples.items():
        fmt = guess_date_format(con, values[:2000])
        if fmt:
            date_formats[col] = fmt
    if staged.header is False:
        guess = guess_from_values(samples, set(date_formats))
        notes.append("no header row: columns were guessed from their values; check them")
    else:
        guess = guess_table(staged.columns)
    table = TABLES[guess.table]
    mapping = guess.mapping
    extra: dict[str, object] = {}
    if guess.table == "orders":
        extra = _order_columns(mapping, samples, notes)
    if not staged.rows:
        notes.append(
            "WARNING: the file has no data rows (a header only): the mapping is guessed from "
            "the column names alone, and ingest will load nothing from it"
        )
    for col in list(mapping):
        kind = table.column(mapping[col]).kind
        if kind in ("timestamp", "date") and col not in date_formats and staged.rows:
            notes.append(f"{col}: no single date format fits the sample; set it by hand")
    fmts = {
        c: f
        for c, f in date_formats.items()
        if c in mapping and table.column(mapping[c]).kind in ("timestamp", "date")
    }
    for c, f in fmts.items():
        if f.startswith("%m/%d") or f.startswith("%m-%d"):
            notes.append(f"{c}: read as month-first ({f}); use %d/%m/... if days come first")
    settings: dict[str, object] = {
        "table": guess.table,
        "columns": mapping,
        "date_formats": fmts,
        "delimiter": staged.delimiter if staged.kind == "csv" else None,
        "header": staged.header,
    }
    if staged.encoding and staged.encoding != "utf-8":
        settings["encoding"] = staged.encoding
    ranges = {c: list(r) for c in staged.columns if (r := range_from_name(c))}
    scale = {c: s for c in mapping if (s := scale_from_name(c))}
    settings["ranges"] = ranges
    settings["scale"] = {**scale, **extra.pop("scale", {})}  # type: ignore[dict-item]
    settings.update(extra)
    commas = _decimal_comma_columns(mapping, table, samples)
    if commas:
        settings["decimal"] = ","
        notes.append(
            f'{", ".join(commas)}: numbers written with a decimal comma (12,34): decimal = ","'
        )
    key = table.key[0]
    if guess.table in ("customers", "accounts") and key not in mapping.values():
        settings["row_ids"] = True
        notes.append(
            f"WARNING: no {key} column: row_ids = true numbers the rows as ids "
            f"({name}-<line>); they join no other source and change if rows are added above. "
            f'Map a column as "{key}" instead if the file has one.'
        )
    key_col = next((c for c, t in mapping.items() if t == table.key[0]), None)
    if key_col:
        values = samples[key_col]
        digits = sum(bool(re.fullmatch(r"\d+", v.strip())) for v in values)
        if values and 0 < len(values) - digits <= 0.01 * len(values):
            settings["id_pattern"] = r"^\d+$"
            notes.append(
                f"{key_col}: {len(values) - digits} sampled ids are not all digits; "
                "id_pattern rejects them"
            )
    key_src = next((c for c, t in mapping.items() if t == "customer_id"), None)
    if key_src and normalize(key_src) in table.column("customer_id").weak_synonyms:
        notes.append(f"{key_src}: no customer id column; {key_src} is the customer key")
    if guess.table == "orders":
        order_col = next((c for c, t in mapping.items() if t == "order_id"), None)
        values = samples[order_col] if order_col else []
        c_ids = sum(bool(re.fullmatch(r"C\d+", v)) for v in values)
        # a few C-prefixed ids among plain ones are cancellations (the UCI retail convention);
        # ids that mostly start with C are just how the shop numbers its orders
        if order_col and 0 < c_ids <= 0.5 * len(values):
            settings["cancel_pattern"] = "^C"
            notes.append(f"{order_col}: ids starting with C read as cancellations")
        if not order_col:
            notes.append(
                "no order id column: lines of one customer with the same ordered_at form "
                'one order (orders_without_id = "basket"; "line" makes each line an order)'
            )
        if "customer_id" not in mapping.values():
            notes.append(
                "NO CUSTOMER KEY: no column looks like a customer id, name or e-mail; map the "
                'column that identifies the buyer as "customer_id" (ingest refuses orders '
                f"without one). Columns: {', '.join(staged.columns)}"
            )

    if guess.table == "customers":
        notes.extend(_summary_notes(mapping))
        spend = {
            c: _category(c)
            for c in staged.columns
            if re.match(r"^(mnt[a-z]|(spend|amount)_)", c, flags=re.I) and c not in mapping
        }
        if spend:
            settings["wide_spend"] = spend
            created = next((c for c, t in mapping.items() if t == "created_at"), None)
            settings["spend_date"] = _latest_date(
                con, staged.relation, created, fmts.get(created or "")
            )
            notes.append(
                f"{len(spend)} spend columns become category order lines dated "
                f"spend_date = {settings['spend_date']}; set the real date"
            )
    src_dict = src.model_dump(exclude_defaults=True)
    src_dict.update({k: v for k, v in settings.items() if v not in (None, {}, [])})
    return Proposal(name, SourceConfig.model_validate(src_dict), staged, notes)


# Values of an order status column (lower case); a column most of whose values are among
# them is proposed as `status`.
STATUS_WORDS = {
    "shipped",
    "delivered",
    "cancelled",
    "canceled",
    "pending",
    "processing",
    "in process",
    "on hold",
    "disputed",
    "resolved",
    "returned",
    "refunded",
    "completed",
    "complete",
    "paid",
    "unpaid",
    "open",
    "closed",
    "failed",
    "invoiced",
    "dispatched",
    "approved",
    "created",
    "unavailable",
}


def _order_columns(
    mapping: dict[str, str], samples: dict[str, list[str]], notes: list[str]
) -> dict[str, object]:
    """Order status and discount-rate columns: found by their values, said in notes.
    Returns settings to add (scale of a discount rate given in percent points)."""
    settings: dict[str, object] = {}
    status = next((c for c, t in mapping.items() if t == "status"), None)
    if status is None:
        for col, values in samples.items():
            seen = {v.strip().lower() for v in values if v.strip()}
            if col not in mapping and seen and len(seen) <= 30:
                hits = sum(v.strip().lower() in STATUS_WORDS for v in values)
                if hits >= 0.8 * len(values):
                    mapping[col] = "status"
                    status = col
                    break
    if status is not None:
        distinct = sorted({v.strip() for v in samples[status] if v.strip()})
        cancels = [v for v in distinct if v.lower() in CANCEL_STATUSES]
        notes.append(
            f"{status}: order status ({', '.join(distinct[:12])}); "
            + (
                f"{', '.join(cancels)} make a line a cancellation (is_return)"
                if cancels
                else "no value is a built-in cancellation word"
            )
            + "; list the values that mean cancelled or returned in cancel_statuses"
        )
    money = next((c for c, t in mapping.items() if t == "discount"), None)
    if money is not None:
        values = [v.strip() for v in samples[money] if v.strip()]
        numbers = [_number(v.rstrip("%")) for v in values]
        amounts = [
            _number(v)
            for c, t in mapping.items()
            if t in ("amount", "unit_price")
            for v in samples[c]
        ]
        typical = sorted(a for a in amounts if a is not None)
        percent = any(v.endswith("%") for v in values)
        fractions = all(n is not None and 0 <= n <= 1 for n in numbers) and any(
            n is not None and 0 < n < 1 for n in numbers
        )
        named = bool(re.search(r"%|pct|percent", money, flags=re.I))
        if values and (
            named or percent or (fractions and typical and typical[len(typical) // 2] > 1)
        ):
            mapping[money] = "discount_rate"
            notes.append(
                f"{money}: read as a discount rate (values like {values[0]}), not money; "
                "discount in money is derived as amount * rate / (1 - rate)"
            )
    rate = next((c for c, t in mapping.items() if t == "discount_rate"), None)
    if rate is not None:
        values = [v.strip() for v in samples[rate] if v.strip()]
        plain = [n for v in values if not v.endswith("%") and (n := _number(v)) is not None]
        if plain and not any(v.endswith("%") for v in values) and max(plain) > 1:
            settings["scale"] = {rate: 0.01}
            notes.append(f"{rate}: discount in percent points (up to {max(plain):g}): scale 0.01")
    return settings


SUMMARY_COLUMNS = (
    "purchases",
    "total_spend",
    "last_purchase_amount",
    "monthly_charges",
    "tenure_months",
    "last_purchase_at",
    "days_since_last_purchase",
)
LABEL_COLUMNS = ("churned", "responded", "subscriber")


def _summary_notes(mapping: dict[str, str]) -> list[str]:
    """What a customer-level table's summary and label columns will be used for."""
    notes = []
    summary = [c for c, t in mapping.items() if t in SUMMARY_COLUMNS]
    if summary:
        notes.append(
            f"customer-level summaries ({', '.join(summary)}): customers without orders get "
            "purchase, RFM, lifecycle and value traits from them; predict needs orders"
        )
        if "last_purchase_at" not in mapping.values():
            notes.append(
                "no last purchase date: give `personae traits --as-of` the date the summaries "
                "were taken"
            )
    labels = [c for c, t in mapping.items() if t in LABEL_COLUMNS]
    if labels:
        notes.append(f"{', '.join(labels)}: yes/no outcomes kept as labels on customers")
    return notes


def _number(value: str) -> float | None:
    try:
        return float(value.strip().replace(",", ""))
    except ValueError:
        return None


def _category(column: str) -> str:
    rest = re.sub(r"^(mnt|spend|amount)_?", "", column, flags=re.I)
    rest = re.sub(r"(products|prods)$", "", rest, flags=re.I)
    return rest or column


def _latest_date(
    con: duckdb.DuckDBPyConnection, relation: str, col: str | None, fmt: str | None
) -> str:
    if not col:
        return "2000-01-01"
    expr = timestamp_sql(q(col), fmt)
    row = con.execute(f"SELECT max({expr})::DATE::VARCHAR FROM {relation}").fetchall()[0]
    return str(row[0]) if row and row[0] else "2000-01-01"
