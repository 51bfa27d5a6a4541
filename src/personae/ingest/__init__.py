"""The ingest stage: read every configured source into the canonical tables of the store.

`ingest(ctx)` is the one entry point, run by the pipeline runner (`personae ingest`,
`Project.ingest`, `personae run`).

A source's identity is its content and its settings (mapping, options): re-ingesting it
unchanged adds nothing. When either changed, a file or database source is refreshed: its
previous rows are replaced (moved to `retired_<table>`, kept while a published run still
reads them) and the summary says what was added, changed and removed. A glob or folder
source, or `mode = "append"`, appends each new file; `mode = "update"` fills in rows of
other sources by key. `force` re-reads a source whatever its identity.
"""

from __future__ import annotations

import glob
import hashlib
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
from personae.ingest.readers import (
    Staged,
    file_facts,
    hashed_while_read,
    resolve_path,
    stage_source,
)
from personae.ingest.sniff import Lookahead
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
    status: str = "loaded"  # loaded | refreshed | unchanged
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    values_nulled: dict[str, int] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)
    derived: dict[str, int] = field(default_factory=dict)
    attributes: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # source ids this load replaced
    added: int | None = None  # against the replaced rows (refresh only)
    changed: int | None = None  # rows whose key stayed and values changed (keyed only)
    removed: int | None = None
    compared_by: str | None = None  # what identifies a row in added/changed/removed
    updated: int | None = None  # mode = update: existing rows filled in
    values_changed: int | None = None  # mode = update: values filled in or overwritten
    warnings: list[str] = field(default_factory=list)  # a source that gave little or nothing
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
    force = bool(ctx.options.get("force"))
    results: list[SourceSummary] = []
    ahead = Lookahead(delimited_files(ctx, chosen))
    for i, name in enumerate(chosen):

        def step(what: str, i: int = i, name: str = name) -> None:
            ctx.progress(f"{name}: {what}", i, len(chosen))

        step("reading")
        src = config.sources[name]
        results.extend(_ingest_source(store, name, src, ctx.root, ctx.run_id, step, force, ahead))
    results.extend(_reapply_updates(ctx, results))
    _link_feedback_to_customers(store)
    started = time.perf_counter()
    links = check_links(store)
    log.info("links checked in %.1f s", time.perf_counter() - started)
    tables = {t: store.count(t) for t in TABLES}
    ctx.details["sources"] = [r.name for r in results]
    ctx.progress("done", len(chosen), len(chosen))
    return IngestSummary(ctx.run_id, results, tables, links)


def delimited_files(ctx: RunContext, chosen: list[str]) -> list[Path]:
    """The files of the chosen sources that are hashed while read, in the order they are
    read: each is searched ahead (`sniff.Lookahead`) while DuckDB parses the file before."""
    paths = []
    for name in chosen:
        src = ctx.config.sources[name]
        try:
            files, _ = source_files(name, src, ctx.root)
            paths += [f for f in files if f and f.is_file() and hashed_while_read(src, f)]
        except (SourceError, OSError):
            continue  # said when the source is read
    return paths


def settings_hash(src: SourceConfig) -> str:
    """What the source's settings say, hashed: an edited mapping or option changes it."""
    return hashlib.sha256(src.model_dump_json().encode()).hexdigest()[:16]


def source_files(name: str, src: SourceConfig, base: Path) -> tuple[list[Path | None], bool]:
    """The files a source reads ([None] for a database) and whether it is a collection (a
    glob or a folder: each file its own load)."""
    if src.url:
        return [None], False
    path = resolve_path(src, base)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    elif glob.has_magic(str(path)):
        files = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
    else:
        return [path], False
    if not files:
        raise SourceError(
            f"Source '{name}': no files in {path}. Fix `path` in personae.toml (a file, a "
            "folder of files or a glob such as data/orders-*.csv)."
        )
    return list(files), True


