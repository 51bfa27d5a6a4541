"""The segments stage: segmentations users define (rules) and the data reveals (clusters),
with quality, stability and history. See docs/segments.md.

`segment(ctx)` builds every segmentation declared in `personae.segments.catalog` that the data
has fields for, and those of `[segmentations.NAME]`, over the fields of the traits run it
reads (`personae.segments.fields`). Memberships are computed in the engine; only a sample (for
fitting clusters and measuring separation) and aggregates come back to Python.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from personae.config import SegmentsConfig
from personae.errors import ConfigError, PersonaeError
from personae.segments import cluster, survey
from personae.segments.catalog import READY_MADE, READY_MADE_NAMES, Segmentation, from_config
from personae.segments.fields import Fields, build_fields
from personae.segments.rules import compile_rule, rule_fields
from personae.stage import RunContext, Stage
from personae.store import Store
from personae.store.engine import Engine

__all__ = ["segment", "SegmentsSummary", "STAGE"]
log = logging.getLogger(__name__)

REST_RULES = ("(other values)", "(no value)", "(remainder)")
SILHOUETTE_SAMPLE = 5_000  # rows of the sample silhouettes are measured on (quadratic cost)
DESCRIBE_TOP = 8  # distinguishing traits kept per segment


@dataclass
class SegmentationResult:
    name: str
    model: str
    kind: str
    method: str
    origin: str
    customers: int
    segments: dict[str, int]
    silhouette: float | None = None
    stability: float | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class SegmentsSummary:
    run_id: str
    as_of: str
    traits_run: str
    predict_run: str | None
    customers: int
    segmentations: list[SegmentationResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # ready-made -> why not built
    seconds: float = 0.0


@dataclass
class Built:
    """One segmentation's memberships (an engine expression) and what goes with it."""

    spec: Segmentation
    members: ir.Table  # customer_id, segment
    order: list[tuple[str, str, str]]  # (segment, description, rule) in position order
    method: str
    definition: dict[str, Any]
    model: cluster.ClusterModel | None = None
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    sample_labels: np.ndarray | None = None  # segment per sample row (partitions)
    sample: pa.Table | None = None  # the sample the labels are of (survey: respondents)


def segment(ctx: RunContext) -> SegmentsSummary:
    """Build and store every segmentation of the traits run this run reads."""
    started = time.perf_counter()
    store, config = ctx.store, ctx.config
    cfg = config.segments
    traits_run = ctx.parent("traits")
    predict_run = ctx.parents.get("predict")
    ctx.as_of = ctx.parent_as_of("traits")
    engine = ctx.engine()
    ctx.progress("fields", 0, 4)
    fields = build_fields(engine, store, traits_run, predict_run)
    coverage = _coverage(engine, fields)
    total = coverage.pop("__rows__")
    if not total:
        raise PersonaeError(f"The traits run {traits_run} has no customers to segment.")
    specs, skipped = _chosen(config.segmentations, cfg, fields, coverage)
    ctx.progress("sample", 1, 4)
    sample = _sample(engine, fields, cfg)
    summary = SegmentsSummary(ctx.run_id, str(ctx.as_of), traits_run, predict_run, total)
    summary.skipped = skipped
    stamp = {"run_id": ctx.run_id, "as_of": str(ctx.as_of)}
    space: cluster.ClusterModel | None = None
    described = cluster.choose_features(sample)  # what segments are described by
    for i, spec in enumerate(sorted(specs, key=lambda s: s.way not in ("clusters", "survey"))):
        ctx.progress(f"segmentation {spec.name}", i, len(specs))
        try:
            built = _build(spec, engine, fields, sample, coverage, cfg)
        except SkipSegmentation as why:
            summary.skipped[spec.name] = str(why)
            continue
        if built.model is not None and spec.way == "clusters" and space is None:
            space = built.model
        result = _store(ctx, engine, fields, built, sample, space, described, cfg, stamp)
        summary.segmentations.append(result)
    ctx.progress("overlap", 3, 4)
    _overlap(store, ctx.run_id, str(ctx.as_of), summary)
    ctx.details.update(
        segmentations=[r.name for r in summary.segmentations], skipped=summary.skipped
    )
    summary.seconds = round(time.perf_counter() - started, 2)
    return summary


