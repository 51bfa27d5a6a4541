"""The predict stage on CDNOW (calibration to 1997-09-30, holdout to 1998-06-30) and on
synthetic data: holdout comparison, stored predictions, time units, and the fallback."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from personae import Project

from ..conftest import cdnow_sample_source, write_toml

PIPELINE = """
[traits]
time_unit = "{unit}"

[predict]
calibration_end = 1997-09-30
horizon = {horizon}
horizon_unit = "{horizon_unit}"
"""


def _project(
    root: Path,
    data_dir: Path,
    unit: str = "weeks",
    horizon: float = 39,
    horizon_unit: str = "weeks",
) -> Project:
    write_toml(
        root,
        cdnow_sample_source(data_dir)
        + PIPELINE.format(
            unit=unit,
            horizon=horizon,
            horizon_unit=horizon_unit,
        ),
    )
    project = Project.open(root)
    project.ingest()
    project.traits()  # as of the last order, 1998-06-30
    return project


@pytest.fixture(scope="module")
def cdnow(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    return _project(tmp_path_factory.mktemp("cdnow"), data_dir)


def test_holdout_matches_the_reference(cdnow: Project) -> None:
    summary = cdnow.predict()
    h = summary.holdout
    # shared/reference: actual 1,882 repeat purchases in weeks 40-78; the conditional
    # forecasts sum to 1653.42 (BG/NBD), 1576.74 (MBG/NBD) and 1665.53 (Pareto/NBD)
    assert {m: r["actual_total"] for m, r in h.items()} == {
        "bgnbd": 1882,
        "mbgnbd": 1882,
        "pnbd": 1882,
    }
    assert h["bgnbd"]["predicted_total"] == pytest.approx(1653.42, abs=0.5)
    assert h["mbgnbd"]["predicted_total"] == pytest.approx(1576.74, abs=0.5)
    assert h["pnbd"]["predicted_total"] == pytest.approx(1665.53, abs=0.5)
    assert summary.model == min(h, key=lambda m: h[m]["mae"])
    with cdnow.store(read_only=True) as store:
        by_x = dict(
            store.con.execute(
                "SELECT key, actual FROM model_evaluations WHERE run_id = ? AND model = 'bgnbd' "
                "AND metric = 'mean_by_frequency'",
                [summary.run_id],
            ).fetchall()
        )
        weeks = store.con.execute(
            "SELECT max(key::INT), max(actual) FROM model_evaluations WHERE run_id = ? AND "
            "metric = 'cumulative_by_week' AND model = 'bgnbd'",
            [summary.run_id],
        ).fetchall()[0]
        pred = store.con.execute(
            "SELECT count(*), min(p_alive), max(p_alive), count(DISTINCT churn_risk), "
            "min(expected_spend), sum(clv) FROM predictions WHERE run_id = ?",
            [summary.run_id],
        ).fetchall()[0]
    # README: holdout mean by calibration frequency 0: 0.237, 1: 0.697, 7+: 6.359
    assert by_x["0"] == pytest.approx(0.237, abs=1e-3)
    assert by_x["1"] == pytest.approx(0.697, abs=1e-3)
    assert by_x["7+"] == pytest.approx(6.359, abs=1e-3)
    assert weeks == (39, 1882)
    assert pred[0] == 2357 and 0 <= pred[1] <= pred[2] <= 1 and pred[3] == 3
    assert list(summary.churn_bands) == ["high", "medium", "low"]  # riskiest first
    assert sum(summary.churn_bands.values()) == 2357
    assert pred[4] > 0 and pred[5] > 0


def test_time_unit_is_explicit(data_dir: Path, tmp_path: Path, cdnow: Project) -> None:
    """A 12-month horizon means the same on traits in days and in weeks (the trap of
    horizons silently read in the data's unit)."""
    runs = {}
    for unit in ("weeks", "days"):
        p = _project(tmp_path / unit, data_dir, unit=unit, horizon=12, horizon_unit="months")
        p.config.predict.model = "bgnbd"
        runs[unit] = (p, p.predict())
    values = {}
    for unit, (p, s) in runs.items():
        with p.store(read_only=True) as store:
            values[unit] = dict(
                store.con.execute(
                    "SELECT customer_id, expected_purchases FROM predictions WHERE run_id = ?",
                    [s.run_id],
                ).fetchall()
            )
    for cid in ("0001", "0100", "2000"):
        assert values["days"][cid] == pytest.approx(values["weeks"][cid], rel=1e-3)


def _orders_project(root: Path, lines: list[str]) -> Project:
    """A project of one orders file (order_id, customer_id, ordered_at, amount), ingested
    and with traits."""
    root.mkdir(exist_ok=True)
    (root / "o.csv").write_text("\n".join(["order_id,customer_id,ordered_at,amount", *lines]))
    (root / "personae.toml").write_text('[sources.o]\ntable = "orders"\npath = "o.csv"\n')
    project = Project.open(root)
    project.ingest()
    project.traits()
    return project


def _three_orders(root: Path) -> Project:
    """Two customers, one repeat purchase: too little for the models."""
    return _orders_project(
        root,
        ["1,a,2024-01-01 10:00:00,10", "2,a,2024-02-01 10:00:00,20", "3,b,2024-01-15 10:00:00,5"],
    )


def test_too_little_data_falls_back_to_rfm(tmp_path: Path) -> None:
    project = _three_orders(tmp_path)
    summary = project.predict()
    assert summary.model == "rfm_fallback"
    assert "only 1 repeat buyers" in (summary.fallback_reason or "")
    with project.store(read_only=True) as store:
        rows = store.con.execute(
            "SELECT customer_id, churn_risk, p_alive FROM predictions WHERE run_id = ? ORDER BY 1",
            [summary.run_id],
        ).fetchall()
    assert [r[0] for r in rows] == ["a", "b"] and rows[0][2] is None


def test_short_history_falls_back(tmp_path: Path) -> None:
    rows = []
    for i in range(300):  # 300 repeat buyers, but only 40 days of history
        rows += [
            f"a{i},c{i},2024-01-0{1 + i % 9} 10:00:00,10",
            f"b{i},c{i},2024-02-0{1 + i % 9} 10:00:00,12",
        ]
    project = _orders_project(tmp_path, rows)
    summary = project.predict()
    assert summary.model == "rfm_fallback"
    assert "days of history (min_history_days = 90)" in (summary.fallback_reason or "")


def test_clv_interval_from_parameter_uncertainty(cdnow: Project) -> None:
    cdnow.config.predict.clv_interval_draws = 60
    cdnow.config.predict.model = "bgnbd"
    summary = cdnow.predict()
    with cdnow.store(read_only=True) as store:
        row = store.con.execute(
            "SELECT count(*) FILTER (WHERE clv_low <= clv AND clv <= clv_high), count(*), "
            "avg(clv_high - clv_low) FROM predictions WHERE run_id = ?",
            [summary.run_id],
        ).fetchall()[0]
    assert row[0] >= 0.95 * row[1] and row[2] > 0


@pytest.mark.spark
@pytest.mark.xdist_group("spark")
def test_duckdb_and_spark_predict_the_same(data_dir: Path, tmp_path: Path) -> None:
    """The predict stage's table work (holdout counts, scores joined to every customer, the
    RFM fallback) gives the same predictions on both engines, row for row."""
    project = _project(tmp_path / "cdnow", data_dir)
    few = _three_orders(tmp_path / "few")
    for p, expected_rows in ((project, 2357), (few, 2)):
        runs = {e: p.predict(engine=e) for e in ("duckdb", "spark")}
        assert runs["duckdb"].model == runs["spark"].model
        got = {e: _predictions(p, s.run_id) for e, s in runs.items()}
        assert len(got["duckdb"]) == len(got["spark"]) == expected_rows
        for a, b in zip(got["duckdb"], got["spark"], strict=True):
            for x, y in zip(a, b, strict=True):
                if isinstance(x, float) and isinstance(y, float):
                    assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12), (a, b)
                else:
                    assert x == y, (a, b)


