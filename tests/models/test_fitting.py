"""The fitting machinery: compression, exact derivatives, the warm-started Newton search on
large data, and the probability of n purchases for every model."""

from __future__ import annotations

import numpy as np
import pytest

from personae.models import (
    BGBB,
    BGNBD,
    GammaGamma,
    ModelError,
    ModifiedBGNBD,
    ParetoNBD,
    compress,
)
from personae.models._base import WARM_START_ROWS, _pack, unique_rows
from personae.models._purchase import CHEBYSHEV_NODES, INTERPOLATED_PAIRS


# whole numbers, fractions, weeks with two decimals (packed like whole numbers), too big
@pytest.mark.parametrize("scale", [1.0, 0.37, 1 / 7, 2.0**41])
def test_compress_finds_unique_rows_and_weights(scale: float) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, 2000).astype(float)
    t = rng.integers(0, 40, 2000) * scale
    if scale == 1 / 7:
        t = np.round(t, 2)
        assert _pack([x, t]) is not None
    (ux, ut), counts = compress(x, t)
    expected = sorted({(a, b) for a, b in zip(x, t, strict=True)})
    assert list(zip(ux, ut, strict=True)) == expected
    assert counts.sum() == 2000
    (vx, vt), inverse = unique_rows(x, t)
    np.testing.assert_array_equal(vx[inverse], x)
    np.testing.assert_array_equal(vt[inverse], t)
    np.testing.assert_array_equal(np.bincount(inverse), counts)
    (_, _), weighted = compress(x, t, weights=np.full(2000, 0.5))
    np.testing.assert_allclose(weighted, counts / 2)
    # rows already in order (compressed rows, repeated) are not sorted again: same answer
    (sx, st), again = unique_rows(np.repeat(ux, 2), np.repeat(ut, 2))
    np.testing.assert_array_equal(sx, ux)
    np.testing.assert_array_equal(st, ut)
    np.testing.assert_array_equal(again, np.repeat(np.arange(len(ux)), 2))


@pytest.mark.parametrize("model", [BGNBD, ModifiedBGNBD])
def test_exact_derivatives_match_finite_differences(model: type[BGNBD]) -> None:
    x, tx, T = _simulate_bgnbd(5000, (0.3, 5.0, 0.8, 2.5), seed=2)
    m = model()
    prepared = m._prepare(*compress(x, tx, T))
    p = np.array([0.4, 6.0, 0.9, 3.1])
    ll, grad, hess = m._derivatives(p, prepared)
    assert ll == pytest.approx(float(np.sum(m._loglik(p, x, tx, T))), rel=1e-12)
    step = 1e-6 * p
    for i in range(4):
        up, down = p.copy(), p.copy()
        up[i] += step[i]
        down[i] -= step[i]
        numeric = (m._derivatives(up, prepared)[0] - m._derivatives(down, prepared)[0]) / (
            2 * step[i]
        )
        assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-4)
        numeric_row = (m._derivatives(up, prepared)[1] - m._derivatives(down, prepared)[1]) / (
            2 * step[i]
        )
        np.testing.assert_allclose(hess[:, i], numeric_row, rtol=1e-5, atol=1e-3)


def test_large_fit_recovers_planted_parameters() -> None:
    """More unique rows than WARM_START_ROWS: the search starts from a sample's estimate and
    still lands on the maximum of the full data, near the planted values."""
    planted = (0.6, 40.0, 1.2, 8.0)
    x, tx, T = _simulate_bgnbd(300_000, planted, seed=3)
    assert len(compress(x, tx, T)[1]) > WARM_START_ROWS
    m = BGNBD().fit(x, tx, T)
    estimate = np.array([m.params_[k] for k in ("r", "alpha", "a", "b")])
    se = np.array([m.standard_errors_[k] for k in ("r", "alpha", "a", "b")])
    assert np.all(np.abs(estimate - planted) < 3 * se)  # sampling error, as the SEs say
    np.testing.assert_allclose(estimate[:2], planted[:2], rtol=0.02)  # the well-identified
    # the maximum itself: no direction improves the log-likelihood
    cold = BGNBD()
    prepared = cold._prepare(*compress(x, tx, T))
    best = cold._derivatives(estimate, prepared)[0]
    for i in range(4):
        for sign in (-1, 1):
            moved = estimate.copy()
            moved[i] *= 1 + sign * 1e-4
            assert cold._derivatives(moved, prepared)[0] < best


