"""The predict stage: who is still a customer, how much will they buy, what are they worth.

Fits a buy-till-you-die model and the Gamma-Gamma spend model on the latest traits and
stores per customer the expected purchases over a horizon, P(alive), a churn-risk band, the
expected spend and the discounted CLV. Models are chosen on a calibration/holdout split by
date unless the config fixes one; the comparison is kept in `model_evaluations`.

Only small tables cross into Python: the unique (frequency, recency, T) rows with their counts
for the fits and scores, and aggregates for the evaluation. Scores go back to the store as
small tables joined on those keys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from itertools import pairwise
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from personae.config import Config, PredictConfig
from personae.errors import PersonaeError
from personae.models import (
    PURCHASE_MODELS,
    GammaGamma,
    MeanSpend,
    ModelError,
    PurchaseModel,
    clv_factor,
    clv_factor_interval,
)
from personae.purchases import DAYS_PER, buyer_summary, calibration_end, holdout_purchases
from personae.stage import RunContext, Stage
from personae.store import Store
from personae.store.engine import Engine

__all__ = ["predict", "PredictSummary", "STAGE"]
log = logging.getLogger(__name__)
BUCKETS = ("0", "1", "2", "3", "4", "5", "6", "7+")
KEYS = ["frequency", "recency", "T"]  # what the purchase models see of a customer


@dataclass
class PredictSummary:
    run_id: str
    as_of: str
    model: str
    customers: int
    horizon: str
    time_unit: str
    params: dict[str, float] = field(default_factory=dict)
    spend_params: dict[str, float] = field(default_factory=dict)
    holdout: dict[str, dict[str, float]] = field(default_factory=dict)
    # the naive baseline on the same holdout: each customer's past rate extrapolated
    baseline: dict[str, float] = field(default_factory=dict)
    holdout_verdict: str | None = None  # how the chosen model did against actual and baseline
    holdout_warning: str | None = None  # the chosen model missed the holdout badly
    # churn-risk bands of the chosen model's calibration fit against the holdout purchases
    churn_check: list[dict[str, Any]] = field(default_factory=list)
    churn_check_note: str | None = None
    model_notes: dict[str, str] = field(default_factory=dict)  # model -> what went wrong
    fallback_reason: str | None = None
    holdout_note: str | None = None  # why models were not compared on a holdout
    spend_fallback_reason: str | None = None
    churn_bands: dict[str, int] = field(default_factory=dict)
    total_clv: float | None = 0.0  # None when spend is unknown (no amounts)
    seconds: float = 0.0


def _columns(engine: Engine, expr: ir.Table) -> dict[str, np.ndarray]:
    """A small result (unique rows, aggregates) as float arrays by column name."""
    table = engine.backend.to_pyarrow(expr)
    return {
        name: table.column(name).to_numpy(zero_copy_only=False).astype(float)
        for name in table.column_names
    }


def _counted(table: ir.Table, keys: list[str]) -> ir.Table:
    """The distinct values of `keys` with how many customers share each (column n)."""
    return table.group_by(keys).aggregate(n=table.count())


def _bucket(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 7, "7+", x.astype(int).astype(str))


@dataclass
class Holdout:
    """The calibration/holdout comparison: per model its figures, the baseline's, the rows
    for `model_evaluations`, the calibration-period fits, and why a model was not compared
    (or why nothing was)."""

    results: dict[str, dict[str, float]] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    evaluation: list[tuple[Any, ...]] = field(default_factory=list)
    fits: dict[str, PurchaseModel] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    note: str | None = None
    # the unique calibration rows (frequency, recency, T) with customers n and holdout
    # purchases `actual`, and the holdout length in the time unit
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    horizon_t: float = 0.0


def evaluate(
    engine: Engine,
    config: Config,
    as_of: date,
    models: list[str],
    order_range: tuple[date | None, date | None],
) -> Holdout:
    """Fit each model on the calibration period and compare it, and the naive baseline (each
    customer's past rate extrapolated), with the holdout; also says why a model could not be
    fitted there, or why there is no holdout to compare on."""
    unit = DAYS_PER[config.traits.time_unit]
    cfg = config.predict
    first, last = order_range  # of the orders the run reads (`_order_range`)
    cal_end = calibration_end(as_of, first or as_of, cfg.calibration_end)
    if last is None or last <= cal_end:
        return Holdout(
            note=f"no holdout comparison: there are no orders between the calibration end "
            f"{cal_end} and the as-of date {as_of} (the last order is on {last}; the as-of "
            "date is after the data, or [predict] calibration_end is after the last order). "
            f"Models were tried in the order {', '.join(models)}; give an as-of date within "
            "the data, or an earlier calibration_end, to compare them."
        )
    horizon_t = (as_of - cal_end).days / unit
    cal = engine.temp(buyer_summary(engine, cal_end, config.traits.time_unit), "_calibration")
    hold_days = holdout_purchases(engine.table("orders"), cal_end, as_of)
    actual = hold_days.group_by("customer_id").aggregate(actual=hold_days.count())
    joined = cal.left_join(actual, "customer_id")
    grouped = joined.group_by(KEYS).aggregate(
        n=joined.count(),
        actual=joined.actual.fill_null(0).sum(),
    )
    g = _columns(engine, grouped)
    p = _columns(engine, _counted(joined.mutate(a=joined.actual.fill_null(0)), [*KEYS, "a"]))
    weeks = hold_days.mutate(week=(hold_days.day.delta(ibis.date(cal_end), unit="day") - 1) // 7)
    weekly = (
        weeks.filter(weeks.customer_id.isin(cal.customer_id))
        .group_by("week")
        .aggregate(n=weeks.customer_id.count())
    )
    week_rows = engine.backend.to_pyarrow(weekly.order_by("week")).to_pylist()
    out = Holdout(rows=g, horizon_t=horizon_t)
    n_total = g["n"].sum()
    buckets = _bucket(g["frequency"])
    total_act = float(np.sum(g["actual"]))

    def compare(name: str, pred_g: np.ndarray, pred_p: np.ndarray) -> dict[str, float]:
        """The figures and evaluation rows of one model's (or the baseline's) forecast."""
        mae = float(np.sum(p["n"] * np.abs(pred_p - p["a"])) / n_total)
        total_pred = float(np.sum(g["n"] * pred_g))
        out.evaluation.append((name, "holdout_total", "all", total_pred, total_act, None))
        out.evaluation.append((name, "mae", "all", mae, None, None))
        for b in BUCKETS:
            sel = buckets == b
            if sel.any():
                n_b = g["n"][sel].sum()
                out.evaluation.append(
                    (
                        name,
                        "mean_by_frequency",
                        b,
                        float(np.sum(g["n"][sel] * pred_g[sel]) / n_b),
                        float(g["actual"][sel].sum() / n_b),
                        int(n_b),
                    )
                )
        return {"mae": mae, "predicted_total": total_pred, "actual_total": total_act}

    out.baseline = compare(BASELINE, _past_rate(g, horizon_t), _past_rate(p, horizon_t))
    for name in models:
        try:
            model = PURCHASE_MODELS[name](penalizer=cfg.penalizer).fit(
                g["frequency"], g["recency"], g["T"], weights=g["n"]
            )
        except ModelError as err:
            log.info("model %s failed on the calibration period: %s", name, err)
            out.failures[name] = (
                f"not compared on the holdout (no fit on the calibration period): {err}"
            )
            continue
        out.fits[name] = model
        # one pass for the holdout horizon and the end of every holdout week
        ends = [min((w["week"] + 1) * 7 / unit, horizon_t) for w in week_rows]
        curve = model.expected_purchases_over(
            [*ends, horizon_t], g["frequency"], g["recency"], g["T"]
        )
        pred_p = model.expected_purchases(horizon_t, p["frequency"], p["recency"], p["T"])
        out.results[name] = {
            **compare(name, curve[-1], pred_p),
            "log_likelihood": model.log_likelihood_,
        }
        cum_actual = 0.0
        for w, cum_pred in zip(week_rows, curve[:-1] @ g["n"], strict=True):
            cum_actual += w["n"]
            out.evaluation.append(
                (
                    name,
                    "cumulative_by_week",
                    str(int(w["week"]) + 1),
                    float(cum_pred),
                    cum_actual,
                    None,
                )
            )
    return out


BASELINE = "baseline"  # the naive forecast's name in model_evaluations
MISS_WARNING = 0.2  # a chosen model whose holdout total is off by more than this is flagged


def _past_rate(rows: dict[str, np.ndarray], horizon_t: float) -> np.ndarray:
    """The naive forecast (the RFM fallback's): repeat purchases per unit of time since the
    first purchase, extrapolated over the horizon; 0 for a customer first seen today."""
    T = rows["T"]
    return np.where(T > 0, rows["frequency"] / np.where(T > 0, T, 1.0), 0.0) * horizon_t


def predict(ctx: RunContext) -> PredictSummary:
    """Fit, choose, score and store the predicted traits of every buyer of the traits run
    this run reads (`ctx.parents["traits"]`), on the orders that run read."""
    started = time.perf_counter()
    store, config = ctx.store, ctx.config
    traits_run = ctx.parent("traits")
    as_of = ctx.as_of = ctx.parent_as_of("traits")
    cfg = config.predict
    unit_name = config.traits.time_unit
    unit = DAYS_PER[unit_name]
    horizon_t = cfg.horizon * DAYS_PER[cfg.horizon_unit] / unit
    run_id = ctx.run_id
    engine = ctx.engine()
    traits = engine.table("traits")
    buyers = traits.filter(
        (traits.run_id == traits_run)
        & (traits.purchase_days > 0)
        & (traits.history_source == "orders")
    )
    fit = _columns(engine, _counted(buyers, KEYS))
    if not fit["n"].size:
        raise PersonaeError(
            _no_transactions(engine, traits.filter(traits.run_id == traits_run), as_of)
        )
    repeaters = float(np.sum(fit["n"][fit["frequency"] > 0]))
    summary = PredictSummary(
        run_id,
        str(as_of),
        "",
        int(fit["n"].sum()),
        f"{cfg.horizon:g} {cfg.horizon_unit}",
        unit_name,
    )
    order_range = _order_range(engine)
    first = order_range[0]
    history = (as_of - first).days if first else 0
    if repeaters < cfg.min_repeat_buyers:
        summary.fallback_reason = (
            f"only {int(repeaters)} repeat buyers (min_repeat_buyers = "
            f"{cfg.min_repeat_buyers}): predictions fall back to RFM-based scores"
        )
    elif history < cfg.min_history_days:
        summary.fallback_reason = (
            f"only {history} days of history (min_history_days = {cfg.min_history_days}): "
            "predictions fall back to RFM-based scores"
        )
    chosen, model = "", None
    if not summary.fallback_reason:
        ctx.progress("comparing models on a holdout", 0, 3)
        chosen, model = _choose_and_fit(engine, config, as_of, order_range, fit, ctx, summary)
    valued = _columns(engine, buyers.aggregate(n=buyers.total_value.count()))["n"][0]
    if not valued:
        summary.spend_fallback_reason = (
            "spend is unknown: no purchase line has an amount (item-only baskets), so "
            "expected spend and CLV are NULL; expected purchases and P(alive) are given"
        )
    if model is None:
        log.warning(summary.fallback_reason)
        _fallback(engine, config, buyers, run_id, horizon_t)
        summary.model = "rfm_fallback"
    else:
        gg = _fit_spend(engine, buyers, cfg.penalizer, summary) if valued else None
        ctx.progress("scoring every customer", 2, 3)
        _score(engine, config, buyers, run_id, model, gg, fit, horizon_t, DAYS_PER["months"] / unit)
        summary.model = chosen
        summary.params = model.params_
        summary.spend_params = gg.params_ if gg is not None else {}
    bands = store.con.execute(
        "SELECT churn_risk, count(*) FROM predictions WHERE run_id = ? GROUP BY 1", [run_id]
    ).fetchall()
    rank = {band: i for i, band in enumerate(BANDS)}  # riskiest first, as the holdout check
    bands.sort(key=lambda b: (rank.get(b[0], len(BANDS)), str(b[0])))
    summary.churn_bands = {str(k): int(v) for k, v in bands}
    total = store.con.execute(
        "SELECT sum(clv) FROM predictions WHERE run_id = ?", [run_id]
    ).fetchall()[0][0]
    summary.total_clv = float(total or 0.0) if valued else None
    summary.seconds = round(time.perf_counter() - started, 2)
    ctx.details.update(model=summary.model, params=summary.params)
    return summary


def _no_transactions(engine: Engine, traits: ir.Table, as_of: date) -> str:
    """Why there is nobody to score: predict needs order lines with customers and dates."""
    first, _ = _order_range(engine)
    if first is not None and first > as_of:
        return (
            f"predict has nobody to score: the traits run is as of {as_of}, before the first "
            f"order ({first}), so no customer had bought yet. Run traits with an as-of date "
            f"on or after {first} (`personae run --from traits --as-of DATE`)."
        )
    counts = engine.backend.to_pyarrow(
        traits.aggregate(
            n=traits.count(),
            summary=traits.count(where=traits.history_source == "summary"),
        )
    ).to_pylist()[0]
    summarised = (
        f" {counts['summary']:,} have purchase traits from customer-level summaries, which "
        "say how much but not when, and the purchase models need each purchase's date."
        if counts["summary"]
        else ""
    )
    return (
        f"predict needs transactions: none of the {counts['n']:,} customers of the traits "
        f"run has a purchase in the orders.{summarised} Add an orders source (one row per "
        "order line with a customer and a date) to personae.toml, then run `personae ingest`, "
        "`personae traits` and `personae predict`; the traits of a customer-level table are "
        "in `traits` without predictions."
    )


def _order_range(engine: Engine) -> tuple[date | None, date | None]:
    """The first and last order dates of the orders this run reads."""
    orders = engine.table("orders")
    row = engine.backend.to_pyarrow(
        orders.aggregate(first=orders.ordered_at.min(), last=orders.ordered_at.max())
    ).to_pylist()[0]
    first, last = (row[k].date() if row[k] is not None else None for k in ("first", "last"))
    return first, last


def _choose_and_fit(
    engine: Engine,
    config: Config,
    as_of: date,
    order_range: tuple[date | None, date | None],
    fit: dict[str, np.ndarray],
    ctx: RunContext,
    summary: PredictSummary,
) -> tuple[str, PurchaseModel | None]:
    """Compare the candidate models on the holdout and fit the best on all buyers; when that
    refit fails, the best keeps its calibration-period fit (it is what won on the holdout).
    When no model could be compared, the first candidate that fits all buyers. Notes in `summary`
    why the others were not compared or not used, how the chosen one did against the
    baseline, and how its churn-risk bands did on the holdout."""
    cfg = config.predict
    candidates: list[str] = list(PURCHASE_MODELS) if cfg.model == "auto" else [cfg.model]
    holdout = evaluate(engine, config, as_of, candidates, order_range)
    summary.model_notes, summary.holdout_note = holdout.failures, holdout.note
    if summary.holdout_note:
        log.info(summary.holdout_note)
    summary.holdout, summary.baseline = holdout.results, holdout.baseline
    for name, cal_fit in holdout.fits.items():
        if cal_fit.limit_ is not None:
            summary.model_notes[name] = f"on the calibration period: {_limit_note(cal_fit)}"
    ranked = sorted(holdout.results, key=lambda m: holdout.results[m]["mae"])
    failures: dict[str, str] = {}
    if ranked:
        chosen = ranked[0]
        _, model, failures = _fit_first([chosen], cfg.penalizer, fit, ctx.progress)
        if model is None:
            model = holdout.fits[chosen]
            summary.model_notes[chosen] = (
                f"its fit on all buyers failed ({failures.pop(chosen)}); the scores use its "
                "calibration-period fit, the one that won on the holdout"
            )
    else:  # nothing compared: the first candidate that fits all buyers
        chosen, model, failures = _fit_first(candidates, cfg.penalizer, fit, ctx.progress)
    for k, v in failures.items():
        summary.model_notes[k] = f"not used (no fit on all buyers): {v}"
    if model is None:
        summary.fallback_reason = (
            "no purchase model could be fitted on all buyers "
            f"({'; '.join(f'{k}: {v}' for k, v in failures.items())}): predictions "
            "fall back to RFM-based scores"
        )
        _write_evaluation(ctx, holdout.evaluation)
        return "", None
    if model.limit_ is not None:
        note = summary.model_notes.get(chosen)
        used = f"used as {_limit_note(model)}"
        summary.model_notes[chosen] = f"{note}; {used}" if note else used
    if chosen in holdout.results:
        _judge(chosen, holdout, summary)
        _check_churn_bands(chosen, holdout, cfg, summary)
    _write_evaluation(ctx, holdout.evaluation)
    return chosen, model


def _limit_note(model: PurchaseModel) -> str:
    """What a model fitted as its no-dropout limit means."""
    p = model.params_
    return (
        f"the NBD limit (r {p['r']:.4g}, alpha {p['alpha']:.4g}): the data show no dropout "
        "(the likelihood is highest as the dropout probability goes to 0), so P(alive) is 1"
    )


def _judge(name: str, holdout: Holdout, summary: PredictSummary) -> None:
    """The chosen model against the actual holdout and the naive baseline."""
    r, base = holdout.results[name], holdout.baseline
    pred, act = r["predicted_total"], r["actual_total"]
    off = (pred - act) / act if act else 0.0
    versus = (
        f"{name} predicted {pred:,.1f} holdout purchases against {act:,.0f} actual "
        f"({off:+.0%}); mean absolute error per customer {r['mae']:.4f}, against "
        f"{base['mae']:.4f} for the naive baseline (each customer's past rate extrapolated: "
        f"{base['predicted_total']:,.1f} predicted)"
    )
    if r["mae"] < base["mae"]:
        summary.holdout_verdict = f"{versus}: better than the baseline."
    else:
        summary.holdout_verdict = (
            f"{versus}: NOT better than the baseline, so the model's forecasts are not shown "
            "to beat the past purchase rate (the RFM fallback's)."
        )
    if act and abs(off) > MISS_WARNING:
        summary.holdout_warning = (
            f"the chosen model {name} missed the holdout by {off:+.0%} ({pred:,.1f} predicted, "
            f"{act:,.0f} actual; the baseline predicted {base['predicted_total']:,.1f}): "
            "treat its expected purchases and CLV with care. A holdout unlike the calibration "
            "period (a season, a promotion, growth) or too short a calibration period are "
            "the usual causes; [predict] calibration_end moves the split."
        )


BANDS = ("high", "medium", "low")


def _check_churn_bands(
    name: str, holdout: Holdout, cfg: PredictConfig, summary: PredictSummary
) -> None:
    """Churn-risk bands of the chosen model's calibration-period fit against what the
    customers bought in the holdout: per band, customers, mean expected and mean actual
    holdout purchases (stored as metric churn_band in model_evaluations)."""
    g, model = holdout.rows, holdout.fits[name]
    p_alive = model.prob_alive(g["frequency"], g["recency"], g["T"])
    expected = model.expected_purchases(holdout.horizon_t, g["frequency"], g["recency"], g["T"])
    band = np.where(
        p_alive < cfg.churn_high_below,
        "high",
        np.where(p_alive < cfg.churn_medium_below, "medium", "low"),
    )
    rows: list[dict[str, Any]] = []
    for b in BANDS:
        sel = band == b
        n = float(g["n"][sel].sum())
        if n:
            row = {
                "band": b,
                "customers": int(n),
                "mean_expected": float(g["n"][sel] @ expected[sel] / n),
                "mean_actual": float(g["actual"][sel].sum() / n),
            }
            rows.append(row)
            holdout.evaluation.append(
                (name, "churn_band", b, row["mean_expected"], row["mean_actual"], int(n))
            )
    summary.churn_check = rows
    if len(rows) == 1:
        summary.churn_check_note = (
            f"the churn-risk bands do not separate anyone: on the calibration period every "
            f"buyer is {rows[0]['band']} risk (P(alive) from {p_alive.min():.3f} to "
            f"{p_alive.max():.3f}; bands at {cfg.churn_high_below:g} and "
            f"{cfg.churn_medium_below:g}), so churn_risk says nothing about these customers."
        )
    elif rows:
        summary.churn_check_note = _band_order_note(rows)


def _band_order_note(rows: list[dict[str, Any]]) -> str:
    """Whether each band, riskiest first, bought less in the holdout than the next safer
    one: the check the churn-risk bands must pass to mean anything."""
    bought = ", ".join(f"{r['band']} risk {r['mean_actual']:.2f}" for r in rows)
    unordered = [(a, b) for a, b in pairwise(rows) if a["mean_actual"] >= b["mean_actual"]]
    if not unordered:
        return (
            "the bands separate as they should: each bought less in the holdout, on average, "
            f"than the next safer band ({bought})."
        )
    a, b = unordered[0]
    partly = rows[0]["mean_actual"] < rows[-1]["mean_actual"]
    how = "separate only in part" if partly else "do NOT separate as they should"
    return (
        f"the bands {how}: customers called {a['band']} risk "
        f"bought {a['mean_actual']:.2f} on average in the holdout, as much as or more than "
        f"those called {b['band']} risk ({b['mean_actual']:.2f}); all bands: {bought}."
    )


def _fit_spend(
    engine: Engine, buyers: ir.Table, penalizer: float, summary: PredictSummary
) -> GammaGamma | MeanSpend:
    """Gamma-Gamma on the repeat buyers with a positive mean spend, or its limit."""
    repeat = buyers.filter((buyers.frequency > 0) & (buyers.monetary_value > 0))
    spend = _columns(engine, _counted(repeat, ["frequency", "monetary_value"]))
    try:
        return GammaGamma(penalizer=penalizer).fit(
            spend["frequency"], spend["monetary_value"], weights=spend["n"]
        )
    except ModelError as err:
        mean = MeanSpend(spend["frequency"], spend["monetary_value"], spend["n"])
        summary.spend_fallback_reason = (
            f"{err} Expected spend is the mean repeat transaction value of all "
            f"customers ({mean.mean:.2f}), the limit Gamma-Gamma tends to here."
        )
        log.warning(summary.spend_fallback_reason)
        return mean


def _fit_first(
    names: list[str],
    penalizer: float,
    fit: dict[str, np.ndarray],
    step: Callable[[str, int, int], None],
) -> tuple[str, PurchaseModel | None, dict[str, str]]:
    """The first of the named models that fits every buyer, and why the others did not."""
    failures = {}
    for name in names:
        step(f"fitting {name}", 1, 3)
        try:
            model = PURCHASE_MODELS[name](penalizer=penalizer).fit(
                fit["frequency"], fit["recency"], fit["T"], weights=fit["n"]
            )
        except ModelError as err:
            log.info("model %s failed on all buyers: %s", name, err)
            failures[name] = str(err)
            continue
        return name, model, failures
    return "", None, failures


def _score(
    engine: Engine,
    config: Config,
    buyers: ir.Table,
    run_id: str,
    model: PurchaseModel,
    gg: GammaGamma | MeanSpend | None,
    fit: dict[str, np.ndarray],
    horizon_t: float,
    month_t: float,
) -> None:
    """Score the unique (frequency, recency, T) rows and spend rows in numpy, then join the
    scores to every buyer in the engine."""
    cfg = config.predict
    x, tx, T = fit["frequency"], fit["recency"], fit["T"]
    purchase = engine.upload(
        "_purchase_scores",
        pa.table(
            {
                "frequency": x,
                "recency": tx,
                "T": T,
                "expected_purchases": model.expected_purchases(horizon_t, x, tx, T),
                "p_alive": model.prob_alive(x, tx, T),
                "clv_factor": clv_factor(model, x, tx, T, horizon_t, month_t, cfg.discount_rate),
                **{  # NaN (intervals off) is stored as NULL
                    k: pa.array(v, from_pandas=True)
                    for k, v in clv_factor_interval(
                        model,
                        x,
                        tx,
                        T,
                        horizon_t,
                        month_t,
                        cfg.discount_rate,
                        cfg.clv_interval_draws,
                    ).items()
                },
            }
        ),
    )
    # One join at a time, each of the buyers (a table of their own, so the engine knows how
    # many they are) with one table of scores whose keys are unique. Joined in one query,
    # DuckDB may pair the two score tables on frequency alone (an equality it derives; seen
    # in EXPLAIN at 1 M customers, where it filled 26 GB of spill), and at 10 M customers
    # the predictions write, still in its hash join, was stopped after 10 minutes.
    base = engine.temp(
        buyers.select("customer_id", *KEYS, "as_of", m=buyers.monetary_value.fill_null(0.0)),
        "_predict_buyers",
    )
    if gg is not None:
        spend = _columns(engine, base.select("frequency", "m").distinct())
        spend_scores = engine.upload(
            "_spend_scores",
            pa.table(
                {
                    "frequency": spend["frequency"],
                    "m": spend["m"],
                    "expected_spend": gg.expected_spend(spend["frequency"], spend["m"]),
                }
            ),
        )
        base = engine.temp(base.join(spend_scores, ["frequency", "m"]), "_predict_spend")
    joined = base.join(purchase, KEYS)
    # spend unknown (no amounts): NULL
    expected_spend = joined.expected_spend if gg is not None else ibis.null("float64")
    p_alive = joined.p_alive
    churn = ibis.cases(
        (p_alive < cfg.churn_high_below, "high"),
        (p_alive < cfg.churn_medium_below, "medium"),
        else_="low",
    )
    _write_predictions(
        engine,
        config,
        joined,
        run_id,
        type(model).__name__,
        expected_purchases=joined.expected_purchases,
        p_alive=p_alive,
        churn_risk=churn,
        expected_spend=expected_spend,
        clv=joined.clv_factor * expected_spend,
        clv_low=joined.factor_low * expected_spend,
        clv_high=joined.factor_high * expected_spend,
    )


def _write_predictions(
    engine: Engine,
    config: Config,
    table: ir.Table,
    run_id: str,
    model_name: str,
    **values: ir.Value,
) -> None:
    """Append one row per buyer to `predictions` (the columns of PREDICTION_COLUMNS)."""
    horizon = f"{config.predict.horizon:g} {config.predict.horizon_unit}"
    expr = table.select(
        customer_id=table.customer_id,
        model=ibis.literal(model_name),
        horizon=ibis.literal(horizon),
        time_unit=ibis.literal(config.traits.time_unit),
        **{k: values[k].cast(PREDICTION_COLUMNS[k]) for k in PREDICTION_COLUMNS},
        as_of=table.as_of.cast("date"),
    )
    engine.write("predictions", expr, {"run_id": run_id})


PREDICTION_COLUMNS = {
    "expected_purchases": "float64",
    "p_alive": "float64",
    "churn_risk": "string",
    "expected_spend": "float64",
    "clv": "float64",
    "clv_low": "float64",
    "clv_high": "float64",
}


def _fallback(
    engine: Engine, config: Config, buyers: ir.Table, run_id: str, horizon_t: float
) -> None:
    """Too little data for the models: the purchase rate so far, extrapolated, and churn risk
    from the recency score."""
    t = buyers
    rate = ibis.cases((t["T"] > 0, t.frequency.cast("float64") / t["T"]), else_=0.0)
    expected = rate * horizon_t
    spend = t.monetary_value.nullif(0).fill_null(t.avg_order_value)
    none = ibis.null("float64")
    _write_predictions(
        engine,
        config,
        t,
        run_id,
        "rfm_fallback",
        expected_purchases=expected,
        p_alive=none,
        churn_risk=ibis.cases((t.r_score <= 2, "high"), (t.r_score == 3, "medium"), else_="low"),
        expected_spend=spend,
        clv=expected * spend,
        clv_low=none,
        clv_high=none,
    )


def _write_evaluation(ctx: RunContext, rows: list[tuple[Any, ...]]) -> None:
    if rows:  # none when every model failed on the calibration period
        ctx.store.con.executemany(
            "INSERT INTO model_evaluations (model, metric, key, predicted, actual, "
            "customers, run_id, as_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(*r, ctx.run_id, ctx.as_of) for r in rows],
        )


def _without_orders(store: Store) -> str | None:
    """`personae run` skips predict on a store without order lines (customer-level data)."""
    if store.con.execute("SELECT count(*) FROM orders").fetchall()[0][0]:
        return None
    return "no order lines in the store: the purchase models need dated purchases"


STAGE = Stage(
    name="predict",
    description="Purchase and spend models on the traits run's buyers: expected purchases, "
    "P(alive), churn risk, expected spend and CLV.",
    parents=("traits",),
    reads=("traits", "orders"),
    outputs=("predictions", "model_evaluations"),
    compute=predict,
    uses_engine=True,
    skip_reason=_without_orders,
)
