"""Customer lifetime value from a fitted purchase model and a spend model: the discounted
expected purchases per month, the interval over parameter draws, and the mean-spend model used
when Gamma-Gamma degenerates."""

from __future__ import annotations

import numpy as np

from personae.models._base import one_blas_thread
from personae.models._purchase import PurchaseModel, _arrays

CLV_BLOCK = 131_072  # customers per block of clv_factor


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


def clv_factor(
    model: PurchaseModel,
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    horizon_t: float,
    month_t: float,
    yearly_rate: float,
) -> np.ndarray:
    """Σ over months of the month's expected purchases, discounted to today: multiplied by
    the expected spend it is the CLV. `month_t` is one month in the model's time unit."""
    steps = max(1, int(np.ceil(horizon_t / month_t - 1e-9)))
    monthly = (1 + yearly_rate) ** (1 / 12) - 1
    ends = [min(k * month_t, horizon_t) for k in range(1, steps + 1)]
    discount = (1 + monthly) ** -np.arange(1, steps + 1)
    # sum of discount_k (E_k - E_k-1) = sum of E_k (discount_k - discount_k+1)
    weights = discount - np.append(discount[1:], 0.0)
    x, tx, T = _arrays(x, tx, T)
    out = np.empty(len(x))
    # a block of customers at a time: the months' rows of a million customers would be
    # 100 MB that the system maps and zeroes afresh for every call
    with one_blas_thread():
        for start in range(0, len(x), CLV_BLOCK):
            rows = slice(start, start + CLV_BLOCK)
            out[rows] = model.expected_purchases_weighted(ends, weights, x[rows], tx[rows], T[rows])
    return out


def clv_factor_interval(
    model: PurchaseModel,
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    horizon_t: float,
    month_t: float,
    yearly_rate: float,
    draws: int,
) -> dict[str, np.ndarray]:
    """5th and 95th percentiles of the CLV factor over parameter draws from the fit's
    covariance (normal on the parameters, non-positive draws rejected); NaN when off. A
    model fitted as its limit (the NBD: no dropout) draws the limit's parameters."""
    if isinstance(model.limit_, PurchaseModel):
        model = model.limit_
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
            factors.append(clv_factor(m, x, tx, T, horizon_t, month_t, yearly_rate))
    stacked = np.vstack(factors)
    return {
        "factor_low": np.nanpercentile(stacked, 5, axis=0),
        "factor_high": np.nanpercentile(stacked, 95, axis=0),
    }


__all__ = ["MeanSpend", "clv_factor", "clv_factor_interval"]
