"""OData v3 query options: `$filter`, `$orderby` and `$select` parsed and translated to SQL.

Parsing and translation are separate steps on purpose. The parser knows only the grammar and
produces a small typed AST, so syntax errors are reported before any model is consulted and the AST
can be tested (and reused, e.g. for `$orderby`) without a database. The translator walks the AST with
a caller-supplied `resolve(path)` that maps a property path to a column and its EDM type; it does
the type checking OData requires and emits SQLAlchemy Core expressions that behave the same on
SQLite and PostgreSQL.

Every failure is an `InvalidQuery` whose message names the option, what is wrong and the 0-based
character position in the option text, because clients (and the people debugging them) only see the
message of a 400 response.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.type_api import TypeEngine
from sqlalchemy.types import NullType, TypeDecorator

from ..errors import InvalidQuery
from .edm import INTEGER_TYPES
from .values import coerce_primitive, parse_guid, parse_literal

MAX_QUERY_LENGTH = 8000
"""Longest option text accepted; longer texts are refused before tokenizing."""
MAX_DEPTH = 50
"""Deepest expression nesting accepted (chains of one `and`/`or` count as one level).

Real filters nest a few levels. The limit exists because SQLAlchemy compiles expressions
recursively, about a dozen Python frames per nested function call, and that happens later on the
caller's (already deep) stack; 50 levels stay well inside Python's default limit of 1000 frames.
"""

# ------------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class Literal:
    """A constant. `type_name` is an `Edm.*` name, or 'null' for the untyped null literal."""

    type_name: str
    value: Any
    pos: int = field(default=-1, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class PropertyRef:
    """A property of the entity being filtered; `path` may contain `/` (`Foo/Bar`)."""

    path: str
    pos: int = field(default=-1, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Unary:
    """`not x` (op 'not') or `-x` (op '-')."""

    op: str
    operand: Node
    pos: int = field(default=-1, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Binary:
    """A binary operator; `op` is the lower-case OData keyword (`eq`, `and`, `add`, ...)."""

    op: str
    left: Node
    right: Node
    pos: int = field(default=-1, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Call:
    """A built-in function call; `name` is lower-case (`startswith`, `year`, ...)."""

    name: str
    args: tuple[Node, ...]
    pos: int = field(default=-1, compare=False, repr=False, kw_only=True)


Node = Literal | PropertyRef | Unary | Binary | Call

Resolver = Callable[[str], tuple[ColumnElement[Any], str]]
"""Maps a property path to (column expression, EDM type name); raises InvalidQuery when unknown."""

_LOGICAL = ("or", "and")
_COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
_ARITHMETIC = ("add", "sub", "mul", "div", "mod")
_PRECEDENCE: dict[str, int] = {
    "or": 1,
    "and": 2,
    **dict.fromkeys(_COMPARISONS, 3),
    "add": 4,
    "sub": 4,
    "mul": 5,
    "div": 5,
    "mod": 5,
}
_RESERVED = frozenset({*_PRECEDENCE, "not"})

_FUNCTIONS: dict[str, tuple[int, int]] = {
    "substringof": (2, 2),
    "startswith": (2, 2),
    "endswith": (2, 2),
    "indexof": (2, 2),
    "length": (1, 1),
    "tolower": (1, 1),
    "toupper": (1, 1),
    "trim": (1, 1),
    "substring": (2, 3),
    "concat": (2, 2),
    "replace": (3, 3),
    "year": (1, 1),
    "month": (1, 1),
    "day": (1, 1),
    "hour": (1, 1),
    "minute": (1, 1),
    "second": (1, 1),
    "round": (1, 1),
    "floor": (1, 1),
    "ceiling": (1, 1),
}
"""Function name → (fewest, most) arguments."""

# ------------------------------------------------------------------------------------------------
# tokenizer


@dataclass(frozen=True)
class _Token:
    kind: str
    """'ident', 'literal', '(', ')', ',', '-' or 'eof'."""
    text: str
    pos: int
    value: tuple[str, Any] | None = None
    """For literals: (EDM type name, Python value) as `values.parse_literal` returns them."""


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[lLmMdDfF]?", re.ASCII)
_TYPED_PREFIXES = frozenset({"datetime", "datetimeoffset", "guid", "time", "binary", "x"})
_PUNCTUATION = frozenset("(),")
_INT64_RANGE = (-(2**63), 2**63 - 1)


def _error(option: str, message: str, pos: int, detail: str = "") -> InvalidQuery:
    """`$filter: expected ')' at position 17, found 'x'` — positions count characters from 0."""
    return InvalidQuery(f"{option}: {message} at position {pos}{detail}")


def _tokenize(text: str, option: str) -> list[_Token]:
    """Split option text into tokens, reading literals eagerly so bad literals fail with a position."""
    return list(_scan(text, option))


def _scan(text: str, option: str) -> Iterator[_Token]:
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _PUNCTUATION:
            yield _Token(ch, ch, i)
            i += 1
        elif ch == "'":
            end = _string_end(text, i, option)
            yield _literal_token(text[i:end], i, option)
            i = end
        elif _NUMBER.match(text, i):
            i = yield from _scan_number(text, i, option)
        elif ch == "-":
            yield _Token("-", "-", i)
            i += 1
        elif _IDENT.match(text, i):
            i = yield from _scan_word(text, i, option)
        else:
            raise _error(option, f"unexpected character {ch!r}", i)
    yield _Token("eof", "", n)


def _string_end(text: str, start: int, option: str) -> int:
    """Index just past the quote closing the string literal opened at `start` ('' is a quote)."""
    i = start + 1
    while True:
        close = text.find("'", i)
        if close < 0:
            raise _error(option, "unterminated string literal starting", start)
        if text.startswith("''", close):
            i = close + 2
            continue
        return close + 1


def _scan_number(text: str, i: int, option: str) -> Iterator[_Token]:
    match = _NUMBER.match(text, i)
    assert match is not None
    end = match.end()
    if end < len(text) and (text[end].isalnum() or text[end] in "_."):
        raise _error(option, f"invalid number {text[i:end + 1]!r}", i)
    token = _literal_token(match.group(), i, option)
    yield token
    return end


def _scan_word(text: str, i: int, option: str) -> Iterator[_Token]:
    """An identifier, a property path `A/B/C`, or a typed literal such as `datetime'…'`."""
    match = _IDENT.match(text, i)
    assert match is not None
    end = match.end()
    word = match.group()
    if end < len(text) and text[end] == "'" and word.lower() in _TYPED_PREFIXES:
        close = text.find("'", end + 1)
        if close < 0:
            raise _error(option, f"unterminated {word} literal starting", i)
        yield _literal_token(text[i:close + 1], i, option)
        return close + 1
    while end < len(text) and text[end] == "/":
        segment = _IDENT.match(text, end + 1)
        if segment is None:
            raise _error(option, "expected a property name after '/'", end + 1)
        end = segment.end()
    yield _Token("ident", text[i:end], i)
    return end


def _literal_token(source: str, pos: int, option: str) -> _Token:
    try:
        type_name, value = parse_literal(source)
    except ValueError as exc:
        raise _error(option, f"invalid literal {source!r} ({exc})", pos) from None
    if isinstance(value, int) and not _INT64_RANGE[0] <= value <= _INT64_RANGE[1]:
        raise _error(option, f"number {source} is out of range", pos)
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        raise _error(option, f"number {source} is out of range", pos)
    return _Token("literal", source, pos, (type_name, value))


# ------------------------------------------------------------------------------------------------
# parser


class _Parser:
    """Precedence-climbing recursive descent over the token list.

    Binary operators are parsed in one loop per precedence level rather than one function per
    level, so each level of parentheses costs three Python frames and long `a or b or c …` chains
    cost none; together with MAX_DEPTH this keeps hostile input far from the recursion limit.
    """

    def __init__(self, text: str, option: str) -> None:
        self.option = option
        self.tokens = _tokenize(text, option)
        self.index = 0
        self.depth = 0

    # token access ------------------------------------------------------------------------------
    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "eof":
            self.index += 1
        return token

    def keyword(self) -> str | None:
        """The lower-cased word at the cursor (keywords are matched case-insensitively)."""
        token = self.peek()
        return token.text.lower() if token.kind == "ident" else None

    def error(self, message: str, token: _Token, detail: str = "") -> InvalidQuery:
        return _error(self.option, message, token.pos, detail)

    def expect(self, kind: str) -> _Token:
        token = self.peek()
        if token.kind != kind:
            raise self.error(f"expected '{kind}'", token, f", found {_describe_token(token)}")
        return self.advance()

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression is nested too deeply (the limit is {MAX_DEPTH} levels)", token)

    def leave(self) -> None:
        self.depth -= 1

    # grammar -----------------------------------------------------------------------------------
    def expression(self, min_precedence: int = 1) -> Node:
        left = self.unary()
        while True:
            op = self.keyword()
            precedence = _PRECEDENCE.get(op or "")
            if op is None or precedence is None or precedence < min_precedence:
                return left
            token = self.advance()
            right = self.expression(precedence + 1)
            left = Binary(op, left, right, pos=token.pos)

    def unary(self) -> Node:
        token = self.peek()
        op = "-" if token.kind == "-" else ("not" if self.keyword() == "not" else None)
        if op is None:
            return self.primary()
        self.advance()
        self.enter(token)
        operand = self.unary()
        self.leave()
        if op == "-" and isinstance(operand, Literal) and _is_number(operand.type_name):
            return Literal(operand.type_name, -operand.value, pos=token.pos)
        return Unary(op, operand, pos=token.pos)

    def primary(self) -> Node:
        token = self.advance()
        if token.kind == "literal":
            assert token.value is not None
            return Literal(*token.value, pos=token.pos)
        if token.kind == "(":
            self.enter(token)
            inner = self.expression()
            self.expect(")")
            self.leave()
            return inner
        if token.kind == "ident":
            return self.word(token)
        raise self.error("expected an operand", token, f", found {_describe_token(token)}")

    def word(self, token: _Token) -> Node:
        low = token.text.lower()
        if low in ("true", "false"):
            return Literal("Edm.Boolean", low == "true", pos=token.pos)
        if low == "null":
            return Literal("null", None, pos=token.pos)
        if self.peek().kind == "(":
            return self.call(token)
        if low in _RESERVED:
            raise self.error("expected an operand", token, f", found the keyword '{token.text}'")
        return PropertyRef(token.text, pos=token.pos)

    def call(self, name_token: _Token) -> Call:
        name = name_token.text.lower()
        arity = _FUNCTIONS.get(name)
        if arity is None:
            raise self.error(f"unknown function '{name_token.text}'", name_token)
        self.enter(self.advance())
        args: list[Node] = []
        if self.peek().kind != ")":
            args.append(self.expression())
            while self.peek().kind == ",":
                self.advance()
                args.append(self.expression())
        self.expect(")")
        self.leave()
        low, high = arity
        if not low <= len(args) <= high:
            wanted = str(low) if low == high else f"{low} or {high}"
            plural = "" if wanted == "1" else "s"
            raise self.error(f"{name}() takes {wanted} argument{plural}, not {len(args)},", name_token)
        return Call(name, tuple(args), pos=name_token.pos)

    def end(self) -> None:
        token = self.peek()
        if token.kind != "eof":
            raise self.error(f"unexpected {_describe_token(token)}", token,
                             "; expected an operator or the end of the expression")


def _describe_token(token: _Token) -> str:
    if token.kind == "eof":
        return "the end of the expression"
    return f"literal {token.text}" if token.kind == "literal" else f"'{token.text}'"


def _check_text(text: str, option: str) -> None:
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidQuery(f"{option} is too long ({len(text)} characters; the limit is {MAX_QUERY_LENGTH})")
    if not text.strip():
        raise InvalidQuery(f"{option} is empty")


def _check_depth(node: Node, option: str) -> None:
    """Refuse trees deeper than MAX_DEPTH, iteratively (the tree may be too deep to recurse).

    Left-deep operator chains (`1 add 1 add 1 …`) are not nested in the text, so the parser's own
    counter does not see them; translation and SQL compilation would recurse on them. Chains of a
    single `and`/`or` are exempt: they are flattened when translated, and long `Id eq 'a' or …`
    lists are a legitimate client pattern.
    """
    stack: list[tuple[Node, int]] = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _error(option, f"expression is nested too deeply (the limit is {MAX_DEPTH} levels)",
                         max(current.pos, 0))
        for child in _children(current):
            same_chain = (isinstance(current, Binary) and current.op in _LOGICAL
                          and isinstance(child, Binary) and child.op == current.op)
            stack.append((child, depth if same_chain else depth + 1))


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Call):
        return node.args
    return ()


def parse_filter(text: str) -> Node:
    """Parse a `$filter` expression into an AST (syntax only; types are checked by `to_sql`)."""
    _check_text(text, "$filter")
    parser = _Parser(text, "$filter")
    node = parser.expression()
    parser.end()
    _check_depth(node, "$filter")
    return node


def parse_orderby(text: str) -> list[tuple[Node, bool]]:
    """Parse `$orderby` (`Name desc, year(Created)`) into (expression, descending) pairs."""
    option = "$orderby"
    _check_text(text, option)
    parser = _Parser(text, option)
    items: list[tuple[Node, bool]] = []
    while True:
        node = parser.expression()
        _check_depth(node, option)
        direction = parser.keyword()
        if direction in ("asc", "desc"):
            parser.advance()
        items.append((node, direction == "desc"))
        token = parser.peek()
        if token.kind == "eof":
            return items
        if token.kind != ",":
            raise parser.error(f"unexpected {_describe_token(token)}", token,
                               "; expected ',', 'asc', 'desc' or the end of $orderby")
        parser.advance()


_SELECT_ITEM = re.compile(r"\*|[A-Za-z_][A-Za-z0-9_]*(?:/(?:[A-Za-z_][A-Za-z0-9_]*|\*))*")


def parse_select(text: str) -> list[str] | None:
    """Parse `$select` into property paths in request order; None when `*` asks for everything."""
    option = "$select"
    _check_text(text, option)
    items: list[str] = []
    everything = False
    start = 0
    for piece in text.split(","):
        item = piece.strip()
        pos = start + len(piece) - len(piece.lstrip())
        start += len(piece) + 1
        if not item:
            raise _error(option, "expected a property name", pos)
        if not _SELECT_ITEM.fullmatch(item):
            raise _error(option, f"{item!r} is not a property name", pos)
        if item == "*":
            everything = True
        items.append(item)
    return None if everything else list(dict.fromkeys(items))


# ------------------------------------------------------------------------------------------------
# SQL constructs that differ between SQLite and PostgreSQL


class _IndexOf(FunctionElement[int]):
    """0-based position of a substring, -1 when absent (OData `indexof`)."""

    type = sa.Integer()
    name = "openams_indexof"
    inherit_cache = True


@compiles(_IndexOf)
def _indexof_default(element: _IndexOf, compiler: SQLCompiler, **kw: Any) -> str:
    hay, needle = (compiler.process(arg, **kw) for arg in element.clauses.clauses)
    return f"(instr({hay}, {needle}) - 1)"


@compiles(_IndexOf, "postgresql")
def _indexof_postgresql(element: _IndexOf, compiler: SQLCompiler, **kw: Any) -> str:
    hay, needle = (compiler.process(arg, **kw) for arg in element.clauses.clauses)
    return f"(strpos({hay}, {needle}) - 1)"


class _Typed1(FunctionElement[Any]):
    """A one-argument function whose result has the argument's SQL type."""

    inherit_cache = True

    def __init__(self, arg: ColumnElement[Any]) -> None:
        super().__init__(arg)
        self.type = arg.type

    def arg_sql(self, compiler: SQLCompiler, **kw: Any) -> str:
        (arg,) = self.clauses.clauses
        return compiler.process(arg, **kw)


