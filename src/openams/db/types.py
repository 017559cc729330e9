"""Column types that keep EDM values exact on both SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Float
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC.

    SQLite has no time zones and PostgreSQL's `timestamp` none either; storing naive UTC keeps
    comparisons (`$filter=Created gt datetime'…'`) and ordering right on both.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            return value
        raise TypeError(f"expected datetime, got {type(value).__name__}")

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # defensive: SQLite rows written by other tools
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)


class Duration(TypeDecorator[timedelta]):
    """Edm.Time stored as seconds (float)."""

    impl = Float
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return value.total_seconds() if isinstance(value, timedelta) else float(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> timedelta | None:
        return None if value is None else timedelta(seconds=value)
