"""The store: one DuckDB file holding canonical tables, rejects and the run ledger.

One process holds the file for writing at a time (DuckDB's model). Readers that must not block a
writer (the server, later) will read a snapshot published at the end of each run.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from personae.errors import StoreError
from personae.store.schemas import TABLES, create_sql, rejects_sql

__all__ = ["Store", "LEDGER_SQL"]

LEDGER_SQL = (
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY, stage VARCHAR, as_of DATE, config_hash VARCHAR,
        status VARCHAR, error VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP,
        seconds DOUBLE, details JSON)""",
    """CREATE TABLE IF NOT EXISTS sources (
        source_id VARCHAR PRIMARY KEY, name VARCHAR, location VARCHAR, kind VARCHAR,
        content_hash VARCHAR, table_name VARCHAR, rows_read BIGINT, rows_loaded BIGINT,
        rows_rejected BIGINT, values_nulled BIGINT, run_id VARCHAR, ingested_at TIMESTAMP,
        summary JSON)""",
)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Store:
    """An open DuckDB store with the canonical schema in place."""

    def __init__(
        self,
        path: Path,
        *,
        memory_limit: str = "4GB",
        threads: int | None = None,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        if read_only and not self.path.exists():
            raise StoreError(f"No store at {self.path}. Run `personae ingest` first.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as err:
            raise StoreError(
                f"Cannot open the store {self.path}: {err}. Another personae process may hold "
                "it for writing; wait for it to finish."
            ) from None
        self.con.execute(f"SET memory_limit = '{memory_limit}'")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        if not read_only:
            self.ensure_schema()

    def ensure_schema(self) -> None:
        for sql in LEDGER_SQL:
            self.con.execute(sql)
        for table in TABLES.values():
            self.con.execute(create_sql(table))
            self.con.execute(rejects_sql(table))

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- run ledger -------------------------------------------------------------------------
    def start_run(self, stage: str, *, as_of: str | None = None, config_hash: str = "") -> str:
        """Record a run as started; its results count only once `finish_run` marks it ok."""
        run_id = f"{stage}-{_now():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        self.con.execute(
            "INSERT INTO runs (run_id, stage, as_of, config_hash, status, started_at) "
            "VALUES (?, ?, ?, ?, 'running', ?)",
            [run_id, stage, as_of, config_hash, _now()],
        )
        return run_id

    def finish_run(
        self, run_id: str, *, error: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        self.con.execute(
            "UPDATE runs SET status = ?, error = ?, finished_at = ?, details = ?, "
            "seconds = epoch(? - started_at) WHERE run_id = ?",
            [
                "failed" if error else "ok",
                error,
                _now(),
                json.dumps(details) if details is not None else None,
                _now(),
                run_id,
            ],
        )

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
            "ORDER BY finished_at DESC LIMIT 1",
            [stage],
        ).fetchall()
        return rows[0][0] if rows else None

    def latest_rows(self, table: str) -> tuple[str, list[Any]]:
        """SQL (and parameters) for the rows readers see: for a stage output table (it has a
        run_id), the rows of the last successful run that wrote it; else every row."""
        cols = [r[0] for r in self.con.execute(f'DESCRIBE "{table}"').fetchall()]
        if "run_id" not in cols:
            return f'SELECT * FROM "{table}"', []
        return (
            f'SELECT * FROM "{table}" WHERE run_id = (SELECT run_id FROM runs WHERE status = '
            f"'ok' AND run_id IN (SELECT DISTINCT run_id FROM \"{table}\") "
            "ORDER BY finished_at DESC LIMIT 1)",
            [],
        )

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a small query as dicts (never use it for whole tables)."""
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
