"""Bad input: every malformed, mistyped, unknown, oversized or hostile request gets the right 4xx with
an OData error body in the requested format, never a 500, and never leaves a partial write."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from openams.runtime import Runtime
from tests.conftest import _new_account
from tests.support.client import ApiClient, key_url

JSON = {"Content-Type": "application/json"}
ATOM = {"Content-Type": "application/atom+xml"}
NIL = "nb:cid:UUID:00000000-0000-0000-0000-000000000000"
ENTRY = (
    '<entry xmlns="http://www.w3.org/2005/Atom" '
    'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata" '
    'xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices"><content type="application/xml">'
    "<m:properties>{}</m:properties></content></entry>"
)


def q(key: str) -> str:
    return quote(key, safe="")


def assert_error(api: ApiClient, r: Any, status: int, code: str | None = None, fragment: str = "") -> str:
    """The status, an OData error body in the client's dialect, the code and a helpful message."""
    assert r.status_code == status, (r.status_code, r.text)
    ctype = r.headers["content-type"]
    if api.dialect == "light":
        assert ctype.startswith("application/json;odata=minimalmetadata") and "odata.error" in r.json()
    elif api.dialect == "verbose":
        assert ctype.startswith("application/json;odata=verbose") and "error" in r.json()
    else:
        assert ctype.startswith("application/xml") and b"<m:error" in r.content
    got_code, message = api.error(r)
    if code is not None:
        assert got_code == code, (got_code, message)
    assert fragment in message, message
    assert "Traceback" not in r.text and 'File "' not in r.text
    return message


@pytest.fixture(scope="module")
def shared(http: TestClient, runtime: Runtime) -> Iterator[ApiClient]:
    """A client of an account whose content only the tests that expect to write nothing use."""
    api = ApiClient.for_account(http, _new_account(runtime, "bad"), "light")
    yield api
    # the whole module wrote nothing into it
    assert api.list("Assets") == [] and api.list("Files") == [] and api.list("Locators") == []
    assert api.list("AccessPolicies") == []


@pytest.fixture(params=["light", "verbose", "atom"])
def reader(request: pytest.FixtureRequest, shared: ApiClient) -> ApiClient:
    """The shared account in each dialect."""
    return ApiClient(shared.http, shared.token, request.param)


DIALECTS = ("light", "verbose", "atom")


def spread(argnames: str, cases: list[Any]) -> tuple[str, list[tuple[Any, ...]]]:
    """Each case once, in the three dialects in turn: every error format is checked across the
    cases without running every case three times."""
    rows = [(*(c if isinstance(c, tuple) else (c,)), DIALECTS[i % 3]) for i, c in enumerate(cases)]
    return f"{argnames},dialect", rows


def as_dialect(api: ApiClient, dialect: str) -> ApiClient:
    return ApiClient(api.http, api.token, dialect)


# ---- malformed bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    *spread(
        "body,ctype",
        [
            (b'{"Name": ', "application/json"),
            (b'{"Name": "x",}}', "application/json"),
            (b"{Name: unquoted}", "application/json"),
            (b"[1, 2]", "application/json"),
            (b"null", "application/json"),
            (b'"just a string"', "application/json"),
            (b'{"Name":"\xff\xfe"}', "application/json"),
            (b"\x00\x01\x02", "application/json"),
            ('{"Name":"x"}'.encode("utf-16"), "application/json"),
            (b"<entry><content>", "application/atom+xml"),
            (b"<foo/>", "application/atom+xml"),
            (
                b"<entry xmlns='http://www.w3.org/2005/Atom'><content type='application/xml'><m:properties>",
                "application/atom+xml",
            ),
            (b'{"Name":"json sent as xml"}', "application/atom+xml"),
            (b"<entry/>", "application/json"),
            (b"", "application/json"),
            (b"   ", "application/atom+xml"),
        ],
    )
)
def test_malformed_bodies_are_400(shared: ApiClient, body: bytes, ctype: str, dialect: str) -> None:
    reader = as_dialect(shared, dialect)
    r = reader.request("POST", "Assets", body, **{"Content-Type": ctype})
    assert_error(reader, r, 400)


