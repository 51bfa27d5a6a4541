"""personae.toml: pydantic models for every setting, loading with clear errors, and writing.

Every setting has a default that works on the demo data; `docs/configuration.md` documents each
one and a test fails when a setting is undocumented.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal, get_args

import tomlkit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from personae.errors import ConfigError, closest
from personae.models import PURCHASE_MODELS

CONFIG_NAME = "personae.toml"
# The buying-journey stages, in order: [traits] journey maps event types to them.
JOURNEY_STAGES = (
    "need_recognition",
    "information_search",
    "evaluation",
    "purchase",
    "repeat_advocacy",
)
TableName = Literal["customers", "orders", "events", "responses", "feedback", "accounts"]
FileFormat = Literal["auto", "csv", "whitespace", "parquet", "jsonl", "xlsx"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StoreConfig(_Section):
    """Where the store lives and which engine computes on it."""

    path: str = Field(
        ".personae/personae.duckdb",
        description="The DuckDB file of the store, relative to the folder of personae.toml.",
    )
    engine: Literal["duckdb", "spark"] = Field(
        "duckdb", description="Engine for table work: duckdb (embedded, default) or spark."
    )
    spark_master: str = Field("local[*]", description="Spark master URL when engine = spark.")
    warehouse: str = Field(
        ".personae/warehouse",
        description="Where Spark reads the tables handed to it and writes its results, as "
        "Parquet (engine = spark only): a folder, relative to personae.toml, that the driver "
        "and every executor can read and write at the same path (a shared mount on a "
        "cluster), or a Hadoop URI passed to Spark unchanged (hdfs://..., s3a://..., "
        "file://...). Each run's files are removed when it ends. See docs/scaling.md.",
    )
    keep_runs: int = Field(
        3,
        ge=1,
        description="Stage runs whose outputs (traits, predictions, ...) are kept per stage; "
        "older runs' rows are deleted, except runs the latest ones read. The run ledger "
        "keeps every run.",
    )
    memory_limit: str = Field(
        "40%",
        description="DuckDB memory limit, a share of the machine's memory (40%) or a size "
        "(4GB, 512MB, 1.5GiB; at least 64MB); larger work spills to disk, into a folder "
        "beside the store. The default leaves the rest of the memory to model fits, the "
        "Python side of the stages and other programs.",
    )
    threads: int | None = Field(None, description="DuckDB threads; empty means all cores.")

    @field_validator("memory_limit")
    @classmethod
    def _memory_size(cls, value: str) -> str:
        """A size DuckDB reads, checked here so that a bad value is an error naming the
        setting (it is passed to DuckDB as a configuration value, never as SQL text)."""
        size = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt])(ib|b)?\s*", value, re.I)
        share = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value)
        if size:
            power = "kmgt".index(size[2].lower()) + 1
            nbytes = float(size[1]) * (1024 if (size[3] or "").lower() == "ib" else 1000) ** power
            if nbytes >= 64e6:
                return value
        elif share and 0 < float(share[1]) <= 100:
            return value
        raise ValueError(
            f"memory_limit must be a size of at least 64MB such as 4GB, 512MB or 1.5GiB, or a "
            f"percentage of the machine's memory from 1% to 100% such as 80%, not '{value}'"
        )


class DerivedEvent(_Section):
    """An event written for every ingested row that has a value in a date column."""

    event_type: str = Field(description="The event type to write, e.g. lead_created.")
    at: str = Field(description="Source column holding when the event happened.")


class SourceConfig(_Section):
    """One source: a file or a database table/query, the canonical table it feeds, its mapping."""

    table: TableName = Field(description="Canonical table the source feeds.")
    path: str | None = Field(
        None,
        description="File to read (CSV/TSV/whitespace text, gzip, "
        "Parquet, JSON lines, Excel .xlsx), relative to personae.toml.",
    )
    url: str | None = Field(
        None,
        description="Database URL instead of a file: "
        "duckdb:///file.duckdb, sqlite:///file.db or postgresql://...",
    )
    query: str | None = Field(None, description="SQL query to run against `url`.")
    source_table: str | None = Field(
        None, description="Table to read from `url` (instead of query)."
    )
    format: FileFormat = Field(
        "auto", description="File format; auto sniffs it from the content and name."
    )
    encoding: str = Field(
        "auto",
        description="Text encoding: auto (UTF-8, UTF-16, else the single-byte code page the "
        "text reads best in: latin-1, cp1252, cp1250 or iso-8859-15), or any encoding name "
        "Python knows.",
    )
    delimiter: str | None = Field(
        None, description="Field separator of a text file; empty means sniffed."
    )
    header: bool | None = Field(
        None, description="Whether the first line names the columns; empty means sniffed."
    )
    sheet: str | None = Field(None, description="Excel sheet name; empty means the first.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Source column -> "
        "canonical column. Unmapped source columns go to "
        "`attributes`.",
    )
    date_formats: dict[str, str] = Field(
        default_factory=dict, description="Source column -> strptime format, e.g. '%m/%d/%Y %H:%M'."
    )
    ranges: dict[str, list[float]] = Field(
        default_factory=dict,
        description="Source column -> "
        "[low, high]; values outside are nulled and "
        "reported as out_of_range.",
    )
    scale: dict[str, float] = Field(
        default_factory=dict,
        description="Source column -> factor its numbers are multiplied by, e.g. 1000 for k$.",
    )
    decimal: Literal[".", ","] = Field(
        ".",
        description="Decimal mark of the numbers: '.' (12.34) or ',' (12,34, with '.' or a "
        "space between thousands: 1.234,56), as European spreadsheets write them.",
    )
    earliest_date: date = Field(
        date(1900, 1, 1),
        description="Dates and timestamps (other than birth dates) before this day are "
        "out_of_range: the value is nulled, or the row rejected when the date is required.",
    )
    latest_date: date | None = Field(
        None,
        description="Dates and timestamps (other than birth dates) after this day are "
        "out_of_range; empty means one day after the day of the ingest.",
    )
    earliest_birth_date: date = Field(
        date(1910, 1, 1),
        description="Birth dates before this day, or after the day of the ingest, are "
        "out_of_range (the same window as birth_year).",
    )
    id_pattern: str | None = Field(
        None,
        description="Regular expression every id of the table's key (e.g. order_id of an "
        "orders source) must match; others are rejected as bad_id.",
    )
    constants: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical column -> value written on every row, e.g. channel = 'social'.",
    )
    currency: str | None = Field(None, description="Currency of the amounts (orders), e.g. GBP.")
    non_product_codes: list[str] | None = Field(
        None,
        description="Product codes that are "
        "postage, fees or adjustments (orders); "
        "compared case-insensitively. Empty means the "
        "built-in list.",
    )
    cancel_pattern: str | None = Field(
        None,
        description="Regular expression on order_id that "
        "marks a cancelled order (orders), e.g. '^C'.",
    )
    cancel_statuses: list[str] | None = Field(
        None,
        description="Values of the order status column (mapped to `status`) that mean the "
        "line was cancelled or returned (orders), compared case-insensitively; such lines "
        "are is_return. Empty means the built-in list: cancelled, canceled, returned, "
        "refunded, voided, rejected, reversed and the like.",
    )
    orders_without_id: Literal["basket", "line"] = Field(
        "basket",
        description="When no column is mapped to order_id (orders): basket makes the lines "
        "of one customer with the same ordered_at one order; line makes every line its own "
        "order.",
    )
    row_ids: bool = Field(
        False,
        description="Number the rows as ids when the source has no id column (e.g. one row "
        "per customer without a customer id): the key becomes '<source name>-<row>'. Such ids "
        "cannot be joined with other sources and change when rows are added above.",
    )
    wide_spend: dict[str, str] = Field(
        default_factory=dict,
        description="Per-customer spend "
        "column -> category; each becomes an order line "
        "(customers sources).",
    )
    spend_date: str | None = Field(
        None, description="Date the wide_spend totals are recorded at (YYYY-MM-DD)."
    )
    duplicates: Literal["auto", "reject", "keep"] = Field(
        "auto",
        description="Exact copies of an earlier row: reject, keep, or auto (reject "
        "when the source has an id for the table's key, keep when it has none, since identical "
        "lines without an id can be separate purchases).",
    )
    mode: Literal["refresh", "append", "update"] | None = Field(
        None,
        description="refresh: when the file or these settings change, the source's rows are "
        "replaced; append: each new file adds rows; update: fills in empty values of rows "
        "whose key exists (other rows are added). Empty means refresh for a file or table and "
        "append for a folder or glob.",
    )
    overwrite: bool = Field(
        False,
        description="With mode = update: replace existing values too, not only empty ones.",
    )
    events: list[DerivedEvent] = Field(
        default_factory=list, description="Events to derive from date columns of this source."
    )

    @model_validator(mode="after")
    def _one_origin(self) -> SourceConfig:
        if bool(self.path) == bool(self.url):
            raise ValueError("give exactly one of `path` (a file) or `url` (a database)")
        if self.url and not (self.query or self.source_table):
            raise ValueError("a database source needs `query` or `source_table`")
        return self


class TraitsConfig(_Section):
    """How customer traits are computed."""

    @model_validator(mode="after")
    def _check_maps(self) -> TraitsConfig:
        for name, days in self.occasions.items():
            if len(days) != 2 or not all(re.fullmatch(r"\d\d-\d\d", d) for d in days):
                raise ValueError(f'occasions.{name} must be ["MM-DD", "MM-DD"], got {days}')
        unknown = set(self.journey) - set(JOURNEY_STAGES)
        if unknown:
            raise ValueError(
                f"journey has unknown stages {sorted(unknown)}; use {', '.join(JOURNEY_STAGES)}"
            )
        return self

    as_of: date | None = Field(
        None,
        description="Date the traits describe (YYYY-MM-DD); "
        "nothing after it is read. Empty means the last order date.",
    )
    time_unit: Literal["days", "weeks"] = Field(
        "days", description="Unit of recency and T: days, or weeks (days / 7)."
    )
    currency: str | None = Field(
        None,
        description="Currency of the money traits; lines in other currencies still count as "
        "purchases but their amounts are left out. Empty means the most common currency.",
    )
    online_channels: list[str] = Field(
        default_factory=lambda: ["web", "app", "online", "mobile", "ecommerce", "email"],
        description="Channel values that count as online in online_share (case-insensitive).",
    )
    bargain_hunter_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="discounted_line_share at or above which a customer is a bargain hunter.",
    )
    full_price_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="discounted_line_share at or below which a customer buys at full price.",
    )
    engagement_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "page_view": 1.0,
            "search": 1.0,
            "product_view": 2.0,
            "add_to_cart": 3.0,
            "checkout": 4.0,
            "email_open": 1.0,
            "email_click": 2.0,
            "review": 3.0,
        },
        description="Points per event type in engagement_score.",
    )
    occasions: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "christmas": ["12-01", "12-24"],
            "valentines": ["02-01", "02-14"],
            "back_to_school": ["08-01", "09-15"],
        },
        description='Yearly occasions as name = ["MM-DD", "MM-DD"] (first and last day). '
        "Black Friday (to Cyber Monday) is built in.",
    )
    journey: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "need_recognition": ["page_view", "ad_click", "email_open", "social_visit"],
            "information_search": ["search", "email_click", "category_view"],
            "evaluation": ["product_view", "add_to_cart", "compare", "review_read", "wishlist"],
            "purchase": ["checkout", "purchase"],
            "repeat_advocacy": ["review", "referral", "share"],
        },
        description="Buying-journey stage -> event types that show it. A purchase day also "
        "reaches purchase, a second one repeat_advocacy.",
    )
    engagement_half_life_days: float = Field(
        30.0,
        gt=0,
        description="An event's points halve every this many days before the as-of date.",
    )


class LifecycleConfig(_Section):
    """Lifecycle stages measured against each customer's own purchase rhythm."""

    at_risk_factor: float = Field(
        1.5,
        gt=0,
        description="At risk when days since the last "
        "purchase exceed this many expected intervals.",
    )
    lapsed_factor: float = Field(
        3.0,
        gt=0,
        description="Lapsed when days since the last "
        "purchase exceed this many expected intervals; reactivated "
        "when the last gap did and the customer bought again.",
    )
    min_repeats: int = Field(
        2,
        ge=1,
        description="Repeats a customer needs before their own "
        "median interval is their rhythm (else the population median).",
    )


