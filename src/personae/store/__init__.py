"""The store: one DuckDB file holding canonical tables, stage outputs, rejects and the run
ledger, and the read-only snapshots that readers open.

DuckDB lets one process hold a file for writing, and then no other process can open it. So the
writer (a stage run) works on `personae.duckdb`, and at the end of each `personae run` /
stage command it publishes an immutable copy (`published/<name>.duckdb`, named in
`published/CURRENT`). Readers (`status`, `export`, `funnel`, the server to come) open the
current snapshot read-only: they never wait for a writer and always see the last published
runs. See docs/architecture.md for why.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from personae.errors import StoreError
from personae.store.schemas import (
    HISTORY_TABLES,
    LINEAGE,
    TABLES,
    VIEW_LEGACY,
    VIEW_RUNS,
    VIEWS,
    create_sql,
    output_tables,
    rejects_sql,
    retired_table,
)

__all__ = ["Store", "LEDGER_SQL", "RUN_STATUSES"]
log = logging.getLogger(__name__)

RUN_STATUSES = {
    "running": "A process is running the stage now (or was killed; see interrupted).",
    "ok": "Finished; its outputs are what readers see until a later ok run of the stage.",
    "failed": "Stopped on an error; it wrote nothing (the error says why).",
    "interrupted": "The process running it stopped before it finished; it wrote nothing.",
}

LEDGER_SQL = (
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY, stage VARCHAR, as_of DATE, config_hash VARCHAR,
        status VARCHAR, error VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP,
        seconds DOUBLE, details JSON, seq BIGINT, parents JSON, engine VARCHAR, "rows" JSON)""",
    """CREATE TABLE IF NOT EXISTS sources (
        source_id VARCHAR PRIMARY KEY, name VARCHAR, location VARCHAR, kind VARCHAR,
        content_hash VARCHAR, table_name VARCHAR, rows_read BIGINT, rows_loaded BIGINT,
        rows_rejected BIGINT, values_nulled BIGINT, run_id VARCHAR, ingested_at TIMESTAMP,
        summary JSON)""",
)
# Columns the ledger gained after stores were first written; added on open.
LEDGER_MIGRATIONS = (
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS seq BIGINT",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS parents JSON",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS engine VARCHAR",
    'ALTER TABLE runs ADD COLUMN IF NOT EXISTS "rows" JSON',
    "ALTER TABLE sources ADD COLUMN IF NOT EXISTS settings_hash VARCHAR",
    "ALTER TABLE sources ADD COLUMN IF NOT EXISTS retired_run VARCHAR",
)
PUBLISHED = "published"
CURRENT = "CURRENT"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


LOCK_WAIT = 5.0  # seconds to wait for a lock another process holds for a moment


