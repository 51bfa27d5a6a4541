"""Psychographic and needs-based segmentation from survey answers, and attitudinal bands.

The `responses` table holds one row per answer. `survey_wide` turns it into one row per
respondent with one numeric column per Likert item (in the engine); `fit_factors` fits a
factor analysis (varimax-rotated) on a sample of those rows pulled as Arrow; the fitted
`FactorModel` scores every respondent back in the engine (`score_exprs`), and the factor scores
are what the clustering module clusters.

Which items a basis uses (`basis_items`), decided on the items' `construct`:

- ``psychographic``: every item with numeric answers (the whole attitude battery: needs,
  benefits, values, interests, attitudes). Constructs are not needed.
- ``needs``: the items whose construct is ``need`` or ``benefit`` (what customers need and the
  benefits they seek).
- ``values``: the items with any other construct (value, interest, attitude, lifestyle, ...),
  the narrow psychographic reading.

Psychographic takes every item because segments differ on needs and values together: on the
synthetic survey neither half alone tells the five planted segments apart (ARI about 0.4 for
either), all eight items do (about 0.8).

Number of factors, when not given: Kaiser's rule, the eigenvalues of the items' correlation
matrix above 1, kept between 1 and len(items) - 1. It needs no simulation, so the same data
always gives the same count; where it keeps a borderline factor, that costs a clustering
little, while dropping a factor loses a direction that may separate segments.

Each factor is named by its top items (by absolute loading, at least 0.4, up to three; the top
item always): the items loading positively, then ``vs`` and the ones loading negatively, each
item by its wording shortened. Each factor's sign is set so that its top item loads positively.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from personae.errors import ConfigError

log = logging.getLogger(__name__)

Basis = Literal["psychographic", "needs", "values"]
BASES: tuple[str, ...] = ("psychographic", "needs", "values")
NEEDS_CONSTRUCTS = frozenset({"need", "benefit"})
VALUES_CONSTRUCTS = frozenset(
    {"value", "interest", "attitude", "lifestyle", "opinion", "activity", "personality"}
)
MIN_ITEMS = 3
MIN_RESPONDENTS = 50
NAME_LOADING = 0.4  # a loading at least this large names its factor
NAME_ITEMS = 3  # at most this many items in a factor's name
LABEL_CHARS = 40  # an item's wording is cut to this length in a factor name
_FILLERS = (" to me", " for me", " when i ", " before i ")


# ---- items and the wide table ---------------------------------------------------------------


def construct_key(construct: str | None) -> str | None:
    """A construct as compared: lower case, trimmed, a plural of a known construct singular."""
    if construct is None or not construct.strip():
        return None
    key = construct.strip().lower()
    if key.endswith("s") and key[:-1] in NEEDS_CONSTRUCTS | VALUES_CONSTRUCTS:
        key = key[:-1]
    return key


def survey_items(responses: ir.Table) -> list[dict[str, Any]]:
    """One dict per item (a small aggregate): item_id, item_text, construct (as
    `construct_key` gives it), answers (rows) and numeric (rows with a `value_num`)."""
    r = responses.filter(responses.item_id.notnull())
    agg = (
        r.group_by("item_id")
        .aggregate(
            item_text=r.item_text.max(),
            construct=r.construct.max(),
            answers=r.count(),
            numeric=r.value_num.count(),
        )
        .order_by("item_id")
    )
    rows: list[dict[str, Any]] = agg.to_pyarrow().to_pylist()
    for row in rows:
        row["construct"] = construct_key(row["construct"])
    return rows


def basis_items(items: list[dict[str, Any]], basis: Basis = "psychographic") -> list[str]:
    """The ids of the items (from `survey_items`) a basis uses; see the module docstring."""
    if basis not in BASES:
        raise ConfigError(
            f"Unknown survey basis '{basis}'.", hint=f"Use one of: {', '.join(BASES)}."
        )
    numeric = [i for i in items if i["numeric"]]
    if not numeric:
        raise ConfigError(
            "The survey has no numeric answers: every value_num in `responses` is empty.",
            hint="Map the Likert answer column of the survey source to value_num.",
        )
    if basis == "psychographic":
        return [i["item_id"] for i in numeric]
    constructs = {i["construct"] for i in numeric} - {None}
    if not constructs:
        raise ConfigError(
            f"No survey item has a construct, so the '{basis}' items are unknown.",
            hint="Map the construct column (need, benefit, value, interest, ...) of the "
            "survey source, or use the psychographic basis (all items).",
        )
    if basis == "needs":
        chosen = [i["item_id"] for i in numeric if i["construct"] in NEEDS_CONSTRUCTS]
    else:
        chosen = [
            i["item_id"]
            for i in numeric
            if i["construct"] is not None and i["construct"] not in NEEDS_CONSTRUCTS
        ]
    if not chosen:
        raise ConfigError(
            f"No survey item belongs to the '{basis}' basis; the constructs are: "
            f"{', '.join(sorted(constructs))}.",
            hint="needs takes the constructs need and benefit, values every other one; "
            "the psychographic basis takes all items.",
        )
    return chosen


def item_columns(item_ids: list[str]) -> dict[str, str]:
    """A safe, unique column name for each item id (lower case letters, digits and _)."""
    taken = {"customer_id"}
    out: dict[str, str] = {}
    for item in item_ids:
        base = re.sub(r"[^0-9a-z]+", "_", item.lower()).strip("_") or "item"
        if base[0].isdigit():
            base = f"q_{base}"
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        out[item] = name
    return out


def survey_wide(responses: ir.Table, items: list[str] | None = None) -> ir.Table:
    """One row per respondent: customer_id and one float column per item (named by
    `item_columns`) holding the customer's latest answer of that item (by answered_at, then
    response_id; NULL when not answered). Only rows with a customer_id and a value_num count.
    `items` defaults to every item with a numeric answer."""
    t = responses.filter(
        responses.customer_id.notnull()
        & responses.item_id.notnull()
        & responses.value_num.notnull()
    )
    if items is not None:
        t = t.filter(t.item_id.isin(items))
    else:
        items = t.select("item_id").distinct().order_by("item_id").to_pyarrow()[0].to_pylist()
    if not items:
        raise ConfigError(
            "The survey has no numeric answers with a customer_id in `responses`.",
            hint="Map the Likert answer column of the survey source to value_num.",
        )
    order = [ibis.desc(t[c]) for c in ("answered_at", "response_id") if c in t.columns]
    if order:
        rank = ibis.row_number().over(group_by=[t.customer_id, t.item_id], order_by=order)
        t = t.mutate(_answer_rank=rank).filter(ibis._._answer_rank == 0)
    value = t.value_num.cast("float64")
    return t.group_by("customer_id").aggregate(
        **{col: value.max(where=t.item_id == item) for item, col in item_columns(items).items()}
    )


# ---- the factor model ---------------------------------------------------------------------


def short_label(text: str) -> str:
    """An item's wording shortened for a factor name: no end punctuation, no trailing
    'to me'/'for me'/'when I ...', at most LABEL_CHARS characters (cut at a word)."""
    label = text.strip().rstrip(".!?;: ")
    low = label.lower()
    cuts = [low.find(f) for f in _FILLERS if low.find(f) > 0]
    if cuts:
        label = label[: min(cuts)]
    if len(label) > LABEL_CHARS:
        label = label[:LABEL_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return label or text


def name_factor(loadings: np.ndarray, labels: list[str]) -> str:
    """A factor's name from its loadings (one per item) and the items' labels: the top items
    by absolute loading (at least NAME_LOADING, at most NAME_ITEMS, the top one always), those
    loading positively, then 'vs' and those loading negatively."""
    order = np.argsort(-np.abs(loadings), kind="stable")
    top = [int(i) for i in order[:NAME_ITEMS] if abs(loadings[i]) >= NAME_LOADING]
    top = top or [int(order[0])]
    pos = [labels[i] for i in top if loadings[i] >= 0]
    neg = [labels[i] for i in top if loadings[i] < 0]
    if pos and neg:
        return f"{' / '.join(pos)} vs {' / '.join(neg)}"
    return " / ".join(pos) if pos else f"not {' / '.join(neg)}"


@dataclass(eq=False)
class FactorModel:
    """A fitted factor analysis of Likert items, able to score respondents in numpy and in
    the engine. Arrays are per item (rows) and per factor (columns)."""

    items: list[str]  # columns of the wide table
    texts: list[str]  # the items' wording (the column when none is known)
    means: np.ndarray  # item means (a missing answer is imputed with it)
    scales: np.ndarray  # item standard deviations (ddof 0)
    loadings: np.ndarray  # items x factors, varimax-rotated, on standardised items
    uniquenesses: np.ndarray  # noise variance of each standardised item
    weights: np.ndarray  # items x factors: scores = standardised items @ weights
    names: list[str]  # one readable name per factor
    explained: np.ndarray  # share of the standardised items' total variance per factor
    eigenvalues: np.ndarray  # of the items' correlation matrix (the factor count rule)
    respondents: int  # rows the model was fitted on
    seed: int = 0
    columns: list[str] = field(default_factory=list)  # score column per factor

    def __post_init__(self) -> None:
        if not self.columns:
            self.columns = [f"factor_{j + 1}" for j in range(self.weights.shape[1])]

    @property
    def n_factors(self) -> int:
        return int(self.weights.shape[1])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters; `from_dict` gives the same model back."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            out[key] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FactorModel:
        arrays = ("means", "scales", "loadings", "uniquenesses", "weights", "explained")
        params: dict[str, Any] = dict(data)
        for key in (*arrays, "eigenvalues"):
            params[key] = np.asarray(data[key], dtype=float)
        return cls(**params)

    def transform(self, data: pa.Table) -> np.ndarray:
        """Factor scores (rows x factors) of the rows of `data`, which holds the item columns;
        a missing answer counts as the item's mean."""
        z = (_matrix(data, self.items) - self.means) / self.scales
        return np.asarray(np.nan_to_num(z, nan=0.0) @ self.weights)

    def score_exprs(self, table: ir.Table) -> dict[str, ir.FloatingValue]:
        """The same scores as engine expressions over `table` (which holds the item
        columns), one per score column."""
        z = [
            ibis.coalesce((table[c].cast("float64") - float(m)) / float(s), 0.0)
            for c, m, s in zip(self.items, self.means, self.scales, strict=True)
        ]
        out: dict[str, ir.FloatingValue] = {}
        for j, col in enumerate(self.columns):
            terms = [zi * float(w) for zi, w in zip(z, self.weights[:, j], strict=True)]
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            out[col] = total
        return out

    def score_table(self, table: ir.Table, keep: tuple[str, ...] = ("customer_id",)) -> ir.Table:
        """`table`'s `keep` columns and one score column per factor."""
        return table.select(*keep, **self.score_exprs(table))


