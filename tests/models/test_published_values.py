"""Every model reproduces the values pinned in shared/reference/btyd-published-values.md
(CDNOW sample as of 1997-09-30 in weeks; the donations data of Fader, Hardie & Shang 2010)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from personae.models import BGBB, BGNBD, GammaGamma, ModelError, ModifiedBGNBD, ParetoNBD


def _read(path: Path) -> dict[str, np.ndarray]:
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


@pytest.fixture(scope="module")
def cdnow(data_dir: Path) -> dict[str, np.ndarray]:
    return _read(data_dir / "cdnow" / "cdnow_customers_summary.csv")


@pytest.fixture(scope="module")
def bgnbd(cdnow: dict[str, np.ndarray]) -> BGNBD:
    return BGNBD().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def test_bgnbd_params_match_the_paper(bgnbd: BGNBD) -> None:
    p = bgnbd.params_
    # FHL05: r 0.243, alpha 4.414, a 0.793, b 2.426. 1e-4 relative to the converged MLE
    # (lifetimes 0.11.3 and CLVTools agree with it to 6e-5; BTYD stops 1.7e-4 away in b)
    for name, mle in (("r", 0.242593), ("alpha", 4.413532), ("a", 0.792886), ("b", 2.425752)):
        assert p[name] == pytest.approx(mle, rel=1e-4)
    assert round(p["r"], 3) == 0.243 and round(p["alpha"], 3) == 4.414
    assert round(p["a"], 3) == 0.793 and round(p["b"], 3) == 2.426
    assert bgnbd.log_likelihood_ == pytest.approx(-9582.43, abs=0.01)
    se = bgnbd.standard_errors_
    for name, ref in (("r", 0.012557), ("alpha", 0.378221), ("a", 0.185719), ("b", 0.705345)):
        assert se[name] == pytest.approx(ref, rel=0.02)


def test_bgnbd_predictions(bgnbd: BGNBD) -> None:
    assert bgnbd.expected_purchases(39, [2], [30.43], [38.86])[0] == pytest.approx(1.226, abs=1e-3)
    assert bgnbd.prob_alive([2], [30.43], [38.86])[0] == pytest.approx(0.72661, abs=1e-3)
    assert bgnbd.prob_alive([0], [0], [38.86])[0] == 1.0
    grid = bgnbd.expected_purchases_new(np.array([0.1429, 1, 3, 31.8571, 32, 78]))
    np.testing.assert_allclose(grid, [0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576], atol=1e-3)
    published = BGNBD()
    published.params_ = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    assert published.prob_n_purchases(0, 39) == pytest.approx(0.5737864, rel=1e-6)
    assert published.prob_n_purchases(10, 2) == pytest.approx(1.07869e-07, rel=1e-5)


def test_bgnbd_holdout_total(bgnbd: BGNBD, cdnow: dict[str, np.ndarray]) -> None:
    total = bgnbd.expected_purchases(39, cdnow["frequency"], cdnow["recency"], cdnow["T"]).sum()
    assert total == pytest.approx(1653.42, abs=0.5)  # actual holdout: 1,882


def test_pareto_nbd(cdnow: dict[str, np.ndarray]) -> None:
    m = ParetoNBD().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    p = m.params_
    assert p["r"] == pytest.approx(0.553, abs=0.001)
    assert p["alpha"] == pytest.approx(10.578, abs=0.005)
    assert p["s"] == pytest.approx(0.606, abs=0.002)
    assert p["beta"] == pytest.approx(11.669, abs=0.02)  # the likelihood is flat in beta
    assert m.log_likelihood_ == pytest.approx(-9594.97, abs=0.01)
    for name, ref in (("r", 0.047629), ("alpha", 0.842722), ("s", 0.187277), ("beta", 6.210941)):
        assert m.standard_errors_[name] == pytest.approx(ref, rel=0.02)
    assert m.expected_purchases(52, [26], [216 / 7], [31])[0] == pytest.approx(25.46, abs=0.01)
    assert m.prob_alive([26], [216 / 7], [31])[0] == pytest.approx(0.997874, abs=1e-5)
    assert float(m.expected_purchases_new(52)) == pytest.approx(1.473434, abs=1e-4)
    cond = m.expected_purchases(52, [10, 15, 20, 25], [20] * 4, [39] * 4)
    np.testing.assert_allclose(cond, [0.7062289, 0.1442396, 0.02250658, 0.00309267], rtol=1e-3)


def test_modified_bgnbd(cdnow: dict[str, np.ndarray]) -> None:
    m = ModifiedBGNBD().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    for name, ref in (("r", 0.525), ("alpha", 6.183), ("a", 0.891), ("b", 1.614)):
        assert m.params_[name] == pytest.approx(ref, abs=0.002)
    assert m.log_likelihood_ == pytest.approx(-9582.1327, abs=0.05)
    assert m.prob_alive([0], [0], [38.86])[0] == pytest.approx(0.38972, abs=1e-3)
    assert m.expected_purchases(39, [2], [30.43], [38.86])[0] == pytest.approx(1.26267, abs=1e-3)
    grid = m.expected_purchases_new(np.array([0.1429, 1, 3, 31.8571, 32, 39, 52, 78]))
    np.testing.assert_allclose(
        grid, [0.00778, 0.05306, 0.15079, 1.03347, 1.03661, 1.18228, 1.41889, 1.80364], atol=1e-4
    )


def test_bgbb_donations(data_dir: Path) -> None:
    d = _read(data_dir / "donations" / "donations.csv")
    m = BGBB().fit(d["frequency"], d["recency"], d["periods"], weights=d["weights"])
    for name, ref in (("alpha", 1.204), ("beta", 0.750), ("gamma", 0.657), ("delta", 2.783)):
        assert m.params_[name] == pytest.approx(ref, abs=0.002)
    assert m.log_likelihood_ == pytest.approx(-33225.58, abs=0.05)
    for name, ref in (
        ("alpha", 0.069391),
        ("beta", 0.029448),
        ("gamma", 0.051010),
        ("delta", 0.320819),
    ):
        assert m.standard_errors_[name] == pytest.approx(ref, rel=0.02)
    alive = m.prob_alive([0, 2, 6], [0, 4, 6], [6, 6, 6])
    np.testing.assert_allclose(alive, [0.11, 0.59, 0.93], atol=0.005)
    total = (
        m.expected_purchases(5, d["frequency"], d["recency"], d["periods"]) * d["weights"]
    ).sum()
    assert total == pytest.approx(12884.2, abs=0.5)  # actual 2002-2006: 13,260
    tracking = m.expected_purchases_new(np.arange(1, 12))
    np.testing.assert_allclose(
        tracking,
        [0.4985, 0.9233, 1.2969, 1.6323, 1.9381, 2.2202, 2.4826, 2.7285, 2.9603, 3.1798, 3.3887],
        atol=1e-4,
    )


def test_gamma_gamma(data_dir: Path) -> None:
    d = _read(data_dir / "cdnow" / "cdnow_customers_summary_with_transactions.csv")
    m = GammaGamma().fit(d["x"], d["zbar"])
    for name, ref in (("p", 6.25), ("q", 3.74), ("gamma", 15.44)):
        assert m.params_[name] == pytest.approx(ref, abs=0.01)
    assert m.log_likelihood_ == pytest.approx(-4055.9232, abs=0.01)
    for name, ref in (("p", 1.189687), ("q", 0.290166), ("gamma", 4.159994)):
        assert m.standard_errors_[name] == pytest.approx(ref, rel=0.02)
    np.testing.assert_allclose(
        m.expected_spend(d["x"][:10], d["zbar"][:10]),
        [24.65, 18.91, 35.17, 35.17, 35.17, 71.46, 18.91, 35.17, 27.28, 35.17],
        atol=0.015,
    )
    assert m.expected_spend(d["x"], d["zbar"]).mean() == pytest.approx(35.2529588256, abs=1e-5)
    # no repeat purchase, or repeat purchases that net to returns: the population mean
    population = m.params_["p"] * m.params_["gamma"] / (m.params_["q"] - 1)
    np.testing.assert_allclose(m.expected_spend([0, 3], [0.0, -5.0]), [population] * 2)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ModelError, match="positive spend"):
        GammaGamma().fit([1, 2], [10.0, -3.0])
    with pytest.raises(ModelError, match="recency <= T"):
        BGNBD().fit([1], [5.0], [3.0])
    with pytest.raises(ModelError, match="not fitted"):
        BGNBD().prob_alive([1], [1], [2])
    with pytest.raises(ModelError, match="No customers"):
        BGNBD().fit([], [], [])


def test_heavy_buyers_stay_finite() -> None:
    """Pareto/NBD overflows in other libraries for x > 200; here it stays finite."""
    rng = np.random.default_rng(0)
    n = 3000
    x = rng.poisson(2, n).astype(float)
    x[:5] = [250, 400, 600, 900, 1200]
    T = rng.uniform(30, 60, n)
    tx = np.where(x > 0, T * rng.uniform(0.2, 1, n), 0)
    m = ParetoNBD().fit(x, tx, T)
    assert np.isfinite(m.log_likelihood_)
    assert np.all(np.isfinite(m.prob_alive(x[:5], tx[:5], T[:5])))
