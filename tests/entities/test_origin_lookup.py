"""entities.origin_lookup: what the streaming origin learns per request — the locator's account,
asset, files and serving endpoint; the filters a manifest URL names; the endpoint behind a Host
header for the cross-domain policy files."""

from __future__ import annotations

import ipaddress
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from openams.entities.origin_lookup import (
    OriginEndpoint,
    endpoint_for_host,
    find_filters,
    find_origin_target,
)
from openams.errors import BadRequest, NotFound
from openams.rest.app import RestApp
from openams.runtime import Runtime
from tests.conftest import _new_account
from tests.support.client import ApiClient
from tests.support.protection import make_key

JSON = {"Content-Type": "application/json"}


def q(key: str) -> str:
    return quote(key, safe="")


def now() -> datetime:
    return datetime.now(UTC)


def post(api: ApiClient, path: str, props: dict[str, Any]) -> dict[str, Any]:
    r = api.request("POST", path, json.dumps(props).encode(), **JSON)
    assert r.status_code in (201, 202), r.text
    return r.json()


def published(api: ApiClient, kind: int = 2, minutes: float = 60.0, **extra: Any) -> tuple[dict[str, Any], ...]:
    asset = post(api, "Assets", {"Name": "movie", "Options": 0})
    files = [post(api, "Files", {"Name": name, "ParentAssetId": asset["Id"], "ContentFileSize": str(size),
                                 "IsPrimary": primary, "MimeType": mime})
             for name, size, primary, mime in (("movie.ism", 1234, True, "application/octet-stream"),
                                               ("movie_720.mp4", 5_000_000_000, False, "video/mp4"))]
    policy = post(api, "AccessPolicies", {"Name": "read", "DurationInMinutes": minutes, "Permissions": 1})
    loc = post(api, "Locators", {"Type": kind, "AssetId": asset["Id"], "AccessPolicyId": policy["Id"], **extra})
    return asset, files, loc


def guid(loc: dict[str, Any]) -> str:
    return str(loc["Id"].rsplit(":", 1)[1])


def endpoints(api: ApiClient) -> dict[str, dict[str, Any]]:
    return {e["Name"]: e for e in api.list("StreamingEndpoints")}


# ---- find_origin_target ---------------------------------------------------------------------------------


def test_target_of_an_origin_locator(runtime: Runtime, api: ApiClient, account: Any) -> None:
    asset, _files, loc = published(api)
    target = find_origin_target(runtime.engine, guid(loc), "openams.test", now())
    assert target is not None
    assert (target.account_id, target.account_name) == (account.id, account.name)
    assert target.locator.id == loc["Id"] and target.locator.type == 2 and target.locator.guid == guid(loc)
    assert target.locator.asset_id == asset["Id"] and target.locator.start_time is None
    assert target.locator.expiration > now()
    assert target.asset.id == asset["Id"] and target.asset.name == "movie" and target.asset.options == 0
    assert target.asset.storage_account_name == asset["StorageAccountName"]
    assert target.asset.container == "asset-" + asset["Id"].rsplit(":", 1)[1]
    assert [(f.name, f.size, f.is_primary, f.mime_type) for f in target.files] == [
        ("movie.ism", 1234, True, "application/octet-stream"), ("movie_720.mp4", 5_000_000_000, False, "video/mp4")]
    assert target.file("movie_720.mp4") is target.files[1] and target.file("nope") is None
    assert target.asset.last_modified is not None and target.asset.last_modified.tzinfo is not None
    assert all(f.last_modified is not None and f.last_modified <= now() for f in target.files)
    ep = target.endpoint
    assert ep is not None and ep.name == "default" and ep.running and ep.state == "Running"
    assert ep.account_id == account.id and ep.host_name == "openams.test"
    assert ep.ip_allow is None and ep.allows("203.0.113.9") and ep.cache_max_age is None
    assert ep.client_access_policy is None and ep.cross_domain_policy is None
    # the same with the Host header's port, with no Host header, and inside a caller's transaction
    assert find_origin_target(runtime.engine, guid(loc), "OPENAMS.test:80", now()) == target
    assert find_origin_target(runtime.engine, guid(loc), None, now()) == target
    with runtime.engine.connect() as conn, conn.begin():
        assert find_origin_target(conn, guid(loc), "openams.test", now()) == target


