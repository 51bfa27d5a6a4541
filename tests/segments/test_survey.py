"""Psychographic and needs-based segmentation from survey answers; attitudinal bands."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from personae import Project
from personae.errors import ConfigError
from personae.segments import survey as sv
from personae.synth import generate


def _project(root: Path, customers: int, seed: int) -> Project:
    generate(root, customers=customers, seed=seed)
    project = Project.open(root)
    project.ingest()
    return project


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """Synthetic data with about 480 survey respondents."""
    return _project(tmp_path_factory.mktemp("survey_small"), customers=4000, seed=3)


@pytest.fixture
def responses(small: Project) -> Iterator[ir.Table]:
    """The store's responses table, as Ibis over the store's own DuckDB connection."""
    with small.store(read_only=True) as store:
        yield ibis.duckdb.from_connection(store.con).table("responses")


def _engine_table(name: str, data: pa.Table) -> ir.Table:
    """An Arrow table as an Ibis table on a fresh in-memory DuckDB."""
    con = duckdb.connect()
    con.register(name, data)
    return ibis.duckdb.from_connection(con).table(name)


def _scores(table: pa.Table, columns: list[str]) -> np.ndarray:
    return np.column_stack([table[c].to_numpy() for c in columns])


# ---- items and the wide table ---------------------------------------------------------------


def test_items_and_bases(responses: ir.Table) -> None:
    items = sv.survey_items(responses)
    assert [i["item_id"] for i in items] == sorted(i["item_id"] for i in items)
    assert len(items) == 8 and len({i["answers"] for i in items}) == 1  # all answer all 8
    assert all(i["answers"] == i["numeric"] > 400 for i in items)
    by_id = {i["item_id"]: i for i in items}
    assert by_id["need_price"]["item_text"] == "Low prices matter most to me when I shop."
    assert by_id["benefit_advice"]["construct"] == "benefit"
    assert sv.basis_items(items, "psychographic") == [i["item_id"] for i in items]
    assert sv.basis_items(items, "needs") == [
        "benefit_advice",
        "need_convenience",
        "need_price",
        "need_quality",
    ]
    assert sv.basis_items(items, "values") == [
        "interest_family",
        "interest_trends",
        "value_status",
        "value_sustainability",
    ]


def test_construct_keys_and_item_columns() -> None:
    assert sv.construct_key(" Needs ") == "need"
    assert sv.construct_key("Benefits") == "benefit"
    assert sv.construct_key("business") == "business"
    assert sv.construct_key("  ") is None
    cols = sv.item_columns(["Q1: price?", "q1 price", "1b", "customer_id", "—"])
    assert cols == {
        "Q1: price?": "q1_price",
        "q1 price": "q1_price_2",
        "1b": "q_1b",
        "customer_id": "customer_id_2",
        "—": "item",
    }


def _answers(rows: list[tuple[Any, ...]]) -> pa.Table:
    names = ["response_id", "customer_id", "item_id", "value_num", "answered_at"]
    return pa.table(
        dict(zip(names, map(list, zip(*rows, strict=True)), strict=True)),
        schema=pa.schema(
            [
                ("response_id", pa.string()),
                ("customer_id", pa.string()),
                ("item_id", pa.string()),
                ("value_num", pa.float64()),
                ("answered_at", pa.timestamp("s")),
            ]
        ),
    )


def test_survey_wide_takes_the_latest_numeric_answer() -> None:
    d1, d2, d3 = datetime(2024, 1, 1), datetime(2024, 2, 1), datetime(2024, 3, 1)
    rows = [
        ("r1", "c1", "Q1: price?", 2.0, d1),
        ("r2", "c1", "Q1: price?", 5.0, d3),  # latest
        ("r3", "c1", "Q1: price?", 1.0, d2),
        ("r4", "c1", "Q2", None, d3),  # no number: not an answer
        ("r5", "c1", "Q2", 3.0, None),  # no date: older than any dated answer
        ("r6", "c1", "Q2", 4.0, d1),
        ("r7", "c2", "Q2", 1.0, d1),
        ("r8", "c2", "Q2", 2.0, d1),  # same time: the larger response_id
        ("r9", None, "Q1: price?", 5.0, d1),  # no customer
    ]
    t = _engine_table("responses", _answers(rows))
    wide = sv.survey_wide(t).order_by("customer_id").to_pyarrow()
    assert wide.column_names == ["customer_id", "q1_price", "q2"]
    assert wide.to_pylist() == [
        {"customer_id": "c1", "q1_price": 5.0, "q2": 4.0},
        {"customer_id": "c2", "q1_price": None, "q2": 2.0},
    ]
    only = sv.survey_wide(t, ["Q2"]).order_by("customer_id").to_pyarrow()
    assert only.to_pydict() == {"customer_id": ["c1", "c2"], "q2": [4.0, 2.0]}


# ---- the factor model ---------------------------------------------------------------------


def test_scores_in_numpy_and_in_the_engine_agree(responses: ir.Table) -> None:
    """Fitted on a sample pulled as Arrow, scored in DuckDB, with some answers missing."""
    from sklearn.decomposition import FactorAnalysis

    wide = sv.survey_wide(responses)
    data = wide.order_by("customer_id").to_pyarrow()
    items = data.column_names[1:]
    model = sv.fit_factors(data, items, seed=0)
    assert model.n_factors == 3 and model.columns == ["factor_1", "factor_2", "factor_3"]
    # the written-out weights are sklearn's transform (up to each factor's sign and order)
    x = _scores(data, items)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    fa = FactorAnalysis(3, rotation="varimax", svd_method="lapack").fit(z)
    ours, theirs = model.transform(data), fa.transform(z)
    for j in range(3):
        r = [abs(np.corrcoef(ours[:, j], theirs[:, i])[0, 1]) for i in range(3)]
        assert max(r) == pytest.approx(1.0, abs=1e-9)
    # blank a tenth of the answers: NULL counts as the item's mean in numpy and in the engine
    rng = np.random.default_rng(0)
    cols = {c: data[c].to_numpy() for c in items}
    holes = pa.table(
        {"customer_id": data["customer_id"]}
        | {c: pa.array(v, mask=rng.random(len(v)) < 0.1) for c, v in cols.items()}
    )
    engine = _engine_table("wide", holes)
    scored = model.score_table(engine).order_by("customer_id").to_pyarrow()
    assert scored.column_names == ["customer_id", *model.columns]
    assert scored["customer_id"].equals(holes["customer_id"])
    got, want = _scores(scored, model.columns), model.transform(holes)
    assert np.isnan(want).sum() == 0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    # a respondent who answered nothing scores 0 on every factor
    empty = holes.slice(0, 1).set_column(1, items[0], pa.nulls(1, pa.float64()))
    for c in items[1:]:
        empty = empty.set_column(empty.column_names.index(c), c, pa.nulls(1, pa.float64()))
    assert model.transform(empty).tolist() == [[0.0, 0.0, 0.0]]


def test_fit_is_deterministic_and_round_trips(responses: ir.Table) -> None:
    a, scores_a = sv.fit_survey(responses, sample=300, seed=5)
    b, scores_b = sv.fit_survey(responses, sample=300, seed=5)
    c, _ = sv.fit_survey(responses, sample=300, seed=6)
    assert a.respondents == 300
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    assert json.dumps(a.to_dict()) != json.dumps(c.to_dict())  # another sample
    assert (
        scores_a.order_by("customer_id")
        .to_pyarrow()
        .equals(scores_b.order_by("customer_id").to_pyarrow())
    )
    back = sv.FactorModel.from_dict(json.loads(json.dumps(a.to_dict())))
    data = sv.survey_wide(responses).to_pyarrow()
    np.testing.assert_array_equal(back.transform(data), a.transform(data))
    assert back.names == a.names and back.columns == a.columns


def _sides(name: str, first: str) -> tuple[str, str]:
    """The side of a 'A / B vs C' factor name holding `first`, and the other side."""
    left, right = name.split(" vs ")
    return (left, right) if first in left else (right, left)


def test_factors_are_named_by_their_top_items(responses: ir.Table) -> None:
    """The planted segments set price against quality and trends/status against family."""
    model, _ = sv.fit_survey(responses)
    assert model.respondents > 400 and model.n_factors == 3
    load = dict(zip(model.items, model.loadings, strict=True))
    price = int(np.abs(load["need_price"]).argmax())
    assert abs(load["need_price"][price]) > 0.6
    assert load["need_price"][price] * load["need_quality"][price] < -0.3
    same, other = _sides(model.names[price], "Low prices matter most")
    assert "Low prices matter most" in same and "better quality" not in same
    assert "I would pay more for better quality" in other
    trends = int(np.abs(load["interest_trends"]).argmax())
    assert trends != price
    same, other = _sides(model.names[trends], "I follow new trends closely")
    assert "I like owning the newest" in same
    assert other == "Most of what I buy is for my family"
    # each factor's top item loads positively and comes first in its name
    for j, name in enumerate(model.names):
        top = int(np.abs(model.loadings[:, j]).argmax())
        assert model.loadings[top, j] > 0
        assert name.startswith(sv.short_label(model.texts[top]))
    # the factors are ordered by variance explained, and explain under all of it
    assert list(model.explained) == sorted(model.explained, reverse=True)
    assert 0.3 < model.explained.sum() < 1.0


def test_name_factor_and_short_label() -> None:
    labels = ["a", "b", "c", "d", "e"]
    assert sv.name_factor(np.array([0.1, 0.8, -0.5, 0.45, 0.42]), labels) == "b / d vs c"
    assert sv.name_factor(np.array([0.1, 0.2, -0.3, 0.0, 0.0]), labels) == "not c"
    assert sv.name_factor(np.array([0.1, 0.2, 0.3, 0.0, 0.0]), labels) == "c"
    assert sv.short_label("Low prices matter most to me when I shop.") == "Low prices matter most"
    assert sv.short_label("I want expert advice before I buy.") == "I want expert advice"
    long = sv.short_label("I prefer brands that care about the environment and their workers.")
    assert long == "I prefer brands that care about the…"


def test_factor_count_is_kaiser_within_bounds() -> None:
    assert sv.factor_count(np.array([2.4, 2.0, 1.05, 0.8, 0.5])) == 3
    assert sv.factor_count(np.array([0.9, 0.6, 0.5])) == 1  # at least one
    assert sv.factor_count(np.array([1.2, 1.1, 0.7])) == 2
    assert sv.factor_count(np.array([1.2, 1.1, 1.01])) == 2  # at most items - 1


def _likert(n: int, items: int, seed: int = 0) -> pa.Table:
    """n respondents answering correlated 1..5 items."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 1))
    x = np.clip(np.round(3 + base + rng.normal(scale=0.8, size=(n, items))), 1, 5)
    cols = {f"i{j}": x[:, j] for j in range(items)}
    return pa.table({"customer_id": [f"c{i:04d}" for i in range(n)]} | cols)


