"""The stage contract: a stage declared once runs in order through the one runner, lands in
the ledger with its parent runs, publishes atomically, and readers never wait for a writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest

from personae import Project
from personae.errors import ConfigError, PersonaeError
from personae.pipeline import STAGES, Runner, select_stages
from personae.stage import RunContext, Stage
from personae.store.schemas import Column, Table

from .conftest import cdnow_sample_source, personae, write_toml

ORDERS = "order_id,customer_id,ordered_at,amount\n"
TOY = Table(
    "toy_counts",
    "customer per toy run",
    (
        Column("customer_id", "id", "The customer."),
        Column("lines", "int", "Order lines."),
        Column("run_id", "id", "The run."),
    ),
    ("customer_id",),
)


def _orders_csv(path: Path, customers: int, first_order: int = 0) -> Path:
    rows = [
        f"o{first_order + i},c{i % customers},2024-0{1 + i % 9}-1{i % 10},{10 + i % 7}"
        for i in range(customers * 3)
    ]
    path.write_text(ORDERS + "\n".join(rows) + "\n")
    return path


def _project(root: Path, files: dict[str, Path]) -> Project:
    text = ""
    for name, path in files.items():
        text += f"""
[sources.{name}]
table = "orders"
path = "{path}"
date_formats = {{ ordered_at = "%Y-%m-%d" }}
"""
    write_toml(root, text)
    return Project.open(root)


def _toy(fail: bool = False) -> Stage:
    """A stage of one declaration: order lines per customer of its traits run's customers."""

    def compute(ctx: RunContext) -> int:
        ctx.store.ensure_table(TOY)
        run = ctx.parent("traits")
        n = ctx.store.con.execute(
            "INSERT INTO toy_counts SELECT t.customer_id, count(o.order_id), ? FROM traits t "
            "LEFT JOIN orders o USING (customer_id) WHERE t.run_id = ? GROUP BY 1",
            [ctx.run_id, run],
        ).fetchall()[0][0]
        if fail:
            raise PersonaeError("toy stage failed on purpose")
        return int(n)

    return Stage(
        "toy", "Lines per customer.", ("traits",), ("traits", "orders"), ("toy_counts",), compute
    )


def test_a_declared_stage_runs_in_order_with_lineage_and_publishes_atomically(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path, {"shop": _orders_csv(tmp_path / "orders.csv", 40)})
    stages = [*STAGES[:2], _toy()]
    assert [s.name for s in select_stages(start="traits", stages=stages)] == ["traits", "toy"]
    with project.store() as store:
        results = Runner(store, project.config, project.root).run(stages)
    assert results["toy"] == 40
    with project.reader() as store:
        good = store.latest_run("toy")
        assert good is not None
        chain = [r["stage"] for r in store.lineage(good)]
        assert chain == ["toy", "traits", "ingest"]
        assert store.run_info(good)["rows"] == {"toy_counts": 40}
        before = store.query("SELECT count(*) AS n FROM toy_counts WHERE run_id = ?", [good])[0][
            "n"
        ]
    assert before == 40

    with project.store() as store, pytest.raises(PersonaeError, match="on purpose"):
        Runner(store, project.config, project.root).run([_toy(fail=True)])
    with project.reader() as store:
        failed = store.query(
            "SELECT run_id, status, error FROM runs WHERE stage = 'toy' AND status <> 'ok'"
        )
        assert [r["status"] for r in failed] == ["failed"]
        # the failed run wrote 40 rows before failing: none of them is kept
        rows = store.query("SELECT run_id, count(*) AS n FROM toy_counts GROUP BY 1")
        assert rows == [{"run_id": good, "n": 40}]
        assert store.latest_run("toy") == good


