"""Benchmark: purchase-summary traits and RFM for 1 M synthetic customers (about 10 M order
lines), by personae on DuckDB, by one hand-written DuckDB SQL query, by pandas, and by
personae on Spark in local mode. Each runs in its own process (its own peak memory); the
results are checked against each other and written to docs/benchmarks.md.

    python benchmarks/bench_traits.py [--customers 1000000] [--work /tmp/personae-bench]

It reuses the synthetic orders.csv of bench_ingest.py when present.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from _docs import PEAK_WATCH, write_section

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2024-12-31"

PREAMBLE = (
    PEAK_WATCH
    + """
from datetime import date
from pathlib import Path
WORK = Path({work!r}); AS_OF = date.fromisoformat({as_of!r})
STORE = WORK / "traits-store" / ".personae" / "personae.duckdb"
"""
)

PERSONAE = """
import duckdb, ibis
from personae.config import Config
from personae.store import Store
from personae.store.engine import {engine_class}
from personae.traits import purchase_and_rfm
t0 = time.perf_counter()
store = Store(STORE)
engine = {engine_init}
expr = purchase_and_rfm(engine, Config(), AS_OF)
from ibis.backends.sql.datatypes import DuckDBType
store.con.execute("DROP TABLE IF EXISTS bench_traits_{name}")
cols = ", ".join(f'"{{c}}" {{DuckDBType.to_string(t)}}' for c, t in expr.schema().items())
store.con.execute(f"CREATE TABLE bench_traits_{name} ({{cols}})")  # writes go to declared tables
n = engine.write("bench_traits_{name}", expr, {{}})
seconds = time.perf_counter() - t0
check = store.con.execute("SELECT sum(frequency), round(sum(total_value), 2), sum(r_score), "
                          "sum(f_score), sum(m_score) FROM bench_traits_{name}").fetchall()[0]
out = {{"seconds": seconds, "rows": n, "check": [float(x) for x in check]}}
"""

SQL = """
import duckdb
con = duckdb.connect(str(STORE))
t0 = time.perf_counter()
con.execute(open({sql!r}).read().replace("AS_OF", str(AS_OF)))
seconds = time.perf_counter() - t0
check = con.execute("SELECT sum(frequency), round(sum(total_value), 2), sum(r_score), "
                    "sum(f_score), sum(m_score) FROM bench_traits_sql").fetchall()[0]
rows = con.execute("SELECT count(*) FROM bench_traits_sql").fetchall()[0][0]
out = {{"seconds": seconds, "rows": rows, "check": [float(x) for x in check]}}
"""

PANDAS = """
import numpy as np, pandas as pd
t0 = time.perf_counter()
df = pd.read_parquet(WORK / "orders.parquet", columns=["order_id", "customer_id", "ordered_at",
                     "amount", "discount", "is_return", "is_non_product"])
df = df[df.customer_id.notna() & (df.ordered_at < pd.Timestamp(AS_OF) + pd.Timedelta(days=1))]
df["day"] = df.ordered_at.dt.normalize()
df["is_purchase"] = ~df.is_return.fillna(False) & ~df.is_non_product.fillna(False)
buys = df[df.is_purchase]
days = buys.groupby(["customer_id", "day"]).amount.sum().reset_index()
days = days.sort_values(["customer_id", "day"])
g = days.groupby("customer_id")
days["gap"] = g.day.diff().dt.days
days["rk"] = g.cumcount()
per = days.groupby("customer_id").agg(first_purchase=("day", "min"), last_purchase=("day", "max"),
                                      purchase_days=("day", "size"), day_value=("amount", "sum"),
                                      interval_median=("gap", "median"), gap_sd=("gap", "std"))
per["first_value"] = days[days.rk == 0].set_index("customer_id").amount
tv = buys.groupby("customer_id").amount.sum()
orders = buys.groupby("customer_id").order_id.nunique()
disc = buys.groupby("customer_id").discount.sum()
ret = df[df.is_return.fillna(False)].groupby("customer_id").amount.apply(lambda s: s.abs().sum())
t = per.join([tv.rename("total_value"), orders.rename("orders"), disc.rename("discount"),
              ret.rename("returned")], how="outer")
as_of = pd.Timestamp(AS_OF)
t["frequency"] = t.purchase_days - 1
rec = (t.last_purchase - t.first_purchase).dt.days
t["recency"] = rec
t["T"] = (as_of - t.first_purchase).dt.days
repeats = t.frequency.where(t.frequency > 0)
t["monetary_value"] = np.where(t.frequency > 0, (t.day_value - t.first_value) / repeats, 0.0)
t["avg_order_value"] = t.total_value / t.orders
t["returns_share"] = t.returned.fillna(0) / t.total_value
t["discount_share"] = t.discount / (t.total_value + t.discount.fillna(0))
t["interval_mean"] = rec / t.frequency.where(t.frequency > 0)
t["interval_cv"] = t.gap_sd / t.interval_mean
t["days_since_last"] = (as_of - t.last_purchase).dt.days
b = t[t.purchase_days > 0].copy()
def score(s, ascending=True):
    r = s.rank(method="min", ascending=ascending)
    pr = (r - 1) / (len(s) - 1)
    return np.minimum(5, np.floor(pr * 5) + 1).astype(int)