def test_xml_with_entities_is_refused(reader: ApiClient) -> None:
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + ENTRY.format("<d:Name>&x;</d:Name>").encode()
    )
    assert_error(reader, reader.request("POST", "Assets", xxe, **ATOM), 400, "InvalidPayload")
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        + ENTRY.format("<d:Name>&b;</d:Name>").encode()
    )
    assert_error(reader, reader.request("POST", "Assets", bomb, **ATOM), 400, "InvalidPayload")


@pytest.mark.parametrize(
    "body",
    [
        b'{"Name":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"Name":"\\ud800"}',
        b'{"Name":"a\\u0000b"}',
        b'{"\\u0000":1}',
    ],
)
def test_bodies_no_store_can_hold_are_400_not_500(reader: ApiClient, body: bytes) -> None:
    r = reader.request("POST", "Assets", body, **JSON)
    assert_error(reader, r, 400, "InvalidPayload")


# ---- wrong types and unknown names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "set_name,props,prop",
    [
        ("Assets", {"Name": "x", "Options": "abc"}, "Options"),
        ("Assets", {"Name": "x", "Options": 1.5}, "Options"),
        ("Assets", {"Name": "x", "Options": 99999999999999}, "Options"),
        ("Assets", {"Name": {"nested": 1}}, "Name"),
        ("Assets", {"Name": ["a"]}, "Name"),
        ("Assets", {"Name": "n" * 513}, "Name"),
        ("AccessPolicies", {"Name": "x", "DurationInMinutes": "soon"}, "DurationInMinutes"),
        ("AccessPolicies", {"Name": "x", "DurationInMinutes": 10, "Permissions": "all"}, "Permissions"),
        ("Files", {"Name": "x.mp4", "ParentAssetId": NIL, "IsPrimary": "maybe"}, "IsPrimary"),
        (
            "Files",
            {"Name": "x.mp4", "ParentAssetId": NIL, "ContentFileSize": "99999999999999999999"},
            "ContentFileSize",
        ),
        ("Files", {"Name": "x.mp4", "ParentAssetId": NIL, "ContentFileSize": 9.5}, "ContentFileSize"),
        (
            "Locators",
            {"Type": 1, "AssetId": NIL, "AccessPolicyId": "x", "StartTime": "yesterday"},
            "StartTime",
        ),
        ("Locators", {"Type": 1, "AssetId": NIL, "AccessPolicyId": "x", "StartTime": 12}, "StartTime"),
        ("Locators", {"Type": "sas", "AssetId": NIL, "AccessPolicyId": "x"}, "Type"),
    ],
)
def test_wrong_types_are_400_naming_the_property(
    reader: ApiClient, set_name: str, props: dict[str, Any], prop: str
) -> None:
    if reader.dialect == "atom":
        body = ENTRY.format("".join(f"<d:{k}>{_xml_value(v)}</d:{k}>" for k, v in props.items())).encode()
    else:
        body = json.dumps(props).encode()
    ctype = JSON if reader.dialect != "atom" else ATOM
    r = reader.request("POST", set_name, body, **ctype)
    assert_error(reader, r, 400, "InvalidPropertyValue", prop)


def _xml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "".join(f"<d:{k}>{v}</d:{k}>" for k, v in value.items())
    if isinstance(value, list):
        return "".join(f"<d:element>{v}</d:element>" for v in value)
    return str(value)


@pytest.mark.parametrize(
    "body,ctype",
    [
        (b'{"Name":"x","Colour":"red"}', "application/json"),
        (b'{"Name":"x","colour@odata.type":"Edm.String","Colour":"red"}', "application/json"),
        (b'{"d":{"Name":"x","Colour":"red"}}', "application/json;odata=verbose"),
        (ENTRY.format("<d:Name>x</d:Name><d:Colour>red</d:Colour>").encode(), "application/atom+xml"),
    ],
)
def test_unknown_properties_are_400_naming_them(reader: ApiClient, body: bytes, ctype: str) -> None:
    r = reader.request("POST", "Assets", body, **{"Content-Type": ctype})
    assert_error(reader, r, 400, "UndefinedProperty", "Colour")


