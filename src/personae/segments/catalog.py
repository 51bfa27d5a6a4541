"""Segmentations, declared once: the ready-made ones and those a user writes in personae.toml
become the same `Segmentation`, which the stage builds, the docs page lists and the report
reuses."""

from __future__ import annotations

from dataclasses import dataclass, field

from personae.config import SegmentationConfig


@dataclass(frozen=True)
class SegmentDef:
    """One rule-based segment."""

    name: str
    rule: str
    description: str = ""


@dataclass(frozen=True)
class Segmentation:
    """A named set of segments: rules (partition or audiences), one segment per value of a
    field (`by`), clusters of features (`method`), or clusters of survey factors (`survey`)."""

    name: str
    model: str
    description: str
    kind: str = "partition"  # partition | audiences
    segments: tuple[SegmentDef, ...] = ()
    remainder: str = "Everyone else"
    by: str | None = None
    top: int = 10
    method: str | None = None  # auto | kmeans | kprototypes | gmm
    features: tuple[str, ...] = ()
    k: int | None = None
    k_range: tuple[int, int] = (2, 8)
    survey: str | None = None  # survey basis (psychographic, needs): factors, then clusters
    origin: str = "ready-made"
    fields: tuple[str, ...] = field(default=())  # what it needs; empty: from the rules
    names: tuple[tuple[str, str], ...] = ()  # a person's names for segments (e.g. clusters)

    @property
    def way(self) -> str:
        """rules, by_field, clusters or survey."""
        if self.survey:
            return "survey"
        if self.method:
            return "clusters"
        return "by_field" if self.by else "rules"


def from_config(name: str, cfg: SegmentationConfig) -> Segmentation:
    """A `[segmentations.NAME]` section as a declaration."""
    return Segmentation(
        name=name,
        model=cfg.model,
        description=cfg.description,
        kind=cfg.kind,
        segments=tuple(SegmentDef(s.name, s.rule, s.description) for s in cfg.segments),
        remainder=cfg.remainder,
        by=cfg.by,
        top=cfg.top,
        method=cfg.method or ("auto" if cfg.features or cfg.k else None),
        features=tuple(cfg.features),
        k=cfg.k,
        k_range=(cfg.k_min, cfg.k_max),
        origin="config",
        names=tuple(cfg.names.items()),
    )


def _by(name: str, model: str, field_name: str, description: str, top: int = 10) -> Segmentation:
    return Segmentation(name, model, description, by=field_name, top=top)


def _tiers(
    name: str, model: str, rank: str, description: str, labels: tuple[str, str, str]
) -> Segmentation:
    top, middle, rest = labels
    return Segmentation(
        name,
        model,
        description,
        segments=(
            SegmentDef(top, f"{rank} < 0.2", f"The top 20% by {rank.removesuffix('_rank')}."),
            SegmentDef(middle, f"{rank} < 0.5", "The next 30%."),
        ),
        remainder=rest,
        fields=(rank,),
    )


OCCASION_SHARE = 0.25  # an occasion shopper makes at least this share of orders in it

