"""When customers buy: calendar occasions, weekday/weekend, time of day, peak month and
birthday month; their lifecycle stage against their own rhythm; and how far along the buying
journey their events take them. Ibis expressions for DuckDB and Spark."""

from __future__ import annotations

from datetime import date, timedelta

import ibis
import ibis.expr.types as ir

from personae.config import JOURNEY_STAGES, LifecycleConfig, TraitsConfig
from personae.purchases import join_on_customer
from personae.traits.profile import DAYPARTS, top_per_customer

BUILT_IN_OCCASIONS = ("black_friday", "christmas", "valentines", "back_to_school")


def black_friday(year: int) -> date:
    """The day after US Thanksgiving (the fourth Thursday of November)."""
    nov1 = date(year, 11, 1)
    first_thursday = nov1 + timedelta(days=(3 - nov1.weekday()) % 7)
    return first_thursday + timedelta(days=22)


def occasion_calendar(
    cfg: TraitsConfig, as_of: date, first_year: int
) -> list[tuple[str, date, date]]:
    """Every occasion window of every year from `first_year` to the as-of year: Black Friday
    to Cyber Monday, and the [traits.occasions] month-day ranges."""
    rows = []
    for year in range(first_year, as_of.year + 1):
        bf = black_friday(year)
        rows.append(("black_friday", bf, bf + timedelta(days=3)))
        for name, (start, end) in cfg.occasions.items():
            rows.append(
                (
                    name,
                    date(year, int(start[:2]), int(start[3:])),
                    date(year, int(end[:2]), int(end[3:])),
                )
            )
    return rows


def occasion_days(days: ir.Table, calendar: ir.Table) -> ir.Table:
    """(day, occasion) for every purchase day in an occasion window: the few distinct days
    meet the calendar's ranges, so the purchase days meet them by an equality on the day
    instead of a range join over every line."""
    d = days.select("day").distinct()
    cal = calendar.view()
    return d.join(cal, (d.day >= cal.start) & (d.day <= cal.end)).select("day", "occasion")


def occasion_spend(days: ir.Table, calendar: ir.Table) -> ir.Table:
    """Long table: purchase value per customer and occasion, and its share of their value,
    from the customers' purchase days (`purchases.purchase_days`)."""
    hit = days.join(occasion_days(days, calendar), "day")
    spend = hit.group_by(["customer_id", "occasion"]).aggregate(spend=hit.value.sum())
    total = days.group_by("customer_id").aggregate(_total=days.value.sum())
    joined = join_on_customer(spend, total)
    return joined.select(
        "customer_id",
        "occasion",
        "spend",
        share=(joined.spend / joined._total.nullif(0)).cast("float64"),
    )


def timing_traits(
    channels: ir.Table,
    days: ir.Table,
    occasions: ir.Table,
    customers: ir.Table,
    calendar: ir.Table,
) -> ir.Table:
    """Occasion shares, weekend and daypart shares, peak month, birthday-month share, from
    the `channel_lines` (weekend and daypart values), the purchase days (`purchase_days`)
    and the `occasion_spend` table: a fraction of the order lines' rows."""
    ch = channels
    shares = {f"{name}_share": ch[name].sum() for name in ("weekend", *(d[0] for d in DAYPARTS))}
    agg = ch.group_by("customer_id").aggregate(_total=ch.spend.sum(), **shares)
    agg = agg.select(
        "customer_id",
        "_total",
        *[((agg[k].fill_null(0) / agg._total.nullif(0)).cast("float64")).name(k) for k in shares],
    )
    by_month = days.mutate(_month=days.day.month())
    monthly = by_month.group_by(["customer_id", "_month"]).aggregate(spend=by_month.value.sum())
    peak = top_per_customer(monthly, "_month", "spend", "_peak")
    peak = peak.select("customer_id", peak_month=peak._peak.cast("int64"))
    birth = customers.filter(customers.birth_date.notnull()).select(
        "customer_id", _bmonth=customers.birth_date.month()
    )
    bb = join_on_customer(monthly, birth)
    bday = (
        bb.filter(bb._bmonth.notnull())
        .group_by("customer_id")
        .aggregate(_in=bb.spend.sum(where=bb._month == bb._bmonth), _all=bb.spend.sum())
    )
    bday = bday.select(
        "customer_id",
        birthday_month_share=(bday._in.fill_null(0) / bday._all.nullif(0)).cast("float64"),
    )
    occ = occasions
    top = top_per_customer(
        occ,
        "occasion",
        "spend",
        "top_occasion",
        **{f"_{name}": occ.spend.sum(where=occ.occasion == name) for name in BUILT_IN_OCCASIONS},
    ).drop("top_occasion_share")
    # a day can fall in two windows (Cyber Monday in December): count it once
    in_any = occasion_days(days, calendar).select("day").distinct()
    hit = days.filter(days.day.isin(in_any.day))
    any_occ = hit.group_by("customer_id").aggregate(_occ=hit.value.sum())
    out = join_on_customer(agg, peak, bday, top, any_occ)

    def share(spend: ir.NumericValue) -> ir.FloatingValue:
        # no line in the occasion: 0 of a known total; NULL when the total is 0 or unknown
        return (spend.fill_null(0) / out._total.nullif(0)).cast("float64")

    out = out.mutate(
        **{f"{name}_share": share(out[f"_{name}"]) for name in BUILT_IN_OCCASIONS},
        occasion_share=share(out._occ),
    )
    return out.drop("_total", "_occ", *[f"_{name}" for name in BUILT_IN_OCCASIONS])