def _connect(path: Path, read_only: bool, settings: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    """Open the store; a lock held briefly by another process (a reader's look at the file)
    is waited for, a longer one is an error that says so."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=settings)
        except duckdb.IOException as err:
            if "lock" not in str(err).lower():
                raise StoreError(damaged_message(path, err), hint=readable_hint(path)) from None
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            raise StoreError(
                f"Cannot open the store {path}: {err}. Another personae process may hold it "
                "for writing; wait for it to finish."
            ) from None


def damaged_message(path: Path, err: BaseException) -> str:
    """What to say about a store file DuckDB cannot read: damaged or truncated, and which
    other copy `personae export` can still read."""
    size = path.stat().st_size if path.exists() else 0
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    return (
        f"The store {path} is damaged or truncated ({size:,} bytes; DuckDB says: {detail}). "
        f"personae changed nothing. {readable_hint(path)}"
    )


def readable_hint(path: Path) -> str:
    """Which other copy of the store opens (the writer's store and its published snapshots
    back each other up), and how to use it."""
    path = Path(path)
    if path.parent.name == PUBLISHED:
        others = [
            *sorted(path.parent.glob("*.duckdb"), reverse=True),
            *path.parent.parent.glob("*.duckdb"),
        ]
    else:
        others = sorted((path.parent / PUBLISHED).glob("*.duckdb"), reverse=True)
    for other in others:
        if other == path:
            continue
        try:
            duckdb.connect(str(other), read_only=True).close()
        except duckdb.Error:
            continue
        if path.parent.name == PUBLISHED or not (path.parent / PUBLISHED / CURRENT).exists():
            return (
                f"{other} opens: copy it over {path} to read it again (`personae export` "
                "reads the published snapshot), or move the damaged file aside and run "
                "`personae run` to rebuild from the sources."
            )
        return (
            f"`personae export` and `personae status` still read the published snapshot "
            f"{other}; to write again, copy it over {path} or move the damaged file aside and "
            "run `personae run` to rebuild from the sources."
        )
    return (
        "No intact copy was found: move the damaged file aside and run `personae run` to "
        "rebuild the store from the sources."
    )


class Store:
    """An open DuckDB store with the canonical schema in place."""

    def __init__(
        self,
        path: Path,
        *,
        memory_limit: str = "40%",
        threads: int | None = None,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.exists():
            raise StoreError(f"No store at {self.path}. Run `personae ingest` first.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        settings: dict[str, Any] = {"memory_limit": memory_limit}  # values, never SQL text
        if threads:
            settings["threads"] = int(threads)
        self.con = _connect(self.path, read_only, settings)
        # DuckDB's buffers come from memory reserved once (up to the limit, touched as used,
        # freed on close) instead of going back to the system and being faulted in again
        # after every query: 10 M-customer runs made 22.7-23.5 M page faults instead of
        # 31.5 M, system CPU 199-255 s instead of 259 s. The value is DuckDB's own reading
        # of the limit, never user text.
        limit = self.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        self.con.execute(f"SET block_allocator_memory = '{limit}'")
        if not read_only:
            self.ensure_schema()
            self.mark_interrupted()

    @classmethod
    def published(cls, path: Path, **kwargs: Any) -> Store:
        """The last published snapshot of the store at `path`, read-only: what readers see
        while a writer holds the store. Stores never published are opened read-only."""
        folder = Path(path).parent / PUBLISHED
        for _ in range(3):  # a writer may prune the named snapshot between read and open
            try:
                name = (folder / CURRENT).read_text().strip()
            except FileNotFoundError:
                return cls(path, read_only=True, **kwargs)
            try:
                return cls(folder / name, read_only=True, **kwargs)
            except StoreError:
                if (folder / name).exists():
                    raise
        raise StoreError(f"Cannot open the published snapshot in {folder}; try again.")

    def ensure_schema(self) -> None:
        for sql in (*LEDGER_SQL, *LEDGER_MIGRATIONS):
            self.con.execute(sql)
        for table in TABLES.values():
            self.ensure_table(table, lineage=True)
            self.con.execute(rejects_sql(table))
            self.ensure_table(retired_table(table))
        for table in output_tables().values():
            if table.name not in VIEWS:
                self.ensure_table(table)
        self.ensure_views()

    def ensure_views(self) -> None:
        """Create the declared views; a table an older store kept under a view's name is
        renamed and its rows stay readable through the view."""
        kinds = dict(
            self.con.execute(
                "SELECT table_name, table_type FROM information_schema.tables "
                "WHERE table_schema = 'main'"
            ).fetchall()
        )
        for name, sql in VIEWS.items():
            legacy = VIEW_LEGACY.get(name)
            if legacy and kinds.get(name) == "BASE TABLE":
                self.con.execute(f'ALTER TABLE "{name}" RENAME TO "{legacy}"')
                kinds[legacy] = "BASE TABLE"
            if legacy in kinds:
                sql += f' UNION ALL BY NAME SELECT * FROM "{legacy}"'
            self.con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {sql}')

    def ensure_table(self, table: Any, lineage: bool = False) -> None:
        """Create a declared table, or add the declared columns an older store lacks."""
        self.con.execute(create_sql(table, lineage=lineage))
        have = {r[0] for r in self.con.execute(f'DESCRIBE "{table.name}"').fetchall()}
        for col in (*table.columns, *(LINEAGE if lineage else ())):
            if col.name not in have:
                self.con.execute(
                    f'ALTER TABLE "{table.name}" ADD COLUMN "{col.name}" {col.sql_type}'
                )

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- run ledger -------------------------------------------------------------------------
    def start_run(
        self,
        stage: str,
        *,
        as_of: str | None = None,
        config_hash: str = "",
        parents: dict[str, str] | None = None,
        engine: str | None = None,
    ) -> str:
        """Record a run as started; its results count only once `finish_run` marks it ok."""
        run_id = f"{stage}-{_now():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        self.con.execute(
            "INSERT INTO runs (run_id, seq, stage, parents, as_of, engine, config_hash, status, "
            "started_at) SELECT ?, coalesce(max(seq), 0) + 1, ?, ?, ?, ?, ?, 'running', ? "
            "FROM runs",
            [run_id, stage, json.dumps(parents or {}), as_of, engine, config_hash, _now()],
        )
        return run_id

    def finish_run(
        self,
        run_id: str,
        *,
        error: str | None = None,
        status: str | None = None,
        as_of: str | None = None,
        rows: dict[str, int] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.con.execute(
            "UPDATE runs SET status = ?, error = ?, finished_at = ?, as_of = coalesce(?, as_of), "
            '"rows" = ?, details = ?, seconds = epoch(? - started_at) WHERE run_id = ?',
            [
                status or ("failed" if error else "ok"),
                error,
                _now(),
                as_of,
                json.dumps(rows) if rows is not None else None,
                json.dumps(details, default=str) if details is not None else None,
                _now(),
                run_id,
            ],
        )

    def mark_interrupted(self) -> None:
        """Runs still `running` when a writer opens the store were left by a killed process
        (the store admits one writer): they wrote nothing, since a run commits at its end."""
        self.con.execute(
            "UPDATE runs SET status = 'interrupted', error = 'the process running it stopped "
            "before it finished; nothing it wrote was kept' WHERE status = 'running'"
        )

    def run_info(self, run_id: str) -> dict[str, Any]:
        rows = self.query("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if not rows:
            raise StoreError(f"No run '{run_id}' in the ledger of {self.path}.")
        row = rows[0]
        for key in ("parents", "rows", "details"):  # JSON columns
            row[key] = json.loads(row[key]) if row.get(key) else {}
        return row

    def lineage(self, run_id: str) -> list[dict[str, Any]]:
        """The run and every run it read, transitively, nearest first."""
        seen: list[dict[str, Any]] = []
        todo = [run_id]
        while todo:
            info = self.run_info(todo.pop(0))
            if any(r["run_id"] == info["run_id"] for r in seen):
                continue
            seen.append(info)
            todo.extend(info["parents"].values())
        return seen

    def live_runs(self) -> list[dict[str, Any]]:
        """The latest ok run of each stage and every run it read: what readers' results
        stand on."""
        stages = [r[0] for r in self.con.execute("SELECT DISTINCT stage FROM runs").fetchall()]
        return [r for s in stages if (run := self.latest_run(s)) for r in self.lineage(run)]

    def collect_retired(self) -> int:
        """Drop retired rows no published run can read any more: a retired load is kept only
        while a live run (`live_runs`) is an ingest run it was part of."""
        needed = {
            r["seq"] for r in self.live_runs() if r["stage"] == "ingest" and r["seq"] is not None
        }
        rows = self.query(
            "SELECT s.source_id, l.seq AS loaded, r.seq AS retired FROM sources s "
            "JOIN runs l ON l.run_id = s.run_id JOIN runs r ON r.run_id = s.retired_run "
            "WHERE s.retired_run IS NOT NULL"
        )
        gone = [
            r["source_id"] for r in rows if not any(r["loaded"] <= z < r["retired"] for z in needed)
        ]
        dropped = 0
        if gone:
            for t in TABLES:
                dropped += int(
                    self.con.execute(
                        f'DELETE FROM "retired_{t}" WHERE list_contains(?, source_id)', [gone]
                    ).fetchall()[0][0]
                )
        return dropped

    def prune_outputs(self, keep: int) -> int:
        """Delete the output rows of all but the `keep` latest ok runs of each stage, keeping
        every run the latest ones read (their lineage); the ledger keeps every run. Returns
        the rows deleted. Segment memberships are history and stay."""
        kept = {r["run_id"] for r in self.live_runs()}
        kept.update(
            r[0]
            for r in self.con.execute(
                "SELECT run_id FROM (SELECT run_id, row_number() OVER (PARTITION BY stage "
                "ORDER BY seq DESC NULLS LAST) AS k FROM runs WHERE status = 'ok') WHERE k <= ?",
                [keep],
            ).fetchall()
        )
        deleted = 0
        for table in output_tables():
            if table in HISTORY_TABLES or table in VIEWS:
                continue  # segment history is kept for every run
            deleted += int(
                self.con.execute(
                    f'DELETE FROM "{table}" WHERE NOT list_contains(?, run_id)', [sorted(kept)]
                ).fetchall()[0][0]
            )
        return deleted

    # -- publishing -------------------------------------------------------------------------
    def publish(self) -> Path:
        """Copy the store, as committed now, to a new immutable snapshot and make it the one
        readers open; older snapshots go (a reader that has one open keeps reading it)."""
        folder = self.path.parent / PUBLISHED
        folder.mkdir(exist_ok=True)
        self.con.execute("CHECKPOINT")
        name = f"{_now():%Y%m%dT%H%M%S%f}-{secrets.token_hex(3)}.duckdb"
        partial = folder / f".{name}.partial"
        try:
            shutil.copyfile(self.path, partial)
        except BaseException:  # e.g. a full disk: leave no half copy behind
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, folder / name)
        pointer = folder / f".{CURRENT}.partial"
        pointer.write_text(name + "\n")
        os.replace(pointer, folder / CURRENT)
        # the new snapshot and the one before (for readers that have just read CURRENT)
        newest = sorted(folder.glob("*.duckdb"), key=lambda p: p.stat().st_mtime)[-2:]
        keep = {name, *(p.name for p in newest)}
        for old in folder.iterdir():
            if old.name not in keep and old.name != CURRENT:
                old.unlink(missing_ok=True)
        log.info("published %s", folder / name)
        return folder / name

    # -- reading ----------------------------------------------------------------------------
    def count(self, table: str) -> int:
        row = self.con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0]
        return int(row[0]) if row else 0

    def table_names(self) -> list[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "ORDER BY table_name"
        ).fetchall()
        return [r[0] for r in rows]

    def latest_run(self, stage: str) -> str | None:
        """The id of the stage's last successful run: what readers see."""
        rows = self.con.execute(
            "SELECT run_id FROM runs WHERE stage = ? AND status = 'ok' "
            "ORDER BY seq DESC NULLS LAST, finished_at DESC LIMIT 1",
            [stage],
        ).fetchall()
        return rows[0][0] if rows else None

    def latest_rows(self, table: str) -> tuple[str, list[Any]]:
        """SQL (and parameters) for the rows readers see: for a stage output table (it has a
        run_id), the rows of the last successful run that wrote it; else every row."""
        cols = [r[0] for r in self.con.execute(f'DESCRIBE "{table}"').fetchall()]
        if "run_id" not in cols:
            return f'SELECT * FROM "{table}"', []
        runs = VIEW_RUNS.get(table, table)  # a view's run ids without unpacking its rows
        return (
            f'SELECT * FROM "{table}" WHERE run_id = (SELECT run_id FROM runs WHERE status = '
            f"'ok' AND run_id IN (SELECT DISTINCT run_id FROM \"{runs}\") "
            "ORDER BY seq DESC NULLS LAST, finished_at DESC LIMIT 1)",
            [],
        )

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a small query as dicts (never use it for whole tables)."""
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
