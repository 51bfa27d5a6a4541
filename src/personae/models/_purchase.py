"""Buy-till-you-die purchase models for continuous time (BG/NBD, MBG/NBD, Pareto/NBD) and
for discrete opportunities (BG/BB). Log-likelihoods are computed in log space.

References
----------
Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting your customers" the easy way:
    an alternative to the Pareto/NBD model. Marketing Science 24(2), 275-284.
Batislam, E. P., Denizel, M. & Filiztekin, A. (2007). Empirical validation and comparison of
    models for customer base analysis. International Journal of Research in Marketing 24(3).
Schmittlein, D. C., Morrison, D. G. & Colombo, R. (1987). Counting your customers: who are
    they and what will they do next? Management Science 33(1), 1-24.
Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). A note on deriving the Pareto/NBD model
    and related expressions. http://brucehardie.com/notes/009/
Fader, P. S., Hardie, B. G. S. & Shang, J. (2010). Customer-base analysis in a discrete-time
    noncontractual setting. Marketing Science 29(6), 1086-1108.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln, digamma, gammaln, hyp2f1, logsumexp

from personae.models._base import Array, BaseFitter, ModelError, compress


def _arrays(*values: ArrayLike) -> list[Array]:
    return [np.asarray(v, dtype=float) for v in values]


_DISTINCT: dict[int, tuple[Array, Array, NDArray[np.intp]]] = {}


def _distinct(x: Array) -> tuple[Array, NDArray[np.intp]]:
    """Distinct values of x and where each row's value sits, remembered for the array being
    fitted (the optimiser asks for them at every step)."""
    hit = _DISTINCT.get(id(x))
    if hit is None or hit[0] is not x:
        ux, inv = np.unique(x, return_inverse=True)
        _DISTINCT.clear()
        hit = (x, ux, inv.astype(np.intp))
        _DISTINCT[id(x)] = hit
    return hit[1], hit[2]


def _check(frequency: Array, recency: Array, T: Array) -> None:
    if len(frequency) == 0:
        raise ModelError("No customers to fit: the traits have no buyers.")
    if np.any(frequency < 0) or np.any(recency < 0) or np.any(recency > T + 1e-9):
        raise ModelError(
            "frequency and recency must be >= 0 and recency <= T (time from the first to the "
            "last purchase cannot exceed the customer's age); check the time unit."
        )
    if np.any((frequency == 0) & (recency > 0)):
        raise ModelError("recency must be 0 for customers with frequency 0.")


class _ContinuousModel(BaseFitter):
    """A purchase model over continuous time: fit on (frequency, recency, T)."""

    def expected_purchases(
        self, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:  # pragma: no cover - every model has it
        raise NotImplementedError

    def _alive_odds(self, x: Array, tx: Array, T: Array) -> Array:  # pragma: no cover
        raise NotImplementedError

    def prob_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
        """P(alive | x, t_x, T) = 1 / (1 + odds of having dropped out)."""
        x, tx, t = _arrays(frequency, recency, T)
        return 1.0 / (1.0 + self._alive_odds(x, tx, t))

    def expected_purchases_new(self, t: ArrayLike) -> Array:  # pragma: no cover
        raise NotImplementedError

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> _ContinuousModel:
        """Maximum likelihood on the unique (frequency, recency, T) rows; returns self."""
        x, tx, t = _arrays(frequency, recency, T)
        _check(x, tx, t)
        data, w = compress(x, tx, t, weights=weights)
        return self._fit(data, w)  # type: ignore[return-value]


class BGNBD(_ContinuousModel):
    """BG/NBD model (Fader, Hardie & Lee 2005): Poisson purchases with Gamma(r, alpha)
    rates; after each purchase the customer drops out with a Beta(a, b) probability."""

    param_names = ("r", "alpha", "a", "b")
    initial = (1.0, 1.0, 1.0, 1.0)

    def _loglik(self, p: Array, x: Array, tx: Array, T: Array) -> Array:
        r, alpha, a, b = p
        a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        a2 = betaln(a, b + x) - betaln(a, b)
        a3 = -(r + x) * np.log(alpha + T)
        a4 = np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + tx)
        a4 = np.where(x > 0, a4, -np.inf)
        return a1 + a2 + np.logaddexp(a3, a4)

    def _loglik_grad(self, p: Array, x: Array, tx: Array, T: Array) -> tuple[Array, Array]:
        """Per-row log-likelihood and its gradient in (r, alpha, a, b). The special functions
        depend on x alone, so they are evaluated once per distinct x."""
        r, alpha, a, b = p
        ux, inv = _distinct(x)
        g_r = (gammaln(r + ux) - gammaln(r))[inv]
        d_r = (digamma(r + ux) - digamma(r))[inv]
        b_ab = (betaln(a, b + ux) - betaln(a, b))[inv]
        d_a = (digamma(a + b) - digamma(a + b + ux))[inv]
        d_b = (digamma(b + ux) - digamma(a + b + ux) - digamma(b) + digamma(a + b))[inv]
        la_T, la_tx = np.log(alpha + T), np.log(alpha + tx)
        a3 = -(r + x) * la_T
        bx1 = np.maximum(b + x - 1, 1e-300)
        a4 = np.where(x > 0, np.log(a) - np.log(bx1) - (r + x) * la_tx, -np.inf)
        mix = np.logaddexp(a3, a4)
        w3, w4 = np.exp(a3 - mix), np.exp(a4 - mix)
        ll = g_r + r * np.log(alpha) + b_ab + mix
        grad = np.vstack(
            [
                d_r + np.log(alpha) - w3 * la_T - w4 * la_tx,
                r / alpha - w3 * (r + x) / (alpha + T) - w4 * (r + x) / (alpha + tx),
                d_a + w4 / a,
                d_b - w4 / bx1,
            ]
        )
        return ll, grad

    def _alive_odds(self, x: Array, tx: Array, T: Array) -> Array:
        r, alpha, a, b = self._p()
        with np.errstate(divide="ignore"):
            log_odds = (
                np.log(a)
                - np.log(np.maximum(b + x - 1, 1e-300))
                + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
            )
        return np.where(x > 0, np.exp(log_odds), 0.0)

    def expected_purchases(
        self, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """E[purchases in (T, T + t] | x, t_x, T] (FHL05 eq. 10)."""
        r, alpha, a, b = self._p()
        x, tx, T_ = _arrays(frequency, recency, T)
        z = t / (alpha + T_ + t)
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
        num = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T_) / (alpha + T_ + t)) ** (r + x) * hyp)
        return num / (1.0 + self._alive_odds(x, tx, T_))

    def expected_purchases_new(self, t: ArrayLike) -> Array:
        """E[X(t)] for a customer just acquired (FHL05 eq. 7)."""
        r, alpha, a, b = self._p()
        tt = np.asarray(t, dtype=float)
        hyp = hyp2f1(r, b, a + b - 1, tt / (alpha + tt))
        return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + tt)) ** r * hyp)

    def prob_n_purchases(self, n: int, t: float) -> float:
        """P(X(t) = n) for a customer just acquired (FHL05 eq. 8)."""
        r, alpha, a, b = self._p()
        q = t / (alpha + t)
        log_p0 = r * np.log(alpha / (alpha + t))
        first = np.exp(
            betaln(a, b + n)
            - betaln(a, b)
            + gammaln(r + n)
            - gammaln(r)
            - gammaln(n + 1)
            + log_p0
            + n * np.log(q)
        )
        if n == 0:
            return float(first)
        j = np.arange(n)
        terms = np.exp(gammaln(r + j) - gammaln(r) - gammaln(j + 1) + j * np.log(q))
        second = np.exp(betaln(a + 1, b + n - 1) - betaln(a, b)) * (
            1 - np.exp(log_p0) * terms.sum()
        )
        return float(first + second)


class ModifiedBGNBD(_ContinuousModel):
    """MBG/NBD (Batislam, Denizel & Filiztekin 2007): as BG/NBD, but a customer may also
    drop out right after the first purchase, so P(alive | x = 0) < 1."""

    param_names = ("r", "alpha", "a", "b")
    initial = (1.0, 1.0, 1.0, 1.0)

    def _loglik(self, p: Array, x: Array, tx: Array, T: Array) -> Array:
        r, alpha, a, b = p
        a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        a2 = gammaln(a + b) + gammaln(b + x + 1) - gammaln(b) - gammaln(a + b + x + 1)
        a3 = -(r + x) * np.log(alpha + T)
        a4 = np.log(a) - np.log(b + x) - (r + x) * np.log(alpha + tx)
        return a1 + a2 + np.logaddexp(a3, a4)

    def _alive_odds(self, x: Array, tx: Array, T: Array) -> Array:
        r, alpha, a, b = self._p()
        return np.exp(
            np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
        )

    def expected_purchases(
        self, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        r, alpha, a, b = self._p()
        x, tx, T_ = _arrays(frequency, recency, T)
        hyp = hyp2f1(r + x, b + x + 1, a + b + x, t / (alpha + T_ + t))
        num = (a + b + x) / (a - 1) * (1 - ((alpha + T_) / (alpha + T_ + t)) ** (r + x) * hyp)
        return num / (1.0 + self._alive_odds(x, tx, T_))

    def expected_purchases_new(self, t: ArrayLike) -> Array:
        r, alpha, a, b = self._p()
        tt = np.asarray(t, dtype=float)
        hyp = hyp2f1(r, b + 1, a + b, tt / (alpha + tt))
        return b / (a - 1) * (1 - (alpha / (alpha + tt)) ** r * hyp)


class ParetoNBD(_ContinuousModel):
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987): Poisson purchases with Gamma(r,
    alpha) rates while alive, exponential lifetimes with Gamma(s, beta) dropout rates.
    Likelihood as in Fader, Hardie & Lee (2005, note 009), in log space."""

    param_names = ("r", "alpha", "s", "beta")
    initial = (0.5, 10.0, 0.5, 10.0)

    @staticmethod
    def _log_a0(
        r: float, alpha: float, s: float, beta: float, x: Array, tx: Array, T: Array
    ) -> Array:
        """log of (alpha+tx)^-(r+s+x) 2F1(..tx) - (alpha+T)^-(r+s+x) 2F1(..T), the
        integral over the unobserved death time, for the larger of alpha and beta."""
        big = max(alpha, beta)
        b2 = np.full_like(x, s + 1) if alpha >= beta else r + x
        c = r + s + x + 1
        z1 = abs(alpha - beta) / (big + tx)
        z2 = abs(alpha - beta) / (big + T)
        l1 = np.log(hyp2f1(r + s + x, b2, c, z1)) - (r + s + x) * np.log(big + tx)
        l2 = np.log(hyp2f1(r + s + x, b2, c, z2)) - (r + s + x) * np.log(big + T)
        return l1 + np.log1p(-np.exp(np.minimum(l2 - l1, -1e-16)))

    def _loglik(self, p: Array, x: Array, tx: Array, T: Array) -> Array:
        r, alpha, s, beta = p
        head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        dead = np.log(s) - np.log(r + s + x) + self._log_a0(r, alpha, s, beta, x, tx, T)
        return head + np.logaddexp(alive, dead)

    def prob_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
        r, alpha, s, beta = self._p()
        x, tx, T_ = _arrays(frequency, recency, T)
        ll = self._loglik(self._p(), x, tx, T_)
        head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        alive = -(r + x) * np.log(alpha + T_) - s * np.log(beta + T_)
        return np.exp(head + alive - ll)

    def expected_purchases(
        self, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """E[Y(t) | x, t_x, T] = P(alive) (r+x)(beta+T) / ((alpha+T)(s-1)) [1 - ((beta+T) /
        (beta+T+t))^(s-1)] (Schmittlein et al. 1987)."""
        r, alpha, s, beta = self._p()
        x, tx, T_ = _arrays(frequency, recency, T)
        if s <= 1:
            growth = (r + x) / (alpha + T_) * (beta + T_) * np.log((beta + T_ + t) / (beta + T_))
            if not np.isclose(s, 1):
                growth = (
                    (r + x)
                    * (beta + T_)
                    / ((alpha + T_) * (s - 1))
                    * (1 - ((beta + T_) / (beta + T_ + t)) ** (s - 1))
                )
        else:
            growth = (
                (r + x)
                * (beta + T_)
                / ((alpha + T_) * (s - 1))
                * (1 - ((beta + T_) / (beta + T_ + t)) ** (s - 1))
            )
        return self.prob_alive(x, tx, T_) * growth

    def expected_purchases_new(self, t: ArrayLike) -> Array:
        r, alpha, s, beta = self._p()
        tt = np.asarray(t, dtype=float)
        return r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + tt)) ** (s - 1))

    def prob_n_purchases(self, n: int, t: float) -> float:  # pragma: no cover - not published
        raise ModelError("prob_n_purchases is not available for Pareto/NBD yet.")


