"""Reading segments back: the latest segmentations with their quality, one segmentation's
segments with their distinguishing traits, members as of a past run, and who moved between
two runs. Every segments run's memberships are kept (`store.schemas.HISTORY_TABLES`)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from personae.errors import PersonaeError, StoreError, closest
from personae.store import Store

NONE = "(not segmented)"  # the other side of a migration for a customer in one run only


def segments_runs(store: Store) -> list[dict[str, Any]]:
    """The successful segments runs, newest first."""
    return store.query(
        "SELECT run_id, as_of FROM runs WHERE stage = 'segments' AND "
        "status = 'ok' ORDER BY seq DESC NULLS LAST, finished_at DESC"
    )


def resolve_run(store: Store, ref: str | date | None = None) -> tuple[str, str]:
    """A segments run (its id and as-of date) from a run id, an as-of date (the latest run
    as of that date or before), or nothing (the latest run)."""
    runs = segments_runs(store)
    if not runs:
        raise StoreError(
            "No segments run yet. Run `personae run` (or `personae run --from segments`)."
        )
    if ref is None:
        return _run(runs[0])
    text = str(ref)
    for r in runs:
        if r["run_id"] == text:
            return _run(r)
    try:
        day = ref if isinstance(ref, date) else date.fromisoformat(text)
    except ValueError:
        raise PersonaeError(
            f"'{text}' is neither a segments run id nor a date (YYYY-MM-DD)."
            + closest(text, [str(r["run_id"]) for r in runs]),
            hint="`personae status` lists the runs.",
        ) from None
    dated = [r for r in runs if r["as_of"] is not None and r["as_of"] <= day]
    if not dated:
        have = ", ".join(sorted({str(r["as_of"]) for r in runs}))
        raise PersonaeError(
            f"No segments run as of {day} or earlier (runs are as of {have}).",
            hint=f"Run `personae run --as-of {day}` to segment the customers as of that date.",
        )
    best = max(r["as_of"] for r in dated)
    return _run(next(r for r in dated if r["as_of"] == best))


def _run(row: dict[str, Any]) -> tuple[str, str]:
    return str(row["run_id"]), str(row["as_of"])


def overview(store: Store, run: str | None = None) -> dict[str, Any]:
    """The segmentations of a run with sizes and quality."""
    run_id, _ = resolve_run(store, run)
    rows = store.query(
        "SELECT segmentation, model, kind, method, origin, description, customers, "
        "segment_count, silhouette, stability, warnings, as_of FROM segmentations "
        "WHERE run_id = ? ORDER BY model, segmentation",
        [run_id],
    )
    for r in rows:
        r["warnings"] = json.loads(r["warnings"] or "[]")
        r["as_of"] = str(r["as_of"])
    return {"run_id": run_id, "segmentations": rows}


def show(store: Store, segmentation: str, run: str | None = None) -> dict[str, Any]:
    """One segmentation: its segments with size, shares, quality and distinguishing traits."""
    run_id, _ = resolve_run(store, run)
    info = _segmentation(store, run_id, segmentation)
    info["definition"] = json.loads(info["definition"] or "{}")
    info["warnings"] = json.loads(info["warnings"] or "[]")
    info["as_of"] = str(info["as_of"])
    segments = store.query(
        "SELECT * EXCLUDE (run_id, as_of, segmentation) FROM segments WHERE run_id = ? AND "
        "segmentation = ? ORDER BY position",
        [run_id, segmentation],
    )
    traits = store.query(
        "SELECT segment, trait, value, segment_mean, overall_mean, std_diff, lift, support "
        "FROM segment_traits WHERE run_id = ? AND segmentation = ? ORDER BY segment, rank",
        [run_id, segmentation],
    )
    for s in segments:
        s["distinguishing"] = [
            {k: v for k, v in t.items() if k != "segment"}
            for t in traits
            if t["segment"] == s["segment"]
        ]
    diagnostics = store.query(
        "SELECT k, silhouette, bic, inertia, chosen FROM cluster_diagnostics WHERE run_id = ? "
        "AND segmentation = ? ORDER BY k",
        [run_id, segmentation],
    )
    return {"run_id": run_id, **info, "segments": segments, "diagnostics": diagnostics}


def _segmentation(store: Store, run_id: str, segmentation: str) -> dict[str, Any]:
    """A segmentation's row of a run, or an error naming the ones there are."""
    head = store.query(
        "SELECT * EXCLUDE (run_id) FROM segmentations WHERE run_id = ? AND segmentation = ?",
        [run_id, segmentation],
    )
    if head:
        return head[0]
    names = [
        r["segmentation"]
        for r in store.query("SELECT segmentation FROM segmentations WHERE run_id = ?", [run_id])
    ]
    raise PersonaeError(
        f"No segmentation '{segmentation}' in segments run {run_id}."
        + closest(segmentation, names),
        hint="`personae segments` lists them: " + ", ".join(sorted(names)),
    )


