"""Account isolation: a token of account A never reaches an entity of account B.

Every verb and every addressing form answers 404 for B's entities (as if they did not exist), and
nothing A sends changes or reveals B's rows — by key, by navigation, by `$links`, by binding, by
`$filter`, or inside a `$batch`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from openams.runtime import Runtime
from tests.conftest import _new_account
from tests.support.client import BASE, ApiClient, key_url

JSON = {"Content-Type": "application/json"}


def q(key: str) -> str:
    return quote(key, safe="")


@dataclass
class World:
    """Account B's entities, and clients for A (the intruder) and B (the owner)."""

    a: ApiClient
    b: ApiClient
    b_account: Any
    asset: dict[str, Any]
    file: dict[str, Any]
    policy: dict[str, Any]
    locator: dict[str, Any]

    def urls(self) -> dict[str, str]:
        return {
            "asset": f"Assets('{q(self.asset['Id'])}')",
            "file": f"Files('{q(self.file['Id'])}')",
            "policy": f"AccessPolicies('{q(self.policy['Id'])}')",
            "locator": f"Locators('{q(self.locator['Id'])}')",
            "storage": f"StorageAccounts('{self.b_account.name}')",
            "units": f"EncodingReservedUnitTypes(guid'{self.b_account.id}')",
        }


@pytest.fixture(scope="module")
def owner(http: TestClient, runtime: Runtime) -> tuple[ApiClient, Any, dict[str, dict[str, Any]]]:
    """Account B and its entities, shared by the tests of this module (none of which may change them)."""
    account = _new_account(runtime, "owner")
    b = ApiClient.for_account(http, account, "light")
    asset = b.create("Assets", "Asset", {"Name": "b-secret"})
    file = b.create("Files", "AssetFile", {"Name": "b.mp4", "ParentAssetId": asset["Id"], "IsPrimary": True})
    policy = b.create(
        "AccessPolicies", "AccessPolicy", {"Name": "b-read", "DurationInMinutes": 60.0, "Permissions": 1}
    )
    locator = b.create(
        "Locators", "Locator", {"Type": 2, "AssetId": asset["Id"], "AccessPolicyId": policy["Id"]}
    )
    return b, account, {"asset": asset, "file": file, "policy": policy, "locator": locator}


@pytest.fixture
def world(api: ApiClient, owner: tuple[ApiClient, Any, dict[str, dict[str, Any]]]) -> World:
    """A fresh account A (the intruder) next to the shared account B."""
    b, account, e = owner
    return World(api, b, account, e["asset"], e["file"], e["policy"], e["locator"])


def assert_not_found(api: ApiClient, r: Any) -> None:
    assert r.status_code == 404, (r.status_code, r.text)
    assert api.error(r)[0] == "ResourceNotFound"
    assert "b-secret" not in r.text and "b.mp4" not in r.text


def assert_b_unchanged(w: World) -> None:
    asset = w.b.entity(w.b.get(w.urls()["asset"]))
    assert asset["Name"] == "b-secret"
    assert [f["Name"] for f in w.b.list(f"{w.urls()['asset']}/Files")] == ["b.mp4"]
    assert [x["Id"] for x in w.b.list(f"{w.urls()['asset']}/Locators")] == [w.locator["Id"]]
    assert w.b.get(w.urls()["policy"]).status_code == 200
    units = w.b.entity(w.b.get(w.urls()["units"]))
    assert units["CurrentReservedUnits"] == 0


# ---- reading ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["light", "verbose", "atom"])
@pytest.mark.parametrize("which", ["asset", "file", "policy", "locator", "storage", "units"])
def test_get_by_key_is_404(world: World, which: str, dialect: str) -> None:
    api = ApiClient(world.a.http, world.a.token, dialect)
    r = api.get(world.urls()[which])
    assert_not_found(api, r)
    # the owner still reads it
    assert world.b.get(world.urls()[which]).status_code == 200


@pytest.mark.parametrize(
    "suffix",
    [
        "/Files",
        "/Files/$count",
        "/Locators",
        "/StorageAccount",
        "/ParentAssets",
        "/ContentKeys",
        "/Name",
        "/Name/$value",
        "/$links/Files",
        "/$links/StorageAccount",
    ],
)
def test_asset_navigation_properties_and_links_are_404(world: World, suffix: str) -> None:
    r = world.a.get(world.urls()["asset"] + suffix)
    assert_not_found(world.a, r)


@pytest.mark.parametrize(
    "suffix", ["/Asset", "/AccessPolicy", "/$links/Asset", "/$links/AccessPolicy", "/Path"]
)
def test_locator_navigation_is_404(world: World, suffix: str) -> None:
    assert_not_found(world.a, world.a.get(world.urls()["locator"] + suffix))


