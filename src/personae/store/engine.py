"""The engine rule: table work is written once as Ibis expressions and runs on DuckDB (the
store itself) or on Spark.

`engine_for(store, config, root, ingest_run)` gives an `Engine` with `table(name)` (an Ibis table
of the store; canonical tables as they were after `ingest_run`) and `write(table, expr,
stamp)` (materialise an expression into a declared output table, stamped with the run). On
Spark the tables are handed over as Parquet files in the warehouse (`[store] warehouse`: a
folder the driver and executors share, or an hdfs:// or s3a:// URI), and results come back as
Parquet; nothing passes through Python rows. `close()` removes every exchange file.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import time
import uuid
from functools import cache
from pathlib import Path
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

    def drop(self, *names: str) -> None: ...

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
        self._temps: set[str] = set()

    def table(self, name: str) -> ir.Table:
        t = self.backend.table(name)
        if self.sources is not None and name in TABLES:
            old = self.backend.table(f"retired_{name}")
            old = old.filter(old.source_id.isin(self.sources)).select(*t.columns)
            return t.filter(t.source_id.isin(self.sources)).union(old)
        return t

    def write(self, target: str, expr: ir.Table, extra: dict[str, str]) -> int:
        started = time.perf_counter()
        sql = ibis.to_sql(expr, dialect="duckdb")
        n = _insert_by_name(self.store, target, str(sql), extra)
        log.info("wrote %s rows to %s in %.1f s", f"{n:,}", target, time.perf_counter() - started)
        return n

    def temp(self, expr: ir.Table, name: str) -> ir.Table:
        """Compute `expr` once into a temp table that later expressions read."""
        started = time.perf_counter()
        sql = ibis.to_sql(expr, dialect="duckdb")
        self.store.con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS {sql}')
        self._temps.add(name)
        log.info("computed %s in %.1f s", name, time.perf_counter() - started)
        return self.backend.table(name)

    def drop(self, *names: str) -> None:
        """Drop temp tables nothing reads any more: their memory goes to the queries left
        instead of being spilled to disk for them."""
        for name in names:
            self.store.con.execute(f'DROP TABLE IF EXISTS "{name}"')
            self._temps.discard(name)

    def upload(self, name: str, table: pa.Table) -> ir.Table:
        """A small Arrow table (model scores) as a table that expressions can join."""
        self.store.con.register(name, table)
        self._uploaded.append(name)
        return self.backend.table(name)

    def close(self) -> None:
        """Drop the run's temp tables (at 10 M customers the traits' hold gigabytes the next
        stage of `personae run` needs) and forget the uploads."""
        for name in self._temps:
            self.store.con.execute(f'DROP TABLE IF EXISTS "{name}"')
        self._temps.clear()
        for name in self._uploaded:
            self.store.con.unregister(name)
        self._uploaded.clear()


def _is_local_master(master: str) -> bool:
    return master == "local" or master.startswith("local[")


@cache
def spark_session(master: str) -> Any:
    """One Spark session per process (it takes seconds to start), in UTC; asking for
    another master in the same process is an error.

    A local master binds to loopback. Any other master (a cluster) keeps Spark's own
    networking and settings (SPARK_LOCAL_IP, spark-defaults.conf in SPARK_CONF_DIR,
    PYSPARK_SUBMIT_ARGS): the executors must reach the driver at an address they can route
    to, which only the cluster's operator knows."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise StoreError(
            'engine = "spark" needs Java 17 or newer: `java` was not found. Install a JDK '
            '(Debian: apt-get install openjdk-17-jre-headless) or set engine = "duckdb".'
        )
    local = _is_local_master(master)
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName("personae")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.ansi.enabled", "false")
    )
    if local:
        builder = builder.config("spark.driver.host", "127.0.0.1").config(
            "spark.sql.shuffle.partitions", "4"
        )
    session = builder.getOrCreate()
    if session.sparkContext.master != master:  # one SparkContext per JVM: it keeps its master
        raise StoreError(
            f"This process already runs Spark on master '{session.sparkContext.master}', so "
            f"it cannot also use [store] spark_master = '{master}'.",
            hint="Run the stages for the other master in a process of their own.",
        )
    session.sparkContext.setLogLevel("ERROR")
    return session


