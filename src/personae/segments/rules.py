"""The segment rule language: a condition over customer fields, written in personae.toml.

A rule such as ``age between 25 and 34 and city = 'Paris'`` is parsed by sqlglot (never
evaluated as Python, never pasted into SQL), checked against a short whitelist of constructs
and against the fields' types, then rebuilt node by node as an Ibis expression, so the same
rule runs on DuckDB and on Spark. A customer whose values leave the rule unknown (NULL) is
not a member.
"""

from __future__ import annotations

import datetime as dt
import difflib
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any, cast

import ibis
import ibis.expr.datatypes as idt
import ibis.expr.types as ir
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from personae.errors import ConfigError

FUNCTIONS: dict[str, str] = {
    "lower": "lower(text): the text in lower case",
    "upper": "upper(text): the text in upper case",
    "trim": "trim(text): the text without leading and trailing spaces",
    "length": "length(text): the number of characters",
    "abs": "abs(number): the number without its sign",
    "round": "round(number[, digits]): rounded to `digits` decimals (0 when left out)",
    "floor": "floor(number): the largest whole number not above it",
    "ceil": "ceil(number): the smallest whole number not below it",
    "coalesce": "coalesce(a, b, ...): the first of its values that is not missing",
    "nullif": "nullif(a, b): missing when a equals b, else a",
    "least": "least(a, b, ...): the smallest of its values",
    "greatest": "greatest(a, b, ...): the largest of its values",
}

KINDS = ("text", "int", "float", "bool", "date", "timestamp")
"""The field kinds `parse_rule` accepts; any other kind makes the field unusable in rules."""

_TYPE_OF_KIND = {
    "text": "text",
    "int": "number",
    "float": "number",
    "bool": "bool",
    "date": "date",
    "timestamp": "timestamp",
}
_TYPE_WORDS = {
    "text": "text",
    "number": "a number",
    "bool": "true/false",
    "date": "a date",
    "timestamp": "a timestamp",
}
_IBIS_TYPES = {
    "text": "string",
    "int": "int64",
    "float": "float64",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}

_COMPARISONS: dict[type[exp.Expression], Callable[[Any, Any], Any]] = {
    exp.EQ: operator.eq,
    exp.NEQ: operator.ne,
    exp.LT: operator.lt,
    exp.LTE: operator.le,
    exp.GT: operator.gt,
    exp.GTE: operator.ge,
}
_ARITHMETIC: dict[type[exp.Expression], Callable[[Any, Any], Any]] = {
    exp.Add: operator.add,
    exp.Sub: operator.sub,
    exp.Mul: operator.mul,
    exp.Div: lambda a, b: a / b.nullif(0),  # x / 0 is missing on every engine
}
_FUNCTION_CLASSES: dict[type[exp.Expression], str] = {
    exp.Lower: "lower",
    exp.Upper: "upper",
    exp.Trim: "trim",
    exp.Length: "length",
    exp.Abs: "abs",
    exp.Round: "round",
    exp.Floor: "floor",
    exp.Ceil: "ceil",
    exp.Coalesce: "coalesce",
    exp.Nullif: "nullif",
    exp.Least: "least",
    exp.Greatest: "greatest",
}
_ARITY: dict[str, tuple[int, int | None]] = {
    "round": (1, 2),
    "nullif": (2, 2),
    "coalesce": (2, None),
    "least": (2, None),
    "greatest": (2, None),
}
_FUNCTION_ARGS = {"this", "expression", "expressions", "decimals"}
_FLAGS: dict[type[exp.Expression], set[str]] = {  # boolean arguments that may be set
    exp.Like: {"negate"},
    exp.ILike: {"negate"},
    exp.In: {"negate"},
    exp.Is: {"negate"},
    exp.Coalesce: {"is_nvl", "is_null"},
    exp.Least: {"ignore_nulls"},
    exp.Greatest: {"ignore_nulls"},
}
_TEMPORAL_TYPES = {
    exp.DataType.Type.DATE: "date",
    exp.DataType.Type.TIMESTAMP: "timestamp",
    exp.DataType.Type.TIMESTAMPNTZ: "timestamp",
    exp.DataType.Type.DATETIME: "timestamp",
}
_INT64 = 2**63 - 1

