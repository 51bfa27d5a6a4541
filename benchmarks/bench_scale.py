"""Benchmark: `personae run` at growing sizes, with default settings.

For each number of customers: `personae synth --seed 1` (kept between runs in `--work`, so a
second run of the script reuses the data), a new store, then one `personae -v run`: the
command a user runs, in one process, and after it DuckDB's bare typed `read_csv` of the same
files into tables of a new database file (no checks, no line numbers: the floor issue 15's
ingest target is measured against), in its own process. Each stage's wall time runs from
the line its run starts with in the log to the next stage's (the last stage's includes
publishing the store); its peak resident memory is the kernel's high-water mark of the
process (VmHWM), reset as each stage starts (/proc/PID/clear_refs); the whole run's peak is
the largest.
The table goes to docs/benchmarks.md (the section between the scale markers);
growth should be linear in customers.

    python benchmarks/bench_scale.py [--customers 100000 300000 1000000 3000000 10000000]
                                     [--work DIR] [--keep]

Run it on an otherwise idle machine; 10 M customers needs about 35 GB of disk in `--work`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _docs import host_speed, write_section

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


# DuckDB alone, with its own defaults: every source file of the folder's personae.toml read
# into a table of a new database file, written to disk
BARE_READ = """
import sys, tomllib, duckdb
from pathlib import Path
folder, db = Path(sys.argv[1]), sys.argv[2]
sources = tomllib.loads((folder / "personae.toml").read_text())["sources"]
con = duckdb.connect(db)
con.execute("SET enable_progress_bar = false")
for name, src in sources.items():
    con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM read_csv(?)', [str(folder / src["path"])])
con.execute("CHECKPOINT")
"""


def bare_read(folder: Path) -> dict[str, float]:
    """DuckDB's bare read of the folder's source files: seconds and peak memory."""
    db = folder.parent / f"{folder.name}-bare.duckdb"
    db.unlink(missing_ok=True)
    try:
        return timed(
            [sys.executable, "-c", BARE_READ, str(folder), str(db)],
            folder.parent / f"{folder.name}-bare.log",
        )
    finally:
        db.unlink(missing_ok=True)


def run_stages(folder: Path) -> dict[str, dict[str, float]]:
    """One `personae -v run` on a new store: each stage's seconds and peak memory."""
    shutil.rmtree(folder / ".personae", ignore_errors=True)
    log_path = folder.parent / f"{folder.name}-run.log"
    cmd = [*PERSONAE, "-v", "run", "-p", str(folder)]
    results: dict[str, dict[str, float]] = {}
    with log_path.open("w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, text=True)
        watch = HighWater(proc.pid)
        stage, started = None, t0
        assert proc.stderr is not None
        for line in proc.stderr:
            log.write(line)
            found = re.search(r"personae\.pipeline: run (\w+)-", line)
            if found:
                now = time.perf_counter()
                if stage:
                    results[stage] = {"seconds": now - started, "peak_gib": watch.take()}
                    print(f"    {stage}: {results[stage]['seconds']:.1f} s", flush=True)
                stage, started = found.group(1), now
        _, status, _ = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        watch.stop()
    if os.waitstatus_to_exitcode(status) != 0 or stage is None:
        raise SystemExit(f"{' '.join(cmd)} failed; see {log_path}")
    results[stage] = {"seconds": wall - (started - t0), "peak_gib": watch.take()}
    results["run"] = {"seconds": wall}
    store = folder / ".personae" / "personae.duckdb"
    results["store"] = {"gb": store.stat().st_size / 1e9}
    print(f"    {stage}: {results[stage]['seconds']:.1f} s; run {wall:.1f} s", flush=True)
    return results


class HighWater:
    """A process's peak resident memory since the last `take` (VmHWM, reset through
    clear_refs), read every 0.2 s so the value just before the process ends is kept."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()
        self.lock = threading.Lock()  # a poll between a take's read and reset would be lost
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return
        found = re.search(r"VmHWM:\s+(\d+) kB", status)
        if found:
            self.peak = max(self.peak, int(found.group(1)) / 1024**2)

    def _poll(self) -> None:
        while not self.done.wait(0.2):
            with self.lock:
                self._read()

    def take(self) -> float:
        """The peak since the last call (GiB); the next one starts from now."""
        with self.lock:
            self._read()
            with contextlib.suppress(OSError):
                Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            peak, self.peak = self.peak, 0.0
        return peak

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def minutes(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, nargs="+", default=DEFAULT_SIZES)
    ap.add_argument("--work", type=Path, default=Path("/tmp/personae-bench-scale"))
    ap.add_argument("--keep", action="store_true", help="keep each size's data and store")
    args = ap.parse_args()
    results: dict[int, dict[str, Any]] = {}
    speed_before = host_speed(args.work)
    for n in args.customers:
        folder = args.work / f"c{n}"
        print(f"{n:,} customers: synth ...", flush=True)
        rows = synth(folder, n)
        results[n] = {"rows": rows, **run_stages(folder)}
        results[n]["bare"] = bare_read(folder)
        print(f"    DuckDB's bare read: {results[n]['bare']['seconds']:.1f} s", flush=True)
        if not args.keep:
            shutil.rmtree(folder.resolve(), ignore_errors=True)
    speeds = (speed_before, host_speed(args.work))
    (args.work / "results.json").write_text(json.dumps(results, indent=1))

    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024**3:.0f} GiB, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    lines = [
        f"Machine: {machine}. `personae synth --seed 1`, then a new store and one "
        "`personae -v run` with default settings; each stage's wall time and peak resident "
        "memory (segments' includes publishing the store), the whole run's time and peak; "
        "then DuckDB's bare typed `read_csv` of the same files into tables of a new "
        "database file (DuckDB's defaults, no checks) and the ingest's time over it. "
        "The machine's speed varies, so it is measured before and after the runs (compare "
        "runs when these agree): one core hashed SHA-256 at "
        + " and ".join(f"{h['sha256_mb_s']:,.0f}" for h in speeds)
        + " MB/s, DuckDB wrote and grouped 50 M rows in "
        + " and ".join(f"{h['duckdb_s']:.1f}" for h in speeds)
        + " s, and the disk took "
        + " and ".join(f"{h['disk_mb_s']:,.0f}" for h in speeds)
        + " MB/s (written and synced).",
        "",
        "| customers | order lines | events | ingest | traits | predict | segments "
        "| `personae run` | per M customers | peak memory | store | bare read | ingest / bare |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in results.items():
        # resetting VmHWM resets the process's ru_maxrss too: the run's peak is the stages'
        total, peak = r["run"]["seconds"], max(r[s]["peak_gib"] for s in STAGES)
        cells = [f"{r[s]['seconds']:.1f} s, {r[s]['peak_gib']:.1f} GiB" for s in STAGES]
        bare = r["bare"]
        lines.append(
            f"| {n:,} | {r['rows']['orders']:,} | {r['rows']['events']:,} | "
            + " | ".join(cells)
            + f" | {minutes(total)} | {total / (n / 1e6):.0f} s | {peak:.1f} GiB "
            f"| {r['store']['gb']:.1f} GB | {bare['seconds']:.1f} s, {bare['peak_gib']:.1f} GiB "
            f"| {r['ingest']['seconds'] / bare['seconds']:.2f}x |"
        )
    print(write_section("scale", "Scale (`benchmarks/bench_scale.py`)", lines))


if __name__ == "__main__":
    main()