class _Floor(_Typed1):
    name = "openams_floor"
    inherit_cache = True


class _Ceiling(_Typed1):
    name = "openams_ceiling"
    inherit_cache = True


class _Round(_Typed1):
    name = "openams_round"
    inherit_cache = True


@compiles(_Floor)
def _floor_default(element: _Floor, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite has floor() only when built with math functions; truncate, then step down below zero.
    x = element.arg_sql(compiler, **kw)
    return f"(CAST({x} AS INTEGER) - (({x}) < CAST({x} AS INTEGER)))"


@compiles(_Ceiling)
def _ceiling_default(element: _Ceiling, compiler: SQLCompiler, **kw: Any) -> str:
    x = element.arg_sql(compiler, **kw)
    return f"(CAST({x} AS INTEGER) + (({x}) > CAST({x} AS INTEGER)))"


@compiles(_Round)
def _round_default(element: _Round, compiler: SQLCompiler, **kw: Any) -> str:
    return f"round({element.arg_sql(compiler, **kw)})"


@compiles(_Floor, "postgresql")
def _floor_postgresql(element: _Floor, compiler: SQLCompiler, **kw: Any) -> str:
    return f"floor({element.arg_sql(compiler, **kw)})"


@compiles(_Ceiling, "postgresql")
def _ceiling_postgresql(element: _Ceiling, compiler: SQLCompiler, **kw: Any) -> str:
    return f"ceil({element.arg_sql(compiler, **kw)})"


@compiles(_Round, "postgresql")
def _round_postgresql(element: _Round, compiler: SQLCompiler, **kw: Any) -> str:
    # round(double precision) rounds half to even on PostgreSQL; numeric rounds half away from zero
    # like SQLite's round(), so both databases agree.
    return f"round(CAST({element.arg_sql(compiler, **kw)} AS NUMERIC))"


class _Divide(FunctionElement[Any]):
    """`a div b`: the database's own division (integer division truncates on both databases), with
    division by zero giving NULL everywhere instead of an error on PostgreSQL only."""

    name = "openams_divide"
    inherit_cache = True

    def __init__(self, left: ColumnElement[Any], right: ColumnElement[Any], type_: TypeEngine[Any]) -> None:
        super().__init__(left, right)
        self.type = type_


@compiles(_Divide)
def _divide(element: _Divide, compiler: SQLCompiler, **kw: Any) -> str:
    left, right = (compiler.process(arg, **kw) for arg in element.clauses.clauses)
    return f"(({left}) / NULLIF({right}, 0))"


class _DatePart(FunctionElement[int]):
    """An integer date part of a UTC timestamp; subclasses fix `field` so it is part of the cache key."""

    type = sa.Integer()
    name = "openams_datepart"
    field = "year"
    inherit_cache = True


@compiles(_DatePart)
def _datepart_default(element: _DatePart, compiler: SQLCompiler, **kw: Any) -> str:
    (arg,) = element.clauses.clauses
    return compiler.process(sa.extract(element.field, arg), **kw)


@compiles(_DatePart, "postgresql")
def _datepart_postgresql(element: _DatePart, compiler: SQLCompiler, **kw: Any) -> str:
    # EXTRACT reads a timestamptz in the session time zone: convert to UTC first. EXTRACT(second)
    # includes the fraction and a cast would round it, so floor first.
    (arg,) = element.clauses.clauses
    if _is_aware_timestamp(arg.type, compiler.dialect):
        arg = sa.func.timezone("UTC", arg)
    return f"CAST(FLOOR({compiler.process(sa.extract(element.field, arg), **kw)}) AS INTEGER)"


def _is_aware_timestamp(type_: TypeEngine[Any], dialect: sa.Dialect) -> bool:
    while isinstance(type_, TypeDecorator):
        type_ = type_.load_dialect_impl(dialect)
    return isinstance(type_, sa.DateTime) and bool(type_.timezone)


_DATE_PARTS: dict[str, type[_DatePart]] = {
    name: type(f"_DatePart_{name}", (_DatePart,), {"field": name, "inherit_cache": True})
    for name in ("year", "month", "day", "hour", "minute", "second")
}

# ------------------------------------------------------------------------------------------------
# translation


_NUMBER_TYPES = INTEGER_TYPES | {"Edm.Double", "Edm.Single", "Edm.Decimal"}
_FAMILIES: dict[str, str] = {
    **dict.fromkeys(_NUMBER_TYPES, "number"),
    "Edm.String": "string",
    "Edm.Guid": "string",
    "Edm.DateTime": "datetime",
    "Edm.DateTimeOffset": "datetime",
    "Edm.Boolean": "boolean",
    "Edm.Time": "time",
    "Edm.Binary": "binary",
    "null": "null",
}
"""Types in one family compare with each other (Int32 with Double, Guid with String, ...)."""

_SQL_TYPES: dict[str, Callable[[], TypeEngine[Any]]] = {
    "Edm.String": sa.String,
    "Edm.Guid": sa.String,
    "Edm.Boolean": sa.Boolean,
    "Edm.Byte": sa.Integer,
    "Edm.SByte": sa.Integer,
    "Edm.Int16": sa.Integer,
    "Edm.Int32": sa.Integer,
    "Edm.Int64": sa.BigInteger,
    "Edm.Single": sa.Float,
    "Edm.Double": sa.Float,
    "Edm.Decimal": sa.Numeric,
    "Edm.DateTime": lambda: sa.DateTime(timezone=True),
    "Edm.DateTimeOffset": lambda: sa.DateTime(timezone=True),
    "Edm.Time": sa.Interval,
    "Edm.Binary": sa.LargeBinary,
}
"""SQL types for literals that have no column to take a type from (`1 eq 1`, function arguments)."""

_NUMBER_RANK = {"Edm.Decimal": 3, "Edm.Double": 2, "Edm.Single": 2, "Edm.Int64": 1}


def _is_number(type_name: str) -> bool:
    return type_name in _NUMBER_TYPES


def _promote(left: str, right: str) -> str:
    """Result type of arithmetic: the wider operand, integers at least Int32."""
    best = max(left, right, key=lambda t: _NUMBER_RANK.get(t, 0))
    return best if best in _NUMBER_RANK else "Edm.Int32"


def _describe(node: Node) -> str:
    if isinstance(node, PropertyRef):
        return f"property '{node.path}'"
    if isinstance(node, Literal):
        if node.type_name == "null":
            return "null"
        shown = repr(node.value) if isinstance(node.value, str) else str(node.value)
        return f"literal {shown if len(shown) <= 40 else shown[:37] + '...'}"
    if isinstance(node, Call):
        return f"{node.name}()"
    return f"the '{node.op}' expression"


@dataclass(frozen=True)
class _Typed:
    """A translated subexpression: its EDM type and SQL; `sql` is None for a literal whose SQL type
    is decided by the expression it meets (so `Created gt datetime'…'` binds with the column type)."""

    edm: str
    node: Node
    sql: ColumnElement[Any] | None

    @property
    def family(self) -> str | None:
        return _FAMILIES.get(self.edm)

    @property
    def literal(self) -> Literal | None:
        return self.node if self.sql is None and isinstance(self.node, Literal) else None


class _Translator:
    def __init__(self, resolve: Resolver, option: str) -> None:
        self.resolve = resolve
        self.option = option

    def error(self, message: str, node: Node) -> InvalidQuery:
        return _error(self.option, message, max(node.pos, 0))

    # dispatch ----------------------------------------------------------------------------------
    def translate(self, node: Node) -> _Typed:
        if isinstance(node, Literal):
            return _Typed(node.type_name, node, None)
        if isinstance(node, PropertyRef):
            column, type_name = self.resolve(node.path)
            return _Typed(type_name, node, column)
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Binary):
            if node.op in _LOGICAL:
                return self.logical(node)
            if node.op in _COMPARISONS:
                return self.compare(node)
            return self.arithmetic(node)
        return self.call(node)

    # binding literals --------------------------------------------------------------------------
    def sql(self, typed: _Typed, context: _Typed | None = None) -> ColumnElement[Any]:
        """SQL for `typed`; an unbound literal takes its SQL type from `context` where one fits."""
        if typed.sql is not None:
            return typed.sql
        literal = typed.literal
        assert literal is not None
        if literal.type_name == "null":
            return sa.null()
        if context is None or context.sql is None or isinstance(context.sql.type, NullType):
            return _default_bind(literal)
        if context.family == "number":
            return _bind_number(literal, context.edm, context.sql.type)
        return sa.literal(self.value_for(literal, context), type_=context.sql.type)

    def value_for(self, literal: Literal, context: _Typed) -> Any:
        """The literal's value as the context column's type expects it."""
        assert context.sql is not None
        value, column_type = literal.value, context.sql.type
        if context.edm == "Edm.Guid":
            try:
                value = parse_guid(value)
            except ValueError:
                raise self.error(f"{_describe(literal)} is not a GUID (compared with "
                                 f"{_describe(context.node)})", literal) from None
            if isinstance(column_type, sa.Uuid) and column_type.as_uuid:
                value = uuid.UUID(value)
        if isinstance(value, datetime) and isinstance(column_type, sa.DateTime) and not column_type.timezone:
            value = value.astimezone(UTC).replace(tzinfo=None)  # naive columns hold UTC
        return value

    def pair(self, left: _Typed, right: _Typed) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
        """SQL for two operands, each literal bound with the other side's type."""
        if left.sql is None and right.sql is None:
            bound_left = self.sql(left)
            return bound_left, self.sql(right, _Typed(left.edm, left.node, bound_left))
        return self.sql(left, right), self.sql(right, left)

    def condition(self, typed: _Typed, op: str) -> ColumnElement[Any]:
        """SQL usable as a condition; refuses non-boolean operands of and/or/not."""
        if typed.edm != "Edm.Boolean":
            needs = f"'{op}' needs conditions" if op in ("and", "or", "not") else f"{op} must be a condition"
            raise self.error(f"{needs} (Edm.Boolean), but {_describe(typed.node)} is {typed.edm}", typed.node)
        literal = typed.literal
        if literal is not None:
            return sa.true() if literal.value else sa.false()
        return self.sql(typed)

    # operators ---------------------------------------------------------------------------------
    def unary(self, node: Unary) -> _Typed:
        operand = self.translate(node.operand)
        if node.op == "not":
            return _Typed("Edm.Boolean", node, sa.not_(self.condition(operand, "not")))
        if operand.family != "number":
            raise self.error(f"'-' needs a number, but {_describe(operand.node)} is {operand.edm}", node)
        return _Typed(operand.edm, node, -self.sql(operand))

    def logical(self, node: Binary) -> _Typed:
        parts = [self.condition(self.translate(child), node.op) for child in _flatten(node)]
        combined = sa.and_(*parts) if node.op == "and" else sa.or_(*parts)
        return _Typed("Edm.Boolean", node, combined)

    def compare(self, node: Binary) -> _Typed:
        left, right = self.translate(node.left), self.translate(node.right)
        if "null" in (left.edm, right.edm):
            return _Typed("Edm.Boolean", node, self.compare_null(node.op, left, right))
        if left.family is None or right.family is None or left.family != right.family:
            raise self.error(f"cannot compare {_describe(left.node)} ({left.edm}) with "
                             f"{_describe(right.node)} ({right.edm}) using '{node.op}'", node)
        lhs, rhs = self.pair(left, right)
        return _Typed("Edm.Boolean", node, self.comparison(node.op, lhs, rhs, left, right))

    @staticmethod
    def comparison(op: str, lhs: ColumnElement[Any], rhs: ColumnElement[Any], left: _Typed,
                   right: _Typed) -> ColumnElement[bool]:
        """OData's null rules, not SQL's: `ne` is true when exactly one side is null, and `eq` of two
        nulls is true. Plain `=` is kept when one side is a literal (it cannot be null there, and
        `=` is what indexes serve)."""
        if op == "ne":
            return lhs.is_distinct_from(rhs)
        if op == "eq" and left.literal is None and right.literal is None:
            return lhs.is_not_distinct_from(rhs)
        return _COMPARE[op](lhs, rhs)

    def compare_null(self, op: str, left: _Typed, right: _Typed) -> ColumnElement[Any]:
        """`x eq null` is IS NULL; ordering against null is false, as OData defines it."""
        other = right if left.edm == "null" else left
        if other.edm == "null":
            return sa.true() if op == "eq" else sa.false()
        if op == "eq":
            return self.sql(other).is_(None)
        if op == "ne":
            return self.sql(other).is_not(None)
        return sa.false()

    def arithmetic(self, node: Binary) -> _Typed:
        left, right = self.translate(node.left), self.translate(node.right)
        for side in (left, right):
            if side.family != "number":
                raise self.error(f"'{node.op}' needs numbers, but {_describe(side.node)} is {side.edm}", node)
        if node.op == "mod" and not (left.edm in INTEGER_TYPES and right.edm in INTEGER_TYPES):
            raise self.error("'mod' needs integer operands", node)
        divisor = right.literal
        if node.op in ("div", "mod") and divisor is not None and divisor.value == 0:
            raise self.error("division by zero", node)
        result = _promote(left.edm, right.edm)
        lhs, rhs = self.pair(left, right)
        if node.op == "add":
            expr = lhs + rhs
        elif node.op == "sub":
            expr = lhs - rhs
        elif node.op == "mul":
            expr = lhs * rhs
        elif node.op == "div":
            expr = _Divide(lhs, rhs, _SQL_TYPES[result]())
        else:
            expr = lhs % sa.func.nullif(rhs, sa.literal_column("0"))
        return _Typed(result, node, expr)

    # functions ---------------------------------------------------------------------------------
    def call(self, node: Call) -> _Typed:
        args = [self.translate(arg) for arg in node.args]
        for arg in args:
            if arg.edm == "null":
                raise self.error(f"{node.name}() does not accept null arguments", arg.node)
        return getattr(self, f"fn_{node.name}")(node, args)

    def text(self, node: Call, arg: _Typed) -> ColumnElement[Any]:
        """SQL for a string argument; Guid columns are cast so string functions apply to them."""
        if arg.family != "string":
            raise self.error(f"{node.name}() needs a string, but {_describe(arg.node)} is {arg.edm}",
                             arg.node)
        sql = self.sql(arg)
        if arg.edm == "Edm.Guid" and not isinstance(sql.type, sa.String):
            sql = sa.cast(sql, sa.String)
        return sql

    def integer(self, node: Call, arg: _Typed) -> ColumnElement[Any]:
        if arg.edm not in INTEGER_TYPES:
            raise self.error(f"{node.name}() needs an integer, but {_describe(arg.node)} is {arg.edm}",
                             arg.node)
        literal = arg.literal
        if literal is not None and literal.value < 0:
            raise self.error(f"{node.name}() needs a non-negative integer", literal)
        return self.sql(arg)

    def fn_substringof(self, node: Call, args: list[_Typed]) -> _Typed:
        needle, hay = args
        hay_sql, needle_sql = self.text(node, hay), self.text(node, needle)
        if needle.literal is not None:
            return _bool(node, hay_sql.contains(needle.literal.value, autoescape=True))
        return _bool(node, _IndexOf(hay_sql, needle_sql) >= 0)

    def fn_startswith(self, node: Call, args: list[_Typed]) -> _Typed:
        hay, prefix = args
        hay_sql, prefix_sql = self.text(node, hay), self.text(node, prefix)
        if prefix.literal is not None:
            return _bool(node, hay_sql.startswith(prefix.literal.value, autoescape=True))
        return _bool(node, sa.func.substr(hay_sql, 1, sa.func.length(prefix_sql)) == prefix_sql)

    def fn_endswith(self, node: Call, args: list[_Typed]) -> _Typed:
        hay, suffix = args
        hay_sql, suffix_sql = self.text(node, hay), self.text(node, suffix)
        if suffix.literal is not None:
            return _bool(node, hay_sql.endswith(suffix.literal.value, autoescape=True))
        start = sa.func.length(hay_sql) - sa.func.length(suffix_sql) + 1
        return _bool(node, sa.and_(sa.func.length(hay_sql) >= sa.func.length(suffix_sql),
                                   sa.func.substr(hay_sql, start) == suffix_sql))

    def fn_indexof(self, node: Call, args: list[_Typed]) -> _Typed:
        hay, needle = args
        return _Typed("Edm.Int32", node, _IndexOf(self.text(node, hay), self.text(node, needle)))

    def fn_length(self, node: Call, args: list[_Typed]) -> _Typed:
        return _Typed("Edm.Int32", node, sa.func.length(self.text(node, args[0]), type_=sa.Integer()))

    def fn_tolower(self, node: Call, args: list[_Typed]) -> _Typed:
        text = self.text(node, args[0])
        return _string(node, sa.func.lower(text, type_=text.type))

    def fn_toupper(self, node: Call, args: list[_Typed]) -> _Typed:
        text = self.text(node, args[0])
        return _string(node, sa.func.upper(text, type_=text.type))

    def fn_trim(self, node: Call, args: list[_Typed]) -> _Typed:
        text = self.text(node, args[0])
        return _string(node, sa.func.trim(text, type_=text.type))

    def fn_concat(self, node: Call, args: list[_Typed]) -> _Typed:
        left, right = (self.text(node, arg) for arg in args)
        return _string(node, left.concat(right))

    def fn_replace(self, node: Call, args: list[_Typed]) -> _Typed:
        text, find, replacement = (self.text(node, arg) for arg in args)
        return _string(node, sa.func.replace(text, find, replacement, type_=text.type))

    def fn_substring(self, node: Call, args: list[_Typed]) -> _Typed:
        """OData counts from 0, SQL substr() from 1."""
        text = self.text(node, args[0])
        start_literal = args[1].literal
        start = self.integer(node, args[1])
        start = sa.literal(start_literal.value + 1, sa.Integer()) if start_literal is not None else start + 1
        if len(args) == 2:
            return _string(node, sa.func.substr(text, start, type_=text.type))
        return _string(node, sa.func.substr(text, start, self.integer(node, args[2]), type_=text.type))

    def date_part(self, node: Call, args: list[_Typed]) -> _Typed:
        (arg,) = args
        if arg.family != "datetime":
            raise self.error(f"{node.name}() needs a date, but {_describe(arg.node)} is {arg.edm}", arg.node)
        return _Typed("Edm.Int32", node, _DATE_PARTS[node.name](self.sql(arg)))

    fn_year = fn_month = fn_day = fn_hour = fn_minute = fn_second = date_part

    def rounding(self, node: Call, args: list[_Typed]) -> _Typed:
        (arg,) = args
        if arg.family != "number":
            raise self.error(f"{node.name}() needs a number, but {_describe(arg.node)} is {arg.edm}",
                             arg.node)
        sql = self.sql(arg)
        if arg.edm in INTEGER_TYPES:
            return _Typed(arg.edm, node, sql)  # already whole
        construct = {"round": _Round, "floor": _Floor, "ceiling": _Ceiling}[node.name]
        return _Typed(arg.edm, node, construct(sql))

    fn_round = fn_floor = fn_ceiling = rounding


