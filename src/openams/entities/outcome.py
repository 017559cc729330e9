"""Side effects outside the database that must follow the fate of its transaction.

Blob containers live in storage, not in the database: a container created for a new asset is
removed again if the transaction rolls back, and deleting an asset's container waits until the
transaction commits. So a failing request or `$batch` changeset never leaves storage out of step
with the rows (no orphan containers, no asset row restored without its media).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, event

log = logging.getLogger("openams.entities")

# Per Connection object, not `conn.info`: that dict belongs to the pooled DBAPI connection and
# outlives the Connection (and the listeners attached to it).
Actions = dict[str, list[Callable[[], Any]]]
_PENDING: weakref.WeakKeyDictionary[Connection, Actions] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _pending(conn: Connection) -> Actions:
    with _LOCK:
        pending = _PENDING.get(conn)
        if pending is None:
            pending = _PENDING[conn] = {"commit": [], "rollback": []}
            event.listen(conn, "commit", lambda c: _run(c, "commit"))
            event.listen(conn, "rollback", lambda c: _run(c, "rollback"))
    return pending


def _run(conn: Connection, outcome: str) -> None:
    with _LOCK:
        pending = _PENDING.get(conn)
    if not pending:
        return
    actions = pending[outcome]
    pending["commit"], pending["rollback"] = [], []
    for action in actions:
        try:
            action()
        except Exception:  # the transaction's outcome is decided; report, do not undo it
            log.exception("storage clean-up after %s failed", outcome)


def on_commit(conn: Connection, action: Callable[[], Any]) -> None:
    """Run `action` when the current transaction commits (dropped if it rolls back)."""
    _pending(conn)["commit"].append(action)


def on_rollback(conn: Connection, action: Callable[[], Any]) -> None:
    """Run `action` if the current transaction rolls back (dropped if it commits)."""
    _pending(conn)["rollback"].append(action)
