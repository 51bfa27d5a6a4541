"""What the benchmarks share: writing one benchmark's section of docs/benchmarks.md between
its markers, the peak-memory watcher their child processes start with, and a check of the
machine's speed."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"

# Code a benchmark's child process starts with: `_peak[0]` follows the largest resident
# memory of the process and its children, sampled every 50 ms.
PEAK_WATCH = """
import json, threading, time
import psutil
_peak = [0]
def _watch():
    me = psutil.Process()
    while True:
        try:
            rss = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(True))
        except psutil.Error:
            rss = 0
        _peak[0] = max(_peak[0], rss)
        time.sleep(0.05)
threading.Thread(target=_watch, daemon=True).start()
"""


def write_section(name: str, title: str, lines: list[str]) -> str:
    """Replace the section between `<!-- name:begin -->` and `<!-- name:end -->` (or append
    it under `title`), and return it."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = "\n".join([begin, *lines, end])
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    if begin in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text += f"\n## {title}\n\n{section}\n"
    DOC.write_text(text)
    return section


def core_speed() -> float:
    """MB/s one core hashes with SHA-256 (best of three over 64 MB): this virtual machine's
    speed changes under it (1,046 MB/s at one hour, about 200 the next), so a benchmark
    notes it before and after, and runs are compared only when it agrees."""
    data = os.urandom(64 << 20)
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        hashlib.sha256(data).digest()
        best = max(best, 64 / (time.perf_counter() - started))
    return best


def host_speed(folder: Path) -> dict[str, float]:
    """How fast this machine is right now, three ways, since one alone missed a slowdown
    (2026-12-01: SHA-256 as fast as ever while DuckDB's bare read of the 1 M customers'
    orders took 10.5-11.3 s against 5.96-7.5 s the day before): one core hashing
    (`core_speed`), seconds DuckDB takes on both cores to write and group 50 M rows in a
    file in `folder`, and MB/s written to `folder`'s disk and synced (where DuckDB spills)."""

    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "_host_speed.duckdb"
    started = time.perf_counter()
    with duckdb.connect(str(db)) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(
            "CREATE TABLE t AS SELECT i % 5000000 AS k, hash(i) AS v FROM range(50000000) r(i)"
        )
        con.execute("SELECT count(*) FROM (SELECT k, sum(v) FROM t GROUP BY k)").fetchall()
    grouping = time.perf_counter() - started
    db.unlink()
    block, blocks = os.urandom(8 << 20), 128  # 1 GiB
    path = folder / "_host_speed.bin"
    started = time.perf_counter()
    with path.open("wb") as out:
        for _ in range(blocks):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    disk = len(block) * blocks / 1e6 / (time.perf_counter() - started)
    path.unlink()
    return {"sha256_mb_s": core_speed(), "duckdb_s": grouping, "disk_mb_s": disk}