def test_errors_say_what_is_wrong() -> None:
    data = _likert(200, 4)
    with pytest.raises(ConfigError, match="at least 3 survey items; got 2") as err:
        sv.fit_factors(data, ["i0", "i1"])
    assert err.value.hint
    with pytest.raises(ConfigError, match="at least 50 respondents .* there are 49 \\(of 49"):
        sv.fit_factors(data.slice(0, 49), ["i0", "i1", "i2"])
    # respondents who skipped an item do not count towards the 50
    holes = data.set_column(1, "i0", pa.array([None] * 160 + [1.0] * 40, pa.float64()))
    with pytest.raises(ConfigError, match="there are 40 \\(of 200 respondents\\)"):
        sv.fit_factors(holes, ["i0", "i1", "i2"])
    texts = data.set_column(1, "i0", pc.cast(data["i0"], pa.string()))
    with pytest.raises(ConfigError, match="i0 hold non-numeric answers \\(string\\)"):
        sv.fit_factors(texts, ["i0", "i1", "i2"])
    blank = data.set_column(1, "i0", pa.nulls(200, pa.float64()))
    with pytest.raises(ConfigError, match="i0 have no numeric answers"):
        sv.fit_factors(blank, ["i0", "i1", "i2"])
    flat = data.set_column(1, "i0", pa.array([3.0] * 200))
    with pytest.raises(ConfigError, match="same answer to i0"):
        sv.fit_factors(flat, ["i0", "i1", "i2"])
    with pytest.raises(ConfigError, match="lacks the item column\\(s\\) i9"):
        sv.fit_factors(data, ["i0", "i1", "i9"])
    with pytest.raises(ConfigError, match="n_factors must be between 1 and 3 for 4 items"):
        sv.fit_factors(data, ["i0", "i1", "i2", "i3"], n_factors=4)
    one = sv.fit_factors(data, ["i0", "i1", "i2", "i3"])
    assert one.n_factors == 1 and one.names[0].startswith("i")