ALLOWED = (
    'A rule may use field names (case-insensitive; "double quotes" around names with '
    "spaces), values (numbers, 'text' in single quotes, true, false, date 'YYYY-MM-DD', "
    "timestamp 'YYYY-MM-DD HH:MM:SS'), comparisons (= != <> < <= > >=), and, or, not, "
    "in (value, ...), between ... and ..., is null, is not null, like, ilike, + - * /, "
    "parentheses and the functions " + ", ".join(FUNCTIONS) + "."
)
"""What the rule language allows, in one sentence (the hint of a 'not allowed' error)."""

_DIALECT = Dialect.get_or_raise("duckdb")


class RuleError(ConfigError):
    """A segment rule that cannot be read, uses something rules do not allow, names an
    unknown field or mixes types."""


Span = tuple[int, int]  # first and last character offsets (inclusive) in the rule text


class _Source:
    """The rule text and its setting, to build errors that point into the text."""

    def __init__(self, text: str, setting: str) -> None:
        self.text = text
        self.setting = setting

    def error(self, problem: str, at: Span | exp.Expression | None, hint: str | None = None):
        """A RuleError naming the setting, quoting the rule and underlining `at`."""
        span: Span | exp.Expr | None = at
        while isinstance(span, exp.Expression):  # a node without a position: its parent's
            span = self.span(span) or span.parent
        where = span if isinstance(span, tuple) else None
        return RuleError(f"{self.setting}: {problem}\n{self.excerpt(where)}", hint=hint)

    def excerpt(self, span: Span | None) -> str:
        """The rule, indented, with a caret line under the span."""
        out, offset = [], 0
        for line in self.text.split("\n"):
            out.append("  " + line)
            end = offset + len(line)
            if span is not None and offset <= span[0] <= end:
                start, stop = span[0] - offset, min(span[1], end - 1) - offset
                pad = "".join(c if c == "\t" else " " for c in line[:start])
                out.append("  " + pad + "^" * max(stop - start + 1, 1))
                span = None
            offset = end + 1
        return "\n".join(out)

    def span(self, node: exp.Expression) -> Span | None:
        """Where a node is in the text, from the token positions sqlglot records."""
        points = [(n.meta["start"], n.meta["end"]) for n in node.walk() if "start" in n.meta]
        if not points and isinstance(node, exp.Null | exp.Boolean):
            return self.keyword_span(node)
        if not points:
            return None
        start, end = min(p[0] for p in points), max(p[1] for p in points)
        if isinstance(node, exp.Func):  # take in the closing parenthesis
            match = re.match(r"\s*\)", self.text[end + 1 :])
            end += match.end() if match else 0
        if isinstance(node, exp.Cast):  # take in date '...', cast(... as t) and ...::t
            lead = r"(?<![\w\"])(date|timestamp)\s*$|cast\s*\(\s*$"
            match = re.search(lead, self.text[:start], re.I)
            start = match.start() if match else start
            match = re.match(r"\s*(::\s*\w+|as\s+\w+\s*\))", self.text[end + 1 :], re.I)
            end += match.end() if match else 0
        return start, end

    def keyword_span(self, node: exp.Expression) -> Span | None:
        """Where a null/true/false is (sqlglot records no position for them): the first such
        word after its left-hand sibling."""
        word = "null" if isinstance(node, exp.Null) else str(node.this).lower()
        parent, left = node.parent, None
        if isinstance(parent, exp.Expression) and isinstance(parent.this, exp.Expression):
            left = self.span(parent.this) if parent.this is not node else None
        found = re.compile(rf"\b{word}\b", re.I).search(self.text, left[1] + 1 if left else 0)
        return (found.start(), found.end() - 1) if found else None

    def snippet(self, node: exp.Expression) -> str:
        """The text of a node as the user wrote it."""
        span = self.span(node)
        return self.text[span[0] : span[1] + 1] if span else node.sql(dialect="duckdb")