def test_storage_encryption_of_files_and_the_assets_storage_key(runtime: Runtime, api: ApiClient) -> None:
    asset = post(api, "Assets", {"Name": "encrypted", "Options": 1})
    key, _clear = make_key(api, 1)
    envelope, _ = make_key(api, 4)
    for k in (envelope, key):
        r = api.request("POST", f"Assets('{q(asset['Id'])}')/$links/ContentKeys",
                        json.dumps({"uri": f"http://openams.test/api/ContentKeys('{q(k['Id'])}')"}).encode(), **JSON)
        assert r.status_code == 204, r.text
    post(api, "Files", {"Name": "a.mp4", "ParentAssetId": asset["Id"], "IsEncrypted": True,
                        "EncryptionScheme": "StorageEncryption", "EncryptionVersion": "1.0",
                        "EncryptionKeyId": key["Id"], "InitializationVector": "42"})
    post(api, "Files", {"Name": "b.mp4", "ParentAssetId": asset["Id"], "IsEncrypted": False})
    policy = post(api, "AccessPolicies", {"Name": "read", "DurationInMinutes": 60.0, "Permissions": 1})
    # a storage-encrypted asset gets a streaming locator only once a delivery policy is linked
    delivery = post(api, "AssetDeliveryPolicies", {"Name": "clear", "AssetDeliveryPolicyType": 2,
                                                   "AssetDeliveryProtocol": 7})
    r = api.request("POST", f"Assets('{q(asset['Id'])}')/$links/DeliveryPolicies",
                    json.dumps({"uri": f"http://openams.test/api/AssetDeliveryPolicies('{q(delivery['Id'])}')"})
                    .encode(), **JSON)
    assert r.status_code == 204, r.text
    loc = post(api, "Locators", {"Type": 2, "AssetId": asset["Id"], "AccessPolicyId": policy["Id"]})
    target = find_origin_target(runtime.engine, guid(loc), None, now())
    assert target is not None and target.storage_key_id == key["Id"]
    a, b = target.files
    assert (a.storage_encrypted, a.initialization_vector, a.encryption_key_id) == (True, "42", key["Id"])
    assert (b.storage_encrypted, b.initialization_vector) == (False, None)
    assert target.storage_encrypted_files == (a,)
    _asset, _files, clear = published(api)
    clear_target = find_origin_target(runtime.engine, guid(clear), None, now())
    assert clear_target is not None and clear_target.storage_key_id is None
    assert clear_target.storage_encrypted_files == ()


def test_asset_without_files(runtime: Runtime, api: ApiClient) -> None:
    asset = post(api, "Assets", {"Name": "empty"})
    policy = post(api, "AccessPolicies", {"Name": "read", "DurationInMinutes": 60.0, "Permissions": 1})
    loc = post(api, "Locators", {"Type": 2, "AssetId": asset["Id"], "AccessPolicyId": policy["Id"]})
    target = find_origin_target(runtime.engine, guid(loc), None, now())
    assert target is not None and target.files == () and target.asset.id == asset["Id"]