class SkipSegmentation(Exception):
    """A ready-made segmentation the data cannot support (said in the summary)."""


def _coverage(engine: Engine, fields: Fields) -> dict[str, int]:
    """Non-NULL values per field (and the row count under `__rows__`)."""
    t = fields.table
    counts = t.aggregate(__rows__=t.count(), **{c: t[c].count() for c in t.columns})
    row = engine.backend.to_pyarrow(counts).to_pylist()[0]
    return {k: int(v or 0) for k, v in row.items()}


def _chosen(
    declared: dict[str, Any], cfg: SegmentsConfig, fields: Fields, coverage: dict[str, int]
) -> tuple[list[Segmentation], dict[str, str]]:
    """The ready-made segmentations the data has fields for, then the user's own."""
    wanted: set[str]
    if cfg.ready_made is True:
        wanted = set(READY_MADE_NAMES)
    elif cfg.ready_made is False:
        wanted = set()
    else:
        unknown = [n for n in cfg.ready_made if n not in READY_MADE_NAMES]
        if unknown:
            raise ConfigError(
                f"[segments] ready_made: no ready-made segmentation named {', '.join(unknown)}. "
                f"They are: {', '.join(READY_MADE_NAMES)}."
            )
        wanted = set(cfg.ready_made)
    specs, skipped = [], {}
    for spec in READY_MADE:
        if spec.name not in wanted or spec.name in declared:
            continue  # a [segmentations.NAME] of the same name replaces the ready-made one
        needs = _needs(spec)
        if needs and not any(coverage.get(f, 0) for f in needs):
            skipped[spec.name] = f"no values of {', '.join(sorted(needs))}"
            continue
        specs.append(spec)
    specs += [from_config(name, section) for name, section in declared.items()]
    return specs, skipped


def _needs(spec: Segmentation) -> set[str]:
    if spec.fields:
        return set(spec.fields)
    if spec.by:
        return {spec.by}
    return set().union(*(rule_fields(s.rule) for s in spec.segments)) if spec.segments else set()


def _sample(engine: Engine, fields: Fields, cfg: SegmentsConfig) -> pa.Table:
    """Up to `[segments] sample` customers, the same ones on every engine."""
    return survey.sample_rows(fields.table, cfg.sample, cfg.seed)


def _setting(spec: Segmentation, segment: str | None = None) -> str:
    where = (
        f"[segmentations.{spec.name}]"
        if spec.origin == "config"
        else f"the ready-made segmentation '{spec.name}'"
    )
    return f"{where} segment '{segment}'" if segment else where


def _build(
    spec: Segmentation,
    engine: Engine,
    fields: Fields,
    sample: pa.Table,
    coverage: dict[str, int],
    cfg: SegmentsConfig,
) -> Built:
    t = fields.table
    if spec.way == "rules":
        segs = [
            s
            for s in spec.segments
            if spec.origin == "config" or any(coverage.get(f, 0) for f in rule_fields(s.rule))
        ]
        conds = [compile_rule(s.rule, t, setting=_setting(spec, s.name)) for s in segs]
        order = [(s.name, s.description, s.rule) for s in segs]
        definition: dict[str, Any] = {"segments": [asdict(s) for s in segs]}
        if spec.kind == "audiences":
            parts = [
                t.filter(c).select("customer_id", segment=ibis.literal(s.name))
                for s, c in zip(segs, conds, strict=True)
            ]
            members = ibis.union(*parts) if len(parts) > 1 else parts[0]
            return Built(spec, members, order, "rules", definition)
        label = ibis.cases(
            *[(c, s.name) for s, c in zip(segs, conds, strict=True)], else_=spec.remainder
        )
        order.append((spec.remainder, "Customers no rule above matches.", "(remainder)"))
        definition["remainder"] = spec.remainder
        return Built(spec, t.select("customer_id", segment=label), order, "rules", definition)
    if spec.way == "by_field":
        return _by_field(spec, engine, fields)
    if spec.way == "survey":
        return _survey(spec, engine, cfg)
    return _clusters(spec, fields, sample, cfg)