b["r_score"] = score(b.days_since_last, ascending=False)
b["f_score"] = score(b.purchase_days)
b["m_score"] = score(b.total_value.round(6))
rf = b.r_score.astype(str) + b.f_score.astype(str)
b["rfm_cell"] = rf + b.m_score.astype(str)
b["rfm_score"] = (b.r_score + b.f_score + b.m_score) / 3
seconds = time.perf_counter() - t0
check = [float(b.frequency.sum()), round(float(b.total_value.sum()), 2),
         float(b.r_score.sum()), float(b.f_score.sum()), float(b.m_score.sum())]
out = {"seconds": seconds, "rows": len(t), "check": check}
"""


def run_child(code: str, work: Path) -> dict:
    body = (
        PREAMBLE.format(work=str(work), as_of=AS_OF)
        + textwrap.dedent(code)
        + "out['peak_gib'] = _peak[0] / 1024**3\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    res = subprocess.run([sys.executable, "-c", body], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def prepare(work: Path, customers: int) -> None:
    """The orders of bench_ingest (or a new synth run) ingested into a store of their own,
    and the same orders as Parquet for pandas."""
    store = work / "traits-store"
    if (store / ".personae" / "personae.duckdb").exists():
        return
    data = work / "data"
    if not (data / "orders.csv").exists():
        from personae.synth import generate

        generate(data, customers=customers, seed=1)
    store.mkdir(parents=True, exist_ok=True)
    (store / "personae.toml").write_text(
        f'[sources.orders]\ntable = "orders"\npath = "{data / "orders.csv"}"\n'
    )
    from personae import Project

    project = Project.open(store)
    project.ingest()
    with project.store() as st:
        st.con.execute(f"COPY orders TO '{work / 'orders.parquet'}' (FORMAT parquet)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/personae-bench"))
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    saved = args.work / "traits-results.json"
    if args.render_only:
        results = json.loads(saved.read_text())
    else:
        prepare(args.work, args.customers)
        sql_path = Path(__file__).with_name("traits_hand_written.sql")
        runs = {
            "personae_duckdb": PERSONAE.format(
                engine_class="DuckDBEngine", engine_init="DuckDBEngine(store)", name="duckdb"
            ),
            "hand_sql": SQL.format(sql=str(sql_path)),
            "pandas": PANDAS,
            "personae_spark": PERSONAE.format(
                engine_class="SparkEngine",
                engine_init="SparkEngine(store, 'local[2]')",
                name="spark",
            ),
        }
        results = {}
        for name, code in runs.items():
            print(f"running {name} ...", flush=True)
            results[name] = run_child(code, args.work)
            print(f"  {results[name]}", flush=True)
        saved.write_text(json.dumps(results))
    write_doc(results, args.customers)


def write_doc(results: dict, customers: int) -> None:
    p, sql, pd_, spark = (
        results[k] for k in ("personae_duckdb", "hand_sql", "pandas", "personae_spark")
    )
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    agree = len({tuple(r["check"]) for r in (p, sql, spark)}) == 1
    rows = [
        ("personae, DuckDB (Ibis)", p, "the traits stage's expressions"),
        ("one hand-written DuckDB SQL query", sql, "benchmarks/traits_hand_written.sql"),
        ("pandas", pd_, "read_parquet + groupby, the same definitions"),
        ("personae, Spark local[2]", spark, "same expressions; includes the Parquet hand-over"),
    ]
    lines = [
        f"Machine: {machine}. {p['rows']:,} customers of `personae synth --customers "
        f"{customers:,} --seed 1`; purchase summary (frequency, recency, T, monetary value, "
        "order values, shares, intervals, days since last, tenure) and RFM scores, as of "
        f"{AS_OF}.",
        "",
        "| computed by | time | peak memory | note |",
        "|---|---|---|---|",
        *[
            f"| {label} | {r['seconds']:.1f} s | {r['peak_gib']:.2f} GiB | {note} |"
            for label, r, note in rows
        ],
        "",
        f"personae on DuckDB takes {p['seconds'] / sql['seconds']:.2f}x the time of the "
        f"hand-written query and is {pd_['seconds'] / p['seconds']:.1f}x faster than pandas. "
        f"Checksums (sum of frequency, of total value and of the three scores) "
        f"{'agree across personae DuckDB, the SQL query and Spark' if agree else 'DIFFER'}; "
        f"pandas: {pd_['check']} vs {p['check']}.",
    ]
    section = write_section("traits", "Traits (`benchmarks/bench_traits.py`)", lines)
    print(section)


if __name__ == "__main__":
    main()
