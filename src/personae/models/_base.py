"""Shared machinery of the buy-till-you-die and spend models: maximum likelihood on the
compressed unique rows with weights, in log-parameter space, standard errors from the Hessian,
and errors that say what to try when an estimate is unusable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize

from personae.errors import PersonaeError

Array = NDArray[np.float64]
LOG_LOW, LOG_HIGH = np.log(1e-8), np.log(1e6)


class ModelError(PersonaeError):
    """A model could not be fitted or used; the message says what to try."""


def compress(*columns: ArrayLike, weights: ArrayLike | None = None) -> tuple[list[Array], Array]:
    """Unique rows of the given columns and how many customers share each (their weights)."""
    cols = [np.asarray(c, dtype=float) for c in columns]
    w = np.ones(len(cols[0])) if weights is None else np.asarray(weights, dtype=float)
    if len(cols[0]) == 0:
        return [c[:0] for c in cols], w[:0]
    order = np.lexsort(cols[::-1])  # sort rows by the first column, then the next, ...
    sorted_cols = [c[order] for c in cols]
    new = np.ones(len(order), dtype=bool)
    new[1:] = np.any([np.diff(c) != 0 for c in sorted_cols], axis=0)
    group = np.cumsum(new) - 1
    counts = np.bincount(group, weights=w[order]).astype(float)
    return [c[new] for c in sorted_cols], counts


class BaseFitter:
    """Maximum likelihood over positive parameters. Subclasses give `param_names` and
    `_loglik(params, *data) -> per-row log-likelihood`."""

    param_names: ClassVar[tuple[str, ...]] = ()
    initial: ClassVar[tuple[float, ...]] = ()

    def __init__(self, penalizer: float = 0.0, tol: float = 1e-10, max_iter: int = 2000) -> None:
        self.penalizer = penalizer
        self.tol = tol
        self.max_iter = max_iter

    # provided by each model: (params, *data columns) -> per-row log-likelihood
    _loglik: Callable[..., Array]

    # -- fitting ---------------------------------------------------------------------------
    def _total(self, params: Array, data: Sequence[Array], weights: Array) -> float:
        # the optimiser probes values where terms overflow; those come back as -inf or nan
        # and are rejected by the objective, so the numpy warnings are noise
        with np.errstate(all="ignore"):
            return float(np.sum(weights * self._loglik(params, *data)))

    def _fit(self, data: Sequence[Array], weights: Array) -> BaseFitter:
        n = float(weights.sum())
        if n == 0:
            raise ModelError(f"{type(self).__name__}: no customers to fit.")

        gradient = getattr(self, "_loglik_grad", None)

        def objective(log_params: Array) -> Any:
            params = np.exp(log_params)
            if gradient is None:
                ll = self._total(params, data, weights)
                if not np.isfinite(ll):
                    return 1e300
                return -ll / n + self.penalizer * float(np.sum(params**2))
            with np.errstate(all="ignore"):
                rows, grads = gradient(params, *data)
            ll = float(np.sum(weights * rows))
            if not np.isfinite(ll):
                return 1e300, np.zeros_like(log_params)
            # chain rule to log-parameters: d/dlog(p) = p * d/dp
            g = -(grads @ weights) * params / n + 2 * self.penalizer * params**2
            return -ll / n + self.penalizer * float(np.sum(params**2)), g

        x0 = np.log(np.asarray(self.initial, dtype=float))
        # Bounded log-parameters keep the search out of regions where the special functions
        # are slow or undefined; an estimate at a bound is reported below, not returned.
        bounds = [(LOG_LOW, LOG_HIGH)] * len(x0)
        best = optimize.minimize(
            objective,
            x0,
            method="L-BFGS-B",
            jac=gradient is not None,
            bounds=bounds,
            options={"maxiter": self.max_iter, "ftol": 1e-15, "gtol": self.tol},
        )

        def value(log_params: Array) -> float:
            out = objective(log_params)
            return float(out[0] if isinstance(out, tuple) else out)

        if not best.success:
            polish = optimize.minimize(
                value,
                best.x,
                method="Nelder-Mead",
                bounds=bounds,
                options={"maxfev": 5 * self.max_iter, "xatol": 1e-10, "fatol": 1e-14},
            )
            if polish.fun <= value(best.x):
                best = polish
        assert best is not None
        params = np.exp(best.x)
        if not np.all(np.isfinite(params)) or best.fun >= 1e299:
            raise ModelError(
                f"{type(self).__name__}: the optimiser failed ({best.message}). Try a small "
                "penalizer (e.g. 0.001) or check the data for customers with extreme values."
            )
        if np.any(params > 1e6) or np.any(params < 1e-8):
            bad = [
                f"{k}={v:.3g}"
                for k, v in zip(self.param_names, params, strict=True)
                if v > 1e6 or v < 1e-8
            ]
            raise ModelError(
                f"{type(self).__name__}: estimate hit a bound ({', '.join(bad)}): the data do "
                "not identify the model. Try a penalizer (e.g. 0.01), a longer history or the "
                "other purchase models."
            )
        self.params_ = dict(zip(self.param_names, (float(p) for p in params), strict=True))
        self.log_likelihood_ = self._total(params, data, weights)
        self.n_customers_ = n
        self._set_standard_errors(params, data, weights)
        return self

    def _set_standard_errors(self, params: Array, data: Sequence[Array], weights: Array) -> None:
        """Covariance = inverse of the negative Hessian of the total log-likelihood in the
        natural parameters (central differences)."""
        k = len(params)
        h = 1e-4 * np.maximum(np.abs(params), 1e-3)
        hess = np.zeros((k, k))
        gradient = getattr(self, "_loglik_grad", None)
        if gradient is not None:  # central differences of the analytic gradient
            for i in range(k):
                up, down = params.copy(), params.copy()
                up[i] += h[i]
                down[i] -= h[i]
                with np.errstate(all="ignore"):
                    g_up = gradient(up, *data)[1] @ weights
                    g_down = gradient(down, *data)[1] @ weights
                hess[:, i] = (g_up - g_down) / (2 * h[i])
            hess = (hess + hess.T) / 2
            self._store_covariance(hess)
            return
        f0 = self._total(params, data, weights)
        for i in range(k):
            for j in range(i, k):

                def f(di: float, dj: float, i: int = i, j: int = j) -> float:
                    p = params.copy()
                    p[i] += di
                    p[j] += dj
                    return self._total(p, data, weights)

                if i == j:
                    v = (f(h[i], 0) - 2 * f0 + f(-h[i], 0)) / h[i] ** 2
                else:
                    v = (f(h[i], h[j]) - f(h[i], -h[j]) - f(-h[i], h[j]) + f(-h[i], -h[j])) / (
                        4 * h[i] * h[j]
                    )
                hess[i, j] = hess[j, i] = v
        self._store_covariance(hess)

    def _store_covariance(self, hess: Array) -> None:
        k = hess.shape[0]
        try:
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