def test_large_pareto_fit_is_the_maximum() -> None:
    """More unique rows than WARM_START_ROWS: Pareto/NBD's search starts from a sample's
    estimate and takes Newton steps with derivatives by differences; it still lands on the
    maximum of the full data, with standard errors."""
    x, tx, T = _simulate_bgnbd(80_000, (0.6, 40.0, 1.2, 8.0), seed=6)
    data, w = compress(x, tx, T)
    assert len(w) > WARM_START_ROWS
    m = ParetoNBD().fit(x, tx, T)
    estimate = np.array([m.params_[k] for k in m.param_names])
    assert all(np.isfinite(v) and v > 0 for v in m.standard_errors_.values())
    prepared = m._prepare(data, w)
    best = m._total(estimate, prepared)
    assert m.log_likelihood_ == pytest.approx(best, abs=1e-6)
    for i in range(4):
        for sign in (-1, 1):
            moved = estimate.copy()
            moved[i] *= 1 + sign * 1e-4
            assert m._total(moved, prepared) < best


@pytest.mark.parametrize("model", [BGNBD, ModifiedBGNBD, ParetoNBD])
def test_prob_n_purchases_is_a_distribution_with_the_right_mean(model: type[BGNBD]) -> None:
    x, tx, T = _simulate_bgnbd(5000, (0.3, 5.0, 0.8, 2.5), seed=4)
    m = model().fit(x, tx, T)
    p = np.array([m.prob_n_purchases(n, 39.0) for n in range(300)])
    assert np.all(p >= 0)
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    assert (np.arange(300) * p).sum() == pytest.approx(float(m.expected_purchases_new(39.0)))


def test_bgbb_prob_n_purchases() -> None:
    m = BGBB()
    m.params_ = {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783}
    p = np.array([m.prob_n_purchases(x, 6) for x in range(7)])
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (np.arange(7) * p).sum() == pytest.approx(float(m.expected_purchases_new(6)))