def test_head_is_404(world: World) -> None:
    for url in world.urls().values():
        r = world.a.request("HEAD", url)
        assert r.status_code == 404 and r.content == b""


def test_filters_and_counts_never_show_other_rows(world: World) -> None:
    a = world.a
    own = a.create("Assets", "Asset", {"Name": "a-own"})
    b_asset = world.asset["Id"]
    assert a.list(f"Assets?$filter=Id eq '{b_asset}'") == []
    assert a.list(f"Assets()?$filter=Id eq '{b_asset}'&$top=1") == []
    assert a.list(f"Files?$filter=ParentAssetId eq '{b_asset}'") == []
    assert a.list(f"Locators?$filter=AssetId eq '{b_asset}'") == []
    assert a.list("Assets?$filter=Name eq 'b-secret' or startswith(Name,'b-')") == []
    assert [x["Id"] for x in a.list("Assets")] == [own["Id"]]
    assert a.list("Files") == [] and a.list("Locators") == [] and a.list("AccessPolicies") == []
    assert a.get(f"Assets/$count?$filter=Id eq '{b_asset}'").text == "0"
    assert a.get("Files/$count").text == "0"
    r = a.get("Assets?$inlinecount=allpages")
    assert r.json()["odata.count"] == "1"
    # seeded per-account rows: each account sees exactly its own
    storage = a.list("StorageAccounts")
    assert [s["Name"] for s in storage] == [a_name(a)]
    units = a.list("EncodingReservedUnitTypes")
    assert len(units) == 1 and units[0]["AccountId"] != world.b_account.id
    assert a.list(f"EncodingReservedUnitTypes?$filter=AccountId eq guid'{world.b_account.id}'") == []


def a_name(api: ApiClient) -> str:
    """The account name of a client, read through the API (its default storage account is named so)."""
    r = api.get("StorageAccounts?$filter=IsDefault eq true&$top=1")
    return r.json()["value"][0]["Name"]


# ---- writing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["MERGE", "PATCH", "PUT"])
@pytest.mark.parametrize("which", ["asset", "file", "locator"])
def test_updates_are_404_and_change_nothing(world: World, method: str, which: str) -> None:
    r = world.a.request(method, world.urls()[which], b'{"Name":"pwned"}', **JSON)
    assert_not_found(world.a, r)
    assert_b_unchanged(world)


def test_reserved_units_of_other_account_cannot_be_patched(world: World) -> None:
    r = world.a.request("PATCH", world.urls()["units"], b"{CurrentReservedUnits:3}", **JSON)
    assert_not_found(world.a, r)
    assert_b_unchanged(world)


@pytest.mark.parametrize("which", ["locator", "file", "policy", "asset"])
def test_delete_is_404_and_deletes_nothing(world: World, which: str) -> None:
    assert_not_found(world.a, world.a.delete(world.urls()[which]))
    assert_not_found(
        world.a, world.a.request("POST", world.urls()[which], b"", **{"X-HTTP-Method": "DELETE"})
    )
    assert_b_unchanged(world)


def test_tunnelled_merge_is_404(world: World) -> None:
    r = world.a.request(
        "POST", world.urls()["asset"], b'{"Name":"pwned"}', **JSON, **{"X-HTTP-Method": "MERGE"}
    )
    assert_not_found(world.a, r)
    assert_b_unchanged(world)


def test_if_match_does_not_reveal_other_entities(world: World) -> None:
    r = world.a.request("MERGE", world.urls()["asset"], b'{"Name":"pwned"}', **JSON, **{"If-Match": 'W/"1"'})
    assert r.status_code == 404  # not 412: an ETag check would confirm the entity exists
    assert_b_unchanged(world)


def test_links_to_or_from_other_entities_are_404(world: World) -> None:
    a = world.a
    own = a.create("Assets", "Asset", {"Name": "a-own"})
    key = key_url("ContentKeys", f"nb:kid:UUID:{uuid.uuid4()}")
    r = a.request(
        "POST", f"{world.urls()['asset']}/$links/ContentKeys", json.dumps({"uri": key}).encode(), **JSON
    )
    assert_not_found(a, r)
    r = a.request("DELETE", f"{world.urls()['asset']}/$links/ContentKeys('{q(key)}')")
    assert_not_found(a, r)
    # binding one's own asset to B's asset as a parent
    r = a.request(
        "POST",
        "Assets",
        json.dumps(
            {"Name": "child", "ParentAssets@odata.bind": [key_url("Assets", world.asset["Id"])]}
        ).encode(),
        **JSON,
    )
    assert_not_found(a, r)
    assert [x["Id"] for x in a.list("Assets")] == [own["Id"]]