_COMPARE: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def _bool(node: Node, sql: ColumnElement[Any]) -> _Typed:
    return _Typed("Edm.Boolean", node, sql)


def _string(node: Node, sql: ColumnElement[Any]) -> _Typed:
    return _Typed("Edm.String", node, sql)


def _flatten(node: Binary) -> list[Node]:
    """Operands of a chain of one logical operator, left to right, without recursion."""
    out: list[Node] = []
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Binary) and current.op == node.op:
            stack.append(current.right)
            stack.append(current.left)
        else:
            out.append(current)
    return out


def _default_bind(literal: Literal) -> ColumnElement[Any]:
    return sa.literal(literal.value, type_=_SQL_TYPES[literal.type_name]())


def _bind_number(literal: Literal, context_edm: str, column_type: TypeEngine[Any]) -> ColumnElement[Any]:
    """Bind a number next to a numeric column without changing its value.

    The column type is used where it can hold the value: a fractional literal bound as an integer
    column type would be cast (and rounded) by PostgreSQL, and an integer too large for the column
    would overflow, so those keep a type of their own.
    """
    value = literal.value
    if context_edm in INTEGER_TYPES:
        if literal.type_name in INTEGER_TYPES:
            try:
                coerce_primitive(context_edm, value)
            except ValueError:
                return sa.literal(value, type_=sa.BigInteger())
            return sa.literal(value, type_=column_type)
        return _default_bind(literal)
    if context_edm == "Edm.Decimal":
        return sa.literal(Decimal(str(value)), type_=column_type)
    return sa.literal(float(value), type_=column_type)


def to_sql(node: Node, resolve: Resolver, *, require_boolean: bool = True) -> ColumnElement[Any]:
    """Translate a parsed expression into a SQLAlchemy expression.

    With `require_boolean` (the `$filter` case) the expression must be a condition; the result can be
    passed to `Select.where()` directly.
    """
    translator = _Translator(resolve, "$filter" if require_boolean else "$orderby")
    typed = translator.translate(node)
    if require_boolean:
        return translator.condition(typed, "$filter")
    return translator.sql(typed)


def to_sql_order(items: list[tuple[Node, bool]], resolve: Resolver) -> list[ColumnElement[Any]]:
    """Translate parsed `$orderby` items into `order_by()` clauses.

    Null placement is left to the database (PostgreSQL sorts nulls last ascending, SQLite first);
    forcing one would stop PostgreSQL from using plain indexes for paging.
    """
    clauses: list[ColumnElement[Any]] = []
    translator = _Translator(resolve, "$orderby")
    for node, descending in items:
        if isinstance(node, Literal):
            raise translator.error("expected a property or an expression over one, not a constant", node)
        expr = translator.sql(translator.translate(node))
        clauses.append(expr.desc() if descending else expr.asc())
    return clauses
