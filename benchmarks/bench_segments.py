"""Benchmark: segmentation of 1 M synthetic customers. personae builds every rule-based
ready-made segmentation (memberships and quality, on DuckDB), and the default clustering
(automatic k on a 200,000-customer sample, then every customer assigned in the engine);
beside it, the same clustering done the usual notebook way: pandas and scikit-learn on all
rows. Each runs in its own process (its own peak memory); results go to docs/benchmarks.md.

    python benchmarks/bench_segments.py [--customers 1000000] [--work /tmp/personae-bench]

It reuses the synthetic data of bench_stages.py / bench_ingest.py when present.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
from pathlib import Path

from _docs import PEAK_WATCH, write_section

PREAMBLE = (
    PEAK_WATCH
    + """
import sys
from personae import Project
project = Project.open(sys.argv[1])
"""
)

PERSONAE = """
project.config.segments.ready_made = json.loads(sys.argv[2])
t0 = time.perf_counter()
summary = project.segment()
seconds = time.perf_counter() - t0
with project.store(read_only=True) as store:
    rows = store.con.execute(
        "SELECT count(*) FROM memberships WHERE run_id = ?", [summary.run_id]).fetchall()[0][0]
print(json.dumps({"seconds": seconds, "peak_gib": _peak[0] / 2**30, "run_id": summary.run_id,
                  "segmentations": len(summary.segmentations), "memberships": rows,
                  "k": [r.segments and len(r.segments) for r in summary.segmentations]}))
"""

# The usual way: every customer's traits into pandas, preprocess, k-means for each k with the
# silhouette (on a 10,000-row sample, as a notebook would: on all rows it is quadratic), the
# best k, labels for everyone. The same features and k range personae used.
NOTEBOOK = """
import duckdb, numpy as np, pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.preprocessing import OneHotEncoder, RobustScaler
run_id = sys.argv[2]
t0 = time.perf_counter()
con = duckdb.connect(str(project.store_path), read_only=True)
definition = json.loads(con.execute(
    "SELECT definition FROM segmentations WHERE run_id = ? AND segmentation = 'clusters'",
    [run_id]).fetchall()[0][0])
numeric, categorical = definition["numeric"], definition["categorical"]
traits_run = con.execute("SELECT parents->>'traits' FROM runs WHERE run_id = ?",
                         [run_id]).fetchall()[0][0]
df = con.execute("SELECT * FROM traits WHERE run_id = ?", [traits_run]).df()
x = df[numeric].astype(float)
x = x.fillna(x.median())
skewed = [c for c in numeric if x[c].min() >= 0 and x[c].skew() > 1]
x[skewed] = np.log1p(x[skewed])
parts = [RobustScaler().fit_transform(x)]
if categorical:
    parts.append(OneHotEncoder(max_categories=10).fit_transform(
        df[categorical].fillna("missing").astype(str)).toarray())
X = np.hstack(parts)
best = None
for k in range(2, 9):
    km = KMeans(n_clusters=k, n_init=4, random_state=0).fit(X)
    s = silhouette_score(X, km.labels_, sample_size=10_000, random_state=0)
    if best is None or s > best[0]:
        best = (s, k, km.labels_)
seconds = time.perf_counter() - t0
mine = dict(con.execute(
    "SELECT customer_id, segment FROM memberships WHERE run_id = ? AND segmentation = "
    "'clusters'", [run_id]).fetchall())
ari = adjusted_rand_score([mine[c] for c in df.customer_id], best[2])
print(json.dumps({"seconds": seconds, "peak_gib": _peak[0] / 2**30, "k": best[1],
                  "ari_with_personae": ari}))
"""

RULE_BASED = [
    "age_band",
    "gender",
    "income_band",
    "household",
    "country",
    "region",
    "city",
    "value_tiers",
    "rfm",
    "lifecycle",
    "engagement",
    "discount_sensitivity",
    "occasion_shoppers",
    "device",
    "os",
    "industry",
    "company_size",
    "company_revenue",
    "satisfaction",
]


def child(code: str, project: Path, arg: str) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", PREAMBLE + code, str(project), arg],
        capture_output=True,
        text=True,
    )
    if res.returncode:
        raise SystemExit(res.stderr)
    return json.loads(res.stdout[res.stdout.rindex('{"seconds"') :].strip())  # after DuckDB's bar


def ensure_project(work: Path, customers: int) -> Path:
    """Synthetic data, ingested with traits and predictions (made once, then reused)."""
    data = work / "data"
    if not (data / "orders.csv").exists():
        from personae.synth import generate

        generate(data, customers=customers, seed=1)
    project = work / "segments-store"
    if not (project / ".personae" / "published" / "CURRENT").exists():
        project.mkdir(parents=True, exist_ok=True)
        config = (data / "personae.toml").read_text()
        config = re.sub(r'(?m)^path = "(\w+\.csv)"', lambda m: f'path = "{data}/{m[1]}"', config)
        (project / "personae.toml").write_text(config)
        from personae import Project

        Project.open(project).run(only=["ingest", "traits", "predict"])
    return project


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/personae-bench"))
    args = ap.parse_args()
    project = ensure_project(args.work, args.customers)
    rules = child(PERSONAE, project, json.dumps(RULE_BASED))
    print("rules", rules, flush=True)
    clusters = child(PERSONAE, project, json.dumps(["clusters"]))
    print("clusters", clusters, flush=True)
    notebook = child(NOTEBOOK, project, clusters["run_id"])
    print("notebook", notebook, flush=True)
    machine = f"{platform.processor() or platform.machine()}, {platform.system()}"
    lines = [
        "",
        f"Machine: {machine}, 2 cores. Data: `personae synth --customers {args.customers:,} "
        "--seed 1`, after ingest, traits and predict. Each row is its own process.",
        "",
        "| what | seconds | peak memory | notes |",
        "|---|---|---|---|",
        f"| personae: {rules['segmentations']} rule and field segmentations (DuckDB) | "
        f"{rules['seconds']:.1f} | {rules['peak_gib']:.2f} GiB | {rules['memberships']:,} "
        "memberships written, with sizes, shares, silhouettes, descriptions and overlap |",
        f"| personae: default clustering, automatic k on a 200,000 sample, everyone assigned "
        f"in the engine | {clusters['seconds']:.1f} | {clusters['peak_gib']:.2f} GiB | "
        f"k = {clusters['k'][0]}; with bootstrap stability (5 refits) and description |",
        f"| notebook: pandas + scikit-learn k-means on all rows, k 2..8 by silhouette | "
        f"{notebook['seconds']:.1f} | {notebook['peak_gib']:.2f} GiB | k = {notebook['k']}; "
        f"adjusted Rand index with personae's clusters {notebook['ari_with_personae']:.2f} |",
        "",
        f"Clustering: personae {clusters['seconds']:.1f} s vs the notebook way "
        f"{notebook['seconds']:.1f} s ({notebook['seconds'] / clusters['seconds']:.1f}x).",
        "",
    ]
    print(write_section("segments", "Segments", lines))


if __name__ == "__main__":
    main()
