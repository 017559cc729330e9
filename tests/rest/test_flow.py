"""The core asset workflow, run identically in JSON light, JSON verbose and Atom, and in $batch."""

from __future__ import annotations

import uuid
from urllib.parse import quote

from tests.support.client import BASE, ApiClient, key_url


def q(key: str) -> str:
    return quote(key, safe="")


def test_asset_workflow_in_every_dialect(any_api: ApiClient) -> None:
    api = any_api
    # create two assets and a file
    a1 = api.create("Assets", "Asset", {"Name": "flow-b", "Options": 0})
    a2 = api.create("Assets", "Asset", {"Name": "flow-a", "Options": 0})
    assert a1["Id"].startswith("nb:cid:UUID:") and a1["State"] == 0
    assert a1["Uri"].endswith("asset-" + a1["Id"].rsplit(":", 1)[1])
    f1 = api.create("Files", "AssetFile", {"Name": "movie.mp4", "ParentAssetId": a1["Id"], "MimeType": "video/mp4",
                                           "IsPrimary": True, "ContentFileSize": "1024"})
    assert f1["ContentFileSize"] == "1024" and f1["IsPrimary"] is True

    # list with $filter, $orderby, $top
    rows = api.list("Assets?$filter=startswith(Name,'flow-')&$orderby=Name&$top=1")
    assert [r["Name"] for r in rows] == ["flow-a"]
    rows = api.list("Assets()?$filter=startswith(Name,'flow-')&$orderby=Name desc")
    assert [r["Name"] for r in rows] == ["flow-b", "flow-a"]
    rows = api.list(f"Files?$filter=ParentAssetId eq '{a1['Id']}'")
    assert [r["Id"] for r in rows] == [f1["Id"]]

    # MERGE, then read back
    api.update("Assets", a1["Id"], "Asset", {"Name": "flow-renamed"})
    r = api.get(f"Assets('{q(a1['Id'])}')")
    assert r.status_code == 200 and api.entity(r)["Name"] == "flow-renamed"
    api.update("Files", f1["Id"], "AssetFile", {"ContentFileSize": "2048"}, method="PATCH")
    assert api.entity(api.get(f"Files('{q(f1['Id'])}')"))["ContentFileSize"] == "2048"

    # access policy and locator bound by links (as the SDK does) or by ids
    policy = api.create("AccessPolicies", "AccessPolicy",
                        {"Name": "read", "DurationInMinutes": 60.0, "Permissions": 1})
    assert policy["DurationInMinutes"] == 60.0 and policy["Permissions"] == 1
    loc = api.create("Locators", "Locator", {"Type": 2, "AccessPolicyId": None, "AssetId": None},
                     links={"AccessPolicy": [key_url("AccessPolicies", policy["Id"])],
                            "Asset": [key_url("Assets", a1["Id"])]})
    assert loc["AssetId"] == a1["Id"] and loc["AccessPolicyId"] == policy["Id"]
    guid = loc["Id"].rsplit(":", 1)[1]
    assert loc["Path"].endswith(f"/{guid}/") and loc["ContentAccessComponent"] == guid

    # navigate
    assert [f["Name"] for f in api.list(f"Assets('{q(a1['Id'])}')/Files")] == ["movie.mp4"]
    assert [x["Id"] for x in api.list(f"Assets('{q(a1['Id'])}')/Locators")] == [loc["Id"]]
    r = api.get(f"Locators('{q(loc['Id'])}')/Asset")
    assert r.status_code == 200 and api.entity(r)["Id"] == a1["Id"]
    r = api.get(f"Locators('{q(loc['Id'])}')/AccessPolicy")
    assert api.entity(r)["Id"] == policy["Id"]
    r = api.get(f"Assets('{q(a1['Id'])}')/StorageAccount")
    assert r.status_code == 200 and api.entity(r)["IsDefault"] is True

    # delete cascades to files and locators
    assert api.delete(f"Assets('{q(a1['Id'])}')?keepcontainer=false").status_code == 204
    assert api.get(f"Assets('{q(a1['Id'])}')").status_code == 404
    assert api.get(f"Files('{q(f1['Id'])}')").status_code == 404
    assert api.get(f"Locators('{q(loc['Id'])}')").status_code == 404
    assert api.delete(f"Assets('{q(a2['Id'])}')").status_code == 204
    assert api.list("Assets?$filter=startswith(Name,'flow-')") == []