def _parse(rule: str, setting: str) -> exp.Expression:
    """Parse one condition; any failure is a RuleError pointing at where it happened."""
    src = _Source(rule, setting)
    try:
        tokens = _DIALECT.tokenize(rule)
    except TokenError as e:
        found = re.match(r"Missing (.+) from \d+:(\d+)", str(e.__cause__ or ""))
        if found:
            at = int(found.group(2))
            quote = found.group(1)
            raise src.error(f"Unclosed {quote}", (at, at), hint=f"Close it with {quote}.") from None
        raise src.error("The rule cannot be read", None, hint=ALLOWED) from None
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            raise src.error(
                "';' is not allowed: a rule is one condition",
                (token.start, token.end),
                hint=ALLOWED,
            )
    try:
        trees = [t for t in _DIALECT.parser().parse(tokens, rule) if t is not None]
    except ParseError as e:
        raise _syntax_error(src, e) from None
    except Exception as e:  # sqlglot may fail otherwise on odd input; the user gets a RuleError
        raise src.error(f"The rule cannot be read ({e})", None, hint=ALLOWED) from None
    if len(trees) != 1:
        raise src.error("The rule is empty", None, hint="Write a condition, e.g. age >= 18.")
    if not isinstance(trees[0], exp.Expression):
        raise src.error("The rule cannot be read", None, hint=ALLOWED)
    return trees[0]


def _syntax_error(src: _Source, error: ParseError) -> RuleError:
    """A RuleError for a sqlglot ParseError, with the caret where the parser stopped."""
    if not error.errors:
        return src.error(f"Syntax error: {error}", None, hint=ALLOWED)
    info = error.errors[0]
    line, col, highlight = info.get("line") or 1, info.get("col") or 1, info.get("highlight") or ""
    line_start = sum(len(x) + 1 for x in src.text.split("\n")[: line - 1])
    end = line_start + col - 1
    span = (max(end - max(len(highlight), 1) + 1, 0), end)
    description = str(info.get("description") or "")
    if description.startswith("Expecting"):
        problem = f"Syntax error at '{highlight}': expected {description[len('Expecting ') :]}"
    elif description.startswith("Required keyword"):
        problem = f"Syntax error at '{highlight}': something is missing here"
    else:
        problem = f"Syntax error at '{highlight}'"
    return src.error(problem, span, hint=ALLOWED)


def _literal(node: exp.Expression) -> tuple[Any, str] | None:
    """The Python value and type of a literal value node (a number, possibly negative, a
    text, true/false or a date/timestamp literal), or None when the node is not one.
    Raises ValueError for a malformed number or date."""
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        found = _literal(node.this)
        if found is None or found[1] != "number":
            return None
        return -found[0], "number"
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this, "text"
        text = node.this
        value: int | float = int(text) if text.isdigit() else float(text)
        if isinstance(value, int) and value > _INT64:
            value = float(value)
        if value in (float("inf"), float("-inf")) or value != value:
            raise ValueError(f"{text} is out of range")
        return value, "number"
    if isinstance(node, exp.Boolean):
        return bool(node.this), "bool"
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal):
        to = node.args.get("to")
        kind = _TEMPORAL_TYPES.get(to.this) if isinstance(to, exp.DataType) else None
        if kind == "date":
            return dt.date.fromisoformat(node.this.this), "date"
        if kind == "timestamp":
            return dt.datetime.fromisoformat(node.this.this), "timestamp"
    return None