def _by_field(spec: Segmentation, engine: Engine, fields: Fields) -> Built:
    """One segment per value of a field: the `top` most common, then Other, then Unknown."""
    t = fields.table
    name = (spec.by or "").lower()
    if name not in t.columns:
        raise ConfigError(
            f"{_setting(spec)}: by = '{spec.by}' is not a field." + _closest(name, t.columns)
        )
    value = t[name].cast("string")
    known = t.select(v=value).filter(lambda r: r.v.notnull())
    counts = known.group_by("v").agg(n=known.count())
    top = engine.backend.to_pyarrow(
        counts.order_by(ibis.desc("n"), "v").limit(spec.top)
    ).to_pylist()
    values = [r["v"] for r in top]
    label = ibis.cases((value.isnull(), "Unknown"), (value.isin(values), value), else_="Other")
    order = [(v, f"{name} = {v}", f"{name} = '{v}'") for v in values]
    order += [("Other", f"Other values of {name}", "(other values)")]
    order += [("Unknown", f"No {name}", "(no value)")]
    return Built(
        spec, t.select("customer_id", segment=label), order, "by_field", {"by": name, "top": values}
    )


def _closest(name: str, choices: list[str]) -> str:
    from personae.errors import closest

    return closest(name, choices)


def _clusters(spec: Segmentation, fields: Fields, sample: pa.Table, cfg: SegmentsConfig) -> Built:
    """Fit on the sample, assign everyone in the engine (nearest centroid)."""
    t = fields.table
    if spec.features:
        wanted = [f.lower() for f in spec.features]
        missing = [f for f in wanted if f not in t.columns]
        if missing:
            raise ConfigError(
                f"{_setting(spec)}: features {', '.join(missing)} are not fields."
                + _closest(missing[0], t.columns)
            )
        numeric = [f for f in wanted if fields.kinds[f] in ("int", "float", "bool")]
        categorical = [f for f in wanted if f not in numeric]
    else:
        numeric, categorical = cluster.choose_features(sample)
    model = cluster.fit_clusters(
        sample,
        numeric,
        categorical,
        method=spec.method or "auto",
        k=spec.k,
        k_range=spec.k_range,
        seed=cfg.seed,
    )
    labels = model.predict(sample)
    names = _cluster_names(labels, model.k)
    label = model.assign(t)
    segment = ibis.cases(*[(label == i, names[i]) for i in range(model.k)])
    order = [(names[i], "", f"cluster {i}") for i in sorted(range(model.k), key=lambda i: names[i])]
    return Built(
        spec,
        t.select("customer_id", segment=segment),
        order,
        model.method,
        {"model": model.to_dict(), "numeric": numeric, "categorical": categorical},
        model,
        model.diagnostics,
        np.array([names[i] for i in labels], dtype=object),
        sample,
    )


def _cluster_names(labels: np.ndarray, k: int) -> dict[int, str]:
    """Cluster 1 is the largest in the sample."""
    sizes = np.bincount(labels, minlength=k)
    ranked = sorted(range(k), key=lambda i: (-sizes[i], i))
    return {c: f"Cluster {n}" for n, c in enumerate(ranked, start=1)}


def _survey(spec: Segmentation, engine: Engine, cfg: SegmentsConfig) -> Built:
    """Factor analysis of the survey items of the spec's basis, then clusters of the factor
    scores; only respondents are members."""
    responses = engine.table("responses")
    try:
        items = survey.survey_items(responses)
        if not items:
            raise SkipSegmentation("no survey answers")
        chosen = survey.basis_items(items, "needs" if spec.survey == "needs" else "psychographic")
        columns = survey.item_columns(chosen)
        texts = {columns[i["item_id"]]: i["item_text"] for i in items if i["item_id"] in columns}
        wide = engine.temp(survey.survey_wide(responses, chosen), f"_survey_{spec.name}")
        data = survey.sample_rows(wide, cfg.sample, cfg.seed)
        factors = survey.fit_factors(data, list(columns.values()), None, cfg.seed, texts)
    except ConfigError as err:
        if spec.origin == "config":
            raise
        raise SkipSegmentation(str(err).rstrip(".")) from None
    scored = factors.score_table(wide)
    names = [c for c in scored.columns if c != "customer_id"]
    scores = pa.table(
        {
            "customer_id": data["customer_id"],
            **dict(zip(names, factors.transform(data).T, strict=True)),
        }
    )
    model = cluster.fit_clusters(
        scores, names, [], method="kmeans", k=spec.k, k_range=spec.k_range, seed=cfg.seed
    )
    labels = model.predict(scores)
    cluster_names = _cluster_names(labels, model.k)
    label = model.assign(scored)
    seg = ibis.cases(*[(label == i, cluster_names[i]) for i in range(model.k)])
    order = [
        (cluster_names[i], "", f"cluster {i}")
        for i in sorted(range(model.k), key=lambda i: cluster_names[i])
    ]
    return Built(
        spec,
        scored.select("customer_id", segment=seg),
        order,
        f"factors+{model.method}",
        {"factors": factors.to_dict(), "model": model.to_dict(), "items": chosen},
        model,
        model.diagnostics,
        np.array([cluster_names[i] for i in labels], dtype=object),
        scores,
    )