DEFAULT_RFM_SEGMENTS: dict[str, str] = {
    "Champions": "^5[4-5]$",
    "Loyal": "^[3-4][4-5]$",
    "Cannot Lose Them": "^[1-2]5$",
    "At Risk": "^[1-2][3-4]$",
    "Lost": "^11$",
    "Hibernating": "^[1-2][1-2]$",
    "About to Sleep": "^3[1-2]$",
    "Need Attention": "^33$",
    "Potential Loyalist": "^[4-5][2-3]$",
    "Promising": "^41$",
    "New Customers": "^51$",
}


class RFMConfig(_Section):
    """RFM scoring: quantile bins, weights, direction and the named segment map."""

    bins: int = Field(5, ge=2, le=10, description="Number of score bins (scores 1..bins).")
    weights: dict[str, float] = Field(
        default_factory=lambda: {"r": 1.0, "f": 1.0, "m": 1.0},
        description="Weights of the R, F and M scores in rfm_score.",
    )
    recency_higher_is_better: bool = Field(
        False,
        description="Score recency so that more "
        "days since the last purchase score higher "
        "(default: fewer days score higher).",
    )
    segments: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_RFM_SEGMENTS),
        description="Segment name -> regular expression on the two digits 'RF' (recency "
        "score, frequency score); the first match wins. The default map needs bins = 5.",
    )

    @model_validator(mode="after")
    def _known_weights(self) -> RFMConfig:
        unknown = set(self.weights) - {"r", "f", "m"}
        if unknown:
            raise ValueError(f"weights takes the keys r, f and m, not {sorted(unknown)}")
        return self