def lifecycle_traits(purchase: ir.Table, cfg: LifecycleConfig) -> ir.Table:
    """Stage against the customer's own rhythm: the expected interval is their median
    interval once they have `min_repeats` repeats, else the median of everyone who has."""
    p = purchase
    regular = p.filter(p.frequency >= cfg.min_repeats)
    # a customer-level summary gives no intervals, only their mean over the tenure
    pop = regular.aggregate(
        _pop=ibis.coalesce(regular.interval_median, regular.interval_mean).median()
    )
    t = p.cross_join(pop)
    own = ibis.coalesce(t.interval_median, t.interval_mean)
    expected = ibis.cases((t.frequency >= cfg.min_repeats, own), else_=t._pop).cast("float64")
    ratio = (t.days_since_last.cast("float64") / expected.nullif(0)).cast("float64")
    churned = t.churned.fill_null(False) if "churned" in t.columns else ibis.literal(False)
    stage = ibis.cases(
        (t.purchase_days.fill_null(0) == 0, "prospect"),
        (churned, "lapsed"),
        (ratio > cfg.lapsed_factor, "lapsed"),
        (ratio > cfg.at_risk_factor, "at risk"),
        (t.purchase_days == 1, "new"),
        (t.last_interval.cast("float64") > cfg.lapsed_factor * expected, "reactivated"),
        else_="active",
    )
    return t.select(
        "customer_id", expected_interval=expected, overdue_ratio=ratio, lifecycle_stage=stage
    )


def journey_traits(summary: ir.Table, purchase: ir.Table) -> ir.Table:
    """Furthest buying-journey stage reached and the days between stages, from the first
    day at each stage in the customer's `event_summary` (events map to stages by
    [traits.journey]); a purchase day reaches `purchase`, a second one `repeat_advocacy`."""
    firsts = summary.select(
        "customer_id",
        **{f"_s{i}": summary[f"stage_{i}"] for i in range(1, 6)},
        _pre=summary.before_purchase,
        _max=summary.top_stage,
    )
    buyers = purchase.select("customer_id", "first_purchase", "second_purchase")
    t = join_on_customer(buyers, firsts)

    def before_buying(day: ir.DateValue) -> ir.DateValue:
        # the first such day, when it came before the first purchase (or there is none): the
        # first day on or before the first purchase is then the first day of all
        keep = t.first_purchase.isnull() | (day <= t.first_purchase)
        return ibis.cases((keep, day), else_=ibis.null("date"))

    s4 = ibis.coalesce(ibis.least(t._s4, t.first_purchase), t._s4, t.first_purchase)
    s5 = ibis.coalesce(ibis.least(t._s5, t.second_purchase), t._s5, t.second_purchase)
    reached = ibis.greatest(
        t._max.fill_null(0),
        ibis.cases((s5.notnull(), 5), (s4.notnull(), 4), else_=0),
    )
    labels = ibis.cases(
        *[(reached == i + 1, name) for i, name in enumerate(JOURNEY_STAGES)],
        else_=ibis.null("string"),
    )
    return t.select(
        "customer_id",
        journey_stage=labels,
        journey_stage_index=ibis.cases((reached > 0, reached), else_=ibis.null("int64")).cast(
            "int64"
        ),
        days_need_to_search=ibis.greatest(t._s2.delta(t._s1, unit="day"), 0),
        days_search_to_evaluation=ibis.greatest(t._s3.delta(t._s2, unit="day"), 0),
        days_evaluation_to_purchase=s4.delta(before_buying(t._s3), unit="day"),
        days_to_first_purchase=s4.delta(before_buying(t._pre), unit="day"),
    )
