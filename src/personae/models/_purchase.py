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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.polynomial.chebyshev import chebval
from numpy.typing import ArrayLike, NDArray
from scipy import integrate, optimize
from scipy.special import betainc, betaln, digamma, gammaln, hyp2f1, logsumexp, polygamma

from personae.models._base import (
    CURVATURE_STEP,
    GRADIENT_STEP,
    Array,
    BaseFitter,
    ModelError,
    compress,
    unique_rows,
)

ROWS_PER_BLOCK = 32_768
CHEBYSHEV_NODES = 24  # per frequency, for the beta-geometric models' expected purchases
INTERPOLATED_PAIRS = 384  # from this many distinct times per frequency, Pareto/NBD interpolates
# the NBD limit is taken when its log-likelihood is within this of where the search stopped
LIMIT_TOLERANCE = 1e-3


def _arrays(*values: ArrayLike) -> list[Array]:
    return [np.asarray(v, dtype=float) for v in values]


def _nbd_pmf(r: float, alpha: float, t: float, n: int) -> float:
    """P(N(t) = n) for Poisson purchases at a Gamma(r, alpha) rate: negative binomial."""
    log_p = gammaln(r + n) - gammaln(r) - gammaln(n + 1) + r * np.log(alpha / (alpha + t))
    return float(np.exp(log_p + (n * np.log(t / (alpha + t)) if n else 0.0)))


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
    if not np.any(frequency > 0):
        raise ModelError(
            f"None of the {len(frequency):,} customers has a repeat purchase: the purchase "
            "models learn from repeat buying. Use a longer history (or RFM-based scores)."
        )