class PredictConfig(_Section):
    """Predicted traits: the purchase model, the horizon, CLV discounting and churn bands."""

    model: str = Field(
        "auto",
        description="Purchase model: auto, or one of "
        + ", ".join(PURCHASE_MODELS)
        + "; auto picks the one with the lowest holdout error (per-customer mean absolute "
        "error of repeat purchases).",
    )

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value != "auto" and value not in PURCHASE_MODELS:
            raise ValueError(
                f"model must be auto or one of {', '.join(PURCHASE_MODELS)}, not '{value}'"
            )
        return value

    horizon: float = Field(
        12.0, gt=0, description="How far ahead expected purchases and CLV look, in horizon_unit."
    )
    horizon_unit: Literal["days", "weeks", "months", "years"] = Field(
        "months",
        description="Unit of horizon; converted explicitly to the traits' time "
        "unit (a month is 30.4375 days).",
    )
    discount_rate: float = Field(0.10, ge=0, description="Yearly discount rate of CLV.")
    calibration_end: date | None = Field(
        None,
        description="End of the calibration period of the model comparison; empty "
        "means the as-of date minus a quarter of the history.",
    )
    churn_high_below: float = Field(
        0.3, ge=0, le=1, description="P(alive) below which churn risk is high."
    )
    churn_medium_below: float = Field(
        0.7, ge=0, le=1, description="P(alive) below which churn risk is medium (else low)."
    )
    min_history_days: int = Field(
        90,
        ge=1,
        description="With a shorter history (first "
        "order to as-of date) predictions fall back to RFM.",
    )
    min_repeat_buyers: int = Field(
        200,
        ge=1,
        description="With fewer repeat buyers the "
        "models are not fitted and predictions fall back to RFM.",
    )
    penalizer: float = Field(
        0.0,
        ge=0,
        description="Weakly informative prior on the purchase and spend models' shapes: "
        "penalizer x the sum of squared logs of the unit-free parameters (shapes, and Pareto/NBD's "
        "beta/alpha), a normal prior of standard deviation 1/sqrt(2 penalizer) on each log, the "
        "same in any time unit. 0 is maximum likelihood (an estimate at the no-dropout edge is "
        "then the NBD limit); 0.1 makes fits the data do not identify return.",
    )
    clv_interval_draws: int = Field(
        0,
        ge=0,
        description="Parameter draws for a 90% interval of CLV (clv_low, clv_high) from the "
        "purchase model's covariance; 0 turns it off and leaves them NULL (each draw costs "
        "one scoring pass).",
    )


