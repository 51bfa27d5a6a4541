"""Benchmark: buy-till-you-die fits and scoring, personae against lifetimes 0.11.3 in the same
run. lifetimes needs an old numeric stack, so it runs in its own venv (never a dependency):

    python3 -m venv /tmp/lt-venv && /tmp/lt-venv/bin/pip install numpy==1.26.4 scipy==1.11.4 \\
        pandas==1.5.3 autograd==1.6.2 dill "setuptools<70" lifetimes==0.11.3
    python benchmarks/bench_models.py [--lifetimes-python /tmp/lt-venv/bin/python]

Data: (frequency, recency, T) in days of the 1,000,000 customers of bench_traits.py's store
(run it first), and the CDNOW sample summary. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _docs import write_section

ROOT = Path(__file__).resolve().parents[1]
CDNOW = ROOT.parent / "shared" / "data" / "cdnow" / "cdnow_customers_summary.csv"

PERSONAE = r"""
import json, sys, time
import numpy as np, pyarrow.parquet as pq
from personae.models import BGNBD, ParetoNBD, GammaGamma, compress
from personae.models import clv_factor
data, cdnow, pareto_n = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = pq.read_table(data).to_pydict()
x, tx, T = (np.asarray(t[k], float) for k in ("frequency", "recency", "T"))
out = {}
s = time.perf_counter(); bg = BGNBD().fit(x, tx, T); out["bgnbd_1m"] = time.perf_counter() - s
out["bgnbd_params"] = bg.params_
s = time.perf_counter(); pn = ParetoNBD().fit(x[:pareto_n], tx[:pareto_n], T[:pareto_n])
out["pnbd"] = time.perf_counter() - s
out["pnbd_params"] = pn.params_
(ux, utx, uT), w = compress(x, tx, T)
out["unique_rows"] = len(ux)
import duckdb, pyarrow as pa
con = duckdb.connect()
con.register("customers", pa.table({"x": x, "tx": tx, "T": T}))
s = time.perf_counter()
(ux, utx, uT), _ = compress(x, tx, T)
scores = pa.table({"x": ux, "tx": utx, "T": uT,
                   "e": bg.expected_purchases(365.25, ux, utx, uT),
                   "a": bg.prob_alive(ux, utx, uT),
                   "f": clv_factor(bg, ux, utx, uT, 365.25, 30.4375, 0.10)})
con.register("scores", scores)
# as in the predict stage: every customer's scores by a join on the unique rows
con.execute("CREATE TABLE per_customer AS SELECT * FROM customers JOIN scores "
            "USING (x, tx, T)")
out["score_1m"] = time.perf_counter() - s
out["scored"] = con.execute("SELECT count(*) FROM per_customer").fetchall()[0][0]
import csv
rows = list(csv.DictReader(open(cdnow)))
cx, ctx, cT = (np.array([float(r[k]) for r in rows]) for k in ("frequency", "recency", "T"))
s = time.perf_counter(); BGNBD().fit(cx, ctx, cT); out["bgnbd_cdnow"] = time.perf_counter() - s
s = time.perf_counter(); ParetoNBD().fit(cx, ctx, cT); out["pnbd_cdnow"] = time.perf_counter() - s
print(json.dumps(out))
"""

LIFETIMES = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
from lifetimes import BetaGeoFitter, ParetoNBDFitter
data, cdnow, pareto_n = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = pd.read_csv(data.replace(".parquet", ".csv"))
out = {}
s = time.perf_counter(); bg = BetaGeoFitter().fit(d.frequency, d.recency, d["T"])
out["bgnbd_1m"] = time.perf_counter() - s
out["bgnbd_params"] = {k: float(v) for k, v in bg.params_.items()}
p = d.iloc[:pareto_n]
s = time.perf_counter(); pn = ParetoNBDFitter().fit(p.frequency, p.recency, p["T"])
out["pnbd"] = time.perf_counter() - s
out["pnbd_params"] = {k: float(v) for k, v in pn.params_.items()}
s = time.perf_counter()
e = bg.conditional_expected_number_of_purchases_up_to_time(365.25, d.frequency, d.recency, d["T"])
a = bg.conditional_probability_alive(d.frequency, d.recency, d["T"])
out["score_1m"] = time.perf_counter() - s
c = pd.read_csv(cdnow)
s = time.perf_counter(); BetaGeoFitter().fit(c.frequency, c.recency, c["T"])
out["bgnbd_cdnow"] = time.perf_counter() - s
s = time.perf_counter(); ParetoNBDFitter().fit(c.frequency, c.recency, c["T"])
out["pnbd_cdnow"] = time.perf_counter() - s
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/personae-bench"))
    ap.add_argument("--lifetimes-python", default="/tmp/lt-venv/bin/python")
    ap.add_argument("--pareto-customers", type=int, default=1_000_000)
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args()
    saved = args.work / "models-results.json"
    data = args.work / "rfm_days.parquet"
    if args.render_only:
        results = json.loads(saved.read_text())
    else:
        if not data.exists():
            import duckdb

            con = duckdb.connect(
                str(args.work / "traits-store" / ".personae" / "personae.duckdb"), read_only=True
            )
            con.execute(
                f"COPY (SELECT frequency, recency, T FROM bench_traits_duckdb WHERE "
                f"purchase_days > 0) TO '{data}' (FORMAT parquet)"
            )
        csv_copy = data.with_suffix(".csv")
        if not csv_copy.exists():  # lifetimes' venv has no parquet reader
            import duckdb

            duckdb.sql(f"COPY (SELECT * FROM '{data}') TO '{csv_copy}' (HEADER)")
        results = {}
        for name, python, code in (
            ("personae", sys.executable, PERSONAE),
            ("lifetimes", args.lifetimes_python, LIFETIMES),
        ):
            print(f"running {name} ...", flush=True)
            res = subprocess.run(
                [python, "-c", code, str(data), str(CDNOW), str(args.pareto_customers)],
                capture_output=True,
                text=True,
            )
            if res.returncode != 0:
                raise SystemExit(res.stderr[-3000:])
            results[name] = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"  {results[name]}", flush=True)
        results["log_likelihoods"] = _log_likelihoods(results, data, args.pareto_customers)
        saved.write_text(json.dumps(results))
    write_doc(results, args.pareto_customers)


def _log_likelihoods(results: dict, data: Path, pareto_n: int) -> dict[str, float]:
    """Both libraries' estimates scored by one log-likelihood, to show which is higher."""
    import numpy as np
    import pyarrow.parquet as pq

    from personae.models import BGNBD, ParetoNBD

    t = pq.read_table(data).to_pydict()
    x, tx, T = (np.asarray(t[k], float) for k in ("frequency", "recency", "T"))
    out = {}
    for model, key, n in ((BGNBD(), "bgnbd", len(x)), (ParetoNBD(), "pnbd", pareto_n)):
        for lib in ("personae", "lifetimes"):
            params = np.array([results[lib][f"{key}_params"][k] for k in model.param_names])
            out[f"{key}_{lib}"] = float(np.sum(model._loglik(params, x[:n], tx[:n], T[:n])))
    return out


