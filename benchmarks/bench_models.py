"""Benchmark: buy-till-you-die fits and scoring, personae against lifetimes 0.11.3 in the same
run. lifetimes needs an old numeric stack, so it runs in its own venv (never a dependency):

    python3 -m venv /tmp/lt-venv && /tmp/lt-venv/bin/pip install numpy==1.26.4 scipy==1.11.4 \\
        pandas==1.5.3 autograd==1.6.2 dill "setuptools<70" lifetimes==0.11.3
    python benchmarks/bench_models.py [--lifetimes-python /tmp/lt-venv/bin/python]

Data, two shapes of the same customers: (frequency, recency, T) in whole days of the buyers of
bench_traits.py's store (run it first; many ties), and in weeks with two decimals from the
order times of the same orders.csv (frequency = repeat orders; few ties); and the CDNOW sample
summary. Results go to docs/benchmarks.md.
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
from personae.models import BGNBD, ParetoNBD, compress
from personae.models import clv_factor
data, cdnow, pareto_n, unit = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
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
year, month = 365.25 / unit, 30.4375 / unit
scores = pa.table({"x": ux, "tx": utx, "T": uT,
                   "e": bg.expected_purchases(year, ux, utx, uT),
                   "a": bg.prob_alive(ux, utx, uT),
                   "f": clv_factor(bg, ux, utx, uT, year, month, 0.10)})
con.register("scores", scores)
# as in the predict stage: every customer's scores by a join on the unique rows
con.execute("CREATE TABLE per_customer AS SELECT * FROM customers JOIN scores "
            "USING (x, tx, T)")
out["score_1m"] = time.perf_counter() - s
out["scored"] = con.execute("SELECT count(*) FROM per_customer").fetchall()[0][0]
if cdnow != "-":
    import csv
    rows = list(csv.DictReader(open(cdnow)))
    cx, ctx, cT = (np.array([float(r[k]) for r in rows]) for k in ("frequency", "recency", "T"))
    s = time.perf_counter(); BGNBD().fit(cx, ctx, cT)
    out["bgnbd_cdnow"] = time.perf_counter() - s
    s = time.perf_counter(); ParetoNBD().fit(cx, ctx, cT)
    out["pnbd_cdnow"] = time.perf_counter() - s
print(json.dumps(out))
"""

LIFETIMES = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
from lifetimes import BetaGeoFitter, ParetoNBDFitter
data, cdnow, pareto_n, unit = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
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
e = bg.conditional_expected_number_of_purchases_up_to_time(
    365.25 / unit, d.frequency, d.recency, d["T"])
a = bg.conditional_probability_alive(d.frequency, d.recency, d["T"])
out["score_1m"] = time.perf_counter() - s
if cdnow != "-":
    c = pd.read_csv(cdnow)
    s = time.perf_counter(); BetaGeoFitter().fit(c.frequency, c.recency, c["T"])
    out["bgnbd_cdnow"] = time.perf_counter() - s
    s = time.perf_counter(); ParetoNBDFitter().fit(c.frequency, c.recency, c["T"])
    out["pnbd_cdnow"] = time.perf_counter() - s
