"""The engine rule: table work is written once as Ibis expressions and runs on DuckDB (the
store itself) or on Spark.

`engine_for(store, config, ingest_run)` gives an `Engine` with `table(name)` (an Ibis table
of the store; canonical tables as they were after `ingest_run`) and `write(table, expr,
stamp)` (materialise an expression into a declared output table, stamped with the run). On
Spark the tables are handed over as Parquet files exported from the store, and results come
back as Parquet; nothing passes through Python rows. `close()` removes every exchange file.
"""

from __future__ import annotations

import logging
import os
import shutil
from functools import cache
from typing import Any, Protocol

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.parquet as pq

from personae.config import StoreConfig
from personae.errors import StoreError
from personae.store import Store
from personae.store.schemas import TABLES

log = logging.getLogger(__name__)


class Engine(Protocol):
    name: str
    backend: Any

    def table(self, name: str) -> ir.Table: ...

    def write(self, target: str, expr: ir.Table, extra: dict[str, str]) -> int: ...

    def temp(self, expr: ir.Table, name: str) -> ir.Table: ...

    def upload(self, name: str, table: pa.Table) -> ir.Table: ...

    def close(self) -> None: ...


def sources_as_of(store: Store, ingest_run: str | None) -> list[str] | None:
    """The sources whose rows the canonical tables held right after `ingest_run` (loaded by
    then, not yet replaced), or None when that is what they hold now."""
    if ingest_run is None:
        return None
    rows = store.con.execute(
        "SELECT s.source_id, s.retired_run IS NULL, coalesce(l.seq <= z.seq, true) AND "
        "coalesce(r.seq > z.seq, true) FROM sources s "
        "CROSS JOIN (SELECT seq FROM runs WHERE run_id = ?) z "
        "LEFT JOIN runs l ON l.run_id = s.run_id LEFT JOIN runs r ON r.run_id = s.retired_run",
        [ingest_run],
    ).fetchall()
    wanted = sorted(sid for sid, _, then in rows if then)
    if wanted == sorted(sid for sid, now, _ in rows if now):
        return None
    return wanted


def _insert_by_name(store: Store, target: str, select_sql: str, extra: dict[str, str]) -> int:
    """Append rows to the declared table `target`, with the stamp columns in `extra`."""
    cols = ", ".join(f"'{v}' AS {k}" for k, v in extra.items())
    source = f"SELECT *, {cols} FROM ({select_sql})" if extra else select_sql
    store.con.execute(f"CREATE OR REPLACE TEMP VIEW _result AS {source}")
    have = {r[0] for r in store.con.execute(f'DESCRIBE "{target}"').fetchall()}
    extra_cols = [r[0] for r in store.con.execute("DESCRIBE _result").fetchall()]
    undeclared = [c for c in extra_cols if c not in have]
    if undeclared:
        raise StoreError(
            f"The result for '{target}' has columns its declaration lacks: "
            f"{', '.join(undeclared)}. Declare them in personae/store/schemas.py."
        )
    before = store.count(target)
    store.con.execute(f'INSERT INTO "{target}" BY NAME SELECT * FROM _result')
    store.con.execute("DROP VIEW _result")
    return store.count(target) - before


class DuckDBEngine:
    """Ibis over the store's own DuckDB connection: no copies."""

    name = "duckdb"

    def __init__(self, store: Store, sources: list[str] | None = None) -> None:
        self.store = store
        self.sources = sources
        self.backend = ibis.duckdb.from_connection(store.con)
        self._uploaded: list[str] = []

    def table(self, name: str) -> ir.Table:
        t = self.backend.table(name)
        if self.sources is not None and name in TABLES:
            old = self.backend.table(f"retired_{name}")
            old = old.filter(old.source_id.isin(self.sources)).select(*t.columns)
            return t.filter(t.source_id.isin(self.sources)).union(old)
        return t

    def write(self, target: str, expr: ir.Table, extra: dict[str, str]) -> int:
        sql = ibis.to_sql(expr, dialect="duckdb")
        return _insert_by_name(self.store, target, str(sql), extra)

    def temp(self, expr: ir.Table, name: str) -> ir.Table:
        """Compute `expr` once into a temp table that later expressions read."""
        sql = ibis.to_sql(expr, dialect="duckdb")
        self.store.con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS {sql}')
        return self.backend.table(name)

    def upload(self, name: str, table: pa.Table) -> ir.Table:
        """A small Arrow table (model scores) as a table that expressions can join."""
        self.store.con.register(name, table)
        self._uploaded.append(name)
        return self.backend.table(name)

    def close(self) -> None:
        for name in self._uploaded:
            self.store.con.unregister(name)
        self._uploaded.clear()