def _matrix(data: pa.Table, items: list[str]) -> np.ndarray:
    """The item columns of `data` as a float matrix, NULL as NaN."""
    cols = []
    for item in items:
        col = data.column(item)
        if col.null_count == len(col):
            cols.append(np.full(len(col), np.nan))
        else:
            cols.append(col.cast(pa.float64()).to_numpy(zero_copy_only=False))
    return np.column_stack(cols) if cols else np.empty((data.num_rows, 0))


def _numeric(dtype: pa.DataType) -> bool:
    t = pa.types
    return t.is_integer(dtype) or t.is_floating(dtype) or t.is_decimal(dtype) or t.is_null(dtype)


def _check(data: pa.Table, items: list[str]) -> None:
    """ConfigErrors for too few items, missing or text columns and items without answers."""
    if len(items) < MIN_ITEMS:
        raise ConfigError(
            f"Factor analysis needs at least {MIN_ITEMS} survey items; got {len(items)}"
            + (f" ({', '.join(items)})." if items else "."),
            hint="Add Likert items to the survey basis, or use the psychographic basis.",
        )
    missing = [i for i in items if i not in data.column_names]
    if missing:
        raise ConfigError(
            f"The survey data lacks the item column(s) {', '.join(missing)}; it has: "
            f"{', '.join(data.column_names)}.",
            hint="Pass the item columns as survey_wide names them (item_columns).",
        )
    text = [i for i in items if not _numeric(data.schema.field(i).type)]
    if text:
        raise ConfigError(
            f"The survey item(s) {', '.join(text)} hold non-numeric answers "
            f"({data.schema.field(text[0]).type}); factor analysis needs numbers.",
            hint="Map the Likert answers to the value_num column of responses.",
        )
    empty = [i for i in items if data.column(i).null_count == data.num_rows]
    if empty:
        raise ConfigError(
            f"The survey item(s) {', '.join(empty)} have no numeric answers.",
            hint="Leave these items out, or map their answers to value_num.",
        )