def test_a_run_killed_midway_is_interrupted_and_left_nothing(tmp_path: Path) -> None:
    project = _project(tmp_path, {"shop": _orders_csv(tmp_path / "orders.csv", 30)})
    project.ingest()
    # A child process starts a traits run, writes, and dies without finishing it.
    script = f"""
import os
from personae import Project
from personae.store.schemas import output_tables
p = Project.open({str(tmp_path)!r})
s = p.store()
run = s.start_run("traits", as_of="2024-09-30")
s.con.execute("BEGIN TRANSACTION")
s.con.execute("INSERT INTO traits (customer_id, run_id) VALUES ('ghost', ?)", [run])
os._exit(9)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    project.traits()
    with project.reader() as store:
        statuses = {
            r["status"] for r in store.query("SELECT status FROM runs WHERE stage = 'traits'")
        }
        assert statuses == {"interrupted", "ok"}
        assert (
            store.query("SELECT count(*) AS n FROM traits WHERE customer_id = 'ghost'")[0]["n"] == 0
        )


def test_predict_reads_the_orders_of_its_traits_run(tmp_path: Path, data_dir: Path) -> None:
    """A re-ingest after the traits run does not change what that traits run's predict
    reads; the ledger says which traits and ingest runs a prediction came from."""
    config = cdnow_sample_source(data_dir) + "\n[predict]\ncalibration_end = 1997-09-30\n"
    write_toml(tmp_path, config)
    project = Project.open(tmp_path)
    project.run(only=["ingest", "traits"])
    baseline = project.predict()
    assert baseline.holdout["bgnbd"]["actual_total"] == 1882  # shared/reference

    # more purchases of 50 customers inside the holdout period, from a new source
    extra = tmp_path / "more.csv"
    extra.write_text(
        "customer,day,amount\n"
        + "".join(f"{i:04d},1998-03-0{1 + i % 5},20\n" for i in range(1, 51))
    )
    write_toml(
        tmp_path,
        config
        + f"""