class _Checker:
    """Walks a parsed rule: allows only the whitelisted nodes, resolves field names (and
    rewrites them to the fields' exact names) and works out each node's type."""

    def __init__(self, src: _Source, fields: Mapping[str, str]) -> None:
        self.src = src
        self.fields = dict(fields)
        self.lower: dict[str, list[str]] = {}
        for name in fields:
            self.lower.setdefault(name.lower(), []).append(name)

    def condition(self, node: exp.Expression, role: str = "The rule") -> None:
        """Check a node that must be true/false."""
        kind = self.value(node)
        if kind != "bool":
            raise self.src.error(
                f"{role} must be a condition (true or false), but "
                f"{self.describe(node)} is {_TYPE_WORDS[kind]}",
                node,
                hint="Compare it with something, e.g. age >= 30 or city = 'Paris'.",
            )

    def value(self, node: exp.Expression) -> str:
        """Check a node that must be a value (not a bare null); returns its type."""
        if isinstance(node, exp.Null):
            raise self.src.error(
                "null can only be used in 'is null' and 'is not null'",
                node,
                hint="A comparison with a missing value is never true; write e.g. city is null.",
            )
        return self.check(node)

    def check(self, node: exp.Expression) -> str:
        """Check any node; returns its type."""
        kind = type(node)
        if kind in (exp.Paren, exp.Not, exp.And, exp.Or):
            self.args(node, {"this", "expression"})
            for child in (node.this, node.args.get("expression")):
                if child is not None:
                    if kind is exp.Paren:
                        return self.check(child)
                    side = "What follows 'not'" if kind is exp.Not else f"Each side of '{kind.key}'"
                    self.condition(child, side)
            return "bool"
        if kind in _COMPARISONS:
            self.args(node, {"this", "expression"})
            self.same(node, [node.this, node.expression])
            return "bool"
        if kind is exp.Between:
            self.args(node, {"this", "low", "high"})
            self.same(node, [node.this, node.args["low"], node.args["high"]])
            return "bool"
        if kind is exp.In:
            return self.check_in(node)
        if kind is exp.Is:
            self.args(node, {"this", "expression"})
            if not isinstance(node.expression, exp.Null):
                raise self.src.error(
                    "Only 'is null' and 'is not null' are allowed after 'is'", node, hint=ALLOWED
                )
            self.value(node.this)
            return "bool"
        if kind in (exp.Like, exp.ILike):
            self.args(node, {"this", "expression"})
            self.expect(node.this, "text", f"{kind.key} needs text on its left")
            pattern = node.expression
            if not (isinstance(pattern, exp.Literal) and pattern.is_string):
                raise self.src.error(
                    f"{kind.key} needs a pattern in single quotes",
                    pattern,
                    hint="e.g. city like 'San%' (% is any text, _ is any one character)",
                )
            return "bool"
        if kind in _ARITHMETIC or kind is exp.Neg:
            self.args(node, {"this", "expression"})
            for child in (node.this, node.args.get("expression")):
                if child is not None:
                    self.expect(child, "number", "Arithmetic needs numbers")
            return "number"
        if kind is exp.Column:
            return self.column(cast(exp.Column, node))
        if kind in (exp.Literal, exp.Boolean, exp.Cast):
            return self.literal(node)
        if kind is exp.Null:
            return "null"
        if kind in _FUNCTION_CLASSES:
            return self.function(node, _FUNCTION_CLASSES[kind])
        raise self.not_allowed(node)

    def check_in(self, node: exp.Expression) -> str:
        """`x in (v1, v2, ...)`: a list of literal values of x's type."""
        self.args(node, {"this", "expressions"})
        kind = self.value(node.this)
        if not node.expressions:
            raise self.src.error("in (...) needs at least one value", node, hint=ALLOWED)
        for item in node.expressions:
            if self.literal_or_none(item) is None:
                raise self.src.error(
                    "in (...) takes a list of values (numbers, 'text', true/false, dates)",
                    item,
                    hint="e.g. rfm_segment in ('Champions', 'Loyal')",
                )
            self.same(node, [node.this, item], [kind, self.literal(item)])
        return "bool"

    def function(self, node: exp.Expression, name: str) -> str:
        """One of FUNCTIONS: its number and types of arguments; returns its result type."""
        self.args(node, _FUNCTION_ARGS)
        args = [
            node.args[k] for k in ("this", "expression", "decimals") if node.args.get(k) is not None
        ]
        args += list(node.args.get("expressions") or [])
        low, high = _ARITY.get(name, (1, 1))
        if len(args) < low or (high is not None and len(args) > high):
            wanted = f"{low}" if low == high else f"{low} or more" if high is None else "1 or 2"
            raise self.src.error(
                f"{name}() takes {wanted} argument{'s' if wanted != '1' else ''}, not {len(args)}",
                node,
                hint=FUNCTIONS[name],
            )
        if name in ("lower", "upper", "trim", "length"):
            self.expect(args[0], "text", f"{name}() needs text")
            return "number" if name == "length" else "text"
        if name in ("abs", "round", "floor", "ceil"):
            self.expect(args[0], "number", f"{name}() needs a number")
            if len(args) == 2:
                digits = self.literal_or_none(args[1])
                if digits is None or digits[1] != "number" or not isinstance(digits[0], int):
                    raise self.src.error(
                        "round()'s digits must be a whole number such as 2",
                        args[1],
                        hint=FUNCTIONS[name],
                    )
            return "number"
        kinds = self.same(node, args)
        return "timestamp" if "timestamp" in kinds else kinds[0]

    def same(
        self, node: exp.Expression, operands: list[exp.Expression], kinds: list[str] | None = None
    ) -> list[str]:
        """Operands that are compared with each other must have comparable types."""
        kinds = kinds or [self.value(o) for o in operands]
        for other, kind in zip(operands[1:], kinds[1:], strict=True):
            if not _comparable(kinds[0], kind):
                raise self.src.error(
                    f"{self.describe(operands[0])} is {_TYPE_WORDS[kinds[0]]}, "
                    f"{self.describe(other)} is {_TYPE_WORDS[kind]}",
                    node,
                    hint=_mismatch_hint(kinds[0], kind),
                )
        return kinds

    def expect(self, node: exp.Expression, wanted: str, problem: str) -> None:
        kind = self.value(node)
        if kind != wanted:
            raise self.src.error(
                f"{problem}: {self.describe(node)} is {_TYPE_WORDS[kind]}",
                node,
                hint=_mismatch_hint(wanted, kind),
            )

    def column(self, node: exp.Column) -> str:
        """Resolve a field name case-insensitively and rewrite it to the exact name."""
        ident = node.this
        if any(node.args.get(k) for k in ("table", "db", "catalog")):
            raise self.src.error(
                f"Qualified names such as {self.src.snippet(node)} are not allowed",
                node,
                hint=f"Write the field name alone: {ident.name}.",
            )
        if not isinstance(ident, exp.Identifier):
            raise self.not_allowed(ident)
        written = ident.name
        matches = [written] if written in self.fields else self.lower.get(written.lower(), [])
        if not matches:  # a source's own column name, e.g. "Spending Score (1-100)"
            matches = [field_name(written)] if field_name(written) in self.fields else []
        if not matches:
            raise self.unknown(ident)
        if len(matches) > 1:
            raise self.src.error(
                f"Field '{written}' is ambiguous: " + ", ".join(sorted(matches)),
                node,
                hint="Write the name exactly, in double quotes.",
            )
        name = matches[0]
        kind = self.fields[name]
        if kind not in _TYPE_OF_KIND:
            raise self.src.error(
                f"Field '{name}' holds {kind} values, which rules cannot use",
                node,
                hint="Rules can use text, number, true/false, date and timestamp fields.",
            )
        ident.set("this", name)
        ident.set("quoted", True)
        return _TYPE_OF_KIND[kind]

    def unknown(self, ident: exp.Identifier) -> RuleError:
        written = ident.name
        lowered = {n.lower(): n for n in self.fields}
        close = difflib.get_close_matches(written.lower(), list(lowered), n=3, cutoff=0.5)
        problem = f"Unknown field '{written}'."
        if close:
            problem += " Did you mean: " + ", ".join(lowered[c] for c in close) + "?"
        shown = sorted(self.fields)
        hint = "The fields are: " + ", ".join(shown[:40]) + (", ..." if len(shown) > 40 else "")
        if ident.quoted:
            hint = f"Text values take single quotes: '{written}'. " + hint
        return self.src.error(problem, ident, hint=hint)

    def literal(self, node: exp.Expression) -> str:
        """A literal value; date/timestamp literals are the only casts allowed."""
        if isinstance(node, exp.Cast):  # date '...' but not cast('...' as date) nor '...'::date
            span = self.src.span(node)
            if not span or not re.match(r"(?i)(date|timestamp)\b", self.src.text[span[0] :]):
                raise self.not_allowed(node)
        found = self.literal_or_none(node)
        if found is None:
            raise self.not_allowed(node)
        return found[1]

    def literal_or_none(self, node: exp.Expression) -> tuple[Any, str] | None:
        try:
            return _literal(node)
        except ValueError:
            raise self.src.error(
                f"{self.src.snippet(node)} is not a valid value",
                node,
                hint="Write numbers as 12 or 0.5, dates as date 'YYYY-MM-DD' and timestamps "
                "as timestamp 'YYYY-MM-DD HH:MM:SS'.",
            ) from None

    def args(self, node: exp.Expression, allowed: set[str]) -> None:
        """Refuse arguments the rule language does not use (e.g. `in (select ...)`)."""
        flags = _FLAGS.get(type(node), set())
        for key, value in node.args.items():
            if key in allowed or value is None or value is False or value == []:
                continue
            if value is True and key in flags:
                continue
            if isinstance(value, list):
                value = value[0]
            raise self.not_allowed(value if isinstance(value, exp.Expression) else node)

    def not_allowed(self, node: exp.Expression) -> RuleError:
        """An error naming the construct that is not allowed."""
        if isinstance(node, exp.Query | exp.Subquery):
            what = "A query (select ...)"
        elif isinstance(node, exp.Window):
            what = "A window function (over ...)"
        elif isinstance(node, exp.Cast):
            what = "A cast (the only typed values are date '...' and timestamp '...')"
        elif isinstance(node, exp.Case | exp.If):
            what = "case ... end"
        elif isinstance(node, exp.Star):
            what = "*"
        elif isinstance(node, exp.Func):
            name = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
            meta = node.meta
            if "start" in meta:
                name = self.src.text[meta["start"] : meta["end"] + 1]
            what = f"The function {name.lower()}()"
        else:
            what = f"'{self.src.snippet(node)}'"
        return self.src.error(f"{what} is not allowed in a rule", node, hint=ALLOWED)

    def describe(self, node: exp.Expression) -> str:
        """How to name an operand in a message: a field by its name, else the text."""
        if isinstance(node, exp.Column):
            return node.name
        return self.src.snippet(node)


