"""Write docs/traits.md from the trait catalog. `--check` fails when it is out of date."""

from __future__ import annotations

import sys
from itertools import groupby
from pathlib import Path

from personae.traits.catalog import TRAITS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "traits.md"
INTRO = """# Traits

`personae traits --as-of DATE` writes one row per customer per run to the `traits` table
(`personae export traits --out traits.csv` writes the latest run). Only order lines on or
before the as-of date are read. A purchase is a line that is neither a return nor a
non-product line (postage, fees); all purchase lines of a customer on one calendar day are one
purchase day. Customers without any purchase have NULL purchase traits and no RFM scores.
A line with a price of 0 (a free item) is a purchase, flagged at ingest but counted: the
customer received goods. On the UCI Online Retail data that makes 4,335 buyers where the
data's README, counting only lines with a positive price, finds 4,334: customer 13256's one
line is 12,540 units at 0, a buyer with a total value of 0.

Each run also writes two long tables, one row per customer and category or occasion, with
the purchase value and its share of the customer's value: `category_spend` (the spend share
per category; `top_category` and `category_breadth` summarise it) and `occasion_spend` (every
occasion, your own `[traits.occasions]` included).

Treatments of awkward input:

- **Orders after the as-of date** are not read; the summary says how many lines were left out.
- **Orders before the customer's `created_at`**: acquisition is the earlier of the two, so
  tenure is never shorter than the purchase history.
- **Customers with only returns** have no purchase day: purchase traits are NULL and
  `returns_share` is NULL (no purchase value to divide by).
- **A single purchase day** gives frequency 0, recency 0, monetary value 0 and NULL intervals.
- **Several currencies in one amount column**: money is never added across currencies. The
  money traits use `[traits] currency` (default: the currency of most lines); lines in other
  currencies still make purchase days, but their amounts are left out, and the run says how
  many lines that was.
- **No orders at all**: `personae traits` stops with an error that says to ingest orders first.

This page is generated from `personae/traits/catalog.py` by `scripts/gen_traits_docs.py`.
"""


def render() -> str:
    parts = [INTRO]
    for family, traits in groupby(TRAITS, key=lambda t: t.family):
        parts.append(f"## {family}\n\n| trait | definition | unit | kind |\n|---|---|---|---|")
        for t in traits:
            parts.append(f"| `{t.name}` | {t.definition} | {t.unit} | {t.kind} |")
        parts.append("")
    return "\n".join(parts)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        ok = PAGE.exists() and PAGE.read_text() == text
        print("" if ok else "docs/traits.md is out of date: run python scripts/gen_traits_docs.py")
        sys.exit(0 if ok else 1)
    PAGE.write_text(text)