def factor_count(eigenvalues: np.ndarray) -> int:
    """Kaiser's rule: eigenvalues of the correlation matrix above 1, at least 1, at most
    len(items) - 1."""
    return int(min(max(int((eigenvalues > 1.0).sum()), 1), len(eigenvalues) - 1))


def fit_factors(
    data: pa.Table,
    items: list[str],
    n_factors: int | None = None,
    seed: int = 0,
    texts: dict[str, str] | None = None,
) -> FactorModel:
    """Fit a varimax-rotated factor analysis of the `items` columns of `data` (a sample of
    `survey_wide` rows) on the respondents who answered every item, the items standardised.
    `n_factors` defaults to Kaiser's rule (`factor_count`); `texts` maps items to their
    wording, which names the factors."""
    from sklearn.decomposition import FactorAnalysis

    _check(data, items)
    x = _matrix(data, items)
    complete = ~np.isnan(x).any(axis=1)
    n = int(complete.sum())
    if n < MIN_RESPONDENTS:
        raise ConfigError(
            f"Factor analysis needs at least {MIN_RESPONDENTS} respondents who answered all "
            f"{len(items)} items; there are {n} (of {len(x)} respondents).",
            hint="Collect more answers, or pass fewer items (those most answered).",
        )
    x = x[complete]
    means, scales = x.mean(axis=0), x.std(axis=0)
    flat = [i for i, s in zip(items, scales, strict=True) if s == 0]
    if flat:
        raise ConfigError(
            f"Every respondent gave the same answer to {', '.join(flat)}: an item that does "
            "not vary cannot load on a factor.",
            hint="Leave that item out of the survey basis.",
        )
    z = (x - means) / scales
    eig = np.sort(np.linalg.eigvalsh(np.corrcoef(z, rowvar=False)))[::-1]
    k = factor_count(eig) if n_factors is None else n_factors
    if not 1 <= k <= len(items) - 1:
        raise ConfigError(
            f"n_factors must be between 1 and {len(items) - 1} for {len(items)} items; got {k}.",
            hint="Leave n_factors unset to choose it by Kaiser's rule.",
        )
    fa = FactorAnalysis(
        n_components=k,
        rotation="varimax" if k > 1 else None,
        svd_method="lapack",
        random_state=seed,
    ).fit(z)
    loadings = fa.components_.T.copy()
    psi = fa.noise_variance_.copy()
    # Score weights of sklearn's FactorAnalysis.transform (the posterior mean, which for a
    # fitted model equals Thurstone's regression scores): W Psi^-1 (I + W' Psi^-1 W)^-1.
    lp = loadings / psi[:, None]
    weights = lp @ np.linalg.inv(np.eye(k) + loadings.T @ lp)
    # Sign: the top item loads positively. Order: by variance explained, largest first.
    top = np.abs(loadings).argmax(axis=0)
    signs = np.sign(loadings[top, np.arange(k)])
    loadings, weights = loadings * signs, weights * signs
    ssl = (loadings**2).sum(axis=0)
    order = np.argsort(-ssl, kind="stable")
    loadings, weights, ssl = loadings[:, order], weights[:, order], ssl[order]
    words = [(texts or {}).get(i) or i for i in items]
    labels = [short_label(w) for w in words]
    names = _unique([name_factor(loadings[:, j], labels) for j in range(k)])
    log.info("survey factors: %d of %d items, %d respondents: %s", k, len(items), n, names)
    return FactorModel(
        items=list(items),
        texts=words,
        means=means,
        scales=scales,
        loadings=loadings,
        uniquenesses=psi,
        weights=weights,
        names=names,
        explained=ssl / len(items),
        eigenvalues=eig,
        respondents=n,
        seed=seed,
    )


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def sample_rows(table: ir.Table, rows: int, seed: int = 0) -> pa.Table:
    """At most `rows` rows of `table` as Arrow, chosen by a hash of customer_id and the seed
    (the same rows for the same data and seed on every engine), ordered by customer_id."""
    key = (table.customer_id.cast("string") + f":{seed}").hexdigest("md5")  # same on Spark
    # chosen on the ids alone: ordering the whole row made the engine sort every column
    ids = table.select("customer_id", _key=key).order_by(["_key", "customer_id"]).limit(rows)
    picked = table.semi_join(ids.select("customer_id"), "customer_id")
    return picked.to_pyarrow().sort_by("customer_id")


