"""Benchmark: every pipeline stage end to end (`Project.ingest`, `.traits`, `.predict`: the
ledger, the transaction, the published snapshot and all) on the synthetic data of
bench_ingest.py, for this checkout and for a baseline revision of personae in the same run,
so a change that slows a stage shows.

Each stage runs in its own process so its peak memory (ru_maxrss) is its own; the baseline
runs from a git worktree of the revision on the same venv. Results go to docs/benchmarks.md.

    python benchmarks/bench_stages.py [--baseline 8ffdd83] [--customers 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _docs import write_section

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "traits", "predict")

CHILD = """
import json, resource, sys, time
from pathlib import Path
from personae import Project
project = Project.open(Path(sys.argv[1]))
t0 = time.perf_counter()
summary = getattr(project, sys.argv[2])()
out = {"seconds": time.perf_counter() - t0,
       "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}
if sys.argv[2] == "traits":
    out["customers"] = summary.customers
if sys.argv[2] == "predict":
    out["model"] = summary.model
    out["total_clv"] = summary.total_clv
print(json.dumps(out))
"""


def ensure_data(work: Path, customers: int) -> Path:
    data = work / "data"
    if not (data / "orders.csv").exists():
        from personae.synth import generate

        generate(data, customers=customers, seed=1)
    return data


def run_stages(label: str, src: Path, project: Path, data: Path) -> dict[str, dict]:
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    # synth's own personae.toml, its file paths made absolute
    config = (data / "personae.toml").read_text()
    config = re.sub(r'(?m)^path = "(\w+\.csv)"', lambda m: f'path = "{data}/{m[1]}"', config)
    (project / "personae.toml").write_text(config)
    env = {**os.environ, "PYTHONPATH": str(src)}
    results = {}
    for stage in STAGES:
        res = subprocess.run(
            [sys.executable, "-c", CHILD, str(project), stage],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        results[stage] = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"  {label} {stage}: {results[stage]}", flush=True)
    results["store_gb"] = {"seconds": (project / ".personae/personae.duckdb").stat().st_size / 1e9}
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="8ffdd83", help="git revision to compare with")
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/personae-bench"))
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    saved = args.work / "stages.json"
    if args.render_only:
        results = json.loads(saved.read_text())
    else:
        data = ensure_data(args.work, args.customers)
        tree = args.work / "baseline-src"
        if tree.exists():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), args.baseline],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            results = {
                "baseline": run_stages("baseline", tree / "src", args.work / "stages-old", data),
                "current": run_stages("current", ROOT / "src", args.work / "stages-new", data),
            }
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
        results["baseline_rev"] = args.baseline  # type: ignore[assignment]
        saved.write_text(json.dumps(results))
    old, new = results["baseline"], results["current"]
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    lines = [
        f"Machine: {machine}. Data: `personae synth --customers {args.customers:,} --seed 1` "
        "(all six tables); each stage through `Project`, in its own process, "
        f"baseline = personae at `{results['baseline_rev']}`, same run, same venv.",
        "",
        "| stage | baseline | now | now / baseline | peak memory baseline | now |",
        "|---|---|---|---|---|---|",
    ]
    for stage in STAGES:
        a, b = old[stage]["seconds"], new[stage]["seconds"]
        lines.append(
            f"| {stage} | {a:.1f} s | {b:.1f} s | {b / a:.2f} | "
            f"{old[stage]['peak_gib']:.2f} GiB | {new[stage]['peak_gib']:.2f} GiB |"
        )
    lines += [
        "",
        f"Both score {new['traits'].get('customers', 0):,} customers' traits; predict used "
        f"{old['predict'].get('model')} (baseline) and {new['predict'].get('model')} (now). "
        f"The store is {new['store_gb']['seconds']:.2f} GB; 'now' includes publishing a "
        "read-only snapshot of it after every stage command (a file copy).",
    ]
    print(write_section("stages", "Stages end to end against a baseline", lines))


if __name__ == "__main__":
    main()