def _store(
    ctx: RunContext,
    engine: Engine,
    fields: Fields,
    built: Built,
    sample: pa.Table,
    space: cluster.ClusterModel | None,
    described_by: tuple[list[str], list[str]],
    cfg: SegmentsConfig,
    stamp: dict[str, str],
) -> SegmentationResult:
    """Write the memberships and the quality of one segmentation."""
    spec = built.spec
    members = built.members.mutate(segmentation=ibis.literal(spec.name))
    engine.write("memberships", members.select("customer_id", "segmentation", "segment"), stamp)
    t = fields.table
    value = t.select(
        "customer_id", "total_value", clv=t.clv if "clv" in t.columns else ibis.null("float64")
    )
    joined = built.members.join(value, "customer_id")
    agg = engine.backend.to_pyarrow(
        joined.group_by("segment").agg(
            size=joined.count(), revenue=joined.total_value.sum(), clv=joined.clv.sum()
        )
    ).to_pylist()
    by_segment = {r["segment"]: r for r in agg}
    everyone = engine.backend.to_pyarrow(
        value.aggregate(n=value.count(), revenue=value.total_value.sum(), clv=value.clv.sum())
    ).to_pylist()[0]
    segmented = engine.backend.to_pyarrow(
        built.members.aggregate(n=built.members.customer_id.nunique())
    ).to_pylist()[0]["n"]
    # separation and description on the sample
    labels, data = _sample_labels(built, engine, sample)
    silhouettes, overall = _silhouettes(labels, data, built, space, cfg)
    stability, jaccard = (None, {})
    if built.model is not None and cfg.stability_resamples:
        source = built.sample if built.sample is not None else sample
        ari, per = cluster.stability(source, built.model, cfg.stability_resamples, cfg.seed)
        names = _cluster_names(built.model.predict(source), built.model.k)
        stability, jaccard = float(ari), {names[i]: float(j) for i, j in enumerate(per)}
    described = _describe(labels, data, built, described_by)
    result = SegmentationResult(
        spec.name,
        spec.model,
        spec.kind,
        built.method,
        spec.origin,
        int(segmented or 0),
        {},
        overall,
        stability,
    )
    seg_rows, trait_rows = [], []
    for position, (name, description, rule) in enumerate(built.order, start=1):
        row = by_segment.get(name, {"size": 0, "revenue": None, "clv": None})
        size = int(row["size"])
        if size == 0 and rule in REST_RULES:
            continue  # nobody in Other / Unknown / the remainder: not a segment
        warning = _warning(name, size, total=everyone["n"], stability=jaccard.get(name), cfg=cfg)
        if size == 0 and spec.origin == "ready-made":
            warning = None  # a ready-made band the data does not reach is no cause for care
        if warning:
            result.warnings.append(f"{name}: {warning}")
        result.segments[name] = size
        info = described.get(name, {})
        seg_rows.append(
            {
                "segmentation": spec.name,
                "segment": name,
                "position": position,
                "description": description,
                "rule": rule,
                "proposed_name": info.get("proposed_name"),
                "size": size,
                "share_customers": size / everyone["n"] if everyone["n"] else None,
                "share_revenue": _share(row["revenue"], everyone["revenue"]),
                "share_clv": _share(row["clv"], everyone["clv"]),
                "silhouette": silhouettes.get(name),
                "stability": jaccard.get(name),
                "warning": warning,
            }
        )
        for rank, d in enumerate(info.get("distinguishing", [])[:DESCRIBE_TOP], start=1):
            trait_rows.append(
                {
                    "segmentation": spec.name,
                    "segment": name,
                    "trait": d["trait"],
                    "value": None if d.get("value") is None else str(d["value"]),
                    "segment_mean": d.get("cluster_mean"),
                    "overall_mean": d.get("overall_mean"),
                    "std_diff": d.get("std_diff"),
                    "lift": d.get("lift"),
                    "support": d.get("support"),
                    "rank": rank,
                }
            )
    if stability is not None and stability < cfg.min_stability:
        result.warnings.insert(
            0,
            f"unstable: bootstrap adjusted Rand index {stability:.2f} is below min_stability "
            f"{cfg.min_stability}",
        )
    insert_rows(
        ctx.store,
        "segmentations",
        [
            {
                "segmentation": spec.name,
                "model": spec.model,
                "kind": spec.kind,
                "method": built.method,
                "origin": spec.origin,
                "description": spec.description,
                "definition": json.dumps(built.definition, default=float),
                "customers": result.customers,
                "segment_count": sum(1 for n in result.segments.values() if n),
                "silhouette": overall,
                "stability": stability,
                "warnings": json.dumps(result.warnings),
            }
        ],
        stamp,
    )
    insert_rows(ctx.store, "segments", seg_rows, stamp)
    insert_rows(ctx.store, "segment_traits", trait_rows, stamp)
    insert_rows(
        ctx.store,
        "cluster_diagnostics",
        [
            {
                "segmentation": spec.name,
                "k": int(d["k"]),
                "silhouette": d.get("silhouette"),
                "bic": d.get("bic"),
                "inertia": d.get("inertia"),
                "chosen": bool(d.get("chosen")),
            }
            for d in built.diagnostics
        ],
        stamp,
    )
    for w in result.warnings:
        log.warning("segmentation %s: %s", spec.name, w)
    return result