def _simulate_bgnbd(
    n: int, params: tuple[float, float, float, float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frequency, recency, T) of n customers drawn from a BG/NBD process: Poisson purchases
    at Gamma(r, alpha) rates; after each repeat purchase a Beta(a, b) chance of leaving."""
    r, alpha, a, b = params
    rng = np.random.default_rng(seed)
    T = rng.uniform(20, 80, n)
    rate = rng.gamma(r, 1 / alpha, n)
    purchases = rng.poisson(rate * T)
    leave_at = rng.geometric(rng.beta(a, b, n))  # the repeat purchase after which they leave
    x = np.minimum(purchases, leave_at)
    # the x-th of `purchases` uniform times on (0, T) is Beta(x, purchases - x + 1) * T
    tx = np.where(x > 0, T * rng.beta(np.maximum(x, 1), purchases - x + 1), 0.0)
    return x.astype(float), tx, T


def test_gamma_gamma_exact_derivatives() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(1, 20, 3000).astype(float)
    m = rng.gamma(3.0, 10.0, 3000)
    model = GammaGamma()
    prepared = model._prepare(*compress(x, m))
    p = np.array([5.0, 3.0, 14.0])
    ll, grad, hess = model._derivatives(p, prepared)
    step = 1e-6 * p
    for i in range(3):
        up, down = p.copy(), p.copy()
        up[i] += step[i]
        down[i] -= step[i]
        value = model._derivatives(up, prepared)[0] - model._derivatives(down, prepared)[0]
        assert grad[i] == pytest.approx(value / (2 * step[i]), rel=1e-5)
        slope = model._derivatives(up, prepared)[1] - model._derivatives(down, prepared)[1]
        np.testing.assert_allclose(hess[:, i], slope / (2 * step[i]), rtol=1e-5, atol=1e-6)


def test_unidentified_estimates_are_errors_that_say_what_to_try() -> None:
    T = np.linspace(10, 50, 500)
    nobody = np.zeros(500)
    for model in (BGNBD, ModifiedBGNBD, ParetoNBD):
        with pytest.raises(ModelError, match="None of the 500 customers has a repeat purchase"):
            model().fit(nobody, nobody, T)
    x = nobody.copy()
    x[:3] = 1  # three repeat buyers among 500: the dropout parameters are not pinned down
    # the likelihood is flat towards a, b -> inf: where the search ends on that ridge (a
    # standard error without meaning or a bound) depends on the last digits of its sums
    with pytest.raises(ModelError, match=r"do not identify .*Try a penalizer"):
        BGNBD().fit(x, np.where(x > 0, 5.0, 0.0), T)
    with pytest.raises(ModelError, match="spread of spend is not identified"):
        GammaGamma().fit([1, 1, 1], [5.0, 5.0, 5.0])


@pytest.mark.parametrize("model", [BGNBD, ModifiedBGNBD])
def test_interpolated_expected_purchases_match_the_exact_ones(model: type[BGNBD]) -> None:
    """Times with decimals: thousands of distinct T per frequency, where the expected
    purchases of each frequency are interpolated over T instead of one hypergeometric
    function per customer and horizon; they match the exact ones to 1e-11."""
    x, tx, T = _simulate_bgnbd(20_000, (0.6, 4.0, 1.2, 8.0), seed=9)
    tx, T = np.round(tx, 2), np.round(T, 2)
    m = model().fit(x, tx, T)
    ts, weights = [4.0, 13.0, 52.0], np.array([0.5, 0.3, 0.2])
    (px, pT), at = unique_rows(x, T)
    odds = 1.0 + m._alive_odds(x, tx, T)
    # some frequencies are interpolated
    assert np.bincount(px.astype(int)).max() > 4 * CHEBYSHEV_NODES
    exact = m._alive_exact(ts, weights, px, pT)[at] / odds
    got = m.expected_purchases_weighted(ts, weights, x, tx, T)
    np.testing.assert_allclose(got, exact, rtol=1e-11)
    assert np.any(got != exact)  # the interpolant, not the exact fallback, was used
    curve = m.expected_purchases_over(ts, x, tx, T)
    np.testing.assert_allclose(weights @ curve, exact, rtol=1e-11)
    one = m._alive_exact([13.0], np.ones(1), px, pT)[at] / odds
    np.testing.assert_allclose(m.expected_purchases(13.0, x, tx, T), one, rtol=1e-11)


@pytest.mark.parametrize("params", [(0.6, 4.0, 1.2, 30.0), (0.6, 30.0, 1.2, 4.0)])
def test_interpolated_pareto_death_terms_match_the_exact_ones(
    params: tuple[float, float, float, float],
) -> None:
    """Pareto/NBD's hypergeometric death terms of frequencies with many distinct times
    are interpolated; they match the exact ones to rounding (alpha below and above beta)."""
    x, tx, T = _simulate_bgnbd(30_000, (0.6, 4.0, 1.2, 8.0), seed=10)
    tx, T = np.round(tx, 2), np.round(T, 2)
    d = ParetoNBD()._prepare(*compress(x, tx, T))
    assert np.bincount(d.x_T.astype(int)).max() >= INTERPOLATED_PAIRS  # some are interpolated
    p = np.array(params)
    interpolated = False
    for xs, ts in ((d.x_tx, d.tx_u), (d.x_T, d.T_u)):
        exact = ParetoNBD._log_death_term(p, xs, ts)
        got = ParetoNBD._log_death_sorted(p, xs, ts)
        np.testing.assert_allclose(got, exact, rtol=1e-13, atol=1e-12)
        interpolated |= bool(np.any(got != exact))
    assert interpolated  # the interpolant, not the exact fallback, was used


@pytest.mark.parametrize("model", [BGNBD, ParetoNBD])
def test_expected_purchases_over_several_horizons(model: type[BGNBD]) -> None:
    x, tx, T = _simulate_bgnbd(3000, (0.3, 5.0, 0.8, 2.5), seed=7)
    m = model().fit(x, tx, T)
    pick = np.random.default_rng(8).permutation(len(x))[:60]  # unsorted, some pairs shared
    x, tx, T = x[pick], tx[pick], np.ceil(T[pick] / 10) * 10
    curve = m.expected_purchases_over([4.0, 13.0, 52.0], x, tx, T)
    for row, t in zip(curve, (4.0, 13.0, 52.0), strict=True):
        one_by_one = [
            m.expected_purchases(t, [a], [b], [c])[0] for a, b, c in zip(x, tx, T, strict=True)
        ]
        np.testing.assert_allclose(row, one_by_one, rtol=1e-12)
    assert np.all(np.diff(curve, axis=0) > 0)  # more time, more purchases