def fit_survey(
    responses: ir.Table,
    basis: Basis = "psychographic",
    n_factors: int | None = None,
    sample: int = 100_000,
    seed: int = 0,
) -> tuple[FactorModel, ir.Table]:
    """The survey factors of one basis: the model, fitted on at most `sample` respondents,
    and the engine table of every respondent's scores (customer_id, factor_1, ...)."""
    items = survey_items(responses)
    chosen = basis_items(items, basis)
    cols = item_columns(chosen)
    wide = survey_wide(responses, chosen)
    texts = {cols[i["item_id"]]: i["item_text"] for i in items if i["item_id"] in cols}
    model = fit_factors(
        sample_rows(wide, sample, seed), list(cols.values()), n_factors, seed, texts
    )
    return model, model.score_table(wide)


def cluster_scores(
    scores: pa.Table,
    columns: list[str],
    k: int | None = None,
    k_range: tuple[int, int] = (2, 8),
    seed: int = 0,
) -> Any:
    """Segments of respondents from their factor scores: a Gaussian mixture with k by the
    lowest BIC, on the scores as they are (they are already in the factors' own units). The
    factor model treats the scores as Gaussian. On synth data (25,000 customers, seeds 11-17)
    this finds the 5 planted profiles every time, ARI 0.80-0.82; the silhouette would prefer
    4 (ARI 0.67), and rescaling each score by its spread gave k = 5 to 7 and ARI 0.67-0.82."""
    from personae.segments.cluster import fit_clusters

    return fit_clusters(
        scores,
        columns,
        method="gmm",
        k=k,
        k_range=k_range,
        seed=seed,
        choose_by="bic",
        rescale=False,
    )


