"""`$filter`/`$orderby` translated to SQL and run against real SQLite and PostgreSQL tables.

Each filter is executed on both databases and must select the same rows, so the translation is
checked for behaviour (LIKE escaping, integer division, rounding, date parts, null rules), not for
the text of the SQL.

PostgreSQL: `OPENAMS_TEST_POSTGRES_URL` (default: the local `test` database). The tests are skipped
when it is unreachable, unless `OPENAMS_REQUIRE_SERVICES=1`, which turns that into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from openams.errors import InvalidQuery
from openams.odata.query import MAX_DEPTH, parse_filter, parse_orderby, to_sql, to_sql_order

POSTGRES_URL = os.environ.get("OPENAMS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC; refuses naive input so a lost time zone is caught."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = sa.MetaData()
TABLE = sa.Table(
    f"odata_query_test_{uuid.uuid4().hex[:12]}",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(100)),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("price", sa.Float),
    sa.Column("amount", sa.Numeric(10, 2)),
    sa.Column("is_default", sa.Boolean),
    sa.Column("created", UtcDateTime),
    sa.Column("modified", sa.DateTime(timezone=True)),
    sa.Column("key", sa.Uuid(as_uuid=True)),
    sa.Column("options", sa.Integer),
    sa.Column("label", sa.String(50)),
)

PROPERTIES = {
    "Id": ("id", "Edm.String"),
    "Name": ("name", "Edm.String"),
    "Size": ("size", "Edm.Int64"),
    "Count": ("count", "Edm.Int32"),
    "Price": ("price", "Edm.Double"),
    "Amount": ("amount", "Edm.Decimal"),
    "IsDefault": ("is_default", "Edm.Boolean"),
    "Created": ("created", "Edm.DateTime"),
    "Modified": ("modified", "Edm.DateTimeOffset"),
    "Key": ("key", "Edm.Guid"),
    "Options": ("options", "Edm.Int32"),
    "Info/Label": ("label", "Edm.String"),
}


def resolve(path: str) -> tuple[sa.ColumnElement[Any], str]:
    if path not in PROPERTIES:
        raise InvalidQuery(f"$filter: '{path}' is not a property")
    column, type_name = PROPERTIES[path]
    return TABLE.c[column], type_name


def row_id(n: int) -> str:
    return f"nb:cid:UUID:{uuid.UUID(int=n)}"


def key(n: int) -> uuid.UUID:
    return uuid.UUID(f"{n:08d}-aaaa-4bbb-8ccc-dddddddddddd")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


ROWS: list[dict[str, Any]] = [
    {"n": 1, "name": "Media Encoder Standard", "size": 5_000_000_000, "count": 3, "price": 1.5,
     "amount": Decimal("10.25"), "is_default": True, "created": utc(2015, 1, 1), "options": None,
     "label": "Media"},
    {"n": 2, "name": "50%_off", "size": 10, "count": -7, "price": -2.5, "amount": Decimal("0.50"),
     "is_default": False, "created": utc(2016, 6, 15, 13, 45, 30, 750000), "options": 1, "label": "x_y"},
    {"n": 3, "name": "50 percent off", "size": 20, "count": 8, "price": 2.5, "amount": Decimal("-3.75"),
     "is_default": False, "created": utc(2016, 12, 31, 23, 59, 59), "options": 2, "label": "off"},
    {"n": 4, "name": None, "size": 0, "count": 0, "price": None, "amount": None, "is_default": None,
     "created": None, "options": None, "label": None},
    {"n": 5, "name": "Thumbnail Encoder", "size": -1, "count": 12, "price": 3.7, "amount": Decimal("7.00"),
     "is_default": True, "created": utc(2020, 2, 29, 6, 7, 8), "options": 3, "label": "it's"},
    {"n": 6, "name": "  Padded  ", "size": 2**40, "count": 5, "price": -0.4, "amount": Decimal("1.00"),
     "is_default": False, "created": utc(2014, 5, 5, 5, 5, 5), "options": 0, "label": "Pad"},
]
ALL = {row["n"] for row in ROWS}


def _insert_rows(conn: sa.Connection) -> None:
    records = []
    for row in ROWS:
        record = {k: v for k, v in row.items() if k != "n"}
        record["id"] = row_id(row["n"])
        record["modified"] = row["created"]
        record["key"] = key(row["n"]) if row["created"] else None
        records.append(record)
    conn.execute(TABLE.insert(), records)


def _postgres_engine() -> sa.Engine:
    # A session time zone far from UTC shows whether date parts of timestamptz columns are read in UTC.
    engine = sa.create_engine(POSTGRES_URL, connect_args={"options": "-c timezone=Asia/Kolkata",
                                                          "connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = f"PostgreSQL is unreachable at {POSTGRES_URL}: {str(exc).splitlines()[0]}"
        if os.environ.get("OPENAMS_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} (OPENAMS_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    return engine


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    eng = sa.create_engine("sqlite://") if request.param == "sqlite" else _postgres_engine()
    metadata.create_all(eng)
    try:
        with eng.begin() as conn:
            _insert_rows(conn)
        yield eng
    finally:
        metadata.drop_all(eng)
        eng.dispose()


def select_rows(engine: sa.Engine, text: str) -> set[int]:
    where = to_sql(parse_filter(text), resolve)
    with engine.connect() as conn:
        ids = conn.execute(sa.select(TABLE.c.id).where(where)).scalars().all()
    return {uuid.UUID(i.removeprefix("nb:cid:UUID:")).int for i in ids}


def ordered_rows(engine: sa.Engine, orderby: str, where: str | None = None) -> list[int]:
    query = sa.select(TABLE.c.id).order_by(*to_sql_order(parse_orderby(orderby), resolve))
    if where:
        query = query.where(to_sql(parse_filter(where), resolve))
    with engine.connect() as conn:
        ids = conn.execute(query).scalars().all()
    return [uuid.UUID(i.removeprefix("nb:cid:UUID:")).int for i in ids]


CASES: list[tuple[str, set[int]]] = [
    # forms the Azure Media Services SDK sends
    (f"Id eq '{row_id(2)}'", {2}),
    ("IsDefault eq true", {1, 5}),
    ("startswith(Name,'Media')", {1}),
    ("indexof(Name,'x') gt 1", set()),
    ("indexof(Name,'Encoder') gt 1", {1, 5}),
    ("Name eq 'Media Encoder Standard'", {1}),
    # comparisons and null rules
    ("Name ne 'Media Encoder Standard'", ALL - {1}),
    ("Name eq null", {4}),
    ("null eq Name", {4}),
    ("Name ne null", ALL - {4}),
    ("not (Name eq null)", ALL - {4}),
    ("Name gt null", set()),
    ("null eq null", ALL),
    ("null ne null", set()),
    ("Name eq Info/Label", {4}),
    ("Name ne Info/Label", ALL - {4}),
    ("Name gt 'Media'", {1, 5}),
    ("Name lt '50%'", {3, 6}),
    ("Name ge '50%_off' and Name le 'Media Encoder Standard'", {1, 2}),
    ("'Media Encoder Standard' eq Name", {1}),
    ("1 eq 1", ALL),
    ("1 eq 2", set()),
    # booleans
    ("IsDefault", {1, 5}),
    ("not IsDefault", {2, 3, 6}),
    ("IsDefault eq false", {2, 3, 6}),
    ("IsDefault ne true", {2, 3, 4, 6}),
    ("IsDefault eq null", {4}),
    ("not (IsDefault eq true)", {2, 3, 6}),
    ("IsDefault and Size gt 0", {1}),
    ("IsDefault or Count eq 8", {1, 3, 5}),
    ("(Count gt 4) eq false", {1, 2, 4}),
    ("true", ALL),
    ("false", set()),
    ("not false and true", ALL),
    # Int64
    ("Size gt 4294967296", {1, 6}),
    ("Size eq 5000000000L", {1}),
    ("Size eq 5000000000", {1}),
    ("Size eq 10", {2}),
    ("Size lt 0", {5}),
    ("Size le 0L", {4, 5}),
    ("Count eq 5000000000", set()),
    ("Count lt 5000000000L", ALL),
    # integers against doubles and decimals: the literal must not be rounded to the column type
    ("Size gt 1.5", {1, 2, 3, 6}),
    ("Count gt 7.5", {3, 5}),
    ("Count lt 7.5d", {1, 2, 4, 6}),
    ("Count eq 3.0", {1}),
    ("Price gt 2", {3, 5}),
    ("Price eq 1.5", {1}),
    ("Price lt -1", {2}),
    ("Price eq 1.5m", {1}),
    ("Amount gt 1.0m", {1, 5}),
    ("Amount eq 0.5m", {2}),
    ("Amount lt 0", {3}),
    ("Amount ge 1.5", {1, 5}),
    ("Amount eq 7", {5}),
    # arithmetic
    ("Count add 1 eq 4", {1}),
    ("Count sub 10 eq -17", {2}),
    ("Count mul 2 eq 16", {3}),
    ("Count div 2 eq 6", {5}),
    ("Count div 2 eq -3", {2}),
    ("Count mod 5 eq 3", {1, 3}),
    ("Count mod 5 eq -2", {2}),
    ("Price mul 2 gt 5", {5}),
    ("Price div 2 eq 0.75", {1}),
    ("Count div 2.0 eq 1.5", {1}),
    ("Count div Options eq 4", {3, 5}),
    ("Count mod Options eq 0", {2, 3, 5}),
    ("-Count eq 7", {2}),
    ("- Price gt 2", {2}),
    ("Size add Count gt 5000000000", {1, 6}),
    ("Count add Price gt 4", {1, 3, 5, 6}),
    ("Count add 1 mul 2 eq 10", {3}),
    ("(Count add 1) mul 2 eq 18", {3}),
    ("Count sub (Count sub 1) eq 1", ALL),
    ("Count sub Count sub 1 eq -1", ALL),
    ("2 mul 3 eq 6", ALL),
    # rounding
    ("round(Price) eq 3", {3}),
    ("round(Price) eq -3", {2}),
    ("round(Price) eq 2", {1}),
    ("round(Price) eq 4", {5}),
    ("floor(Price) eq -1", {6}),
    ("floor(Price) eq -3", {2}),
    ("floor(Price) eq 3", {5}),
    ("ceiling(Price) eq 0", {6}),
    ("ceiling(Price) eq -2", {2}),
    ("ceiling(Price) eq 4", {5}),
    ("ceiling(Price) eq 2", {1}),
    ("floor(Amount) eq -4", {3}),
    ("ceiling(Amount) eq 11", {1}),
    ("round(Amount) eq 10", {1}),
    ("round(Count) eq 3", {1}),
    ("floor(Price div 2) eq 1", {3, 5}),
    # string functions, LIKE escaping
    ("startswith(Name,'50%')", {2}),
    ("startswith(Name,'50_')", set()),
    ("endswith(Name,'Encoder')", {5}),
    ("endswith(Name,'_off')", {2}),
    ("endswith(Name,'%off')", set()),
    ("substringof('50%_off', Name)", {2}),
    ("substringof('Encoder', Name)", {1, 5}),
    ("substringof('_', Name)", {2}),
    ("substringof('/', Name)", set()),
    ("not substringof('Encoder', Name)", {2, 3, 6}),
    ("substringof('Encoder', Name) eq false", {2, 3, 6}),
    ("substringof(Info/Label, Name)", {1, 3, 6}),
    ("startswith(Name, Info/Label)", {1}),
    ("endswith(Name, Info/Label)", {3}),
    ("endswith(Info/Label, '_y')", {2}),
    ("indexof(Name, 'Media') eq 0", {1}),
    ("indexof(Name, 'zzz') eq -1", ALL - {4}),
    ("indexof(Name, Info/Label) eq 11", {3}),
    ("length(Name) eq 7", {2}),
    ("length(Name) gt 16", {1, 5}),
    ("tolower(Name) eq 'thumbnail encoder'", {5}),
    ("toupper(Name) eq '50%_OFF'", {2}),
    ("trim(Name) eq 'Padded'", {6}),
    ("concat(Name, '!') eq '50%_off!'", {2}),
    ("concat(concat(Name, ' '), Info/Label) eq 'Media Encoder Standard Media'", {1}),
    ("concat('x', 'y') eq 'xy'", ALL),
    ("replace(Name, ' ', '-') eq 'Media-Encoder-Standard'", {1}),
    ("substring(Name, 6) eq 'Encoder Standard'", {1}),
    ("substring(Name, 0, 5) eq 'Media'", {1}),
    ("substring(Name, 1, 2) eq '0%'", {2}),
    ("substring(Name, Options) eq '0%_off'", {2}),
    ("substring(Name, Options, Options) eq ' p'", {3}),
    ("Info/Label eq 'it''s'", {5}),
    ("startswith(tolower(Name), 'media') and endswith(Name, 'Standard')", {1}),
    # dates
    ("Created gt datetime'2016-01-01T00:00:00'", {2, 3, 5}),
    ("Created lt datetime'2015-01-01T00:00:00Z'", {6}),
    ("Created eq datetime'2015-01-01T00:00:00'", {1}),
    ("Created ge datetimeoffset'2016-06-15T15:45:30.75+02:00'", {2, 3, 5}),
    ("Created gt datetimeoffset'2016-06-15T15:45:30.75+02:00'", {3, 5}),
    ("Created ne datetime'2015-01-01T00:00:00'", ALL - {1}),
    ("datetime'2016-01-01T00:00:00' lt Created", {2, 3, 5}),
    ("Modified gt datetime'2016-01-01T00:00:00Z'", {2, 3, 5}),
    ("Modified eq datetime'2020-02-29T06:07:08'", {5}),
    ("year(Created) eq 2016", {2, 3}),
    ("month(Created) eq 6", {2}),
    ("day(Created) eq 29", {5}),
    ("hour(Created) eq 13", {2}),
    ("minute(Created) eq 45", {2}),
    ("second(Created) eq 30", {2}),
    ("second(Created) eq 59", {3}),
    ("year(Created) eq 2016 and month(Created) eq 12 and day(Created) eq 31", {3}),
    ("hour(Modified) eq 13", {2}),
    ("day(Modified) eq 31 and hour(Modified) eq 23", {3}),
    ("year(Modified) eq 2016", {2, 3}),
    # guids (a Uuid column compared with guid and string literals)
    (f"Key eq guid'{key(2)}'", {2}),
    (f"Key eq '{str(key(2)).upper()}'", {2}),
    (f"Key ne guid'{key(2)}'", ALL - {2}),
    ("Key eq null", {4}),
    # property paths
    ("Info/Label eq 'Media'", {1}),
    # long or-lists are flattened, not nested
    (" or ".join([f"Id eq '{row_id(2)}'", f"Id eq '{row_id(5)}'",
                  *(f"Count eq {n}" for n in range(100, 400))]), {2, 5}),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:60] for c in CASES])
def test_filter_selects(engine: sa.Engine, text: str, expected: set[int]) -> None:
    assert select_rows(engine, text) == expected


def test_orderby_runs(engine: sa.Engine) -> None:
    assert ordered_rows(engine, "Count desc") == [5, 3, 6, 1, 4, 2]
    assert ordered_rows(engine, "Count") == [2, 4, 1, 6, 3, 5]
    assert ordered_rows(engine, "year(Created) desc, Count asc", where="Created ne null") == [5, 2, 3, 1, 6]
    assert ordered_rows(engine, "length(Name) asc", where="Name ne null") == [2, 6, 3, 5, 1]
    assert ordered_rows(engine, "IsDefault desc, Size", where="IsDefault ne null") == [5, 1, 2, 3, 6]
    assert ordered_rows(engine, "Info/Label", where="Info/Label ne null") == [1, 6, 5, 3, 2]


# ------------------------------------------------------------------------------------------------
# type checking and other translation errors (no database needed)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Name eq 5",
         "cannot compare property 'Name' (Edm.String) with literal 5 (Edm.Int32) using 'eq' at position 5"),
        ("Size eq 'abc'",
         "cannot compare property 'Size' (Edm.Int64) with literal 'abc' (Edm.String) using 'eq' at "
         "position 5"),
        ("Created gt 5", "cannot compare property 'Created' (Edm.DateTime) with literal 5 (Edm.Int32)"),
        ("Created gt '2015-01-01'", "cannot compare property 'Created' (Edm.DateTime) with literal"),
        ("IsDefault eq 1", "cannot compare property 'IsDefault' (Edm.Boolean) with literal 1 (Edm.Int32)"),
        ("Name eq Size", "cannot compare property 'Name' (Edm.String) with property 'Size' (Edm.Int64)"),
        ("Key eq 'not-a-guid'",
         "literal 'not-a-guid' is not a GUID (compared with property 'Key') at position 7"),
        ("Name add 1 eq 2", "'add' needs numbers, but property 'Name' is Edm.String at position 5"),
        ("Name and IsDefault", "'and' needs conditions (Edm.Boolean), but property 'Name' is Edm.String at "
                               "position 0"),
        ("not Size", "'not' needs conditions (Edm.Boolean), but property 'Size' is Edm.Int64 at position 4"),
        ("Name",
         "$filter must be a condition (Edm.Boolean), but property 'Name' is Edm.String at position 0"),
        ("Size add 1", "$filter must be a condition (Edm.Boolean), but the 'add' expression is Edm.Int64"),
        ("-Name eq 'x'", "'-' needs a number, but property 'Name' is Edm.String at position 0"),
        ("Count mod 1.5 eq 1", "'mod' needs integer operands at position 6"),
        ("Count div 0 eq 1", "division by zero at position 6"),
        ("Count mod 0 eq 1", "division by zero at position 6"),
        ("year(Name) eq 1", "year() needs a date, but property 'Name' is Edm.String at position 5"),
        ("length(Size) eq 1", "length() needs a string, but property 'Size' is Edm.Int64 at position 7"),
        ("substring(Name, 'a') eq 'x'", "substring() needs an integer, but literal 'a' is Edm.String"),
        ("substring(Name, 1.5) eq 'x'", "substring() needs an integer, but literal 1.5 is Edm.Double"),
        ("substring(Name, -1) eq 'x'", "substring() needs a non-negative integer at position 16"),
        ("substring(Name, 1, -1) eq 'x'", "substring() needs a non-negative integer at position 19"),
        ("tolower(null) eq 'x'", "tolower() does not accept null arguments at position 8"),
        ("round(Name) eq 1", "round() needs a number, but property 'Name' is Edm.String"),
        ("startswith(Size, 'x')", "startswith() needs a string, but property 'Size' is Edm.Int64"),
        ("Nope eq 1", "'Nope' is not a property"),
        ("Name eq 'x' or Nope/Deeper eq 1", "'Nope/Deeper' is not a property"),
    ],
)
def test_type_errors(text: str, message: str) -> None:
    node = parse_filter(text)
    with pytest.raises(InvalidQuery) as info:
        to_sql(node, resolve)
    assert message in info.value.message
    assert info.value.message.startswith("$filter")
    assert info.value.status == 400


def test_orderby_errors() -> None:
    with pytest.raises(InvalidQuery, match=r"^\$orderby: expected a property .* constant at position 0$"):
        to_sql_order(parse_orderby("1 desc"), resolve)
    with pytest.raises(InvalidQuery, match="'Nope' is not a property"):
        to_sql_order(parse_orderby("Name, Nope"), resolve)
    with pytest.raises(InvalidQuery, match=r"\$orderby: length\(\) needs a string"):
        to_sql_order(parse_orderby("length(Size)"), resolve)


# ------------------------------------------------------------------------------------------------
# compiled SQL details that matter beyond row results


def compile_sql(text: str, dialect: sa.Dialect) -> str:
    return str(to_sql(parse_filter(text), resolve).compile(dialect=dialect))


def test_literals_bind_with_the_column_type() -> None:
    clause = to_sql(parse_filter("Created gt datetime'2015-01-01T00:00:00'"), resolve)
    params = [bp for bp in clause.get_children() if isinstance(bp, sa.BindParameter)]
    assert len(params) == 1
    assert isinstance(params[0].type, UtcDateTime)
    assert params[0].value == utc(2015, 1, 1)


def test_like_is_escaped_on_both_dialects() -> None:
    for dialect in (sqlite.dialect(), postgresql.psycopg.dialect()):
        sql = compile_sql("substringof('50%_off', Name)", dialect)
        assert "LIKE" in sql and "ESCAPE '/'" in sql
    compiled = to_sql(parse_filter("substringof('50%_off', Name)"), resolve).compile(dialect=sqlite.dialect())
    assert list(compiled.params.values()) == ["50/%/_off"]


def test_dialect_specific_functions() -> None:
    assert "instr(" in compile_sql("indexof(Name, 'x') eq 1", sqlite.dialect())
    assert "strpos(" in compile_sql("indexof(Name, 'x') eq 1", postgresql.psycopg.dialect())
    assert "timezone(" in compile_sql("hour(Modified) eq 1", postgresql.psycopg.dialect())
    assert "timezone(" not in compile_sql("hour(Created) eq 1", postgresql.psycopg.dialect())
    assert "STRFTIME" in compile_sql("hour(Created) eq 1", sqlite.dialect())


def test_equality_with_a_literal_stays_index_friendly() -> None:
    sql = compile_sql("Name eq 'x'", postgresql.psycopg.dialect())
    assert "DISTINCT" not in sql and " = " in sql


def _on_deep_stack(frames: int, work: Any) -> Any:
    """Run `work` with `frames` Python frames already in use, as inside a web framework's stack."""
    return work() if frames == 0 else _on_deep_stack(frames - 1, work)


@pytest.mark.parametrize(
    "text",
    [
        "tolower(" * (MAX_DEPTH - 2) + "Name" + ")" * (MAX_DEPTH - 2) + " eq 'x'",
        "substring(" * (MAX_DEPTH - 2) + "Name" + ", 1)" * (MAX_DEPTH - 2) + " eq 'x'",
        "Count" + " add 1" * (MAX_DEPTH - 2) + " eq 1",
        "(" * (MAX_DEPTH // 2 - 2) + "IsDefault" + " or Count eq 1) and IsDefault" * (MAX_DEPTH // 2 - 2),
    ],
    ids=["calls", "substring", "arithmetic", "logical"],
)
def test_deepest_accepted_filter_compiles(text: str) -> None:
    query = sa.select(TABLE.c.id).where(to_sql(parse_filter(text), resolve))
    for dialect in (sqlite.dialect(), postgresql.psycopg.dialect()):
        sql = _on_deep_stack(300, lambda d=dialect: str(query.compile(dialect=d)))
        assert sql.startswith("SELECT")