print(json.dumps(out))
"""

# (frequency, recency, T) in weeks with two decimals from the order times of the buyers
# bench_traits.py counts (purchase lines: amount > 0, up to its as-of date 2024-12-31)
WEEKS_SQL = """
COPY (
  WITH o AS (
    SELECT customer_id, ordered_at FROM read_csv('{orders}')
    WHERE amount > 0 AND ordered_at < TIMESTAMP '2025-01-01' GROUP BY ALL
  )
  SELECT count(*) - 1 AS frequency,
         round(epoch(max(ordered_at) - min(ordered_at)) / 604800, 2) AS recency,
         round(epoch(TIMESTAMP '2025-01-01' - min(ordered_at)) / 604800, 2) AS T
  FROM o GROUP BY customer_id ORDER BY customer_id
) TO '{out}' (FORMAT parquet)
"""

# (frequency, recency, T) in whole days as bench_traits.py's purchase summary counts them:
# repeat purchase days, days from the first to the last, days from the first to 2024-12-31
DAYS_SQL = """
COPY (
  WITH o AS (
    SELECT customer_id, ordered_at FROM read_csv('{orders}')
    WHERE amount > 0 AND ordered_at < TIMESTAMP '2025-01-01' GROUP BY ALL
  )
  SELECT count(DISTINCT ordered_at::DATE) - 1 AS frequency,
         date_diff('day', min(ordered_at)::DATE, max(ordered_at)::DATE)::DOUBLE AS recency,
         date_diff('day', min(ordered_at)::DATE, DATE '2024-12-31')::DOUBLE AS T
  FROM o GROUP BY customer_id ORDER BY customer_id
) TO '{out}' (FORMAT parquet)
"""

# the two shapes: name, file, time unit in days, how the doc names them
SHAPES = (
    ("days", "rfm_days.parquet", 1.0, "whole days (many ties)"),
    ("weeks", "rfm_weeks.parquet", 7.0, "weeks with two decimals (few ties)"),
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/personae-bench"))
    ap.add_argument("--lifetimes-python", default="/tmp/lt-venv/bin/python")
    ap.add_argument("--pareto-customers", type=int, default=1_000_000)
    ap.add_argument("--shapes", default="days,weeks", help="days, weeks or both")
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args()
    saved = args.work / "models-results.json"
    if args.render_only:
        results = json.loads(saved.read_text())
    else:
        import duckdb

        results = json.loads(saved.read_text()) if saved.exists() else {}
        for key in ("personae", "lifetimes", "log_likelihoods"):  # the one-shape layout
            results.pop(key, None)
        wanted = args.shapes.split(",")
        for shape, file, unit, _ in SHAPES:
            if shape not in wanted:
                continue
            data = args.work / file
            store = args.work / "traits-store" / ".personae" / "personae.duckdb"
            if not data.exists() and shape == "days" and not store.exists():
                # the same numbers as bench_traits.py's purchase summary, from orders.csv
                orders = args.work / "data" / "orders.csv"
                duckdb.sql(DAYS_SQL.format(orders=orders, out=data))
            elif not data.exists() and shape == "days":
                con = duckdb.connect(
                    str(args.work / "traits-store" / ".personae" / "personae.duckdb"),
                    read_only=True,
                )
                con.execute(
                    f"COPY (SELECT frequency, recency, T FROM bench_traits_duckdb WHERE "
                    f"purchase_days > 0) TO '{data}' (FORMAT parquet)"
                )
            elif not data.exists():
                orders = args.work / "data" / "orders.csv"
                duckdb.sql(WEEKS_SQL.format(orders=orders, out=data))
            csv_copy = data.with_suffix(".csv")
            if not csv_copy.exists():  # lifetimes' venv has no parquet reader
                duckdb.sql(f"COPY (SELECT * FROM '{data}') TO '{csv_copy}' (HEADER)")
            cdnow = str(CDNOW) if shape == "days" else "-"
            for name, python, code in (
                ("personae", sys.executable, PERSONAE),
                ("lifetimes", args.lifetimes_python, LIFETIMES),
            ):
                print(f"running {name} on {shape} ...", flush=True)
                res = subprocess.run(
                    [python, "-c", code, str(data), cdnow, str(args.pareto_customers), str(unit)],
                    capture_output=True,
                    text=True,
                )
                if res.returncode != 0:
                    raise SystemExit(res.stderr[-3000:])
                results[f"{name}_{shape}"] = json.loads(res.stdout.strip().splitlines()[-1])
                print(f"  {results[f'{name}_{shape}']}", flush=True)
            results[f"log_likelihoods_{shape}"] = _log_likelihoods(
                results[f"personae_{shape}"],
                results[f"lifetimes_{shape}"],
                data,
                args.pareto_customers,
            )
            saved.write_text(json.dumps(results))
    write_doc(results, args.pareto_customers)


def _log_likelihoods(
    personae: dict, lifetimes: dict, data: Path, pareto_n: int
) -> dict[str, float]:
    """Both libraries' estimates scored by one log-likelihood, to show which is higher."""
    import numpy as np
    import pyarrow.parquet as pq

    from personae.models import BGNBD, ParetoNBD

    t = pq.read_table(data).to_pydict()
    x, tx, T = (np.asarray(t[k], float) for k in ("frequency", "recency", "T"))
    out = {}
    for model, key, n in ((BGNBD(), "bgnbd", len(x)), (ParetoNBD(), "pnbd", pareto_n)):
        for lib, res in (("personae", personae), ("lifetimes", lifetimes)):
            params = np.array([res[f"{key}_params"][k] for k in model.param_names])
            out[f"{key}_{lib}"] = float(np.sum(model._loglik(params, x[:n], tx[:n], T[:n])))
    return out