class BGBB(BaseFitter):
    """BG/BB (Fader, Hardie & Shang 2010): each period a Bernoulli(p) transaction while
    alive, Beta(alpha, beta) p; dropout with Beta(gamma, delta) probability per period."""

    param_names = ("alpha", "beta", "gamma", "delta")
    initial = (1.0, 1.0, 1.0, 1.0)

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        n_periods: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> BGBB:
        x, tx, n = _arrays(frequency, recency, n_periods)
        data, w = compress(x, tx, n, weights=weights)
        return self._fit(data, w)  # type: ignore[return-value]

    def _loglik(self, p: Array, x: Array, tx: Array, n: Array) -> Array:
        al, be, ga, de = p
        out = np.empty(len(x))
        for k in range(len(x)):
            xi, ti, ni = x[k], tx[k], n[k]
            terms = [
                betaln(al + xi, be + ni - xi)
                - betaln(al, be)
                + betaln(ga, de + ni)
                - betaln(ga, de)
            ]
            i = np.arange(int(ni - ti))
            terms.extend(
                betaln(al + xi, be + ti - xi + i)
                - betaln(al, be)
                + betaln(ga + 1, de + ti + i)
                - betaln(ga, de)
            )
            out[k] = logsumexp(terms)
        return out

    def prob_alive(
        self, frequency: ArrayLike, recency: ArrayLike, n_periods: ArrayLike, m: int = 1
    ) -> Array:
        """P(alive in period n + m | x, t_x, n)."""
        al, be, ga, de = self._p()
        x, tx, n = _arrays(frequency, recency, n_periods)
        ll = self._loglik(self._p(), x, tx, n)
        return np.exp(
            betaln(al + x, be + n - x)
            - betaln(al, be)
            + betaln(ga, de + n + m)
            - betaln(ga, de)
            - ll
        )

    def expected_purchases(
        self, t: int, frequency: ArrayLike, recency: ArrayLike, n_periods: ArrayLike
    ) -> Array:
        """E[transactions in periods n+1 .. n+t | x, t_x, n] (FHS10 eq. 13)."""
        al, be, ga, de = self._p()
        x, tx, n = _arrays(frequency, recency, n_periods)
        ll = self._loglik(self._p(), x, tx, n)
        log_part = (
            betaln(al + x + 1, be + n - x)
            - betaln(al, be)
            - ll
            + gammaln(ga + de)
            - gammaln(1 + de)
        )
        bracket = np.exp(gammaln(1 + de + n) - gammaln(ga + de + n)) - np.exp(
            gammaln(1 + de + n + t) - gammaln(ga + de + n + t)
        )
        # delta / (gamma - 1) and the bracket change sign together when gamma < 1
        return np.exp(log_part) * de / (ga - 1) * bracket

    def expected_purchases_new(self, n: ArrayLike) -> Array:
        """E[X(n)] for a newly acquired customer over n opportunities."""
        al, be, ga, de = self._p()
        nn = np.asarray(n, dtype=float)
        return (
            al
            / (al + be)
            * de
            / (ga - 1)
            * (
                1
                - np.exp(
                    gammaln(ga + de)
                    - gammaln(ga + de + nn)
                    + gammaln(1 + de + nn)
                    - gammaln(1 + de)
                )
            )
        )