SEGMENT_MODELS = (
    "demographic",
    "geographic",
    "psychographic",
    "technographic",
    "behavioural",
    "needs-based",
    "value-based",
    "firmographic",
    "occasion",
    "benefit",
    "attitudinal",
    "custom",
)
CLUSTER_METHODS = ("auto", "kmeans", "kprototypes", "gmm")


class SegmentRule(_Section):
    """One segment of a rule-based segmentation: a name and a boolean rule over fields."""

    name: str = Field(description="Segment name, e.g. Young urban families.")
    rule: str = Field(
        description="Boolean expression over traits, predictions and attributes, e.g. "
        "\"age between 25 and 34 and churn_risk != 'high'\" (docs/segments.md, Rule language)."
    )
    description: str = Field("", description="What the segment is, for people.")


class SegmentationConfig(_Section):
    """A segmentation of your own: rules (`[[segmentations.NAME.segments]]`), one segment per
    value of a field (`by`), or clusters of chosen traits (`method`, `features`)."""

    description: str = Field("", description="What the segmentation is for.")
    model: Literal[SEGMENT_MODELS] = Field(  # type: ignore[valid-type]
        "custom", description="Segmentation model: " + ", ".join(SEGMENT_MODELS) + "."
    )
    kind: Literal["partition", "audiences"] = Field(
        "partition",
        description="partition: ordered segments, the first matching rule wins and the rest "
        "go to `remainder`; audiences: overlapping segments, a customer is in every segment "
        "whose rule matches.",
    )
    segments: list[SegmentRule] = Field(
        default_factory=list, description="The segments and their rules, in order."
    )
    remainder: str = Field(
        "Everyone else", description="Segment of the customers no rule matches (partition)."
    )
    by: str | None = Field(
        None, description="A field whose values are the segments (e.g. country)."
    )
    top: int = Field(
        10, ge=1, description="With `by`: the most common values; the others go to Other."
    )
    method: Literal[CLUSTER_METHODS] | None = Field(  # type: ignore[valid-type]
        None,
        description="Clustering: auto (k-means, or k-prototypes with categorical features), "
        "kmeans, kprototypes or gmm (Gaussian mixture).",
    )
    features: list[str] = Field(
        default_factory=list,
        description="Clustering features (fields); empty means chosen from the traits.",
    )
    k: int | None = Field(
        None, ge=2, description="Number of clusters; empty means chosen over k_min..k_max."
    )
    k_min: int = Field(2, ge=2, description="Smallest number of clusters tried.")
    k_max: int = Field(8, ge=2, description="Largest number of clusters tried.")
    names: dict[str, str] = Field(
        default_factory=dict,
        description='Names of your choosing for segments, e.g. {"Cluster 1" = "Loyal '
        'regulars"} (`personae segments show NAME` proposes names from what sets each cluster '
        "apart). Alone in the section of a ready-made segmentation, it renames that one's "
        "segments.",
    )

    @property
    def names_only(self) -> bool:
        """Only `names`: renames the segments of the ready-made segmentation of this name."""
        return bool(self.names) and self.model_fields_set <= {"names", "description", "model"}

    @model_validator(mode="after")
    def _one_definition(self) -> SegmentationConfig:
        twice = given_twice(list(self.names.values()))
        if twice:
            raise ValueError(f"names must differ: {', '.join(twice)} given twice")
        if self.names_only:
            return self
        clustering = self.method is not None or bool(self.features) or self.k is not None
        given = [
            n
            for n, on in (
                ("segments", bool(self.segments)),
                ("by", bool(self.by)),
                ("method/features", clustering),
            )
            if on
        ]
        if len(given) != 1:
            raise ValueError(
                "define the segments one way: [[segmentations.NAME.segments]] rules, `by` a "
                "field, or clustering with `method`/`features`"
                + (f" (this one gives {' and '.join(given)})" if given else "")
            )
        if self.k_min > self.k_max:
            raise ValueError(f"k_min ({self.k_min}) is above k_max ({self.k_max})")
        names = [s.name for s in self.segments] + ([self.remainder] if self.segments else [])
        twice = given_twice(names)
        if twice:
            raise ValueError(
                f"segment names (and the remainder) must differ: {', '.join(twice)} given twice"
            )
        return self