def _predictions(project: Project, run_id: str) -> list[tuple[object, ...]]:
    with project.store(read_only=True) as store:
        return store.con.execute(
            "SELECT * EXCLUDE (run_id) FROM predictions WHERE run_id = ? ORDER BY customer_id",
            [run_id],
        ).fetchall()


def _customers_who_never_leave(root: Path) -> Project:
    """600 customers buying at steady Poisson rates who never drop out, each spending
    Gamma(2, 20) a transaction: no dropout and no spend heterogeneity to estimate."""
    rng = np.random.default_rng(0)
    end = date(2024, 12, 31)
    lines: list[str] = []
    for c in range(600):
        age = int(rng.integers(200, 700))
        days = np.unique(rng.integers(1, age + 1, rng.poisson(rng.gamma(2.0, 1 / 60) * age)))
        for d in (0, *days):
            when = end - timedelta(days=int(age - d))
            lines.append(f"o{len(lines)},c{c},{when} 12:00:00,{rng.gamma(2, 20):.2f}")
    return _orders_project(root, lines)


def test_data_without_dropout_give_the_no_dropout_limit(tmp_path: Path) -> None:
    """BG/NBD's and MBG/NBD's likelihoods are highest as the dropout probability goes to 0:
    the estimate is their limit there, the NBD, used and said so (not refused)."""
    project = _customers_who_never_leave(tmp_path)
    summary = project.predict()
    assert summary.fallback_reason is None
    assert set(summary.holdout) == {"bgnbd", "mbgnbd", "pnbd"}
    assert "NBD limit" in summary.model_notes["bgnbd"]
    # Gamma-Gamma's spread of mean spends is not identified: everyone gets the mean
    assert "Gamma-Gamma tends to" in (summary.spend_fallback_reason or "")
    with project.store(read_only=True) as store:
        spends, rows, mean = store.con.execute(
            "SELECT count(DISTINCT round(p.expected_spend, 9)), count(*), "
            "sum(t.frequency * t.monetary_value) / sum(t.frequency) "
            "FROM predictions p JOIN traits t USING (customer_id) "
            "WHERE p.run_id = ? AND t.run_id = (SELECT max(run_id) FROM traits)",
            [summary.run_id],
        ).fetchall()[0]
    assert spends == 1 and rows == 600
    assert summary.spend_params["mean_spend"] == pytest.approx(mean)
    # with only BG/NBD allowed, it is used as the NBD: nobody drops out
    project.config.predict.model = "bgnbd"
    only = project.predict()
    assert only.model == "bgnbd" and set(only.params) == {"r", "alpha"}
    assert "used as the NBD limit" in only.model_notes["bgnbd"]
    assert only.churn_bands == {"low": 600}
    assert "do not separate anyone" in (only.churn_check_note or "")
    with project.store(read_only=True) as store:
        low, high = store.con.execute(
            "SELECT min(p_alive), max(p_alive) FROM predictions WHERE run_id = ?",
            [only.run_id],
        ).fetchall()[0]
    assert low == high == 1.0