def test_basis_errors() -> None:
    items = [
        {"item_id": "q1", "construct": None, "numeric": 10},
        {"item_id": "q2", "construct": None, "numeric": 10},
    ]
    assert sv.basis_items(items, "psychographic") == ["q1", "q2"]
    with pytest.raises(ConfigError, match="No survey item has a construct"):
        sv.basis_items(items, "needs")
    values = [{**i, "construct": "value"} for i in items]
    with pytest.raises(ConfigError, match="No survey item belongs to the 'needs'.*: value"):
        sv.basis_items(values, "needs")
    text_only = [{**i, "numeric": 0} for i in items]
    with pytest.raises(ConfigError, match="no numeric answers"):
        sv.basis_items(text_only, "psychographic")
    with pytest.raises(ConfigError, match="Unknown survey basis"):
        sv.basis_items(items, "lifestyle")  # type: ignore[arg-type]


def test_text_only_survey_is_an_error() -> None:
    rows = [(f"r{i}", f"c{i}", f"q{i % 3}", None, None) for i in range(9)]
    t = _engine_table("responses", _answers(rows))
    t = t.mutate(item_text=ibis.literal("?"), construct=ibis.literal("need"))
    with pytest.raises(ConfigError, match="no numeric answers: every value_num"):
        sv.fit_survey(t)
    with pytest.raises(ConfigError, match="no numeric answers with a customer_id"):
        sv.survey_wide(t)


