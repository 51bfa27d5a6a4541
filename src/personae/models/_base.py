"""Shared machinery of the buy-till-you-die and spend models: maximum likelihood on the
compressed unique rows with weights, in log-parameter space, standard errors from the Hessian,
and errors that say what to try when an estimate is unusable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize
from threadpoolctl import ThreadpoolController

from personae.errors import PersonaeError

Array = NDArray[np.float64]
LOG_LOW, LOG_HIGH = np.log(1e-8), np.log(1e6)
WARM_START_ROWS = 50_000  # above this many unique rows, fits start from a sample's estimate
MAX_RELATIVE_SE = 50.0  # a standard error beyond 50 times the estimate: not identified
NEWTON_DECREMENT = 1e-12  # below this, no Newton step can improve the mean log-likelihood
# Newton with exact derivatives stops below this decrement when the next step is shorter
# than LAST_STEP (in log-parameters) and takes that step for free: it lands about the square
# of its length from the maximum (3e-7 after a step of 1.3e-3 on 880,459 customers), well
# within the 1e-4 (relative) the estimates are held to
EXACT_DECREMENT = 1e-6
LAST_STEP = 3e-3
# a costly model's curvature measured within this of its estimate (in log-parameters) is
# taken for the standard errors
CURVATURE_REUSE = 5e-3
FRESH_DECREMENT = 1e-10  # where a costly model may stop with such a curvature
# a warm start's sample stops sooner: its estimate is ~1/sample size away from the full data's
SAMPLE_DECREMENT = 1e-8
COSTLY_SAMPLE_DECREMENT = 1e-6
# the first of two samples only starts the second, whose estimate is ~0.1 (in
# log-parameters) from it: a decrement of 1e-3 is close enough (steps of a few hundredths)
FIRST_SAMPLE_DECREMENT = 1e-3
COSTLY_NEWTON_STEPS = 15  # sooner still where a Newton step costs 23 likelihoods
SUGGESTED_PENALIZER = 0.1  # what the errors suggest: a normal prior with sd 2.2 on log shapes


# Pareto/NBD's derivatives by differences in the log-parameters: the steps
GRADIENT_STEP, CURVATURE_STEP = 2e-5, 1e-3
FAR_DECREMENT = 1e-6  # above this Newton decrement, forward differences are close enough


class ModelError(PersonaeError):
    """A model could not be fitted or used; the message says what to try."""


def unique_rows(*columns: ArrayLike) -> tuple[list[Array], NDArray[np.intp]]:
    """Unique rows of the given columns, sorted by the first column, then the next, ..., and
    for each input row the position of its unique row."""
    cols = [np.asarray(c, dtype=float) for c in columns]
    n = len(cols[0])
    if n == 0:
        return [c[:0] for c in cols], np.zeros(0, dtype=np.intp)
    new = _changes_if_sorted(cols)
    if new is not None:  # already in order (the rows of compress): no sort
        return [c[new] for c in cols], np.cumsum(new) - 1
    packed = _pack(cols)
    if packed is not None:  # one sort of packed integers: the common case of counts and days
        order = np.argsort(packed[0])
        new = np.ones(n, dtype=bool)
        new[1:] = np.diff(packed[0][order]) != 0
        unique = _unpack(packed[0][order][new], packed[1])
    else:
        order = np.lexsort(cols[::-1])
        sorted_cols = [c[order] for c in cols]
        new = np.ones(n, dtype=bool)
        new[1:] = np.any([np.diff(c) != 0 for c in sorted_cols], axis=0)
        unique = [c[new] for c in sorted_cols]
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    return unique, inverse


def _changes_if_sorted(cols: Sequence[Array]) -> NDArray[np.bool_] | None:
    """Where each row differs from the one before (True for the first) when the rows are
    sorted by the first column, then the next, ...; None when they are not."""
    undecided = np.ones(len(cols[0]) - 1, dtype=bool)  # equal to the row before so far
    for c in cols:
        step = np.diff(c)
        if np.any(undecided & (step < 0)):
            return None
        undecided &= step == 0
    return np.r_[True, ~undecided]


def compress(*columns: ArrayLike, weights: ArrayLike | None = None) -> tuple[list[Array], Array]:
    """Unique rows of the given columns and how many customers share each (their weights)."""
    cols = [np.asarray(c, dtype=float) for c in columns]
    packed = _pack(cols) if len(cols[0]) else None
    if packed is not None and weights is None:
        keys, counts = np.unique(packed[0], return_counts=True)
        return _unpack(keys, packed[1]), counts.astype(float)
    unique, inverse = unique_rows(*cols)
    w = None if weights is None else np.asarray(weights, dtype=float)
    return unique, np.bincount(inverse, weights=w, minlength=len(unique[0])).astype(float)


DECIMAL_SCALES = (1, 10, 100, 1000, 10_000)  # decimals a column may have and still be packed


def _pack(cols: Sequence[Array]) -> tuple[NDArray[np.int64], list[tuple[int, int]]] | None:
    """Columns of non-negative numbers with at most four decimals (counts, days, weeks
    rounded to two decimals) packed into one order-keeping int64 key, with each column's
    (radix, decimal scale); None when they have more decimals or do not fit."""
    key = np.zeros(len(cols[0]), dtype=np.int64)
    radices, span = [], 1
    for c in cols:
        low, high = float(c.min()), float(c.max())
        if not (low >= 0 and high < 2**40):
            return None
        found = _decimal_digits(c, high)
        if found is None:
            return None
        scale, digits = found
        radices.append((int(round(high * scale)) + 1, scale))
        span *= radices[-1][0]
        if span >= 2**62:
            return None
        key *= radices[-1][0]
        key += digits
    return key, radices


def _decimal_digits(c: Array, high: float) -> tuple[int, NDArray[np.int64]] | None:
    """The smallest power of ten that makes every value of c a whole number such that
    c == whole / scale exactly (so that unpacking gives back the same floats), with those
    whole numbers; None when there is none."""
    head = c[:1000]
    for scale in DECIMAL_SCALES:
        if scale == 1:
            if np.array_equal(head, np.floor(head)):
                digits = c.astype(np.int64)
                if np.array_equal(digits, c):
                    return 1, digits
        elif np.array_equal(np.round(head * scale) / scale, head) and high * scale < 2**52:
            whole = c * scale
            np.round(whole, out=whole)
            digits = whole.astype(np.int64)
            whole /= scale
            if np.array_equal(whole, c):
                return scale, digits
    return None


def _unpack(keys: NDArray[np.int64], radices: list[tuple[int, int]]) -> list[Array]:
    """The columns packed in keys. Keys below 2^52 are split in floating point, where the
    quotients of whole numbers round to the right side of every integer (and are several
    times faster than the processor's integer division)."""
    cols = []
    if int(np.prod([radix for radix, _ in radices], dtype=object)) < 2**52:
        rest = keys.astype(float)
        for radix, scale in reversed(radices):
            high = rest / radix
            np.floor(high, out=high)
            rest -= high * radix  # the digit
            cols.append(rest if scale == 1 else rest / scale)
            rest = high
        return cols[::-1]
    for radix, scale in reversed(radices):
        keys, digit = np.divmod(keys, radix)
        cols.append(digit.astype(float) if scale == 1 else digit / scale)
    return cols[::-1]


def one_blas_thread() -> Any:
    """A context in which BLAS (numpy's dot products and matrix products) runs on one
    thread: the fits' dot products are short and many, and BLAS threads that wait for a busy
    core cost more than they bring (5x the time of a BG/NBD fit on a loaded 2-core machine)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


_CONTROLLER: ThreadpoolController | None = None


class BaseFitter:
    """Maximum likelihood over positive parameters. Subclasses give `param_names` and
    `_loglik(params, *data) -> per-row log-likelihood`; a model that also has analytic
    derivatives gives `_prepare` and `_derivatives` and is fitted by Newton steps."""

    param_names: ClassVar[tuple[str, ...]] = ()
    initial: ClassVar[tuple[float, ...]] = ()
    remedy: ClassVar[str] = "a longer history or the other purchase models"
    # what the penalizer shrinks: (parameter, None) shrinks log(parameter) towards 0 (the
    # parameter towards 1), (parameter, other) shrinks log(parameter / other) towards 0. Only
    # unit-free quantities: shape parameters and ratios of two scales, never a scale alone, so
    # the penalty is the same in days, weeks or any currency. Default: every parameter.
    penalised: ClassVar[tuple[tuple[str, str | None], ...] | None] = None

    def __init__(self, penalizer: float = 0.0, tol: float = 1e-10, max_iter: int = 2000) -> None:
        self.penalizer = penalizer
        self.tol = tol
        self.max_iter = max_iter

    def _penalty_matrix(self) -> Array:
        """P with penalizer * |P log(params)|^2 the penalty on the total log-likelihood: the
        negative log of independent normal priors, each with variance 1 / (2 penalizer), on the
        log of the shapes and of the ratios of scales in `penalised`."""
        k = len(self.param_names)
        pairs = self.penalised or tuple((name, None) for name in self.param_names)
        rows = np.zeros((len(pairs), k))
        for i, (name, other) in enumerate(pairs):
            rows[i, self.param_names.index(name)] = 1.0
            if other is not None:
                rows[i, self.param_names.index(other)] = -1.0
        return rows.T @ rows  # the penalty is penalizer * y' (P'P) y in y = log(params)

    # provided by each model: (params, *data columns) -> per-row log-likelihood
    _loglik: Callable[..., Array]
    # learned by fit
    params_: dict[str, float]
    log_likelihood_: float
    standard_errors_: dict[str, float]
    covariance_: Array
    n_customers_: float
    # the fitted limit of the model when its likelihood is highest at an edge (see _limit)
    limit_: BaseFitter | None = None
    limit_reason_: str | None = None
    # whether the model gives `_derivatives`, and whether they cost many likelihoods
    exact_derivatives: ClassVar[bool] = False
    costly_derivatives: ClassVar[bool] = False
    _newton_search = False  # whether this fit searches by Newton steps

    def _prepare(self, data: Sequence[Array], weights: Array) -> Any:
        """The data as `_total` and `_derivatives` want them, worked out once per fit."""
        return data, weights

    def _derivatives(self, params: Array, prepared: Any) -> tuple[float, Array, Array]:
        """Total log-likelihood, its gradient and its Hessian in the natural parameters."""
        raise NotImplementedError

    # -- fitting ---------------------------------------------------------------------------
    def _total(self, params: Array, prepared: Any) -> float:
        """Total log-likelihood of the prepared data (the search of models without exact
        derivatives; the others have it from `_derivatives`)."""
        data, weights = prepared
        return float(np.sum(weights * self._loglik(params, *data)))

    def _fit(self, data: Sequence[Array], weights: Array) -> BaseFitter:
        with one_blas_thread():
            return self._fit_unique(data, weights)

    def _fit_unique(self, data: Sequence[Array], weights: Array) -> BaseFitter:
        n = float(weights.sum())
        if n == 0:
            raise ModelError(f"{type(self).__name__}: no customers to fit.")
        self.limit_, self.limit_reason_ = None, None
        # derivatives by differences pay off on many rows; on few, the quasi-Newton search
        # costs little and decides the edges the likelihood may run to, as it always has
        self._newton_search = self.exact_derivatives and (
            not self.costly_derivatives or len(weights) > WARM_START_ROWS
        )
        x0 = np.log(np.asarray(self.initial, dtype=float))
        curvature = None
        if len(weights) > WARM_START_ROWS:
            start_values = self._start(data, weights)
            if start_values is not None:
                x0 = np.log(start_values)
            # the first, long stretch of the search on a random ~25,000 customers; the full
            # data then only take the last few steps (Newton) or iterations (quasi-Newton).
            # Derivatives by differences make every Newton step 23 likelihoods: there the
            # longest stretch goes on ~2,500 customers first.
            cumulative = np.cumsum(weights)
            stages = [(WARM_START_ROWS // 2, SAMPLE_DECREMENT)]
            if self.costly_derivatives:
                stages = [
                    (WARM_START_ROWS // 20, FIRST_SAMPLE_DECREMENT),
                    (WARM_START_ROWS // 2, COSTLY_SAMPLE_DECREMENT),
                ]
            for size, decrement in stages:
                # size customers drawn with replacement: their rows (in order) and counts
                drawn = np.sort(np.random.default_rng(0).uniform(0, cumulative[-1], size))
                keep, counts = np.unique(
                    np.searchsorted(cumulative, drawn, side="right"), return_counts=True
                )
                sample_data = self._prepare([c[keep] for c in data], counts.astype(float))
                start = self._maximise(
                    sample_data,
                    float(size),
                    x0,
                    decrement,
                )
                if self.costly_derivatives and not start.success:
                    break  # no maximum near: the quasi-Newton search on all rows decides
                if start.fun < 1e299 and np.all((start.x > LOG_LOW) & (start.x < LOG_HIGH)):
                    x0 = start.x
                    curvature = _curvature(start, float(size))
        prepared = self._prepare(data, weights)
        best = None
        if self.costly_derivatives and self._newton_search and curvature is not None:
            best = self._chord(x0, prepared, n, curvature)
        if best is None or not best.success:
            if self.costly_derivatives and self._newton_search:
                # no maximum near the samples': the quasi-Newton search from the initial
                # values decides which edge the likelihood runs to, as on few rows (Newton
                # steps of 23 likelihoods towards an edge would take longer still)
                self._newton_search = False
                x0 = np.log(np.asarray(self.initial, dtype=float))
            best = self._maximise(prepared, n, x0)
        params = np.exp(best.x)
        try:
            self._refuse_failed_or_at_bound(best, params)
            with np.errstate(all="ignore"):
                ll, grad, hess = best.get("derivatives") or self._total_derivatives(
                    params, prepared
                )
            self._store_covariance(hess, params, grad)
            self._refuse_vague(params)
        except ModelError as err:
            # where the likelihood is highest at an edge of the parameter space, the model's
            # limit there (if it has one) is the estimate: e.g. no dropout for the purchase
            # models. A penalised fit asked for an interior estimate: no limit then.
            limit = None if self.penalizer else self._limit(data, weights, best, n)
            if limit is None:
                raise
            return self._adopt_limit(limit, err)
        self.params_ = dict(zip(self.param_names, (float(p) for p in params), strict=True))
        self.log_likelihood_ = float(ll)
        self.n_customers_ = n
        return self

    def _limit(
        self, data: Sequence[Array], weights: Array, best: optimize.OptimizeResult, n: float
    ) -> BaseFitter | None:
        """The model's limit at the edge the search ran to, fitted, when it is at least as
        likely as the point the search stopped at; None when the model has no such limit."""
        return None

    def _adopt_limit(self, limit: BaseFitter, err: ModelError) -> BaseFitter:
        """Take the limit's estimate (its parameters, likelihood and covariance)."""
        self.limit_ = limit
        self.params_ = dict(limit.params_)
        self.log_likelihood_ = limit.log_likelihood_
        self.standard_errors_ = dict(limit.standard_errors_)
        self.covariance_ = limit.covariance_
        self.n_customers_ = limit.n_customers_
        self.limit_reason_ = str(err)
        return self

    def _start(self, data: Sequence[Array], weights: Array) -> Array | None:
        """Where the search on many rows starts, from the data (None: `initial`)."""
        return None

    def _log_gradient(
        self, p: Array, prepared: Any, precise: bool = True, ll: float | None = None
    ) -> Array:
        """Gradient in the log-parameters (models with costly derivatives)."""
        raise NotImplementedError

    def _hessian_at(self, p: Array, prepared: Any, ll: float, g_log: Array) -> Array:
        """Hessian in the natural parameters given the log-likelihood and its gradient in
        the log-parameters (models with costly derivatives)."""
        raise NotImplementedError

    def _total_derivatives(self, params: Array, prepared: Any) -> tuple[float, Array, Array]:
        """Total log-likelihood with its gradient (zeros where nobody needs it: an
        unpenalised fit of a model without exact derivatives) and Hessian at params."""
        if self._newton_search:
            return self._derivatives(params, prepared)
        grad = self._gradient(params, prepared) if self.penalizer else np.zeros(len(params))
        return self._total(params, prepared), grad, self._hessian(params, prepared)

    def _refuse_failed_or_at_bound(self, best: optimize.OptimizeResult, params: Array) -> None:
        if not np.all(np.isfinite(params)) or best.fun >= 1e299:
            raise ModelError(
                f"{type(self).__name__}: the optimiser failed ({best.message}): the "
                "log-likelihood is not finite anywhere it looked. Check the data for customers "
                "with extreme or infinite values (e.g. a time since the first purchase of "
                "thousands of years: a wrong date or time unit)."
            )
        at_bound = (best.x > LOG_HIGH - 0.01) | (best.x < LOG_LOW + 0.01)
        if np.any(at_bound):
            bad = [
                f"{k}={v:.3g}"
                for k, v, hit in zip(self.param_names, params, at_bound, strict=True)
                if hit
            ]
            raise ModelError(
                f"{type(self).__name__}: estimate hit a bound ({', '.join(bad)}): the data do "
                f"not identify the model. {self._advice()}"
            )
        if not best.success:  # Newton stopped short of a maximum (no polish after it)
            shown = ", ".join(f"{k}={v:.3g}" for k, v in zip(self.param_names, params, strict=True))
            raise ModelError(
                f"{type(self).__name__}: the search found no maximum (it stopped at {shown}): "
                f"the data may not identify the model. {self._advice()}"
            )

    def _advice(self) -> str:
        """What to try when the estimate is not usable: a penalizer (a weakly informative
        prior) that pulls the shapes towards 1, stronger than the one that failed."""
        stronger = f"{10 * self.penalizer:g}" if self.penalizer else f"{SUGGESTED_PENALIZER:g}"
        return (
            f"Try a penalizer (e.g. {stronger}: [predict] penalizer, or the model's penalizer "
            f"argument), {self.remedy}."
        )

    def _refuse_vague(self, params: Array) -> None:
        """An estimate whose standard error dwarfs it (or has none) is not an answer."""
        vague = {
            k: se / v
            for k, v in zip(self.param_names, params, strict=True)
            if not (se := self.standard_errors_[k]) < MAX_RELATIVE_SE * v
        }
        if vague:
            shown = ", ".join(
                f"{k} (standard error {r:.3g} times the estimate)"
                if np.isfinite(r)
                else f"{k} (no standard error: the estimate is not a clear maximum)"
                for k, r in vague.items()
            )
            raise ModelError(
                f"{type(self).__name__}: the data do not identify {shown}. {self._advice()}"
            )

    def _maximise(
        self,
        prepared: Any,
        n: float,
        x0: Array,
        decrement: float = NEWTON_DECREMENT,
    ) -> optimize.OptimizeResult:
        """Minimise the penalised mean negative log-likelihood of n customers over
        log-parameters from x0; Nelder-Mead polishes where L-BFGS-B stops short (a Newton
        search with exact derivatives that stops short is not near a maximum: polishing
        would only crawl to a bound)."""
        gram = self.penalizer / n * self._penalty_matrix()  # of the mean, per customer

        def value(log_params: Array) -> float:
            params = np.exp(log_params)
            # the optimiser probes values where terms overflow; those come back as -inf or
            # nan and are rejected here, so the numpy warnings are noise
            with np.errstate(all="ignore"):
                ll = self._total(params, prepared)
            if not np.isfinite(ll):
                return 1e300
            return -ll / n + float(log_params @ gram @ log_params)

        if self._newton_search:
            best = self._newton(x0, prepared, n, decrement)
        else:
            # Bounded log-parameters keep the search out of regions where the special
            # functions are slow or undefined; an estimate at a bound is reported later.
            best = optimize.minimize(
                value,
                x0,
                method="L-BFGS-B",
                bounds=[(LOG_LOW, LOG_HIGH)] * len(x0),
                options={"maxiter": self.max_iter, "ftol": 1e-15, "gtol": self.tol},
            )
        if not best.success and not self._newton_search:
            polish = optimize.minimize(
                value,
                np.clip(best.x, LOG_LOW, LOG_HIGH),
                method="Nelder-Mead",
                bounds=[(LOG_LOW, LOG_HIGH)] * len(x0),
                options={"maxfev": 5 * self.max_iter, "xatol": 1e-10, "fatol": 1e-14},
            )
            if polish.fun <= value(best.x):
                best = polish
        return best

    def _chord(
        self, x0: Array, prepared: Any, n: float, sample_curvature: Array
    ) -> optimize.OptimizeResult | None:
        """Newton steps on the full data with the sample's curvature (per customer, in
        log-parameters) for models whose Hessian costs many likelihoods: each step costs a
        gradient by central differences (8 likelihoods) and converges almost as fast as
        Newton's, the sample's curvature being within a few per cent of the full data's.
        None when the curvature is not that of a maximum."""
        gram = self.penalizer / n * self._penalty_matrix()
        hess = sample_curvature + 2 * gram
        if not np.all(np.isfinite(hess)) or np.any(np.linalg.eigvalsh(hess) <= 0):
            return None

        def value(y: Array) -> float:
            if not np.all((y > LOG_LOW - 1) & (y < LOG_HIGH + 1)):
                return 1e300
            with np.errstate(all="ignore"):
                v = -self._total(np.exp(y), prepared) / n + float(y @ gram @ y)
            return v if np.isfinite(v) else 1e300

        def gradient(y: Array, precise: bool) -> Array:
            # of the penalised mean negative log-likelihood
            ll = -n * (f - float(y @ gram @ y))
            g_log = self._log_gradient(np.exp(y), prepared, precise, ll)
            return np.asarray(-g_log / n + 2 * gram @ y)

        def curvature(y: Array, f: float, g: Array) -> tuple[Array, Array]:
            # the full data's Hessian (14 likelihoods) given the value and gradient at y;
            # natural and of the penalised mean in log-parameters
            p = np.exp(y)
            ll = -n * (f - float(y @ gram @ y))
            g_log = -n * (g - 2 * gram @ y)
            with np.errstate(all="ignore"):
                h = self._hessian_at(p, prepared, ll, g_log)
            return h, -(np.outer(p, p) * h + np.diag(g_log)) / n + 2 * gram

        y, f = np.asarray(x0, dtype=float), value(x0)
        success, steps, last, refreshed = False, 0, np.inf, 0
        measured: Array | None = None  # where the full data's curvature was measured
        while steps < COSTLY_NEWTON_STEPS and f < 1e299:
            steps += 1
            # forward differences (4 likelihoods) while far, central ones (8) near the end
            precise = last < FAR_DECREMENT
            g = gradient(y, precise)
            step = -np.linalg.solve(hess, g)
            decrement = float(-(g @ step))
            if not precise and decrement < FAR_DECREMENT:
                precise = True
                g = gradient(y, precise)
                step = -np.linalg.solve(hess, g)
                decrement = float(-(g @ step))
            if not np.all(np.isfinite(step)):
                break
            fresh = measured is not None and np.max(np.abs(y - measured)) < CURVATURE_REUSE
            if decrement < NEWTON_DECREMENT or (fresh and decrement < FRESH_DECREMENT):
                # (with the full data's curvature measured close by, the free last step
                # of _last_step takes a decrement of 1e-10 below 1e-15)
                success = True
                break
            if decrement > 0.01 * last and refreshed < 3:
                # slow: the sample's estimate was far from the full data's along a flat
                # direction, where the curvature differs; take the full data's
                refreshed += 1
                _, full = curvature(y, f, g)
                if np.all(np.isfinite(full)) and np.all(np.linalg.eigvalsh(full) > 0):
                    hess, measured = full, y
                    step = -np.linalg.solve(hess, g)
            last = decrement
            t = 1.0
            while t > 1e-4:  # halve the step until the likelihood improves
                new = value(y + t * step)
                if new <= f:
                    break
                t /= 2
            else:
                break
            y, f = y + t * step, new
        result = optimize.OptimizeResult(x=y, fun=f, success=success, nit=steps, message="chord")
        if success:  # the derivatives where it stopped, for the standard errors
            p = np.exp(y)
            if measured is not None and np.max(np.abs(y - measured)) < CURVATURE_REUSE:
                # the full data's curvature in log-parameters, measured that close by,
                # stands (its change is of the order of the distance: ~1e-3 relative)
                full = hess
                h_log = -n * (full - 2 * gram)
                g_log = -n * (g - 2 * gram @ y)
                h = (h_log - np.diag(g_log)) / np.outer(p, p)
            else:
                h, full = curvature(y, f, g)
            result.derivatives = (-n * (f - float(y @ gram @ y)), -n * (g - 2 * gram @ y) / p, h)
            if np.all(np.isfinite(full)) and np.all(np.linalg.eigvalsh(full) > 0):
                _last_step(result, g, full, n, self.penalizer)
        return result

    def _newton(
        self, x0: Array, prepared: Any, n: float, tolerance: float = NEWTON_DECREMENT
    ) -> optimize.OptimizeResult:
        """Trust-region Newton steps in log-parameters with the model's derivatives: a
        handful of passes over the data where quasi-Newton needs dozens. A step the trust
        region rejects costs one likelihood (not the derivatives) when the model's
        derivatives are dearer than its likelihood; the search stops when the Newton
        decrement (the improvement a full step would bring) is at rounding level."""
        gram = self.penalizer / n * self._penalty_matrix()  # of the mean, per customer
        last: dict[bytes, tuple[float, Array, Array]] = {}
        raw: dict[bytes, tuple[float, Array, Array]] = {}  # in the natural parameters
        values: dict[bytes, float] = {}

        def allowed(log_params: Array) -> bool:
            # outside the box of the other searches the step went too far (or the
            # estimate runs off to a bound, reported after the search): refuse it
            return bool(np.all((log_params > LOG_LOW - 1) & (log_params < LOG_HIGH + 1)))

        def value_only(log_params: Array) -> float:
            key = log_params.tobytes()
            if key in last:
                return last[key][0]
            if not self.costly_derivatives:
                return evaluate(log_params)[0]
            if key not in values:
                values.clear()
                values[key] = 1e300
                if allowed(log_params):
                    with np.errstate(all="ignore"):
                        ll = self._total(np.exp(log_params), prepared)
                    v = -ll / n + float(log_params @ gram @ log_params)
                    values[key] = v if np.isfinite(v) else 1e300
            return values[key]

        def evaluate(log_params: Array) -> tuple[float, Array, Array]:
            key = log_params.tobytes()
            if key not in last:
                last.clear()
                raw.clear()
                k = len(log_params)
                last[key] = (1e300, np.zeros(k), np.eye(k))
                if allowed(log_params):
                    p = np.exp(log_params)
                    with np.errstate(all="ignore"):
                        ll, g, h = self._derivatives(p, prepared)
                        # chain rule to log-parameters: d/dlog(p) = p d/dp
                        value = -ll / n + float(log_params @ gram @ log_params)
                        grad = -(g * p) / n + 2 * gram @ log_params
                        hess = -(np.outer(p, p) * h + np.diag(g * p)) / n + 2 * gram
                    if (
                        np.isfinite(value)
                        and np.all(np.isfinite(grad))
                        and np.all(np.isfinite(hess))
                    ):
                        last[key] = (value, grad, hess)
                        raw[key] = (ll, g, h)
            return last[key]

        def decrement(log_params: Array) -> float:
            # inf where the curvature is not that of a maximum: no quadratic model to trust
            _, grad, hess = evaluate(log_params)
            try:
                np.linalg.cholesky(hess)
                return float(grad @ np.linalg.solve(hess, grad))
            except np.linalg.LinAlgError:
                return np.inf

        def close(log_params: Array) -> bool:
            # with exact derivatives the free last step (see _last_step) lands about the
            # square of its length from the maximum: stopping where it is short is as close
            # (on a flat ridge a small decrement can still mean a long step). A penalised fit
            # takes no such step: it stops only at a decrement at rounding level.
            if (
                self.costly_derivatives
                or self.penalizer
                or decrement(log_params) >= EXACT_DECREMENT
            ):
                return False
            _, grad, hess = evaluate(log_params)
            return bool(np.max(np.abs(np.linalg.solve(hess, grad))) < LAST_STEP)

        def converged(intermediate_result: optimize.OptimizeResult) -> None:
            y = intermediate_result.x
            if 0 <= decrement(y) < tolerance or close(y):
                raise StopIteration

        # Newton finds an interior maximum in a few dozen steps; derivatives by differences
        # make more than that too costly to wait for (the search runs to an edge then)
        maxiter = (
            min(self.max_iter, COSTLY_NEWTON_STEPS) if self.costly_derivatives else self.max_iter
        )
        with np.errstate(all="ignore"):  # refused steps are worth 1e300: ratios overflow
            result = optimize.minimize(
                value_only,
                x0,
                jac=lambda y: evaluate(y)[1],
                hess=lambda y: evaluate(y)[2],
                method="trust-exact",
                callback=converged,
                options={"gtol": self.tol, "maxiter": maxiter},
            )
        if not result.success:
            # Stopped because no step improves the value any more: converged when the
            # Newton decrement is at rounding level.
            result.success = 0 <= decrement(result.x) < tolerance or close(result.x)
        # the derivatives where the search stopped, for the standard errors
        result.derivatives = raw.get(result.x.tobytes())
        if result.success and result.derivatives is not None:
            _, grad, hess = evaluate(result.x)
            _last_step(result, grad, hess, n, self.penalizer)
        return result

    def _hessian(self, params: Array, prepared: Any) -> Array:
        """Hessian of the total log-likelihood in the natural parameters by central
        differences, for the models without exact derivatives."""
        k = len(params)
        h = 1e-4 * np.maximum(np.abs(params), 1e-3)
        hess = np.zeros((k, k))
        f0 = self._total(params, prepared)
        for i in range(k):
            for j in range(i, k):

                def f(di: float, dj: float, i: int = i, j: int = j) -> float:
                    p = params.copy()
                    p[i] += di
                    p[j] += dj
                    return self._total(p, prepared)

                if i == j:
                    v = (f(h[i], 0) - 2 * f0 + f(-h[i], 0)) / h[i] ** 2
                else:
                    v = (f(h[i], h[j]) - f(h[i], -h[j]) - f(-h[i], h[j]) + f(-h[i], -h[j])) / (
                        4 * h[i] * h[j]
                    )
                hess[i, j] = hess[j, i] = v
        return hess

    def _gradient(self, params: Array, prepared: Any) -> Array:
        """Gradient of the total log-likelihood in the natural parameters by central
        differences, for the models without exact derivatives."""
        h = 1e-6 * np.maximum(np.abs(params), 1e-3)
        grad = np.zeros(len(params))
        for i in range(len(params)):
            up, down = params.copy(), params.copy()
            up[i] += h[i]
            down[i] -= h[i]
            grad[i] = (self._total(up, prepared) - self._total(down, prepared)) / (2 * h[i])
        return grad

    def _store_covariance(self, hess: Array, params: Array, grad: Array) -> None:
        """Covariance = inverse of the negative Hessian; standard errors from its diagonal.
        A penalised (MAP) estimate takes the curvature of the penalised log-likelihood in the
        log-parameters, where the penalty is quadratic, and maps it back (delta method)."""
        k = hess.shape[0]
        try:
            if self.penalizer:
                p = params
                hess_log = np.outer(p, p) * hess + np.diag(grad * p)
                hess_log -= 2 * self.penalizer * self._penalty_matrix()
                cov = np.outer(p, p) * np.linalg.inv(-hess_log)
            else:
                cov = np.linalg.inv(-hess)
        except np.linalg.LinAlgError:
            cov = np.full((k, k), np.nan)
        self.covariance_ = cov
        se = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
        self.standard_errors_ = dict(zip(self.param_names, (float(s) for s in se), strict=True))

    def _p(self) -> Array:
        if not hasattr(self, "params_"):
            raise ModelError(f"{type(self).__name__} is not fitted yet: call fit(...) first.")
        return np.array([self.params_[k] for k in self.param_names])

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return f"{type(self).__name__}(penalizer={self.penalizer})"
        shown = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
        return f"<{type(self).__name__}: {shown}, log-likelihood {self.log_likelihood_:.2f}>"

    def summary(self) -> dict[str, Any]:
        return {
            "params": self.params_,
            "standard_errors": self.standard_errors_,
            "log_likelihood": self.log_likelihood_,
            "customers": self.n_customers_,
        }


def _curvature(result: optimize.OptimizeResult, n: float) -> Array | None:
    """The Hessian of the mean negative log-likelihood (without the penalty) in
    log-parameters where a Newton search stopped, or None when it has none."""
    if result.get("derivatives") is None:
        return None
    _, g, h = result.derivatives
    p = np.exp(result.x)
    return np.asarray(-(np.outer(p, p) * h + np.diag(g * p)) / n)


def _last_step(
    result: optimize.OptimizeResult, grad: Array, hess: Array, n: float, penalizer: float
) -> None:
    """The Newton step from where a converged search stopped, taken without evaluating
    there: the derivatives at the stopping point are known, the step is tiny (its decrement
    below the tolerance), and Newton's quadratic model is exact to third order so far from
    nothing, so it carries the estimate the last digits closer to the maximum for free.
    The log-likelihood moves by half the decrement; the standard errors stay those of the
    stopping point (a relative change of ~1e-6). Not for a penalised fit, whose
    log-likelihood and objective differ."""
    if penalizer:
        return
    try:
        step = -np.linalg.solve(hess, grad)
    except np.linalg.LinAlgError:
        return
    gain = float(-(grad @ step))
    if not (np.all(np.isfinite(step)) and 0 <= gain < 1e-6 and np.max(np.abs(step)) < LAST_STEP):
        return
    ll, g, h = result.derivatives
    result.x = result.x + step
    result.fun = result.fun - gain / 2
    result.derivatives = (ll + n * gain / 2, g, h)