@cache
def spark_session(master: str) -> Any:
    """One local Spark session per process (it takes seconds to start), in UTC."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise StoreError(
            'engine = "spark" needs Java 17 or newer: `java` was not found. Install a JDK '
            '(Debian: apt-get install openjdk-17-jre-headless) or set engine = "duckdb".'
        )
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master(master)
        .appName("personae")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.ansi.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


class SparkEngine:
    """Ibis over a Spark session; canonical tables arrive as Parquet exported from the store."""

    name = "spark"

    def __init__(self, store: Store, master: str, sources: list[str] | None = None) -> None:
        self.store = store
        self.sources = sources
        self.session = spark_session(master)
        self.backend = ibis.pyspark.connect(self.session)
        self.exchange = store.path.parent / "spark"
        self.exchange.mkdir(parents=True, exist_ok=True)
        self._views: set[str] = set()

    def table(self, name: str) -> ir.Table:
        if name not in self._views:
            path = self.exchange / f"{name}.parquet"
            query, params = f'SELECT * FROM "{name}"', []
            if self.sources is not None and name in TABLES:
                query += (
                    " WHERE list_contains(?, source_id) UNION ALL BY NAME SELECT * EXCLUDE "
                    f'(retired_run) FROM "retired_{name}" WHERE list_contains(?, source_id)'
                )
                params = [self.sources, self.sources]
            self.store.con.execute(f"COPY ({query}) TO '{path}' (FORMAT parquet)", params)
            self.session.read.parquet(str(path)).createOrReplaceTempView(name)
            self._views.add(name)
        return self.backend.table(name)

    def temp(self, expr: ir.Table, name: str) -> ir.Table:
        """Compute `expr` once into a cached Spark view that later expressions read."""
        frame = self.session.sql(str(ibis.to_sql(expr, dialect="pyspark"))).cache()
        frame.createOrReplaceTempView(name)
        self._views.add(name)
        return self.backend.table(name)

    def upload(self, name: str, table: pa.Table) -> ir.Table:
        """A small Arrow table (model scores) as a Spark view, handed over as Parquet."""
        path = self.exchange / f"upload_{name}.parquet"
        pq.write_table(table, path)
        self.session.read.parquet(str(path)).cache().createOrReplaceTempView(name)
        self._views.add(name)
        return self.backend.table(name)

    def write(self, target: str, expr: ir.Table, extra: dict[str, str]) -> int:
        out = self.exchange / f"result_{target}"
        if out.exists():
            shutil.rmtree(out)
        self.session.sql(str(ibis.to_sql(expr, dialect="pyspark"))).write.parquet(str(out))
        select = f"SELECT * FROM read_parquet('{out}/*.parquet')"
        n = _insert_by_name(self.store, target, select, extra)
        shutil.rmtree(out)
        return n

    def close(self) -> None:
        """Forget the views and remove every exchange file: they hold copies of customer
        data that nothing else tracks (erasure would miss them)."""
        for name in self._views:
            self.session.catalog.dropTempView(name)
        self._views.clear()
        self.session.catalog.clearCache()
        shutil.rmtree(self.exchange, ignore_errors=True)


def engine_for(store: Store, config: StoreConfig, ingest_run: str | None = None) -> Engine:
    """The configured engine over the store, reading the canonical tables as they were right
    after `ingest_run` (all rows when None or when nothing was ingested since)."""
    sources = sources_as_of(store, ingest_run)
    if config.engine == "spark":
        return SparkEngine(store, config.spark_master, sources)
    return DuckDBEngine(store, sources)


__all__ = [
    "Engine",
    "DuckDBEngine",
    "SparkEngine",
    "engine_for",
    "sources_as_of",
    "spark_session",
]