def _comparable(a: str, b: str) -> bool:
    return a == b or {a, b} == {"date", "timestamp"}


def _mismatch_hint(wanted: str, got: str) -> str:
    if wanted in ("date", "timestamp") and got == "text":
        return f"Write a {wanted} as {wanted} 'YYYY-MM-DD', e.g. {wanted} '2011-06-01'."
    if wanted == "number" and got == "text":
        return "Write numbers without quotes, e.g. age >= 30."
    if wanted == "text":
        return "Put text values in single quotes, e.g. city = 'Paris'."
    return "Compare values of the same type, e.g. age >= 30 or city = 'Paris'."


def _build(node: exp.Expression, table: ir.Table) -> Any:
    """The Ibis expression of a checked node (typed Any: Ibis operators are loosely typed)."""
    kind = type(node)
    if kind is exp.Paren:
        return _build(node.this, table)
    if kind is exp.Column:
        return table[node.name]
    if kind in (exp.Literal, exp.Boolean, exp.Cast) or (
        kind is exp.Neg and isinstance(node.this, exp.Literal)
    ):
        value, vkind = cast(tuple[Any, str], _literal(node))
        itype = ("int64" if isinstance(value, int) else "float64") if vkind == "number" else None
        return ibis.literal(value, type=itype or _IBIS_TYPES[vkind])
    if kind in _FUNCTION_CLASSES:
        return _build_function(node, _FUNCTION_CLASSES[kind], table)
    this = _build(node.this, table)
    if kind is exp.Not:
        return ~this
    if kind is exp.Neg:
        return -this
    if kind is exp.Is:
        result = this.isnull()
    elif kind is exp.In:
        result = this.isin([_build(item, table) for item in node.expressions])
    elif kind is exp.Between:
        result = this.between(_build(node.args["low"], table), _build(node.args["high"], table))
    elif kind is exp.Like:
        result = this.like(node.expression.this)
    elif kind is exp.ILike:
        result = this.ilike(node.expression.this)
    elif kind is exp.And:
        result = this & _build(node.expression, table)
    elif kind is exp.Or:
        result = this | _build(node.expression, table)
    else:
        result = {**_COMPARISONS, **_ARITHMETIC}[kind](this, _build(node.expression, table))
    return ~result if node.args.get("negate") else result


