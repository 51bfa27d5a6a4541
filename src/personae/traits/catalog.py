"""The trait catalog: every trait declared once with its name, family, definition, unit and
kind. The docs page, the report and the API read these declarations; a test fails when a trait
that the code computes is missing here or lacks a definition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["computed", "predicted"]
DType = Literal["text", "int", "float", "bool", "date"]


@dataclass(frozen=True)
class Trait:
    """One trait: `dtype` is its column kind in the `traits` table (store/schemas.py)."""

    name: str
    family: str
    definition: str
    unit: str
    kind: Kind = "computed"
    dtype: DType = "float"


TU = "time unit ([traits] time_unit: days, or weeks = days / 7)"

TRAITS: tuple[Trait, ...] = (
    # purchase summary -------------------------------------------------------------------
    Trait(
        "first_purchase",
        "purchase",
        "Date of the first purchase on or before the as-of date.",
        "date",
        dtype="date",
    ),
    Trait(
        "last_purchase",
        "purchase",
        "Date of the last purchase on or before the as-of date.",
        "date",
        dtype="date",
    ),
    Trait(
        "purchase_days",
        "purchase",
        "Distinct days with at least one purchase line "
        "(returns and non-product lines do not count).",
        "count",
        dtype="int",
    ),
    Trait(
        "orders",
        "purchase",
        "Distinct orders with at least one purchase line.",
        "count",
        dtype="int",
    ),
    Trait(
        "frequency",
        "purchase",
        "Repeat purchases: purchase days minus one (the x of the buy-till-you-die models).",
        "count",
        dtype="int",
    ),
    Trait(
        "recency",
        "purchase",
        "Time from the first to the last purchase day (t_x); 0 for one-day customers.",
        TU,
    ),
    Trait("T", "purchase", "Customer age: time from the first purchase day to the as-of date.", TU),
    Trait(
        "monetary_value",
        "purchase",
        "Mean value of a repeat purchase day (the first day "
        "excluded; 0 without repeats), the input of the Gamma-Gamma spend model; NULL when "
        "no purchase line has an amount.",
        "currency",
    ),
    Trait(
        "total_value",
        "purchase",
        "Sum of purchase-line amounts; NULL when no purchase line has an amount (item-only "
        "baskets).",
        "currency",
    ),
    Trait("avg_order_value", "purchase", "total_value / orders.", "currency"),
    Trait(
        "returns_share", "purchase", "Value of returned lines / value of purchase lines.", "share"
    ),
    Trait("discount_share", "purchase", "Discounts / (purchase value + discounts).", "share"),
    Trait(
        "interval_mean",
        "purchase",
        "Mean days between consecutive purchase days (recency in days / frequency).",
        "days",
    ),
    Trait("interval_median", "purchase", "Median days between consecutive purchase days.", "days"),
    Trait(
        "interval_cv",
        "purchase",
        "Coefficient of variation (sample standard deviation / "
        "mean) of the days between purchase days; needs two repeats.",
        "ratio",
    ),
    Trait("second_purchase", "purchase", "Date of the second purchase day.", "date", dtype="date"),
    Trait(
        "last_interval", "purchase", "Days between the last two purchase days.", "days", dtype="int"
    ),
    Trait(
        "days_since_last",
        "purchase",
        "Days from the last purchase to the as-of date.",
        "days",
        dtype="int",
    ),
    Trait(
        "tenure_days",
        "purchase",
        "Days from acquisition (the earlier of the customer's "
        "created_at and first purchase) to the as-of date.",
        "days",
        dtype="int",
    ),
    Trait(
        "history_source",
        "purchase",
        "Where the purchase traits come from: orders, or summary (a customer-level table's "
        "purchases, total_spend, last_purchase_at, tenure_months, ... for a customer without "
        "orders; see docs/loading-real-files.md); NULL for a prospect.",
        "label",
        dtype="text",
    ),
    # RFM -------------------------------------------------------------------------------
    Trait(
        "r_score",
        "rfm",
        "Recency score 1..5: quantile bin of days_since_last (fewer days "
        "scores higher). Ties share a score. NULL when the last purchase is unknown (a "
        "customer-level summary without it).",
        "score",
        dtype="int",
    ),
    Trait(
        "f_score",
        "rfm",
        "Frequency score 1..5: quantile bin of purchase_days.",
        "score",
        dtype="int",
    ),
    Trait(
        "m_score",
        "rfm",
        "Monetary score 1..5: quantile bin of total_value among buyers with an amount "
        "(rounded to 1e-6, so equal sums tie on every engine); NULL without amounts.",
        "score",
        dtype="int",
    ),
    Trait(
        "rfm_cell",
        "rfm",
        "The three scores as digits, e.g. '545'; the two digits RF (e.g. '54') without an m_score.",
        "label",
        dtype="text",
    ),
    Trait(
        "rfm_score",
        "rfm",
        "Weighted mean of the three scores ([rfm] weights); of R and F only without an m_score.",
        "score",
    ),
    Trait(
        "rfm_segment",
        "rfm",
        "Named RFM segment from the (R, F) cell map: Champions, "
        "Loyal, Potential Loyalist, New Customers, Promising, Need Attention, About to "
        "Sleep, At Risk, Cannot Lose Them, Hibernating, Lost ([rfm.segments] overrides).",
        "label",
        dtype="text",
    ),
)

TRAITS += (
    # demographics and geography ---------------------------------------------------------
    Trait(
        "age",
        "demographics",
        "Age in whole years on the as-of date, from birth_date, else "
        "birth_year (as-of year minus birth year), else the source's age.",
        "years",
        dtype="int",
    ),
    Trait(
        "age_band",
        "demographics",
        "under 18, 18-24, 25-34, 35-44, 45-54, 55-64 or 65+.",
        "label",
        dtype="text",
    ),
    Trait("gender", "demographics", "female, male or other, as ingested.", "label", dtype="text"),
    Trait("income", "demographics", "Yearly income as ingested.", "currency"),
    Trait(
        "income_quintile",
        "demographics",
        "1..5: quantile bin of income among customers with an income (ties share a bin).",
        "score",
        dtype="int",
    ),
    Trait("household_size", "demographics", "People in the household.", "count", dtype="int"),
    Trait("children", "demographics", "Children in the household.", "count", dtype="int"),
    Trait("marital_status", "demographics", "As ingested.", "label", dtype="text"),
    Trait("education", "demographics", "As ingested.", "label", dtype="text"),
    Trait("occupation", "demographics", "As ingested.", "label", dtype="text"),
    Trait("country", "demographics", "As ingested.", "label", dtype="text"),
    Trait("region", "demographics", "As ingested.", "label", dtype="text"),
    Trait("city", "demographics", "As ingested.", "label", dtype="text"),
    Trait(
        "marketing_consent",
        "demographics",
        "Whether the customer agreed to marketing.",
        "yes/no",
        dtype="bool",
    ),
    # behaviour --------------------------------------------------------------------------
    Trait(
        "top_category",
        "behaviour",
        "Category with the most purchase value (ties, to 1e-6: alphabetical).",
        "label",
        dtype="text",
    ),
    Trait(
        "top_category_share",
        "behaviour",
        "Share of categorised purchase value in the top category; NULL when that value is 0 "
        "(every amount 0 or missing).",
        "share",
    ),
    Trait("category_breadth", "behaviour", "Distinct categories bought.", "count", dtype="int"),
    Trait(
        "top_channel",
        "behaviour",
        "Channel with the most purchase value (ties, to 1e-6: alphabetical).",
        "label",
        dtype="text",
    ),
    Trait(
        "top_channel_share",
        "behaviour",
        "Share of purchase value in the top channel; NULL when that value is 0.",
        "share",
    ),
    Trait(
        "online_share",
        "behaviour",
        "Share of purchase value in online channels "
        "([traits] online_channels); the rest is offline, so 0 for a buyer who only buys "
        "offline. NULL when no purchase line has a channel (or an amount).",
        "share",
    ),
    Trait(
        "discounted_line_share",
        "behaviour",
        "Share of purchase lines bought with a discount.",
        "share",
    ),
    Trait(
        "discount_sensitivity",
        "behaviour",
        "bargain hunter (discounted_line_share >= "
        "[traits] bargain_hunter_share), full price (<= full_price_share) or mixed.",
        "label",
        dtype="text",
    ),
    Trait("basket_lines", "behaviour", "Mean purchase lines per order.", "count"),
    Trait("basket_units", "behaviour", "Mean units per order.", "count"),
    Trait(
        "repeat_rate",
        "behaviour",
        "Loyalty: share of purchase days that are repeats (frequency / purchase_days).",
        "share",
    ),
    # engagement and technographics ------------------------------------------------------
    Trait(
        "engagement_score",
        "technographics",
        "Sum over the customer's events of the event "
        "type's points ([traits] engagement_weights) halved every "
        "engagement_half_life_days before the as-of date.",
        "points",
    ),
    Trait(
        "events_90d",
        "technographics",
        "Events in the 90 days up to the as-of date.",
        "count",
        dtype="int",
    ),
    Trait("last_event", "technographics", "Date of the last event.", "date", dtype="date"),
    Trait("app_share", "technographics", "Share of events on the app platform.", "share"),
    Trait(
        "main_device",
        "technographics",
        "Most frequent device type in the events.",
        "label",
        dtype="text",
    ),
    Trait("main_os", "technographics", "Most frequent operating system.", "label", dtype="text"),
    Trait("main_browser", "technographics", "Most frequent browser.", "label", dtype="text"),
    Trait(
        "main_platform",
        "technographics",
        "app or web, whichever is more frequent.",
        "label",
        dtype="text",
    ),
)

TRAITS += (
    # lifecycle ---------------------------------------------------------------------------
    Trait(
        "expected_interval",
        "lifecycle",
        "The customer's rhythm: their median days between "
        "purchase days once they have [lifecycle] min_repeats repeats (from a customer-level "
        "summary: tenure_days / purchases), else the median of everyone who has.",
        "days",
    ),
    Trait("overdue_ratio", "lifecycle", "days_since_last / expected_interval.", "ratio"),
    Trait(
        "lifecycle_stage",
        "lifecycle",
        "prospect (no purchase), new (one purchase day, not "
        "overdue), active, at risk (overdue_ratio > at_risk_factor), lapsed (> "
        "lapsed_factor, or churned in a customer-level summary), reactivated (bought again "
        "after a gap longer than lapsed_factor expected intervals).",
        "label",
        dtype="text",
    ),
    # occasions -----------------------------------------------------------------------------
    Trait(
        "black_friday_share",
        "occasions",
        "Share of purchase value bought from Black Friday to Cyber Monday.",
        "share",
    ),
    Trait(
        "christmas_share",
        "occasions",
        "Share of purchase value in the christmas window "
        "([traits.occasions], default 1-24 December).",
        "share",
    ),
    Trait(
        "valentines_share",
        "occasions",
        "Share of purchase value in the valentines window (default 1-14 February).",
        "share",
    ),
    Trait(
        "back_to_school_share",
        "occasions",
        "Share of purchase value in the back_to_school window (default 1 August - 15 September).",
        "share",
    ),
    Trait(
        "occasion_share",
        "occasions",
        "Share of purchase value in any occasion, your own "
        "[traits.occasions] included (each line counted once).",
        "share",
    ),
    Trait(
        "top_occasion",
        "occasions",
        "Occasion with the most purchase value (ties, to 1e-6: alphabetical).",
        "label",
        dtype="text",
    ),
    Trait(
        "weekend_share",
        "occasions",
        "Share of purchase value bought on Saturday or Sunday.",
        "share",
    ),
    Trait("night_share", "occasions", "Share of purchase value bought 00:00-05:59.", "share"),
    Trait("morning_share", "occasions", "Share of purchase value bought 06:00-11:59.", "share"),
    Trait("afternoon_share", "occasions", "Share of purchase value bought 12:00-17:59.", "share"),
    Trait("evening_share", "occasions", "Share of purchase value bought 18:00-23:59.", "share"),
    Trait(
        "peak_month",
        "occasions",
        "Month (1-12) with the most purchase value (ties, to 1e-6: the earlier month).",
        "month",
        dtype="int",
    ),
    Trait(
        "birthday_month_share",
        "occasions",
        "Share of purchase value bought in the customer's birth month (needs birth_date).",
        "share",
    ),
    # buying journey --------------------------------------------------------------------------
    Trait(
        "journey_stage",
        "journey",
        "Furthest stage reached: need_recognition, "
        "information_search, evaluation, purchase, repeat_advocacy ([traits.journey] maps "
        "event types to stages).",
        "label",
        dtype="text",
    ),
    Trait("journey_stage_index", "journey", "The furthest stage as 1..5.", "index", dtype="int"),
    Trait(
        "days_need_to_search",
        "journey",
        "Days from the first need-recognition event to the first information-search event.",
        "days",
        dtype="int",
    ),
    Trait(
        "days_search_to_evaluation",
        "journey",
        "Days from the first search to the first evaluation event.",
        "days",
        dtype="int",
    ),
    Trait(
        "days_evaluation_to_purchase",
        "journey",
        "Days from the first evaluation event to the first purchase.",
        "days",
        dtype="int",
    ),
    Trait(
        "days_to_first_purchase",
        "journey",
        "Days from the first journey event to the first purchase.",
        "days",
        dtype="int",
    ),
)

BY_NAME = {t.name: t for t in TRAITS}
