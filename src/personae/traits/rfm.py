"""RFM scores and named segments from the purchase summary.

Scores are quantile bins of each customer's rank among buyers: score = 1 + floor(percent_rank
* bins), capped at bins. percent_rank gives tied values the same (lowest) rank, so equal values
always share a score and the result does not depend on row order: the deterministic tie rule.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from personae.config import DEFAULT_RFM_SEGMENTS, RFMConfig


def _score(value: ir.Column, bins: int, descending: bool = False) -> ir.IntegerColumn:
    """The quantile bin of `value` among the rows where it is known; NULL where it is not
    (ranked apart by partitioning on the NULL flag: no join, and every engine agrees where
    NULLs sort)."""
    order = value.desc() if descending else value.asc()
    rank = ibis.percent_rank().over(group_by=value.isnull(), order_by=order)
    score = ibis.least(bins, (rank * bins).floor() + 1).cast("int64")
    return ibis.cases((value.notnull(), score), else_=ibis.null("int64"))


def rfm_traits(purchase: ir.Table, cfg: RFMConfig) -> ir.Table:
    """r/f/m scores, the cell, the weighted score and the named segment of every buyer;
    customers without a purchase get NULLs. A buyer without any amount (item-only baskets)
    has no m_score: the cell is the two digits RF and rfm_score weighs R and F only; a
    customer-level summary that does not say when the customer last bought gives no r_score."""
    buyers = purchase.filter(purchase.purchase_days > 0)
    scored = buyers.select(
        "customer_id",
        r_score=_score(
            buyers.days_since_last, cfg.bins, descending=not cfg.recency_higher_is_better
        ),
        f_score=_score(buyers.purchase_days, cfg.bins),
        # rounded to 1e-6: sums of the same amounts added in another order (another engine,
        # another thread count) must tie, not differ in the last bit
        m_score=_score(buyers.total_value.round(6), cfg.bins),
    )
    w = {k: cfg.weights.get(k, 1.0) for k in ("r", "f", "m")}
    rf = scored.r_score.cast("string").concat(scored.f_score.cast("string"))
    segments = cfg.segments
    if cfg.bins != 5 and segments == DEFAULT_RFM_SEGMENTS:
        segment: ir.Value = ibis.null("string")
    else:
        segment = ibis.cases(
            *[(rf.re_search(p), name) for name, p in segments.items()], else_=ibis.null("string")
        )
    has_r, has_m = scored.r_score.notnull(), scored.m_score.notnull()
    zero = ibis.literal(0.0, type="float64")
    weights = (
        ibis.literal(w["f"], type="float64")
        + ibis.cases((has_r, ibis.literal(w["r"], type="float64")), else_=zero)
        + ibis.cases((has_m, ibis.literal(w["m"], type="float64")), else_=zero)
    )
    scored = scored.mutate(
        rfm_cell=ibis.cases((has_m, rf.concat(scored.m_score.cast("string"))), else_=rf),
        rfm_score=(
            (
                scored.r_score.cast("float64").fill_null(0.0) * w["r"]
                + scored.f_score.cast("float64") * w["f"]
                + scored.m_score.cast("float64").fill_null(0.0) * w["m"]
            )
            / ibis.cases((weights == 0.0, 1.0), else_=weights)
        ).cast("float64"),
        rfm_segment=segment,
    )
    return scored