# ---- attitudinal bands ----------------------------------------------------------------------

Scale = Literal["1-5", "0-10"]
BANDS: dict[str, tuple[tuple[str, float], ...]] = {
    "1-5": (("satisfied", 4.0), ("neutral", 3.0), ("dissatisfied", float("-inf"))),
    "0-10": (("promoter", 9.0), ("passive", 7.0), ("detractor", float("-inf"))),
}


def rating_scale(feedback: ir.Table) -> Scale:
    """The rating scale of `feedback`, from its largest rating: up to 5 is 1..5, up to 10 is
    the 0..10 NPS scale."""
    top = feedback.rating.max().to_pyarrow().as_py()
    if top is None:
        raise ConfigError(
            "The feedback table has no ratings, so there are no attitudinal bands.",
            hint="Map a rating column (stars, score, NPS) of the feedback source to rating.",
        )
    if top <= 5:
        return "1-5"
    if top <= 10:
        return "0-10"
    raise ConfigError(
        f"Feedback ratings go up to {top:g}; attitudinal bands know the 1..5 and the 0..10 "
        "(NPS) scales.",
        hint="Rescale the ratings to 1..5 or 0..10 when loading them.",
    )


def attitudinal_bands(feedback: ir.Table, scale: Scale | None = None) -> ir.Table:
    """Per customer with a rating: rating_mean, ratings (count) and band. On a 1..5 scale a
    mean of at least 4 is 'satisfied', at least 3 'neutral', else 'dissatisfied'; on a 0..10
    scale at least 9 is 'promoter', at least 7 'passive', else 'detractor'. The scale is
    detected from the largest rating (`rating_scale`) unless given."""
    scale = scale or rating_scale(feedback)
    if scale not in BANDS:
        raise ConfigError(f"Unknown rating scale '{scale}'.", hint="Use '1-5' or '0-10'.")
    rated = feedback.filter(feedback.customer_id.notnull() & feedback.rating.notnull())
    per = rated.group_by("customer_id").aggregate(
        rating_mean=rated.rating.cast("float64").mean(), ratings=rated.count()
    )
    cases = [(per.rating_mean >= low, band) for band, low in BANDS[scale][:-1]]
    band = ibis.cases(*cases, else_=BANDS[scale][-1][0])
    return per.mutate(band=band, scale=ibis.literal(scale))
