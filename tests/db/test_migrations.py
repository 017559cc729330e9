"""Migrations and the model agree: upgrading a fresh database yields exactly the tables derived
from `openams.model` (so a model change without a migration fails here, not in production)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from openams.db.engine import make_engine, migrate
from openams.db.tables import ENTITY_TABLES, metadata
from openams.model import MODEL


def _fresh_url(tmp_path: Path) -> tuple[str, object]:
    pg = os.environ.get("OPENAMS_TEST_DATABASE_URL", "")
    if not pg.startswith("postgresql"):
        return f"sqlite:///{tmp_path / 'm.db'}", None
    admin = make_engine(pg)
    name = f"openams_mig_{uuid.uuid4().hex[:10]}"
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return pg.rsplit("/", 1)[0] + "/" + name, (admin, name)


def test_migrated_schema_matches_the_model(tmp_path: Path) -> None:
    url, cleanup = _fresh_url(tmp_path)
    engine = make_engine(url)
    try:
        migrate(engine)
        migrate(engine)  # idempotent: a second start changes nothing
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], f"the migrations and the model disagree: {diff}"
        # every entity set has its table, with one column per declared property
        inspector = sa.inspect(engine)
        for es in MODEL.entity_sets:
            table = ENTITY_TABLES[es.name].name
            columns = {c["name"] for c in inspector.get_columns(table)}
            missing = {p.name for p in es.entity_type.properties} - columns
            assert not missing, f"{table} lacks {missing}"
    finally:
        engine.dispose()
        if cleanup:
            admin, name = cleanup  # type: ignore[misc]
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