def write_doc(results: dict, pareto_n: int) -> None:
    p, lt, ll = results["personae"], results["lifetimes"], results["log_likelihoods"]
    pnbd_gap = abs(ll["pnbd_personae"] - ll["pnbd_lifetimes"]) / abs(ll["pnbd_personae"])
    rel = max(
        abs(p["bgnbd_params"][k] / lt["bgnbd_params"][k2] - 1)
        for k, k2 in (("r", "r"), ("alpha", "alpha"), ("a", "a"), ("b", "b"))
    )
    prel = max(
        abs(p["pnbd_params"][k] / lt["pnbd_params"][k2] - 1)
        for k, k2 in (("r", "r"), ("alpha", "alpha"), ("s", "s"), ("beta", "beta"))
    )
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    n = p["scored"]  # the buyers of bench_traits.py's store
    rows = [
        (f"BG/NBD fit, {n:,} customers", "bgnbd_1m"),
        (f"Pareto/NBD fit, {min(pareto_n, n):,} customers", "pnbd"),
        (f"score {n:,} customers (E[purchases 1 year], P(alive), CLV factor)", "score_1m"),
        ("BG/NBD fit, CDNOW 2,357", "bgnbd_cdnow"),
        ("Pareto/NBD fit, CDNOW 2,357", "pnbd_cdnow"),
    ]
    lines = [
        f"Machine: {machine}. (frequency, recency, T) in days of the {n:,} buyers of "
        f"`bench_traits.py` ({p['unique_rows']:,} unique rows); lifetimes 0.11.3 in its own "
        "venv, the same run.",
        "",
        "| task | personae | lifetimes 0.11.3 | speed-up |",
        "|---|---|---|---|",
        *[f"| {label} | {p[k]:.2f} s | {lt[k]:.2f} s | {lt[k] / p[k]:.1f}x |" for label, k in rows],
        "",
        f"Largest relative difference of the fitted parameters: BG/NBD {rel:.1e}, "
        f"Pareto/NBD {prel:.1e}. Scored by one log-likelihood, the estimates differ by "
        f"{abs(ll['bgnbd_personae'] - ll['bgnbd_lifetimes']):.1e} (BG/NBD) and "
        f"{abs(ll['pnbd_personae'] - ll['pnbd_lifetimes']):.1e} (Pareto/NBD) out of "
        f"{abs(ll['pnbd_personae']):,.0f} (relative {pnbd_gap:.0e}): the Pareto/NBD "
        "likelihood is flat along s and beta, so estimates of the same value differ there by "
        "~1e-4. "
        "lifetimes' scoring covers expected purchases and P(alive) only (its CLV needs a "
        "spend model and another pass).",
    ]
    section = write_section("models", "Models (`benchmarks/bench_models.py`)", lines)
    print(section)


if __name__ == "__main__":
    main()
