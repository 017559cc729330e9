"""`openams account delete NAME` removes every row the account owns — entities, links, service
principals, task leases and its protection certificates (whose sealed private keys unwrap its
content keys) — and its assets' blob containers, and nothing of other accounts."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select
from starlette.testclient import TestClient

from openams.db.tables import metadata, task_leases
from openams.entities.assets import account_containers
from openams.entities.protection import certificate_for_type, find_certificate
from openams.runtime import Runtime
from tests.conftest import _new_account
from tests.support.client import BASE, ApiClient
from tests.support.protection import make_key

JSON = {"Content-Type": "application/json"}
CLI = [sys.executable, "-c", "from openams.cli import main; main()"]


def q(key: str) -> str:
    return quote(key, safe="")


def post(api: ApiClient, path: str, props: dict[str, Any]) -> Any:
    r = api.request("POST", path, json.dumps(props).encode(), **JSON)
    assert r.status_code in (201, 204), (path, r.status_code, r.text)
    return r.json() if r.status_code == 201 else None


def owned_rows(runtime: Runtime, account_id: str) -> dict[str, int]:
    """Rows per table (every table with an account_id column) that belong to the account."""
    counts: dict[str, int] = {}
    with runtime.engine.connect() as conn:
        for table in metadata.sorted_tables:
            if "account_id" in table.c:
                n = conn.execute(select(func.count()).select_from(table)
                                 .where(table.c.account_id == account_id)).scalar_one()
                if n:
                    counts[table.name] = n
    return counts


def populate(runtime: Runtime, api: ApiClient, account_id: str) -> str:
    """A protected, published asset as clients make one; returns the envelope certificate's thumbprint."""
    asset = post(api, "Assets", {"Name": "doomed"})
    key, _clear = make_key(api, 4)  # makes the account's EnvelopeEncryption certificate
    make_key(api, 1)  # and its StorageEncryption one
    post(api, f"Assets('{q(asset['Id'])}')/$links/ContentKeys", {"uri": f"{BASE}ContentKeys('{q(key['Id'])}')"})
    option = post(api, "ContentKeyAuthorizationPolicyOptions", {
        "Name": "open", "KeyDeliveryType": 2, "Restrictions": [{"Name": "open", "KeyRestrictionType": 0}]})
    policy = post(api, "ContentKeyAuthorizationPolicies", {"Name": "p"})
    post(api, f"ContentKeyAuthorizationPolicies('{q(policy['Id'])}')/$links/Options",
         {"uri": f"{BASE}ContentKeyAuthorizationPolicyOptions('{q(option['Id'])}')"})
    delivery = post(api, "AssetDeliveryPolicies", {"Name": "aes", "AssetDeliveryPolicyType": 3,
                                                   "AssetDeliveryProtocol": 4})
    post(api, f"Assets('{q(asset['Id'])}')/$links/DeliveryPolicies",
         {"uri": f"{BASE}AssetDeliveryPolicies('{q(delivery['Id'])}')"})
    read = post(api, "AccessPolicies", {"Name": "read", "DurationInMinutes": 60.0, "Permissions": 1})
    post(api, "Locators", {"Type": 2, "AssetId": asset["Id"], "AccessPolicyId": read["Id"]})
    with runtime.engine.connect() as conn:
        conn.info["write"] = True
        with conn.begin():
            conn.execute(task_leases.insert().values(task_id="nb:tid:UUID:lease-of-a-deleted-account",
                                                     account_id=account_id, worker="w",
                                                     expires=datetime.now(UTC) + timedelta(minutes=5)))
    return key["ProtectionKeyId"]


def test_account_delete_leaves_no_rows_behind(runtime: Runtime, http: TestClient) -> None:
    doomed, survivor = _new_account(runtime, "doomed"), _new_account(runtime, "keep")
    with runtime.engine.connect() as conn:
        conn.info["write"] = True
        with conn.begin():
            runtime.accounts.add_client(conn, doomed.name)
    thumbprint = populate(runtime, ApiClient.for_account(http, doomed), doomed.id)
    kept = certificate_for_type(runtime.engine, survivor, 4, runtime.settings)
    before = owned_rows(runtime, doomed.id)
    for table in ("protection_certificates", "task_leases", "api_clients", "links", "e_contentkeys", "e_assets",
                  "e_contentkeyauthorizationpolicyoptions", "e_locators"):
        assert table in before, (table, before)
    assert before["protection_certificates"] == 2
    post(ApiClient.for_account(http, survivor), "Assets", {"Name": "kept"})
    survivor_before = owned_rows(runtime, survivor.id)
    with runtime.engine.connect() as conn:
        doomed_media, kept_media = account_containers(conn, doomed.id), account_containers(conn, survivor.id)
    assert doomed_media and kept_media and all(runtime.storage.container_exists(*c) for c in doomed_media + kept_media)

    settings = runtime.settings
    out = subprocess.run([*CLI, "account", "delete", doomed.name, "--yes", "--data-dir", str(settings.data_dir),
                          *(["--database-url", settings.database_url] if settings.database_url else [])],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"deleted account {doomed.name}" in out.stdout
    assert f"removed {len(doomed_media)} of {len(doomed_media)} asset containers" in out.stdout
    assert not any(runtime.storage.container_exists(*c) for c in doomed_media)  # a reused name finds nothing
    assert all(runtime.storage.container_exists(*c) for c in kept_media)

    assert owned_rows(runtime, doomed.id) == {}
    assert find_certificate(runtime.engine, doomed.id, thumbprint) is None
    assert owned_rows(runtime, survivor.id) == survivor_before  # the other account keeps everything
    assert find_certificate(runtime.engine, survivor, kept.thumbprint) == kept