def given_twice(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted({n for n in names if names.count(n) > 1})


class SegmentsConfig(_Section):
    """The segments stage: ready-made segmentations, sampling, stability and warnings."""

    ready_made: bool | list[str] = Field(
        True,
        description="Build the ready-made segmentations the data has fields for (true), none "
        "(false), or only those named (docs/segments.md lists them).",
    )
    sample: int = Field(
        200_000,
        ge=100,
        description="Customers in the sample that clusterings are fitted on and separation is "
        "measured on; everyone is then assigned in the engine.",
    )
    seed: int = Field(0, description="Seed of sampling, clustering and resampling.")
    stability_resamples: int = Field(
        5, ge=0, description="Bootstrap refits for the stability of clusterings (0: off)."
    )
    min_share: float = Field(
        0.01, ge=0, le=1, description="Segments below this share of customers get a warning."
    )
    min_size: int = Field(30, ge=0, description="Segments with fewer customers get a warning.")
    min_stability: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Clusterings (adjusted Rand index) and clusters (Jaccard) below this "
        "bootstrap stability get a warning.",
    )


class Config(_Section):
    """The whole personae.toml."""

    store: StoreConfig = Field(default_factory=StoreConfig)
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    traits: TraitsConfig = Field(default_factory=TraitsConfig)
    rfm: RFMConfig = Field(default_factory=RFMConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    segments: SegmentsConfig = Field(default_factory=SegmentsConfig)
    segmentations: dict[str, SegmentationConfig] = Field(default_factory=dict)


# Every section of personae.toml and the model that validates it, in file order: the docs
# page and its test are generated from this list.
SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("[store]", StoreConfig),
    ("[sources.NAME]", SourceConfig),
    ("[[sources.NAME.events]]", DerivedEvent),
    ("[traits]", TraitsConfig),
    ("[rfm]", RFMConfig),
    ("[lifecycle]", LifecycleConfig),
    ("[predict]", PredictConfig),
    ("[segments]", SegmentsConfig),
    ("[segmentations.NAME]", SegmentationConfig),
    ("[[segmentations.NAME.segments]]", SegmentRule),
)


