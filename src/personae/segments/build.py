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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personae.config import SegmentsConfig, given_twice
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
DESCRIBE_ROWS = 20_000  # sample rows segments are described on


@dataclass
class Prepared:
    """What the run's segmentations are measured with, made ready once and shared: the
    describing rows and columns per (id of the sample, numeric, categorical features), and
    the last silhouette distances with their (ids of the model and the data, rows) (the rule
    segmentations are measured on the same rows in the default clustering's space)."""

    describing: dict[tuple[int, tuple[str, ...], tuple[str, ...]], cluster.Describing] = field(
        default_factory=dict
    )
    silhouette: tuple[tuple[int, int, bytes], cluster.Silhouette] | None = None


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
    """One segmentation's membership as engine expressions, and what goes with it.

    A partition gives `codes`: per customer the index of its segment in `labels` (NULL for
    a customer outside it); audiences give one boolean per segment in `flags`. Both are over
    the fields table, or over `table` (survey respondents) when that is set."""

    spec: Segmentation
    order: list[tuple[str, str, str]]  # (segment, description, rule) in position order
    method: str
    definition: dict[str, Any]
    labels: list[str]  # code -> segment name
    codes: ir.IntegerValue | None = None
    flags: list[ir.BooleanValue] = field(default_factory=list)
    table: ir.Table | None = None
    model: cluster.ClusterModel | None = None
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    sample_codes: np.ndarray | None = None  # code per row of `sample` (fitted clusterings)
    sample: pa.Table | None = None  # the sample the codes are of (survey: respondents)
    warnings: list[str] = field(default_factory=list)


def segment(ctx: RunContext) -> SegmentsSummary:
    """Build and store every segmentation of the traits run this run reads.

    Each segmentation is first built as engine expressions (clusters fitted on the sample);
    then one table holds every customer's segment in each of them, and memberships (a row of
    codes per customer), sizes and overlap come from it in one write and two queries, whatever
    the number of segmentations."""
    started = time.perf_counter()
    store, config = ctx.store, ctx.config
    cfg = config.segments
    traits_run = ctx.parent("traits")
    predict_run = ctx.parents.get("predict")
    ctx.as_of = ctx.parent_as_of("traits")
    engine = ctx.engine()
    ctx.progress("fields", 0, 5)
    fields = build_fields(engine, store, traits_run, predict_run, ctx.as_of)
    coverage = _coverage(engine, fields)
    total = coverage.pop("__rows__")
    if not total:
        raise PersonaeError(
            f"The traits run {traits_run} has no customers to segment.",
            hint="Ingest customers or orders, then `personae run --from traits`.",
        )
    specs, skipped = _chosen(config.segmentations, cfg, fields, coverage)
    ctx.progress("sample", 1, 5)
    # clusterings are fitted on the whole sample; rules are only described and measured on
    # DESCRIBE_ROWS of it (the first rows of the same order, so the same customers)
    fitting = any(spec.way == "clusters" for spec in specs)
    rows = cfg.sample if fitting else min(cfg.sample, DESCRIBE_ROWS)
    sample = survey.sample_rows(fields.table, rows, cfg.seed)
    summary = SegmentsSummary(ctx.run_id, str(ctx.as_of), traits_run, predict_run, total)
    summary.skipped = skipped
    described = _description_features(sample, cfg.seed)  # also the default clustering's
    built_all: list[Built] = []
    for spec in sorted(specs, key=lambda s: s.way not in ("clusters", "survey")):
        ctx.progress(f"segmentation {spec.name}", 2, 5)
        try:
            built = _build(spec, engine, fields, sample, coverage, cfg, described)
            built_all.append(_renamed(built))
        except SkipSegmentation as why:
            summary.skipped[spec.name] = str(why)
        except ConfigError as err:
            if spec.origin == "config" or spec.names:
                raise
            summary.skipped[spec.name] = str(err).rstrip(".")  # e.g. too few customers
    if not built_all:
        return _finish(ctx, summary, fields, started)
    ctx.progress("memberships", 3, 5)
    stamp = {"run_id": ctx.run_id, "as_of": str(ctx.as_of)}
    labels = _label_table(engine, fields, built_all)
    engine.write("segment_codes", _segment_codes(labels, built_all), stamp)
    quality = _quality(engine, labels, built_all)
    in_sample = _sample_codes(engine, labels, built_all, sample)
    slots = _slot_codes(built_all)
    space = next((b.model for b in built_all if b.spec.way == "clusters"), None)
    prepared = Prepared()
    for i, built in enumerate(built_all):
        ctx.progress(f"quality {built.spec.name}", 4, 5)
        result = _store(
            ctx.store,
            built,
            quality[i],
            in_sample[i],
            slots[i],
            sample,
            space,
            described,
            cfg,
            stamp,
            prepared,
        )
        summary.segmentations.append(result)
    _overlap(engine, store, labels, built_all, stamp)
    return _finish(ctx, summary, fields, started)


