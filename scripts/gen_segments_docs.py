"""Write docs/segments.md from the segmentation declarations and the rule language.
`--check` fails when it is out of date."""

from __future__ import annotations

import sys
from pathlib import Path

from personae.segments.catalog import READY_MADE, Segmentation
from personae.segments.fields import DERIVED_FIELDS, PREDICTION_FIELDS
from personae.segments.rules import RULES_DOC

PAGE = Path(__file__).resolve().parents[1] / "docs" / "segments.md"
INTRO = (
    """# Segments

`personae segments run` (and `personae run`, after predict) divides the customers of the
latest traits run into groups, in one segments run:

- **ready-made segmentations**, listed below, each built when the data has values for the
  fields it needs (`[segments] ready_made` chooses them);
- **your own**, in `[segmentations.NAME]`: rules (a partition, first match wins, the rest in
  `remainder`; or overlapping `audiences`), one segment per value of a field (`by`), or
  clusters of chosen traits (`method`, `features`, `k`);
- **clusters the data reveals**: `clusters` (k-means over the traits chosen from the data,
  categories one-hot encoded; in your own, `method = "auto"` is k-means over numbers and
  k-prototypes with categories, `method = "gmm"` a Gaussian mixture), and `psychographic`
  / `needs` from survey answers (factor analysis of the Likert items, then a Gaussian
  mixture of the factor scores, k by BIC).

A clustering is fitted on a sample (`[segments] sample`, default 200,000 customers, the same
customers on every engine) and then every customer is assigned in the engine (nearest centroid
as an expression), so DuckDB and Spark give the same memberships. The number of clusters is
chosen over `k_min..k_max` by silhouette and BIC; the diagnostics are in
`cluster_diagnostics` and `personae segments show NAME`.

Clusters are called Cluster 1, 2, ... (1 the largest); `personae segments show NAME` proposes
a name for each from the traits that set it apart. Give them yours with `names`, which
renames any segment; alone in the section of a ready-made segmentation it keeps that
segmentation and renames its segments (`[segmentations.age_band] names = {"65+" =
"Retired"}`). A name for a segment a run does not have (k chosen anew) is a warning.

```toml
[segmentations.lifestage]
model = "demographic"
description = "Life stage from age and children"
remainder = "Other adults"

[[segmentations.lifestage.segments]]
name = "Young families"
rule = "age between 25 and 39 and children > 0"

[[segmentations.lifestage.segments]]
name = "Empty nesters"
rule = "age >= 55 and coalesce(children, 0) = 0"

[segmentations.value_clusters]
model = "value-based"
method = "kmeans"
features = ["total_value", "purchase_days", "days_since_last"]
names = {"Cluster 1" = "Occasional buyers", "Cluster 2" = "Regulars"}
```

## Quality, stability and history

Per segmentation and segment (tables `segmentations`, `segments`): size, share of customers,
share of revenue (`total_value`) and of predicted CLV, separation (mean silhouette on a
sample of up to 5,000 customers, in the clustering's feature space; rule segmentations are
measured in the default clustering's space), stability of clusterings (mean adjusted Rand
index of bootstrap refits; per cluster the mean best Jaccard overlap), and the overlap of
every two partitions (`segment_overlap`). Segments below `min_size` / `min_share`, empty ones
and unstable ones get a warning in the run summary and in `warnings`.

Every run's memberships are kept (they are not pruned by `[store] keep_runs`):
`personae segments members "At Risk" --as-of 2011-06-01` lists who was in the segment at the
latest segments run as of that date, and `personae segments diff RUN_A RUN_B -s rfm` prints
the migration matrix between two runs (ids or dates).

## Fields

Rules and clustering features name fields: every trait (docs/traits.md), the predictions of
the predict run made from the same traits run ("""
    + ", ".join(f"`{f}`" for f in PREDICTION_FIELDS)
    + """), the attributes the sources carried (a source column
`Spending Score (1-100)` becomes `spending_score_1_100`, and a rule may also write it as the
source did, in double quotes: `"Spending Score (1-100)" >= 60`; numbers when every value is
one), and:

"""
)


def _defined(s: Segmentation) -> str:
    if s.by:
        return f"one segment per value of `{s.by}` (the {s.top} most common, then Other, Unknown)"
    if s.survey:
        return f"factors of the survey items ({s.survey} basis), then a Gaussian mixture (k by BIC)"
    if s.method:
        return "clusters of traits chosen from the data (k by silhouette and BIC)"
    rules = "; ".join(f"{d.name}: `{d.rule}`" for d in s.segments)
    rest = f"; else {s.remainder}" if s.kind == "partition" else " (overlapping)"
    return rules + rest


def render() -> str:
    parts = [INTRO, "| field | definition |", "|---|---|"]
    parts += [f"| `{name}` | {text} |" for name, text in DERIVED_FIELDS.items()]
    parts += [
        "",
        "## Ready-made segmentations",
        "",
        "| name | model | what | segments |",
        "|---|---|---|---|",
    ]
    for s in READY_MADE:
        parts.append(f"| `{s.name}` | {s.model} | {s.description} | {_defined(s)} |")
    parts += [
        "",
        RULES_DOC.strip(),
        "",
        "This page is generated from `personae/segments/catalog.py` and "
        "`personae/segments/rules.py` by `scripts/gen_segments_docs.py`.",
        "",
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        ok = PAGE.exists() and PAGE.read_text() == text
        print(
            "" if ok else "docs/segments.md is out of date: run python scripts/gen_segments_docs.py"
        )
        sys.exit(0 if ok else 1)
    PAGE.write_text(text)
