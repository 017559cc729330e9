"""Locators on StorageEncrypted assets (spec §3.8): a streaming (OnDemandOrigin) locator is refused
with 400 until a delivery policy is linked — the origin could only refuse every request for it —
while SAS locators (uploading and downloading the ciphertext) stay allowed."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tests.support.client import BASE, CONTENT_TYPE, ApiClient

JSON = {"Content-Type": "application/json"}
SAS, ORIGIN = 1, 2
NO_DYNAMIC_ENCRYPTION, ALL_STREAMING = 2, 0x1 | 0x2 | 0x4 | 0x10


def q(key: str) -> str:
    return quote(key, safe="")


def asset(api: ApiClient, options: int) -> dict[str, Any]:
    return api.create("Assets", "Asset", {"Name": f"options-{options}", "Options": options})


def access_policy(api: ApiClient, permissions: int = 1) -> dict[str, Any]:
    return api.create("AccessPolicies", "AccessPolicy",
                      {"Name": f"p{permissions}", "DurationInMinutes": 60.0, "Permissions": permissions})


def post_locator(api: ApiClient, a: dict[str, Any], pol: dict[str, Any], kind: int) -> Any:
    body = api.encode("Locator", {"Type": kind, "AssetId": a["Id"], "AccessPolicyId": pol["Id"]})
    return api.request("POST", "Locators", body, **{"Content-Type": CONTENT_TYPE[api.dialect]})


def link_clear_policy(api: ApiClient, a: dict[str, Any]) -> dict[str, Any]:
    policy = api.create("AssetDeliveryPolicies", "AssetDeliveryPolicy", {
        "Name": "clear", "AssetDeliveryPolicyType": NO_DYNAMIC_ENCRYPTION, "AssetDeliveryProtocol": ALL_STREAMING})
    r = api.request("POST", f"Assets('{q(a['Id'])}')/$links/DeliveryPolicies",
                    json.dumps({"uri": f"{BASE}AssetDeliveryPolicies('{q(policy['Id'])}')"}).encode(), **JSON)
    assert r.status_code == 204, r.text
    return policy


def test_storage_encrypted_asset_needs_a_delivery_policy_before_a_streaming_locator(any_api: ApiClient) -> None:
    api = any_api
    encrypted, read = asset(api, 1), access_policy(api, 1)
    r = post_locator(api, encrypted, read, ORIGIN)
    assert r.status_code == 400, (r.status_code, r.text)
    code, message = api.error(r)
    assert code == "BadRequest", (code, message)
    for fragment in (encrypted["Id"], "StorageEncrypted", "OnDemandOrigin", "link an AssetDeliveryPolicy",
                     "$links/DeliveryPolicies"):
        assert fragment in message, (fragment, message)
    assert api.list(f"Assets('{q(encrypted['Id'])}')/Locators") == []  # nothing was stored
    # SAS locators (read and write) stay allowed without a policy
    for permissions in (1, 2):
        r = post_locator(api, encrypted, access_policy(api, permissions), SAS)
        assert r.status_code == 201, (r.status_code, r.text)
    # once a delivery policy is linked, the same request succeeds
    link_clear_policy(api, encrypted)
    r = post_locator(api, encrypted, read, ORIGIN)
    assert r.status_code == 201, (r.status_code, r.text)
    made = api.entity(r)
    assert made["Type"] == ORIGIN and made["AssetId"] == encrypted["Id"] and made["Path"].endswith("/")


def test_other_asset_options_get_streaming_locators_without_a_policy(api: ApiClient) -> None:
    read = access_policy(api, 1)
    for options in (0, 2, 4):  # None, CommonEncryptionProtected, EnvelopeEncryptionProtected
        r = post_locator(api, asset(api, options), read, ORIGIN)
        assert r.status_code == 201, (options, r.status_code, r.text)