def _ingest_source(
    store: Store,
    name: str,
    src: SourceConfig,
    base: Path,
    run_id: str,
    step: Callable[[str], None],
    force: bool,
    ahead: Lookahead | None = None,
) -> list[SourceSummary]:
    """Load a source's new content and replace or keep what it loaded before, by its mode
    (`ahead` may have gone through the bytes of its files already)."""
    files, collection = source_files(name, src, base)
    mode = src.mode or ("append" if collection else "refresh")
    settings = settings_hash(src)
    active = store.query(
        "SELECT source_id, content_hash, settings_hash FROM sources WHERE name = ? AND "
        "retired_run IS NULL ORDER BY ingested_at",
        [name],
    )
    # a source ingested before settings were recorded counts as unedited
    edited = any(a["settings_hash"] not in (None, settings) for a in active)
    if edited:
        log.info("source %s: its settings changed since its last ingest; reading it again", name)
    known = set() if force or edited else {a["content_hash"] for a in active}
    location = src.path or src.url or ""
    unchanged = SourceSummary(name, src.table, location, status="unchanged")
    if mode == "refresh" and collection:
        hashes = {file_facts(f).sha256 for f in files if f is not None}
        if hashes == known:
            return [unchanged]
        known = set()
    # a changed update source replaces the rows its earlier version added, like a refresh
    replacing = mode in ("refresh", "update") or edited or force
    to_replace = [a["source_id"] for a in active] if replacing else []
    results = []
    for f in files:
        one = src if f is None else src.model_copy(update={"path": str(f.absolute())})
        # nothing known to compare with: the file is hashed while it is read, not before
        staged = stage_source(
            store.con, name, one, base, known, hash_while_reading=not known, lookahead=ahead
        )
        if isinstance(staged, str):
            continue
        if staged.content_hash in known:  # a database table is hashed once staged
            store.con.execute(f"DROP TABLE IF EXISTS {STAGED}")
            continue
        if to_replace:  # first new content: the old rows go before the new are checked
            retire_sources(store, to_replace, run_id)
        summary = _ingest_one(store, name, src, staged, run_id, step, settings)
        if to_replace:
            summary.status = "refreshed"
            summary.replaced = to_replace
            diff_sources(store, summary)
            to_replace = []
        known.add(staged.content_hash)
        results.append(summary)
    if not results:
        log.info("source %s: content and settings unchanged since its last ingest", name)
    return results or [unchanged]


def _reapply_updates(ctx: RunContext, results: list[SourceSummary]) -> list[SourceSummary]:
    """Update sources fill in rows of other sources: when those rows were just replaced, the
    update sources of that table that were ingested before are applied again."""
    config = ctx.config
    reloaded = {
        s.table
        for s in results
        if s.status != "unchanged" and config.sources[s.name].mode != "update"
    }
    applied = {s.name for s in results if s.status != "unchanged"}
    again = []
    for name, src in config.sources.items():
        if src.mode != "update" or src.table not in reloaded or name in applied:
            continue
        if not ctx.store.query(
            "SELECT 1 FROM sources WHERE name = ? AND retired_run IS NULL", [name]
        ):
            continue  # never ingested: nothing to apply again

        def step(what: str, name: str = name) -> None:
            ctx.progress(f"{name} (again): {what}", 0, 1)

        log.info("source %s: applied again to the refreshed %s", name, src.table)
        again += _ingest_source(ctx.store, name, src, ctx.root, ctx.run_id, step, True)
    return again


def retire_sources(store: Store, source_ids: list[str], run_id: str) -> None:
    """Move the rows of `source_ids` out of the canonical tables into `retired_<table>`
    (a run that read them may still need them; `Store.collect_retired` drops them after),
    drop their rejects, and mark the sources retired by `run_id`."""
    con = store.con
    for t in TABLES:
        con.execute(
            f'INSERT INTO "retired_{t}" BY NAME SELECT *, ? AS retired_run FROM "{t}" '
            "WHERE list_contains(?, source_id)",
            [run_id, source_ids],
        )
        con.execute(f'DELETE FROM "{t}" WHERE list_contains(?, source_id)', [source_ids])
        con.execute(f'DELETE FROM "rejects_{t}" WHERE list_contains(?, source_id)', [source_ids])
    con.execute(
        "UPDATE sources SET retired_run = ? WHERE list_contains(?, source_id)",
        [run_id, source_ids],
    )


