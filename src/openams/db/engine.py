"""Engine creation and schema migration for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import QueuePool

MIGRATIONS = Path(__file__).parent / "migrations"
_migrate_lock = threading.Lock()


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'openams.db').resolve()}"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for the database: WAL and a busy timeout for SQLite, a pool for PostgreSQL."""
    if url.startswith("sqlite"):
        # a small pool: PRAGMAs run once per connection, and closing does not checkpoint the WAL
        engine = create_engine(url, connect_args={"timeout": 120, "check_same_thread": False},
                               poolclass=QueuePool, pool_size=8, max_overflow=8, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # SQLite's driver opens transactions lazily; BEGIN is issued in the "begin" hook below
            # so that a transaction holds its write lock from the start (no upgrade deadlocks).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA case_sensitive_like=ON")  # LIKE as on PostgreSQL ($filter startswith)
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Writers take the lock up front (IMMEDIATE) so they wait on the busy timeout instead
            # of failing when another writer commits between their read and their write.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, **kwargs)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent; safe while another process runs)."""
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    with _migrate_lock, engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