def _largest_difference(p: dict, lt: dict, key: str, names: tuple[str, ...]) -> float:
    return max(abs(p[f"{key}_params"][k] / lt[f"{key}_params"][k] - 1) for k in names)


def write_doc(results: dict, pareto_n: int) -> None:
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    shapes = [s for s in SHAPES if f"personae_{s[0]}" in results]
    n = results[f"personae_{shapes[0][0]}"]["scored"]  # the buyers of bench_traits.py
    described = "; ".join(
        f"{label}: {results[f'personae_{shape}']['unique_rows']:,} unique rows"
        for shape, _, _, label in shapes
    )
    lines = [
        f"Machine: {machine}. (frequency, recency, T) of the {n:,} buyers of "
        f"`bench_traits.py` in two shapes, {described}; lifetimes 0.11.3 in its own venv, "
        "the same run.",
        "",
        "| task | personae | lifetimes 0.11.3 | speed-up |",
        "|---|---|---|---|",
    ]
    notes = []
    for shape, _, _, label in shapes:
        p, lt = results[f"personae_{shape}"], results[f"lifetimes_{shape}"]
        ll = results[f"log_likelihoods_{shape}"]
        rows = [
            (f"BG/NBD fit, {label}", "bgnbd_1m"),
            (f"Pareto/NBD fit, {min(pareto_n, n):,} customers, {label}", "pnbd"),
            (f"score (E[purchases 1 year], P(alive), CLV factor), {label}", "score_1m"),
        ]
        if shape == "days":
            rows += [
                ("BG/NBD fit, CDNOW 2,357", "bgnbd_cdnow"),
                ("Pareto/NBD fit, CDNOW 2,357", "pnbd_cdnow"),
            ]
        lines += [
            f"| {what} | {p[k]:.2f} s | {lt[k]:.2f} s | {lt[k] / p[k]:.1f}x |" for what, k in rows
        ]
        rel = _largest_difference(p, lt, "bgnbd", ("r", "alpha", "a", "b"))
        prel = _largest_difference(p, lt, "pnbd", ("r", "alpha", "s", "beta"))
        gap = abs(ll["pnbd_personae"] - ll["pnbd_lifetimes"])
        higher = "higher" if ll["pnbd_personae"] >= ll["pnbd_lifetimes"] else "lower"
        notes.append(
            f"{label.split(' (')[0].capitalize()}: largest relative difference of the fitted "
            f"parameters BG/NBD {rel:.1e}, Pareto/NBD {prel:.1e}; scored by one "
            f"log-likelihood the estimates differ by "
            f"{abs(ll['bgnbd_personae'] - ll['bgnbd_lifetimes']):.1e} (BG/NBD) and {gap:.1e} "
            f"(Pareto/NBD, personae's {higher}) "
            f"out of {abs(ll['pnbd_personae']):,.0f}."
        )
    lines += [
        "",
        *notes,
        "",
        "The Pareto/NBD likelihood is flat along s and beta, so estimates of the same value "
        "differ there by up to ~1e-4. lifetimes' scoring covers expected purchases and P(alive) "
        "only (its CLV needs a spend model and another pass).",
    ]
    section = write_section("models", "Models (`benchmarks/bench_models.py`)", lines)
    print(section)


if __name__ == "__main__":
    main()
