"""Throw-away PostgreSQL databases for the tests (when OPENAMS_TEST_DATABASE_URL selects PostgreSQL).

One per *installation*: the session's runtime has one (the `db_url` fixture), and so has every
`openams serve` a test starts. A database is an installation's job queue too: every process on it
with `run_jobs` claims every account's queued tasks. Two test installations on one database (each
with its own data directory, so its own local storage) would run each other's tasks — and fail
them, since the input blobs live in the other one's data directory.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager


def admin_url() -> str:
    """The suite's PostgreSQL URL, or "" when the suite runs on SQLite."""
    url = os.environ.get("OPENAMS_TEST_DATABASE_URL", "")
    return url if url.startswith("postgresql") else ""


def create_database(prefix: str, base: str | None = None) -> str:
    """A new empty database on the PostgreSQL server of `base` (default: the suite's); its URL."""
    import sqlalchemy as sa

    from openams.db.engine import make_engine

    url = base or admin_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = make_engine(url)
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - depends on the machine
        from tests.conftest import service_missing

        service_missing(f"PostgreSQL at {url} is not reachable: {exc}")
    finally:
        admin.dispose()
    return f"{url.rsplit('/', 1)[0]}/{name}"


def drop_database(url: str) -> None:
    import sqlalchemy as sa

    from openams.db.engine import make_engine

    base, name = url.rsplit("/", 1)
    admin = make_engine(os.environ.get("OPENAMS_TEST_DATABASE_URL") or f"{base}/postgres")
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def private_database(prefix: str) -> Iterator[str]:
    """A database of its own (dropped afterwards) on PostgreSQL; "" (SQLite in the data directory) otherwise."""
    if not admin_url():
        yield ""
        return
    url = create_database(prefix)
    try:
        yield url
    finally:
        drop_database(url)