class PurchaseModel(BaseFitter):
    """A purchase model over continuous time: fit on (frequency, recency, T)."""

    def expected_purchases(
        self, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """E[purchases in (T, T + t] | x, t_x, T] per customer."""
        return self.expected_purchases_over([t], frequency, recency, T)[0]

    def expected_purchases_over(
        self, ts: Sequence[float], frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """expected_purchases for each horizon in ts (one row per horizon), sharing the
        work that does not depend on the horizon."""
        if self.limit_ is not None:
            return self._nbd.expected_purchases_over(ts, frequency, recency, T)
        return self._expected_over(ts, frequency, recency, T)

    def expected_purchases_weighted(
        self,
        ts: Sequence[float],
        weights: ArrayLike,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
    ) -> Array:
        """sum over k of weights_k expected_purchases(ts_k, ...) per customer: the
        discounted sum a CLV needs, without a row per horizon."""
        w = np.asarray(weights, dtype=float)
        if self.limit_ is not None:
            return self._nbd.expected_purchases_weighted(ts, w, frequency, recency, T)
        return self._expected_weighted(ts, w, frequency, recency, T)

    def _expected_weighted(
        self,
        ts: Sequence[float],
        weights: Array,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
    ) -> Array:
        return weights @ self._expected_over(ts, frequency, recency, T)

    def prob_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
        """P(alive | x, t_x, T) = 1 / (1 + odds of having dropped out)."""
        x, tx, t = _arrays(frequency, recency, T)
        if self.limit_ is not None:
            return np.ones(len(x))
        return self._prob_alive(x, tx, t)

    def expected_purchases_new(self, t: ArrayLike) -> Array:
        """E[X(t)] for a customer just acquired."""
        if self.limit_ is not None:
            return self._nbd.expected_purchases_new(t)
        return self._expected_new(t)

    def prob_n_purchases(self, n: int, t: float) -> float:
        """P(X(t) = n) for a customer just acquired."""
        if self.limit_ is not None:
            return self._nbd.prob_n_purchases(n, t)
        return self._prob_n(n, t)

    @property
    def _nbd(self) -> NBD:
        assert isinstance(self.limit_, NBD)
        return self.limit_

    def _expected_over(
        self, ts: Sequence[float], frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:  # pragma: no cover - every model has it
        raise NotImplementedError

    def _alive_odds(self, x: Array, tx: Array, T: Array) -> Array:  # pragma: no cover
        raise NotImplementedError

    def _prob_alive(self, x: Array, tx: Array, T: Array) -> Array:
        return 1.0 / (1.0 + self._alive_odds(x, tx, T))

    def _expected_new(self, t: ArrayLike) -> Array:  # pragma: no cover
        raise NotImplementedError

    def _prob_n(self, n: int, t: float) -> float:  # pragma: no cover
        raise NotImplementedError

    def _limit(
        self, data: Sequence[Array], weights: Array, best: optimize.OptimizeResult, n: float
    ) -> BaseFitter | None:
        """The NBD, when the search ran towards no dropout: the NBD is the limit of the model
        as the dropout probability goes to 0 (BG/NBD and MBG/NBD: a -> 0 or b -> inf;
        Pareto/NBD: s -> 0 or beta -> inf), so where the NBD's maximum is at least as likely
        as where the search stopped, the data identify no dropout and the NBD is the
        maximum likelihood estimate."""
        if not best.fun < 1e299:  # the search failed: nothing to compare with
            return None
        try:
            nbd = NBD(tol=self.tol, max_iter=self.max_iter)._fit(data, weights)
        except ModelError:
            return None
        return nbd if nbd.log_likelihood_ >= -best.fun * n - LIMIT_TOLERANCE else None

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> PurchaseModel:
        """Maximum likelihood on the unique (frequency, recency, T) rows; returns self."""
        x, tx, t = _arrays(frequency, recency, T)
        _check(x, tx, t)
        data, w = compress(x, tx, t, weights=weights)
        return self._fit(data, w)  # type: ignore[return-value]


class NBD(PurchaseModel):
    """NBD (Ehrenberg 1959; Morrison & Schmittlein 1988): Poisson purchases with Gamma(r,
    alpha) rates and nobody drops out. It is the limit of BG/NBD, MBG/NBD and Pareto/NBD as
    their dropout probability goes to 0, which those models become when the data show no
    dropout (see `PurchaseModel._limit`); P(alive) is 1."""

    param_names = ("r", "alpha")
    initial = (1.0, 1.0)
    exact_derivatives = True
    penalised = (("r", None),)

    def _loglik(self, p: Array, x: Array, tx: Array, T: Array) -> Array:
        r, alpha = p
        return gammaln(r + x) - gammaln(r) + r * np.log(alpha) - (r + x) * np.log(alpha + T)

    def _derivatives(
        self, p: Array, prepared: tuple[Sequence[Array], Array]
    ) -> tuple[float, Array, Array]:
        """Exact log-likelihood, gradient and Hessian in (r, alpha)."""
        r, alpha = p
        (x, _, T), w = prepared
        n, lT, iT = w.sum(), np.log(alpha + T), 1.0 / (alpha + T)
        ll = w @ (gammaln(r + x) - gammaln(r)) + n * r * np.log(alpha) - w @ ((r + x) * lT)
        grad = np.array(
            [
                w @ (digamma(r + x) - digamma(r)) + n * np.log(alpha) - w @ lT,
                n * r / alpha - w @ ((r + x) * iT),
            ]
        )
        r_alpha = n / alpha - w @ iT
        hess = np.array(
            [
                [w @ (polygamma(1, r + x) - polygamma(1, r)), r_alpha],
                [r_alpha, w @ ((r + x) * iT**2) - n * r / alpha**2],
            ]
        )
        return float(ll), grad, hess

    def _limit(
        self, data: Sequence[Array], weights: Array, best: optimize.OptimizeResult, n: float
    ) -> BaseFitter | None:
        return None  # the NBD is the limit

    def _expected_over(
        self, ts: Sequence[float], frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """E[purchases in (T, T + t] | x, T] = (r + x) / (alpha + T) t: the posterior mean
        rate times t (the time of the last purchase tells nothing when nobody drops out)."""
        r, alpha = self._p()
        x, _, T_ = _arrays(frequency, recency, T)
        rate = (r + x) / (alpha + T_)
        return np.vstack([rate * t for t in ts])

    def _alive_odds(self, x: Array, tx: Array, T: Array) -> Array:
        return np.zeros(len(x))

    def _expected_new(self, t: ArrayLike) -> Array:
        r, alpha = self._p()
        return r / alpha * np.asarray(t, dtype=float)

    def _prob_n(self, n: int, t: float) -> float:
        r, alpha = self._p()
        return _nbd_pmf(r, alpha, t, n)


class _BetaGeometricNBD(PurchaseModel):
    """What BG/NBD and MBG/NBD share: Poisson purchases with Gamma(r, alpha) rates and a
    Beta(a, b) chance of dropping out at purchases. `_shift` is 0 when that chance comes only
    after repeat purchases (BG/NBD), 1 when it comes after the first one too (MBG/NBD)."""

    param_names = ("r", "alpha", "a", "b")
    initial = (1.0, 1.0, 1.0, 1.0)
    exact_derivatives = True
    penalised = (("r", None), ("a", None), ("b", None))  # alpha is a time
    _shift: ClassVar[int]

    def _loglik(self, p: Array, x: Array, tx: Array, T: Array) -> Array:
        r, alpha, a, b = p
        o = self._shift
        head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x + o)
        alive = -(r + x) * np.log(alpha + T)
        dropped = (
            np.log(a) - np.log(np.maximum(b + x + o - 1, 1e-300)) - (r + x) * np.log(alpha + tx)
        )
        dropped = np.where(x + o > 0, dropped, -np.inf)
        return head - betaln(a, b) + np.logaddexp(alive, dropped)

    def _prepare(self, data: Sequence[Array], weights: Array) -> _Prepared:
        x, tx, T = data
        quiet = x + self._shift == 0  # BG/NBD's customers without repeat purchases
        if len(x) and np.all(x[1:] >= x[:-1]):  # sorted (compressed rows): a first stretch
            k = int(np.count_nonzero(quiet))
            split = (slice(None, k), slice(k, None))
        else:
            split = (quiet, ~quiet)
        head, rest = split
        ux, inv = _distinct(x[rest])
        return _Prepared(
            T0=T[head],
            w0=weights[head],
            x=x[rest],
            tx=tx[rest],
            T=T[rest],
            w=weights[rest],
            ux=ux,
            inv=inv,
            wx=np.bincount(inv, weights=weights[rest], minlength=len(ux)).astype(float),
        )

    def _derivatives(self, p: Array, d: _Prepared) -> tuple[float, Array, Array]:
        """Exact log-likelihood, gradient and Hessian. Per row the likelihood is head(x) *
        [alive + dropped]; with z = log(dropped / alive) it is log head - (r+x) log(alpha+T) +
        softplus(z), so the derivatives of softplus(z) bring in sigmoid(z) and its slope. The
        special functions depend on x alone and are evaluated once per distinct x."""
        r, alpha, a, b = p
        grad, upper = np.zeros(4), np.zeros((4, 4))  # upper: the upper triangle of the Hessian
        # customers whose likelihood is r log alpha - r log(alpha + T)
        la0, i0 = np.log(alpha + d.T0), 1.0 / (alpha + d.T0)
        n0 = d.w0.sum()
        ll = r * (n0 * np.log(alpha) - d.w0 @ la0)
        grad[:2] += n0 * np.log(alpha) - d.w0 @ la0, r * (n0 / alpha - d.w0 @ i0)
        upper[0, 1] += n0 / alpha - d.w0 @ i0
        upper[1, 1] += r * (d.w0 @ i0**2 - n0 / alpha**2)
        # everyone else: first the terms of x alone
        bx = b + d.ux + self._shift
        wx = d.wx
        ll += wx @ (gammaln(r + d.ux) - gammaln(r) + betaln(a, bx) - betaln(a, b))
        grad[0] += wx @ (digamma(r + d.ux) - digamma(r))
        grad[2] += wx @ (digamma(a + b) - digamma(a + bx))
        grad[3] += wx @ (digamma(bx) - digamma(a + bx) - digamma(b) + digamma(a + b))
        upper[0, 0] += wx @ (polygamma(1, r + d.ux) - polygamma(1, r))
        ab = wx @ (polygamma(1, a + b) - polygamma(1, a + bx))
        upper[2, 2] += ab
        upper[2, 3] += ab
        upper[3, 3] += wx @ (polygamma(1, bx) - polygamma(1, b)) + ab
        # then r log alpha for each of them
        n1 = d.w.sum()
        ll += n1 * r * np.log(alpha)
        grad[:2] += n1 * np.log(alpha), n1 * r / alpha
        upper[0, 1] += n1 / alpha
        upper[1, 1] -= n1 * r / alpha**2
        hess = upper + upper.T
        np.fill_diagonal(hess, np.diag(upper))
        # and the row terms, a block at a time: blocks that stay in the processor's cache
        # are about twice as fast as whole-column temporaries
        log_odds = np.log(a) - np.log(bx - 1)  # of dropped vs alive, before the rate term
        for start in range(0, len(d.w), ROWS_PER_BLOCK):
            rows = slice(start, start + ROWS_PER_BLOCK)
            inv = d.inv[rows]
            block = _row_terms(
                (r, alpha, a),
                d.w[rows],
                d.x[rows],
                d.tx[rows],
                d.T[rows],
                log_odds[inv],
                1.0 / (bx - 1)[inv],
            )
            ll += block[0]
            grad += block[1]
            hess += block[2]
        return float(ll), grad, hess

    def _expected_over(
        self, ts: Sequence[float], frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """E[purchases in (T, T + t] | x, t_x, T] (FHL05 eq. 10; MBG/NBD: Batislam et al.
        2007): the expected purchases of a customer still alive, over 1 + the odds of having
        dropped out. The hypergeometric term depends on (x, T) only and is evaluated once
        per distinct pair."""
        x, tx, T_ = _arrays(frequency, recency, T)
        (px, pT), at = unique_rows(x, T_)
        odds = 1.0 + self._alive_odds(x, tx, T_)
        return np.vstack([self._alive_sum([t], np.ones(1), px, pT)[at] / odds for t in ts])

    def _expected_weighted(
        self,
        ts: Sequence[float],
        weights: Array,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
    ) -> Array:
        x, tx, T_ = _arrays(frequency, recency, T)
        (px, pT), at = unique_rows(x, T_)
        odds = 1.0 + self._alive_odds(x, tx, T_)
        return self._alive_sum(ts, weights, px, pT)[at] / odds

    def _alive_exact(self, ts: Sequence[float], weights: Array, x: Array, T: Array) -> Array:
        """sum over k of weights_k E[purchases in (T, T + ts_k] | alive at T, x]."""
        r, alpha, a, b = self._p()
        o = self._shift
        out = np.zeros(len(T))
        for t, w in zip(ts, weights, strict=True):
            hyp = hyp2f1(r + x, b + x + o, a + b + x + o - 1, t / (alpha + T + t))
            shrink = ((alpha + T) / (alpha + T + t)) ** (r + x)
            out += w * ((a + b + x + o - 1) / (a - 1) * (1 - shrink * hyp))
        return out

    def _alive_sum(self, ts: Sequence[float], weights: Array, px: Array, pT: Array) -> Array:
        """_alive_exact for distinct (x, T) pairs sorted by x, then T. For an x with many
        distinct T (time in weeks with decimals: few ties) the sum is a smooth function of
        log(alpha + T), analytic in a strip of half-width pi around the real line: its
        Chebyshev interpolant on CHEBYSHEV_NODES points stands in for a hypergeometric
        function per pair and horizon, where it matches the exact sum to 1e-12 at the
        points between the nodes (else the exact sum is taken)."""
        alpha = self._p()[1]
        out = np.empty(len(px))
        n = CHEBYSHEV_NODES
        bounds = np.flatnonzero(np.diff(px)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(px)], strict=True):
            x, T = px[lo], pT[lo:hi]
            if hi - lo < 4 * n or not T[-1] > T[0]:
                out[lo:hi] = self._alive_exact(ts, weights, np.full(hi - lo, x), T)
                continue
            u = np.log(alpha + T)
            mid, half = (u[-1] + u[0]) / 2, (u[-1] - u[0]) / 2
            # Chebyshev points of the first kind, and the points halfway between them
            nodes = np.cos(np.pi * (np.arange(n) + 0.5) / n)
            checks = np.cos(np.pi * np.arange(1, n) / n)
            at = np.exp(mid + half * np.r_[nodes, checks]) - alpha
            exact = self._alive_exact(ts, weights, np.full(len(at), x), np.maximum(at, 0.0))
            coef = (
                2 / n * np.cos(np.pi * np.outer(np.arange(n), np.arange(n) + 0.5) / n) @ exact[:n]
            )
            coef[0] /= 2
            if np.max(np.abs(chebval(checks, coef) - exact[n:])) > 1e-12 * np.max(np.abs(exact)):
                out[lo:hi] = self._alive_exact(ts, weights, np.full(hi - lo, x), T)
                continue
            out[lo:hi] = chebval((u - mid) / half, coef)
        return out

    def _prob_n(self, n: int, t: float) -> float:
        """P(X(t) = n) for a customer just acquired (FHL05 eq. 8; for MBG/NBD the same
        reasoning with one more dropout chance): n purchases and still alive, or dropped out
        at the n-th chance having had time for at least n purchases."""
        r, alpha, a, b = self._p()
        o = self._shift
        survived = np.exp(betaln(a, b + n + o) - betaln(a, b)) * _nbd_pmf(r, alpha, t, n)
        if n + o == 0:
            return float(survived)
        # P(N(t) >= n) of the NBD count, as its tail (1 - the sum of P(N(t) = j < n) is
        # rounding noise, even below 0, once that sum is 1 to the last digit)
        at_least_n = betainc(n, r, t / (alpha + t)) if n else 1.0
        return float(survived + np.exp(betaln(a + 1, b + n + o - 1) - betaln(a, b)) * at_least_n)

    def _alive_odds(self, x: Array, tx: Array, T: Array) -> Array:
        r, alpha, a, b = self._p()
        o = self._shift
        with np.errstate(divide="ignore"):
            log_odds = (
                np.log(a)
                - np.log(np.maximum(b + x + o - 1, 1e-300))
                + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
            )
        return np.where(x + o > 0, np.exp(log_odds), 0.0)


def _row_terms(
    p: tuple[float, float, float],
    w: Array,
    x: Array,
    tx: Array,
    T: Array,
    log_odds: Array,
    ib: Array,
) -> tuple[float, Array, Array]:
    """The row part of the beta-geometric models' log-likelihood, -(r+x) log(alpha+T) +
    softplus(z) with z = log_odds + (r+x) log((alpha+T) / (alpha+tx)), with its gradient and
    Hessian in (r, alpha, a, b) (softplus' = sigmoid, sigmoid' = sigmoid (1 - sigmoid));
    ib is 1 / (b + x + shift - 1), the b-derivative of -log_odds. The Hessian's outer
    products are dot products of the row columns, most of the arithmetic in place: each
    pass over a block costs time, and this runs on every row at every Newton step."""
    r, alpha, a = p
    rx = x + r
    aT, aX = T + alpha, tx + alpha
    gap = np.divide(aT, aX)
    np.log(gap, out=gap)  # log((alpha+T) / (alpha+tx)): dz/dr
    lT = np.log(aT)
    iT, iX = np.reciprocal(aT, out=aT), np.reciprocal(aX, out=aX)
    d = iT - iX
    dz_alpha = rx * d
    z = rx * gap
    z += log_odds
    e = np.abs(z)
    np.negative(e, out=e)
    np.exp(e, out=e)  # exp(-|z|)
    q = e + 1.0
    np.reciprocal(q, out=q)
    eq = e * q
    ws = np.where(z >= 0, q, eq)  # sigmoid(z)
    ws *= w
    eq *= q  # sigmoid'(z) = e / (1 + e)^2
    wsl = eq
    wsl *= w
    np.log1p(e, out=e)
    np.maximum(z, 0.0, out=z)  # softplus(z) = max(z, 0) + log1p(e)
    wrx = w * rx
    ll = w @ z + w @ e - wrx @ lT
    sw = ws.sum()
    grad = np.array([ws @ gap - w @ lT, ws @ dz_alpha - wrx @ iT, sw / a, -(ws @ ib)])
    # sigmoid' times the outer product of dz = (gap, dz_alpha, 1/a, -ib)
    t, u, v = wsl * gap, wsl * dz_alpha, wsl * ib
    hess = np.empty((4, 4))
    hess[0] = t @ gap, t @ dz_alpha, t.sum() / a, -(t @ ib)
    hess[1, 1:] = u @ dz_alpha, u.sum() / a, -(u @ ib)
    hess[2, 2:] = wsl.sum() / a**2, -v.sum() / a
    hess[3, 3] = v @ ib
    # sigmoid times the second derivatives of z, and those of -(r+x) log(alpha+T)
    hess[0, 1] += ws @ d - w @ iT
    iX += iT
    iX *= dz_alpha  # rx (iT - iX)(iT + iX) = rx (iT^2 - iX^2)
    wrx *= iT
    hess[1, 1] += wrx @ iT - ws @ iX
    hess[2, 2] -= sw / a**2
    ws *= ib
    hess[3, 3] += ws @ ib
    hess[1:, 0] = hess[0, 1:]
    hess[2:, 1] = hess[1, 2:]
    hess[3, 2] = hess[2, 3]
    return float(ll), grad, hess


def _short_tail(coef: Array, tolerance: float) -> Array:
    """Chebyshev coefficients without the trailing ones whose absolute values sum to at
    most tolerance (|T_k| <= 1 on [-1, 1]: they move no value by more): an analytic
    function's coefficients fall geometrically, often to rounding well before the last."""
    tail = np.cumsum(np.abs(coef[::-1]))[::-1]  # tail[k]: the sum of |coef[k:]|
    return coef[: max(1, int(np.count_nonzero(tail > tolerance)))]


def _clenshaw(coef: Array, u: Array) -> Array:
    """sum over k of coef_k T_k(u) by Clenshaw's recurrence, in place (as chebval, without
    its three new arrays per coefficient)."""
    if len(coef) == 1:
        return np.full_like(u, coef[0])
    u2 = 2 * u
    b1, b2, tmp = np.full_like(u, coef[-1]), np.zeros_like(u), np.empty_like(u)
    for c in coef[-2:0:-1]:  # b_k = c_k + 2u b_k+1 - b_k+2, into the buffer of b_k+2
        b2 -= c
        np.multiply(u2, b1, out=tmp)
        np.subtract(tmp, b2, out=b2)
        b1, b2 = b2, b1
    np.multiply(u, b1, out=tmp)
    tmp -= b2
    tmp += coef[0]
    return tmp


def _distinct(x: Array) -> tuple[Array, NDArray[np.intp]]:
    """Distinct values of x and where each value of x sits among them; one pass when x is
    sorted (as compressed rows are: by frequency first)."""
    if len(x) and np.all(x[1:] >= x[:-1]):
        new = np.empty(len(x), dtype=bool)
        new[:1] = True
        np.not_equal(x[1:], x[:-1], out=new[1:])
        return x[new], (np.cumsum(new) - 1).astype(np.intp)
    ux, inv = np.unique(x, return_inverse=True)
    return ux, inv.astype(np.intp)


@dataclass(frozen=True)
class _ParetoData:
    """Pareto/NBD fitting rows as their weights and distinct (x, t_x) and (x, T) pairs."""

    w: Array
    x_tx: Array
    tx_u: Array
    at_tx: NDArray[np.intp]
    x_T: Array
    T_u: Array
    at_T: NDArray[np.intp]
    w_T: Array  # the weights of each (x, T) pair's rows
    ux: Array  # the distinct x of the (x, T) pairs and where each pair's x sits among them
    at_x: NDArray[np.intp]


@dataclass(frozen=True)
class _Prepared:
    """The fitting data of the beta-geometric models, split once per fit."""

    T0: Array  # customers without a dropout chance yet: their T and weights
    w0: Array
    x: Array  # the others: their rows, weights, distinct x and where each row's x sits
    tx: Array
    T: Array
    w: Array
    ux: Array
    inv: NDArray[np.intp]
    wx: Array


class BGNBD(_BetaGeometricNBD):
    """BG/NBD model (Fader, Hardie & Lee 2005): Poisson purchases with Gamma(r, alpha)
    rates; after each purchase the customer drops out with a Beta(a, b) probability."""

    _shift = 0

    def _expected_new(self, t: ArrayLike) -> Array:
        """E[X(t)] for a customer just acquired (FHL05 eq. 7)."""
        r, alpha, a, b = self._p()
        tt = np.asarray(t, dtype=float)
        hyp = hyp2f1(r, b, a + b - 1, tt / (alpha + tt))
        return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + tt)) ** r * hyp)


