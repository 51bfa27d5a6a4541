"""Guessing which canonical table a source feeds and which canonical column each column is.

Names are compared after normalising (lower case, letters and digits only), so `CustomerID`,
`Customer ID` and `customer_id` all read as `customerid`. Headerless files are guessed from
their values instead (dates, decimals, small integers, zero-padded ids).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from personae.store.schemas import TABLES, Table


def normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _strip_units(name: str) -> str:
    return re.sub(r"\(.*?\)", "", name)


@dataclass
class Guess:
    """A table guess with its column mapping and how sure it is."""

    table: str
    mapping: dict[str, str]
    score: float


def map_columns(columns: list[str], table: Table) -> dict[str, str]:
    """Source column -> canonical column for one table, by synonyms; each target used once.

    Weak synonyms (a customer's name or e-mail as the customer key) apply only to a target no
    column matched otherwise, and may take a column from an optional target (an `Email`
    column becomes the key of a customers file without an id)."""
    mapping: dict[str, str] = {}
    used: set[str] = set()
    keys = {col: normalize(_strip_units(col)) for col in columns}
    for col in columns:
        for target in table.mappable:
            if target.name in used:
                continue
            if keys[col] == normalize(target.name) or keys[col] in target.synonyms:
                mapping[col] = target.name
                used.add(target.name)
                break
    for target in table.mappable:
        if target.name in used or not target.weak_synonyms:
            continue
        ranked = sorted(
            (target.weak_synonyms.index(keys[c]), i, c)
            for i, c in enumerate(columns)
            if keys[c] in target.weak_synonyms
            and (c not in mapping or not table.column(mapping[c]).required)
        )
        if ranked:
            col = ranked[0][2]
            if col in mapping:
                used.discard(mapping[col])
            mapping[col] = target.name
            used.add(target.name)
    return mapping


def guess_table(columns: list[str]) -> Guess:
    """The canonical table whose columns the source covers best (its required ones first)."""
    best: Guess | None = None
    for table in TABLES.values():
        mapping = map_columns(columns, table)
        mapped = set(mapping.values())
        required = [c.name for c in table.columns if c.required and c.name not in table.derived]
        optional_ok = {"order_id", "line_no", "event_id"}  # generated when absent
        missing = [r for r in required if r not in mapped and r not in optional_ok]
        score = len(mapped) - 3 * len(missing) + (1 if table.key[0] in mapped else 0)
        if best is None or score > best.score:
            best = Guess(table.name, mapping, score)
    assert best is not None
    return best


def guess_from_values(samples: dict[str, list[str]], date_columns: set[str]) -> Guess:
    """Map a headerless source by what its values look like (an orders file is assumed):
    the first id-like column is the customer, dates are order dates, decimals amounts and
    small integers quantities."""
    mapping: dict[str, str] = {}
    for col, values in samples.items():
        vals = [v for v in values if v]
        if not vals:
            continue
        if col in date_columns and "ordered_at" not in mapping.values():
            mapping[col] = "ordered_at"
        elif all(re.fullmatch(r"0\d+", v) or re.fullmatch(r"\d+", v) for v in vals) and any(
            v.startswith("0") for v in vals
        ):
            if "customer_id" not in mapping.values():
                mapping[col] = "customer_id"
        elif all(re.fullmatch(r"-?\d+\.\d+", v) for v in vals):
            if "amount" not in mapping.values():
                mapping[col] = "amount"
        elif all(re.fullmatch(r"-?\d{1,4}", v) for v in vals) and "quantity" not in (
            mapping.values()
        ):
            mapping[col] = "quantity"
    return Guess("orders", mapping, float(len(mapping)))


def range_from_name(name: str) -> tuple[float, float] | None:
    """A range written into a column name, e.g. `Spending Score (1-100)`."""
    m = re.search(r"\((-?\d+(?:\.\d+)?)\s*[-–]\s*(-?\d+(?:\.\d+)?)\)", name)
    return (float(m.group(1)), float(m.group(2))) if m else None


def scale_from_name(name: str) -> float | None:
    """A unit multiplier written into a column name, e.g. `Annual Income (k$)`."""
    m = re.search(r"\((k|m)\s*[$€£]?\)|\([$€£]\s*(k|m)\)", name, flags=re.IGNORECASE)
    if not m:
        return None
    unit = (m.group(1) or m.group(2)).lower()
    return 1000.0 if unit == "k" else 1_000_000.0