READY_MADE: tuple[Segmentation, ...] = (
    # demographic -----------------------------------------------------------------------
    _by("age_band", "demographic", "age_band", "Age bands (under 18, 18-24, ..., 65+)."),
    _by("gender", "demographic", "gender", "Gender as given."),
    Segmentation(
        "income_band",
        "demographic",
        "Income quintiles among customers with an income.",
        segments=(
            SegmentDef("Top 20% income", "income_quintile = 5"),
            SegmentDef("Upper-middle income", "income_quintile = 4"),
            SegmentDef("Middle income", "income_quintile = 3"),
            SegmentDef("Lower-middle income", "income_quintile = 2"),
            SegmentDef("Lowest 20% income", "income_quintile = 1"),
        ),
        remainder="Income unknown",
    ),
    Segmentation(
        "household",
        "demographic",
        "Households with children, shared households and people living alone.",
        segments=(
            SegmentDef("Families with children", "children > 0"),
            SegmentDef("Shared households", "household_size >= 2"),
            SegmentDef("Living alone", "household_size = 1"),
            SegmentDef("No children", "children = 0"),
        ),
        remainder="Household unknown",
    ),
    # geographic ------------------------------------------------------------------------
    _by("country", "geographic", "country", "The ten countries with most customers, then Other."),
    _by("region", "geographic", "region", "The ten regions with most customers, then Other."),
    _by("city", "geographic", "city", "The ten cities with most customers, then Other."),
    # value-based -----------------------------------------------------------------------
    _tiers(
        "value_tiers",
        "value-based",
        "value_rank",
        "Tiers by value: predicted CLV where the purchase model gives it, else total past "
        "value (value_rank); each tier's share of value is in its quality figures.",
        ("Top 20%", "Next 30%", "Rest"),
    ),
    # behavioural -----------------------------------------------------------------------
    _by(
        "rfm", "behavioural", "rfm_segment", "Named RFM cells (Champions, Loyal, At Risk, ...).", 20
    ),
    _by("lifecycle", "behavioural", "lifecycle_stage", "Lifecycle stage.", 20),
    _tiers(
        "engagement",
        "behavioural",
        "engagement_rank",
        "Engagement tiers by the engagement score (events, recency-weighted).",
        ("Highly engaged", "Engaged", "Little engaged"),
    ),
    _by("discount_sensitivity", "behavioural", "discount_sensitivity", "Discount sensitivity."),
    # occasion --------------------------------------------------------------------------
    Segmentation(
        "occasion_shoppers",
        "occasion",
        f"Holiday and event shoppers: at least {OCCASION_SHARE:.0%} of their orders in the "
        "occasion (overlapping audiences).",
        kind="audiences",
        segments=(
            SegmentDef("Christmas shoppers", f"christmas_share >= {OCCASION_SHARE}"),
            SegmentDef("Black Friday shoppers", f"black_friday_share >= {OCCASION_SHARE}"),
            SegmentDef("Valentine's shoppers", f"valentines_share >= {OCCASION_SHARE}"),
            SegmentDef("Back-to-school shoppers", f"back_to_school_share >= {OCCASION_SHARE}"),
            SegmentDef("Birthday shoppers", f"birthday_month_share >= {OCCASION_SHARE}"),
            SegmentDef("Weekend shoppers", "weekend_share >= 0.6"),
        ),
    ),
    # technographic ---------------------------------------------------------------------
    _by("device", "technographic", "main_device", "Main device."),
    _by("os", "technographic", "main_os", "Main operating system."),
    # firmographic ----------------------------------------------------------------------
    _by("industry", "firmographic", "account_industry", "Industry of the customer's account."),
    Segmentation(
        "company_size",
        "firmographic",
        "Employee bands of the customer's account.",
        segments=(
            SegmentDef("Enterprise (1000+)", "account_employees >= 1000"),
            SegmentDef("Mid-market (100-999)", "account_employees >= 100"),
            SegmentDef("Small (10-99)", "account_employees >= 10"),
            SegmentDef("Micro (1-9)", "account_employees >= 0"),
        ),
        remainder="Size unknown",
    ),
    Segmentation(
        "company_revenue",
        "firmographic",
        "Revenue bands of the customer's account.",
        segments=(
            SegmentDef("Revenue 50M+", "account_revenue >= 50000000"),
            SegmentDef("Revenue 10M-50M", "account_revenue >= 10000000"),
            SegmentDef("Revenue 1M-10M", "account_revenue >= 1000000"),
            SegmentDef("Revenue under 1M", "account_revenue >= 0"),
        ),
        remainder="Revenue unknown",
    ),
    # attitudinal -----------------------------------------------------------------------
    _by(
        "satisfaction",
        "attitudinal",
        "rating_band",
        "Bands of the customer's mean feedback rating.",
    ),
    # psychographic and needs-based: factors of survey answers, then clusters -----------
    Segmentation(
        "psychographic",
        "psychographic",
        "Clusters of the factor scores of every numeric survey item; each factor named by "
        "its top items.",
        survey="psychographic",
    ),
    Segmentation(
        "needs",
        "needs-based",
        "Clusters of factor scores of the need and benefit items of the survey.",
        survey="needs",
    ),
    # the data reveals ------------------------------------------------------------------
    Segmentation(
        "clusters",
        "behavioural",
        "Clusters of the customers' traits (features chosen from the traits, categories "
        "one-hot encoded; k chosen by silhouette and BIC).",
        method="kmeans",
    ),
)

READY_MADE_NAMES = tuple(s.name for s in READY_MADE)
