"""The segment rule language: each construct selects exactly the right customers on DuckDB,
NULL means not a member, and every bad rule is a RuleError that points at the problem."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from personae.errors import ConfigError
from personae.segments.rules import (
    FUNCTIONS,
    RULES_DOC,
    RuleError,
    compile_rule,
    parse_rule,
    rule_fields,
)

SETTING = "[segmentations.lifestage] segment 'Young adults'"


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


ROWS: list[dict[str, Any]] = [
    # fmt: off
    {
        "customer_id": "c1",
        "age": 25,
        "age_band": "25-34",
        "city": "San Jose",
        "gender": "F",
        "clv_percentile": 0.9,
        "marketing_consent": True,
        "last_purchase": dt.date(2011, 7, 1),
        "created_at": _ts("2011-01-01 10:00"),
        "Spending Score": 80.0,
        "orders": 2,
        "total_value": 150.0,
        "top_category": "Wines",
        "rfm_segment": "Champions",
    },
    {
        "customer_id": "c2",
        "age": 34,
        "age_band": "25-34",
        "city": "Paris",
        "gender": "M",
        "clv_percentile": 0.5,
        "marketing_consent": False,
        "last_purchase": dt.date(2011, 5, 1),
        "created_at": _ts("2010-06-01 00:00"),
        "Spending Score": 20.0,
        "orders": 0,
        "total_value": 0.0,
        "top_category": "Meat",
        "rfm_segment": "Loyal",
    },
    {
        "customer_id": "c3",
        "age": 40,
        "age_band": "35-44",
        "city": "san francisco",
        "gender": "F",
        "clv_percentile": 0.8,
        "marketing_consent": None,
        "last_purchase": dt.date(2011, 6, 1),
        "created_at": _ts("2011-06-01 12:00"),
        "Spending Score": 55.5,
        "orders": 5,
        "total_value": 200.0,
        "top_category": "Wines",
        "rfm_segment": "At risk",
    },
    {
        "customer_id": "c4",
        "age": None,
        "age_band": None,
        "city": None,
        "gender": None,
        "clv_percentile": None,
        "marketing_consent": True,
        "last_purchase": None,
        "created_at": None,
        "Spending Score": None,
        "orders": None,
        "total_value": None,
        "top_category": None,
        "rfm_segment": None,
    },
    {
        "customer_id": "c5",
        "age": 19,
        "age_band": "18-24",
        "city": "Santiago",
        "gender": "M",
        "clv_percentile": 0.1,
        "marketing_consent": False,
        "last_purchase": dt.date(2010, 12, 31),
        "created_at": _ts("2010-12-31 23:59"),
        "Spending Score": 10.0,
        "orders": 1,
        "total_value": 60.0,
        "top_category": "Gold",
        "rfm_segment": "New",
    },
    {
        "customer_id": "c6",
        "age": 30,
        "age_band": "25-34",
        "city": "London",
        "gender": None,
        "clv_percentile": 0.95,
        "marketing_consent": True,
        "last_purchase": dt.date(2011, 6, 2),
        "created_at": _ts("2011-06-01 00:00"),
        "Spending Score": 99.0,
        "orders": 3,
        "total_value": 120.0,
        "top_category": "Wines",
        "rfm_segment": "Champions",
    },
    # fmt: on
]
SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("age", pa.int64()),
        ("age_band", pa.string()),
        ("city", pa.string()),
        ("gender", pa.string()),
        ("clv_percentile", pa.float64()),
        ("marketing_consent", pa.bool_()),
        ("last_purchase", pa.date32()),
        ("created_at", pa.timestamp("us")),
        ("Spending Score", pa.float64()),
        ("orders", pa.int32()),
        ("total_value", pa.float64()),
        ("top_category", pa.string()),
        ("rfm_segment", pa.string()),
    ]
)
FIELDS = {
    "customer_id": "text",
    "age": "int",
    "age_band": "text",
    "city": "text",
    "gender": "text",
    "clv_percentile": "float",
    "marketing_consent": "bool",
    "last_purchase": "date",
    "created_at": "timestamp",
    "Spending Score": "float",
    "orders": "int",
    "total_value": "float",
    "top_category": "text",
    "rfm_segment": "text",
}
EVERYONE = {r["customer_id"] for r in ROWS}


@pytest.fixture(scope="module")
def table() -> ir.Table:
    con = ibis.duckdb.connect()
    return con.create_table("f", ibis.memtable(pa.Table.from_pylist(ROWS, schema=SCHEMA)))


def members(table: ir.Table, rule: str) -> set[str]:
    chosen = table.filter(compile_rule(rule, table, setting=SETTING)).select("customer_id")
    return set(chosen.to_pyarrow()["customer_id"].to_pylist())


def error(rule: str, fields: dict[str, str] | None = None) -> RuleError:
    with pytest.raises(RuleError) as info:
        parse_rule(rule, FIELDS if fields is None else fields, setting=SETTING)
    return info.value


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("age between 25 and 34", {"c1", "c2", "c6"}),
        ("age between 25 and 34 and top_category = 'Wines'", {"c1", "c6"}),
        ("rfm_segment in ('Champions', 'Loyal')", {"c1", "c2", "c6"}),
        ("rfm_segment not in ('Champions', 'Loyal')", {"c3", "c5"}),
        ("clv_percentile >= 0.8", {"c1", "c3", "c6"}),
        ("city is not null and lower(city) like 'san%'", {"c1", "c3", "c5"}),
        ("city ilike 'SAN%'", {"c1", "c3", "c5"}),
        ("city like 'San%'", {"c1", "c5"}),
        ("city like 'Pari_'", {"c2"}),
        ("city not like 'San%'", {"c2", "c3", "c6"}),
        ("city is null", {"c4"}),
        ("total_value / nullif(orders, 0) > 50", {"c1", "c5"}),
        ("total_value / orders > 50", {"c1", "c5"}),  # 0 / 0 is missing, not an error
        ("last_purchase >= date '2011-06-01'", {"c1", "c3", "c6"}),
        ("created_at >= date '2011-06-01'", {"c3", "c6"}),
        ("created_at < timestamp '2011-01-01 10:00:00'", {"c2", "c5"}),
        ("last_purchase < timestamp '2011-06-01 12:00:00'", {"c2", "c3", "c5"}),
        ("not (gender = 'F')", {"c2", "c5"}),
        ("gender != 'F'", {"c2", "c5"}),
        ("gender <> 'F' or gender is null", {"c2", "c4", "c5", "c6"}),
        ("marketing_consent", {"c1", "c4", "c6"}),
        ("not marketing_consent", {"c2", "c5"}),
        ("marketing_consent = true and age > 26", {"c6"}),
        ('"Spending Score" > 50', {"c1", "c3", "c6"}),
        ('"spending score" > 50', {"c1", "c3", "c6"}),
        ("AGE >= 30 and City = 'Paris'", {"c2"}),
        ("age == 40", {"c3"}),
        ("-age < -30", {"c2", "c3"}),
        ("age * 2 - 10 >= 50", {"c2", "c3", "c6"}),
        ("abs(age - 30) <= 4", {"c2", "c6"}),
        ('round("Spending Score") = 56', {"c3"}),
        ("round(clv_percentile, 1) = 0.8", {"c3"}),
        ('floor("Spending Score") = 55 and ceil("Spending Score") = 56', {"c3"}),
        ("length(trim(upper(city))) = 5", {"c2"}),
        ("coalesce(gender, 'U') = 'U'", {"c4", "c6"}),
        ("least(age, 30) = 30 and greatest(orders, 2) = 3", {"c6"}),
        ("top_category = 'Wines' and (age < 30 or clv_percentile > 0.9)", {"c1", "c6"}),
        ("age in (19, 40.0)", {"c3", "c5"}),
        ("last_purchase in (date '2011-06-01', date '2011-06-02')", {"c3", "c6"}),
        ("true", EVERYONE),
        ("age > 100", set()),
        ("age < 30 -- a comment\n  or age >= 30", EVERYONE - {"c4"}),
    ],
)
def test_each_construct_selects_the_right_customers(
    table: ir.Table, rule: str, expected: set[str]
) -> None:
    assert members(table, rule) == expected


def test_null_means_not_a_member(table: ir.Table) -> None:
    # c4 has no age: neither a rule nor its negation takes it in
    assert "c4" not in members(table, "age < 30") | members(table, "not (age < 30)")
    assert members(table, "age is null") == {"c4"}
    flags = compile_rule("gender = 'F'", table, setting=SETTING)
    column = table.select(m=flags).to_pyarrow()["m"]
    assert column.null_count == 0
    assert column.to_pylist().count(True) == 2


def test_field_names_ignore_case_and_are_rewritten_to_the_exact_name() -> None:
    tree = parse_rule('AGE > 1 and "SPENDING SCORE" > 2', FIELDS, setting=SETTING)
    assert {c.name for c in tree.find_all(exp.Column)} == {"age", "Spending Score"}
    assert parse_rule("Age > 1", {"Age": "int", "AGE": "int"}, setting=SETTING)
    assert "ambiguous" in str(error("age > 1", {"Age": "int", "AGE": "int"}))


def test_rule_fields() -> None:
    rule = "AGE between 25 and 34 and lower(City) = 'x' or \"Spending Score\" > 1"
    assert rule_fields(rule) == {"age", "city", "spending score"}
    assert rule_fields("true") == set()


def test_unknown_field_names_the_setting_and_suggests() -> None:
    err = error("agee between 25 and 34", {"age": "int", "age_band": "text", "city": "text"})
    assert isinstance(err, ConfigError)
    text = str(err)
    assert text.startswith(SETTING + ": ")
    assert "Unknown field 'agee'. Did you mean: age, age_band?" in text
    assert text.splitlines()[1:] == ["  agee between 25 and 34", "  ^^^^"]
    assert err.hint is not None and "The fields are: age, age_band, city" in err.hint
    assert "Did you mean: age," in str(error("agee > 1"))  # the closest first


def test_double_quoted_text_hint() -> None:
    err = error('city = "Paris"')
    assert "Unknown field 'Paris'" in str(err)
    assert err.hint is not None and "single quotes: 'Paris'" in err.hint


@pytest.mark.parametrize(
    ("rule", "caret_line", "words"),
    [
        ("age = = 3", "        ^", "Syntax error at '='"),
        ("age between 25 and", None, "Syntax error"),
        ("(age > 3", None, "Syntax error"),
        ("city = 'San", "         ^", "Unclosed '"),
        ("age > 3 and\n  agee < 5", "    ^^^^", "Unknown field 'agee'"),
        ("age = null", "        ^^^^", "null can only be used in 'is null'"),
    ],
)
def test_errors_point_at_the_problem(rule: str, caret_line: str | None, words: str) -> None:
    lines = str(error(rule)).splitlines()
    assert words in lines[0]
    assert any(set(line.strip()) == {"^"} for line in lines)
    if caret_line is not None:
        assert caret_line in lines


def test_empty_rule() -> None:
    assert "empty" in str(error("  -- nothing"))


@pytest.mark.parametrize(
    ("rule", "what"),
    [
        ("age in (select 1)", "A query (select ...) is not allowed"),
        ("age > (select max(age) from f)", "A query (select ...) is not allowed"),
        ("exists (select 1)", "not allowed"),
        (";drop table x", "';' is not allowed"),
        ("age > 1; drop table x", "';' is not allowed"),
        ("read_csv('x') = 1", "The function read_csv() is not allowed"),
        ("random() > 0.5", "The function random() is not allowed"),
        ("sqrt(age) > 1", "The function sqrt() is not allowed"),
        ("my_udf(age) > 1", "The function my_udf() is not allowed"),
        ("date('2011-01-01') < last_purchase", "not allowed"),
        ("cast(age as text) = '3'", "A cast"),
        ("age::text = '3'", "A cast"),
        ("f.age > 1", "Qualified names such as f.age are not allowed"),
        ("*", "* is not allowed"),
        ("case when age > 1 then true else false end", "case ... end is not allowed"),
        ("sum(age) over () > 1", "not allowed"),
        ("age % 2 = 0", "not allowed"),
        ("city || 'x' = 'y'", "not allowed"),
        ("age is distinct from 3", "not allowed"),
        ("marketing_consent is true", "Only 'is null' and 'is not null'"),
        ("age in (orders, 2)", "in (...) takes a list of values"),
        ("city like lower(city)", "like needs a pattern in single quotes"),
        ("age between symmetric 30 and 20", "not allowed"),
        ("select age from f", "not allowed"),
    ],
)
def test_forbidden_constructs(rule: str, what: str) -> None:
    err = error(rule)
    assert what in str(err)
    assert str(err).startswith(SETTING)


def test_not_allowed_lists_what_is() -> None:
    hint = error("random() > 0.5").hint or ""
    assert all(name in hint for name in FUNCTIONS)
    assert "between" in hint and "is not null" in hint


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("age = 'old'", "age is a number, 'old' is text"),
        ("city > 3", "city is text, 3 is a number"),
        ("last_purchase >= '2011-06-01'", "last_purchase is a date, '2011-06-01' is text"),
        ("age in (1, 'x')", "age is a number, 'x' is text"),
        ("age between 'a' and 3", "age is a number, 'a' is text"),
        ("coalesce(age, 'none') = 1", "age is a number, 'none' is text"),
        ("city + 1 > 2", "Arithmetic needs numbers: city is text"),
        ("lower(age) = 'x'", "lower() needs text: age is a number"),
        ("abs(city) > 1", "abs() needs a number: city is text"),
        ("age", "The rule must be a condition (true or false), but age is a number"),
        ("age and city = 'x'", "Each side of 'and' must be a condition"),
        ("not city", "What follows 'not' must be a condition"),
        ("marketing_consent = 1", "marketing_consent is true/false, 1 is a number"),
        ("age > date '2011-13-01'", "date '2011-13-01' is not a valid value"),
        ("age > 1e400", "1e400 is not a valid value"),
        ("round(age, 1.5) > 1", "round()'s digits must be a whole number"),
        ("round(age, true) > 1", "round()'s digits must be a whole number"),
        ("coalesce(age) > 1", "coalesce() takes 2 or more arguments, not 1"),
    ],
)
def test_type_mismatches(rule: str, message: str) -> None:
    assert message in str(error(rule))


def test_date_hint() -> None:
    err = error("last_purchase >= '2011-06-01'")
    assert err.hint is not None and "date '2011-06-01'" in err.hint


def test_unusable_field_kind() -> None:
    assert "which rules cannot use" in str(error("tags = 'x'", {"tags": "array<string>"}))


def test_rules_doc_lists_every_function() -> None:
    assert RULES_DOC.startswith("## Rule language")
    assert all(f"`{FUNCTIONS[name].split(':')[0]}`" in RULES_DOC for name in FUNCTIONS)


# --- property tests -----------------------------------------------------------------------

Predicate = tuple[str, Callable[[dict[str, Any]], bool | None]]
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
NUMBERS = st.sampled_from([-1, 0, 0.5, 0.8, 1, 2, 19, 25, 30, 30.5, 34, 40, 55.5, 100])
TEXTS = st.sampled_from(["F", "M", "Paris", "London", "Wines", "Gold", "a", "San Jose", "zz"])
NUMERIC = ["age", "orders", "clv_percentile", "Spending Score"]
TEXTUAL = ["city", "gender", "top_category"]


def _name(field: str) -> str:
    return f'"{field}"' if " " in field else field


def _sql(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


@st.composite
def comparisons(draw: st.DrawFn) -> Predicate:
    numeric = draw(st.booleans())
    field = draw(st.sampled_from(NUMERIC if numeric else TEXTUAL))
    values = NUMBERS if numeric else TEXTS
    form = draw(st.sampled_from(["op", "between", "in", "null", "not null"]))
    if form == "op":
        op, value = draw(st.sampled_from(sorted(OPS))), draw(values)
        compare = OPS[op]
        return (
            f"{_name(field)} {op} {_sql(value)}",
            lambda r: None if r[field] is None else compare(r[field], value),
        )
    if form == "between":
        low, high = draw(values), draw(values)
        return (
            f"{_name(field)} between {_sql(low)} and {_sql(high)}",
            lambda r: None if r[field] is None else low <= r[field] <= high,
        )
    if form == "in":
        items = draw(st.lists(values, min_size=1, max_size=3))
        listed = ", ".join(_sql(v) for v in items)
        return (
            f"{_name(field)} in ({listed})",
            lambda r: None if r[field] is None else r[field] in items,
        )
    if form == "null":
        return f"{_name(field)} is null", lambda r: r[field] is None
    return f"{_name(field)} is not null", lambda r: r[field] is not None


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _combine(children: st.SearchStrategy[Predicate]) -> st.SearchStrategy[Predicate]:
    def pair(left: Predicate, right: Predicate, op: str) -> Predicate:
        join = _and if op == "and" else _or
        return f"({left[0]} {op} {right[0]})", lambda r: join(left[1](r), right[1](r))

    def negate(inner: Predicate) -> Predicate:
        return f"not ({inner[0]})", lambda r: None if inner[1](r) is None else not inner[1](r)

    return st.one_of(
        st.builds(pair, children, children, st.sampled_from(["and", "or"])),
        st.builds(negate, children),
    )


@settings(max_examples=150, deadline=None)
@given(st.recursive(comparisons(), _combine, max_leaves=6))
def test_rules_agree_with_python_three_valued_logic(table: ir.Table, predicate: Predicate) -> None:
    rule, evaluate = predicate
    expected = {r["customer_id"] for r in ROWS if evaluate(r) is True}
    assert members(table, rule) == expected, rule


TOKENS = [
    "age", "city", '"Spending Score"', "'x'", "'2011-01-01'", "1", "2.5", "-", "+", "*", "/",
    "(", ")", ",", "=", "!=", "<", ">=", "and", "or", "not", "in", "between", "is", "null",
    "like", "lower", "coalesce", "round", "date", "timestamp", "true", ";", "select", "from",
    "::", "cast", "as", "int", "case", "when", "then", "end", ".", "'", '"', "$1", "?", "[",
    "]", "{", "}", "->", "||", "%", "over", "--", "/*", "e", "0x1F", "1e999",
]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(st.text(max_size=40), st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join))
)
def test_any_text_is_a_rule_or_a_rule_error(table: ir.Table, text: str) -> None:
    try:
        condition = compile_rule(text, table, setting=SETTING)
    except RuleError as err:
        assert str(err).startswith(SETTING)
    else:  # what passes the checks also compiles to SQL
        assert "SELECT" in ibis.to_sql(table.filter(condition))


@pytest.mark.parametrize(
    ("written", "field"),
    [
        ('"Spending Score (1-100)"', "spending_score_1_100"),
        ('"Annual Income (k$)"', "annual_income_k"),
        ('"2nd Line Of Address"', "a_2nd_line_of_address"),
        ('"Kundennummer / ID"', "kundennummer_id"),
        ('"Age "', "age"),  # a trait wins over an attribute of the same name (attr_age)
    ],
)
def test_a_source_column_name_finds_its_field(written: str, field: str) -> None:
    fields = {
        "age": "int",
        "attr_age": "int",
        "spending_score_1_100": "float",
        "annual_income_k": "float",
        "a_2nd_line_of_address": "text",
        "kundennummer_id": "text",
    }
    value = "'x'" if fields[field] == "text" else "1"
    tree = parse_rule(f"{written} = {value}", fields, setting=SETTING)
    assert {c.name for c in tree.find_all(exp.Column)} == {field}