def test_unknown_property_in_an_update_changes_nothing(api: ApiClient) -> None:
    asset = api.create("Assets", "Asset", {"Name": "keep"})
    r = api.request("MERGE", f"Assets('{q(asset['Id'])}')", b'{"Name":"changed","Colour":"red"}', **JSON)
    assert_error(api, r, 400, "UndefinedProperty", "Colour")
    assert api.entity(api.get(f"Assets('{q(asset['Id'])}')"))["Name"] == "keep"


@pytest.mark.parametrize(
    *spread(
        "method,path",
        [
            ("GET", "Nope"),
            ("GET", "Nope('x')"),
            ("POST", "Nope"),
            ("GET", "Asset"),
            ("GET", "Assets('nb:cid:UUID:1')/Nope"),
            ("GET", "Assets/Files"),
            ("GET", "$nope"),
            ("DELETE", "Nope('x')"),
        ],
    )
)
def test_unknown_sets_and_segments_are_404(shared: ApiClient, method: str, path: str, dialect: str) -> None:
    reader = as_dialect(shared, dialect)
    r = reader.request(method, path, b"{}" if method == "POST" else None, **JSON)
    assert_error(reader, r, 404, "ResourceNotFound")


def test_unknown_paths_outside_the_api_are_404(http: TestClient) -> None:
    r = http.get("/nothing/here")
    assert r.status_code == 404 and b"<m:error" in r.content


@pytest.mark.parametrize(
    *spread(
        "path",
        [
            "Assets(1)",
            "Assets('unterminated)",
            "Assets(nb:cid')",
            "Assets(Name='x')",
            "Assets('x')()",
            "EncodingReservedUnitTypes(guid'nope')",
            "EncodingReservedUnitTypes('abc')",
            "StorageAccounts(1)",
            "Assets(null)",
            "Assets('%00')",
            "Assets('a%00b')/Files",
            "StorageAccounts('%00')",
        ],
    )
)
def test_bad_keys_are_400(shared: ApiClient, path: str, dialect: str) -> None:
    reader = as_dialect(shared, dialect)
    assert_error(reader, reader.get(path), 400)


def test_missing_keys_are_404(reader: ApiClient) -> None:
    for path in (
        f"Assets('{NIL}')",
        f"Assets('{q(NIL)}')",
        "Assets('nb%3Acid%3AUUID%3Anot-a-guid')",
        "EncodingReservedUnitTypes(guid'00000000-0000-0000-0000-000000000000')",
        "StorageAccounts('nope')",
    ):
        assert_error(reader, reader.get(path), 404, "ResourceNotFound")


# ---- bad query options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    *spread(
        "query,fragment",
        [
            ("$filter=Name eq", "$filter"),
            ("$filter=Nope eq 'x'", "Nope"),
            ("$filter=Name eq 5", "$filter"),
            ("$filter=Name eq 'x' and", "$filter"),
            ("$filter=substringof(", "$filter"),
            ("$filter=" + "(" * 200 + "true" + ")" * 200, "nested"),
            ("$filter=Options eq 99999999999999999999", "range"),
            ("$filter=Created eq datetime'garbage'", "garbage"),
            ("$filter=Options div 0 eq 1", "division"),
            ("$filter=1", "$filter"),
            ("$filter=Name eq '%00'", "NUL"),
            ("$orderby=Nope", "Nope"),
            ("$orderby=Name sideways", "$orderby"),
            ("$select=Nope", "Nope"),
            ("$select=", "$select"),
            ("$inlinecount=some", "$inlinecount"),
            ("$top=1&$top=2", "$top"),
            ("$format=csv&x=1", "$format"),
        ],
    )
)
def test_bad_query_options_are_4xx(shared: ApiClient, query: str, fragment: str, dialect: str) -> None:
    reader = as_dialect(shared, dialect)
    r = reader.get(f"Assets?{query}")
    status = 406 if query.startswith("$format") else 400
    assert r.status_code == status, (r.status_code, r.text)
    if status == 400:
        assert_error(reader, r, 400, fragment=fragment)