def _locator_bodies(w: World, own_policy: str) -> list[tuple[str, bytes, str]]:
    b_asset = w.asset["Id"]
    atom = ApiClient(w.a.http, w.a.token, "atom").encode(
        "Locator",
        {"Type": 2, "AssetId": None, "AccessPolicyId": None},
        {"Asset": [key_url("Assets", b_asset)], "AccessPolicy": [key_url("AccessPolicies", own_policy)]},
    )
    return [
        (
            "scalar",
            json.dumps({"Type": 2, "AssetId": b_asset, "AccessPolicyId": own_policy}).encode(),
            "application/json",
        ),
        (
            "light bind",
            json.dumps(
                {"Type": 2, "Asset@odata.bind": key_url("Assets", b_asset), "AccessPolicyId": own_policy}
            ).encode(),
            "application/json",
        ),
        (
            "verbose uri",
            json.dumps(
                {
                    "Type": 2,
                    "Asset": {"__metadata": {"uri": key_url("Assets", b_asset)}},
                    "AccessPolicyId": own_policy,
                }
            ).encode(),
            "application/json;odata=verbose",
        ),
        (
            "raw key uri",
            json.dumps(
                {
                    "Type": 2,
                    "Asset": {"__metadata": {"uri": f"{BASE}Assets('{b_asset}')"}},
                    "AccessPolicyId": own_policy,
                }
            ).encode(),
            "application/json;odata=verbose",
        ),
        (
            "inline id",
            json.dumps({"Type": 2, "Asset": {"Id": b_asset}, "AccessPolicyId": own_policy}).encode(),
            "application/json",
        ),
        ("atom link", atom, "application/atom+xml;type=entry"),
        (
            "other policy",
            json.dumps(
                {
                    "Type": 2,
                    "AssetId": None,
                    "AccessPolicyId": w.policy["Id"],
                    "Asset@odata.bind": key_url("Assets", b_asset),
                }
            ).encode(),
            "application/json",
        ),
    ]


def test_creates_bound_to_other_entities_are_404_and_write_nothing(world: World) -> None:
    a = world.a
    own_asset = a.create("Assets", "Asset", {"Name": "a-own"})
    own_policy = a.create(
        "AccessPolicies", "AccessPolicy", {"Name": "p", "DurationInMinutes": 30.0, "Permissions": 1}
    )
    for label, body, ctype in _locator_bodies(world, own_policy["Id"]):
        r = a.request("POST", "Locators", body, **{"Content-Type": ctype})
        assert r.status_code == 404, (label, r.status_code, r.text)
    # own asset with B's policy, as a scalar
    r = a.request(
        "POST",
        "Locators",
        json.dumps({"Type": 2, "AssetId": own_asset["Id"], "AccessPolicyId": world.policy["Id"]}).encode(),
        **JSON,
    )
    assert r.status_code == 404
    # files in B's asset: by ParentAssetId, and by POST to the navigation
    r = a.request(
        "POST", "Files", json.dumps({"Name": "x.mp4", "ParentAssetId": world.asset["Id"]}).encode(), **JSON
    )
    assert_not_found(a, r)
    r = a.request("POST", f"{world.urls()['asset']}/Files", b'{"Name":"x.mp4"}', **JSON)
    assert_not_found(a, r)
    # an asset in B's storage account
    r = a.request(
        "POST",
        "Assets",
        json.dumps({"Name": "x", "StorageAccountName": world.b_account.name}).encode(),
        **JSON,
    )
    assert r.status_code == 404
    # nothing was written anywhere
    assert a.list("Locators") == [] and a.list("Files") == []
    assert [x["Id"] for x in a.list("Assets")] == [own_asset["Id"]]
    assert_b_unchanged(world)


def test_client_chosen_ids_of_other_account_do_not_touch_its_rows(world: World) -> None:
    """Creating a locator with the Id B uses never reaches or replaces B's locator."""
    a = world.a
    asset = a.create("Assets", "Asset", {"Name": "a-own"})
    policy = a.create(
        "AccessPolicies", "AccessPolicy", {"Name": "p", "DurationInMinutes": 30.0, "Permissions": 1}
    )
    r = a.request(
        "POST",
        "Locators",
        json.dumps(
            {"Id": world.locator["Id"], "Type": 2, "AssetId": asset["Id"], "AccessPolicyId": policy["Id"]}
        ).encode(),
        **JSON,
    )
    assert r.status_code in (201, 403, 409)
    mine = world.b.entity(world.b.get(world.urls()["locator"]))
    assert mine["AssetId"] == world.asset["Id"] and mine["AccessPolicyId"] == world.policy["Id"]


