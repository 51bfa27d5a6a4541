"""Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV"; Fader & Hardie 2013,
"The Gamma-Gamma model of monetary value", note 025)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import digamma, gammaln, polygamma

from personae.models._base import Array, BaseFitter, ModelError, compress


class GammaGamma(BaseFitter):
    """Spend per transaction ~ Gamma(p, nu), nu ~ Gamma(q, gamma) across customers; fitted on
    repeat buyers' mean repeat spend."""

    param_names = ("p", "q", "gamma")
    initial = (1.0, 1.0, 1.0)
    remedy = (
        "or more repeat buyers. When every customer's transactions have (nearly) the same "
        "value, the spread of spend is not identified at all: the limit is one mean spend "
        "for everyone (MeanSpend, which personae predict then uses)"
    )
    penalised = (("p", None), ("q", None))  # gamma is an amount of money
    exact_derivatives = True

    def fit(
        self, frequency: ArrayLike, monetary_value: ArrayLike, weights: ArrayLike | None = None
    ) -> GammaGamma:
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary_value, dtype=float)
        keep = x > 0
        if np.any(keep & (m <= 0)):
            raise ModelError(
                f"Gamma-Gamma needs positive spend: {int(np.sum(keep & (m <= 0)))} repeat "
                "buyers have monetary_value <= 0 (returns only, or free items). Leave them out "
                "or fix their amounts."
            )
        w = None if weights is None else np.asarray(weights, dtype=float)[keep]
        data, counts = compress(x[keep], m[keep], weights=w)
        return self._fit(data, counts)  # type: ignore[return-value]

    def _loglik(self, params: Array, x: Array, m: Array) -> Array:
        p, q, g = params
        return (
            gammaln(p * x + q)
            - gammaln(p * x)
            - gammaln(q)
            + q * np.log(g)
            + (p * x - 1) * np.log(m)
            + p * x * np.log(x)
            - (p * x + q) * np.log(g + m * x)
        )

    def _derivatives(
        self, params: Array, prepared: tuple[Sequence[Array], Array]
    ) -> tuple[float, Array, Array]:
        """Exact log-likelihood, gradient and Hessian in (p, q, gamma)."""
        p, q, g = params
        (x, m), w = prepared
        px = p * x
        lg = np.log(g + m * x)
        ll = w @ self._loglik(params, x, m)
        d_shape = digamma(px + q)
        grad = np.array(
            [
                w @ (x * (d_shape - digamma(px) + np.log(m) + np.log(x) - lg)),
                w @ (d_shape - digamma(q) + np.log(g) - lg),
                w @ (q / g - (px + q) / (g + m * x)),
            ]
        )
        t_shape, ig = polygamma(1, px + q), 1.0 / (g + m * x)
        pq = w @ (x * t_shape)
        p_gamma = -(w @ (x * ig))
        q_gamma = w @ (1.0 / g - ig)
        hess = np.array(
            [
                [w @ (x**2 * (t_shape - polygamma(1, px))), pq, p_gamma],
                [pq, w @ (t_shape - polygamma(1, q)), q_gamma],
                [p_gamma, q_gamma, w @ ((px + q) * ig**2 - q / g**2)],
            ]
        )
        return float(ll), grad, hess

    def expected_spend(self, frequency: ArrayLike, monetary_value: ArrayLike) -> Array:
        """E(M | x, zbar): a weighted mean of the population mean and the customer's own.
        Customers without repeat purchases, or whose repeat purchases net to no positive
        spend (returns), get the population mean: the model knows nothing else of them."""
        p, q, g = self._p()
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary_value, dtype=float)
        population = p * g / (q - 1)
        return np.where(
            (x > 0) & (m > 0),
            (q - 1) / (p * x + q - 1) * population + p * x / (p * x + q - 1) * m,
            population,
        )
