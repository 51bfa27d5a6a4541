"""The engine rule: table work is written once as Ibis expressions and runs on DuckDB (the
store itself) or on Spark.

`engine_for(store, config)` gives an `Engine` with `table(name)` (an Ibis table of the store)
and `write(table, expr, run_id)` (materialise an expression into a store table, stamped with
the run). On Spark the canonical tables are handed over as Parquet files exported from the
store, and results come back as Parquet; nothing passes through Python rows.
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

log = logging.getLogger(__name__)


class Engine(Protocol):
    name: str
    backend: Any

    def table(self, name: str) -> ir.Table: ...

    def write(self, target: str, expr: ir.Table, extra: dict[str, str]) -> int: ...

    def temp(self, expr: ir.Table, name: str) -> ir.Table: ...

    def upload(self, name: str, table: pa.Table) -> ir.Table: ...


def _insert_by_name(store: Store, target: str, select_sql: str, extra: dict[str, str]) -> int:
    """Append rows to `target` (created from the first result), adding any new columns."""
    cols = ", ".join(f"'{v}' AS {k}" for k, v in extra.items())
    source = f"SELECT *, {cols} FROM ({select_sql})" if extra else select_sql
    store.con.execute(f"CREATE OR REPLACE TEMP VIEW _result AS {source}")
    if target not in store.table_names():
        store.con.execute(f'CREATE TABLE "{target}" AS SELECT * FROM _result LIMIT 0')
    have = {r[0] for r in store.con.execute(f'DESCRIBE "{target}"').fetchall()}
    for name, dtype, *_ in store.con.execute("DESCRIBE _result").fetchall():
        if name not in have:
            store.con.execute(f'ALTER TABLE "{target}" ADD COLUMN "{name}" {dtype}')
    before = store.count(target)
    store.con.execute(f'INSERT INTO "{target}" BY NAME SELECT * FROM _result')
    store.con.execute("DROP VIEW _result")
    return store.count(target) - before


class DuckDBEngine:
    """Ibis over the store's own DuckDB connection: no copies."""

    name = "duckdb"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.backend = ibis.duckdb.from_connection(store.con)

    def table(self, name: str) -> ir.Table:
        return self.backend.table(name)

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
        return self.backend.table(name)


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

    def __init__(self, store: Store, master: str) -> None:
        self.store = store
        self.session = spark_session(master)
        self.backend = ibis.pyspark.connect(self.session)
        self.exchange = store.path.parent / "spark"
        self.exchange.mkdir(parents=True, exist_ok=True)
        self._loaded: set[str] = set()

    def table(self, name: str) -> ir.Table:
        if name not in self._loaded:
            path = self.exchange / f"{name}.parquet"
            self.store.con.execute(f"COPY \"{name}\" TO '{path}' (FORMAT parquet)")
            self.session.read.parquet(str(path)).createOrReplaceTempView(name)
            self._loaded.add(name)
        return self.backend.table(name)

    def temp(self, expr: ir.Table, name: str) -> ir.Table:
        """Compute `expr` once into a cached Spark view that later expressions read."""
        frame = self.session.sql(str(ibis.to_sql(expr, dialect="pyspark"))).cache()
        frame.createOrReplaceTempView(name)
        return self.backend.table(name)

    def upload(self, name: str, table: pa.Table) -> ir.Table:
        """A small Arrow table (model scores) as a Spark view, handed over as Parquet."""
        path = self.exchange / f"upload_{name}.parquet"
        pq.write_table(table, path)
        self.session.read.parquet(str(path)).cache().createOrReplaceTempView(name)
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


def engine_for(store: Store, config: StoreConfig) -> Engine:
    if config.engine == "spark":
        return SparkEngine(store, config.spark_master)
    return DuckDBEngine(store)


__all__ = ["Engine", "DuckDBEngine", "SparkEngine", "engine_for", "spark_session"]
