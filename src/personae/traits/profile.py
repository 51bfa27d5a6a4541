"""Who a customer is and how they buy: demographics, behaviour and technographics, as Ibis
expressions (DuckDB and Spark). Each function returns one row per customer it knows about;
the stage left-joins them onto the purchase summary."""

from __future__ import annotations

from datetime import date

import ibis
import ibis.expr.types as ir

from personae.config import JOURNEY_STAGES, TraitsConfig
from personae.purchases import customer_events, join_on_customer

DAYPARTS = (("night", 0, 6), ("morning", 6, 12), ("afternoon", 12, 18), ("evening", 18, 24))

AGE_BANDS = (
    (18, "under 18"),
    (25, "18-24"),
    (35, "25-34"),
    (45, "35-44"),
    (55, "45-54"),
    (65, "55-64"),
)


def rank_value(amount: ir.NumericValue) -> ir.NumericValue:
    """An amount to rank by, rounded so that equal sums tie: summed in another order, 174.85
    comes out as 174.85000000000002 and would beat an equal amount that sorts first."""
    return amount.round(6)


def top_per_customer(
    t: ir.Table,
    key: str,
    weight: str,
    prefix: str,
    where: ir.BooleanValue | None = None,
    **also: ir.Scalar,
) -> ir.Table:
    """Per customer, the `key` with the largest `weight` among the rows `where` holds (ties:
    alphabetical; NULL weights last) and its share of their total, in one grouping: the top
    row is the smallest (weight missing, -weight, key), where a ranking window sorted every
    row. `also` are more aggregates of the same grouping (a grouping and a join less)."""
    w = t[weight]
    order = ibis.struct({"missing": w.isnull(), "rank": -rank_value(w), "key": t[key], "w": w})
    best = t.group_by("customer_id").aggregate(
        _best=order.min(where=where), _total=w.sum(where=where), **also
    )
    return best.select(
        "customer_id",
        *also,
        **{
            prefix: best._best["key"],
            # NULL, not NaN, when the customer's total is 0 (e.g. every amount is 0)
            f"{prefix}_share": best._best["w"] / best._total.nullif(0),
        },
    )


def demographic_traits(customers: ir.Table, as_of: date) -> ir.Table:
    """Age (from birth date, else birth year, else the source's age), age band, income
    quintile and the household and place columns carried through."""
    c = customers
    md = as_of.month * 100 + as_of.day
    from_date = (
        as_of.year
        - c.birth_date.year()
        - ((c.birth_date.month() * 100 + c.birth_date.day()) > md).cast("int64")
    )
    age = ibis.coalesce(from_date, as_of.year - c.birth_year, c.age).cast("int64")
    age = ibis.cases((age < 0, ibis.null("int64")), else_=age)  # born after the as-of date
    with_age = c.mutate(_age=age)
    band = ibis.cases(*[(with_age._age < upper, label) for upper, label in AGE_BANDS], else_="65+")
    with_income = with_age.filter(with_age.income.notnull())
    quintile = with_income.select(
        "customer_id",
        income_quintile=ibis.least(
            5, (ibis.percent_rank().over(order_by=with_income.income) * 5).floor() + 1
        ).cast("int64"),
    )
    out = with_age.select(
        "customer_id",
        age=with_age._age,
        age_band=ibis.cases((with_age._age.isnull(), ibis.null("string")), else_=band),
        gender=with_age.gender,
        income=with_age.income,
        household_size=with_age.household_size,
        children=with_age.children,
        marital_status=with_age.marital_status,
        education=with_age.education,
        occupation=with_age.occupation,
        country=with_age.country,
        region=with_age.region,
        city=with_age.city,
        marketing_consent=with_age.marketing_consent,
    )
    return join_on_customer(out, quintile)


def category_values(lines: ir.Table) -> ir.Table:
    """Purchase value per customer and category (the categorised purchase lines)."""
    buys = lines.filter(lines.is_purchase & lines.category.notnull())
    return buys.group_by(["customer_id", "category"]).aggregate(spend=buys.amount.sum())


def category_spend(values: ir.Table) -> ir.Table:
    """Long table: `category_values` with each value's share of the customer's categorised
    value (the spend share per category). Given the values computed apart, not inline: the
    window over the grouping took 31 s at 10 M customers, 24 s in two steps."""
    total = values.spend.sum().over(group_by="customer_id")
    return values.mutate(share=(values.spend / total.nullif(0)).cast("float64"))


def channel_lines(lines: ir.Table) -> ir.Table:
    """Long table: per customer and channel (NULL included), the purchase lines' value,
    count, units and discounted count, and their value at the weekend and in each daypart;
    the behaviour and timing traits read it instead of the order lines (75 s at 10 M
    customers as several passes over the lines)."""
    buys = lines.filter(lines.is_purchase)
    hour = buys.ordered_at.hour()
    return buys.group_by(["customer_id", "channel"]).aggregate(
        spend=buys.amount.sum(),
        lines=buys.count(),
        units=buys.quantity.sum(),
        discounted=buys.count(
            where=(buys.discount.fill_null(0) > 0) | (buys.discount_rate.fill_null(0) > 0)
        ),
        weekend=buys.amount.sum(where=buys.day.day_of_week.index() >= 5),
        **{name: buys.amount.sum(where=(hour >= lo) & (hour < hi)) for name, lo, hi in DAYPARTS},
    )


