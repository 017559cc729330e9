"""Parser tests for `$filter`, `$orderby` and `$select` (no database involved)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from openams.errors import InvalidQuery
from openams.odata.query import (
    MAX_DEPTH,
    MAX_QUERY_LENGTH,
    Binary,
    Call,
    Literal,
    PropertyRef,
    Unary,
    parse_filter,
    parse_orderby,
    parse_select,
)


def P(path: str) -> PropertyRef:
    return PropertyRef(path)


def S(value: str) -> Literal:
    return Literal("Edm.String", value)


def I(value: int) -> Literal:  # noqa: E743 - short helper name reads well in expected trees
    return Literal("Edm.Int32", value)


END = "; expected an operator or the end of the expression"


def error_of(text: str, parse=parse_filter) -> str:
    with pytest.raises(InvalidQuery) as info:
        parse(text)
    return info.value.message


# ------------------------------------------------------------------------------------------------
# precedence and associativity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A or B and C", Binary("or", P("A"), Binary("and", P("B"), P("C")))),
        ("A and B or C", Binary("or", Binary("and", P("A"), P("B")), P("C"))),
        ("A eq 1 and B ne 2",
         Binary("and", Binary("eq", P("A"), I(1)), Binary("ne", P("B"), I(2)))),
        ("A add B mul C", Binary("add", P("A"), Binary("mul", P("B"), P("C")))),
        ("(A add B) mul C", Binary("mul", Binary("add", P("A"), P("B")), P("C"))),
        ("A sub B sub C", Binary("sub", Binary("sub", P("A"), P("B")), P("C"))),
        ("A div B mod C", Binary("mod", Binary("div", P("A"), P("B")), P("C"))),
        ("A add 1 gt B mul 2",
         Binary("gt", Binary("add", P("A"), I(1)), Binary("mul", P("B"), I(2)))),
        ("not A eq B", Binary("eq", Unary("not", P("A")), P("B"))),
        ("not (A eq B)", Unary("not", Binary("eq", P("A"), P("B")))),
        ("not not A", Unary("not", Unary("not", P("A")))),
        ("-A mul B", Binary("mul", Unary("-", P("A")), P("B"))),
        ("- (A add B)", Unary("-", Binary("add", P("A"), P("B")))),
        ("A or B or C", Binary("or", Binary("or", P("A"), P("B")), P("C"))),
        ("A ge 1 and A le 2 or A lt 0",
         Binary("or", Binary("and", Binary("ge", P("A"), I(1)), Binary("le", P("A"), I(2))),
                Binary("lt", P("A"), I(0)))),
        ("((A))", P("A")),
    ],
)
def test_precedence(text, expected):
    assert parse_filter(text) == expected


def test_keywords_are_case_insensitive():
    node = parse_filter("Name EQ 'x' AND NOT IsPrimary Or StartsWith(Name, 'y') eq TRUE")
    assert node == Binary(
        "or",
        Binary("and", Binary("eq", P("Name"), S("x")), Unary("not", P("IsPrimary"))),
        Binary("eq", Call("startswith", (P("Name"), S("y"))), Literal("Edm.Boolean", True)),
    )


def test_property_paths_and_whitespace():
    assert parse_filter("Foo/Bar/Baz\teq\n1") == Binary("eq", P("Foo/Bar/Baz"), I(1))
    assert parse_filter("  _x1 eq  2 ") == Binary("eq", P("_x1"), I(2))


def test_positions_are_recorded():
    node = parse_filter("Name eq 'x' and Size gt 3")
    assert isinstance(node, Binary)
    assert node.pos == 12
    assert node.left.pos == 5
    assert node.left.left.pos == 0
    assert node.right.right.pos == 24


def test_long_or_chain_is_allowed():
    text = " or ".join(f"Id eq '{i}'" for i in range(400))
    node = parse_filter(text)
    assert isinstance(node, Binary) and node.op == "or"


# ------------------------------------------------------------------------------------------------
# literals


@pytest.mark.parametrize(
    ("text", "type_name", "value"),
    [
        ("'abc'", "Edm.String", "abc"),
        ("''", "Edm.String", ""),
        ("'it''s'", "Edm.String", "it's"),
        ("''''", "Edm.String", "'"),
        ("'a b, (c) eq d'", "Edm.String", "a b, (c) eq d"),
        ("42", "Edm.Int32", 42),
        ("-42", "Edm.Int32", -42),
        ("2147483648", "Edm.Int64", 2147483648),
        ("-2147483648", "Edm.Int32", -2147483648),
        ("12L", "Edm.Int64", 12),
        ("12l", "Edm.Int64", 12),
        ("-9223372036854775808L", "Edm.Int64", -(2**63)),
        ("1.5", "Edm.Double", 1.5),
        ("1.5d", "Edm.Double", 1.5),
        ("1.5D", "Edm.Double", 1.5),
        ("2f", "Edm.Double", 2.0),
        (".5", "Edm.Double", 0.5),
        ("1e3", "Edm.Double", 1000.0),
        ("1.5E-2", "Edm.Double", 0.015),
        ("-2.5", "Edm.Double", -2.5),
        ("2.0m", "Edm.Decimal", Decimal("2.0")),
        ("-0.25M", "Edm.Decimal", Decimal("-0.25")),
        ("true", "Edm.Boolean", True),
        ("false", "Edm.Boolean", False),
        ("True", "Edm.Boolean", True),
        ("null", "null", None),
        ("datetime'2015-01-01T00:00:00'", "Edm.DateTime", datetime(2015, 1, 1, tzinfo=UTC)),
        ("DateTime'2015-01-01T10:20:30.5Z'", "Edm.DateTime",
         datetime(2015, 1, 1, 10, 20, 30, 500000, tzinfo=UTC)),
        ("datetimeoffset'2015-01-01T02:00:00+02:00'", "Edm.DateTimeOffset",
         datetime(2015, 1, 1, tzinfo=UTC)),
        ("guid'0F8FAD5B-D9CB-469F-A165-70867728950E'", "Edm.Guid", "0f8fad5b-d9cb-469f-a165-70867728950e"),
        ("time'PT1S'", "Edm.Time", timedelta(seconds=1)),
        ("time'P1DT2H'", "Edm.Time", timedelta(days=1, hours=2)),
        ("binary'0aff'", "Edm.Binary", b"\x0a\xff"),
        ("X'0AFF'", "Edm.Binary", b"\x0a\xff"),
    ],
)
def test_literals(text, type_name, value):
    node = parse_filter(f"X eq {text}")
    assert node == Binary("eq", P("X"), Literal(type_name, value))


def test_unary_minus_folds_into_numbers():
    assert parse_filter("X eq - 5") == Binary("eq", P("X"), I(-5))
    assert parse_filter("X eq -(2.5)") == Binary("eq", P("X"), Literal("Edm.Double", -2.5))
    assert parse_filter("X sub -1") == Binary("sub", P("X"), I(-1))


# ------------------------------------------------------------------------------------------------
# functions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("substringof('a', Name)", Call("substringof", (S("a"), P("Name")))),
        ("startswith(Name, 'a')", Call("startswith", (P("Name"), S("a")))),
        ("endswith(Name, 'a')", Call("endswith", (P("Name"), S("a")))),
        ("indexof(Name, 'a') eq 1", Binary("eq", Call("indexof", (P("Name"), S("a"))), I(1))),
        ("length(Name) eq 1", Binary("eq", Call("length", (P("Name"),)), I(1))),
        ("tolower(Name) eq 'a'", Binary("eq", Call("tolower", (P("Name"),)), S("a"))),
        ("toupper(Name) eq 'A'", Binary("eq", Call("toupper", (P("Name"),)), S("A"))),
        ("trim(Name) eq 'a'", Binary("eq", Call("trim", (P("Name"),)), S("a"))),
        ("substring(Name, 1) eq 'a'", Binary("eq", Call("substring", (P("Name"), I(1))), S("a"))),
        ("substring(Name, 1, 2) eq 'a'",
         Binary("eq", Call("substring", (P("Name"), I(1), I(2))), S("a"))),
        ("concat(Name, 'x') eq 'a'", Binary("eq", Call("concat", (P("Name"), S("x"))), S("a"))),
        ("replace(Name, 'x', 'y') eq 'a'",
         Binary("eq", Call("replace", (P("Name"), S("x"), S("y"))), S("a"))),
        ("year(Created) eq 1", Binary("eq", Call("year", (P("Created"),)), I(1))),
        ("month(Created) eq 1", Binary("eq", Call("month", (P("Created"),)), I(1))),
        ("day(Created) eq 1", Binary("eq", Call("day", (P("Created"),)), I(1))),
        ("hour(Created) eq 1", Binary("eq", Call("hour", (P("Created"),)), I(1))),
        ("minute(Created) eq 1", Binary("eq", Call("minute", (P("Created"),)), I(1))),
        ("second(Created) eq 1", Binary("eq", Call("second", (P("Created"),)), I(1))),
        ("round(Price) eq 1", Binary("eq", Call("round", (P("Price"),)), I(1))),
        ("floor(Price) eq 1", Binary("eq", Call("floor", (P("Price"),)), I(1))),
        ("ceiling(Price) eq 1", Binary("eq", Call("ceiling", (P("Price"),)), I(1))),
        ("concat(concat(A, ' '), tolower(B)) eq 'x'",
         Binary("eq", Call("concat", (Call("concat", (P("A"), S(" "))), Call("tolower", (P("B"),)))),
                S("x"))),
        ("not endswith(Name,'x')", Unary("not", Call("endswith", (P("Name"), S("x"))))),
    ],
)
def test_functions(text, expected):
    assert parse_filter(text) == expected


def test_function_names_are_case_insensitive():
    assert parse_filter("ToLower(Name) eq 'a'") == Binary("eq", Call("tolower", (P("Name"),)), S("a"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("length() eq 1", "length() takes 1 argument, not 0, at position 0"),
        ("length(A, B) eq 1", "length() takes 1 argument, not 2, at position 0"),
        ("X eq substring(A)", "substring() takes 2 or 3 arguments, not 1, at position 5"),
        ("replace(A, B) eq 'x'", "replace() takes 3 arguments, not 2, at position 0"),
        ("frobnicate(A) eq 1", "unknown function 'frobnicate' at position 0"),
    ],
)
def test_function_arity_and_names(text, message):
    assert error_of(text) == f"$filter: {message}"


# ------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(Name eq 'x' and Size", "expected ')' at position 21, found the end of the expression"),
        ("startswith(Name, 'x' eq true", "expected ')' at position 28, found the end of the expression"),
        ("Name eq", "expected an operand at position 7, found the end of the expression"),
        ("Name eq )", "expected an operand at position 8, found ')'"),
        ("Name eq 'x' foo", "unexpected 'foo' at position 12" + END),
        ("Name eq 'x')", "unexpected ')' at position 11" + END),
        ("Name 'x'", "unexpected literal 'x' at position 5" + END),
        ("Name eq 'abc", "unterminated string literal starting at position 8"),
        ("Name eq 'it''s", "unterminated string literal starting at position 8"),
        ("Created gt datetime'2015-01-01", "unterminated datetime literal starting at position 11"),
        ("Name eq and", "expected an operand at position 8, found the keyword 'and'"),
        ("Name eq # 1", "unexpected character '#' at position 8"),
        ("Name eq 1.5e", "invalid number '1.5e' at position 8"),
        ("Name eq 12abc", "invalid number '12a' at position 8"),
        ("Foo/ eq 1", "expected a property name after '/' at position 4"),
        ("Size eq 99999999999999999999", "number 99999999999999999999 is out of range at position 8"),
        ("Size eq 1e999", "number 1e999 is out of range at position 8"),
        ("A eq 1 , B eq 2", "unexpected ',' at position 7" + END),
    ],
)
def test_syntax_errors_say_what_and_where(text, message):
    assert error_of(text) == f"$filter: {message}"


@pytest.mark.parametrize(
    "text",
    [
        "Created gt datetime'2015-13-45T00:00:00'",
        "Key eq guid'not-a-guid'",
        "Duration eq time'soon'",
        "Data eq binary'zz'",
    ],
)
def test_bad_typed_literals(text):
    message = error_of(text)
    assert message.startswith("$filter: invalid literal ")
    assert re.search(r" at position \d+$", message)


def test_empty_and_too_long():
    assert error_of("") == "$filter is empty"
    assert error_of("   ") == "$filter is empty"
    text = "Name eq '" + "x" * MAX_QUERY_LENGTH + "'"
    assert error_of(text) == f"$filter is too long ({len(text)} characters; the limit is {MAX_QUERY_LENGTH})"


def test_nesting_limit_for_parentheses():
    ok = "(" * MAX_DEPTH + "A" + ")" * MAX_DEPTH
    assert parse_filter(ok) == P("A")
    deep = "(" * (MAX_DEPTH + 1) + "A" + ")" * (MAX_DEPTH + 1)
    assert error_of(deep) == (f"$filter: expression is nested too deeply (the limit is {MAX_DEPTH} levels) "
                              f"at position {MAX_DEPTH}")


def test_nesting_limit_for_unary_and_calls():
    assert "nested too deeply" in error_of("not " * (MAX_DEPTH + 1) + "A")
    assert "nested too deeply" in error_of("tolower(" * (MAX_DEPTH + 1) + "A" + ")" * (MAX_DEPTH + 1))


def test_nesting_limit_for_flat_operator_chains():
    # No parentheses, but the tree (and its SQL) would be as deep as the chain is long.
    assert "nested too deeply" in error_of("A eq 1" + " add 1" * 500)
    parse_filter("A eq 1" + " add 1" * (MAX_DEPTH - 5))


def test_huge_inputs_fail_cleanly():
    for text in ("(" * 5000, "not " * 1900 + "A", "-" * 7000 + "1", "A add " * 1300 + "A"):
        with pytest.raises(InvalidQuery):
            parse_filter(text)


# ------------------------------------------------------------------------------------------------
# $orderby


def test_orderby():
    assert parse_orderby("Name") == [(P("Name"), False)]
    assert parse_orderby("Name desc, Created asc") == [(P("Name"), True), (P("Created"), False)]
    assert parse_orderby("year(Created) DESC,Id") == [(Call("year", (P("Created"),)), True), (P("Id"), False)]
    assert parse_orderby("Size add 1 desc") == [(Binary("add", P("Size"), I(1)), True)]
    assert parse_orderby("Foo/Bar asc") == [(P("Foo/Bar"), False)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "$orderby is empty"),
        ("Name desc asc", "$orderby: unexpected 'asc' at position 10; expected ',', 'asc', 'desc' or the end "
                          "of $orderby"),
        ("Name,", "$orderby: expected an operand at position 5, found the end of the expression"),
        (",Name", "$orderby: expected an operand at position 0, found ','"),
        ("Name desc Id", "$orderby: unexpected 'Id' at position 10; expected ',', 'asc', 'desc' or the end "
                         "of $orderby"),
        ("year(Created", "$orderby: expected ')' at position 12, found the end of the expression"),
    ],
)
def test_orderby_errors(text, message):
    assert error_of(text, parse_orderby) == message


# ------------------------------------------------------------------------------------------------
# $select


def test_select():
    assert parse_select("Name") == ["Name"]
    assert parse_select("Name, Id ,Created") == ["Name", "Id", "Created"]
    assert parse_select("Name,Name,Id") == ["Name", "Id"]
    assert parse_select("Locators/Id,Files/*") == ["Locators/Id", "Files/*"]
    assert parse_select("*") is None
    assert parse_select("Name, *") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "$select is empty"),
        ("Name,,Id", "$select: expected a property name at position 5"),
        ("Name, ", "$select: expected a property name at position 6"),
        ("Name, 1abc", "$select: '1abc' is not a property name at position 6"),
        ("Name, Id desc", "$select: 'Id desc' is not a property name at position 6"),
        ("Na-me", "$select: 'Na-me' is not a property name at position 0"),
        ("Foo/", "$select: 'Foo/' is not a property name at position 0"),
    ],
)
def test_select_errors(text, message):
    assert error_of(text, parse_select) == message


def test_select_too_long():
    assert error_of(",".join(["Name"] * 3000), parse_select).startswith("$select is too long")