def _is_uri(location: str) -> bool:
    """A Hadoop URI (hdfs://, s3a://, file://, ...) rather than a plain folder."""
    return re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", location) is not None


def warehouse_location(config: StoreConfig, root: Path) -> str:
    """The configured warehouse: a URI as given, or a plain folder made absolute against the
    project folder `root`."""
    location = config.warehouse.strip()
    if _is_uri(location):
        return location.rstrip("/")
    return str(Path(root) / Path(location).expanduser())


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _exchange_prefix() -> str:
    """Exchange folders are named exchange-HOST-PID-ID: whose they are is in the name."""
    return f"exchange-{socket.gethostname()}-"


def _remove_abandoned(folder: Path) -> None:
    """Remove this machine's exchange folders whose process is gone: a run killed before
    `close()` left copies of customer data there that nothing else tracks."""
    prefix = _exchange_prefix()
    for path in folder.glob(f"{prefix}*"):
        pid = path.name[len(prefix) :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            log.info("removing %s, left by a run that was stopped", path)
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class SparkEngine:
    """Ibis over a Spark session; tables travel as Parquet through the warehouse.

    Each engine works in its own exchange folder `exchange-<host>-<pid>-<id>` inside the
    warehouse, which `close()` removes (and the next engine on the machine, when the process
    that made it was killed first). In a plain folder DuckDB writes the Parquet that Spark
    reads and reads the Parquet that Spark writes, in place (Spark gets a file:// URI, so a
    cluster whose default filesystem is HDFS still reads the local mount). A URI warehouse (hdfs://,
    s3a://, ...) is written through the driver's Hadoop client, the one Spark itself uses
    with its credentials and settings: DuckDB writes Parquet to a staging folder next to the
    store and the driver copies it up; results go the other way. Nothing passes through
    Python rows either way."""

    name = "spark"

    def __init__(
        self,
        store: Store,
        master: str,
        sources: list[str] | None = None,
        warehouse: str | None = None,
    ) -> None:
        self.store = store
        self.sources = sources
        self.session = spark_session(master)
        self.backend = ibis.pyspark.connect(self.session)
        warehouse = warehouse or str(store.path.parent / "warehouse")
        folder = f"{_exchange_prefix()}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.remote = _is_uri(warehouse)
        if self.remote:
            self.exchange = f"{warehouse}/{folder}"
            # DuckDB's side of the hand-over; on the driver, inside the project
            self.local = store.path.parent.absolute() / "staging" / folder
            self._hadoop("mkdirs", self.exchange)
        else:
            self.local = Path(warehouse).absolute() / folder
            self.exchange = self.local.as_uri()
        _remove_abandoned(self.local.parent)
        self.local.mkdir(parents=True, exist_ok=True)
        self._views: set[str] = set()
        log.info("Spark exchange folder: %s", self.exchange)

    def _hadoop(self, op: str, uri: str, local: Path | None = None) -> None:
        """A file operation on the warehouse through the driver's Hadoop client; its Java
        errors (no filesystem for the scheme, credentials, a host it cannot reach) come back
        as a StoreError naming the setting."""
        try:
            self._hadoop_op(op, uri, local)
        except Exception as err:  # noqa: BLE001 - Java errors arrive as Py4J's own
            java = getattr(err, "java_exception", None)
            detail = str(java if java is not None else err).strip().splitlines()[0]
            raise StoreError(
                f"Spark could not {op} {uri} in the [store] warehouse: {detail}",
                hint="Check [store] warehouse in personae.toml: a folder every executor sees "
                "at the same path, or a URI whose filesystem (hdfs://, s3a:// with "
                "hadoop-aws on the classpath) and credentials the Spark driver has "
                "(docs/scaling.md).",
            ) from None

    def _hadoop_op(self, op: str, uri: str, local: Path | None) -> None:
        jvm = self.session._jvm
        conf = self.session._jsc.hadoopConfiguration()
        path = jvm.org.apache.hadoop.fs.Path(uri)
        fs = path.getFileSystem(conf)
        if op == "mkdirs":
            fs.mkdirs(path)
        elif op == "delete":
            fs.delete(path, True)
        elif op == "put" and local is not None:
            # delete the local copy, overwrite the remote one
            fs.copyFromLocalFile(True, True, jvm.org.apache.hadoop.fs.Path(local.as_uri()), path)
        elif op == "get" and local is not None:
            # keep the remote copy (close() removes it); raw local files: no .crc files
            fs.copyToLocalFile(False, path, jvm.org.apache.hadoop.fs.Path(local.as_uri()), True)
        else:  # pragma: no cover - programming error
            raise ValueError(op)

    def _hand_over(self, name: str) -> str:
        """The warehouse URI of the Parquet file `name` just written in the local folder."""
        if self.remote:
            uri = f"{self.exchange}/{name}"
            self._hadoop("put", uri, self.local / name)
            return uri
        return (self.local / name).as_uri()

    def table(self, name: str) -> ir.Table:
        if name not in self._views:
            path = self.local / f"{name}.parquet"
            query, params = f'SELECT * FROM "{name}"', []
            if self.sources is not None and name in TABLES:
                query += (
                    " WHERE list_contains(?, source_id) UNION ALL BY NAME SELECT * EXCLUDE "
                    f'(retired_run) FROM "retired_{name}" WHERE list_contains(?, source_id)'
                )
                params = [self.sources, self.sources]
            self.store.con.execute(
                f"COPY ({query}) TO {_sql_string(str(path))} (FORMAT parquet)", params
            )
            uri = self._hand_over(path.name)
            self.session.read.parquet(uri).createOrReplaceTempView(name)
            self._views.add(name)
        return self.backend.table(name)

    def temp(self, expr: ir.Table, name: str) -> ir.Table:
        """Compute `expr` once into a cached Spark view that later expressions read."""
        frame = self.session.sql(str(ibis.to_sql(expr, dialect="pyspark"))).cache()
        frame.createOrReplaceTempView(name)
        self._views.add(name)
        return self.backend.table(name)

    def drop(self, *names: str) -> None:
        """Uncache and forget views nothing reads any more."""
        for name in names:
            if name in self._views:
                self.session.table(name).unpersist()
                self.session.catalog.dropTempView(name)
                self._views.discard(name)

    def upload(self, name: str, table: pa.Table) -> ir.Table:
        """A small Arrow table (model scores) as a Spark view, handed over as Parquet."""
        path = self.local / f"upload_{name}.parquet"
        pq.write_table(table, path)
        uri = self._hand_over(path.name)
        self.session.read.parquet(uri).cache().createOrReplaceTempView(name)
        self._views.add(name)
        return self.backend.table(name)

    def write(self, target: str, expr: ir.Table, extra: dict[str, str]) -> int:
        name = f"result_{target}"
        out = self.local / name
        if out.exists():
            shutil.rmtree(out)
        uri = f"{self.exchange}/{name}"
        frame = self.session.sql(str(ibis.to_sql(expr, dialect="pyspark")))
        frame.write.mode("overwrite").parquet(uri)
        if self.remote:
            self._hadoop("get", uri, out)
            self._hadoop("delete", uri)
        select = f"SELECT * FROM read_parquet({_sql_string(str(out / '*.parquet'))})"
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
        if self.remote:
            try:  # an error here must not hide the one that ended the run
                self._hadoop("delete", self.exchange)
            except Exception as err:  # noqa: BLE001 - Java errors arrive as Py4J's own
                log.warning("could not remove %s (%s): delete it by hand", self.exchange, err)
        shutil.rmtree(self.local, ignore_errors=True)
        parent = self.local.parent
        if self.remote and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()  # the staging folder, when no other engine uses it


def engine_for(
    store: Store, config: StoreConfig, root: Path, ingest_run: str | None = None
) -> Engine:
    """The configured engine over the store, reading the canonical tables as they were right
    after `ingest_run` (all rows when None or when nothing was ingested since). `root`, the
    project folder, anchors a relative warehouse folder (see `warehouse_location`)."""
    sources = sources_as_of(store, ingest_run)
    if config.engine == "spark":
        warehouse = warehouse_location(config, root)
        return SparkEngine(store, config.spark_master, sources, warehouse)
    return DuckDBEngine(store, sources)


__all__ = [
    "Engine",
    "DuckDBEngine",
    "SparkEngine",
    "engine_for",
    "sources_as_of",
    "spark_session",
    "warehouse_location",
]