def test_actions_and_functions_on_other_entities_are_404(world: World) -> None:
    r = world.a.request("POST", f"{world.urls()['asset']}/Publish", b"")
    assert_not_found(world.a, r)
    r = world.a.get(f"CreateFileInfos?assetid='{q(world.asset['Id'])}'")
    assert r.status_code in (404, 501), r.text  # 501 until the function is built
    assert_b_unchanged(world)


# ---- $batch -------------------------------------------------------------------------------------


def _batch(parts: list[str], changeset: bool = True) -> bytes:
    lines: list[str] = []
    if changeset:
        lines += ["--batch", "Content-Type: multipart/mixed; boundary=cs", ""]
        for part in parts:
            lines += ["--cs", "Content-Type: application/http", "Content-Transfer-Encoding: binary", "", part]
        lines += ["--cs--"]
    else:
        for part in parts:
            lines += [
                "--batch",
                "Content-Type: application/http",
                "Content-Transfer-Encoding: binary",
                "",
                part,
            ]
    lines += ["--batch--", ""]
    return "\r\n".join(lines).encode()


def _op(method: str, url: str, body: str = "", cid: int = 1) -> str:
    return "\r\n".join(
        [
            f"{method} {url} HTTP/1.1",
            f"Content-ID: {cid}",
            "Content-Type: application/json",
            "Accept: application/json",
            "",
            body,
        ]
    )


def _post_batch(api: ApiClient, body: bytes) -> Any:
    r = api.request("POST", "$batch", body, **{"Content-Type": "multipart/mixed; boundary=batch"})
    assert r.status_code == 202, r.text
    return r


def test_batch_query_parts_are_404(world: World) -> None:
    parts = [f"GET {BASE}{url} HTTP/1.1\r\nAccept: application/json\r\n\r\n" for url in world.urls().values()]
    parts.append(
        f"GET Assets?$filter=Id eq '{world.asset['Id']}' HTTP/1.1\r\nAccept: application/json\r\n\r\n"
    )
    r = _post_batch(world.a, _batch(parts, changeset=False))
    assert r.text.count("HTTP/1.1 404") == len(world.urls())
    assert r.text.count("HTTP/1.1 200") == 1
    assert "b-secret" not in r.text and world.asset["Id"] not in r.text.split("HTTP/1.1 200", 1)[1]


@pytest.mark.parametrize(
    "op",
    [
        ("MERGE", "asset", '{"Name":"pwned"}'),
        ("DELETE", "locator", ""),
        ("DELETE", "asset", ""),
        ("POST", "asset/Files", '{"Name":"x.mp4"}'),
    ],
)
def test_batch_changeset_touching_other_entities_fails_whole(world: World, op: tuple[str, str, str]) -> None:
    method, which, body = op
    target, _, nav = which.partition("/")
    url = world.urls()[target] + (f"/{nav}" if nav else "")
    name = f"batch-{uuid.uuid4().hex[:8]}"
    parts = [_op("POST", "Assets", json.dumps({"Name": name}), 1), _op(method, url, body, 2)]
    r = _post_batch(world.a, _batch(parts))
    assert "HTTP/1.1 404" in r.text and "201 Created" not in r.text
    assert world.a.list(f"Assets?$filter=Name eq '{name}'") == []
    assert_b_unchanged(world)


def test_batch_reference_to_other_entity_in_binding_is_404(world: World) -> None:
    a = world.a
    parts = [
        _op("POST", "AccessPolicies", '{"Name":"p","DurationInMinutes":10,"Permissions":1}', 1),
        _op(
            "POST",
            "Locators",
            json.dumps(
                {
                    "Type": 2,
                    "AccessPolicy@odata.bind": "$1",
                    "Asset@odata.bind": key_url("Assets", world.asset["Id"]),
                }
            ),
            2,
        ),
    ]
    r = _post_batch(a, _batch(parts))
    assert "HTTP/1.1 404" in r.text and "201 Created" not in r.text
    assert a.list("AccessPolicies") == [] and a.list("Locators") == []


# ---- tokens name their account ------------------------------------------------------------------


def test_each_token_family_sees_only_its_account(http: TestClient, world: World, account: Any) -> None:
    r = http.post(
        "/tenant.onmicrosoft.com/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": account.name,
            "client_secret": account.primary_key,
            "resource": "https://rest.media.azure.net",
        },
    )
    jwt_client = ApiClient(http, r.json()["access_token"], "light")
    for url in world.urls().values():
        assert jwt_client.get(url).status_code == 404
    assert jwt_client.list("Assets") == []
