"""Shared fixtures: a prepared runtime on SQLite (default) or PostgreSQL, the REST app, accounts
and format-aware API clients.

Select PostgreSQL with OPENAMS_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test — the
suite then creates a throw-away database next to it and drops it afterwards. With
OPENAMS_REQUIRE_SERVICES=1 (CI), a service that is not reachable fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from openams.config import load
from openams.entities.defaults import ensure_account_defaults
from openams.rest.app import RestApp
from openams.runtime import Runtime
from tests.support.client import ApiClient

REQUIRE_SERVICES = os.environ.get("OPENAMS_REQUIRE_SERVICES") == "1"

# Every runtime, server and worker a test session starts shares one database per session, so they
# must share the key that encrypts account keys at rest (as a real multi-machine install does).
if not os.environ.get("OPENAMS_SERVER_KEY"):
    from cryptography.fernet import Fernet

    os.environ["OPENAMS_SERVER_KEY"] = Fernet.generate_key().decode("ascii")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under `--dist loadgroup`, a grouped test whose id has no `@group` tag fails: xdist could not
    group it, so every worker would build each group's shared fixtures (a whole server plus encodes)
    and the run would take far longer while still passing (pytest 9.2 broke it: pytest-xdist#1386)."""
    if getattr(item.config.option, "loadgroup", False) and item.get_closest_marker("xdist_group") \
            and "@" not in item.nodeid:
        pytest.fail(f"--dist loadgroup is not grouping with this pytest/pytest-xdist pair ({item.nodeid} has "
                    "no @group tag); install the versions pyproject.toml pins", pytrace=False)


def service_missing(reason: str) -> None:
    """Skip a test for a missing service — or fail when CI said every service must be there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def db_url() -> Iterator[str]:
    """The session runtime's database: a throw-away one on PostgreSQL, else "" (SQLite). `openams
    serve` processes the tests start get databases of their own (see tests/support/database.py)."""
    from tests.support.database import private_database

    with private_database("openams_test") as url:
        yield url


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory, db_url: str) -> Iterator[Runtime]:
    data_dir: Path = tmp_path_factory.mktemp("openams-data")
    rt = Runtime(load(data_dir=data_dir, database_url=db_url or None, create_dev_account=False,
                      public_url="http://openams.test"))
    rt.prepare()
    rt.ready = True
    yield rt
    rt.engine.dispose()


@pytest.fixture(scope="session")
def app(runtime: Runtime) -> RestApp:
    return RestApp(runtime)


@pytest.fixture(scope="session")
def http(app: RestApp) -> TestClient:
    return TestClient(app, base_url="http://openams.test", raise_server_exceptions=True)


def _new_account(runtime: Runtime, prefix: str = "acct"):  # type: ignore[no-untyped-def]
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with runtime.engine.connect() as conn:
        conn.info["write"] = True
        with conn.begin():
            account = runtime.accounts.create(conn, name)
            ensure_account_defaults(conn, account, runtime.settings)
    return account


@pytest.fixture
def account(runtime: Runtime):  # type: ignore[no-untyped-def]
    return _new_account(runtime)


@pytest.fixture
def other_account(runtime: Runtime):  # type: ignore[no-untyped-def]
    return _new_account(runtime, "other")


@pytest.fixture
def api(http: TestClient, account) -> ApiClient:  # type: ignore[no-untyped-def]
    """A JSON-light client for a fresh account."""
    return ApiClient.for_account(http, account, "light")


@pytest.fixture(params=["light", "verbose", "atom"])
def any_api(request: pytest.FixtureRequest, http: TestClient, account) -> ApiClient:  # type: ignore[no-untyped-def]
    """The same client in each of the three payload dialects."""
    return ApiClient.for_account(http, account, request.param)
