"""The buying-journey funnel: how many customers reached each stage, and the conversion from
the stage before, overall or by any trait column. Reads the latest traits run."""

from __future__ import annotations

from typing import Any

from personae.config import JOURNEY_STAGES
from personae.errors import StoreError
from personae.store import Store
from personae.traits.catalog import BY_NAME

MAX_GROUPS = 50  # a funnel per group; more are not read, they are scrolled past


def funnel(store: Store, by: str | None = None) -> list[dict[str, Any]]:
    """Rows of (group, stage, customers, conversion from the previous stage)."""
    run = store.latest_run("traits")
    if run is None:
        raise StoreError("No traits yet: run `personae traits` first.")
    if by is not None and by not in BY_NAME:
        raise StoreError(
            f"--by {by}: not a trait. Use one of the columns in docs/traits.md, "
            "e.g. country, rfm_segment, lifecycle_stage."
        )
    group = f'"{by}"' if by else "'all'"
    reached = ", ".join(
        f"count(*) FILTER (WHERE journey_stage_index >= {i + 1}) AS s{i + 1}"
        for i in range(len(JOURNEY_STAGES))
    )
    rows = store.con.execute(
        f"SELECT coalesce({group}::VARCHAR, '(unknown)') AS grp, count(*) AS customers, "
        f"{reached} FROM traits WHERE run_id = ? GROUP BY 1 ORDER BY 2 DESC, 1",
        [run],
    ).fetchall()
    if len(rows) > MAX_GROUPS:
        raise StoreError(
            f"--by {by}: {len(rows):,} different values, too many groups for a funnel "
            f"(at most {MAX_GROUPS}).",
            hint="Split by a trait with a few values: a band or a category, e.g. "
            "age_band, lifecycle_stage, rfm_segment, country.",
        )
    if rows and not any(row[2] for row in rows):
        raise StoreError(
            "No customer has reached a buying-journey stage: stages come from events "
            "(visits, product views, carts) and orders, and the traits run "
            f"{run} has neither.",
            hint="Ingest an events or orders source, then `personae run --from traits`.",
        )
    out = []
    for grp, customers, *counts in rows:
        previous = customers
        for stage, n in zip(JOURNEY_STAGES, counts, strict=True):
            out.append(
                {
                    "group": grp,
                    "stage": stage,
                    "customers": int(n),
                    "share_of_all": n / customers if customers else None,
                    "conversion": n / previous if previous else None,
                }
            )
            previous = n
    return out