def test_no_target_for_unusable_locators(runtime: Runtime, api: ApiClient) -> None:
    rt = runtime
    _asset, _files, sas = published(api, kind=1)
    assert find_origin_target(rt.engine, guid(sas), None, now()) is None  # a SAS locator
    _asset, _files, loc = published(api, minutes=10.0)
    g = guid(loc)
    assert find_origin_target(rt.engine, g, None, now()) is not None
    assert find_origin_target(rt.engine, g, None, now() + timedelta(minutes=11)) is None  # expired
    later = (now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _asset, _files, future = published(api, StartTime=later)
    assert find_origin_target(rt.engine, guid(future), None, now()) is None  # not started yet
    assert find_origin_target(rt.engine, guid(future), None, now() + timedelta(days=1, minutes=1)) is not None
    assert api.delete(f"Locators('{q(loc['Id'])}')").status_code == 204
    assert find_origin_target(rt.engine, g, None, now()) is None  # deleted
    assert find_origin_target(rt.engine, str(uuid.uuid4()), None, now()) is None  # never existed
    assert find_origin_target(rt.engine, "not-a-guid", None, now()) is None
    assert find_origin_target(rt.engine, "", None, now()) is None


def test_deleted_asset_takes_its_locators(runtime: Runtime, api: ApiClient) -> None:
    asset, _files, loc = published(api)
    assert api.delete(f"Assets('{q(asset['Id'])}')").status_code == 204
    assert find_origin_target(runtime.engine, guid(loc), None, now()) is None


def test_guid_case_does_not_matter(runtime: Runtime, api: ApiClient) -> None:
    _asset, _files, loc = published(api)
    target = find_origin_target(runtime.engine, guid(loc).upper(), None, now())
    assert target is not None and target.locator.id == loc["Id"]
    chosen = str(uuid.uuid4()).upper()
    _asset, _files, upper = published(api, Id=f"nb:lid:UUID:{chosen}")
    for form in (chosen, chosen.lower()):
        target = find_origin_target(runtime.engine, form, None, now())
        assert target is not None and target.locator.id == upper["Id"]


def test_endpoint_by_custom_host_name(runtime: Runtime, api: ApiClient) -> None:
    _asset, _files, loc = published(api)
    host = f"cdn-{uuid.uuid4().hex[:8]}.example.com"
    edge = post(api, "StreamingEndpoints", {
        "Name": "edge", "CustomHostNames": [host], "CacheControl": {"MaxAge": "1800"},
        "AccessControl": {"IP": {"Allow": [{"Name": "lan", "Address": "192.168.1.7", "SubnetPrefixLength": 24},
                                           {"Name": "one", "Address": "10.0.0.1", "SubnetPrefixLength": None}]}},
        "CrossSiteAccessPolicies": {"CrossDomainPolicy": "<cross-domain-policy/>", "ClientAccessPolicy": None},
    })
    target = find_origin_target(runtime.engine, guid(loc), host.upper() + ":8080", now())
    assert target is not None and target.endpoint is not None
    ep = target.endpoint
    assert ep.id == edge["Id"] and ep.name == "edge" and ep.state == "Stopped" and not ep.running
    assert ep.cache_max_age == 1800 and ep.custom_host_names == (host,)
    assert ep.ip_allow == (ipaddress.IPv4Network("192.168.1.0/24"), ipaddress.IPv4Network("10.0.0.1/32"))
    assert ep.cross_domain_policy == "<cross-domain-policy/>" and ep.client_access_policy is None
    assert ep.cross_site_access_policies == {"ClientAccessPolicy": None, "CrossDomainPolicy": "<cross-domain-policy/>"}
    assert ep.allows("192.168.1.200") and ep.allows("10.0.0.1") and ep.allows("::ffff:192.168.1.3")
    assert not ep.allows("10.0.0.2") and not ep.allows("2001:db8::1") and not ep.allows("garbage")
    assert not ep.allows(None)
    # any other host is the default endpoint
    for other in ("openams.test", "127.0.0.1:8700", "unknown.example.com", "[::1]:8700"):
        target = find_origin_target(runtime.engine, guid(loc), other, now())
        assert target is not None and target.endpoint is not None and target.endpoint.name == "default", other


def test_empty_allow_list_means_nobody(runtime: Runtime, api: ApiClient) -> None:
    host = f"closed-{uuid.uuid4().hex[:8]}.example.com"
    post(api, "StreamingEndpoints", {"Name": "closed", "CustomHostNames": [host],
                                     "AccessControl": {"IP": {"Allow": []}}})
    ep = endpoint_for_host(runtime.engine, host)
    assert ep is not None and ep.ip_allow == () and not ep.allows("127.0.0.1")


def test_stopped_default_endpoint_is_reported(runtime: Runtime, api: ApiClient) -> None:
    _asset, _files, loc = published(api)
    default = endpoints(api)["default"]
    r = api.request("POST", f"StreamingEndpoints('{q(default['Id'])}')/Stop")
    assert r.status_code == 202
    target = find_origin_target(runtime.engine, guid(loc), None, now())
    assert target is not None and target.endpoint is not None and target.endpoint.state == "Stopped"


def test_a_locator_of_another_account_is_found_with_its_own_account(runtime: Runtime, api: ApiClient,
                                                                    other_account: Any) -> None:
    other = ApiClient.for_account(api.http, other_account)
    _asset, _files, loc = published(other)
    host = f"mine-{uuid.uuid4().hex[:8]}.example.com"
    post(api, "StreamingEndpoints", {"Name": "mine", "CustomHostNames": [host]})
    target = find_origin_target(runtime.engine, guid(loc), host, now())
    # the host names an endpoint of a different account: the locator's account serves it by default
    assert target is not None and target.account_id == other_account.id
    assert target.endpoint is not None and target.endpoint.account_id == other_account.id
    assert target.endpoint.name == "default"


# ---- endpoint_for_host -------------------------------------------------------------------------------------


def test_endpoint_for_a_custom_host(runtime: Runtime, api: ApiClient, account: Any, other_account: Any) -> None:
    host = f"policy-{uuid.uuid4().hex[:8]}.example.com"
    edge = post(api, "StreamingEndpoints", {
        "Name": "pol", "CustomHostNames": [host],
        "CrossSiteAccessPolicies": {"ClientAccessPolicy": "<access-policy/>", "CrossDomainPolicy": None}})
    ep = endpoint_for_host(runtime.engine, f"{host.upper()}.:443")
    assert ep is not None and ep.id == edge["Id"] and ep.account_id == account.id
    assert ep.client_access_policy == "<access-policy/>"
    # the shared public host names no account when there are several; junk hosts name nothing
    for host in ("openams.test", "", None, "%_%", "a'b.example.com", "nothing.example.com"):
        assert endpoint_for_host(runtime.engine, host) is None, host


def test_endpoint_for_the_public_host_on_a_single_account_server(tmp_path: Any, runtime: Runtime) -> None:
    from openams.config import load

    rt = Runtime(load(data_dir=tmp_path, create_dev_account=False, public_url="http://solo.test"))
    rt.prepare()
    try:
        assert endpoint_for_host(rt.engine, "solo.test") is None  # no account at all
        solo = _new_account(rt, "solo")
        ep = endpoint_for_host(rt.engine, "solo.test")
        assert ep is not None and ep.name == "default" and ep.account_id == solo.id
    finally:
        rt.engine.dispose()


# ---- with a base domain ----------------------------------------------------------------------------------


@pytest.fixture
def domain_runtime(runtime: Runtime) -> Any:
    rt = Runtime(replace(runtime.settings, base_domain="media.example"))
    rt.ready = True
    yield rt
    rt.engine.dispose()


def test_generated_host_names_pick_the_endpoint(domain_runtime: Runtime) -> None:
    rt = domain_runtime
    account = _new_account(rt, "dom")
    api = ApiClient.for_account(TestClient(RestApp(rt), base_url="http://openams.test"), account)
    _asset, _files, loc = published(api)
    edge = post(api, "StreamingEndpoints", {"Name": "Edge-2"})
    suffix = "streaming.media.example"
    cases = {
        f"{account.name}.{suffix}": "default",
        f"{account.name}.{suffix}:8700": "default",
        f"edge-2-{account.name}.{suffix}": "Edge-2",
        "127.0.0.1:8700": "default",
        None: "default",
    }
    for host, name in cases.items():
        target = find_origin_target(rt.engine, guid(loc), host, now())
        assert target is not None and target.endpoint is not None and target.endpoint.name == name, host
    # names under the streaming domain that are not this account's endpoints do not serve its locators
    for host in (f"other.{suffix}", f"nope-{account.name}.{suffix}", f"edge-2-other.{suffix}"):
        assert find_origin_target(rt.engine, guid(loc), host, now()) is None, host
    ep = endpoint_for_host(rt.engine, f"edge-2-{account.name}.{suffix}")
    assert isinstance(ep, OriginEndpoint) and ep.id == edge["Id"]
    ep = endpoint_for_host(rt.engine, f"{account.name}.{suffix}")
    assert ep is not None and ep.name == "default" and ep.account_id == account.id
    for host in (f"nobody.{suffix}", f"nope-{account.name}.{suffix}", suffix):
        assert endpoint_for_host(rt.engine, host) is None, host


# ---- find_filters ----------------------------------------------------------------------------------------


def test_filters_by_name(runtime: Runtime, api: ApiClient, account: Any, other_account: Any) -> None:
    asset = post(api, "Assets", {"Name": "f"})
    other_asset = post(api, "Assets", {"Name": "g"})
    post(api, "Filters", {"Name": "shared", "FirstQuality": {"Bitrate": 1}})
    post(api, "Filters", {"Name": "global-only", "PresentationTimeRange": {"StartTimestamp": "10"}})
    post(api, "AssetFilters", {"ParentAssetId": asset["Id"], "Name": "shared",
                               "Tracks": [{"PropertyConditions": [{"Property": "Type", "Value": "Audio"}]}]})
    post(api, "AssetFilters", {"ParentAssetId": other_asset["Id"], "Name": "elsewhere"})
    got = find_filters(runtime.engine, account.id, asset["Id"], ["global-only", "shared"])
    assert [(f["Name"], f["Scope"]) for f in got] == [("global-only", "global"), ("shared", "asset")]
    assert got[0]["PresentationTimeRange"]["StartTimestamp"] == 10
    assert got[0]["PresentationTimeRange"]["Timescale"] == 10_000_000 and got[0]["Tracks"] == []
    assert got[1]["Tracks"] == [{"PropertyConditions": [{"Property": "Type", "Value": "audio", "Operator": "Equal"}]}]
    assert got[1]["FirstQuality"] is None and got[1]["PresentationTimeRange"] is None
    # the global one is used for another asset
    assert find_filters(runtime.engine, account.id, other_asset["Id"], ["shared"])[0]["Scope"] == "global"
    assert find_filters(runtime.engine, account.id, asset["Id"], []) == []
    assert find_filters(runtime.engine, account.id, asset["Id"], [" shared ", ""])[0]["Scope"] == "asset"
    with pytest.raises(NotFound) as exc:
        find_filters(runtime.engine, account.id, asset["Id"], ["shared", "missing", "also-missing"])
    assert "'missing'" in exc.value.message
    with pytest.raises(NotFound):  # another asset's filter
        find_filters(runtime.engine, account.id, asset["Id"], ["elsewhere"])
    with pytest.raises(NotFound):  # another account's filters
        find_filters(runtime.engine, other_account.id, asset["Id"], ["shared"])
    with pytest.raises(BadRequest) as bad:
        find_filters(runtime.engine, account.id, asset["Id"], ["a", "b", "c", "d"])
    assert "at most 3" in bad.value.message