def _build_function(node: exp.Expression, name: str, table: ir.Table) -> Any:
    """The Ibis expression of one of FUNCTIONS."""
    args = [
        _build(node.args[k], table) for k in ("this", "expression") if node.args.get(k) is not None
    ]
    args += [_build(a, table) for a in node.args.get("expressions") or []]
    if name == "round":
        digits = node.args.get("decimals")
        if digits is None:
            return args[0].round()
        return args[0].round(cast(tuple[Any, str], _literal(digits))[0])
    if name in ("coalesce", "least", "greatest"):
        return getattr(ibis, name)(*args)
    if name == "nullif":
        return args[0].nullif(args[1])
    method = {"trim": "strip"}.get(name, name)
    return getattr(args[0], method)()


def parse_rule(rule: str, fields: Mapping[str, str], *, setting: str) -> exp.Expression:
    """Parse and check a rule against `fields` (name -> one of KINDS): syntax, allowed
    constructs, field names and types. Field names in the returned tree are rewritten to the
    fields' exact names. Raises RuleError, naming `setting`, on any problem."""
    tree = _parse(rule, setting)
    _Checker(_Source(rule, setting), fields).condition(tree)
    return tree


def rule_fields(rule: str, *, setting: str = "segment rule") -> set[str]:
    """The lower-cased field names a rule refers to (the rule is parsed, not checked), so a
    ready-made segmentation can be offered only when the data has its fields."""
    tree = _parse(rule, setting)
    columns = tree.find_all(exp.Column)
    return {c.name.lower() for c in columns if isinstance(c.this, exp.Identifier)}


