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
