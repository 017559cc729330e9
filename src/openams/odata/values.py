"""EDM values: parsing what clients send and formatting what the service returns.

In Python an EDM value is: `str` (String, Guid — lower-case), `int` (integer types), `float`
(Double/Single), `Decimal`, `bool`, an aware UTC `datetime` (DateTime, DateTimeOffset), a
`timedelta` (Time), `bytes` (Binary), a `dict` (complex) or a `list` (collections).

Parsing is lenient the way WCF Data Services was: numbers and booleans may arrive as strings, dates
come in several forms (ISO with or without a zone, `/Date(ms)/`, the US `MM/DD/YYYY hh:mm:ss AM`
form). Anything that still cannot be read as the declared type is a `ValueError` with a message
naming what was expected; callers turn it into a 400.
"""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from .edm import INTEGER_TYPES, Model, Property

MIN_DATETIME = datetime(1, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_INT_RANGES = {
    "Edm.Byte": (0, 255),
    "Edm.SByte": (-128, 127),
    "Edm.Int16": (-(2**15), 2**15 - 1),
    "Edm.Int32": (-(2**31), 2**31 - 1),
    "Edm.Int64": (-(2**63), 2**63 - 1),
}

_MS_DATE = re.compile(r"^\\?/Date\((-?\d+)([+-]\d{4})?\)\\?/$")
_ISO_DATE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)
_US_DATE = re.compile(
    r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?$"
)
_ISO_DURATION = re.compile(
    r"^(-)?P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)
_CLOCK_DURATION = re.compile(r"^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?$")


# ------------------------------------------------------------------------------------------------
# parsing


def parse_datetime(text: str) -> datetime:
    """Read a date in any of the forms clients send; zone-less means UTC."""
    s = text.strip()
    m = _MS_DATE.match(s)
    if m:
        return _EPOCH + timedelta(milliseconds=int(m.group(1)))
    m = _ISO_DATE.match(s)
    if m:
        year, month, day, hh, mi, ss, frac, zone = m.groups()
        micro = int((frac or "0")[:6].ljust(6, "0"))
        dt = datetime(int(year), int(month), int(day), int(hh or 0), int(mi or 0), int(ss or 0), micro)
        if zone and zone.upper() != "Z":
            sign = 1 if zone[0] == "+" else -1
            digits = zone[1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            return (dt - sign * offset).replace(tzinfo=UTC) if dt.year > 1 else dt.replace(tzinfo=UTC)
        return dt.replace(tzinfo=UTC)
    m = _US_DATE.match(s)
    if m:
        month, day, year, hh, mi, ss, ampm = m.groups()
        hour = int(hh or 0)
        if ampm:
            hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
        return datetime(int(year), int(month), int(day), hour, int(mi or 0), int(ss or 0), tzinfo=UTC)
    raise ValueError(f"'{text}' is not a date (use ISO 8601, e.g. 2026-01-31T12:00:00Z)")


def parse_duration(text: str) -> timedelta:
    """ISO 8601 duration (`PT45S`, `P1DT2H`) or a clock form (`00:00:02`, `1.02:03:04.5`)."""
    s = text.strip()
    m = _ISO_DURATION.match(s)
    if m and s.upper() not in ("P", "PT", "-P", "-PT"):
        neg, d, h, mi, sec = m.groups()
        td = timedelta(days=float(d or 0), hours=float(h or 0), minutes=float(mi or 0), seconds=float(sec or 0))
        return -td if neg else td
    m = _CLOCK_DURATION.match(s)
    if m:
        neg, d, h, mi, sec, frac = m.groups()
        td = timedelta(days=int(d or 0), hours=int(h), minutes=int(mi), seconds=int(sec or 0),
                       microseconds=int((frac or "0")[:6].ljust(6, "0")))
        return -td if neg else td
    raise ValueError(f"'{text}' is not a duration (use ISO 8601, e.g. PT45S)")


def parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        low = raw.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    raise ValueError(f"{raw!r} is not a boolean (use true or false)")


def parse_guid(raw: Any) -> str:
    if isinstance(raw, uuid.UUID):
        return str(raw)
    if isinstance(raw, str):
        try:
            return str(uuid.UUID(raw.strip()))
        except ValueError:
            pass
    raise ValueError(f"{raw!r} is not a GUID")


def coerce_primitive(type_name: str, raw: Any) -> Any:
    """Convert a JSON/XML/literal value to the Python value of an EDM primitive type."""
    if raw is None:
        return None
    if type_name == "Edm.String":
        if isinstance(raw, str):
            return raw
        if isinstance(raw, bool):
            return "true" if raw else "false"
        if isinstance(raw, (int, float, Decimal)):
            return str(raw)
        raise ValueError(f"{_show(raw)} is not a string")
    if type_name in INTEGER_TYPES:
        value = _to_int(raw)
        lo, hi = _INT_RANGES[type_name]
        if not lo <= value <= hi:
            raise ValueError(f"{value} is out of range for {type_name}")
        return value
    if type_name in ("Edm.Double", "Edm.Single"):
        if isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not a number")
        if isinstance(raw, (int, float, Decimal)):
            return float(raw)
        if isinstance(raw, str):
            s = raw.strip().rstrip("dDfF") if raw.strip().lower() not in ("inf", "-inf", "nan") else raw
            try:
                return float(s)
            except ValueError:
                pass
        raise ValueError(f"{_show(raw)} is not a number")
    if type_name == "Edm.Decimal":
        if isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not a decimal")
        try:
            return Decimal(str(raw).strip().rstrip("mM"))
        except InvalidOperation:
            raise ValueError(f"{_show(raw)} is not a decimal") from None
    if type_name == "Edm.Boolean":
        return parse_bool(raw)
    if type_name in ("Edm.DateTime", "Edm.DateTimeOffset"):
        if isinstance(raw, datetime):
            return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
        if isinstance(raw, str):
            return parse_datetime(raw)
        raise ValueError(f"{_show(raw)} is not a date")
    if type_name == "Edm.Time":
        if isinstance(raw, timedelta):
            return raw
        if isinstance(raw, str):
            return parse_duration(raw)
        raise ValueError(f"{_show(raw)} is not a duration")
    if type_name == "Edm.Guid":
        return parse_guid(raw)
    if type_name == "Edm.Binary":
        if isinstance(raw, bytes):
            return raw
        if isinstance(raw, str):
            try:
                return base64.b64decode(raw, validate=True)
            except ValueError:
                raise ValueError(f"{_show(raw)} is not base64") from None
        raise ValueError(f"{_show(raw)} is not binary")
    raise ValueError(f"unsupported type {type_name}")


def coerce(model: Model, prop: Property, raw: Any) -> Any:
    """Convert a raw payload value to the Python value of `prop` (primitive, complex, collection)."""
    if raw is None:
        if prop.collection:
            return []
        return None
    if prop.collection:
        items = raw
        if isinstance(raw, dict) and "results" in raw:  # verbose JSON collection wrapper
            items = raw["results"]
        if not isinstance(items, list):
            raise ValueError(f"{prop.name}: expected a collection")
        single = Property(prop.name, prop.type)
        return [coerce(model, single, item) for item in items]
    if prop.is_complex:
        if not isinstance(raw, dict):
            raise ValueError(f"{prop.name}: expected an object of type {prop.type}")
        return coerce_complex(model, prop.type, raw)
    try:
        value = coerce_primitive(prop.type, raw)
    except ValueError as exc:
        raise ValueError(f"{prop.name}: {exc}") from None
    if prop.max_length is not None and isinstance(value, str) and len(value) > prop.max_length:
        raise ValueError(f"{prop.name}: longer than {prop.max_length} characters")
    return value


def coerce_complex(model: Model, type_name: str, raw: dict[str, Any]) -> dict[str, Any]:
    ctype = model.complex_type(type_name)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("__metadata", "odata.type") or key.startswith("@") or "@odata." in key:
            continue
        p = ctype.property(key)
        if p is None:
            raise ValueError(f"'{key}' is not a property of {type_name}")
        out[p.name] = coerce(model, p, value)
    for p in ctype.properties:
        out.setdefault(p.name, [] if p.collection else None)
    return out


def parse_literal(text: str) -> tuple[str, Any]:
    """Parse a URI literal (`'abc'`, `12`, `12L`, `1.5d`, `true`, `datetime'…'`, `guid'…'`, `null`).

    Returns (edm type name or 'null', value).
    """
    s = text.strip()
    if s == "null":
        return "null", None
    if len(s) >= 2 and s[0] == "'" and s[-1] == "'":
        return "Edm.String", s[1:-1].replace("''", "'")
    low = s.lower()
    for prefix, type_name in (("datetime'", "Edm.DateTime"), ("datetimeoffset'", "Edm.DateTimeOffset"),
                              ("guid'", "Edm.Guid"), ("time'", "Edm.Time"), ("binary'", "Edm.Binary"),
                              ("x'", "Edm.Binary")):
        if low.startswith(prefix) and s.endswith("'"):
            inner = s[len(prefix):-1]
            if type_name == "Edm.Binary" and prefix in ("binary'", "x'"):
                return type_name, bytes.fromhex(inner)
            return type_name, coerce_primitive(type_name, inner)
    if low in ("true", "false"):
        return "Edm.Boolean", low == "true"
    if re.fullmatch(r"-?\d+[lL]", s):
        return "Edm.Int64", int(s[:-1])
    if re.fullmatch(r"-?\d+", s):
        value = int(s)
        return ("Edm.Int32" if -(2**31) <= value < 2**31 else "Edm.Int64"), value
    if re.fullmatch(r"-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[mM]", s):
        return "Edm.Decimal", Decimal(s[:-1])
    if re.fullmatch(r"-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[dDfF]?", s):
        return "Edm.Double", float(s.rstrip("dDfF"))
    raise ValueError(f"'{text}' is not a valid literal")


def format_literal(type_name: str, value: Any) -> str:
    """The URI literal form of a key value (`'nb:cid:…'`, `guid'…'`, `12`)."""
    if type_name == "Edm.Guid":
        return f"guid'{value}'"
    if type_name in INTEGER_TYPES:
        return str(value) + ("L" if type_name == "Edm.Int64" else "")
    return "'" + str(value).replace("'", "''") + "'"


# ------------------------------------------------------------------------------------------------
# formatting


def format_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and `Z` (what .NET, JavaScript and Python all read back)."""
    v = value.astimezone(UTC) if value.tzinfo else value
    return f"{v.year:04d}-" + v.strftime("%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"


def format_duration(value: timedelta) -> str:
    total = value.total_seconds()
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rem = divmod(total, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, seconds = divmod(rem, 60)
    out = f"{sign}P"
    if days:
        out += f"{int(days)}D"
    out += "T"
    if hours:
        out += f"{int(hours)}H"
    if minutes:
        out += f"{int(minutes)}M"
    if seconds or out.endswith("T"):
        out += (f"{seconds:.7f}".rstrip("0").rstrip(".") if seconds % 1 else str(int(seconds))) + "S"
    return out


def ms_date(value: datetime) -> str:
    """The verbose-JSON date form `/Date(<ms since epoch>)/` (escaped later by the writer)."""
    v = value if value.tzinfo else value.replace(tzinfo=UTC)
    delta = v - _EPOCH
    ms = delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
    return f"/Date({ms})/"


def to_json(type_name: str, value: Any, *, verbose: bool) -> Any:
    """A primitive value as OData v3 JSON writes it (Int64 and Decimal as strings)."""
    if value is None:
        return None
    if type_name in ("Edm.DateTime", "Edm.DateTimeOffset"):
        return ms_date(value) if verbose else format_datetime(value)
    if type_name in ("Edm.Int64", "Edm.Decimal"):
        return str(value)
    if type_name in ("Edm.Double", "Edm.Single"):
        return float(value)
    if type_name == "Edm.Time":
        return format_duration(value)
    if type_name == "Edm.Binary":
        return base64.b64encode(value).decode("ascii")
    return value


def to_text(type_name: str, value: Any) -> str:
    """A primitive value as XML text (Atom `m:properties`, `$value`)."""
    if type_name == "Edm.Boolean":
        return "true" if value else "false"
    if type_name in ("Edm.DateTime", "Edm.DateTimeOffset"):
        return format_datetime(value)
    if type_name == "Edm.Time":
        return format_duration(value)
    if type_name == "Edm.Binary":
        return base64.b64encode(value).decode("ascii")
    if type_name in ("Edm.Double", "Edm.Single"):
        f = float(value)
        return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)
    return str(value)


def _to_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not an integer")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        s = raw.strip().rstrip("lL")
        if re.fullmatch(r"[+-]?\d+", s):
            return int(s)
    raise ValueError(f"{_show(raw)} is not an integer")


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."