def _explain(err: ValidationError, path: Path) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            parent: type[BaseModel] = Config
            for part in e["loc"][:-1]:
                if isinstance(part, int):
                    continue  # an item of a list of sections
                field = parent.model_fields.get(str(part))
                ann = field.annotation if field else None
                # a section (a model), or a table of named sections / list of sections
                for inner in (ann, *get_args(ann)):
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        parent = inner
            hint = closest(str(e["loc"][-1]), parent.model_fields)
            lines.append(f"  {loc}: unknown setting.{hint}")
        else:
            lines.append(f"  {loc}: {e['msg']}")
    return (
        f"{path}: invalid configuration:\n"
        + "\n".join(lines)
        + ("\nFix the setting and run again; `docs/configuration.md` lists every setting.")
    )


def parse_config(data: dict[str, Any], path: Path, origin: str | None = None) -> Config:
    """Validate settings; `origin` names where an override came from (e.g. `--engine`)."""
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        message = _explain(err, path)
        if origin:
            message = f"{origin} (overriding {path.name}): " + message.split(":\n", 1)[1].strip()
        raise ConfigError(message) from None


def load_config(path: Path) -> Config:
    """Read and validate a personae.toml; errors name the file and the setting."""
    if not path.exists():
        raise ConfigError(
            f"{path} not found. Run `personae init FILE...` to write one, or pass --project FOLDER."
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err}). Fix the line it names.") from None
    return parse_config(data, path)


HEADER = """\
# personae project configuration. Every setting is documented in docs/configuration.md.
# Edit the mappings below, then run `personae ingest`.
"""


def source_toml(name: str, src: SourceConfig, notes: list[str], unmapped: list[str]) -> Any:
    """A commented TOML table for one source, as `personae init` writes it."""

    table = tomlkit.table()
    for note in notes:
        table.add(tomlkit.comment(note))
    data = src.model_dump(exclude_defaults=True, exclude_none=True)
    for key, value in data.items():
        if isinstance(value, dict):
            continue
        table.add(key, value)
    table.add(
        tomlkit.comment(
            'constants = { channel = "web" }   # values written on every row, if useful'
        )
    )
    for key in ("columns", "date_formats", "ranges", "scale", "wide_spend", "constants"):
        if data.get(key):
            sub = tomlkit.table()
            if key == "columns":
                sub.add(tomlkit.comment("source column = canonical column"))
                if unmapped:
                    sub.add(
                        tomlkit.comment("kept as attributes (unmapped): " + ", ".join(unmapped))
                    )
            for k, v in data[key].items():
                sub.add(k, v)
            table.add(key, sub)
    return table


def add_sources(
    path: Path,
    store: StoreConfig | None,
    sources: list[tuple[str, SourceConfig, list[str], list[str]]],
) -> None:
    """Write personae.toml, or add sources to an existing one keeping its edits."""

    if path.exists():
        doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    else:
        doc = tomlkit.document()
        for line in HEADER.splitlines():
            doc.add(tomlkit.comment(line.lstrip("# ")))
        st = tomlkit.table()
        for key, value in (store or StoreConfig()).model_dump(exclude_none=True).items():
            st.add(key, value)
        doc.add("store", st)
    if "sources" not in doc:
        doc.add("sources", tomlkit.table(is_super_table=True))
    for name, src, notes, unmapped in sources:
        doc["sources"][name] = source_toml(name, src, notes, unmapped)
    text = tomlkit.dumps(doc)
    parse_config(tomllib.loads(text), path)  # never write a config we cannot read back
    path.write_text(text, encoding="utf-8")