def _share(part: float | None, whole: float | None) -> float | None:
    return float(part) / float(whole) if part is not None and whole else None


def _warning(
    name: str, size: int, *, total: int, stability: float | None, cfg: SegmentsConfig
) -> str | None:
    if size == 0:
        return "empty: no customer is in it"
    share = size / total if total else 0.0
    if size < cfg.min_size or share < cfg.min_share:
        return (
            f"tiny: {size:,} customers ({share:.1%}), below min_size {cfg.min_size} or "
            f"min_share {cfg.min_share:.0%}"
        )
    if stability is not None and stability < cfg.min_stability:
        return (
            f"unstable: bootstrap Jaccard {stability:.2f} is below min_stability "
            f"{cfg.min_stability}"
        )
    return None


def _sample_labels(built: Built, engine: Engine, sample: pa.Table) -> tuple[np.ndarray, pa.Table]:
    """Each sample row's segment (partitions; audiences: the first segment it is in, which
    is enough to describe them), and the sample the labels are of."""
    if built.sample_labels is not None and built.sample is not None:
        return built.sample_labels, built.sample
    ids = sample.select(["customer_id"])
    chosen = engine.upload("_segment_sample_ids", ids)
    members = built.members
    picked = (
        members.join(chosen, "customer_id")
        .group_by("customer_id")
        .agg(segment=members.segment.min())
    )
    rows = engine.backend.to_pyarrow(picked).to_pylist()
    found = {r["customer_id"]: r["segment"] for r in rows}
    labels = np.array([found.get(c) for c in sample["customer_id"].to_pylist()], dtype=object)
    return labels, sample


