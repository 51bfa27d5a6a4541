"""Benchmark: `personae run` at growing sizes, stage by stage, with default settings.

For each number of customers: `personae synth --seed 1` (kept between runs in `--work`, so a
second run of the script reuses the data), a new store, then each stage of `personae run` in
its own process (`personae run --only STAGE`, the same code `personae run` runs in one), so
each stage's wall time and peak resident memory (the process's own, from `wait4`) are its
own. The table goes to docs/benchmarks.md (the section between the scale markers); growth
should be linear in customers.

    python benchmarks/bench_scale.py [--customers 100000 300000 1000000 3000000 10000000]
                                     [--work DIR] [--keep]

Run it on an otherwise idle machine; 10 M customers needs about 35 GB of disk in `--work`.
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

STAGES = ("ingest", "traits", "predict", "segments")
DEFAULT_SIZES = [100_000, 300_000, 1_000_000, 3_000_000, 10_000_000]
PERSONAE = [sys.executable, "-m", "personae.cli"]


def timed(cmd: list[str], log: Path) -> dict[str, float]:
    """Run `cmd`, its output to `log`; wall seconds and the child's own peak memory."""
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    return {"seconds": wall, "peak_gib": usage.ru_maxrss / 1024**2}


def synth(folder: Path, customers: int) -> dict[str, int]:
    """Write the data once; a folder with a finished stamp is reused."""
    stamp = folder / "bench-synth.json"
    if stamp.exists():
        return json.loads(stamp.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = folder.parent / f"synth-{customers}.json"
    cmd = [*PERSONAE, "synth", str(folder), "--customers", str(customers), "--seed", "1"]
    timed([*cmd, "--json"], log)
    rows: dict[str, int] = json.loads(log.read_text())["rows"]
    stamp.write_text(json.dumps(rows))
    return rows


def run_stages(folder: Path) -> dict[str, dict[str, float]]:
    """Each stage of `personae run` in its own process on a new store."""
    shutil.rmtree(folder / ".personae", ignore_errors=True)
    results = {}
    for stage in STAGES:
        print(f"  {stage} ...", flush=True)
        log = folder.parent / f"{folder.name}-{stage}.log"
        results[stage] = timed([*PERSONAE, "run", "-p", str(folder), "--only", stage], log)
        print(f"    {results[stage]['seconds']:.1f} s, {results[stage]['peak_gib']:.2f} GiB")
    store = folder / ".personae" / "personae.duckdb"
    results["store"] = {"gb": store.stat().st_size / 1e9}
    return results


def minutes(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, nargs="+", default=DEFAULT_SIZES)
    ap.add_argument("--work", type=Path, default=Path("/tmp/personae-bench-scale"))
    ap.add_argument("--keep", action="store_true", help="keep each size's data and store")
    args = ap.parse_args()
    results = {}
    for n in args.customers:
        folder = args.work / f"c{n}"
        print(f"{n:,} customers: synth ...", flush=True)
        rows = synth(folder, n)
        results[n] = {"rows": rows, **run_stages(folder)}
        if not args.keep:
            shutil.rmtree(folder.resolve(), ignore_errors=True)
    (args.work / "results.json").write_text(json.dumps(results, indent=1))

    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024**3:.0f} GiB, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    lines = [
        f"Machine: {machine}. `personae synth --seed 1`, then a new store and each stage of "
        "`personae run` in its own process with default settings (`personae run --only STAGE`); "
        "time is wall time, memory the process's peak resident set.",
        "",
        "| customers | order lines | events | ingest | traits | predict | segments "
        "| `personae run` | per M customers | peak memory | store |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in results.items():
        total = sum(r[s]["seconds"] for s in STAGES)
        peak = max(r[s]["peak_gib"] for s in STAGES)
        cells = [f"{r[s]['seconds']:.1f} s, {r[s]['peak_gib']:.1f} GiB" for s in STAGES]
        lines.append(
            f"| {n:,} | {r['rows']['orders']:,} | {r['rows']['events']:,} | "
            + " | ".join(cells)
            + f" | {minutes(total)} | {total / (n / 1e6):.0f} s | {peak:.1f} GiB "
            f"| {r['store']['gb']:.1f} GB |"
        )
    print(write_section("scale", "Scale (`benchmarks/bench_scale.py`)", lines))


if __name__ == "__main__":
    main()