class ModifiedBGNBD(_BetaGeometricNBD):
    """MBG/NBD (Batislam, Denizel & Filiztekin 2007): as BG/NBD, but a customer may also
    drop out right after the first purchase, so P(alive | x = 0) < 1."""

    _shift = 1

    def _expected_new(self, t: ArrayLike) -> Array:
        r, alpha, a, b = self._p()
        tt = np.asarray(t, dtype=float)
        hyp = hyp2f1(r, b + 1, a + b, tt / (alpha + tt))
        return b / (a - 1) * (1 - (alpha / (alpha + tt)) ** r * hyp)


class ParetoNBD(PurchaseModel):
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987): Poisson purchases with Gamma(r,
    alpha) rates while alive, exponential lifetimes with Gamma(s, beta) dropout rates.
    Likelihood as in Fader, Hardie & Lee (2005, note 009), in log space."""

    param_names = ("r", "alpha", "s", "beta")
    initial = (0.5, 10.0, 0.5, 10.0)
    # alpha and beta are times: only their ratio is free of the time unit
    penalised = (("r", None), ("s", None), ("beta", "alpha"))
    # fitted by Newton steps like the others, with derivatives by differences (see
    # _derivatives): the hypergeometric terms have no closed-form derivatives in r and s
    exact_derivatives = True
    costly_derivatives = True
    # the likelihoods of the last forward gradient (data, where), for a central one there
    _forward: tuple[tuple[int, bytes], Array] | None = None

    def _start(self, data: Sequence[Array], weights: Array) -> Array | None:
        """Scales from the data: purchase rates r / alpha of the mean repeat purchases per
        unit of age, dropout rates s / beta of one per mean age (the shapes 1), so that the
        first search does not spend its steps finding the time unit."""
        x, _, T = data
        n = weights.sum()
        mean_T, mean_x = float(weights @ T) / n, float(weights @ x) / n
        if not (mean_T > 0 and mean_x > 0):
            return None
        return np.array([1.0, mean_T / mean_x, 1.0, mean_T])

    def _derivatives(self, p: Array, d: _ParetoData) -> tuple[float, Array, Array]:
        """Log-likelihood, gradient and Hessian in the natural parameters by differences in
        the log-parameters with the Hessian's step (see _log_curvature): 15 evaluations of
        the likelihood, where a quasi-Newton search takes hundreds. For the searches on the
        warm-start samples, which stop at a decrement of 1e-6: the gradient's error (~1e-7)
        moves their estimates by ~1e-4, little beside their distance (~0.1) from the full
        data's maximum, which the full data's search finds with a finer gradient."""
        ll = self._total(p, d)
        h_log, up, down = self._log_curvature(p, d, ll)
        g_log = (up - down) / (2 * CURVATURE_STEP)
        return ll, g_log / p, np.asarray((h_log - np.diag(g_log)) / np.outer(p, p))

    def _log_gradient(
        self, p: Array, d: _ParetoData, precise: bool = True, ll: float | None = None
    ) -> Array:
        """Gradient in the log-parameters by central differences (8 likelihoods), or by
        forward ones (4, and the log-likelihood ll at p) when the search is still far."""
        y, h = np.log(p), GRADIENT_STEP
        eye = np.eye(len(y))
        key = (id(d), p.tobytes())
        if self._forward is not None and self._forward[0] == key:
            up = self._forward[1]  # a forward gradient here found the search near: reused
        else:
            up = np.array([self._total(np.exp(y + h * e), d) for e in eye])
        if not precise:
            self._forward = (key, up)
            return (up - (self._total(p, d) if ll is None else ll)) / h
        return (up - np.array([self._total(np.exp(y - h * e), d) for e in eye])) / (2 * h)

    def _hessian_at(self, p: Array, d: _ParetoData, ll: float, g_log: Array) -> Array:
        """Hessian in the natural parameters given the log-likelihood and its gradient in
        the log-parameters at p (14 likelihoods)."""
        h_log = self._log_curvature(p, d, ll)[0]
        # back to the natural parameters: d/dlog(p) = p d/dp
        return np.asarray((h_log - np.diag(g_log)) / np.outer(p, p))

    def _log_curvature(self, p: Array, d: _ParetoData, ll: float) -> tuple[Array, Array, Array]:
        """Hessian in the log-parameters given the log-likelihood ll at p, by differences
        with a larger step than the gradient's (the curvature only shapes the steps and the
        standard errors, and the rounding of the sum of a million terms would swamp a small
        step's second differences): 14 likelihoods; with those one step up and one down in
        each log-parameter."""
        y = np.log(p)
        k = len(y)

        def f(step: Array) -> float:
            return self._total(np.exp(y + step), d)

        eye = np.eye(k)
        up = np.array([f(CURVATURE_STEP * e) for e in eye])
        down = np.array([f(-CURVATURE_STEP * e) for e in eye])
        h_log = np.diag((up - 2 * ll + down) / CURVATURE_STEP**2)
        for i in range(k):
            for j in range(i + 1, k):
                both = f(CURVATURE_STEP * (eye[i] + eye[j]))
                h_log[i, j] = h_log[j, i] = (both - up[i] - up[j] + ll) / CURVATURE_STEP**2
        return h_log, up, down

    @staticmethod
    def _log_death_term(p: Array, x: Array, t: Array) -> Array:
        """log of 2F1(r+s+x, b; r+s+x+1; |alpha-beta| / (m+t)) / (m+t)^(r+s+x), with m the
        larger of alpha and beta and b = s+1 (alpha >= beta) or r+x: the integral over the
        unobserved time of death from t on, up to constants. It depends on (x, t) only."""
        r, alpha, s, beta = p
        big = max(alpha, beta)
        b = np.full_like(x, s + 1) if alpha >= beta else r + x
        z = abs(alpha - beta) / (big + t)
        return np.log(hyp2f1(r + s + x, b, r + s + x + 1, z)) - (r + s + x) * np.log(big + t)

    @staticmethod
    def _log_death_sorted(p: Array, x: Array, t: Array) -> Array:
        """_log_death_term of (x, t) pairs sorted by x, then t. With m and b as there,
        the term is G(w) - (r+s+x) log(m+t) where G = log 2F1(r+s+x, b; r+s+x+1; 1 - e^w)
        and w = log((min(alpha, beta) + t) / (m + t)): for an x with many distinct t (times
        with decimals) G is a smooth function of w, analytic in a strip of half-width pi
        around the real line, and its Chebyshev interpolant on CHEBYSHEV_NODES points
        stands in for a hypergeometric function per pair where it matches G to 1e-13
        (relative) at the points between the nodes (else G itself is taken)."""
        r, alpha, s, beta = p
        big, small = max(alpha, beta), min(alpha, beta)
        log_big = np.log(big + t)
        a = r + s + x
        out = np.empty(len(x))
        n = CHEBYSHEV_NODES
        nodes = np.cos(np.pi * (np.arange(n) + 0.5) / n)
        checks = np.cos(np.pi * np.arange(1, n) / n)
        points = np.r_[nodes, checks]
        cosines = 2 / n * np.cos(np.pi * np.outer(np.arange(n), np.arange(n) + 0.5) / n)
        at_checks = np.cos(np.outer(np.arccos(checks), np.arange(n)))  # T_k at the checks
        left = np.ones(len(x), dtype=bool)  # the pairs for the hypergeometric function
        bounds = np.flatnonzero(np.diff(x)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(x)], strict=True):
            if hi - lo < INTERPOLATED_PAIRS:  # fewer: the function itself is cheaper
                continue
            ai = a[lo]
            bi = s + 1 if alpha >= beta else r + x[lo]
            rows = slice(lo, hi)
            z = (big - small) / (big + t[rows])
            if not z[0] > z[-1] > 0:
                continue
            w = np.log1p(-z)
            mid, half = (w[-1] + w[0]) / 2, (w[-1] - w[0]) / 2
            at = -np.expm1(mid + half * points)  # z at the nodes
            exact = np.log(hyp2f1(ai, bi, ai + 1, at))
            coef = cosines @ exact[:n]
            coef[0] /= 2
            scale = max(1.0, float(np.max(np.abs(exact))))
            coef = _short_tail(coef, 1e-14 * scale)
            error = np.max(np.abs(at_checks[:, : len(coef)] @ coef - exact[n:]))
            if error <= 1e-13 * scale:
                w -= mid
                w /= half
                values = _clenshaw(coef, w)
                values -= ai * log_big[rows]
                out[rows] = values
                left[rows] = False
        rest = np.flatnonzero(left)
        out[rest] = ParetoNBD._log_death_term(p, x[rest], t[rest])
        return out

    @classmethod
    def _terms_at_T(
        cls,
        p: Array,
        x: Array,
        T: Array,
        death: Array | None = None,
        rate_head: Array | None = None,
    ) -> tuple[Array, Array, Array]:
        """The terms that depend on (x, T) only: log of the constant part of the
        likelihood with s / (r+s+x), of being alive at T relative to it, and the death term
        at T (computed here unless given, as is rate_head, gammaln(r+x) - gammaln(r))."""
        r, alpha, s, beta = p
        if rate_head is None:
            rate_head = gammaln(r + x) - gammaln(r)
        to_dead = np.log(s) - np.log(r + s + x)
        head = rate_head + r * np.log(alpha) + s * np.log(beta) + to_dead
        alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T) - to_dead
        return head, alive, cls._log_death_term(p, x, T) if death is None else death

    @staticmethod
    def _row_loglik(at_T: tuple[Array, Array, Array], death_at_tx: Array) -> Array:
        """Per-row log-likelihood: alive at T, or dead between the last purchase and T
        (the death terms at t_x minus those at T)."""
        head, alive, death_at_T = at_T
        dead = death_at_tx + np.log1p(-np.exp(np.minimum(death_at_T - death_at_tx, -1e-16)))
        return head + np.logaddexp(alive, dead)

    def _loglik(self, p: Array, x: Array, tx: Array, T: Array) -> Array:
        return self._row_loglik(self._terms_at_T(p, x, T), self._log_death_term(p, x, tx))

    def _prepare(self, data: Sequence[Array], weights: Array) -> _ParetoData:
        self._forward = None
        x, tx, T = data
        (x_tx, tx_u), at_tx = unique_rows(x, tx)
        (x_T, T_u), at_T = unique_rows(x, T)
        w_T = np.bincount(at_T, weights=weights, minlength=len(T_u)).astype(float)
        ux, at_x = _distinct(x_T)
        return _ParetoData(weights, x_tx, tx_u, at_tx, x_T, T_u, at_T, w_T, ux, at_x)

    def _total(self, params: Array, d: _ParetoData) -> float:
        """As the sum of _loglik, with the costly hypergeometric terms evaluated once per
        distinct (x, t_x) and (x, T) pair: with counts and days there are a few per cent as
        many pairs as customers."""
        death_tx, (head, alive, death_T) = self._pair_terms(params, d)
        if not self._newton_search:
            # the quasi-Newton search on few rows keeps the arithmetic it always had: where
            # the likelihood is flat, the edge it stops at depends on the last digits
            total = 0.0
            for start in range(0, len(d.w), ROWS_PER_BLOCK):
                rows = slice(start, start + ROWS_PER_BLOCK)
                at = d.at_T[rows]
                block = self._row_loglik(
                    (head[at], alive[at], death_T[at]), death_tx[d.at_tx[rows]]
                )
                total += float(d.w[rows] @ block)
            return total
        # per row head + logaddexp(alive, dead) = head + alive + softplus(dead - alive):
        # head + alive depends on (x, T) alone, summed once per pair with its rows' weights
        total = float((head + alive) @ d.w_T)
        for start in range(0, len(d.w), ROWS_PER_BLOCK):  # blocks that stay in cache
            rows = slice(start, start + ROWS_PER_BLOCK)
            at = d.at_T[rows]
            dead = death_tx[d.at_tx[rows]]
            gap = death_T[at]
            gap -= dead
            np.minimum(gap, -1e-16, out=gap)
            np.exp(gap, out=gap)
            np.negative(gap, out=gap)
            dead += np.log1p(gap, out=gap)
            dead -= alive[at]  # now dead - alive
            soft = np.abs(dead)  # softplus(dead - alive), in place
            np.negative(soft, out=soft)
            np.exp(soft, out=soft)
            np.log1p(soft, out=soft)
            np.maximum(dead, 0, out=dead)
            w = d.w[rows]
            total += float(w @ soft) + float(w @ dead)
        return total

    def _pair_terms(
        self, params: Array, d: _ParetoData
    ) -> tuple[Array, tuple[Array, Array, Array]]:
        """The death terms at each distinct (x, t_x) and the terms at each distinct (x, T)
        (both sorted by x, then time)."""
        death_T = self._log_death_sorted(params, d.x_T, d.T_u)
        r = params[0]
        rate_head = (gammaln(r + d.ux) - gammaln(r))[d.at_x]  # once per distinct x
        return (
            self._log_death_sorted(params, d.x_tx, d.tx_u),
            self._terms_at_T(params, d.x_T, d.T_u, death_T, rate_head),
        )

    def _prob_alive(self, x: Array, tx: Array, T_: Array) -> Array:
        """P(alive | x, t_x, T): the alive part of the likelihood over all of it, with the
        hypergeometric terms evaluated once per distinct (x, t_x) and (x, T) pair."""
        d = self._prepare([x, tx, T_], np.ones(len(x)))
        at_tx, at_T = self._pair_terms(self._p(), d)
        head, alive, death = (t[d.at_T] for t in at_T)
        ll = self._row_loglik((head, alive, death), at_tx[d.at_tx])
        return np.exp(head + alive - ll)

    def _expected_over(
        self, ts: Sequence[float], frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """E[Y(t) | x, t_x, T] = P(alive) (r+x)(beta+T) / ((alpha+T)(s-1)) [1 - ((beta+T) /
        (beta+T+t))^(s-1)] (Schmittlein et al. 1987); P(alive) is computed once."""
        r, alpha, s, beta = self._p()
        x, tx, T_ = _arrays(frequency, recency, T)
        alive = self._prob_alive(x, tx, T_)
        rate = (r + x) * (beta + T_) / (alpha + T_)  # purchases per unit of log-survival
        rows = []
        for t in ts:
            if np.isclose(s, 1):
                growth = np.log((beta + T_ + t) / (beta + T_))
            else:
                growth = (1 - ((beta + T_) / (beta + T_ + t)) ** (s - 1)) / (s - 1)
            rows.append(alive * rate * growth)
        return np.vstack(rows)

    def _expected_new(self, t: ArrayLike) -> Array:
        r, alpha, s, beta = self._p()
        tt = np.asarray(t, dtype=float)
        return r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + tt)) ** (s - 1))

    def _prob_n(self, n: int, t: float) -> float:
        """P(X(t) = n) for a customer just acquired: n purchases (an NBD count) while alive
        through t, or over (0, tau) for a death at tau < t, integrated over the
        Pareto-distributed time of death (one-dimensional adaptive quadrature)."""
        r, alpha, s, beta = self._p()

        def death_density(tau: float) -> float:
            return float(s / beta * (beta / (beta + tau)) ** (s + 1))

        dead, _ = integrate.quad(lambda tau: _nbd_pmf(r, alpha, tau, n) * death_density(tau), 0, t)
        return float(_nbd_pmf(r, alpha, t, n) * (beta / (beta + t)) ** s + dead)


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

    def prob_n_purchases(self, x: int, n: int) -> float:
        """P(X(n) = x) for a newly acquired customer over n opportunities (FHS10 eq. 8):
        alive through all n with x transactions, or dropped out after opportunity i >= x
        with x transactions in the first i."""
        al, be, ga, de = self._p()
        i = np.arange(x, n)
        log_choose = gammaln(n + 1) - gammaln(x + 1) - gammaln(n - x + 1)
        alive = np.exp(
            log_choose
            + betaln(al + x, be + n - x)
            - betaln(al, be)
            + betaln(ga, de + n)
            - betaln(ga, de)
        )
        dropped = np.exp(
            gammaln(i + 1)
            - gammaln(x + 1)
            - gammaln(i - x + 1)
            + betaln(al + x, be + i - x)
            - betaln(al, be)
            + betaln(ga + 1, de + i)
            - betaln(ga, de)
        )
        return float(alive + dropped.sum())