def behaviour_traits(
    channels: ir.Table, categories: ir.Table, purchase: ir.Table, cfg: TraitsConfig
) -> ir.Table:
    """Category, channel, discount and basket behaviour, from `channel_lines`,
    `category_spend` and the purchase summary's orders."""
    cats = top_per_customer(
        categories, "category", "spend", "top_category", category_breadth=categories.count()
    )
    ch = channels
    named = ch.channel.notnull()
    online = [c.lower() for c in cfg.online_channels]
    per = top_per_customer(
        ch,
        "channel",
        "spend",
        "top_channel",
        where=named,
        # a sum over no online lines is NULL: a store-only buyer's online share is 0, not
        # unknown (it stays NULL only when the buyer's channel lines carry no amount)
        online_share=(
            ch.spend.sum(where=named & ch.channel.lower().isin(online)).fill_null(0)
            / ch.spend.sum(where=named).nullif(0)
        ).cast("float64"),
        _lines=ch.lines.sum(),
        _units=ch.units.sum(),
        _discounted=ch.discounted.sum(),
    )
    # a buyer's orders in the summary count the same purchase lines' order ids
    per = join_on_customer(per, purchase.select("customer_id", _orders=purchase.orders))
    share = (per._discounted / per._lines).cast("float64")
    per = per.select(
        "customer_id",
        "top_channel",
        "top_channel_share",
        "online_share",
        discounted_line_share=share,
        discount_sensitivity=ibis.cases(
            (share >= cfg.bargain_hunter_share, "bargain hunter"),
            (share <= cfg.full_price_share, "full price"),
            else_="mixed",
        ),
        basket_lines=(per._lines / per._orders.nullif(0)).cast("float64"),
        basket_units=(per._units / per._orders.nullif(0)).cast("float64"),
    )
    return join_on_customer(per, cats)


TECHNOGRAPHICS = (
    ("device_type", "main_device"),
    ("os", "main_os"),
    ("browser", "main_browser"),
    ("platform", "main_platform"),
)


def event_summary(events: ir.Table, as_of: date, cfg: TraitsConfig) -> ir.Table:
    """One row per customer from one pass over their events up to the as-of date: the
    recency-weighted engagement score, the events of the last 90 days, the last event, the
    app share, and per buying-journey stage ([traits.journey]) the first day. The engagement
    and journey traits both read it (the journey's own pass joined every event to the
    purchase summary: 17.5 s at 10 M customers)."""
    e = customer_events(events, as_of)
    day = e.occurred_at.date()
    age_days = ibis.date(as_of).delta(day, unit="day")
    weight = ibis.cases(
        *[(e.event_type == k, float(v)) for k, v in cfg.engagement_weights.items()], else_=0.0
    )
    decay = (age_days.cast("float64") * (-0.6931471805599453 / cfg.engagement_half_life_days)).exp()
    stage = ibis.cases(
        *[
            (e.event_type.isin(types), JOURNEY_STAGES.index(name) + 1)
            for name, types in cfg.journey.items()
            if types
        ],
        else_=ibis.null("int64"),
    )
    e = e.mutate(_day=day, _age=age_days, _points=weight * decay, _stage=stage)
    return e.group_by("customer_id").aggregate(
        engagement_score=e._points.sum().cast("float64"),
        events_90d=e.count(where=e._age < 90),
        last_event=e._day.max(),
        app_share=(
            e.count(where=e.platform.lower() == "app")
            / e.count(where=e.platform.notnull()).nullif(0)
        ).cast("float64"),
        # the first day at each journey stage, and at any of the first three (before buying)
        **{f"stage_{i}": e._day.min(where=e._stage == i) for i in range(1, 6)},
        before_purchase=e._day.min(where=e._stage <= 3),
        top_stage=e._stage.max(),
    )


def engagement_traits(events: ir.Table, summary: ir.Table, as_of: date) -> ir.Table:
    """Recency-weighted engagement (from the `event_summary`) and technographics: the
    customer's most frequent device type, OS, browser and platform."""
    out = summary.select("customer_id", "engagement_score", "events_90d", "last_event", "app_share")
    e = customer_events(events, as_of)
    tops = []
    for column, name in TECHNOGRAPHICS:
        known = e.filter(e[column].notnull())
        counts = known.group_by(["customer_id", column]).aggregate(n=known.count())
        tops.append(top_per_customer(counts, column, "n", name).drop(f"{name}_share"))
    return join_on_customer(out, *tops)
