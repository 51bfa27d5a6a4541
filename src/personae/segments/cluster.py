"""Segments the data reveals: clustering customers over chosen traits.

The model is fitted on a sample pulled into numpy (a `pyarrow.Table`), then every customer is
assigned in the engine by `ClusterModel.assign`, an Ibis expression that runs on DuckDB and
Spark and gives the same labels as `ClusterModel.predict` does in numpy.

Preprocessing (stored with the model, `NumericFeature` / `CategoricalFeature`):

- numbers: NULL -> the sample median; `log(x + 1)` when the feature is non-negative and its
  sample skewness is above 1 (money and counts); then `(x - median) / (IQR / 1.349)`, median
  and IQR of the values present, the robust scale that equals the standard deviation for a
  normal feature (the standard deviation when the IQR is 0). With `rescale=False` numbers
  are used as they are (NULL still -> the median): for features already on one scale, such
  as survey factor scores;
- categories: the most frequent values (each at least 1% of the sample, at most 12), NULL
  being a value of its own, `(missing)`, when it is that frequent (no value is information:
  no events, no device); every other value, and values first seen after the fit, fall into
  `(other)`. A category enters the distance as a mismatch cost `gamma * weight`: a one-hot
  block at sqrt(gamma * weight / 2). gamma is what two customers differ by on an average
  number (the mean of 2 var(z) over the numbers), so every feature starts with about equal say.

Feature weights: customer traits mix features that carry the segments with features that are
mostly noise, and plain k-means weighs them all alike. The weights follow Huang, Ng, Rong &
Li (2005, "Automated variable weighting in k-means type clustering", beta = 2): after a fit
each feature's weight becomes 1 / (its within-cluster dispersion / its total dispersion),
normalised to mean 1, and the clustering is fitted again from the last fit's clusters
(three fits in all). A weight is a plain factor on the feature's scaled value, so assignment
stays a nearest-centroid rule.

Methods: `kmeans` (scikit-learn's KMeans on the weighted numbers and one-hot blocks),
`kprototypes` (kmodes' KPrototypes with a weighted mismatch count, started from the weighted
k-means solution: means for numbers, modes for categories), `gmm` (scikit-learn's
GaussianMixture with diagonal covariances, on the unweighted coordinates; a customer goes to
the component with the highest log-density log pi_k + log N(x; mu_k, diag(var_k)), which is
what the mixture's own `predict` does).

Number of segments: each k of the range is fitted; the silhouette (on at most 5,000 rows)
picks k, silhouettes within 0.01 of the best count as a tie and the lowest BIC among the tied
wins (see `_diagnose` for the BIC of k-means). Both are measured in the weighted coordinates
of each fit, the space its distances live in.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personae.config import CLUSTER_METHODS
from personae.errors import ConfigError, closest

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = [
    "CategoricalFeature",
    "ClusterModel",
    "NumericFeature",
    "choose_features",
    "describe_clusters",
    "fit_clusters",
    "separation",
    "stability",
]

METHODS = tuple(m for m in CLUSTER_METHODS if m != "auto")
MISSING = "(missing)"
OTHER = "(other)"
MIN_COVERAGE = 0.8  # share of non-NULL values a default feature needs
NEAR_CONSTANT = 0.95  # a feature whose commonest value holds this share says nothing
REDUNDANT = 0.85  # |Spearman| (numbers) or Cramer's V (categories) that restates a feature
MAX_LEVELS = 12
MIN_LEVEL_SHARE = 0.01
SKEW_LOG = 1.0
WEIGHT_FITS = 3
SILHOUETTE_TIE = 0.01
SILHOUETTE_ROWS = 5000
GMM_REG = 1e-2  # variance floor: a component must not collapse onto one value of a feature
STATS_ROWS = 20_000  # rows choose_features looks at
CHOOSE_ROWS = 20_000  # rows k is chosen on, and bootstrap refits drawn from

# Catalog traits left out of the default features (choose_features with candidates=None),
# and why. Traits the catalog does not know go by the data rules alone.
_EXCLUDED_FAMILIES = {
    "rfm": "an RFM score or label, restating purchase traits",
    "lifecycle": "a lifecycle position on the as-of date, not who the customer is",
    "journey": "funnel timings and stage, about the way to the first purchase",
}
_EXCLUDED_UNITS = {
    "date": "a date",
    "days": "a time span, which depends on when the customer came and on the as-of date",
    "month": "a calendar position",
    "score": "a score restating another trait",
    "index": "an index restating another trait",
}
_EXCLUDED_TRAITS = {
    **dict.fromkeys(
        ("purchase_days", "orders", "frequency", "total_value", "monetary_value"),
        "a total over the whole history, which grows with tenure",
    ),
    "category_breadth": "a count over the whole history, which grows with tenure",
    "repeat_rate": "1 - 1 / purchase_days, a total over the whole history",
    "events_90d": "activity in a window ending on the as-of date",
    "engagement_score": "activity decayed to the as-of date",
    "history_source": "bookkeeping",
    **dict.fromkeys(
        (
            "black_friday_share",
            "christmas_share",
            "valentines_share",
            "back_to_school_share",
            "birthday_month_share",
            "top_occasion",
        ),
        "one occasion's share, 0 for most customers (occasion_share, all of them, stays)",
    ),
}
# fields of the segments stage beside the traits, left out by default the same way
_EXCLUDED_FIELDS = {
    **dict.fromkeys(
        ("expected_purchases", "p_alive", "churn_risk", "expected_spend", "clv"),
        "a prediction from the purchase history (value and lifecycle outlook)",
    ),
    **dict.fromkeys(("value_rank", "engagement_rank"), "a rank restating another field"),
    "prediction_model": "bookkeeping",
}
_BOOKKEEPING = {"run_id", "as_of", "source_id", "source_row"}


# ---- the model -------------------------------------------------------------------------


@dataclass
class NumericFeature:
    """How one number is turned into a model coordinate:
    `z = ((log(max(x, 0) + 1) if log else x) - center) / scale * sqrt(weight)`, with
    NULL read as `fill` (the sample median, in the column's own units)."""

    name: str
    log: bool
    center: float
    scale: float
    fill: float
    weight: float = 1.0


@dataclass
class CategoricalFeature:
    """One category: its kept `levels` (`(missing)` for NULL when frequent); any other value
    is `(other)`. A mismatch costs `gamma * weight` in squared distance."""

    name: str
    levels: list[str]
    weight: float = 1.0

    @property
    def all_levels(self) -> list[str]:
        return [*self.levels, OTHER]


@dataclass
class ClusterModel:
    """A fitted segmentation: preprocessing, centroids and the diagnostics of the k search.

    `centroids[k]` is a point in the space `transform` returns: the weighted numeric
    coordinates, then one block per category over `levels + ["(other)"]` (for k-prototypes
    the block is the one-hot of the cluster's mode). For a Gaussian mixture `variances` and
    `mix_weights` complete the components (diagonal covariance)."""

    method: str
    k: int
    numeric: list[NumericFeature]
    categorical: list[CategoricalFeature]
    centroids: list[list[float]]
    gamma: float = 0.0
    seed: int = 0
    diagnostics: list[dict[str, float]] = field(default_factory=list)
    variances: list[list[float]] | None = None
    mix_weights: list[float] | None = None
    rescale: bool = True  # False: numbers were used as they are (fit_clusters)

    # -- persistence -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (an undefined silhouette is None), round trip with
        `from_dict`."""
        d = asdict(self)
        d["diagnostics"] = [
            {key: None if math.isnan(v) else v for key, v in row.items()}
            for row in self.diagnostics
        ]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClusterModel:
        d = dict(d)
        d["numeric"] = [NumericFeature(**f) for f in d["numeric"]]
        d["categorical"] = [CategoricalFeature(**f) for f in d["categorical"]]
        d["diagnostics"] = [
            {key: math.nan if v is None else float(v) for key, v in row.items()}
            for row in d.get("diagnostics", [])
        ]
        return cls(**d)

    # -- shape -------------------------------------------------------------------------
    @property
    def features(self) -> list[str]:
        return [f.name for f in self.numeric] + [f.name for f in self.categorical]

    def _onehot(self, f: CategoricalFeature) -> float:
        return math.sqrt(self.gamma * f.weight / 2.0)

    def _terms(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """The distance d_k(x) = b_k + sum_j p_kj (z_j - c_kj)^2 + sum_c cost_kc[level],
        as (b, p over numeric coordinates, per category a k x levels cost table)."""
        c = np.asarray(self.centroids, float)
        nn = len(self.numeric)
        if self.method == "gmm":
            var = np.asarray(self.variances, float)
            prec = np.vectorize(_r)(1.0 / var)
            b = -2.0 * np.log(np.asarray(self.mix_weights, float)) + np.log(var).sum(1)
        else:
            prec = np.ones_like(c)
            b = np.zeros(self.k)
        tables, pos = [], nn
        for f in self.categorical:
            size = len(f.all_levels)
            a = self._onehot(f)
            cb, pb = c[:, pos : pos + size], prec[:, pos : pos + size]
            base = (pb * cb * cb).sum(1)  # level l: sum_m p_m (a [l == m] - c_m)^2
            tables.append(
                np.array(
                    [
                        [
                            _r(base[k] + pb[k, lv] * (a * a - 2 * a * cb[k, lv]))
                            for lv in range(size)
                        ]
                        for k in range(self.k)
                    ]
                )
            )
            pos += size
        return np.array([_r(v) for v in b]), prec[:, :nn], tables

    # -- numpy ---------------------------------------------------------------------------
    def _scaled(self, data: pa.Table) -> np.ndarray:
        """The numbers filled, logged and scaled as on the sample, before their weights."""
        cols = []
        for f in self.numeric:
            x = _floats(data, f.name)
            x = np.where(np.isnan(x), f.fill, x)
            if f.log:
                x = np.log(np.maximum(x, 0.0) + 1.0)
            cols.append((x - f.center) / f.scale)
        return np.column_stack(cols) if cols else np.zeros((data.num_rows, 0))

    def _codes(self, data: pa.Table) -> np.ndarray:
        cols = [_level_codes(data, f.name, f.levels) for f in self.categorical]
        return np.column_stack(cols) if cols else np.zeros((data.num_rows, 0), int)

    def transform(self, data: pa.Table, weighted: bool = True) -> np.ndarray:
        """The model's coordinates: scaled numbers times sqrt(weight), then one block per
        category, its one-hot at sqrt(gamma * weight / 2) (squared Euclidean distance here
        is the k-means / k-prototypes distance). `weighted=False` sets every weight to 1."""
        _check_columns(data, self.features)
        wn = [f.weight if weighted else 1.0 for f in self.numeric]
        wc = [f.weight if weighted else 1.0 for f in self.categorical]
        return _embed(self._scaled(data), self._codes(data), self.categorical, self.gamma, wn, wc)

    def distances(self, data: pa.Table) -> np.ndarray:
        """n x k matrix of d_k, summed in the same order as the engine expression."""
        _check_columns(data, self.features)
        z = self._scaled(data) * np.array([_sqrt(f.weight) for f in self.numeric])
        codes = self._codes(data)
        b, prec, tables = self._terms()
        c = np.asarray(self.centroids, float)
        out = np.empty((data.num_rows, self.k))
        for k in range(self.k):
            d = np.full(data.num_rows, b[k])
            for j in range(len(self.numeric)):
                diff = z[:, j] - c[k, j]
                d = d + (diff * diff if prec[k, j] == 1.0 else prec[k, j] * (diff * diff))
            for j, tab in enumerate(tables):
                d = d + tab[k][codes[:, j]]
            out[:, k] = d
        return out

    def predict(self, data: pa.Table) -> np.ndarray:
        """Labels 0..k-1: the nearest centroid (gmm: the most likely component)."""
        return self.distances(data).argmin(1)

    # -- engine --------------------------------------------------------------------------
    def assign(self, table: ir.Table) -> ir.IntegerValue:
        """The same labels as `predict`, as an Ibis expression over `table` (DuckDB, Spark):
        preprocessing as expressions, d_k as sums of squares plus a CASE per category, and
        the first k with d_k = least(d_0, ..., d_k-1)."""
        _check_columns(table, self.features)
        zs = []
        for f in self.numeric:
            x = table[f.name].cast("float64").fill_null(_lit(f.fill))
            if f.log:
                x = (ibis.greatest(x, _lit(0.0)) + _lit(1.0)).ln()
            z = (x - _lit(f.center)) / _lit(f.scale)
            if f.weight != 1.0:
                z = z * _lit(_sqrt(f.weight))
            zs.append(z)
        cats = [table[g.name].cast("string").fill_null(MISSING) for g in self.categorical]
        b, prec, tables = self._terms()
        c = np.asarray(self.centroids, float)
        ds = []
        for k in range(self.k):
            d: ir.FloatingValue = _lit(float(b[k]))
            for j, z in enumerate(zs):
                diff = z - _lit(float(c[k, j]))
                sq = diff * diff
                d = d + (sq if prec[k, j] == 1.0 else _lit(float(prec[k, j])) * sq)
            for g, v, tab in zip(self.categorical, cats, tables, strict=True):
                branches = [(v == lv, _lit(float(tab[k][i]))) for i, lv in enumerate(g.levels)]
                other = _lit(float(tab[k][-1]))
                d = d + (ibis.cases(*branches, else_=other) if branches else other)
            ds.append(d)
        if self.k == 1:
            return ibis.literal(0).cast("int64")
        low = ibis.least(*ds)
        return ibis.cases(*[(d == low, k) for k, d in enumerate(ds[:-1])], else_=self.k - 1).cast(
            "int64"
        )


# ---- helpers ---------------------------------------------------------------------------


def _r(v: float) -> float:
    """Round a model constant to 12 significant digits: the engines read SQL literals as
    decimals, and a short decimal converts to exactly the double numpy uses."""
    v = float(v)
    return float(f"{v:.12g}") if math.isfinite(v) else v


def _sqrt(weight: float) -> float:
    """The factor a weight puts on a scaled number, rounded like every model constant."""
    return _r(math.sqrt(weight))


def _embed(
    z: np.ndarray,
    codes: np.ndarray,
    categorical: Sequence[CategoricalFeature],
    gamma: float,
    wn: Sequence[float] | np.ndarray,
    wc: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Coordinates of scaled numbers `z` and level `codes`: numbers times sqrt(weight), then
    one block per category, its one-hot at sqrt(gamma * weight / 2), so that squared
    Euclidean distance is the k-means / k-prototypes distance."""
    n = z.shape[0]
    parts = [z * np.array([_sqrt(w) for w in wn])]
    for j, f in enumerate(categorical):
        block = np.zeros((n, len(f.all_levels)))
        block[np.arange(n), codes[:, j]] = math.sqrt(gamma * wc[j] / 2.0)
        parts.append(block)
    return np.hstack(parts)


def _lit(v: float) -> ir.FloatingScalar:
    return ibis.literal(float(v), type="float64")


def _floats(data: pa.Table, name: str) -> np.ndarray:
    col = data[name]
    if pa.types.is_boolean(col.type):
        col = pc.cast(col, pa.int8())
    return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=float).copy()