def field_name(column: str) -> str:
    """A source column name as a field name: lower case, words joined by underscores (so a
    rule may name the field either way)."""
    name = re.sub(r"[^0-9a-z]+", "_", column.lower()).strip("_") or "column"
    return f"a_{name}" if name[0].isdigit() else name


def field_kind(dtype: idt.DataType) -> str:
    """The rule kind of an Ibis type (one of KINDS), or the type's name when rules cannot
    use it."""
    if dtype.is_string():
        return "text"
    if dtype.is_integer():
        return "int"
    if dtype.is_floating() or dtype.is_decimal():
        return "float"
    if dtype.is_boolean():
        return "bool"
    if dtype.is_date():
        return "date"
    if dtype.is_timestamp():
        return "timestamp"
    return str(dtype)


def compile_rule(rule: str, table: ir.Table, *, setting: str) -> ir.BooleanValue:
    """The rule as a boolean Ibis expression over `table` (one row per customer, one column
    per field), where a customer for whom the rule is unknown (NULL) is not a member."""
    fields = {name: field_kind(dtype) for name, dtype in table.schema().items()}
    tree = parse_rule(rule, fields, setting=setting)
    return cast(ir.BooleanValue, _build(tree, table).fill_null(False))


def _functions_table() -> str:
    rows = [line.split(": ", 1) for line in FUNCTIONS.values()]
    return "\n".join(f"| `{call}` | {what} |" for call, what in rows)


RULES_DOC = f"""## Rule language

A rule is a condition over a customer's fields (traits, predictions and attributes), written
like the `WHERE` clause of SQL. A customer is a member when the condition is true for them.

```
age between 25 and 34 and top_category = 'Wines' and churn_risk != 'high'
rfm_segment in ('Champions', 'Loyal')
clv_percentile >= 0.8
city is not null and lower(city) like 'san%'
total_value / orders > 50
last_purchase >= date '2011-06-01'
not (gender = 'F')
```

| construct | written as |
|---|---|
| fields | `age`, `AGE` (names ignore case), `"Total_Value"` (double quotes allowed) |
| numbers, text | `12`, `0.5`, `-3`, `'Paris'` (single quotes; `''` for a quote inside) |
| other values | `true`, `false`, `date '2011-06-01'`, `timestamp '2011-06-01 08:30:00'` |
| comparisons | `=` (or `==`), `!=` (or `<>`), `<`, `<=`, `>`, `>=` |
| combining | `and`, `or`, `not`, parentheses |
| lists, ranges | `x in ('a', 'b')`, `x not in (1, 2)`, `x between 1 and 5` (ends included) |
| missing values | `x is null`, `x is not null` |
| patterns | `x like 'San%'` (`%` any text, `_` any one character), `not like`, `ilike` |
| arithmetic | `+`, `-`, `*`, `/` (dividing by zero gives a missing value) |
| functions | see below |

Values compared with each other must be of one type: text with text, numbers with numbers,
true/false with true/false, dates and timestamps with each other. `age = 'old'` is an error
("age is a number, 'old' is text"), and so is `last_purchase >= '2011-06-01'` (write
`date '2011-06-01'`).

**Missing values.** A comparison with a missing value is neither true nor false, and a customer
for whom the rule ends up unknown is not a member: a customer with no recorded gender is in
neither `gender = 'F'` nor `not (gender = 'F')`. Add `or gender is null` to take them in.

**Not allowed:** anything else, such as queries (`select ...`), `*`, casts, `case`, other
functions, several statements (`;`) and qualified names (`t.x`). A rule that breaks these rules,
names an unknown field or mixes types stops the run with an error that names the setting, shows
the rule with a caret under the problem and, for a misspelt field, the closest field names.

| function | gives |
|---|---|
{_functions_table()}
"""