# ---- clusters of the factor scores against the planted segments ----------------------------


def _cluster(scores: pa.Table, columns: list[str], seed: int) -> tuple[np.ndarray, str]:
    """Labels of the factor scores as the segments stage clusters them (k chosen by BIC)."""
    model = sv.cluster_scores(scores, columns, seed=seed)
    return model.predict(scores), f"{model.method}, k={model.k}"


@pytest.mark.slow
def test_psychographic_clusters_recover_the_planted_segments(tmp_path: Path) -> None:
    project = _project(tmp_path, customers=25000, seed=11)
    with project.store(read_only=True) as store:
        responses = ibis.duckdb.from_connection(store.con).table("responses")
        model, scores = sv.fit_survey(responses, seed=11)
        table = scores.order_by("customer_id").to_pyarrow()
    truth = pq.read_table(tmp_path / "truth/customers_truth.parquet")
    segment = dict(zip(truth["customer_id"].to_pylist(), truth["segment"].to_pylist(), strict=True))
    planted = [segment[c] for c in table["customer_id"].to_pylist()]
    assert 2500 < len(planted) < 3500  # 12 % of 25,000 answer the survey
    labels, how = _cluster(table, model.columns, seed=11)
    from sklearn.metrics import adjusted_rand_score

    ari = adjusted_rand_score(planted, labels)
    assert ari >= 0.7, f"ARI {ari:.3f} ({how}, {model.n_factors} factors)"


# ---- attitudinal bands ----------------------------------------------------------------------


def _feedback(ratings: list[tuple[str | None, float | None]]) -> ir.Table:
    t = pa.table(
        {"customer_id": [c for c, _ in ratings], "rating": [r for _, r in ratings]},
        schema=pa.schema([("customer_id", pa.string()), ("rating", pa.float64())]),
    )
    return _engine_table("feedback", t)


def _bands(table: ir.Table) -> dict[str, tuple[float, int, str]]:
    rows = sv.attitudinal_bands(table).to_pyarrow().to_pylist()
    return {r["customer_id"]: (r["rating_mean"], r["ratings"], r["band"]) for r in rows}


