"""Work that must run once every write of a transaction is in place, just before it commits.

A job arrives in pieces — the .NET SDK posts the Job and then `$1/Tasks` parts in one `$batch`
changeset — so it can only be validated and submitted when the whole changeset has been applied.
Entity rules register such work here; the surface runs it inside the same transaction, so a failure
still rolls everything back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

_KEY = "openams.deferred"


def defer(conn: Connection, key: str, action: Callable[[], Any]) -> None:
    """Run `action` before commit (once per key; a later registration replaces an earlier one)."""
    pending: dict[str, Callable[[], Any]] = conn.info.setdefault(_KEY, {})
    pending.pop(key, None)
    pending[key] = action


def run_deferred(conn: Connection) -> None:
    pending: dict[str, Callable[[], Any]] = conn.info.get(_KEY, {})
    try:
        while pending:
            key = next(iter(pending))
            action = pending.pop(key)
            action()
    finally:
        pending.clear()


def discard_deferred(conn: Connection) -> None:
    conn.info.pop(_KEY, None)