def diff_sources(store: Store, summary: SourceSummary) -> None:
    """Rows added, changed and removed against the rows the load replaced: by key when the
    source gives the table's key (`compared_by` names it), else by content (then a change
    is a removal and an add)."""
    table = TABLES[summary.table]
    keyed = summary.compared_by != "content"
    values = [c.name for c in table.columns if c.name not in table.key]
    content = "hash(" + ", ".join(f'"{c}"' for c in values) + ")"
    # a list compares exactly, whatever the number of key columns
    ident = "[" + ", ".join(f'"{k}"::VARCHAR' for k in table.key) + "]" if keyed else content
    old = (
        f'SELECT {ident} AS k, {content} AS h FROM "retired_{table.name}" '
        "WHERE list_contains(?, source_id)"
    )
    new = f'SELECT {ident} AS k, {content} AS h FROM "{table.name}" WHERE source_id = ?'
    if keyed:
        row = store.con.execute(
            f"""SELECT count(*) FILTER (WHERE o.k IS NULL), count(*) FILTER (WHERE o.h <> n.h),
                       count(*) FILTER (WHERE n.k IS NULL)
                FROM ({old}) o FULL JOIN ({new}) n ON o.k = n.k""",
            [summary.replaced, summary.source_id],
        ).fetchall()[0]
    else:  # multisets of row contents
        row = store.con.execute(
            f"""SELECT coalesce(sum(greatest(coalesce(n.c, 0) - coalesce(o.c, 0), 0)), 0), 0,
                       coalesce(sum(greatest(coalesce(o.c, 0) - coalesce(n.c, 0), 0)), 0)
                FROM (SELECT k, count(*) AS c FROM ({old}) GROUP BY k) o
                FULL JOIN (SELECT k, count(*) AS c FROM ({new}) GROUP BY k) n ON o.k = n.k""",
            [summary.replaced, summary.source_id],
        ).fetchall()[0]
    summary.added, summary.changed, summary.removed = (int(v) for v in row)


def _ingest_one(
    store: Store,
    name: str,
    src: SourceConfig,
    staged: Staged,
    run_id: str,
    step: Callable[[str], None],
    settings: str,
) -> SourceSummary:
    """Parse, check and load one staged file or table as a new source id."""
    started = time.perf_counter()
    con = store.con
    table = TABLES[src.table]
    src = with_identity_mapping(src, table, staged.columns)
    summary = SourceSummary(name, src.table, staged.location)
    given = set(src.columns.values()) | set(src.constants)
    has_key = table.key[0] in given or src.row_ids
    summary.compared_by = ", ".join(table.key) if has_key else "content"
    try:  # inside the run's transaction: a failure anywhere keeps nothing of the run
        step("parsing and checking every cell")
        plan = transform.build_cells(con, name, src, table, staged)
        _took(name, "parsed and checked", started)
        # the id names the content, whose hash may have been computed while it was read
        plan.source_id = summary.source_id = _new_source_id(
            store, f"{name}@{staged.content_hash[:8]}"
        )
        summary.rows_read = staged.count(con)
        step(f"writing {summary.rows_read:,} rows")
        if table.name == "orders":
            summary.flags = transform.order_flags(con, plan)
        summary.rows_loaded = transform.insert_rows(con, plan)
        _took(name, f"wrote {summary.rows_loaded:,} rows", started)
        if src.mode == "update":
            summary.updated, summary.values_changed = plan.updated, plan.values_changed
        step("writing rejects")
        transform.write_rejects(con, plan)
        if src.wide_spend:
            summary.derived["orders"] = transform.insert_wide_spend(con, plan)
        if src.events:
            summary.derived["events"] = transform.insert_derived_events(con, plan)
        _count_problems(store, table.name, plan.source_id, summary)
        transform.reconcile(con, plan, summary)
        summary.warnings = _warnings(summary)
        _took(name, "rejects written and counted", started)
        summary.attributes = plan.unmapped
        summary.seconds = round(time.perf_counter() - started, 3)
        _record_source(store, summary, staged, run_id, settings)
    finally:
        for view in ("_rows_c", "_rows"):
            con.execute(f"DROP VIEW IF EXISTS {view}")
        for temp in (
            STAGED,
            "_cells",
            "_conflicts",
            "_shared",
            "_shared_rows",
            "_cands",
            "_cand_raw",
            "_new",
        ):
            con.execute(f"DROP TABLE IF EXISTS {temp}")
    for warning in summary.warnings:
        log.warning("source %s: %s", name, warning)
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


