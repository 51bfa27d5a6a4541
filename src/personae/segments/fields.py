"""The fields segments are defined over: one row per customer of a traits run with its
traits, its predictions (when predict ran on that traits run), its account's firmographics,
its feedback rating, the ranks value tiers use and the attributes its sources carried.

Everything is an engine expression (DuckDB or Spark); only the list of attribute keys, a
small aggregate, is read from the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import ibis
import ibis.expr.types as ir

from personae.segments.rules import field_kind, field_name
from personae.segments.survey import attitudinal_bands
from personae.store import Store
from personae.store.engine import Engine

PREDICTION_FIELDS = ("expected_purchases", "p_alive", "churn_risk", "expected_spend", "clv")
ACCOUNT_FIELDS = {
    "account_industry": "industry",
    "account_employees": "employees",
    "account_revenue": "annual_revenue",
}
DERIVED_FIELDS = {
    "value_rank": "0 for the most valuable customer to just under 1 (rank / customers with a "
    "value) by predicted CLV, else by total_value when there is no CLV or it is 0 for all.",
    "engagement_rank": "The same rank by engagement_score.",
    "prediction_model": "The purchase model behind the predictions (or rfm_fallback).",
    "rating_mean": "Mean feedback rating of the customer.",
    "rating_count": "Feedback items with a rating.",
    "rating_band": "satisfied / neutral / dissatisfied (1-5 scale) or promoter / passive / "
    "detractor (0-10 scale) from rating_mean.",
    **{name: f"The {col} of the customer's account." for name, col in ACCOUNT_FIELDS.items()},
}


@dataclass
class Fields:
    """The fields table and what is known of its columns."""

    table: ir.Table
    kinds: dict[str, str]  # field -> text | int | float | bool | date | timestamp
    as_of: date
    value_basis: str = "total_value"  # what value_rank ranks by (kept in the run's details)


def _attribute_kinds(store: Store) -> dict[str, str]:
    """Source column -> float or text, for the keys of the customers' attributes: float when
    every non-empty value reads as a number."""
    rows = store.con.execute(
        """SELECT key, count(*) FILTER (WHERE value IS NOT NULL AND value <> ''),
                  count(TRY_CAST(value AS DOUBLE))
           FROM (SELECT j.key, json_extract_string(j.value, '$') AS value
                 FROM customers, json_each(customers.attributes) AS j)
           GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    return {str(k): ("float" if n and n == num else "text") for k, n, num in rows if n}


def _rank(value: ir.NumericValue) -> ir.FloatingValue:
    """0 for the highest value, rising to just under 1; NULL without a value (the same on
    every engine: NULLs ranked last and left out of the count)."""
    rank = ibis.rank().over(order_by=ibis.desc(value))
    known = value.count().over()
    return ibis.ifelse(value.notnull(), rank / known, ibis.null()).cast("float64")


def build_fields(
    engine: Engine, store: Store, traits_run: str, predict_run: str | None, as_of: date
) -> Fields:
    """The fields table of a traits run (materialised once in the engine); feedback counts
    up to the run's as-of date, as the traits do."""
    traits = engine.table("traits")
    table = traits.filter(traits.run_id == traits_run).drop("run_id", "as_of")
    basis = "total_value"
    if predict_run:
        p = engine.table("predictions")
        p = p.filter(p.run_id == predict_run).select(
            "customer_id", *PREDICTION_FIELDS, prediction_model=p.model
        )
        table = table.left_join(p, "customer_id").drop("customer_id_right")
        has_clv = store.con.execute(
            "SELECT count(*) FILTER (WHERE clv > 0) FROM predictions WHERE run_id = ?",
            [predict_run],
        ).fetchall()[0][0]
        basis = "clv" if has_clv else basis
    customers = engine.table("customers")
    accounts = engine.table("accounts")
    if store.con.execute("SELECT count(*) FROM accounts").fetchall()[0][0]:
        linked = customers.filter(customers.account_id.notnull())
        links = linked.group_by("customer_id").agg(account_id=linked.account_id.max())
        firm = links.join(accounts, "account_id").select(
            "customer_id", **{name: accounts[col] for name, col in ACCOUNT_FIELDS.items()}
        )
        table = table.left_join(firm, "customer_id").drop("customer_id_right")
    else:
        table = table.mutate(
            account_industry=ibis.null("string"),
            account_employees=ibis.null("int64"),
            account_revenue=ibis.null("float64"),
        )
    if store.con.execute("SELECT count(rating) FROM feedback").fetchall()[0][0]:
        feedback = engine.table("feedback")
        feedback = feedback.filter(
            feedback.created_at.isnull() | (feedback.created_at.cast("date") <= as_of)
        )
        bands = attitudinal_bands(feedback)
        rating = bands.select(
            "customer_id",
            rating_mean=bands.rating_mean,
            rating_count=bands.ratings,
            rating_band=bands.band,
        )
        table = table.left_join(rating, "customer_id").drop("customer_id_right")
    else:
        table = table.mutate(
            rating_mean=ibis.null("float64"),
            rating_count=ibis.null("int64"),
            rating_band=ibis.null("string"),
        )
    kinds = _attribute_kinds(store)
    if kinds:
        taken = set(table.columns)
        extracted = customers.group_by("customer_id").agg(
            **{
                _free(field_name(key), taken): _attribute(customers.attributes, key, kind).max()
                for key, kind in kinds.items()
            },
        )
        table = table.left_join(extracted, "customer_id").drop("customer_id_right")
    # ranked on two columns and joined back: a window over the whole wide row made DuckDB
    # sort all of it (the fields took 12.2 s at 1 M customers, 3.9 s ranked apart)
    ranks = table.select(
        "customer_id", value_rank=_rank(table[basis]), engagement_rank=_rank(table.engagement_score)
    )
    table = table.left_join(ranks, "customer_id").drop("customer_id_right")
    table = engine.temp(table, "_segment_fields")
    return Fields(
        table,
        {name: field_kind(dtype) for name, dtype in table.schema().items()},
        as_of,
        basis,
    )


def _free(name: str, taken: set[str]) -> str:
    """A field name not already used (a trait wins over an attribute of the same name)."""
    while name in taken:
        name = f"attr_{name}"
    taken.add(name)
    return name


def _attribute(column: ir.Value, key: str, kind: str) -> ir.Value:
    """One attribute of the JSON `attributes` column, typed."""
    value = column.cast("json")[key].unwrap_as("string")
    value = value.nullif("")
    return value.try_cast("float64") if kind == "float" else value
