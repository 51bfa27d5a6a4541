"""The planted segments of the synthetic data: who they are and how they buy.

Each segment differs from the others in several ways at once (demographics, purchase rate and
lifetime, spend, categories, channel and device, discount use, occasions, survey answers and
feedback themes), so segmentation and persona stages can be scored against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = (
    "grocery",
    "home",
    "electronics",
    "fashion",
    "beauty",
    "books",
    "garden",
    "toys",
    "sports",
    "gifts",
)
CHANNELS = ("web", "app", "store")
DEVICES = ("desktop", "mobile", "tablet")
SURVEY_ITEMS = (
    ("need_price", "need", "Low prices matter most to me when I shop."),
    ("need_quality", "need", "I would pay more for better quality."),
    ("need_convenience", "need", "Fast, easy delivery is essential for me."),
    ("value_sustainability", "value", "I prefer brands that care about the environment."),
    ("value_status", "value", "I like owning the newest, best-known brands."),
    ("benefit_advice", "benefit", "I want expert advice before I buy."),
    ("interest_trends", "interest", "I follow new trends closely."),
    ("interest_family", "interest", "Most of what I buy is for my family."),
)
THEMES = {
    "price": (
        "Prices went up again, too expensive for what it is.",
        "Great deals but the regular price is too high.",
        "I only buy when there is a discount, otherwise it is overpriced.",
    ),
    "delivery": (
        "Delivery was late by several days.",
        "The parcel arrived damaged and late.",
        "Shipping took far too long this time.",
    ),
    "quality": (
        "The product broke after a week, poor quality.",
        "Quality is not what it used to be.",
        "Materials feel cheap for the price.",
    ),
    "service": (
        "Customer service never answered my email.",
        "Support was rude and unhelpful.",
        "I waited on hold for an hour to get help.",
    ),
    "selection": (
        "They never have my size in stock.",
        "Not enough new styles, the range is boring.",
        "The item I wanted was sold out again.",
    ),
    "praise": (
        "Fast delivery and great value, very happy.",
        "Excellent quality, I will buy again.",
        "Friendly staff and a great selection.",
    ),
}


@dataclass(frozen=True)
class Segment:
    """Parameters of one planted segment."""

    name: str
    share: float
    age: tuple[float, float]  # mean, sd
    income: tuple[float, float]  # lognormal mean of log, sd of log
    children: float  # Poisson mean
    female: float
    orders_per_year: float  # mean purchase rate (Gamma heterogeneity)
    rate_shape: float  # Gamma shape r of the purchase rate
    lifetime_days: float  # mean of the exponential lifetime
    basket: float  # mean lines per order
    spend: float  # mean unit-price multiplier (Gamma-Gamma spend)
    categories: tuple[float, ...]  # weights over CATEGORIES
    channels: tuple[float, float, float]  # web, app, store
    devices: tuple[float, float, float]  # desktop, mobile, tablet
    discount: float  # share of lines bought on discount
    occasion: float  # share of orders in occasions (a first order: the customer came in at one)
    weekend: float  # share of orders on weekends
    evening: float  # share of orders 18:00-23:00
    consent: float
    survey: tuple[float, ...]  # mean Likert answer (1..5) per SURVEY_ITEMS
    themes: tuple[float, ...]  # weights over THEMES
    review_rate: float
    b2b: float  # share with a B2B account


SEGMENTS: tuple[Segment, ...] = (
    Segment(
        "Budget Families",
        0.26,
        (41, 7),
        (10.6, 0.3),
        2.2,
        0.62,
        3.2,
        2.0,
        900,
        3.4,
        0.7,
        (5, 4, 1, 2, 1, 0.5, 1, 3, 1, 0.5),
        (0.35, 0.35, 0.30),
        (0.25, 0.65, 0.10),
        0.55,
        0.15,
        0.55,
        0.35,
        0.70,
        (4.6, 2.2, 3.6, 2.6, 1.8, 2.0, 2.2, 4.6),
        (5, 2, 1, 1, 2, 1),
        0.05,
        0.01,
    ),
    Segment(
        "Premium Professionals",
        0.18,
        (42, 8),
        (11.6, 0.35),
        0.8,
        0.45,
        2.0,
        3.0,
        1400,
        2.2,
        2.2,
        (0.5, 2, 5, 3, 1.5, 1, 0.5, 0.3, 1.5, 0.7),
        (0.70, 0.15, 0.15),
        (0.75, 0.20, 0.05),
        0.08,
        0.05,
        0.30,
        0.25,
        0.45,
        (1.8, 4.6, 3.8, 3.2, 3.9, 3.4, 3.0, 2.2),
        (0.5, 2, 4, 4, 1, 1.5),
        0.06,
        0.12,
    ),
    Segment(
        "Young Trend Seekers",
        0.22,
        (24, 3.5),
        (10.1, 0.4),
        0.1,
        0.58,
        5.0,
        1.5,
        450,
        1.8,
        0.6,
        (0.3, 0.5, 2, 5, 4, 0.5, 0.1, 0.2, 2, 1),
        (0.25, 0.65, 0.10),
        (0.10, 0.85, 0.05),
        0.35,
        0.35,
        0.45,
        0.60,
        0.55,
        (3.6, 2.6, 3.4, 3.2, 4.2, 1.8, 4.7, 1.6),
        (2, 2, 1, 1, 5, 1),
        0.08,
        0.0,
    ),
    Segment(
        "Loyal Seniors",
        0.16,
        (68, 6),
        (10.4, 0.3),
        0.0,
        0.55,
        4.5,
        4.0,
        2500,
        2.5,
        1.0,
        (3, 2, 0.5, 0.5, 0.5, 4, 4, 0.8, 0.3, 1),
        (0.20, 0.02, 0.78),
        (0.55, 0.15, 0.30),
        0.12,
        0.05,
        0.20,
        0.08,
        0.80,
        (2.8, 3.8, 2.4, 3.0, 1.6, 4.4, 1.4, 3.4),
        (0.5, 1, 1, 4, 1, 3),
        0.07,
        0.0,
    ),
    Segment(
        "Occasional Gifters",
        0.18,
        (38, 12),
        (10.8, 0.4),
        0.9,
        0.50,
        0.8,
        1.0,
        600,
        1.6,
        1.4,
        (0.2, 1, 2, 1.5, 2, 1.5, 0.3, 2.5, 0.5, 5),
        (0.55, 0.25, 0.20),
        (0.50, 0.45, 0.05),
        0.20,
        0.70,
        0.40,
        0.40,
        0.35,
        (3.0, 3.0, 4.0, 2.4, 2.8, 3.0, 2.6, 3.0),
        (1, 4, 1, 1, 3, 1),
        0.03,
        0.03,
    ),
)
