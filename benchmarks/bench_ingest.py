"""Benchmark: `personae synth` at 1 M customers, then the ingest of its ~10 M order lines
from CSV by personae, by pandas (read_csv + DataFrame insert into DuckDB, the usual
hand-written loader) and by DuckDB's bare read_csv into a table (no validation: the floor).

Each load runs in its own process so its peak memory (ru_maxrss) is its own. Results go to
docs/benchmarks.md (the section between the ingest markers is replaced).

    python benchmarks/bench_ingest.py [--customers 1000000] [--work /tmp/personae-bench]
                                      [--reuse-data]

`--reuse-data` keeps the synth data and figures of the last run (results.json) when both are
there, so only the loads run again.
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

from _docs import write_section

ROOT = Path(__file__).resolve().parents[1]

CHILD = {
    "synth": """
from personae.synth import generate
r = generate(WORK / "data", customers=CUSTOMERS, seed=1)
out = {"rows": r.rows["orders"], "customers": r.rows["customers"]}
""",
    "personae": """
from personae import Project
(WORK / "p").mkdir(exist_ok=True)
(WORK / "p" / "personae.toml").write_text(
    f'[sources.orders]\\ntable = "orders"\\npath = "{WORK / "data" / "orders.csv"}"\\n')
project = Project.open(WORK / "p")
s = project.ingest()  # the whole stage run: ledger, transaction, published snapshot
out = {"rows": s.sources[0].rows_loaded, "rejected": s.sources[0].rows_rejected,
       "seconds": time.perf_counter() - t0}
with project.store() as store:  # what publishing alone costs: a copy of the store file
    t1 = time.perf_counter()
    store.publish()
    out["publish_seconds"] = time.perf_counter() - t1
out["store_gb"] = project.store_path.stat().st_size / 1e9
""",
    "pandas": """
import duckdb, pandas as pd
df = pd.read_csv(WORK / "data" / "orders.csv", parse_dates=["ordered_at"],
                 dtype={"order_id": str, "customer_id": str, "product_id": str})
df = df.drop_duplicates()
con = duckdb.connect(str(WORK / "pandas.duckdb"))
con.execute("CREATE TABLE orders AS SELECT * FROM df")
out = {"rows": con.execute("SELECT count(*) FROM orders").fetchall()[0][0]}
""",
    "pandas_to_sql": """
import sqlite3, pandas as pd
df = pd.read_csv(WORK / "data" / "orders.csv", parse_dates=["ordered_at"],
                 dtype={"order_id": str, "customer_id": str, "product_id": str})
df = df.drop_duplicates()
con = sqlite3.connect(WORK / "pandas.sqlite")
df.to_sql("orders", con, index=False, chunksize=100_000)
out = {"rows": con.execute("SELECT count(*) FROM orders").fetchall()[0][0]}
""",
    "duckdb_bare": """
import duckdb
con = duckdb.connect(str(WORK / "bare.duckdb"))
con.execute(f"CREATE TABLE orders AS SELECT * FROM read_csv('{WORK / 'data' / 'orders.csv'}')")
out = {"rows": con.execute("SELECT count(*) FROM orders").fetchall()[0][0]}
""",
}


def run_child(name: str, work: Path, customers: int) -> dict[str, float]:
    code = (
        "import json, resource, time\nfrom pathlib import Path\n"
        f"WORK = Path({str(work)!r}); CUSTOMERS = {customers}\n"
        "t0 = time.perf_counter()\n"
        + textwrap.dedent(CHILD[name])
        + "out.setdefault('seconds', time.perf_counter() - t0)\n"
        "out['peak_gib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2\n"
        "print(json.dumps(out))\n"
    )
    for f in ("p/.personae", "pandas.duckdb", "pandas.sqlite", "bare.duckdb"):
        target = work / f
        if target.is_dir():
            import shutil

            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/personae-bench"))
    ap.add_argument(
        "--reuse-data",
        action="store_true",
        help="keep the data and synth figures of the last run instead of running synth again",
    )
    ap.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite docs/benchmarks.md from the last run's results.json",
    )
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    saved = args.work / "results.json"
    if args.render_only:
        results = json.loads(saved.read_text())
    else:
        results = {}
        if args.reuse_data and saved.exists() and (args.work / "data" / "orders.csv").exists():
            results["synth"] = json.loads(saved.read_text())["synth"]
        for name in ("synth", "personae", "pandas", "pandas_to_sql", "duckdb_bare"):
            if name in results:
                continue
            print(f"running {name} ...", flush=True)
            results[name] = run_child(name, args.work, args.customers)
            print(f"  {results[name]}", flush=True)
        saved.write_text(json.dumps(results))
    rows = results["synth"]["rows"]
    size = (args.work / "data" / "orders.csv").stat().st_size / 1e9
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )

    def line(label: str, key: str, note: str) -> str:
        r = results[key]
        return (
            f"| {label} | {r['seconds']:.1f} s | {rows / r['seconds'] / 1e6:.2f} M rows/s | "
            f"{r['peak_gib']:.2f} GiB | {note} |"
        )

    p, pd_, bare = results["personae"], results["pandas"], results["duckdb_bare"]
    lines = [
        f"Machine: {machine}. Data: `personae synth --customers {args.customers:,} --seed 1`"
        f" wrote {results['synth']['customers']:,} customers and {rows:,} order lines in "
        f"{results['synth']['seconds']:.1f} s (all six tables and the truth files; peak "
        f"{results['synth']['peak_gib']:.2f} GiB). orders.csv is {size:.2f} GB.",
        "",
        "| load of orders.csv | time | throughput | peak memory | what it does |",
        "|---|---|---|---|---|",
        line(
            "personae ingest",
            "personae",
            "sniff, hash, line numbers, parse and validate "
            "every cell, duplicates, key conflicts, flags, rejects",
        ),
        line(
            "pandas read_csv + DuckDB insert",
            "pandas",
            "read_csv with dates, drop_duplicates, "
            "DataFrame into a DuckDB table; no rejects, no line numbers",
        ),
        line(
            "pandas read_csv + to_sql",
            "pandas_to_sql",
            "the same, then DataFrame.to_sql into SQLite (the tutorial route)",
        ),
        line(
            "DuckDB read_csv, bare",
            "duckdb_bare",
            "typed read straight into a table; no validation at all (the floor)",
        ),
        "",
        f"personae is {pd_['seconds'] / p['seconds']:.1f}x faster than pandas with a "
        f"DuckDB insert and {results['pandas_to_sql']['seconds'] / p['seconds']:.1f}x "
        "faster than pandas with to_sql, and takes "
        f"{p['seconds'] / bare['seconds']:.1f}x the time of the bare DuckDB load.",
    ]
    if "publish_seconds" in p:
        lines.append(
            f"personae's time includes publishing the read-only snapshot readers open (a copy "
            f"of the {p['store_gb']:.2f} GB store): {p['publish_seconds']:.1f} s when timed alone."
        )
    section = write_section("ingest", "Ingest and synth", lines)
    print(section)


if __name__ == "__main__":
    main()