def _strings(data: pa.Table, name: str) -> np.ndarray:
    col = pc.cast(data[name], pa.string())
    return np.asarray(pc.fill_null(col, MISSING).to_numpy(zero_copy_only=False), dtype=object)


def _level_codes(data: pa.Table, name: str, levels: list[str]) -> np.ndarray:
    index = {lv: i for i, lv in enumerate(levels)}
    other = len(levels)
    return np.array([index.get(v, other) for v in _strings(data, name)], dtype=np.int64)


def _check_columns(data: pa.Table | ir.Table, names: Sequence[str]) -> None:
    """Every feature is a column of the Arrow data or the engine table."""
    cols = list(data.column_names if isinstance(data, pa.Table) else data.columns)
    missing = [n for n in names if n not in cols]
    if missing:
        n = missing[0]
        what = "data" if isinstance(data, pa.Table) else "table"
        raise ConfigError(
            f"Clustering feature '{n}' is not a column of the {what}.{closest(n, cols)}",
            hint=f"Columns: {', '.join(cols)}.",
        )


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _is_categorical(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_boolean(t)
        or pa.types.is_dictionary(t)
    )


_ID = re.compile(r"(^id$|_id$|^id_|[a-z0-9]ID$|[a-z0-9]Id$)")


def _sample_rows(data: pa.Table, n: int, seed: int) -> pa.Table:
    if data.num_rows <= n:
        return data
    idx = np.sort(np.random.default_rng(seed).choice(data.num_rows, n, replace=False))
    return data.take(pa.array(idx))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (what scipy's rankdata gives; numpy
    alone, since importing scipy.stats costs a rule-only run 0.7 s)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return (last - (counts - 1) / 2.0)[inverse]


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    ok = ~np.isnan(x) & ~np.isnan(y)
    if ok.sum() < 3:
        return 0.0
    rx, ry = _ranks(x[ok]), _ranks(y[ok])
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def _codes_of(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer codes of a category's values, and the code of MISSING (-1 if absent)."""
    levels, codes = np.unique(values.astype(str), return_inverse=True)
    hit = np.nonzero(levels == MISSING)[0]
    return codes.astype(np.int64), int(hit[0]) if len(hit) else -1


def _cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Association of two categories (integer codes), 0..1."""
    tab = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(tab, (a, b), 1)
    tab = tab[tab.sum(1) > 0][:, tab.sum(0) > 0]
    if min(tab.shape) < 2:
        return 0.0
    n = tab.sum()
    e = tab.sum(1, keepdims=True) * tab.sum(0, keepdims=True) / n
    chi2 = ((tab - e) ** 2 / e).sum()
    return float(math.sqrt(chi2 / n / (min(tab.shape) - 1)))


def _bins(codes: np.ndarray, missing: int, x: np.ndarray) -> bool:
    """Whether the category's values (integer codes) occupy disjoint ranges of x: the
    category is a binning of x, like an age band of age."""
    ok = ~np.isnan(x) & (codes != missing)
    c, v = codes[ok], x[ok]
    if len(np.unique(c)) < 2:
        return False
    size = int(codes.max()) + 1
    low, high = np.full(size, np.inf), np.full(size, -np.inf)
    np.minimum.at(low, c, v)
    np.maximum.at(high, c, v)
    seen = np.isfinite(low)
    order = np.argsort(low[seen], kind="stable")
    low, high = low[seen][order], high[seen][order]
    return bool((high[:-1] < low[1:]).all())


# ---- feature choice --------------------------------------------------------------------


def choose_features(
    data: pa.Table,
    candidates: list[str] | None = None,
    *,
    min_coverage: float = MIN_COVERAGE,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """The (numeric, categorical) features usable for clustering, in the data's order.

    Left out: ids, bookkeeping and date columns; columns with less than `min_coverage`
    non-NULL values (median imputation would put that many customers on one made-up value,
    which k-means turns into a cluster); constant or nearly constant columns (one value for
    95%); text with more distinct values than half the rows (ids, free text); a number whose
    |Spearman| with an earlier kept number is >= 0.85, and a category whose Cramer's V with an
    earlier kept category is >= 0.85 (they restate it); a category whose values are disjoint
    ranges of a number (a binning of it, like an age band). With `candidates=None`, traits
    of the catalog that describe when rather than who (dates, time spans, totals that grow
    with tenure, as-of windows, RFM scores, lifecycle, funnel timings, seasonal occasion
    shares), and the segments stage's predictions and ranks, are left out too; naming them in
    `candidates` keeps them."""
    from personae.traits.catalog import BY_NAME

    names = list(data.column_names) if candidates is None else list(candidates)
    _check_columns(data, names)
    sample = _sample_rows(data, STATS_ROWS, seed)
    n = sample.num_rows
    why: dict[str, str] = {}
    num: list[str] = []
    cat: list[str] = []
    for name in names:
        typ = sample.schema.field(name).type
        trait = BY_NAME.get(name) if candidates is None else None
        if name in _BOOKKEEPING or _ID.search(name):
            why[name] = "an id or bookkeeping column"
            continue
        if pa.types.is_temporal(typ):
            why[name] = "a date or time"
            continue
        if candidates is None and name in _EXCLUDED_FIELDS:
            why[name] = _EXCLUDED_FIELDS[name]
            continue
        if trait is not None:
            unit = "days" if trait.unit.startswith("time unit") else trait.unit
            reason = (
                _EXCLUDED_TRAITS.get(name)
                or _EXCLUDED_FAMILIES.get(trait.family)
                or _EXCLUDED_UNITS.get(unit)
            )
            if reason:
                why[name] = reason
                continue
        if not (_is_numeric(typ) or _is_categorical(typ)):
            why[name] = f"of type {typ}, neither a number nor a category"
            continue
        col = sample[name]
        coverage = 1 - col.null_count / n if n else 0.0
        if coverage < min_coverage:
            why[name] = f"only {coverage:.0%} of values present (needs {min_coverage:.0%})"
            continue
        counts = pc.value_counts(col.drop_null()).field("counts").to_numpy()
        if len(counts) < 2:
            why[name] = "constant"
            continue
        if counts.max() >= NEAR_CONSTANT * counts.sum():
            why[name] = f"nearly constant (one value for {counts.max() / counts.sum():.0%})"
            continue
        if _is_categorical(typ):
            if not pa.types.is_boolean(typ) and len(counts) > 0.5 * counts.sum():
                why[name] = "an identifier or free text (mostly distinct values)"
                continue
            cat.append(name)
        else:
            num.append(name)

    values = {c: _floats(sample, c) for c in num}
    kept_num: list[str] = []
    for c in num:
        twin = next(
            (k for k in kept_num if abs(_spearman(values[c], values[k])) >= REDUNDANT), None
        )
        if twin:
            why[c] = f"restates {twin} (rank correlation >= {REDUNDANT})"
        else:
            kept_num.append(c)
    codes = {c: _codes_of(_strings(sample, c)) for c in cat}
    kept_cat: list[str] = []
    for c in cat:
        binned = next((x for x in num if _bins(*codes[c], values[x])), None)
        if binned:
            why[c] = f"a binning of {binned}"
            continue
        twin = next(
            (k for k in kept_cat if _cramers_v(codes[c][0], codes[k][0]) >= REDUNDANT), None
        )
        if twin:
            why[c] = f"restates {twin} (Cramer's V >= {REDUNDANT})"
            continue
        kept_cat.append(c)
    for c, reason in why.items():
        log.debug("clustering feature %s left out: %s", c, reason)
    if not kept_num and not kept_cat:
        looked = "; ".join(f"{c}: {r}" for c, r in why.items()) or "no columns"
        raise ConfigError(
            f"No usable clustering features among {len(names)} column(s): {looked}.",
            hint="Name numeric or categorical columns with at least "
            f"{min_coverage:.0%} of values present and more than one value.",
        )
    return kept_num, kept_cat


# ---- fitting ---------------------------------------------------------------------------


@dataclass
class _Prepared:
    """The sample in model coordinates before weights: z (n x p) and level codes (n x q)."""

    numeric: list[NumericFeature]
    categorical: list[CategoricalFeature]
    z: np.ndarray
    codes: np.ndarray
    gamma: float

    def embed(self, wn: np.ndarray, wc: np.ndarray) -> np.ndarray:
        """Weighted coordinates, as `ClusterModel.transform` computes them."""
        return _embed(self.z, self.codes, self.categorical, self.gamma, wn, wc)

    def common(self) -> np.ndarray:
        """Unweighted coordinates (every weight 1), where the Gaussian mixture is fitted."""
        return self.embed(np.ones(self.z.shape[1]), np.ones(len(self.categorical)))


def _prepare(
    data: pa.Table, numeric: Sequence[str], categorical: Sequence[str], rescale: bool = True
) -> _Prepared:
    """Learn the preprocessing on the sample (module docstring); `rescale=False` keeps the
    numbers as they are (no log, centre 0, scale 1), only filling the missing ones."""
    from scipy.stats import skew

    nums, cols = [], []
    for name in numeric:
        raw = _floats(data, name)
        ok = ~np.isnan(raw)
        if not ok.any():
            raise ConfigError(
                f"Clustering feature '{name}' has no values in the sample.",
                hint="Leave it out, or check the run that computed it.",
            )
        fill = _r(np.median(raw[ok]))
        x = np.where(ok, raw, fill)
        use_log = bool(rescale and raw[ok].min() >= 0 and ok.sum() > 2 and skew(raw[ok]) > SKEW_LOG)
        if use_log:
            x = np.log(np.maximum(x, 0.0) + 1.0)
        seen = x[ok]  # the scale of the values present, not of the filled ones
        center, scale = 0.0, 1.0
        if rescale:
            center = _r(np.median(seen))
            q1, q3 = np.percentile(seen, [25, 75])
            spread = (q3 - q1) / 1.349 if q3 > q1 else seen.std()
            scale = _r(spread if spread > 0 else 1.0)
        nums.append(NumericFeature(name, use_log, center, scale, fill))
        cols.append((x - center) / scale)
    cats, codes = [], []
    for name in categorical:
        vals = _strings(data, name).astype(str)
        uniq, counts = np.unique(vals, return_counts=True)
        order = np.lexsort((uniq, -counts))
        keep = [str(uniq[i]) for i in order if counts[i] >= MIN_LEVEL_SHARE * len(vals)]
        f = CategoricalFeature(name, keep[:MAX_LEVELS])
        cats.append(f)
        codes.append(_level_codes(data, name, f.levels))
    n = data.num_rows
    z = np.column_stack(cols) if cols else np.zeros((n, 0))
    c = np.column_stack(codes) if codes else np.zeros((n, 0), np.int64)
    # a category mismatch costs what two customers differ by on an average number: the mean
    # over the numbers of E(z_i - z_j)^2 = 2 var(z), so each feature starts at about equal say
    spread = 2 * float(z.var(0).mean()) if z.shape[1] else 0.0
    gamma = _r(spread) if spread > 0 else 2.0
    return _Prepared(nums, cats, z, c, gamma)


def _dispersion(prep: _Prepared, labels: np.ndarray, k: int) -> np.ndarray:
    """Per feature, within-cluster over total dispersion: sums of squares for numbers, Gini
    impurity (the one-hot block's sum of squares) for categories."""
    groups = [labels == c for c in range(k)]
    out = []
    for j in range(prep.z.shape[1]):
        x = prep.z[:, j]
        total = ((x - x.mean()) ** 2).sum()
        within = sum(((x[g] - x[g].mean()) ** 2).sum() for g in groups if g.any())
        out.append(within / total if total > 0 else 1.0)
    for j, f in enumerate(prep.categorical):
        x = prep.codes[:, j]
        size = len(f.all_levels)

        def gini(v: np.ndarray, size: int = size) -> float:
            p = np.bincount(v, minlength=size) / max(len(v), 1)
            return float(len(v) * (1 - (p * p).sum()))

        total = gini(x)
        out.append(sum(gini(x[g]) for g in groups) / total if total > 0 else 1.0)
    return np.asarray(out)


PARALLEL_ROWS = 50_000  # k-means on fewer rows runs in one thread


def _each(fit: Callable[[int], T], items: Sequence[int], rows: int) -> list[T]:
    """`fit` of every item, in order. Fits on fewer than PARALLEL_ROWS rows run in one
    thread each (`_weighted_kmeans`), so two of them run side by side, one a core
    (scikit-learn's loops and BLAS release the GIL); each fit is what it is alone."""
    if rows >= PARALLEL_ROWS or len(items) < 2:
        return [fit(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    # one OpenMP and BLAS thread a fit, set once for both: the limit is process-wide, so
    # a thread leaving a limit of its own would lift the other's
    with threadpool_limits(1), ThreadPoolExecutor(2) as pool:
        return list(pool.map(fit, items))


def _weighted_kmeans(
    prep: _Prepared, k: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """k-means with Huang et al.'s feature weights: the labels of the last of WEIGHT_FITS
    fits, the (numeric, categorical) weights it used and its coordinates."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    p = prep.z.shape[1]
    w = np.ones(p + len(prep.categorical))
    labels = np.zeros(prep.z.shape[0], np.int64)
    for i in range(WEIGHT_FITS):
        x = prep.embed(w[:p], w[p:])
        # the first fit tries four starts; a refit under new weights goes on from the last
        # fit's clusters (their means in the new coordinates), as Huang et al.'s algorithm
        # alternates weights and partitions, and converges in a few steps
        kmeans = (
            KMeans(k, n_init=4, random_state=seed)
            if i == 0
            else KMeans(k, init=_means(x, labels, k), n_init=1, random_state=seed)
        )
        # one thread on small data: OpenMP threads that wait for busy cores (other
        # processes, tests in parallel) made each 800-row k-means run take 0.13 s (the
        # segments stage on 800 customers: 40.8 s, 16.2 s with one thread)
        with threadpool_limits(1 if len(x) < PARALLEL_ROWS else None, user_api="openmp"):
            labels = kmeans.fit(x).labels_
        if i < WEIGHT_FITS - 1:
            inv = 1.0 / np.maximum(_dispersion(prep, labels, k)[:p], 1e-3)
            w[:p] = [_r(v) for v in inv / inv.mean()]
    return labels, w[:p], w[p:], x


def _means(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return np.stack(
        [x[labels == c].mean(0) if (labels == c).any() else x.mean(0) for c in range(k)]
    )


def _kprototypes(
    prep: _Prepared, model: ClusterModel, x: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Refine a weighted k-means solution with kmodes' KPrototypes (modes for categories,
    a weighted mismatch count); returns its labels."""
    from kmodes.kprototypes import KPrototypes

    p = len(model.numeric)
    xnum, codes = x[:, :p], prep.codes
    costs = np.array([model.gamma * f.weight for f in model.categorical])

    def mismatch(a: np.ndarray, b: np.ndarray, **_: Any) -> np.ndarray:
        return np.asarray((a != b) @ costs)

    init_num = _means(xnum, labels, model.k)
    init_cat = np.zeros((model.k, codes.shape[1]), np.uint16)
    for j in range(codes.shape[1]):
        enc = {v: i for i, v in enumerate(np.unique(codes[:, j]))}  # kmodes' own encoding
        for c in range(model.k):
            members = codes[labels == c, j] if (labels == c).any() else codes[:, j]
            init_cat[c, j] = enc[int(np.bincount(members).argmax())]
    kp = KPrototypes(
        model.k,
        init=[init_num, init_cat],
        n_init=1,
        gamma=1.0,
        cat_dissim=mismatch,
        max_iter=50,
        random_state=model.seed,
    )
    data = np.column_stack([xnum, codes.astype(float)])
    kp.fit(data, categorical=list(range(p, p + codes.shape[1])))
    return np.asarray(kp.labels_, np.int64)


def _fit_k(
    data: pa.Table, prep: _Prepared, method: str, k: int, seed: int
) -> tuple[ClusterModel, np.ndarray, np.ndarray]:
    """Fit one k: the model, the sample's labels as `predict` gives them, and the
    coordinates it was fitted in (for its diagnostics)."""
    if method == "gmm":
        from sklearn.mixture import GaussianMixture

        wn, wc = np.ones(prep.z.shape[1]), np.ones(len(prep.categorical))
        model = _empty_model(prep, method, k, seed, wn, wc)
        gm = GaussianMixture(
            k, covariance_type="diag", reg_covar=GMM_REG, random_state=seed, max_iter=200
        ).fit(x := prep.common())
        model.centroids = [[_r(v) for v in row] for row in gm.means_]
        model.variances = [[_r(v) for v in row] for row in gm.covariances_]
        model.mix_weights = [_r(max(v, 1e-12)) for v in gm.weights_]
        return model, model.predict(data), x
    labels, wn, wc, x = _weighted_kmeans(prep, k, seed)
    model = _empty_model(prep, method, k, seed, wn, wc)
    if method == "kprototypes" and model.categorical:
        labels = _kprototypes(prep, model, x, labels)
        cent = _means(x, labels, k)
        pos = len(model.numeric)
        for f in model.categorical:  # the mode's one-hot point
            size = len(f.all_levels)
            block = cent[:, pos : pos + size]
            cent[:, pos : pos + size] = np.eye(size)[block.argmax(1)] * model._onehot(f)
            pos += size
    else:
        cent = _means(x, labels, k)
    model.centroids = [[_r(v) for v in row] for row in cent]
    return model, model.predict(data), x


def _empty_model(
    prep: _Prepared, method: str, k: int, seed: int, wn: np.ndarray, wc: np.ndarray
) -> ClusterModel:
    numeric = [
        NumericFeature(f.name, f.log, f.center, f.scale, f.fill, float(w))
        for f, w in zip(prep.numeric, wn, strict=True)
    ]
    categorical = [
        CategoricalFeature(f.name, list(f.levels), float(w))
        for f, w in zip(prep.categorical, wc, strict=True)
    ]
    return ClusterModel(method, k, numeric, categorical, [], prep.gamma, seed)


def _diagnose(
    prep: _Prepared,
    model: ClusterModel,
    labels: np.ndarray,
    x: np.ndarray,
    silhouette: Silhouette,
    measured: np.ndarray,
) -> dict[str, float]:
    """silhouette and inertia of one fit in its weighted coordinates, and its BIC.

    BIC: for a Gaussian mixture, scikit-learn's. For k-means and k-prototypes, the BIC of
    the partition read as a model (the classification likelihood behind k-means, extended
    to categories): cluster shares, per cluster a mean for each number with one variance per
    number, and per cluster the frequencies of each category's levels; log-likelihood
    sum_k n_k log(n_k / n) - n/2 sum_j (log(2 pi var_j) + 1) + sum_c sum_k,l n_kl log p_kl,
    and k - 1 + k p + p + k sum_c (levels_c - 1) parameters, each costing log n. Weights and
    gamma do not enter it, so every k is judged alike. The silhouette is `silhouette`'s,
    of the rows `measured` (`Silhouette.rows`)."""
    n = x.shape[0]
    k = model.k
    inertia = float(((x - _means(x, labels, k)[labels]) ** 2).sum())
    if model.method == "gmm":
        params = 2 * k * x.shape[1] + k - 1
        bic = -2 * _gmm_loglik(model, x) + params * math.log(n)
    else:
        bic = _partition_bic(prep, labels, k)
    return {
        "k": float(k),
        "silhouette": _mean_silhouette(silhouette, labels[measured]),
        "bic": bic,
        "inertia": inertia,
        "chosen": 0.0,
    }


def _mean_silhouette(silhouette: Silhouette, labels: np.ndarray) -> float:
    """The mean silhouette; NaN unless there are 2 to n - 1 clusters among the rows."""
    if not 2 <= len(np.unique(labels)) <= len(labels) - 1:
        return math.nan
    return float(silhouette.samples(labels).mean())


class Silhouette:
    """Silhouettes of labelings of one set of rows (at most SILHOUETTE_ROWS of them): their
    distance matrix is computed once, so a Gaussian mixture's k (one space for every k) and
    the rule segmentations measured in one clustering's space pay for it once.

    The values are scikit-learn's `silhouette_samples`: a = mean distance to the rest of
    one's cluster, b = the smallest mean distance to another cluster, (b - a) / max(a, b),
    0 alone in a cluster; the sums per cluster are one product with the labels' indicator
    matrix instead of a loop over rows."""

    def __init__(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        sq = np.einsum("ij,ij->i", x, x)
        d = x @ x.T
        d *= -2.0
        d += sq[:, None]
        d += sq[None, :]
        np.maximum(d, 0.0, out=d)
        np.fill_diagonal(d, 0.0)
        self.distances = np.sqrt(d, out=d)

    def samples(self, labels: np.ndarray) -> np.ndarray:
        """One value per row; labels of any type, at least two distinct ones."""
        _, codes = np.unique(labels, return_inverse=True)
        codes = codes.ravel()
        k = int(codes.max()) + 1
        sizes = np.bincount(codes, minlength=k).astype(np.float64)
        sums = self.distances @ np.eye(k)[codes]
        rows = np.arange(len(codes))
        own = sizes[codes]
        a = sums[rows, codes] / np.maximum(own - 1, 1)
        mean = sums / sizes
        mean[rows, codes] = np.inf
        b = mean.min(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = (b - a) / np.maximum(a, b)
        return np.nan_to_num(np.where(own > 1, s, 0.0))

    @staticmethod
    def rows(n: int, seed: int, size: int = SILHOUETTE_ROWS) -> np.ndarray:
        """The rows of n that scikit-learn's `silhouette_score(sample_size=size,
        random_state=seed)` measures: a permutation's first `size`."""
        return np.random.RandomState(seed).permutation(n)[: min(size, n)]


def _partition_bic(prep: _Prepared, labels: np.ndarray, k: int) -> float:
    """BIC of a hard partition with Gaussian numbers and multinomial categories
    (`_diagnose`)."""
    n, p = prep.z.shape
    sizes = np.bincount(labels, minlength=k).astype(float)
    used = sizes[sizes > 0]
    ll = float((used * np.log(used / n)).sum())
    params = k - 1
    if p:
        var = np.maximum(((prep.z - _means(prep.z, labels, k)[labels]) ** 2).mean(0), 1e-12)
        ll -= 0.5 * n * float((np.log(2 * math.pi * var) + 1).sum())
        params += k * p + p
    for j, f in enumerate(prep.categorical):
        size = len(f.all_levels)
        counts = np.zeros((k, size))
        np.add.at(counts, (labels, prep.codes[:, j]), 1)
        share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        ll += float((counts * np.log(np.where(counts > 0, share, 1.0))).sum())
        params += k * (size - 1)
    return -2 * ll + params * math.log(n)


def _gmm_loglik(model: ClusterModel, x: np.ndarray) -> float:
    from scipy.special import logsumexp

    mu = np.asarray(model.centroids)
    var = np.asarray(model.variances)
    logw = np.log(np.asarray(model.mix_weights))
    dens = np.stack(
        [
            logw[c] - 0.5 * (np.log(2 * np.pi * var[c]) + (x - mu[c]) ** 2 / var[c]).sum(1)
            for c in range(model.k)
        ],
        1,
    )
    return float(logsumexp(dens, axis=1).sum())


def _choose(rows: list[dict[str, float]]) -> int:
    """Index of the chosen row: the best silhouette, where silhouettes within
    SILHOUETTE_TIE of the best count as a tie (a sampled silhouette does not tell them
    apart) and the lowest BIC among the tied wins."""
    sils = [r["silhouette"] for r in rows]
    if all(math.isnan(s) for s in sils):
        return int(np.argmin([r["bic"] for r in rows]))
    best = max(s for s in sils if not math.isnan(s))
    tied = [i for i, s in enumerate(sils) if not math.isnan(s) and s >= best - SILHOUETTE_TIE]
    return min(tied, key=lambda i: rows[i]["bic"])


def fit_clusters(
    data: pa.Table,
    numeric: Sequence[str],
    categorical: Sequence[str] = (),
    *,
    method: str = "auto",
    k: int | None = None,
    k_range: tuple[int, int] = (2, 8),
    seed: int = 0,
    choose_by: str = "silhouette",
    rescale: bool = True,
) -> ClusterModel:
    """Fit a segmentation on the sample `data`.

    method: `auto` is k-means without categories and k-prototypes with them; `gmm` a
    Gaussian mixture. Without `k`, every k in `k_range` is fitted (on CHOOSE_ROWS rows of a
    larger sample) and the one with the best silhouette (ties within 0.01 broken by the lower
    BIC) is fitted on all of `data`; `choose_by="bic"` takes the lowest BIC instead, for
    features a Gaussian model suits (survey factor scores). The table of all of them is
    `model.diagnostics`. `rescale=False` clusters the numbers as they are, for features
    already on one scale (factor scores). The same data and seed give the same model."""
    numeric, categorical = list(numeric), list(categorical)
    if not numeric and not categorical:
        raise ConfigError(
            "Clustering needs at least one feature; none was given.",
            hint="Name traits in the segmentation, or let choose_features pick them.",
        )
    _check_columns(data, numeric + categorical)
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise ConfigError(
            f"Clustering feature '{both[0]}' is listed as both numeric and categorical.",
            hint="List it once.",
        )
    if method == "auto":
        method = "kprototypes" if categorical else "kmeans"
    if method not in METHODS:
        raise ConfigError(
            f"Unknown clustering method '{method}'.{closest(method, METHODS)}",
            hint=f"Use one of: auto, {', '.join(METHODS)}.",
        )
    n = data.num_rows
    lo, hi = k_range
    if k is not None:
        if k < 1:
            raise ConfigError(f"The number of segments must be at least 1 (got k = {k}).")
        ks = [k]
    else:
        if lo < 2 or hi < lo:
            raise ConfigError(
                f"k_range {k_range} is not a range of segment counts.",
                hint="Give (low, high) with 2 <= low <= high, e.g. (2, 8).",
            )
        ks = [kk for kk in range(lo, hi + 1) if kk < n]
    if not ks or ks[0] > n:
        want = k if k is not None else lo
        raise ConfigError(
            f"The sample has {n} row(s), fewer than the {want} segments asked for"
            + ("" if k is not None else " (a silhouette needs more rows than segments)")
            + ".",
            hint="Cluster more customers or ask for fewer segments.",
        )
    # k is chosen on at most CHOOSE_ROWS rows (every k is a full fit), then fitted on all
    trial = _sample_rows(data, CHOOSE_ROWS, seed) if len(ks) > 1 else data
    prep = _prepare(trial, numeric, categorical, rescale)
    measured = Silhouette.rows(trial.num_rows, seed)
    # a Gaussian mixture is fitted in the same coordinates for every k
    common = Silhouette(prep.common()[measured]) if method == "gmm" else None

    def fit(kk: int) -> tuple[ClusterModel, dict[str, float]]:
        model, labels, x = _fit_k(trial, prep, method, kk, seed)
        row = _diagnose(prep, model, labels, x, common or Silhouette(x[measured]), measured)
        log.debug("k=%d: %s", kk, row)
        return model, row

    fitted = _each(fit, ks, trial.num_rows)
    fits, rows = [f[0] for f in fitted], [f[1] for f in fitted]
    pick = _choose(rows) if choose_by == "silhouette" else int(np.argmin([r["bic"] for r in rows]))
    rows[pick]["chosen"] = 1.0
    chosen = fits[pick]
    if trial.num_rows < data.num_rows:
        prep = _prepare(data, numeric, categorical, rescale)
        chosen = _fit_k(data, prep, method, ks[pick], seed)[0]
    chosen.diagnostics = rows
    chosen.rescale = rescale
    return chosen


# ---- describing and judging ------------------------------------------------------------


@dataclass
class Describing:
    """The columns segments are described by, prepared once (a category's level codes cost
    as much as describing): any number of labelings of the same rows reuse them."""

    rows: int
    spread: dict[str, tuple[np.ndarray, np.ndarray, float, float]]  # values, known, sd, mean
    cats: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # levels, codes, rows per level

    @classmethod
    def of(cls, data: pa.Table, numeric: Sequence[str], categorical: Sequence[str]) -> Describing:
        _check_columns(data, [*numeric, *categorical])
        spread = {}  # numbers that vary
        for c in numeric:
            x = _floats(data, c)
            ok = ~np.isnan(x)
            sd = float(x[ok].std()) if ok.any() else 0.0
            if sd > 0:
                spread[c] = (x, ok, sd, float(x[ok].mean()))
        cats = {}
        for c in categorical:
            levels, codes = np.unique(_strings(data, c).astype(str), return_inverse=True)
            cats[c] = (levels, codes, np.bincount(codes, minlength=len(levels)))
        return cls(data.num_rows, spread, cats)

    def describe(self, labels: np.ndarray, top: int = 5) -> list[dict[str, Any]]:
        """Per cluster: label, size, share, the `top` traits that set it apart and a proposed
        name.

        A number's effect is the standardised difference (cluster mean - overall mean) /
        overall sd; a category value's effect is the same for its 0/1 indicator, reported with
        its lift (share in the cluster / share overall) and support (customers in the cluster
        with that value). Only values more common in the cluster count, and only with support
        of at least 5% of the cluster. Traits rank by absolute effect; the name is built from
        the first two ("High income, top_category = gifts"), made unique with a number."""
        labels = np.asarray(labels)
        if len(labels) != self.rows:
            raise ConfigError(
                f"describe_clusters got {len(labels)} labels for {self.rows} rows.",
                hint="Pass the labels `predict` gave for these rows.",
            )
        n, spread, cats = self.rows, self.spread, self.cats
        out: list[dict[str, Any]] = []
        for label in sorted(int(v) for v in np.unique(labels)):
            member = labels == label
            size = int(member.sum())
            traits: list[dict[str, Any]] = []
            for c, (x, ok, sd, om) in spread.items():
                inside = ok & member
                if not inside.any():
                    continue
                cm = float(x[inside].mean())
                traits.append(
                    {
                        "trait": c,
                        "kind": "numeric",
                        "value": None,
                        "cluster_mean": cm,
                        "overall_mean": om,
                        "std_diff": (cm - om) / sd,
                        "lift": None,
                        "support": int(inside.sum()),
                    }
                )
            for c, (levels, codes, counts) in cats.items():
                inside_counts = np.bincount(codes[member], minlength=len(levels))
                for level, count, hits in zip(levels, counts, inside_counts, strict=True):
                    overall = count / n
                    share = hits / size
                    if share <= overall or hits < max(1, 0.05 * size) or overall >= 1:
                        continue
                    traits.append(
                        {
                            "trait": c,
                            "kind": "category",
                            "value": str(level),
                            "cluster_mean": float(share),
                            "overall_mean": float(overall),
                            "std_diff": float(
                                (share - overall) / math.sqrt(overall * (1 - overall))
                            ),
                            "lift": float(share / overall),
                            "support": int(hits),
                        }
                    )
            traits.sort(key=lambda t: (-abs(t["std_diff"]), t["trait"], str(t["value"])))
            out.append(
                {
                    "label": label,
                    "size": size,
                    "share": size / n if n else 0.0,
                    "distinguishing": traits[:top],
                    "proposed_name": _name(traits),
                }
            )
        seen: dict[str, int] = {}
        for seg in out:
            base = str(seg["proposed_name"])
            seen[base] = seen.get(base, 0) + 1
            if seen[base] > 1:
                seg["proposed_name"] = f"{base} ({seen[base]})"
        return out


def describe_clusters(
    data: pa.Table,
    labels: np.ndarray,
    numeric: Sequence[str],
    categorical: Sequence[str],
    top: int = 5,
) -> list[dict[str, Any]]:
    """Per cluster of `labels` (one per row of `data`): label, size, share, the `top`
    traits that set it apart and a proposed name (see `Describing.describe`)."""
    return Describing.of(data, numeric, categorical).describe(labels, top)


def _name(traits: list[dict[str, Any]]) -> str:
    """'High x, Low y' / 'x = v' from the two strongest traits (|effect| >= 0.2)."""
    parts: list[str] = []
    for t in traits:
        if abs(t["std_diff"]) < 0.2 or len(parts) == 2:
            break
        if t["kind"] == "numeric":
            parts.append(f"{'High' if t['std_diff'] > 0 else 'Low'} {t['trait']}")
        elif t["value"] == MISSING:
            parts.append(f"No {t['trait']}")
        else:
            parts.append(f"{t['trait']} = {t['value']}")
    return ", ".join(parts) if parts else "Average customers"


def stability(
    data: pa.Table, model: ClusterModel, resamples: int = 5, seed: int = 0
) -> tuple[float, list[float]]:
    """Bootstrap stability: refit the model (same method, features and k) on `resamples`
    resamples of `data` drawn with replacement, label `data` with each refit, and compare
    with the model's own labels: the mean adjusted Rand index, and per cluster the mean of
    its best Jaccard overlap with a refit cluster (Hennig 2007; above 0.75 is stable)."""
    from sklearn.metrics import adjusted_rand_score

    data = _sample_rows(data, CHOOSE_ROWS, seed)  # refits on resamples of at most this many
    base = model.predict(data)
    numeric = [f.name for f in model.numeric]
    categorical = [f.name for f in model.categorical]
    rng = np.random.default_rng(seed)
    n = data.num_rows
    aris, jac = [], np.zeros(model.k)
    draws = [rng.integers(0, n, n) for _ in range(resamples)]

    def refit(i: int) -> ClusterModel:
        # what fit_clusters does for one k, without the diagnostics a refit does not keep
        resample = data.take(pa.array(draws[i]))
        prep = _prepare(resample, numeric, categorical, model.rescale)
        return _fit_k(resample, prep, model.method, model.k, model.seed)[0]

    for refitted in _each(refit, range(resamples), n):
        other = refitted.predict(data)
        aris.append(adjusted_rand_score(base, other))
        for c in range(model.k):
            a = base == c
            if not a.any():
                continue
            jac[c] += max(
                (a & (other == j)).sum() / (a | (other == j)).sum() for j in range(refitted.k)
            )
    if not aris:
        return math.nan, [math.nan] * model.k
    return float(np.mean(aris)), [float(v / resamples) for v in jac]


def separation(
    data: pa.Table, model: ClusterModel, sample: int = SILHOUETTE_ROWS, seed: int = 0
) -> float:
    """Silhouette of the model's labels on `data` (at most `sample` rows) in the model's
    coordinates, as in the diagnostics; NaN with fewer than two clusters present."""
    picked = data.take(pa.array(Silhouette.rows(data.num_rows, seed, sample)))
    return _mean_silhouette(Silhouette(model.transform(picked)), model.predict(picked))