def _warnings(s: SourceSummary) -> list[str]:
    """What a user must hear even though the load succeeded: a source with no rows, or
    whose rows were all (or mostly) rejected, usually a wrong mapping, format or delimiter."""
    if s.rows_read == 0:
        return [f"{s.location} has no data rows (empty, or a header only): nothing was loaded"]
    if not s.rejected or s.rows_rejected * 2 <= s.rows_read:
        return []
    reason, n = next(iter(s.rejected.items()))  # the commonest (_count_problems' order)
    rejected = (
        f"all {s.rows_read:,}"
        if s.rows_loaded == 0
        else f"{s.rows_rejected:,} of the {s.rows_read:,}"
    )
    return [
        f"{rejected} rows were rejected ({n:,} {reason}): `personae export rejects_{s.table} "
        "--out rejects.csv` shows why; a wrong column mapping, date format or delimiter in "
        "personae.toml is the usual cause"
    ]


def _new_source_id(store: Store, wanted: str) -> str:
    """`name@hash`, or `name@hash~N` when that id names a retired load (same content read
    again with other settings): ids stay unique, so lineage can tell the loads apart."""
    taken = {
        r["source_id"]
        for r in store.query(
            "SELECT source_id FROM sources WHERE source_id = ? OR source_id LIKE ?",
            [wanted, wanted + "~%"],
        )
    }
    n, candidate = 1, wanted
    while candidate in taken:
        n += 1
        candidate = f"{wanted}~{n}"
    return candidate


def _record_source(
    store: Store, s: SourceSummary, staged: Staged, run_id: str, settings: str
) -> None:
    store.con.execute(
        "INSERT INTO sources (source_id, name, location, kind, content_hash, table_name, "
        "rows_read, rows_loaded, rows_rejected, values_nulled, run_id, ingested_at, summary, "
        "settings_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            settings,
        ],
    )


def _link_feedback_to_customers(store: Store) -> None:
    """Feedback that names an order but no customer gets the order's customer. The orders
    are grouped only when some feedback needs it (that grouping reads every order line)."""
    waiting = store.con.execute(
        "SELECT 1 FROM feedback WHERE customer_id IS NULL AND order_id IS NOT NULL LIMIT 1"
    ).fetchall()
    if not waiting:
        return
    store.con.execute(
        """UPDATE feedback SET customer_id = o.customer_id
        FROM (SELECT order_id, any_value(customer_id) AS customer_id FROM orders
              WHERE customer_id IS NOT NULL GROUP BY order_id) o
        WHERE feedback.customer_id IS NULL AND feedback.order_id = o.order_id"""
    )


def _took(name: str, what: str, started: float) -> None:
    log.info("source %s: %s after %.1f s", name, what, time.perf_counter() - started)


def check_links(store: Store) -> list[Link]:
    """Keys that point at rows that are not there (e.g. orders of unknown customers)."""
    links = []
    for table, column, target, target_col in LINKS:
        if store.count(table) == 0 or store.count(target) == 0:
            continue
        # the distinct keys first, then each looked up once: three DISTINCT aggregates over
        # the joined rows took 47 s at 10 M customers
        row = store.con.execute(
            f"""WITH keys AS MATERIALIZED (SELECT DISTINCT "{column}" AS v FROM "{table}"
                              WHERE "{column}" IS NOT NULL),
            missing AS MATERIALIZED (SELECT v FROM keys WHERE NOT EXISTS (
                SELECT 1 FROM "{target}" b WHERE b."{target_col}" = keys.v))
            SELECT (SELECT count(*) FROM keys), (SELECT count(*) FROM missing),
                   (SELECT list(v ORDER BY v) FROM (SELECT v FROM missing ORDER BY v LIMIT 5))"""
        ).fetchall()[0]
        if row and row[0]:
            links.append(Link(table, column, target, int(row[0]), int(row[1]), list(row[2] or [])))
    return links


STAGE = Stage(
    name="ingest",
    description="Read every configured source into the canonical tables, with rejects.",
    parents=(),
    reads=(),  # files and database tables named in personae.toml
    outputs=(*TABLES, *(f"rejects_{t}" for t in TABLES), "sources"),
    compute=ingest,
)