def _segmentation_of(store: Store, run_id: str, segment: str, segmentation: str | None) -> str:
    """The segmentation a segment name belongs to (it must be unambiguous)."""
    rows = store.query(
        "SELECT DISTINCT segmentation FROM segments WHERE run_id = ? AND segment = ? "
        "AND (? IS NULL OR segmentation = ?)",
        [run_id, segment, segmentation, segmentation],
    )
    if len(rows) == 1:
        return str(rows[0]["segmentation"])
    if rows:
        names = ", ".join(sorted(r["segmentation"] for r in rows))
        raise PersonaeError(
            f"Segment '{segment}' is in several segmentations ({names}).",
            hint="Name one with --segmentation.",
        )
    known = [
        r["segment"]
        for r in store.query(
            "SELECT DISTINCT segment FROM segments WHERE run_id = ? AND "
            "(? IS NULL OR segmentation = ?)",
            [run_id, segmentation, segmentation],
        )
    ]
    where = f" of '{segmentation}'" if segmentation else ""
    raise PersonaeError(
        f"No segment '{segment}'{where} in segments run {run_id}." + closest(segment, known),
        hint="`personae segments show NAME` lists a segmentation's segments.",
    )


def members(
    store: Store,
    segment: str,
    segmentation: str | None = None,
    run: str | date | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """A page of the customers in a segment at a run (or as of a date), and how many."""
    run_id, as_of = resolve_run(store, run)
    name = _segmentation_of(store, run_id, segment, segmentation)
    where = "run_id = ? AND segmentation = ? AND segment = ?"
    params: list[Any] = [run_id, name, segment]
    count = store.query(f"SELECT count(*) AS n FROM memberships WHERE {where}", params)[0]["n"]
    page = " LIMIT ? OFFSET ?" if limit is not None else ""
    ids = store.query(
        f"SELECT customer_id FROM memberships WHERE {where} ORDER BY customer_id{page}",
        params + ([limit, offset] if limit is not None else []),
    )
    return {
        "run_id": run_id,
        "as_of": as_of,
        "segmentation": name,
        "segment": segment,
        "count": int(count),
        "customer_ids": [r["customer_id"] for r in ids],
    }


def diff(store: Store, a: str | date, b: str | date, segmentation: str) -> dict[str, Any]:
    """The migration matrix of one segmentation between two runs (or as-of dates): how many
    customers went from each segment to each; NONE for a customer in one run only."""
    (run_a, as_of_a), (run_b, as_of_b) = resolve_run(store, a), resolve_run(store, b)
    kinds = {_segmentation(store, run, segmentation)["kind"] for run in (run_a, run_b)}
    if "audiences" in kinds:
        raise PersonaeError(
            f"'{segmentation}' is a set of overlapping audiences: a customer can be in several "
            "segments, so there is no single move. Compare its segments' members instead."
        )
    cells = store.query(
        f"""WITH a AS (SELECT customer_id, segment FROM memberships
                       WHERE run_id = ? AND segmentation = ?),
                 b AS (SELECT customer_id, segment FROM memberships
                       WHERE run_id = ? AND segmentation = ?)
            SELECT coalesce(a.segment, '{NONE}') AS "from", coalesce(b.segment, '{NONE}') AS "to",
                   count(*) AS customers
            FROM a FULL OUTER JOIN b USING (customer_id) GROUP BY ALL ORDER BY 1, 2""",
        [run_a, segmentation, run_b, segmentation],
    )
    moved = sum(c["customers"] for c in cells if c["from"] != c["to"])
    total = sum(c["customers"] for c in cells)
    return {
        "segmentation": segmentation,
        "run_a": run_a,
        "as_of_a": as_of_a,
        "run_b": run_b,
        "as_of_b": as_of_b,
        "customers": total,
        "moved": moved,
        "cells": cells,
    }
