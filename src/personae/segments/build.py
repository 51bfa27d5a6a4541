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
from personae.errors import ConfigError, PersonaeError, closest
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
OTHER, UNKNOWN = "(other)", "(unknown)"  # by-field catch-alls: no data value looks like them
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
    names: dict[int, str] = field(default_factory=dict)  # cluster label -> segment


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
    fields = build_fields(engine, store, traits_run, predict_run, ctx.as_of)
    coverage = _coverage(engine, fields)
    total = coverage.pop("__rows__")
    if not total:
        raise PersonaeError(
            f"The traits run {traits_run} has no customers to segment.",
            hint="Ingest customers or orders, then `personae run --from traits`.",
        )
    specs, skipped = _chosen(config.segmentations, cfg, fields, coverage)
    ctx.progress("sample", 1, 4)
    sample = survey.sample_rows(fields.table, cfg.sample, cfg.seed)
    sample_ids = engine.upload("_segment_sample_ids", sample.select(["customer_id"]))
    summary = SegmentsSummary(ctx.run_id, str(ctx.as_of), traits_run, predict_run, total)
    summary.skipped = skipped
    stamp = {"run_id": ctx.run_id, "as_of": str(ctx.as_of)}
    space: cluster.ClusterModel | None = None
    described = _description_features(sample, cfg.seed)
    for i, spec in enumerate(sorted(specs, key=lambda s: s.way not in ("clusters", "survey"))):
        ctx.progress(f"segmentation {spec.name}", i, len(specs))
        try:
            built = _build(spec, engine, fields, sample, coverage, cfg)
        except SkipSegmentation as why:
            summary.skipped[spec.name] = str(why)
            continue
        except ConfigError as err:
            if spec.origin == "config":
                raise
            summary.skipped[spec.name] = str(err).rstrip(".")  # e.g. too few customers
            continue
        if built.model is not None and spec.way == "clusters" and space is None:
            space = built.model
        result = _store(
            ctx, engine, fields, built, sample_ids, sample, space, described, cfg, stamp
        )
        summary.segmentations.append(result)
    ctx.progress("overlap", 3, 4)
    _overlap(store, ctx.run_id, str(ctx.as_of), summary)
    ctx.details.update(
        segmentations=[r.name for r in summary.segmentations],
        skipped=summary.skipped,
        value_basis=fields.value_basis,
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


DESCRIBE_ROWS = 20_000  # sample rows segments are described on


def _description_features(sample: pa.Table, seed: int) -> tuple[list[str], list[str]]:
    """The traits segments are described by (those a default clustering would use); none
    when the data has no usable ones."""
    try:
        return cluster.choose_features(sample, seed=seed)
    except ConfigError:
        return [], []


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
        return _survey(spec, engine, fields, cfg)
    return _clusters(spec, fields, sample, cfg)


def _by_field(spec: Segmentation, engine: Engine, fields: Fields) -> Built:
    """One segment per value of a field: the `top` most common, then Other, then Unknown."""
    t = fields.table
    name = (spec.by or "").lower()
    if name not in t.columns:
        raise ConfigError(
            f"{_setting(spec)}: by = '{spec.by}' is not a field." + closest(name, t.columns)
        )
    value = t[name].cast("string")
    known = t.select(v=value).filter(lambda r: r.v.notnull())
    counts = known.group_by("v").agg(n=known.count())
    top = engine.backend.to_pyarrow(
        counts.order_by(ibis.desc("n"), "v").limit(spec.top)
    ).to_pylist()
    values = [r["v"] for r in top]
    label = ibis.cases((value.isnull(), UNKNOWN), (value.isin(values), value), else_=OTHER)
    order = [(v, f"{name} = {v}", f"{name} = '{v}'") for v in values]
    order += [(OTHER, f"Other values of {name}", "(other values)")]
    order += [(UNKNOWN, f"No {name}", "(no value)")]
    return Built(
        spec, t.select("customer_id", segment=label), order, "by_field", {"by": name, "top": values}
    )


def _clusters(spec: Segmentation, fields: Fields, sample: pa.Table, cfg: SegmentsConfig) -> Built:
    """Fit on the sample, assign everyone in the engine (nearest centroid)."""
    t = fields.table
    if spec.features:
        wanted = [f.lower() for f in spec.features]
        missing = [f for f in wanted if f not in t.columns]
        if missing:
            raise ConfigError(
                f"{_setting(spec)}: features {', '.join(missing)} are not fields."
                + closest(missing[0], t.columns),
                hint="docs/segments.md lists the fields (traits, predictions, attributes).",
            )
        numeric = [f for f in wanted if fields.kinds[f] in ("int", "float", "bool")]
        categorical = [f for f in wanted if f not in numeric]
    else:
        numeric, categorical = cluster.choose_features(sample, seed=cfg.seed)
    model = cluster.fit_clusters(
        sample,
        numeric,
        categorical,
        method=spec.method or "auto",
        k=spec.k,
        k_range=spec.k_range,
        seed=cfg.seed,
    )
    definition = {"model": model.to_dict(), "numeric": numeric, "categorical": categorical}
    return _clustered(spec, model, sample, t, model.method, definition)


def _clustered(
    spec: Segmentation,
    model: cluster.ClusterModel,
    sample: pa.Table,
    table: ir.Table,
    method: str,
    definition: dict[str, Any],
) -> Built:
    """Memberships of a fitted clustering: everyone in `table` assigned in the engine;
    Cluster 1 is the largest in the sample."""
    labels = model.predict(sample)
    sizes = np.bincount(labels, minlength=model.k)
    ranked = sorted(range(model.k), key=lambda i: (-sizes[i], i))
    names = {c: f"Cluster {n}" for n, c in enumerate(ranked, start=1)}
    label = model.assign(table)
    segment = ibis.cases(*[(label == i, names[i]) for i in range(model.k)])
    order = [(names[i], "", f"nearest to centroid {i} of the model") for i in ranked]
    return Built(
        spec,
        table.select("customer_id", segment=segment),
        order,
        method,
        definition,
        model,
        model.diagnostics,
        np.array([names[i] for i in labels], dtype=object),
        sample,
        names,
    )


def _survey(spec: Segmentation, engine: Engine, fields: Fields, cfg: SegmentsConfig) -> Built:
    """Factor analysis of the survey items of the spec's basis (answers up to the as-of
    date), then clusters of the factor scores; the respondents among the traits run's
    customers are the members."""
    responses = engine.table("responses")
    responses = responses.filter(
        responses.answered_at.isnull() | (responses.answered_at.cast("date") <= fields.as_of)
    )
    try:
        items = survey.survey_items(responses)
        if not items:
            raise SkipSegmentation("no survey answers")
        chosen = survey.basis_items(items, "needs" if spec.survey == "needs" else "psychographic")
        columns = survey.item_columns(chosen)
        texts = {columns[i["item_id"]]: i["item_text"] for i in items if i["item_id"] in columns}
        wide = survey.survey_wide(responses, chosen)
        customers = fields.table.select("customer_id")
        wide = engine.temp(wide.semi_join(customers, "customer_id"), f"_survey_{spec.name}")
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
    model = survey.cluster_scores(scores, names, spec.k, spec.k_range, cfg.seed)
    definition = {"factors": factors.to_dict(), "model": model.to_dict(), "items": chosen}
    return _clustered(spec, model, scores, scored, f"factors+{model.method}", definition)


def _store(
    ctx: RunContext,
    engine: Engine,
    fields: Fields,
    built: Built,
    sample_ids: ir.Table,
    sample: pa.Table,
    space: cluster.ClusterModel | None,
    described_by: tuple[list[str], list[str]],
    cfg: SegmentsConfig,
    stamp: dict[str, str],
) -> SegmentationResult:
    """Write the memberships and the quality of one segmentation."""
    spec = built.spec
    t = fields.table
    value = t.select(
        "customer_id", "total_value", clv=t.clv if "clv" in t.columns else ibis.null("float64")
    )
    # the membership expression (rules, a cluster assignment) is evaluated once
    built.members = engine.temp(built.members.join(value, "customer_id"), "_segment_members")
    members = built.members.select(
        "customer_id", segmentation=ibis.literal(spec.name), segment=built.members.segment
    )
    engine.write("memberships", members, stamp)
    joined = built.members
    per_segment = joined.group_by("segment").agg(
        size=joined.count(), revenue=joined.total_value.sum(), clv=joined.clv.sum()
    )
    by_segment = {r["segment"]: r for r in engine.backend.to_pyarrow(per_segment).to_pylist()}
    if spec.kind == "audiences":
        segmented = engine.backend.to_pyarrow(
            joined.aggregate(n=joined.customer_id.nunique())
        ).to_pylist()[0]["n"]
    else:
        segmented = sum(r["size"] for r in by_segment.values())
    everyone = {  # the segmented customers' totals (partitions: everyone they hold)
        "n": segmented,
        "revenue": _total(engine, joined, "total_value", spec.kind),
        "clv": _total(engine, joined, "clv", spec.kind),
    }
    # separation, stability and description on the sample
    labels, data, in_segment = _sample_labels(built, engine, sample_ids, sample)
    silhouettes, overall = _silhouettes(labels, data, built, space, cfg)
    stability, jaccard = (None, {})
    if built.model is not None and cfg.stability_resamples:
        source = built.sample if built.sample is not None else sample
        ari, per = cluster.stability(source, built.model, cfg.stability_resamples, cfg.seed)
        stability = float(ari)
        jaccard = {built.names[i]: float(j) for i, j in enumerate(per)}
    described = _describe(labels, data, in_segment, built, described_by, cfg.seed)
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


def _total(engine: Engine, joined: ir.Table, column: str, kind: str) -> float | None:
    """The sum of a value over the segmented customers (each once, also in audiences)."""
    if kind == "audiences":
        joined = joined.select("customer_id", column).distinct()
    return engine.backend.to_pyarrow(joined.aggregate(v=joined[column].sum())).to_pylist()[0]["v"]


def _sample_labels(
    built: Built, engine: Engine, sample_ids: ir.Table, sample: pa.Table
) -> tuple[np.ndarray, pa.Table, dict[str, np.ndarray]]:
    """Each sample row's segment (partitions; None outside), the sample the labels are of,
    and each segment's members among the sample rows (audiences overlap)."""
    if built.sample_labels is not None and built.sample is not None:
        labels = built.sample_labels
        return labels, built.sample, {name: labels == name for name in set(labels)}
    members = built.members
    picked = members.join(sample_ids, "customer_id").select("customer_id", "segment")
    rows = engine.backend.to_pyarrow(picked).to_pylist()
    position = {c: i for i, c in enumerate(sample["customer_id"].to_pylist())}
    in_segment: dict[str, np.ndarray] = {}
    labels = np.full(sample.num_rows, None, dtype=object)
    for r in rows:
        i = position[r["customer_id"]]
        mask = in_segment.setdefault(r["segment"], np.zeros(sample.num_rows, bool))
        mask[i] = True
        labels[i] = r["segment"]
    return labels, sample, in_segment


def _silhouettes(
    labels: np.ndarray,
    data: pa.Table,
    built: Built,
    space: cluster.ClusterModel | None,
    cfg: SegmentsConfig,
) -> tuple[dict[str, float], float | None]:
    """Mean silhouette per segment and overall, on up to cluster.SILHOUETTE_ROWS sample rows, in
    the segmentation's own feature space (clusters) or the default clustering's (rules)."""
    from sklearn.metrics import silhouette_samples

    model = built.model or space
    if model is None or built.spec.kind == "audiences":
        return {}, None
    keep = np.array([lab is not None for lab in labels])
    if keep.sum() < 3:
        return {}, None
    rows = np.nonzero(keep)[0]
    if len(rows) > cluster.SILHOUETTE_ROWS:
        rows = np.sort(
            np.random.default_rng(cfg.seed).choice(rows, cluster.SILHOUETTE_ROWS, replace=False)
        )
    x = model.transform(data.take(pa.array(rows)))
    lab = labels[rows].astype(str)
    if len(set(lab)) < 2:
        return {}, None
    values = silhouette_samples(x, lab)
    per = {name: float(values[lab == name].mean()) for name in set(lab)}
    return per, float(values.mean())


def _describe(
    labels: np.ndarray,
    data: pa.Table,
    in_segment: dict[str, np.ndarray],
    built: Built,
    features: tuple[list[str], list[str]],
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Distinguishing traits and a proposed name per segment, on up to DESCRIBE_ROWS sample
    rows: a partition's segments against everyone, an audience against everyone too."""
    numeric, categorical = features
    if built.model is not None:  # describe clusters by what they were made of, too
        numeric = list(dict.fromkeys([*(f.name for f in built.model.numeric), *numeric]))
    numeric = [c for c in numeric if c in data.column_names]
    categorical = [c for c in categorical if c in data.column_names]
    if not (numeric or categorical) or not in_segment:
        return {}
    rows = np.arange(data.num_rows)
    if len(rows) > DESCRIBE_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, DESCRIBE_ROWS, replace=False))
    subset = data.take(pa.array(rows))
    if built.spec.kind == "audiences":
        out = {}
        for name, mask in in_segment.items():
            codes = mask[rows].astype(np.int64)
            if codes.any():
                found = cluster.describe_clusters(
                    subset, codes, numeric, categorical, top=DESCRIBE_TOP
                )
                out[name] = next(d for d in found if int(d["label"]) == 1)
        return out
    names = sorted(in_segment)
    index = {name: i for i, name in enumerate(names)}
    codes = np.array([index.get(x, len(names)) for x in labels[rows]])
    found = cluster.describe_clusters(subset, codes, numeric, categorical, top=DESCRIBE_TOP)
    return {names[int(d["label"])]: d for d in found if int(d["label"]) < len(names)}


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
    """Customers in each pair of segments of every two partitions: one pass over the run's
    memberships in the store, one grouping set per pair."""
    partitions = [r.name for r in summary.segmentations if r.kind == "partition"]
    if len(partitions) < 2:
        return
    columns = ", ".join(
        f"max(segment) FILTER (WHERE segmentation = ?) AS p{i}" for i in range(len(partitions))
    )
    pairs = [(i, j) for i in range(len(partitions)) for j in range(i + 1, len(partitions))]
    sets = ", ".join(f"(p{i}, p{j})" for i, j in pairs)
    which = " ".join(f"WHEN grouping(p{i}, p{j}) = 0 THEN {n}" for n, (i, j) in enumerate(pairs))
    rows = store.con.execute(
        f"""WITH wide AS (SELECT customer_id, {columns} FROM memberships
                          WHERE run_id = ? GROUP BY customer_id)
            SELECT CASE {which} END AS pair, {", ".join(f"p{i}" for i in range(len(partitions)))},
                   count(*) FROM wide GROUP BY GROUPING SETS ({sets})""",
        [*partitions, run_id],
    ).fetchall()
    out = []
    for row in rows:
        i, j = pairs[row[0]]
        a, b, n = row[1 + i], row[1 + j], row[-1]
        if a is not None and b is not None:
            out.append(
                {
                    "segmentation_a": partitions[i],
                    "segment_a": a,
                    "segmentation_b": partitions[j],
                    "segment_b": b,
                    "customers": n,
                }
            )
    insert_rows(store, "segment_overlap", out, {"run_id": run_id, "as_of": as_of})


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