def test_attitudinal_bands_on_both_scales() -> None:
    stars = _feedback(
        [("a", 5), ("a", 3), ("b", 3), ("b", 4), ("c", 2), ("c", 2.9), ("d", None), (None, 1)]
    )
    assert sv.rating_scale(stars) == "1-5"
    assert _bands(stars) == {
        "a": (4.0, 2, "satisfied"),
        "b": (3.5, 2, "neutral"),
        "c": (2.45, 2, "dissatisfied"),
    }
    nps = _feedback([("a", 10), ("a", 8), ("b", 8), ("b", 6), ("c", 6), ("d", 0), ("e", 7)])
    assert sv.rating_scale(nps) == "0-10"
    assert {k: v[2] for k, v in _bands(nps).items()} == {
        "a": "promoter",
        "b": "passive",
        "c": "detractor",
        "d": "detractor",
        "e": "passive",
    }
    forced = sv.attitudinal_bands(stars, scale="0-10").to_pyarrow()
    assert set(forced["band"].to_pylist()) == {"detractor"}
    assert set(forced["scale"].to_pylist()) == {"0-10"}
    with pytest.raises(ConfigError, match="ratings go up to 100"):
        sv.attitudinal_bands(_feedback([("a", 100)]))
    with pytest.raises(ConfigError, match="no ratings"):
        sv.attitudinal_bands(_feedback([("a", None)]))


def _band(mean: float) -> str:
    return "satisfied" if mean >= 4 else "neutral" if mean >= 3 else "dissatisfied"


def test_attitudinal_bands_of_olist_reviews(data_dir: Path, tmp_path: Path) -> None:
    """All 3,986 reviews, by the customer of the reviewed order: the bands are those
    pyarrow computes from the CSV files."""
    d = data_dir / "olist_reviews"
    csv = pcsv.ParseOptions(newlines_in_values=True)
    reviews = pcsv.read_csv(d / "olist_order_reviews_dataset.csv", parse_options=csv)
    orders = pcsv.read_csv(d / "olist_orders_dataset.csv")
    joined = reviews.select(["order_id", "review_score"]).join(
        orders.select(["order_id", "customer_id"]), "order_id", join_type="inner"
    )
    assert joined.num_rows == 3986  # every review's order is in the sample
    per = joined.group_by("customer_id").aggregate(
        [("review_score", "mean"), ("review_score", "count")]
    )
    want = {
        c: (m, n, _band(m))
        for c, m, n in zip(
            per["customer_id"].to_pylist(),
            per["review_score_mean"].to_pylist(),
            per["review_score_count"].to_pylist(),
            strict=True,
        )
    }
    con = duckdb.connect()
    con.execute(
        f"CREATE VIEW feedback AS SELECT o.customer_id, r.review_score::DOUBLE AS rating "
        f"FROM read_csv('{d / 'olist_order_reviews_dataset.csv'}') r "
        f"JOIN read_csv('{d / 'olist_orders_dataset.csv'}') o USING (order_id)"
    )
    feedback = ibis.duckdb.from_connection(con).table("feedback")
    got = _bands(feedback)
    assert got == want
    counts = Counter(b for _, _, b in got.values())
    assert sum(counts.values()) == len(want) and set(counts) == {
        "satisfied",
        "neutral",
        "dissatisfied",
    }


def test_attitudinal_bands_of_ingested_olist_feedback(data_dir: Path, tmp_path: Path) -> None:
    """Through ingest: the feedback table keeps the 1,656 reviews with a text, linked to
    their customers through the orders."""
    d = data_dir / "olist_reviews"
    files = ["customers", "orders", "order_reviews"]
    project, _ = Project.init([d / f"olist_{f}_dataset.csv" for f in files], tmp_path)
    project.ingest()
    with project.store(read_only=True) as store:
        feedback = ibis.duckdb.from_connection(store.con).table("feedback")
        assert sv.rating_scale(feedback) == "1-5"
        got = Counter(sv.attitudinal_bands(feedback).band.to_pyarrow().to_pylist())
    sql = f"""SELECT band, count(*) FROM (
        SELECT CASE WHEN avg(review_score) >= 4 THEN 'satisfied'
                    WHEN avg(review_score) >= 3 THEN 'neutral'
                    ELSE 'dissatisfied' END AS band
        FROM read_csv('{d / "olist_order_reviews_dataset.csv"}') r
        JOIN read_csv('{d / "olist_orders_dataset.csv"}') o USING (order_id)
        WHERE trim(r.review_comment_message) <> ''
        GROUP BY o.customer_id) GROUP BY band"""
    want = duckdb.connect().execute(sql).fetchall()
    assert got == dict(want)
    assert sum(got.values()) == 1653  # 1,656 reviews, three customers reviewed twice