# ---- size limits ------------------------------------------------------------------------------------


def test_oversized_body_is_413(reader: ApiClient) -> None:
    big = b'{"Name":"' + b"x" * (16 * 1024 * 1024 + 1) + b'"}'
    r = reader.request("POST", "Assets", big, **JSON)
    assert_error(reader, r, 413, "RequestEntityTooLarge")


def test_oversized_streamed_body_is_413(shared: ApiClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"Name":"'
        for _ in range(17):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    r = shared.http.post("/api/Assets", content=chunks(), headers=shared.headers(**JSON))
    assert r.status_code == 413 and "odata.error" in r.json()


def test_oversized_url_is_414(reader: ApiClient) -> None:
    r = reader.get("Assets?$filter=" + quote("Name eq '" + "x" * 9000 + "'"))
    assert_error(reader, r, 414, "RequestUriTooLong")
    r = reader.get("Assets('" + "x" * 9000 + "')")
    assert_error(reader, r, 414)


def test_oversized_token_request_is_413(http: TestClient) -> None:
    r = http.post(
        "/v2/OAuth2-13",
        content=b"grant_type=client_credentials&client_secret=" + b"x" * 70_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413


# ---- never a partial write --------------------------------------------------------------------------


def test_failing_creates_leave_no_row(api: ApiClient) -> None:
    asset = api.create("Assets", "Asset", {"Name": "parent"})
    api.create("Files", "AssetFile", {"Name": "a.mp4", "ParentAssetId": asset["Id"], "IsPrimary": True})
    failing = [
        ("Files", {"Name": "a.mp4", "ParentAssetId": asset["Id"]}, 409),
        ("Files", {"Name": "b.mp4", "ParentAssetId": asset["Id"], "IsPrimary": True}, 409),
        ("Files", {"Name": "c.mp4", "ParentAssetId": NIL}, 404),
        ("Files", {"Name": "bad:name.mp4", "ParentAssetId": asset["Id"]}, 400),
        # deep insert: the asset would be fine, its second file is not
        ("Assets", {"Name": "deep", "Files": [{"Name": "ok.mp4"}, {"Name": "bad?.mp4"}]}, 400),
        (
            "Assets",
            {
                "Name": "deep2",
                "Files": [{"Name": "p1.mp4", "IsPrimary": True}, {"Name": "p2.mp4", "IsPrimary": True}],
            },
            409,
        ),
        ("Assets", {"Name": "deep3", "Locators": [{"Type": 1}]}, 400),
        ("AccessPolicies", {"Name": "x"}, 400),
        ("Locators", {"Type": 2, "AssetId": asset["Id"], "AccessPolicyId": "nb:pid:UUID:nope"}, 404),
    ]
    for set_name, props, status in failing:
        r = api.request("POST", set_name, json.dumps(props).encode(), **JSON)
        assert r.status_code == status, (set_name, props, r.status_code, r.text)
    assert [a["Name"] for a in api.list("Assets")] == ["parent"]
    assert [f["Name"] for f in api.list("Files")] == ["a.mp4"]
    assert api.list("Locators") == [] and api.list("AccessPolicies") == []


def test_failing_update_changes_nothing(api: ApiClient) -> None:
    asset = api.create("Assets", "Asset", {"Name": "parent"})
    api.create("Files", "AssetFile", {"Name": "a.mp4", "ParentAssetId": asset["Id"], "IsPrimary": True})
    other = api.create("Files", "AssetFile", {"Name": "b.mp4", "ParentAssetId": asset["Id"]})
    url = f"Files('{q(other['Id'])}')"
    before = api.get(url)
    for body, status in [
        ({"MimeType": "video/mp4", "IsPrimary": True}, 409),
        ({"MimeType": "video/mp4", "Name": "a.mp4"}, 409),
        ({"MimeType": "video/mp4", "Name": "x/y.mp4"}, 400),
        ({"MimeType": "video/mp4", "ContentFileSize": "-5"}, 400),
        ({"MimeType": "video/mp4", "ParentAssetId": NIL}, 400),
    ]:
        r = api.request("MERGE", url, json.dumps(body).encode(), **JSON)
        assert r.status_code == status, (body, r.status_code, r.text)
    after = api.get(url)
    assert api.entity(after) == api.entity(before)
    assert after.headers["etag"] == before.headers["etag"]


def _batch(parts: list[str]) -> bytes:
    lines = ["--batch", "Content-Type: multipart/mixed; boundary=cs", ""]
    for part in parts:
        lines += ["--cs", "Content-Type: application/http", "Content-Transfer-Encoding: binary", "", part]
    lines += ["--cs--", "--batch--", ""]
    return "\r\n".join(lines).encode()


def _op(method: str, url: str, body: str, cid: int, ctype: str = "application/json") -> str:
    return f"{method} {url} HTTP/1.1\r\nContent-ID: {cid}\r\nContent-Type: {ctype}\r\n\r\n{body}"


@pytest.mark.parametrize(
    "bad,status",
    [
        (_op("POST", "Assets", '{"Name": ', 3), 400),
        (_op("POST", "Assets", '{"Name":"x","Colour":1}', 3), 400),
        (_op("POST", "Nope", "{}", 3), 404),
        (_op("POST", "Files", '{"Name":"a.mp4","ParentAssetId":"$1"}', 3), 404),
        (
            _op("POST", "Locators", '{"Type":2,"Asset@odata.bind":"$1","AccessPolicy@odata.bind":"$9"}', 3),
            400,
        ),
        (
            _op("POST", "Locators", '{"Type":2,"Asset@odata.bind":"$1","AccessPolicy@odata.bind":"$2"}', 3),
            400,
        ),
        (_op("POST", "$1/Files", '{"Name":"bad:name.mp4"}', 3), 400),
        (_op("POST", "Assets", "Name=x", 3, "application/x-www-form-urlencoded"), 415),
        (_op("MERGE", "AccessPolicies('nb:pid:UUID:x')", '{"Name":"x"}', 3), 405),
        (_op("DELETE", "$batch", "", 3), 405),
    ],
)
def test_failing_changeset_writes_nothing(api: ApiClient, bad: str, status: int) -> None:
    parts = [
        _op("POST", "Assets", '{"Name":"batched"}', 1),
        _op("POST", "AccessPolicies", '{"Name":"w","DurationInMinutes":10,"Permissions":2}', 2),
        bad,
    ]
    r = api.request("POST", "$batch", _batch(parts), **{"Content-Type": "multipart/mixed; boundary=batch"})
    assert r.status_code == 202, r.text
    assert f"HTTP/1.1 {status} " in r.text, r.text
    assert "201 Created" not in r.text and "Traceback" not in r.text
    assert api.list("Assets") == [] and api.list("AccessPolicies") == [] and api.list("Files") == []


@pytest.mark.parametrize(
    "body,ctype,status",
    [
        (b"garbage", "multipart/mixed; boundary=b", 400),
        (b"garbage", "multipart/mixed", 400),
        (b"garbage", "application/json", 415),
        (
            b"--b\r\nContent-Type: application/http\r\n\r\nNOT A REQUEST\r\n--b--\r\n",
            "multipart/mixed; boundary=b",
            400,
        ),
        (_batch([_op("GET", "Assets", "", 1)]), "multipart/mixed; boundary=batch", 400),
    ],
)
def test_malformed_batches_are_4xx(shared: ApiClient, body: bytes, ctype: str, status: int) -> None:
    r = shared.request("POST", "$batch", body, **{"Content-Type": ctype})
    assert_error(shared, r, status)


# ---- values the store or the clock cannot hold ------------------------------------------------------


def test_locator_times_beyond_year_9999_are_400(api: ApiClient) -> None:
    asset = api.create("Assets", "Asset", {"Name": "far"})
    policy = api.create(
        "AccessPolicies", "AccessPolicy", {"Name": "long", "DurationInMinutes": 52560000.0, "Permissions": 1}
    )
    body = {
        "Type": 2,
        "AssetId": asset["Id"],
        "AccessPolicyId": policy["Id"],
        "StartTime": "9999-12-31T00:00:00",
    }
    r = api.request("POST", "Locators", json.dumps(body).encode(), **JSON)
    assert_error(api, r, 400, fragment="9999")
    assert api.list("Locators") == []
    body["StartTime"] = "2026-01-01T00:00:00Z"
    loc = api.create("Locators", "Locator", body)
    r = api.request("MERGE", f"Locators('{q(loc['Id'])}')", b'{"StartTime":"9999-12-31T00:00:00"}', **JSON)
    assert_error(api, r, 400, fragment="9999")
    assert api.entity(api.get(f"Locators('{q(loc['Id'])}')"))["StartTime"].startswith("2026-01-01")


def test_binding_urls_that_address_nothing(api: ApiClient) -> None:
    for bind, status in [
        ("garbage", 404),
        ("http://elsewhere.example/api/Assets('nope')", 404),
        (key_url("Files", NIL), 400),
        ("Assets", 400),
        ("", 400),
    ]:
        body = {"Name": "child", "ParentAssets@odata.bind": [bind]}
        r = api.request("POST", "Assets", json.dumps(body).encode(), **JSON)
        assert r.status_code == status, (bind, r.status_code, r.text)
    assert api.list("Assets") == []


# ---- storage follows the transaction ----------------------------------------------------------------


def _container(asset: dict[str, Any]) -> tuple[str, str]:
    """(storage account, container) of an asset, from its Uri (`…/<storage>/asset-<guid>`)."""
    storage, container = asset["Uri"].rstrip("/").split("/")[-2:]
    return storage, container


def test_failing_changeset_leaves_no_container(
    api: ApiClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[tuple[str, str]] = []
    real = runtime.storage.create_container

    def spy(account: str, container: str) -> None:
        real(account, container)
        created.append((account, container))

    monkeypatch.setattr(runtime.storage, "create_container", spy)
    parts = [
        _op("POST", "Assets", '{"Name":"a1"}', 1),
        _op("POST", "Assets", '{"Name":"a2"}', 2),
        _op("POST", "Nope", "{}", 3),
    ]
    r = api.request("POST", "$batch", _batch(parts), **{"Content-Type": "multipart/mixed; boundary=batch"})
    assert r.status_code == 202 and "HTTP/1.1 404" in r.text
    assert len(created) == 2
    assert not any(runtime.storage.container_exists(*c) for c in created)
    assert api.list("Assets") == []


def test_rolled_back_asset_delete_keeps_its_media(api: ApiClient, runtime: Runtime) -> None:
    asset = api.create("Assets", "Asset", {"Name": "precious"})
    where = _container(asset)
    assert runtime.storage.container_exists(*where)
    url = f"Assets('{q(asset['Id'])}')"
    parts = [_op("DELETE", url, "", 1), _op("POST", "Nope", "{}", 2)]
    r = api.request("POST", "$batch", _batch(parts), **{"Content-Type": "multipart/mixed; boundary=batch"})
    assert r.status_code == 202 and "HTTP/1.1 404" in r.text
    assert api.get(url).status_code == 200
    assert runtime.storage.container_exists(*where)
    # a delete that commits removes the container; keepcontainer=true keeps it
    assert api.delete(url).status_code == 204
    assert not runtime.storage.container_exists(*where)
    kept = api.create("Assets", "Asset", {"Name": "kept"})
    assert api.delete(f"Assets('{q(kept['Id'])}')?keepcontainer=true").status_code == 204
    assert runtime.storage.container_exists(*_container(kept))
