"""Traits recover the truth planted in synthetic data: segments differ where they were made
to differ."""

from __future__ import annotations

import pytest

from personae import Project
from personae.synth import generate


@pytest.fixture(scope="module")
def by_segment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    root = tmp_path_factory.mktemp("planted")
    generate(root, customers=3000, seed=8)
    project = Project.open(root)
    project.ingest()
    run = project.traits().run_id
    truth = root / "truth" / "customers_truth.parquet"
    with project.store(read_only=True) as store:
        cur = store.con.execute(
            f"""SELECT s.segment,
                   avg(t.age) AS age,
                   avg(t.online_share) AS online,
                   avg((t.discount_sensitivity = 'bargain hunter')::INT) AS bargain,
                   avg((t.main_device = 'mobile')::INT) AS mobile,
                   avg(t.discounted_line_share) AS discounted,
                   avg(t.children) AS children,
                   avg(t.frequency) AS frequency,
                   avg((t.top_category = 'gifts')::INT) AS gifts,
                   avg(t.occasion_share) AS occasion
            FROM traits t JOIN read_parquet('{truth}') s USING (customer_id)
            WHERE t.run_id = ? GROUP BY 1""",
            [run],
        )
        names = [d[0] for d in cur.description]
        return {r[0]: dict(zip(names[1:], r[1:], strict=True)) for r in cur.fetchall()}


def test_demographics(by_segment: dict[str, dict[str, float]]) -> None:
    assert by_segment["Loyal Seniors"]["age"] > 60 > 30 > by_segment["Young Trend Seekers"]["age"]
    assert by_segment["Budget Families"]["children"] > 1.5 > by_segment["Loyal Seniors"]["children"]


def test_behaviour_and_technographics(by_segment: dict[str, dict[str, float]]) -> None:
    seg = by_segment
    # planted store share: seniors 78 %, trend seekers 10 %
    assert seg["Loyal Seniors"]["online"] < 0.35 < 0.8 < seg["Young Trend Seekers"]["online"]
    # planted discount use: families 55 % of lines, professionals 8 %
    assert (
        seg["Budget Families"]["discounted"]
        > 0.45
        > 0.15
        > seg["Premium Professionals"]["discounted"]
    )
    assert seg["Budget Families"]["bargain"] > seg["Premium Professionals"]["bargain"]
    # planted devices: trend seekers 85 % mobile, professionals 20 %
    assert (
        seg["Young Trend Seekers"]["mobile"] > 0.7 > 0.35 > seg["Premium Professionals"]["mobile"]
    )
    assert seg["Occasional Gifters"]["gifts"] > max(
        v["gifts"] for k, v in seg.items() if k != "Occasional Gifters"
    )
    assert seg["Loyal Seniors"]["frequency"] > seg["Occasional Gifters"]["frequency"]


def test_occasions(by_segment: dict[str, dict[str, float]]) -> None:
    """Planted share of orders in occasions: gifters 70 %, trend seekers 35 %, families 15 %,
    professionals and seniors 5 %; the traits' windows (88 days a year) hold about a quarter
    of the rest."""
    occasion = {k: v["occasion"] for k, v in by_segment.items()}
    assert occasion["Occasional Gifters"] > 0.65 > occasion["Young Trend Seekers"]
    assert occasion["Young Trend Seekers"] > 0.4 > occasion["Budget Families"]
    assert occasion["Budget Families"] > max(
        occasion["Premium Professionals"], occasion["Loyal Seniors"]
    )
    assert max(occasion["Premium Professionals"], occasion["Loyal Seniors"]) < 0.35