def _silhouettes(
    labels: np.ndarray,
    data: pa.Table,
    built: Built,
    space: cluster.ClusterModel | None,
    cfg: SegmentsConfig,
) -> tuple[dict[str, float], float | None]:
    """Mean silhouette per segment and overall, on up to SILHOUETTE_SAMPLE sample rows, in
    the segmentation's own feature space (clusters) or the default clustering's (rules)."""
    from sklearn.metrics import silhouette_samples

    model = built.model or space
    if model is None or built.spec.kind == "audiences":
        return {}, None
    keep = np.array([lab is not None for lab in labels])
    if keep.sum() < 3:
        return {}, None
    rows = np.nonzero(keep)[0]
    if len(rows) > SILHOUETTE_SAMPLE:
        rows = np.sort(
            np.random.default_rng(cfg.seed).choice(rows, SILHOUETTE_SAMPLE, replace=False)
        )
    x = model.transform(data.take(pa.array(rows)))
    lab = labels[rows].astype(str)
    if len(set(lab)) < 2:
        return {}, None
    values = silhouette_samples(x, lab)
    per = {name: float(values[lab == name].mean()) for name in set(lab)}
    return per, float(values.mean())


def _describe(
    labels: np.ndarray, data: pa.Table, built: Built, features: tuple[list[str], list[str]]
) -> dict[str, dict[str, Any]]:
    """Distinguishing traits and a proposed name per segment, from the sample."""
    keep = np.array([lab is not None for lab in labels])
    if keep.sum() == 0:
        return {}
    rows = pa.array(np.nonzero(keep)[0])
    subset = data.take(rows)
    lab = labels[keep].astype(str)
    names = sorted(set(lab))
    codes = np.array([names.index(x) for x in lab])
    numeric, categorical = features
    if built.model is not None:  # describe clusters by what they were made of, too
        numeric = list(dict.fromkeys([*(f.name for f in built.model.numeric), *numeric]))
    numeric = [c for c in numeric if c in subset.column_names]
    categorical = [c for c in categorical if c in subset.column_names]
    described = cluster.describe_clusters(subset, codes, numeric, categorical, top=DESCRIBE_TOP)
    return {names[int(d["label"])]: d for d in described}


def insert_rows(
    store: Store, table: str, rows: list[dict[str, Any]], stamp: dict[str, str]
) -> None:
    """Append small result rows (Python values) to a declared output table by name."""
    if not rows:
        return
    data = pa.Table.from_pylist([{**r, **stamp} for r in rows])
    store.con.register("_rows", data)
    try:
        cols = ", ".join(f'"{c}"' for c in data.column_names)
        store.con.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM _rows')
    finally:
        store.con.unregister("_rows")


def _overlap(store: Store, run_id: str, as_of: str, summary: SegmentsSummary) -> None:
    """Customers in each pair of segments of two partitions (one query per pair over the
    run's memberships in the store)."""
    partitions = [r.name for r in summary.segmentations if r.kind == "partition"]
    if len(partitions) < 2:
        return
    columns = ", ".join(
        f"max(segment) FILTER (WHERE segmentation = ?) AS p{i}" for i in range(len(partitions))
    )
    store.con.execute(
        f"CREATE OR REPLACE TEMP TABLE _wide AS SELECT customer_id, {columns} FROM memberships "
        "WHERE run_id = ? GROUP BY customer_id",
        [*partitions, run_id],
    )
    try:
        for i, a in enumerate(partitions):
            for j, b in enumerate(partitions[i + 1 :], start=i + 1):
                qa, qb = f"p{i}", f"p{j}"
                store.con.execute(
                    f"""INSERT INTO segment_overlap (segmentation_a, segment_a, segmentation_b,
                        segment_b, customers, run_id, as_of)
                    SELECT ?, "{qa}", ?, "{qb}", count(*), ?, ?::DATE FROM _wide
                    WHERE "{qa}" IS NOT NULL AND "{qb}" IS NOT NULL GROUP BY ALL""",
                    [a, b, run_id, as_of],
                )
    finally:
        store.con.execute("DROP TABLE IF EXISTS _wide")


STAGE = Stage(
    name="segments",
    description="Segmentations by rules, fields, clusters and survey factors over the traits "
    "(and predictions) of a run, with quality, stability, overlap and history.",
    parents=("traits",),
    optional_parents=("predict",),
    reads=("traits", "predictions", "customers", "accounts", "feedback", "responses"),
    outputs=(
        "segmentations",
        "segments",
        "memberships",
        "segment_traits",
        "cluster_diagnostics",
        "segment_overlap",
    ),
    compute=segment,
    uses_engine=True,
)
