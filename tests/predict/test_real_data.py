"""Predict on the UCI online retail set with default settings: a purchase model is used, its
holdout error is shown against the naive baseline, and the churn-risk bands are checked
against what customers bought in the holdout (issue 12, section 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from personae import Project
from personae.predict import PredictSummary

from ..conftest import online_retail_source, write_toml


@pytest.fixture(scope="module")
def retail(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("online_retail")
    path = data_dir / "online_retail/online_retail.csv.gz"
    write_toml(
        root,
        online_retail_source(
            path, 'encoding = "latin-1"\ndate_formats = { InvoiceDate = "%m/%d/%Y %H:%M" }'
        ),
    )
    project = Project.open(root)
    project.ingest()
    project.traits()  # as of the last order, 2011-12-09
    return project


@pytest.fixture(scope="module")
def summary(retail: Project) -> PredictSummary:
    return retail.predict()


def test_a_purchase_model_is_used_with_default_settings(summary: PredictSummary) -> None:
    assert summary.fallback_reason is None
    assert summary.model in ("bgnbd", "mbgnbd", "pnbd")
    assert summary.customers == 4335
    # on the calibration period (to 2011-09-07) nobody is seen to drop out: every model is
    # its NBD limit there, and says so
    assert set(summary.holdout) == {"bgnbd", "mbgnbd", "pnbd"}
    assert all("NBD limit" in summary.model_notes[m] for m in summary.holdout)
    h = summary.holdout[summary.model]
    assert h["actual_total"] == 4543
    assert h["predicted_total"] == pytest.approx(3397.9, abs=1)
    assert h["mae"] == pytest.approx(0.9502, abs=1e-3)


def test_the_holdout_is_judged_against_the_baseline(summary: PredictSummary) -> None:
    base = summary.baseline
    assert base["actual_total"] == 4543
    assert base["predicted_total"] == pytest.approx(3178.3, abs=1)
    assert base["mae"] == pytest.approx(0.9256, abs=1e-3)
    # the model is closer on the total but not per customer: not called better
    verdict = summary.holdout_verdict or ""
    assert "NOT better than the baseline" in verdict
    # 3,398 predicted against 4,543 actual (-25%, the Christmas quarter): a warning
    assert "missed the holdout by -25%" in (summary.holdout_warning or "")


def test_churn_bands_are_checked_on_the_holdout(retail: Project, summary: PredictSummary) -> None:
    assert summary.churn_check == [
        {
            "band": "low",
            "customers": 3355,
            "mean_expected": pytest.approx(3397.9 / 3355, abs=1e-3),
            "mean_actual": pytest.approx(4543 / 3355),
        }
    ]
    assert "do not separate anyone" in (summary.churn_check_note or "")
    with retail.store(read_only=True) as store:
        rows = store.con.execute(
            "SELECT model, key, customers, actual FROM model_evaluations WHERE run_id = ? "
            "AND metric = 'churn_band'",
            [summary.run_id],
        ).fetchall()
        baseline = store.con.execute(
            "SELECT predicted, actual FROM model_evaluations WHERE run_id = ? AND model = "
            "'baseline' AND metric = 'holdout_total'",
            [summary.run_id],
        ).fetchall()
    assert rows == [(summary.model, "low", 3355, pytest.approx(4543 / 3355))]
    assert baseline == [(pytest.approx(3178.3, abs=1), 4543)]


def test_the_cli_prints_the_baseline_the_verdict_and_the_bands(
    retail: Project, summary: PredictSummary, capsys: pytest.CaptureFixture[str]
) -> None:
    from personae.cli.commands import print_predict

    print_predict(summary)
    out = " ".join(capsys.readouterr().out.split())
    assert "baseline (past rate)" in out and "0.9256" in out
    assert "NOT better than the baseline" in out
    assert "warning: the chosen model" in out
    assert "Churn-risk bands on the holdout" in out and "do not separate anyone" in out