def _finish(
    ctx: RunContext, summary: SegmentsSummary, fields: Fields, started: float
) -> SegmentsSummary:
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
    renamed = {name: s.names for name, s in declared.items() if s.names_only}
    for name in renamed:
        if name not in READY_MADE_NAMES:
            raise ConfigError(
                f"[segmentations.{name}] has only `names`, and no ready-made segmentation is "
                f"called {name}." + closest(name, READY_MADE_NAMES),
                hint="Define its segments (rules, `by` or `method`), or name the segments of a "
                "ready-made one in a section of its name.",
            )
    declared = {name: s for name, s in declared.items() if name not in renamed}
    specs, skipped = [], {}
    for spec in READY_MADE:
        if spec.name in renamed:
            spec = replace(spec, names=tuple(renamed[spec.name].items()))
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
    default_features: tuple[list[str], list[str]],
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
        names = [s.name for s in segs]
        definition: dict[str, Any] = {"segments": [asdict(s) for s in segs]}
        if spec.kind == "audiences":
            return Built(spec, order, "rules", definition, names, flags=conds)
        codes = ibis.cases(*[(c, i) for i, c in enumerate(conds)], else_=len(segs))
        order.append((spec.remainder, "Customers no rule above matches.", "(remainder)"))
        definition["remainder"] = spec.remainder
        return Built(spec, order, "rules", definition, [*names, spec.remainder], codes=codes)
    if spec.way == "by_field":
        return _by_field(spec, engine, fields)
    if spec.way == "survey":
        return _survey(spec, engine, fields, cfg)
    return _clusters(spec, fields, sample, cfg, default_features)


def _renamed(built: Built) -> Built:
    """The segments under the names a person gave them in the config; a name for a segment
    this run does not have (k chosen anew, a value gone) is a warning, not a failure."""
    names = dict(built.spec.names)
    if not names:
        return built
    missing = [n for n in names if n not in built.labels]
    if missing:
        built.warnings.append(
            f"names: no segment {', '.join(repr(n) for n in missing)} in this run (its "
            f"segments: {', '.join(built.labels)})"
        )
    built.labels = [names.get(n, n) for n in built.labels]
    taken = given_twice(built.labels)
    if taken:
        raise ConfigError(
            f"{_setting(built.spec)}: names gives {taken[0]!r}, the name of another segment.",
            hint="Choose a name no other segment of the segmentation has.",
        )
    built.order = [(names.get(s, s), d, r) for s, d, r in built.order]
    built.definition["names"] = names
    return built


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
    codes = ibis.cases(
        (value.isnull(), len(values) + 1),
        *[(value == v, i) for i, v in enumerate(values)],
        else_=len(values),
    )
    order = [(v, f"{name} = {v}", f"{name} = '{v}'") for v in values]
    order += [(OTHER, f"Other values of {name}", "(other values)")]
    order += [(UNKNOWN, f"No {name}", "(no value)")]
    definition = {"by": name, "top": values}
    return Built(spec, order, "by_field", definition, [*values, OTHER, UNKNOWN], codes=codes)


