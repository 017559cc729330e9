"""The AMS rules of the sets built so far, as a client meets them: locators, files, access policies,
media processors, storage accounts and encoding reserved units."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from tests.support.client import ApiClient, key_url

JSON = {"Content-Type": "application/json"}
MES = "nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56"


def q(key: str) -> str:
    return quote(key, safe="")


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def post(api: ApiClient, set_name: str, props: dict[str, Any]) -> Any:
    return api.request("POST", set_name, json.dumps(props).encode(), **JSON)


def merge(api: ApiClient, url: str, props: dict[str, Any], method: str = "MERGE") -> Any:
    return api.request(method, url, json.dumps(props).encode(), **JSON)


@pytest.fixture
def asset(api: ApiClient) -> dict[str, Any]:
    return api.create("Assets", "Asset", {"Name": "rules"})


def policy(api: ApiClient, permissions: int = 1, minutes: float = 60.0) -> dict[str, Any]:
    return api.create(
        "AccessPolicies",
        "AccessPolicy",
        {"Name": f"p{permissions}", "DurationInMinutes": minutes, "Permissions": permissions},
    )


def locator(api: ApiClient, asset: dict[str, Any], pol: dict[str, Any], kind: int = 2, **extra: Any) -> Any:
    return post(api, "Locators", {"Type": kind, "AssetId": asset["Id"], "AccessPolicyId": pol["Id"], **extra})


# ---- locators ---------------------------------------------------------------------------------------


def test_sixth_live_locator_on_an_asset_is_409(any_api: ApiClient) -> None:
    api = any_api
    asset = api.create("Assets", "Asset", {"Name": "five"})
    read, write = policy(api, 1), policy(api, 2)
    for i in range(5):
        api.create(
            "Locators",
            "Locator",
            {
                "Type": 1 + i % 2,
                "AssetId": asset["Id"],
                "AccessPolicyId": (write if i % 2 == 0 else read)["Id"],
            },
        )
    r = api.request(
        "POST",
        "Locators",
        api.encode("Locator", {"Type": 2, "AssetId": asset["Id"], "AccessPolicyId": read["Id"]}),
        **{"Content-Type": "application/json" if api.dialect != "atom" else "application/atom+xml"},
    )
    assert r.status_code == 409
    assert "5 locators" in api.error(r)[1]
    assert len(api.list(f"Assets('{q(asset['Id'])}')/Locators")) == 5
    # another asset is not affected, and deleting one frees a place
    other = api.create("Assets", "Asset", {"Name": "other"})
    api.create("Locators", "Locator", {"Type": 2, "AssetId": other["Id"], "AccessPolicyId": read["Id"]})
    first = api.list(f"Assets('{q(asset['Id'])}')/Locators")[0]
    assert api.delete(f"Locators('{q(first['Id'])}')").status_code == 204
    api.create("Locators", "Locator", {"Type": 2, "AssetId": asset["Id"], "AccessPolicyId": read["Id"]})


def test_expired_locators_do_not_count_towards_the_five(api: ApiClient, asset: dict[str, Any]) -> None:
    short = policy(api, 1, minutes=5.0)
    for _ in range(5):
        assert locator(api, asset, short, StartTime="2001-01-01T00:00:00Z").status_code == 201
    assert locator(api, asset, short).status_code == 201


def test_expiration_is_start_or_now_plus_the_policy_duration(api: ApiClient, asset: dict[str, Any]) -> None:
    pol = policy(api, 1, minutes=440.0)
    r = locator(api, asset, pol, kind=1, StartTime="2015-02-18T16:45:53")
    assert r.status_code == 201
    assert when(r.json()["StartTime"]) == datetime(2015, 2, 18, 16, 45, 53, tzinfo=UTC)
    assert when(r.json()["ExpirationDateTime"]) == datetime(2015, 2, 19, 0, 5, 53, tzinfo=UTC)
    before = datetime.now(UTC)
    r = locator(api, asset, pol, kind=2)
    assert r.status_code == 201 and r.json()["StartTime"] is None
    expiry = when(r.json()["ExpirationDateTime"])
    assert before + timedelta(minutes=440) - timedelta(seconds=1) <= expiry
    assert expiry <= datetime.now(UTC) + timedelta(minutes=440)


def test_sas_locator_urls(api: ApiClient, asset: dict[str, Any]) -> None:
    r = locator(api, asset, policy(api, 2), kind=1, StartTime="2026-11-23T20:00:00Z")
    assert r.status_code == 201
    loc = r.json()
    guid = loc["Id"].rsplit(":", 1)[1]
    assert loc["BaseUri"] == asset["Uri"]
    assert loc["Path"] == loc["BaseUri"] + loc["ContentAccessComponent"]
    params = parse_qs(urlsplit(loc["ContentAccessComponent"]).query)
    assert params["sr"] == ["c"] and params["si"] == [guid] and params["sig"] and params["se"]


def test_origin_locator_urls(api: ApiClient, asset: dict[str, Any]) -> None:
    loc = locator(api, asset, policy(api, 1)).json()
    guid = loc["Id"].rsplit(":", 1)[1]
    assert loc["ContentAccessComponent"] == guid
    assert loc["Path"] == f"{loc['BaseUri']}/{guid}/" and not loc["BaseUri"].endswith("/")


@pytest.mark.parametrize(
    "props",
    [
        {"StartTime": "2026-01-01T00:00:00"},
        {"Name": "renamed"},
        {"ExpirationDateTime": "2030-01-01T00:00:00Z"},
    ],
)
@pytest.mark.parametrize("method", ["MERGE", "PATCH"])
def test_sas_locators_cannot_be_updated(
    api: ApiClient, asset: dict[str, Any], props: dict[str, Any], method: str
) -> None:
    loc = locator(api, asset, policy(api, 2), kind=1).json()
    url = f"Locators('{q(loc['Id'])}')"
    r = merge(api, url, props, method)
    assert r.status_code == 400
    assert "cannot be" in api.error(r)[1]
    assert api.entity(api.get(url)) == {k: v for k, v in loc.items() if not k.startswith("odata.")}


def test_origin_locator_merge_of_start_time_recomputes_expiration(
    api: ApiClient, asset: dict[str, Any]
) -> None:
    loc = locator(api, asset, policy(api, 1, minutes=60.0), StartTime="2026-11-01T00:00:00Z").json()
    url = f"Locators('{q(loc['Id'])}')"
    assert when(loc["ExpirationDateTime"]) == datetime(2026, 11, 1, 1, 0, tzinfo=UTC)
    assert merge(api, url, {"StartTime": "2026-12-01T10:00:00Z"}).status_code == 204
    got = api.entity(api.get(url))
    assert when(got["StartTime"]) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert when(got["ExpirationDateTime"]) == datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    # ExpirationDateTime may be set directly, but not before StartTime
    assert merge(api, url, {"ExpirationDateTime": "2027-06-01T00:00:00Z"}).status_code == 204
    assert when(api.entity(api.get(url))["ExpirationDateTime"]) == datetime(2027, 6, 1, tzinfo=UTC)
    r = merge(api, url, {"ExpirationDateTime": "2020-01-01T00:00:00Z"})
    assert r.status_code == 400 and "after StartTime" in api.error(r)[1]
    # the URLs do not change, nor do the write-once properties
    for props in ({"Type": 1}, {"AssetId": f"nb:cid:UUID:{uuid.uuid4()}"}, {"Path": "http://evil/"}):
        r = merge(api, url, props)
        assert r.status_code in (204, 400), r.text
    got = api.entity(api.get(url))
    assert got["Type"] == 2 and got["AssetId"] == asset["Id"] and got["Path"] == loc["Path"]


@pytest.mark.parametrize("permissions", [2, 3, 4, 5, 15])
def test_origin_locator_with_write_or_delete_policy_is_400(
    api: ApiClient, asset: dict[str, Any], permissions: int
) -> None:
    r = locator(api, asset, policy(api, permissions))
    assert r.status_code == 400
    assert "Write or Delete" in api.error(r)[1]
    assert api.list("Locators") == []


def test_sas_locator_may_write(api: ApiClient, asset: dict[str, Any]) -> None:
    assert locator(api, asset, policy(api, 2), kind=1).status_code == 201


@pytest.mark.parametrize("kind", [0, 3, None])
def test_locator_type_must_be_sas_or_origin(api: ApiClient, asset: dict[str, Any], kind: int | None) -> None:
    r = locator(api, asset, policy(api, 1), kind=kind)  # type: ignore[arg-type]
    assert r.status_code == 400 and "Type" in api.error(r)[1]


def test_client_chosen_locator_id_is_honoured_and_reuse_is_409(any_api: ApiClient) -> None:
    api = any_api
    asset = api.create("Assets", "Asset", {"Name": "ids"})
    pol = policy(api, 1)
    chosen = f"nb:lid:UUID:{uuid.uuid4()}"
    loc = api.create(
        "Locators", "Locator", {"Id": chosen, "Type": 2, "AssetId": asset["Id"], "AccessPolicyId": pol["Id"]}
    )
    assert loc["Id"] == chosen and loc["ContentAccessComponent"] == chosen.rsplit(":", 1)[1]
    r = api.request(
        "POST",
        "Locators",
        api.encode("Locator", {"Id": chosen, "Type": 2, "AssetId": asset["Id"], "AccessPolicyId": pol["Id"]}),
        **{"Content-Type": "application/json" if api.dialect != "atom" else "application/atom+xml"},
    )
    assert r.status_code == 409
    assert len(api.list("Locators")) == 1


@pytest.mark.parametrize(
    "bad", ["nb:lid:UUID:not-a-guid", "nb:cid:UUID:" + str(uuid.UUID(int=1)), "locator-1"]
)
def test_malformed_client_locator_id_is_400(api: ApiClient, asset: dict[str, Any], bad: str) -> None:
    r = locator(api, asset, policy(api, 1), Id=bad)
    assert r.status_code == 400 and "nb:lid:UUID:" in api.error(r)[1]


# ---- files ------------------------------------------------------------------------------------------


def test_duplicate_file_name_is_409(api: ApiClient, asset: dict[str, Any]) -> None:
    api.create("Files", "AssetFile", {"Name": "movie.mp4", "ParentAssetId": asset["Id"]})
    r = post(api, "Files", {"Name": "movie.mp4", "ParentAssetId": asset["Id"]})
    assert r.status_code == 409 and "movie.mp4" in api.error(r)[1]
    other = api.create("Files", "AssetFile", {"Name": "other.mp4", "ParentAssetId": asset["Id"]})
    r = merge(api, f"Files('{q(other['Id'])}')", {"Name": "movie.mp4"})
    assert r.status_code == 409
    # the same name in another asset is fine
    second = api.create("Assets", "Asset", {"Name": "second"})
    api.create("Files", "AssetFile", {"Name": "movie.mp4", "ParentAssetId": second["Id"]})


def test_second_primary_file_is_409(api: ApiClient, asset: dict[str, Any]) -> None:
    first = api.create(
        "Files", "AssetFile", {"Name": "a.mp4", "ParentAssetId": asset["Id"], "IsPrimary": True}
    )
    r = post(api, "Files", {"Name": "b.mp4", "ParentAssetId": asset["Id"], "IsPrimary": "true"})
    assert r.status_code == 409 and "primary" in api.error(r)[1]
    b = api.create("Files", "AssetFile", {"Name": "b.mp4", "ParentAssetId": asset["Id"]})
    assert merge(api, f"Files('{q(b['Id'])}')", {"IsPrimary": True}).status_code == 409
    # moving the flag: unset the first, then set the second
    assert merge(api, f"Files('{q(first['Id'])}')", {"IsPrimary": False}).status_code == 204
    assert merge(api, f"Files('{q(b['Id'])}')", {"IsPrimary": True}).status_code == 204
    assert [f["Name"] for f in api.list("Files?$filter=IsPrimary eq true")] == ["b.mp4"]


def test_forbidden_characters_in_file_names_are_400(api: ApiClient, asset: dict[str, Any]) -> None:
    for char in [*"!*'();:@&=+$,/?%#[]\"", "\\", "\t"]:
        r = post(api, "Files", {"Name": f"a{char}b.mp4", "ParentAssetId": asset["Id"]})
        assert r.status_code == 400, (char, r.text)
        assert "AssetFile.Name" in api.error(r)[1]
    assert api.list("Files") == []


@pytest.mark.parametrize("name", ["a.b.mp4", "", "   ", "x" * 261])
def test_other_invalid_file_names_are_400(api: ApiClient, asset: dict[str, Any], name: str) -> None:
    r = post(api, "Files", {"Name": name, "ParentAssetId": asset["Id"]})
    assert r.status_code == 400
    assert api.list("Files") == []


def test_valid_file_names(api: ApiClient, asset: dict[str, Any]) -> None:
    for name in ["movie.mp4", "no-extension", "with space_and-dash.ism", "Ünïcødé.mp4", "x" * 256 + ".mp4"]:
        f = api.create("Files", "AssetFile", {"Name": name, "ParentAssetId": asset["Id"]})
        assert f["Name"] == name


def test_file_needs_an_existing_parent_that_never_changes(api: ApiClient, asset: dict[str, Any]) -> None:
    r = post(api, "Files", {"Name": "a.mp4"})
    assert r.status_code == 400 and "ParentAssetId" in api.error(r)[1]
    r = post(api, "Files", {"Name": "a.mp4", "ParentAssetId": f"nb:cid:UUID:{uuid.uuid4()}"})
    assert r.status_code == 404
    f = api.create("Files", "AssetFile", {"Name": "a.mp4", "ParentAssetId": asset["Id"]})
    other = api.create("Assets", "Asset", {"Name": "other"})
    r = merge(api, f"Files('{q(f['Id'])}')", {"ParentAssetId": other["Id"]})
    assert r.status_code == 400
    assert api.list(f"Assets('{q(other['Id'])}')/Files") == []


def test_file_size_is_merged_after_upload(api: ApiClient, asset: dict[str, Any]) -> None:
    f = api.create("Files", "AssetFile", {"Name": "a.mp4", "ParentAssetId": asset["Id"]})
    assert f["ContentFileSize"] == "0"
    body = {
        "ContentFileSize": "1186540",
        "Id": f["Id"],
        "MimeType": "video/mp4",
        "Name": "a.mp4",
        "ParentAssetId": asset["Id"],
    }
    assert merge(api, f"Files('{q(f['Id'])}')", body).status_code == 204
    assert api.entity(api.get(f"Files('{q(f['Id'])}')"))["ContentFileSize"] == "1186540"
    assert merge(api, f"Files('{q(f['Id'])}')", {"ContentFileSize": -1}).status_code == 400


# ---- access policies --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["MERGE", "PATCH", "PUT"])
def test_access_policies_cannot_be_updated(api: ApiClient, method: str) -> None:
    pol = policy(api, 1)
    url = f"AccessPolicies('{q(pol['Id'])}')"
    r = merge(api, url, {"Name": "renamed", "DurationInMinutes": 5}, method)
    assert r.status_code == 405 and api.error(r)[0] == "MethodNotAllowed"
    assert api.entity(api.get(url))["Name"] == "p1"
    r = api.request("POST", url, b'{"Name":"renamed"}', **JSON, **{"X-HTTP-Method": "MERGE"})
    assert r.status_code == 405
    assert api.delete(url).status_code == 204


@pytest.mark.parametrize(
    "props,fragment",
    [
        ({"Name": "x"}, "DurationInMinutes"),
        ({"Name": "x", "DurationInMinutes": 0}, "DurationInMinutes"),
        ({"Name": "x", "DurationInMinutes": -5}, "DurationInMinutes"),
        ({"Name": "x", "DurationInMinutes": 10, "Permissions": 16}, "Permissions"),
        ({"Name": "x", "DurationInMinutes": 10, "Permissions": -1}, "Permissions"),
        ({"DurationInMinutes": 10}, "Name"),
    ],
)
def test_access_policy_validation(api: ApiClient, props: dict[str, Any], fragment: str) -> None:
    r = post(api, "AccessPolicies", props)
    assert r.status_code == 400 and fragment in api.error(r)[1]
    assert api.list("AccessPolicies") == []


# ---- read-only catalogues ---------------------------------------------------------------------------


def test_media_encoder_standard_is_listed(any_api: ApiClient) -> None:
    rows = any_api.list("MediaProcessors()?$filter=Name eq 'Media Encoder Standard'")
    assert len(rows) == 1
    mes = rows[0]
    assert mes["Id"] == MES and mes["Vendor"] == "Microsoft"
    assert re.fullmatch(r"\d+\.\d+(\.\d+){0,2}", mes["Version"])  # parses as a .NET Version
    assert set(mes) >= {"Id", "Name", "Description", "Sku", "Vendor", "Version"}
    r = any_api.get(f"MediaProcessors('{q(MES)}')")
    assert r.status_code == 200 and any_api.entity(r)["Name"] == "Media Encoder Standard"


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "MediaProcessors", {"Name": "Mine", "Vendor": "me"}),
        ("MERGE", f"MediaProcessors('{q(MES)}')", {"Version": "9.9"}),
        ("PUT", f"MediaProcessors('{q(MES)}')", {"Version": "9.9"}),
        ("DELETE", f"MediaProcessors('{q(MES)}')", None),
        ("POST", "StorageAccounts", {"Name": "mystorage"}),
        ("DELETE", "StorageAccounts('x')", None),
        ("POST", "EncodingReservedUnitTypes", {"CurrentReservedUnits": 1}),
    ],
)
def test_catalogues_are_read_only(
    api: ApiClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    r = api.request(method, path, json.dumps(body).encode() if body else None, **JSON)
    assert r.status_code in (404, 405), r.text
    if "MediaProcessors" in path:
        assert r.status_code == 405
        assert api.entity(api.get(f"MediaProcessors('{q(MES)}')"))["Version"] != "9.9"


def test_default_storage_account_lookup_as_the_sdk_does_it(any_api: ApiClient) -> None:
    rows = any_api.list("StorageAccounts()?$filter=IsDefault eq true&$top=1")
    assert len(rows) == 1 and rows[0]["IsDefault"] is True
    r = any_api.get(f"StorageAccounts('{rows[0]['Name']}')")
    assert r.status_code == 200
    asset = any_api.create("Assets", "Asset", {"Name": "x", "StorageAccountName": rows[0]["Name"]})
    assert asset["StorageAccountName"] == rows[0]["Name"]
    r = any_api.get(f"Assets('{q(asset['Id'])}')/StorageAccount")
    assert any_api.entity(r)["Name"] == rows[0]["Name"]


def test_encoding_reserved_units(api: ApiClient) -> None:
    rows = api.list("EncodingReservedUnitTypes")
    assert len(rows) == 1
    account_id = rows[0]["AccountId"]
    uuid.UUID(account_id)
    assert rows[0]["MaxReservableUnits"] == 25
    url = f"EncodingReservedUnitTypes(guid'{account_id}')"
    r = api.request("PATCH", url, b"{CurrentReservedUnits:1}", **JSON)
    assert r.status_code == 204, r.text
    assert api.entity(api.get(url))["CurrentReservedUnits"] == 1
    for bad in (b"{CurrentReservedUnits:26}", b"{CurrentReservedUnits:-1}", b'{"ReservedUnitType":3}'):
        r = api.request("PATCH", url, bad, **JSON)
        assert r.status_code == 400, r.text
    assert api.entity(api.get(url))["CurrentReservedUnits"] == 1
    for method, units in (("MERGE", 2), ("PUT", 3)):
        body = json.dumps({"CurrentReservedUnits": units, "ReservedUnitType": 1}).encode()
        assert api.request(method, url, body, **JSON).status_code == 204
        got = api.entity(api.get(url))
        assert got["CurrentReservedUnits"] == units and got["ReservedUnitType"] == 1
    assert api.entity(api.get(url))["MaxReservableUnits"] == 25
    r = api.delete(url)
    assert r.status_code == 405


# ---- assets -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [3, 5, 8, -1])
def test_asset_options_are_one_value(api: ApiClient, options: int) -> None:
    r = post(api, "Assets", {"Name": "x", "Options": options})
    assert r.status_code == 400 and "Options" in api.error(r)[1]
    assert api.list("Assets") == []


def test_asset_full_merge_is_accepted_but_options_never_change(api: ApiClient, asset: dict[str, Any]) -> None:
    url = f"Assets('{q(asset['Id'])}')"
    full = {k: v for k, v in asset.items()}
    full["Name"] = "renamed"
    full["Created"] = "0001-01-01T00:00:00"
    assert merge(api, url, full).status_code == 204
    got = api.entity(api.get(url))
    assert got["Name"] == "renamed" and got["Created"] == asset["Created"] and got["Uri"] == asset["Uri"]
    r = merge(api, url, {"Options": 1})
    assert r.status_code == 400 and api.error(r)[0] == "PropertyNotUpdatable"


def test_locator_bound_by_links_on_an_asset_of_this_account(api: ApiClient, asset: dict[str, Any]) -> None:
    pol = policy(api, 1)
    loc = api.create(
        "Locators",
        "Locator",
        {"Type": 2},
        links={
            "Asset": [key_url("Assets", asset["Id"])],
            "AccessPolicy": [key_url("AccessPolicies", pol["Id"])],
        },
    )
    assert loc["AssetId"] == asset["Id"] and loc["AccessPolicyId"] == pol["Id"]
    r = post(
        api,
        "Locators",
        {
            "Type": 2,
            "AssetId": asset["Id"],
            "AccessPolicyId": pol["Id"],
            "Asset@odata.bind": key_url("Assets", f"nb:cid:UUID:{uuid.uuid4()}"),
        },
    )
    assert r.status_code in (400, 404)