[sources.more]
table = "orders"
path = "{extra}"
date_formats = {{ day = "%Y-%m-%d" }}
columns = {{ customer = "customer_id", day = "ordered_at", amount = "amount" }}
""",
    )
    project = Project.open(tmp_path)
    project.ingest(["more"])
    again = project.predict()  # still on the traits run made before `more` was ingested

    assert again.holdout.keys() == baseline.holdout.keys()
    for model, figures in baseline.holdout.items():
        assert again.holdout[model] == pytest.approx(figures, rel=1e-9)
    with project.reader() as store:
        chain = store.lineage(again.run_id)
        ingests = store.query("SELECT run_id FROM runs WHERE stage = 'ingest' ORDER BY seq")
    assert [r["stage"] for r in chain] == ["predict", "traits", "ingest"]
    assert chain[2]["run_id"] == ingests[0]["run_id"] != ingests[1]["run_id"]

    project.traits()  # a new traits run reads the new orders, and so does its predict
    newer = project.predict()
    # every sample customer bought first in 1997 Q1; a new line on a day they already
    # bought on adds no purchase day
    known = {
        (f[1], f[2][:4] + "-" + f[2][4:6] + "-" + f[2][6:])
        for f in (line.split() for line in (data_dir / "cdnow/CDNOW_sample.txt").open())
    }
    added = {(f"{i:04d}", f"1998-03-0{1 + i % 5}") for i in range(1, 51)} - known
    assert 0 < len(added) <= 50
    assert newer.holdout["bgnbd"]["actual_total"] == 1882 + len(added)


@pytest.mark.slow
def test_readers_see_the_last_published_run_while_a_run_writes(tmp_path: Path) -> None:
    project = _project(tmp_path, {"shop": _orders_csv(tmp_path / "orders.csv", 50)})
    project.run(only=["ingest", "traits"])
    before = project.status()
    exported = tmp_path / "before.csv"
    n_before = project.export("traits", exported)

    # big enough that a reader starting a CLI process (about 1.3 s) overlaps it on a busy
    # 2-core machine; 3 M lines was not always
    customers = 2_000_000
    big = _orders_csv(tmp_path / "big.csv", customers, first_order=10**7)
    text = (tmp_path / "personae.toml").read_text() + (
        f'\n[sources.big]\ntable = "orders"\npath = "{big}"\n'
        'date_formats = { ordered_at = "%Y-%m-%d" }\n'
    )
    write_toml(tmp_path, text)
    writer = subprocess.Popen(
        [sys.executable, "-m", "personae.cli", "ingest", "big", "-p", str(tmp_path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )

    def locked() -> bool:
        try:
            duckdb.connect(str(project.store_path), read_only=True).close()
        except duckdb.IOException:
            return True
        return False

    reads_while_locked = 0
    try:
        deadline = time.monotonic() + 120
        while writer.poll() is None and not locked() and time.monotonic() < deadline:
            time.sleep(0.05)
        while writer.poll() is None and time.monotonic() < deadline:
            held = locked()
            out = tmp_path / "during.csv"
            if reads_while_locked == 0:  # once through the CLI, as a user would
                res = personae("export", "traits", "--out", str(out), "-p", str(tmp_path), "--json")
                assert res.returncode == 0, res.stderr
                rows = json.loads(res.stdout)["rows"]
            else:
                rows = project.export("traits", out)
            status = project.status()
            if not (held and locked()):
                continue  # the writer may have published meanwhile: only count sure reads
            assert rows == n_before
            assert out.read_text() == exported.read_text()
            assert status["tables"] == before["tables"]
            assert status["runs"] == before["runs"]
            reads_while_locked += 1
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0, writer.stderr.read().decode()
    assert reads_while_locked >= 1, "the ingest finished before a read could overlap it"
    after = project.status()
    assert after["tables"]["orders"] == before["tables"]["orders"] + 3 * customers


def test_engine_overrides_are_validated(tmp_path: Path) -> None:
    project = _project(tmp_path, {"shop": _orders_csv(tmp_path / "orders.csv", 10)})
    with pytest.raises(ConfigError, match="--engine.*'duckdb' or 'spark'"):
        project.run(engine="sparkk")
    res = personae("run", "--engine", "sparkk", "-p", str(tmp_path))
    assert res.returncode == 1
    assert "'duckdb' or 'spark'" in res.stderr
    assert not project.store_path.exists()  # refused before anything was opened


def test_unknown_stage_names_get_the_closest_match() -> None:
    with pytest.raises(PersonaeError, match="Did you mean 'traits'"):
        select_stages(only=["trait"])
    with pytest.raises(PersonaeError, match="not both"):
        select_stages(only=["traits"], start="ingest")


def test_a_stage_without_its_parent_run_says_what_to_run(tmp_path: Path) -> None:
    project = _project(tmp_path, {"shop": _orders_csv(tmp_path / "orders.csv", 10)})
    with pytest.raises(PersonaeError, match="No traits run yet.*personae traits"):
        project.predict()


@pytest.mark.spark
@pytest.mark.xdist_group("spark")
def test_run_on_spark_with_as_of_leaves_no_exchange_files(tmp_path: Path) -> None:
    project = _project(tmp_path, {"shop": _orders_csv(tmp_path / "orders.csv", 300)})
    write_toml(
        tmp_path,
        (tmp_path / "personae.toml").read_text()
        + "\n[predict]\nmin_repeat_buyers = 1\nmin_history_days = 30\n",
    )
    res = personae(
        "run", "--as-of", "2024-08-31", "--engine", "spark", "-p", str(tmp_path), "--json"
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["traits"]["engine"] == "spark"
    assert out["traits"]["as_of"] == "2024-08-31"
    assert out["predict"]["as_of"] == "2024-08-31"
    warehouse = project.store_path.parent / "warehouse"
    assert warehouse.is_dir() and not any(warehouse.iterdir())  # every exchange removed
    with project.reader() as store:
        engines = {r["stage"]: r["engine"] for r in store.query("SELECT stage, engine FROM runs")}
    assert engines == {
        "ingest": "duckdb",
        "traits": "spark",
        "predict": "spark",
        "segments": "spark",
    }
    assert out["segments"]["as_of"] == "2024-08-31"


def test_every_stage_output_is_declared() -> None:
    from personae.store.schemas import TABLES, output_tables

    declared = set(output_tables()) | set(TABLES) | {f"rejects_{t}" for t in TABLES}
    for stage in STAGES:
        assert set(stage.outputs) <= declared | {"sources"}, stage.name


def test_old_runs_outputs_are_pruned_but_what_the_latest_runs_read_is_kept(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path, {"shop": _orders_csv(tmp_path / "orders.csv", 300)})
    write_toml(
        tmp_path,
        (tmp_path / "personae.toml").read_text()
        + "\n[store]\nkeep_runs = 2\n\n[predict]\nmin_repeat_buyers = 1\nmin_history_days = 30\n",
    )
    project = Project.open(tmp_path)
    project.run(only=["ingest", "traits"])
    predicted = project.predict()  # reads the first traits run
    for day in ("2024-08-01", "2024-08-15", "2024-09-01"):
        project.traits(date.fromisoformat(day))
    with project.reader() as store:
        runs = store.query("SELECT DISTINCT run_id FROM traits ORDER BY run_id")
        parent = store.run_info(predicted.run_id)["parents"]["traits"]
        ledger = store.query("SELECT count(*) AS n FROM runs WHERE stage = 'traits'")[0]["n"]
    latest_two = project.status()["runs"][:2]
    assert ledger == 4  # the ledger keeps every run
    assert {r["run_id"] for r in runs} == {parent, *(r["run_id"] for r in latest_two)}


def test_as_of_with_no_stage_that_uses_it_is_an_error(tmp_path: Path) -> None:
    project = _project(tmp_path, {"shop": _orders_csv(tmp_path / "orders.csv", 10)})
    with pytest.raises(PersonaeError, match="--from traits --as-of"):
        project.run(start="predict", as_of=date(2024, 1, 1))
