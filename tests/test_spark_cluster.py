"""The Spark engine on a real standalone cluster, and where the warehouse is.

The cluster test starts a master and two workers on loopback with pyspark's own
`spark-class`, runs ingest, traits and predict with `spark_master = "spark://..."` in a
`personae run` subprocess (a JVM can hold one SparkContext, and this test process may
already hold a local one), compares the results with DuckDB's on the same data and stops
every process it started."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyspark
import pytest

from personae import Project
from personae.config import StoreConfig
from personae.errors import StoreError
from personae.store import Store
from personae.store.engine import SparkEngine, warehouse_location

from .conftest import CLI_ENV

SPARK_CLASS = Path(pyspark.__file__).parent / "bin" / "spark-class"
STAGES = ("ingest", "traits", "predict")


def test_the_warehouse_is_a_project_folder_or_a_uri_passed_through(tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    assert warehouse_location(StoreConfig(), shop) == str(shop / ".personae" / "warehouse")
    assert warehouse_location(StoreConfig(warehouse="wh"), shop) == str(tmp_path / "shop" / "wh")
    assert warehouse_location(StoreConfig(warehouse="wh"), tmp_path) == str(tmp_path / "wh")
    assert warehouse_location(StoreConfig(warehouse=str(tmp_path / "abs")), shop) == str(
        tmp_path / "abs"
    )
    for uri in ("hdfs://nn:8020/personae", "s3a://bucket/personae/", "file:///tmp/x"):
        assert warehouse_location(StoreConfig(warehouse=uri), shop) == uri.rstrip("/")


@pytest.mark.spark
@pytest.mark.xdist_group("spark")
def test_a_warehouse_spark_cannot_use_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    """Hadoop's own error (no filesystem for the scheme) comes back naming [store] warehouse,
    not as a Java traceback."""
    store = Store(tmp_path / "store.duckdb")
    try:
        with pytest.raises(StoreError, match=r"in the \[store\] warehouse") as err:
            SparkEngine(store, "local[*]", warehouse="nosuchfs://nowhere/personae")
    finally:
        store.close()
    assert "mkdirs nosuchfs://nowhere/personae/exchange-" in str(err.value)
    assert "nosuchfs" in str(err.value).split("warehouse:")[1]
    assert err.value.hint is not None and "docs/scaling.md" in err.value.hint


@pytest.mark.spark
@pytest.mark.xdist_group("spark")
def test_exchange_folders_of_killed_runs_are_removed_by_the_next(tmp_path: Path) -> None:
    """A run killed before close() leaves its exchange folder; the next Spark engine on the
    machine removes it, and leaves live runs' folders and other machines' alone."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    warehouse = tmp_path / "warehouse"
    host = socket.gethostname()
    left = warehouse / f"exchange-{host}-{gone.stdout.strip()}-abc"
    live = warehouse / f"exchange-{host}-{os.getpid()}-def"
    other = warehouse / "exchange-another-host-1-ghi"
    for folder in (left, live, other):
        folder.mkdir(parents=True)
        (folder / "traits.parquet").write_bytes(b"customer data")
    store = Store(tmp_path / "store.duckdb")
    try:
        engine = SparkEngine(store, "local[*]", warehouse=str(warehouse))
        assert engine.local.parent == warehouse and engine.local.is_dir()
        assert not left.exists() and live.is_dir() and other.is_dir()
        engine.close()
        assert not engine.local.exists()
    finally:
        store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _master_state(ui_port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as r:
        state: dict[str, object] = json.load(r)
        return state


@contextmanager
def standalone_cluster(folder: Path, workers: int = 2) -> Iterator[tuple[str, int]]:
    """A Spark master and `workers` workers (1 core, 1 GB each) on 127.0.0.1; yields the
    master URL and its web UI port. Every process group started is stopped on the way out."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(folder)}
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> None:
        log = open(folder / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(
            subprocess.Popen(
                [str(SPARK_CLASS), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, with the executors
            )
        )
        log.close()

    try:
        port, ui = _free_port(), _free_port()
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
              "--port", str(port), "--webui-port", str(ui))  # fmt: skip
        url = f"spark://127.0.0.1:{port}"
        for i in range(workers):
            start(f"worker{i}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                  "--cores", "1", "--memory", "1g", "--webui-port", str(_free_port()),
                  "--work-dir", str(folder / f"work{i}"), url)  # fmt: skip
        deadline = time.monotonic() + 180
        while True:
            for p in procs:
                if p.poll() is not None:
                    logs = "\n".join(f.read_text()[-2000:] for f in folder.glob("*.log"))
                    pytest.fail(f"a Spark process exited ({p.args[1]}):\n{logs}")
            try:
                alive = [w for w in _master_state(ui)["workers"] if w["state"] == "ALIVE"]  # type: ignore[attr-defined]
            except OSError:
                alive = []
            if len(alive) == workers:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{len(alive)} of {workers} Spark workers registered in 180 s")
            time.sleep(0.5)
        yield url, ui
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)


def _rows(project: Project, table: str) -> list[tuple[object, ...]]:
    """The latest run's rows of `table`, by customer (small test data only)."""
    with project.store(read_only=True) as store:
        return store.con.execute(
            f"SELECT * EXCLUDE (run_id) FROM {table} WHERE run_id = (SELECT max(run_id) "
            f"FROM {table}) ORDER BY customer_id"
        ).fetchall()


def _assert_same_rows(a: list[tuple[object, ...]], b: list[tuple[object, ...]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            if isinstance(u, float) and isinstance(v, float):
                assert math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-12), (x, y)
            else:
                assert u == v, (x, y)


def _run(project: Path, *stages: str, env: dict[str, str]) -> dict[str, dict[str, object]]:
    only = [a for s in stages for a in ("--only", s)]
    res = subprocess.run(
        [sys.executable, "-m", "personae.cli", "run", *only, "-p", str(project), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    out: dict[str, dict[str, object]] = json.loads(res.stdout)
    return out


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.xdist_group(
    "spark_cluster"
)  # its own JVMs: beside the local-Spark tests, not after them
def test_standalone_cluster_gives_duckdbs_results(tmp_path: Path) -> None:
    """ingest, traits and predict on a master and two workers give the same traits and
    predictions as DuckDB. Traits hand tables over through a plain warehouse folder, predict
    through a file:// URI: the path hdfs:// and s3a:// warehouses take (the driver's Hadoop
    client copies Parquet up and results down)."""
    if shutil.which("java") is None:
        pytest.fail("Spark tests need Java 17: `java` is not on PATH (make test checks for it)")
    data = tmp_path / "data"
    made = subprocess.run(
        [sys.executable, "-m", "personae.cli", "synth", str(data), "--customers", "2000"],
        capture_output=True,
        text=True,
        env=CLI_ENV,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    shutil.copytree(data, tmp_path / "duckdb")
    shutil.copytree(data, tmp_path / "spark")
    reference = Project.open(tmp_path / "duckdb")
    reference.run(only=list(STAGES))

    warehouse = tmp_path / "warehouse"
    config = tmp_path / "spark" / "personae.toml"
    text = config.read_text()
    store = '[store]\npath = ".personae/personae.duckdb"\n'
    assert store in text
    env = {**CLI_ENV, "SPARK_LOCAL_IP": "127.0.0.1"}
    # cluster settings reach the driver as they would on a real one (4 shuffle partitions
    # for 2 cores rather than Spark's 200)
    env["PYSPARK_SUBMIT_ARGS"] = "--conf spark.sql.shuffle.partitions=4 pyspark-shell"
    with standalone_cluster(tmp_path / "cluster") as (master, ui):
        settings = f'engine = "spark"\nspark_master = "{master}"\n'
        config.write_text(text.replace(store, f'{store}{settings}warehouse = "{warehouse}"\n'))
        first = _run(tmp_path / "spark", "ingest", "traits", env=env)
        assert first["traits"]["engine"] == "spark"
        assert warehouse.is_dir() and not any(warehouse.iterdir())  # close() removed it all
        config.write_text(
            text.replace(store, f'{store}{settings}warehouse = "{warehouse.as_uri()}/uri"\n')
        )
        _run(tmp_path / "spark", "predict", env=env)
        assert not any((warehouse / "uri").iterdir())
        assert not (tmp_path / "spark" / ".personae" / "staging").exists()
        apps = _master_state(ui)["completedapps"]
        assert [a["name"] for a in apps] == ["personae", "personae"]  # type: ignore[attr-defined]

    spark = Project.open(tmp_path / "spark")
    with spark.reader() as s:
        engines = dict(s.con.execute("SELECT stage, engine FROM runs").fetchall())
    assert engines == {"ingest": "duckdb", "traits": "spark", "predict": "spark"}
    for table in ("traits", "predictions"):
        _assert_same_rows(_rows(reference, table), _rows(spark, table))
