"""Benchmark: `personae synth` at several sizes: wall time, CPU time and peak memory.

Synth writes a chunk of customers at a time, so peak memory should stay flat and time grow
linearly with the number of customers. Each size runs in its own process, so its peak memory
(ru_maxrss) is its own; the data is deleted after each size. Results go to docs/benchmarks.md
(the section between the synth markers is replaced).

    python benchmarks/bench_synth.py [--customers 1000000 3000000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _docs import write_section

CHILD = """
import json, resource, sys, time
from pathlib import Path
from personae.synth import generate
out_dir, customers = Path(sys.argv[1]), int(sys.argv[2])
t0 = time.perf_counter()
r = generate(out_dir, customers=customers, seed=1)
wall = time.perf_counter() - t0
use = resource.getrusage(resource.RUSAGE_SELF)
size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
print(json.dumps({"seconds": wall, "cpu_seconds": use.ru_utime + use.ru_stime,
                  "peak_gib": use.ru_maxrss / 1024**2, "rows": r.rows, "gb": size / 1e9}))
"""

# Measured before synth streamed (issue 15, the code of 2026-11-29): every table in memory.
BEFORE = {1_000_000: (27.6, 3.8), 3_000_000: (85.0, 10.7)}


def run(work: Path, customers: int) -> dict[str, float]:
    """Synth `customers` into `work` in a child process; delete the data afterwards."""
    out = work / f"synth-{customers}"
    shutil.rmtree(out, ignore_errors=True)
    try:
        res = subprocess.run(
            [sys.executable, "-c", CHILD, str(out), str(customers)],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, nargs="+", default=[1_000_000, 3_000_000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/personae-bench-synth"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {}
    for n in args.customers:
        print(f"synth {n:,} customers ...", flush=True)
        results[n] = run(args.work, n)
        print(f"  {results[n]}", flush=True)
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    lines = [
        f"Machine: {machine}. `personae synth --seed 1`, CSV, all six tables and the truth.",
        "",
        "| customers | order lines | events | files | time | CPU time | peak memory | before |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, r in results.items():
        before = f"{BEFORE[n][0]} s, {BEFORE[n][1]} GiB" if n in BEFORE else ""
        lines.append(
            f"| {n:,} | {r['rows']['orders']:,} | {r['rows']['events']:,} | {r['gb']:.1f} GB "
            f"| {r['seconds']:.1f} s | {r['cpu_seconds']:.1f} s | {r['peak_gib']:.2f} GiB "
            f"| {before} |"
        )
    print(write_section("synth", "Synth (`benchmarks/bench_synth.py`)", lines))


if __name__ == "__main__":
    main()
