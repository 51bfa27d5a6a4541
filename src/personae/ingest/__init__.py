"""The ingest stage: read every configured source into the canonical tables of the store.

`ingest(ctx)` is the one entry point, run by the pipeline runner (`personae ingest`,
`Project.ingest`, `personae run`). Re-ingesting a source whose content was ingested before
adds nothing; a new file for the same table appends.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from personae.config import SourceConfig
from personae.errors import SourceError
from personae.ingest import transform
from personae.ingest.readers import STAGE as STAGED
from personae.ingest.readers import Staged, stage_source
from personae.stage import RunContext, Stage
from personae.store import Store
from personae.store.schemas import TABLES, Table

__all__ = ["ingest", "IngestSummary", "SourceSummary", "STAGE"]
log = logging.getLogger(__name__)


@dataclass
class SourceSummary:
    """What happened to one source."""

    name: str
    table: str
    location: str
    source_id: str = ""
    status: str = "loaded"  # loaded | unchanged
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    values_nulled: dict[str, int] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)
    derived: dict[str, int] = field(default_factory=dict)
    attributes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Link:
    """How many distinct keys of one table find no row in the table they point to."""

    table: str
    column: str
    target: str
    keys: int
    unmatched: int
    examples: list[str]


@dataclass
class IngestSummary:
    run_id: str
    sources: list[SourceSummary]
    tables: dict[str, int]
    links: list[Link]


LINKS = (
    ("orders", "customer_id", "customers", "customer_id"),
    ("events", "customer_id", "customers", "customer_id"),
    ("events", "account_id", "accounts", "account_id"),
    ("feedback", "customer_id", "customers", "customer_id"),
    ("feedback", "order_id", "orders", "order_id"),
    ("responses", "customer_id", "customers", "customer_id"),
    ("customers", "account_id", "accounts", "account_id"),
)


def ingest(ctx: RunContext) -> IngestSummary:
    """Ingest the sources named in `ctx.options["sources"]` (all when None) in config order;
    returns the summary. The runner commits everything at the end, or nothing."""
    store, config = ctx.store, ctx.config
    chosen = ctx.options.get("sources") or list(config.sources)
    for n in chosen:
        if n not in config.sources:
            raise SourceError(
                f"No source named '{n}' in personae.toml (sources: "
                f"{', '.join(config.sources) or 'none'}). Add it with `personae init FILE`."
            )
    results: list[SourceSummary] = []
    for i, name in enumerate(chosen):

        def step(what: str, i: int = i, name: str = name) -> None:
            ctx.progress(f"{name}: {what}", i, len(chosen))

        step("reading")
        results.append(_ingest_one(store, name, config.sources[name], ctx.root, ctx.run_id, step))
    _link_feedback_to_customers(store)
    links = check_links(store)
    tables = {t: store.count(t) for t in TABLES}
    ctx.details["sources"] = [r.name for r in results]
    ctx.progress("done", len(chosen), len(chosen))
    return IngestSummary(ctx.run_id, results, tables, links)


def _ingest_one(
    store: Store,
    name: str,
    src: SourceConfig,
    base: Path,
    run_id: str,
    step: Callable[[str], None],
) -> SourceSummary:
    started = time.perf_counter()
    con = store.con
    table = TABLES[src.table]
    known = {
        r[0]
        for r in con.execute(
            "SELECT content_hash FROM sources WHERE table_name = ? AND name = ?",
            [src.table, name],
        ).fetchall()
    }
    location = src.path or src.url or ""
    staged = stage_source(con, name, src, base, known)
    if isinstance(staged, str):
        log.info("source %s: content unchanged since its last ingest; nothing added", name)
        return SourceSummary(name, src.table, location, f"{name}@{staged[:8]}", "unchanged")
    if staged.content_hash in known:
        return SourceSummary(
            name, src.table, staged.location, f"{name}@{staged.content_hash[:8]}", "unchanged"
        )
    source_id = f"{name}@{staged.content_hash[:8]}"
    src = with_identity_mapping(src, table, staged.columns)
    summary = SourceSummary(name, src.table, staged.location, source_id)
    try:  # inside the run's transaction: a failure anywhere keeps nothing of the run
        step("parsing and checking every cell")
        plan = transform.build_cells(con, name, src, table, staged, source_id)
        summary.rows_read = staged.count(con)
        step(f"writing {summary.rows_read:,} rows")
        if table.name == "orders":
            summary.flags = transform.order_flags(con, plan)
        summary.rows_loaded = transform.insert_rows(con, plan)
        step("writing rejects")
        transform.write_rejects(con, plan)
        if src.wide_spend:
            summary.derived["orders"] = transform.insert_wide_spend(con, plan)
        if src.events:
            summary.derived["events"] = transform.insert_derived_events(con, plan)
        _count_problems(store, table.name, source_id, summary)
        transform.reconcile(con, plan, summary)
        summary.attributes = plan.unmapped
        summary.seconds = round(time.perf_counter() - started, 3)
        _record_source(store, summary, staged, run_id)
    finally:
        for view in ("_rows_c", "_rows"):
            con.execute(f"DROP VIEW IF EXISTS {view}")
        for temp in (
            STAGED,
            "_cells",
            "_conflicts",
            "_cands",
            "_cand_raw",
            "_new",
            "_line_numbers",
        ):
            con.execute(f"DROP TABLE IF EXISTS {temp}")
    log.info(
        "source %s: %d read, %d loaded, %d rejected",
        name,
        summary.rows_read,
        summary.rows_loaded,
        summary.rows_rejected,
    )
    return summary


def with_identity_mapping(src: SourceConfig, table: Table, columns: list[str]) -> SourceConfig:
    """Source columns named exactly like a canonical column map to it unless mapped already."""
    targets = set(src.columns.values()) | set(src.constants)
    extra = {
        c: c
        for c in columns
        if c in table.names
        and c not in targets
        and c not in src.columns
        and c not in src.wide_spend
        and c not in table.derived
    }
    return src.model_copy(update={"columns": {**src.columns, **extra}}) if extra else src


def _count_problems(store: Store, table: str, source_id: str, summary: SourceSummary) -> None:
    rows = store.con.execute(
        f'SELECT reason, kept, count(*) FROM "rejects_{table}" WHERE source_id = ? '
        "GROUP BY ALL ORDER BY 3 DESC, 1",
        [source_id],
    ).fetchall()
    for reason, kept, n in rows:
        target = summary.values_nulled if kept else summary.rejected
        target[reason] = int(n)
    summary.rows_rejected = sum(summary.rejected.values())


def _record_source(store: Store, s: SourceSummary, staged: Staged, run_id: str) -> None:
    store.con.execute(
        "INSERT INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            s.source_id,
            s.name,
            staged.location,
            staged.kind,
            staged.content_hash,
            s.table,
            s.rows_read,
            s.rows_loaded,
            s.rows_rejected,
            sum(s.values_nulled.values()),
            run_id,
            datetime.now(UTC).replace(tzinfo=None),
            json.dumps(
                {
                    "rejected": s.rejected,
                    "values_nulled": s.values_nulled,
                    "flags": s.flags,
                    "derived": s.derived,
                    "attributes": s.attributes,
                    "encoding": staged.encoding,
                    "delimiter": staged.delimiter,
                    "header": staged.header,
                }
            ),
        ],
    )


def _link_feedback_to_customers(store: Store) -> None:
    """Feedback that names an order but no customer gets the order's customer."""
    store.con.execute(
        """UPDATE feedback SET customer_id = o.customer_id
        FROM (SELECT order_id, any_value(customer_id) AS customer_id FROM orders
              WHERE customer_id IS NOT NULL GROUP BY order_id) o
        WHERE feedback.customer_id IS NULL AND feedback.order_id = o.order_id"""
    )


def check_links(store: Store) -> list[Link]:
    """Keys that point at rows that are not there (e.g. orders of unknown customers)."""
    links = []
    for table, column, target, target_col in LINKS:
        if store.count(table) == 0 or store.count(target) == 0:
            continue
        row = store.con.execute(
            f"""SELECT count(DISTINCT a."{column}"),
                   count(DISTINCT a."{column}") FILTER (WHERE b.k IS NULL),
                   list(DISTINCT a."{column}") FILTER (WHERE b.k IS NULL)[1:5]
            FROM "{table}" a LEFT JOIN (SELECT DISTINCT "{target_col}" AS k FROM "{target}") b
              ON a."{column}" = b.k
            WHERE a."{column}" IS NOT NULL"""
        ).fetchall()[0]
        if row and row[0]:
            links.append(Link(table, column, target, int(row[0]), int(row[1]), list(row[2] or [])))
    return links


STAGE = Stage(
    name="ingest",
    description="Read every configured source into the canonical tables, with rejects.",
    parents=(),
    reads=("personae.toml sources",),
    outputs=(*TABLES, *(f"rejects_{t}" for t in TABLES), "sources"),
    compute=ingest,
)