def _clusters(
    spec: Segmentation,
    fields: Fields,
    sample: pa.Table,
    cfg: SegmentsConfig,
    default_features: tuple[list[str], list[str]],
) -> Built:
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
    elif any(default_features):
        numeric, categorical = default_features
    else:  # none usable: choose_features says why
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
    respondents: bool = False,
) -> Built:
    """A fitted clustering: everyone in `table` (the fields table, or the survey's
    `respondents`) assigned in the engine; Cluster 1 is the largest in the sample."""
    labels = model.predict(sample)
    sizes = np.bincount(labels, minlength=model.k)
    ranked = sorted(range(model.k), key=lambda i: (-sizes[i], i))
    names = {c: f"Cluster {n}" for n, c in enumerate(ranked, start=1)}
    order = [(names[i], "", f"nearest to centroid {i} of the model") for i in ranked]
    return Built(
        spec,
        order,
        method,
        definition,
        [names[i] for i in range(model.k)],
        codes=model.assign(table),
        table=table if respondents else None,
        model=model,
        diagnostics=model.diagnostics,
        sample_codes=labels,
        sample=sample,
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
    method = f"factors+{model.method}"
    return _clustered(spec, model, scores, scored, method, definition, respondents=True)


def _column(i: int, j: int | None = None) -> str:
    """The label table's column of segmentation i (a partition's codes; audience j's flag)."""
    return f"s{i}" if j is None else f"s{i}_{j}"


def _columns(i: int, b: Built) -> list[str]:
    return [_column(i, j) for j in range(len(b.flags))] if b.flags else [_column(i)]


def _label_table(engine: Engine, fields: Fields, built: list[Built]) -> ir.Table:
    """One row per customer with its value and, per segmentation, its segment code (or its
    audience flags): every membership expression is evaluated once, in one pass."""
    t = fields.table
    columns: dict[str, ir.Value] = {
        "total_value": t.total_value.cast("float64"),
        "clv": t.clv.cast("float64") if "clv" in t.columns else ibis.null("float64"),
    }
    for i, b in enumerate(built):
        if b.table is None and b.codes is not None:
            columns[_column(i)] = b.codes.cast("int32")
        for j, flag in enumerate(b.flags):
            columns[_column(i, j)] = flag.fill_null(False)
    table = t.select("customer_id", **columns)
    for i, b in enumerate(built):
        if b.table is not None and b.codes is not None:  # survey respondents only
            codes = b.table.select("customer_id", **{_column(i): b.codes.cast("int32")})
            table = table.left_join(codes, "customer_id").drop("customer_id_right")
    return engine.temp(table, "_segment_labels")


def _slots(built: list[Built]) -> list[tuple[int, int | None]]:
    """Slot k (from 1) of `segment_codes.codes` is the k-th of these label-table columns:
    (segmentation, None) a partition's codes, (segmentation, j) audience j's flag."""
    return [
        (i, j) for i, b in enumerate(built) for j in (range(len(b.flags)) if b.flags else [None])
    ]


def _slot_codes(built: list[Built]) -> list[dict[str, tuple[int, int]]]:
    """Per segmentation, each segment's (slot, code) in `segment_codes.codes`: a partition's
    code is its segment's index, an audience member's code 0 in the audience's own slot."""
    slot = {column: k for k, column in enumerate(_slots(built), start=1)}
    return [
        {
            name: (slot[i, j], 0) if b.flags else (slot[i, None], j)
            for j, name in enumerate(b.labels)
        }
        for i, b in enumerate(built)
    ]


def _segment_codes(labels: ir.Table, built: list[Built]) -> ir.Table:
    """One row per customer with its code in every slot (NULL: in no segment there), for the
    segment_codes table; the memberships view names them."""
    codes = [
        labels[_column(i)]
        if j is None
        else ibis.ifelse(labels[_column(i, j)], 0, ibis.null("int32"))
        for i, j in _slots(built)
    ]
    return labels.select("customer_id", codes=ibis.array(codes).cast("array<int32>"))


@dataclass
class Quality:
    """One segmentation's sizes and values: per segment, and over its customers."""

    segments: dict[str, dict[str, Any]]
    customers: int
    revenue: float | None
    clv: float | None


def _quality(engine: Engine, labels: ir.Table, built: list[Built]) -> list[Quality]:
    """Size, revenue and CLV of every segment of every segmentation, in one query; an
    audience's customers are counted once however many of its segments they are in."""

    def sums(t: ir.Table, i: int, code: ir.Value) -> ir.Table:
        return t.aggregate(n=t.count(), revenue=t.total_value.sum(), clv=t.clv.sum()).select(
            part=ibis.literal(i, "int32"), code=code, n="n", revenue="revenue", clv="clv"
        )

    parts = []
    for i, b in enumerate(built):
        if b.flags:
            for j in range(len(b.flags)):
                parts.append(
                    sums(labels.filter(labels[_column(i, j)]), i, ibis.literal(j, "int32"))
                )
            anyone = ibis.or_(*[labels[_column(i, j)] for j in range(len(b.flags))])
            parts.append(sums(labels.filter(anyone), i, ibis.literal(-1, "int32")))
        else:
            t = labels.filter(labels[_column(i)].notnull())
            per = t.group_by(code=t[_column(i)]).aggregate(
                n=t.count(), revenue=t.total_value.sum(), clv=t.clv.sum()
            )
            parts.append(
                per.select(
                    part=ibis.literal(i, "int32"), code="code", n="n", revenue="revenue", clv="clv"
                )
            )
    rows = engine.backend.to_pyarrow(ibis.union(*parts)).to_pylist()
    out = [Quality({}, 0, None, None) for _ in built]
    for r in rows:
        q, b = out[r["part"]], built[r["part"]]
        if r["code"] == -1:
            q.customers, q.revenue, q.clv = int(r["n"]), r["revenue"], r["clv"]
        else:
            q.segments[b.labels[r["code"]]] = {"size": int(r["n"]), **r}
    for q, b in zip(out, built, strict=True):
        if not b.flags:  # a partition's customers are its segments' customers
            q.customers = sum(s["size"] for s in q.segments.values())
            q.revenue = _sum([s["revenue"] for s in q.segments.values()])
            q.clv = _sum([s["clv"] for s in q.segments.values()])
    return out


def _sum(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(sum(known)) if known else None


@dataclass
class InSample:
    """A segmentation's segment per row of the sample it is judged on (None outside it),
    and each segment's rows (audiences overlap)."""

    labels: np.ndarray
    data: pa.Table
    members: dict[str, np.ndarray]


def _sample_codes(
    engine: Engine, labels: ir.Table, built: list[Built], sample: pa.Table
) -> list[InSample]:
    """Every segmentation's segments of its sample rows: a fitted clustering's from the fit,
    the others' fetched for the sample's customers in one query."""
    fetched_ones = [i for i, b in enumerate(built) if b.sample_codes is None]
    if fetched_ones:
        ids = engine.upload("_segment_sample_ids", sample.select(["customer_id"]))
        columns = [c for i in fetched_ones for c in _columns(i, built[i])]
        fetched = engine.backend.to_pyarrow(
            labels.semi_join(ids, "customer_id").select("customer_id", *columns)
        )
        where = pc.index_in(sample["customer_id"], fetched["customer_id"]).to_numpy(
            zero_copy_only=False
        )
    out = []
    for i, b in enumerate(built):
        if b.sample_codes is not None and b.sample is not None:
            lab = np.array(b.labels, dtype=object)[b.sample_codes]
            out.append(InSample(lab, b.sample, {name: lab == name for name in set(lab)}))
        elif b.flags:
            members = {
                name: fetched[_column(i, j)].to_numpy(zero_copy_only=False)[where].astype(bool)
                for j, name in enumerate(b.labels)
            }
            lab = np.full(sample.num_rows, None, dtype=object)
            for name, rows in members.items():
                lab[rows] = name
            out.append(InSample(lab, sample, members))
        else:
            codes = pc.fill_null(fetched[_column(i)], len(b.labels)).to_numpy()[where]
            lab = np.array([*b.labels, None], dtype=object)[codes]
            members = {name: lab == name for name in b.labels if (lab == name).any()}
            out.append(InSample(lab, sample, members))
    return out


def _store(
    store: Store,
    built: Built,
    quality: Quality,
    in_sample: InSample,
    slots: dict[str, tuple[int, int]],
    sample: pa.Table,
    space: cluster.ClusterModel | None,
    described_by: tuple[list[str], list[str]],
    cfg: SegmentsConfig,
    stamp: dict[str, str],
    prepared: Prepared,
) -> SegmentationResult:
    """Write the quality of one segmentation: its row, its segments, their distinguishing
    traits, the clustering's diagnostics."""
    spec = built.spec
    labels, data, in_segment = in_sample.labels, in_sample.data, in_sample.members
    silhouettes, overall = _silhouettes(labels, data, built, space, cfg, prepared)
    stability, jaccard = (None, {})
    if built.model is not None and cfg.stability_resamples:
        source = built.sample if built.sample is not None else sample
        ari, per = cluster.stability(source, built.model, cfg.stability_resamples, cfg.seed)
        stability = float(ari)
        jaccard = {built.labels[i]: float(j) for i, j in enumerate(per)}
    described = _describe(labels, data, in_segment, built, described_by, cfg.seed, prepared)
    result = SegmentationResult(
        spec.name,
        spec.model,
        spec.kind,
        built.method,
        spec.origin,
        quality.customers,
        {},
        overall,
        stability,
    )
    result.warnings.extend(built.warnings)
    seg_rows, trait_rows = [], []
    for position, (name, description, rule) in enumerate(built.order, start=1):
        row = quality.segments.get(name, {"size": 0, "revenue": None, "clv": None})
        size = int(row["size"])
        if size == 0 and rule in REST_RULES:
            continue  # nobody in Other / Unknown / the remainder: not a segment
        warning = _warning(
            name, size, total=quality.customers, stability=jaccard.get(name), cfg=cfg
        )
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
                "share_customers": size / quality.customers if quality.customers else None,
                "share_revenue": _share(row["revenue"], quality.revenue),
                "share_clv": _share(row["clv"], quality.clv),
                "silhouette": silhouettes.get(name),
                "stability": jaccard.get(name),
                "warning": warning,
                "slot": slots[name][0],
                "code": slots[name][1],
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
        store,
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
    insert_rows(store, "segments", seg_rows, stamp)
    insert_rows(store, "segment_traits", trait_rows, stamp)
    insert_rows(
        store,
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
    below = [f"min_size {cfg.min_size}"] if size < cfg.min_size else []
    below += [f"min_share {cfg.min_share:.0%}"] if share < cfg.min_share else []
    if below:
        return f"tiny: {size:,} customers ({share:.1%}), below {' and '.join(below)}"
    if stability is not None and stability < cfg.min_stability:
        return (
            f"unstable: bootstrap Jaccard {stability:.2f} is below min_stability "
            f"{cfg.min_stability}"
        )
    return None


def _silhouettes(
    labels: np.ndarray,
    data: pa.Table,
    built: Built,
    space: cluster.ClusterModel | None,
    cfg: SegmentsConfig,
    prepared: Prepared,
) -> tuple[dict[str, float], float | None]:
    """Mean silhouette per segment and overall, on up to cluster.SILHOUETTE_ROWS sample rows, in
    the segmentation's own feature space (clusters) or the default clustering's (rules)."""
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
    lab = labels[rows].astype(str)
    if not 2 <= len(set(lab)) <= len(lab) - 1:
        return {}, None
    key = (id(model), id(data), rows.tobytes())
    if prepared.silhouette is None or prepared.silhouette[0] != key:
        prepared.silhouette = None  # one matrix of distances held at a time
        x = model.transform(data.take(pa.array(rows)))
        prepared.silhouette = (key, cluster.Silhouette(x))
    values = prepared.silhouette[1].samples(lab)
    per = {name: float(values[lab == name].mean()) for name in set(lab)}
    return per, float(values.mean())


def _describe(
    labels: np.ndarray,
    data: pa.Table,
    in_segment: dict[str, np.ndarray],
    built: Built,
    features: tuple[list[str], list[str]],
    seed: int,
    prepared: Prepared,
) -> dict[str, dict[str, Any]]:
    """Distinguishing traits and a proposed name per segment, on up to DESCRIBE_ROWS sample
    rows: a partition's segments against everyone, an audience against everyone too. The
    rows and columns are prepared once per sample and features (`prepared`, shared by the
    run's segmentations)."""
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
    key = (id(data), tuple(numeric), tuple(categorical))
    if key not in prepared.describing:
        taken = data.take(pa.array(rows))
        prepared.describing[key] = cluster.Describing.of(taken, numeric, categorical)
    columns = prepared.describing[key]
    if built.spec.kind == "audiences":
        out = {}
        for name, mask in in_segment.items():
            codes = mask[rows].astype(np.int64)
            if codes.any():
                found = columns.describe(codes, top=DESCRIBE_TOP)
                out[name] = next(d for d in found if int(d["label"]) == 1)
        return out
    names = sorted(in_segment)
    index = {name: i for i, name in enumerate(names)}
    codes = np.array([index.get(x, len(names)) for x in labels[rows]])
    found = columns.describe(codes, top=DESCRIBE_TOP)
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


def _overlap(
    engine: Engine, store: Store, labels: ir.Table, built: list[Built], stamp: dict[str, str]
) -> None:
    """Customers in each pair of segments of every two partitions: one query counts the
    customers of each combination of segments (far fewer rows than customers), and each
    pair's counts are sums over those."""
    partitions = [i for i, b in enumerate(built) if not b.flags]
    if len(partitions) < 2:
        return
    columns = [_column(i) for i in partitions]
    combos = engine.backend.to_pyarrow(labels.group_by(columns).aggregate(n=labels.count()))
    n = combos["n"].to_numpy()
    codes = {
        i: pc.fill_null(combos[_column(i)], len(built[i].labels)).to_numpy().astype(np.int64)
        for i in partitions
    }
    out = []
    for x, i in enumerate(partitions):
        for j in partitions[x + 1 :]:
            width = len(built[j].labels) + 1
            counts = np.bincount(
                codes[i] * width + codes[j], weights=n, minlength=(len(built[i].labels) + 1) * width
            ).reshape(-1, width)
            for a, b in zip(*np.nonzero(counts[:-1, :-1]), strict=True):  # both known
                out.append(
                    {
                        "segmentation_a": built[i].spec.name,
                        "segment_a": built[i].labels[a],
                        "segmentation_b": built[j].spec.name,
                        "segment_b": built[j].labels[b],
                        "customers": int(counts[a, b]),
                    }
                )
    insert_rows(store, "segment_overlap", out, stamp)


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
        "segment_codes",
        "memberships",
        "segment_traits",
        "cluster_diagnostics",
        "segment_overlap",
    ),
    compute=segment,
    uses_engine=True,
)