def _batch_body(boundary: str, changeset: str, parts: list[str]) -> bytes:
    lines = [f"--{boundary}", f"Content-Type: multipart/mixed; boundary={changeset}", ""]
    for part in parts:
        lines += [f"--{changeset}", "Content-Type: application/http", "Content-Transfer-Encoding: binary", "",
                  part]
    lines += [f"--{changeset}--", f"--{boundary}--", ""]
    return "\r\n".join(lines).encode()


def _op(method: str, url: str, cid: int, body: str = "", ctype: str = "application/json") -> str:
    head = [f"{method} {url} HTTP/1.1", f"Content-ID: {cid}", f"Content-Type: {ctype}",
            "DataServiceVersion: 3.0", "Accept: application/json"]
    return "\r\n".join(head) + "\r\n\r\n" + body


def test_workflow_inside_one_batch(api: ApiClient) -> None:
    name = f"batch-{uuid.uuid4().hex[:6]}"
    parts = [
        _op("POST", f"{BASE}Assets", 1, f'{{"Name":"{name}"}}'),
        _op("POST", f"{BASE}AccessPolicies", 2, '{"Name":"p","DurationInMinutes":"30","Permissions":"1"}'),
        _op("POST", "Files", 3, '{"Name":"a.mp4","ParentAssetId":"$placeholder","IsPrimary":"true"}'),
    ]
    # Files need the asset id, which only exists after part 1: bind the locator by $n references instead
    locator = '{"Type":2,"Asset@odata.bind":"$1","AccessPolicy@odata.bind":"$2"}'
    parts = [*parts[:2], _op("POST", f"{BASE}Locators", 3, locator)]
    body = _batch_body("batch_1", "changeset_1", parts)
    r = api.request("POST", "$batch", body, **{"Content-Type": "multipart/mixed; boundary=batch_1",
                                                "Accept": "multipart/mixed"})
    assert r.status_code == 202, r.text
    text = r.text
    assert text.count("HTTP/1.1 201 Created") == 3, text
    asset = api.list(f"Assets?$filter=Name eq '{name}'")
    assert len(asset) == 1
    locators = api.list(f"Assets('{q(asset[0]['Id'])}')/Locators")
    assert len(locators) == 1 and locators[0]["Type"] == 2


def test_failing_changeset_writes_nothing(api: ApiClient) -> None:
    name = f"atomic-{uuid.uuid4().hex[:6]}"
    parts = [
        _op("POST", "Assets", 1, f'{{"Name":"{name}"}}'),
        _op("POST", "Files", 2, '{"Name":"x.mp4","ParentAssetId":"nb:cid:UUID:00000000-0000-0000-0000-000000000000"}'),
    ]
    body = _batch_body("b", "cs", parts)
    r = api.request("POST", "$batch", body, **{"Content-Type": "multipart/mixed; boundary=b"})
    assert r.status_code == 202
    assert "HTTP/1.1 404" in r.text and "201 Created" not in r.text
    assert api.list(f"Assets?$filter=Name eq '{name}'") == []


def test_sdk_style_batch_job_parts_are_referenced_by_content_id(api: ApiClient) -> None:
    """`$1/Files`-style references resolve to the entity created by part 1 (here: Assets('…')/Locators)."""
    name = f"ref-{uuid.uuid4().hex[:6]}"
    pol = api.create("AccessPolicies", "AccessPolicy", {"Name": "p", "DurationInMinutes": 10.0, "Permissions": 1})
    parts = [
        _op("POST", "Assets", 1, f'{{"Name":"{name}"}}'),
        _op("POST", "$1/Locators", 2,
            f'{{"Type":2,"AccessPolicy@odata.bind":"{key_url("AccessPolicies", pol["Id"])}"}}'),
    ]
    r = api.request("POST", "$batch", _batch_body("b2", "c2", parts),
                    **{"Content-Type": "multipart/mixed; boundary=b2"})
    assert r.status_code == 202 and r.text.count("201 Created") == 2, r.text
    asset = api.list(f"Assets?$filter=Name eq '{name}'")[0]
    assert len(api.list(f"Assets('{q(asset['Id'])}')/Locators")) == 1
