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
from datetime import date, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from personae.config import Config
from personae.errors import StoreError
from personae.models import BGNBD, GammaGamma, ModelError, ModifiedBGNBD, ParetoNBD
from personae.models._purchase import _ContinuousModel
from personae.store import Store
from personae.store.engine import Engine, engine_for
from personae.traits import UNIT_DAYS, purchase_summary
from personae.traits.purchase import purchase_lines

__all__ = ["predict", "PredictSummary", "MODELS", "DAYS_PER"]
log = logging.getLogger(__name__)
MODELS: dict[str, type[_ContinuousModel]] = {
    "bgnbd": BGNBD,
    "mbgnbd": ModifiedBGNBD,
    "pnbd": ParetoNBD,
}
DAYS_PER = {"days": 1.0, "weeks": 7.0, "months": 30.4375, "years": 365.25}
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
    model_notes: dict[str, str] = field(default_factory=dict)  # model -> what went wrong
    fallback_reason: str | None = None
    spend_fallback_reason: str | None = None
    churn_bands: dict[str, int] = field(default_factory=dict)
    total_clv: float = 0.0
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


def evaluate(
    store: Store, config: Config, as_of: date, models: list[str]
) -> tuple[dict[str, dict[str, float]], list[tuple[Any, ...]], dict[str, str]]:
    """Fit each model on the calibration period and compare it with the holdout; also says
    why a model could not be fitted there."""
    unit = UNIT_DAYS[config.traits.time_unit]
    cfg = config.predict
    first = store.con.execute("SELECT min(ordered_at)::DATE FROM orders").fetchall()[0][0]
    cal_end = cfg.calibration_end or (as_of - timedelta(days=max(30, (as_of - first).days // 4)))
    horizon_t = (as_of - cal_end).days / unit
    engine = engine_for(store, config.store)
    cal = purchase_summary(engine, config, cal_end)
    lines = purchase_lines(engine.table("orders"), as_of)
    hold = lines.filter(lines.is_purchase & (lines.day > cal_end))
    actual = hold.group_by("customer_id").aggregate(actual=hold.day.nunique())
    joined = cal.filter(cal.purchase_days > 0).left_join(actual, "customer_id")
    grouped = joined.group_by(KEYS).aggregate(
        n=joined.count(),
        actual=joined.actual.fill_null(0).sum(),
    )
    g = _columns(engine, grouped)
    p = _columns(engine, _counted(joined.mutate(a=joined.actual.fill_null(0)), [*KEYS, "a"]))
    hold_days = hold.select("customer_id", "day").distinct()  # purchase days, not lines
    weeks = hold_days.mutate(week=(hold_days.day.delta(ibis.date(cal_end), unit="day") - 1) // 7)
    weekly = (
        weeks.filter(weeks.customer_id.isin(cal.filter(cal.purchase_days > 0).customer_id))
        .group_by("week")
        .aggregate(n=weeks.customer_id.count())
    )
    week_rows = engine.backend.to_pyarrow(weekly.order_by("week")).to_pylist()
    results: dict[str, dict[str, float]] = {}
    evaluation: list[tuple[Any, ...]] = []
    failures: dict[str, str] = {}
    n_total = g["n"].sum()
    for name in models:
        try:
            model = MODELS[name](penalizer=cfg.penalizer).fit(
                g["frequency"], g["recency"], g["T"], weights=g["n"]
            )
        except ModelError as err:
            log.info("model %s failed on the calibration period: %s", name, err)
            failures[name] = (
                f"not compared on the holdout (no fit on the calibration period): {err}"
            )
            continue
        # one pass for the holdout horizon and the end of every holdout week
        ends = [min((w["week"] + 1) * 7 / unit, horizon_t) for w in week_rows]
        curve = model.expected_purchases_over(
            [*ends, horizon_t], g["frequency"], g["recency"], g["T"]
        )
        pred_g = curve[-1]
        pred_p = model.expected_purchases(horizon_t, p["frequency"], p["recency"], p["T"])
        mae = float(np.sum(p["n"] * np.abs(pred_p - p["a"])) / n_total)
        total_pred = float(np.sum(g["n"] * pred_g))
        total_act = float(np.sum(g["actual"]))
        results[name] = {
            "mae": mae,
            "predicted_total": total_pred,
            "actual_total": total_act,
            "log_likelihood": model.log_likelihood_,
        }
        evaluation.append((name, "holdout_total", "all", total_pred, total_act))
        evaluation.append((name, "mae", "all", mae, None))
        buckets = _bucket(g["frequency"])
        for b in BUCKETS:
            sel = buckets == b
            if sel.any():
                evaluation.append(
                    (
                        name,
                        "mean_by_frequency",
                        b,
                        float(np.sum(g["n"][sel] * pred_g[sel]) / g["n"][sel].sum()),
                        float(g["actual"][sel].sum() / g["n"][sel].sum()),
                    )
                )
        cum_actual = 0.0
        for w, cum_pred in zip(week_rows, curve[:-1] @ g["n"], strict=True):
            cum_actual += w["n"]
            evaluation.append(
                (name, "cumulative_by_week", str(int(w["week"]) + 1), float(cum_pred), cum_actual)
            )
    return results, evaluation, failures


def predict(
    store: Store, config: Config, progress: Callable[[str, int, int], None] | None = None
) -> PredictSummary:
    """Fit, choose, score and store the predicted traits of every buyer."""
    started = time.perf_counter()
    traits_run = store.latest_run("traits")
    if traits_run is None:
        raise StoreError("No traits yet: run `personae traits` before `personae predict`.")
    as_of = date.fromisoformat(
        store.con.execute("SELECT as_of FROM runs WHERE run_id = ?", [traits_run])
        .fetchall()[0][0]
        .isoformat()
    )
    cfg = config.predict
    unit_name = config.traits.time_unit
    unit = UNIT_DAYS[unit_name]
    horizon_t = cfg.horizon * DAYS_PER[cfg.horizon_unit] / unit
    run_id = store.start_run("predict", as_of=str(as_of))
    step = progress or (lambda *_: None)
    try:
        engine = engine_for(store, config.store)
        traits = engine.table("traits")
        buyers = traits.filter((traits.run_id == traits_run) & (traits.purchase_days > 0))
        fit = _columns(engine, _counted(buyers, KEYS))
        repeaters = float(np.sum(fit["n"][fit["frequency"] > 0])) if fit["n"].size else 0.0
        summary = PredictSummary(
            run_id,
            str(as_of),
            "",
            int(fit["n"].sum()),
            f"{cfg.horizon:g} {cfg.horizon_unit}",
            unit_name,
        )
        first = store.con.execute("SELECT min(ordered_at)::DATE FROM orders").fetchall()[0][0]
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
            step("comparing models on a holdout", 0, 3)
            chosen, model = _choose_and_fit(store, config, as_of, fit, run_id, summary, step)
        if model is None:
            log.warning(summary.fallback_reason)
            _fallback(engine, config, buyers, run_id, horizon_t)
            summary.model = "rfm_fallback"
        else:
            gg = _fit_spend(engine, buyers, cfg.penalizer, summary)
            step("scoring every customer", 2, 3)
            _score(engine, config, buyers, run_id, model, gg, fit, horizon_t, unit)
            summary.model = chosen
            summary.params = model.params_
            summary.spend_params = gg.params_
        bands = store.con.execute(
            "SELECT churn_risk, count(*) FROM predictions WHERE run_id = ? GROUP BY 1", [run_id]
        ).fetchall()
        summary.churn_bands = {str(k): int(v) for k, v in bands}
        total = store.con.execute(
            "SELECT sum(clv) FROM predictions WHERE run_id = ?", [run_id]
        ).fetchall()[0][0]
        summary.total_clv = float(total or 0.0)
    except Exception as err:
        store.finish_run(run_id, error=str(err))
        raise
    summary.seconds = round(time.perf_counter() - started, 2)
    store.finish_run(run_id, details={"model": summary.model, "params": summary.params})
    return summary


def _choose_and_fit(
    store: Store,
    config: Config,
    as_of: date,
    fit: dict[str, np.ndarray],
    run_id: str,
    summary: PredictSummary,
    step: Callable[[str, int, int], None],
) -> tuple[str, _ContinuousModel | None]:
    """Compare the candidate models on the holdout and fit the best that the data identify
    on all buyers; notes in `summary` why the others were not compared or not used."""
    cfg = config.predict
    candidates: list[str] = list(MODELS) if cfg.model == "auto" else [cfg.model]
    results, evaluation, summary.model_notes = evaluate(store, config, as_of, candidates)
    _write_evaluation(store, run_id, evaluation)
    summary.holdout = results
    # the best on the holdout first; models that failed there may still fit all data
    ranked = sorted(results, key=lambda m: results[m]["mae"])
    ranked += [m for m in candidates if m not in results]
    chosen, model, failures = _fit_first(ranked, cfg.penalizer, fit, step)
    summary.model_notes.update(
        {k: f"not used (no fit on all buyers): {v}" for k, v in failures.items()}
    )
    if model is None:
        summary.fallback_reason = (
            "no purchase model could be fitted on all buyers "
            f"({'; '.join(f'{k}: {v}' for k, v in failures.items())}): predictions "
            "fall back to RFM-based scores"
        )
    return chosen, model


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


class MeanSpend:
    """Expected spend when Gamma-Gamma cannot be fitted because customers' mean spends do not
    differ more than their transactions do (q and gamma run off to infinity): the model's
    limit, the mean repeat transaction value of all customers, for everyone."""

    def __init__(self, frequency: np.ndarray, monetary_value: np.ndarray, n: np.ndarray) -> None:
        transactions = float(np.sum(n * frequency))
        value = float(np.sum(n * frequency * monetary_value))
        self.mean = value / transactions if transactions else 0.0
        self.params_ = {"mean_spend": self.mean}

    def expected_spend(self, frequency: np.ndarray, monetary_value: np.ndarray) -> np.ndarray:
        return np.full(len(np.asarray(frequency)), self.mean)


def _fit_first(
    names: list[str],
    penalizer: float,
    fit: dict[str, np.ndarray],
    step: Callable[[str, int, int], None],
) -> tuple[str, _ContinuousModel | None, dict[str, str]]:
    """The first of the named models that fits every buyer, and why the others did not."""
    failures = {}
    for name in names:
        step(f"fitting {name}", 1, 3)
        try:
            model = MODELS[name](penalizer=penalizer).fit(
                fit["frequency"], fit["recency"], fit["T"], weights=fit["n"]
            )
        except ModelError as err:
            log.info("model %s failed on all buyers: %s", name, err)
            failures[name] = str(err)
            continue
        return name, model, failures
    return "", None, failures


def _clv_factor(
    model: _ContinuousModel,
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    horizon_t: float,
    unit: float,
    yearly_rate: float,
) -> np.ndarray:
    """Σ over months of the month's expected purchases, discounted to today: multiplied by
    the expected spend it is the CLV. Months are 30.4375 days, converted to the time unit."""
    month_t = DAYS_PER["months"] / unit
    steps = max(1, int(np.ceil(horizon_t / month_t - 1e-9)))
    monthly = (1 + yearly_rate) ** (1 / 12) - 1
    ends = [min(k * month_t, horizon_t) for k in range(1, steps + 1)]
    cumulative = model.expected_purchases_over(ends, x, tx, T)
    per_month = np.diff(cumulative, axis=0, prepend=0.0)
    discount = (1 + monthly) ** -np.arange(1, steps + 1)
    return discount @ per_month


def _clv_factor_interval(
    model: _ContinuousModel,
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    horizon_t: float,
    unit: float,
    yearly_rate: float,
    draws: int,
) -> dict[str, np.ndarray]:
    """5th and 95th percentiles of the CLV factor over parameter draws from the fit's
    covariance (normal on the parameters, non-positive draws rejected); NaN when off."""
    if draws <= 0 or not np.all(np.isfinite(model.covariance_)):
        nan = np.full_like(x, np.nan)
        return {"factor_low": nan, "factor_high": nan}
    rng = np.random.default_rng(0)
    mean = np.array([model.params_[k] for k in model.param_names])
    sample = rng.multivariate_normal(mean, model.covariance_, size=4 * draws)
    sample = sample[np.all(sample > 0, axis=1)][:draws]
    factors = []
    for row in sample:
        m = type(model)()
        m.params_ = dict(zip(model.param_names, (float(v) for v in row), strict=True))
        with np.errstate(all="ignore"):
            factors.append(_clv_factor(m, x, tx, T, horizon_t, unit, yearly_rate))
    stacked = np.vstack(factors)
    return {
        "factor_low": np.nanpercentile(stacked, 5, axis=0),
        "factor_high": np.nanpercentile(stacked, 95, axis=0),
    }


def _score(
    engine: Engine,
    config: Config,
    buyers: ir.Table,
    run_id: str,
    model: _ContinuousModel,
    gg: GammaGamma | MeanSpend,
    fit: dict[str, np.ndarray],
    horizon_t: float,
    unit: float,
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
                "clv_factor": _clv_factor(model, x, tx, T, horizon_t, unit, cfg.discount_rate),
                **{  # NaN (intervals off) is stored as NULL
                    k: pa.array(v, from_pandas=True)
                    for k, v in _clv_factor_interval(
                        model, x, tx, T, horizon_t, unit, cfg.discount_rate, cfg.clv_interval_draws
                    ).items()
                },
            }
        ),
    )
    with_m = buyers.mutate(m=buyers.monetary_value.fill_null(0.0))
    spend = _columns(engine, with_m.select("frequency", "m").distinct())
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
    joined = with_m.join(purchase, KEYS).join(spend_scores, ["frequency", "m"])
    p_alive, expected_spend = joined.p_alive, joined.expected_spend
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


def _write_evaluation(store: Store, run_id: str, rows: list[tuple[Any, ...]]) -> None:
    store.con.execute("""CREATE TABLE IF NOT EXISTS model_evaluations (
        run_id VARCHAR, model VARCHAR, metric VARCHAR, key VARCHAR, predicted DOUBLE,
        actual DOUBLE)""")
    if rows:  # none when every model failed on the calibration period
        store.con.executemany(
            "INSERT INTO model_evaluations VALUES (?, ?, ?, ?, ?, ?)",
            [(run_id, *r) for r in rows],
        )
