"""Filters and AssetFilters through the Operations API, in every payload dialect: create, read,
update, delete, the composed AssetFilter id and the asset's AssetFilters navigation, validation of
PresentationTimeRange and track conditions, and account isolation."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from lxml import etree
from starlette.testclient import TestClient

from tests.support.client import CONTENT_TYPE, NS, TYPE_NS, ApiClient

JSON = {"Content-Type": "application/json"}
INT64_MAX = "9223372036854775807"
COMPLEX = {
    "PresentationTimeRange": "PresentationTimeRange",
    "FirstQuality": "FirstQuality",
    "Tracks": "Collection(FilterTrackSelect)",
    "PropertyConditions": "Collection(FilterTrackPropertyCondition)",
}
INT64 = {"StartTimestamp", "EndTimestamp", "PresentationWindowDuration", "LiveBackoffDuration", "Timescale"}


def q(key: str) -> str:
    return quote(key, safe="")


def _atom_props(parent: Any, props: dict[str, Any]) -> None:
    for name, value in props.items():
        el = etree.SubElement(parent, f"{{{NS['d']}}}{name}")
        kind = COMPLEX.get(name)
        if value is None:
            el.set(f"{{{NS['m']}}}null", "true")
        elif kind and kind.startswith("Collection("):
            el.set(f"{{{NS['m']}}}type", f"Collection({TYPE_NS}.{kind[11:-1]})")
            for item in value:
                _atom_props(etree.SubElement(el, f"{{{NS['d']}}}element"), item)
        elif kind:
            el.set(f"{{{NS['m']}}}type", f"{TYPE_NS}.{kind}")
            _atom_props(el, value)
        elif isinstance(value, bool):
            el.set(f"{{{NS['m']}}}type", "Edm.Boolean")
            el.text = "true" if value else "false"
        else:
            el.set(f"{{{NS['m']}}}type", "Edm.Int64" if name in INT64 else
                   "Edm.Int32" if isinstance(value, int) else "Edm.String")
            el.text = str(value)


def encode(api: ApiClient, type_name: str, props: dict[str, Any]) -> bytes:
    """JSON as is (Int64 values may be strings), or an Atom entry with typed complex values."""
    if api.dialect != "atom":
        return json.dumps(props).encode()
    entry = etree.Element(f"{{{NS['a']}}}entry", nsmap={None: NS["a"], "d": NS["d"], "m": NS["m"]})
    etree.SubElement(entry, f"{{{NS['a']}}}category", term=f"{TYPE_NS}.{type_name}",
                     scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme")
    content = etree.SubElement(entry, f"{{{NS['a']}}}content", type="application/xml")
    _atom_props(etree.SubElement(content, f"{{{NS['m']}}}properties"), props)
    return etree.tostring(entry, xml_declaration=True, encoding="utf-8")


def send(api: ApiClient, method: str, path: str, type_name: str, props: dict[str, Any]) -> Any:
    return api.request(method, path, encode(api, type_name, props), **{"Content-Type": CONTENT_TYPE[api.dialect]})


def plain(value: Any) -> Any:
    """A value as JSON light shows it (no verbose `__metadata`/`results` wrappers)."""
    if isinstance(value, dict):
        if "results" in value and set(value) <= {"results", "__metadata"}:
            return [plain(v) for v in value["results"]]
        return {k: plain(v) for k, v in value.items() if k != "__metadata"}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def entity(api: ApiClient, r: Any) -> dict[str, Any]:
    return plain(api.entity(r))


SENT = {
    "Name": "first-minute",
    "PresentationTimeRange": {"StartTimestamp": "0", "EndTimestamp": "600000000", "Timescale": "10000000"},
    "Tracks": [
        {"PropertyConditions": [{"Property": "type", "Value": "Video", "Operator": "equal"},
                                {"Property": "Bitrate", "Value": "0-1000000", "Operator": "Equal"}]},
        {"PropertyConditions": [{"Property": "Language", "Value": "en", "Operator": "NOTEQUAL"}]},
    ],
    "FirstQuality": {"Bitrate": 500000},
}
STORED_RANGE = {"StartTimestamp": "0", "EndTimestamp": "600000000", "PresentationWindowDuration": INT64_MAX,
                "LiveBackoffDuration": "0", "Timescale": "10000000", "ForceEndTimestamp": False}
STORED_TRACKS = [
    {"PropertyConditions": [{"Property": "Type", "Value": "video", "Operator": "Equal"},
                            {"Property": "Bitrate", "Value": "0-1000000", "Operator": "Equal"}]},
    {"PropertyConditions": [{"Property": "Language", "Value": "en", "Operator": "NotEqual"}]},
]


# ---- global filters ---------------------------------------------------------------------------------------


def test_global_filter_crud(any_api: ApiClient) -> None:
    api = any_api
    r = send(api, "POST", "Filters", "Filter", SENT)
    assert r.status_code == 201, r.text
    assert r.headers["location"].endswith("Filters('first-minute')")
    created = entity(api, r)
    assert created == {"Name": "first-minute", "PresentationTimeRange": STORED_RANGE, "Tracks": STORED_TRACKS,
                       "FirstQuality": {"Bitrate": 500000}}
    assert entity(api, api.get("Filters('first-minute')")) == created
    assert [plain(f) for f in api.list("Filters")] == [created]
    r = send(api, "MERGE", "Filters('first-minute')", "Filter",
             {"Tracks": [{"PropertyConditions": [{"Property": "TYPE", "Value": "AUDIO", "Operator": "NotEqual"}]}],
              "FirstQuality": None})
    assert r.status_code == 204, r.text
    got = entity(api, api.get("Filters('first-minute')"))
    assert got["Tracks"] == [{"PropertyConditions": [{"Property": "Type", "Value": "audio", "Operator": "NotEqual"}]}]
    assert got["FirstQuality"] is None and got["PresentationTimeRange"] == STORED_RANGE
    assert api.delete("Filters('first-minute')").status_code == 204
    assert api.get("Filters('first-minute')").status_code == 404


def test_filter_with_only_a_name(api: ApiClient) -> None:
    r = api.request("POST", "Filters", b'{"Name":"everything"}', **JSON)
    assert r.status_code == 201
    got = r.json()
    assert got["PresentationTimeRange"] is None and got["Tracks"] == [] and got["FirstQuality"] is None


@pytest.mark.parametrize("name,status", [("", 400), ("has space", 400), ("semi;colon", 400), ("a,b", 400),
                                         ("x" * 129, 400), ("ok.name_1~-", 201)])
def test_filter_names(api: ApiClient, name: str, status: int) -> None:
    r = api.request("POST", "Filters", json.dumps({"Name": name}).encode(), **JSON)
    assert r.status_code == status, r.text
    if status == 400:
        assert "Name" in api.error(r)[1]


def test_filter_name_is_unique_and_immutable(api: ApiClient) -> None:
    assert api.request("POST", "Filters", b'{"Name":"one"}', **JSON).status_code == 201
    assert api.request("POST", "Filters", b'{"Name":"one"}', **JSON).status_code == 409
    r = api.request("MERGE", "Filters('one')", b'{"Name":"two"}', **JSON)
    assert r.status_code == 400
    assert [f["Name"] for f in api.list("Filters")] == ["one"]


BAD_RANGES = [
    ({"Timescale": "0"}, "Timescale"),
    ({"Timescale": -5}, "Timescale"),
    ({"StartTimestamp": "100", "EndTimestamp": "50"}, "StartTimestamp"),
    ({"StartTimestamp": -1}, "StartTimestamp"),
    ({"PresentationWindowDuration": "1199999999"}, "PresentationWindowDuration"),
    ({"PresentationWindowDuration": "119", "Timescale": "1"}, "PresentationWindowDuration"),
    ({"LiveBackoffDuration": "600000001"}, "LiveBackoffDuration"),
    ({"LiveBackoffDuration": "61", "Timescale": "1"}, "LiveBackoffDuration"),
    ({"LiveBackoffDuration": -1}, "LiveBackoffDuration"),
    ({"ForceEndTimestamp": True}, "ForceEndTimestamp"),
    ({"ForceEndTimestamp": True, "EndTimestamp": INT64_MAX}, "ForceEndTimestamp"),
    ({"StartTimestamp": "soon"}, "StartTimestamp"),
    ({"EndTimestamp": "9223372036854775808"}, "EndTimestamp"),
]
GOOD_RANGES = [
    {"PresentationWindowDuration": "1200000000"},  # exactly two minutes
    {"PresentationWindowDuration": "120", "Timescale": "1", "LiveBackoffDuration": "60"},
    {"ForceEndTimestamp": True, "EndTimestamp": "100"},
    {"StartTimestamp": "5", "EndTimestamp": "5"},
]
BAD_TRACKS = [
    ([{"PropertyConditions": []}], "Tracks[0].PropertyConditions"),
    ([{"PropertyConditions": [{"Property": "Codec", "Value": "x", "Operator": "Equal"}]}],
     "Tracks[0].PropertyConditions[0].Property"),
    ([{"PropertyConditions": [{"Property": "Type", "Value": "video", "Operator": "Like"}]}],
     "Tracks[0].PropertyConditions[0].Operator"),
    ([{"PropertyConditions": [{"Property": "Type", "Value": "subtitles", "Operator": "Equal"}]}],
     "Tracks[0].PropertyConditions[0].Value"),
    ([{"PropertyConditions": [{"Property": "Name", "Value": "", "Operator": "Equal"}]}],
     "Tracks[0].PropertyConditions[0].Value"),
    ([{"PropertyConditions": [{"Property": "Type", "Value": "audio", "Operator": "Equal"}]},
      {"PropertyConditions": [{"Property": "Bitrate", "Value": "fast", "Operator": "Equal"}]}],
     "Tracks[1].PropertyConditions[0].Value"),
    ([{"PropertyConditions": [{"Property": "Bitrate", "Value": "2000-1000", "Operator": "Equal"}]}],
     "Tracks[0].PropertyConditions[0].Value"),
    ([{"PropertyConditions": [{"Property": "Bitrate", "Value": "-", "Operator": "Equal"}]}],
     "Tracks[0].PropertyConditions[0].Value"),
    ([{"PropertyConditions": [{"Property": "Bitrate", "Value": "1-2-3", "Operator": "Equal"}]}],
     "Tracks[0].PropertyConditions[0].Value"),
]


@pytest.mark.parametrize("time_range,fragment", BAD_RANGES)
def test_bad_presentation_time_ranges(api: ApiClient, time_range: dict[str, Any], fragment: str) -> None:
    r = api.request("POST", "Filters", json.dumps({"Name": "bad", "PresentationTimeRange": time_range}).encode(),
                    **JSON)
    assert r.status_code == 400 and fragment in api.error(r)[1], r.text
    assert api.list("Filters") == []
    assert api.request("POST", "Filters", b'{"Name":"good"}', **JSON).status_code == 201
    r = api.request("MERGE", "Filters('good')", json.dumps({"PresentationTimeRange": time_range}).encode(), **JSON)
    assert r.status_code == 400 and fragment in api.error(r)[1], r.text
    assert api.entity(api.get("Filters('good')"))["PresentationTimeRange"] is None


@pytest.mark.parametrize("time_range", GOOD_RANGES)
def test_good_presentation_time_ranges(api: ApiClient, time_range: dict[str, Any]) -> None:
    r = api.request("POST", "Filters", json.dumps({"Name": "ok", "PresentationTimeRange": time_range}).encode(),
                    **JSON)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("tracks,fragment", BAD_TRACKS)
def test_bad_track_conditions(api: ApiClient, tracks: list[Any], fragment: str) -> None:
    r = api.request("POST", "Filters", json.dumps({"Name": "bad", "Tracks": tracks}).encode(), **JSON)
    assert r.status_code == 400 and fragment in api.error(r)[1], r.text


@pytest.mark.parametrize("value,stored", [("128000", "128000"), ("0-", "0-"), ("-5000000", "-5000000"),
                                          ("1000-1000", "1000"), (" 100-200 ", "100-200")])
def test_bitrate_values(api: ApiClient, value: str, stored: str) -> None:
    tracks = [{"PropertyConditions": [{"Property": "bitrate", "Value": value, "Operator": "Equal"}]}]
    r = api.request("POST", "Filters", json.dumps({"Name": "b", "Tracks": tracks}).encode(), **JSON)
    assert r.status_code == 201, r.text
    assert r.json()["Tracks"][0]["PropertyConditions"][0] == {"Property": "Bitrate", "Value": stored,
                                                              "Operator": "Equal"}


@pytest.mark.parametrize("bitrate", [0, -1, None])
def test_first_quality_bitrate_must_be_positive(api: ApiClient, bitrate: int | None) -> None:
    r = api.request("POST", "Filters", json.dumps({"Name": "fq", "FirstQuality": {"Bitrate": bitrate}}).encode(),
                    **JSON)
    assert r.status_code == 400 and "FirstQuality.Bitrate" in api.error(r)[1]


# ---- asset filters ---------------------------------------------------------------------------------------


def af_url(filter_id: str) -> str:
    return f"AssetFilters('{q(filter_id)}')"


def test_asset_filter_crud(any_api: ApiClient) -> None:
    api = any_api
    asset = api.create("Assets", "Asset", {"Name": "filtered"})
    r = send(api, "POST", "AssetFilters", "AssetFilter", {**SENT, "ParentAssetId": asset["Id"]})
    assert r.status_code == 201, r.text
    created = entity(api, r)
    assert created["Id"] == f"{asset['Id']}__###__first-minute"
    assert created["ParentAssetId"] == asset["Id"] and created["Name"] == "first-minute"
    assert created["PresentationTimeRange"] == STORED_RANGE and created["Tracks"] == STORED_TRACKS
    assert r.headers["location"].endswith(af_url(created["Id"]))
    assert entity(api, api.get(af_url(created["Id"]))) == created
    # the URL form with the separator percent-encoded (`__%23%23%23__`), as the docs write it
    r = api.get(f"AssetFilters('{asset['Id']}__%23%23%23__first-minute')")
    assert r.status_code == 200 and entity(api, r) == created
    assert [plain(f) for f in api.list(f"Assets('{q(asset['Id'])}')/AssetFilters")] == [created]
    assert [plain(f) for f in api.list(f"Assets('{q(asset['Id'])}')/AssetFilters()")] == [created]
    r = send(api, "MERGE", af_url(created["Id"]), "AssetFilter", {"FirstQuality": {"Bitrate": 64000}})
    assert r.status_code == 204, r.text
    assert entity(api, api.get(af_url(created["Id"])))["FirstQuality"] == {"Bitrate": 64000}
    assert api.delete(af_url(created["Id"])).status_code == 204
    assert api.get(af_url(created["Id"])).status_code == 404
    assert api.list(f"Assets('{q(asset['Id'])}')/AssetFilters") == []


def test_asset_filter_through_the_asset_navigation(api: ApiClient) -> None:
    asset = api.create("Assets", "Asset", {"Name": "nav"})
    r = api.request("POST", f"Assets('{q(asset['Id'])}')/AssetFilters", b'{"Name":"viaNav"}', **JSON)
    assert r.status_code == 201, r.text
    assert r.json()["Id"] == f"{asset['Id']}__###__viaNav" and r.json()["ParentAssetId"] == asset["Id"]


def test_asset_filter_rules(api: ApiClient) -> None:
    asset, other = (api.create("Assets", "Asset", {"Name": n}) for n in ("one", "two"))

    def post(props: dict[str, Any]) -> Any:
        return api.request("POST", "AssetFilters", json.dumps(props).encode(), **JSON)

    assert post({"ParentAssetId": asset["Id"], "Name": "f"}).status_code == 201
    r = post({"ParentAssetId": asset["Id"], "Name": "f"})
    assert r.status_code == 409 and "'f'" in api.error(r)[1]
    assert post({"ParentAssetId": other["Id"], "Name": "f"}).status_code == 201  # unique per asset only
    r = post({"ParentAssetId": f"nb:cid:UUID:{uuid.uuid4()}", "Name": "g"})
    assert r.status_code == 404 and "Asset" in api.error(r)[1]
    r = post({"Name": "g"})
    assert r.status_code == 400 and "ParentAssetId" in api.error(r)[1]
    r = post({"ParentAssetId": asset["Id"]})
    assert r.status_code == 400 and "Name" in api.error(r)[1]
    r = post({"ParentAssetId": asset["Id"], "Name": "bad", "PresentationTimeRange": {"Timescale": 0}})
    assert r.status_code == 400 and "Timescale" in api.error(r)[1]
    fid = f"{asset['Id']}__###__f"
    for change in ({"Name": "renamed"}, {"ParentAssetId": other["Id"]}):
        r = api.request("MERGE", af_url(fid), json.dumps(change).encode(), **JSON)
        assert r.status_code == 400, r.text
    r = api.request("MERGE", af_url(fid), b'{"Tracks":[{"PropertyConditions":[{"Property":"Type"}]}]}', **JSON)
    assert r.status_code == 400 and "Value" in api.error(r)[1]
    # a global filter of the same name is independent
    assert api.request("POST", "Filters", b'{"Name":"f"}', **JSON).status_code == 201


def test_deleting_an_asset_deletes_its_filters(api: ApiClient) -> None:
    asset = api.create("Assets", "Asset", {"Name": "gone"})
    keep = api.create("Assets", "Asset", {"Name": "kept"})
    for a in (asset, keep):
        r = api.request("POST", "AssetFilters", json.dumps({"ParentAssetId": a["Id"], "Name": "f"}).encode(), **JSON)
        assert r.status_code == 201
    assert api.delete(f"Assets('{q(asset['Id'])}')").status_code == 204
    assert [f["ParentAssetId"] for f in api.list("AssetFilters")] == [keep["Id"]]
    assert api.get(af_url(f"{asset['Id']}__###__f")).status_code == 404


# ---- isolation -------------------------------------------------------------------------------------------


def test_another_account_cannot_see_or_touch_filters(http: TestClient, api: ApiClient, other_account: Any) -> None:
    asset = api.create("Assets", "Asset", {"Name": "mine"})
    assert api.request("POST", "Filters", b'{"Name":"secret"}', **JSON).status_code == 201
    r = api.request("POST", "AssetFilters", json.dumps({"ParentAssetId": asset["Id"], "Name": "local"}).encode(),
                    **JSON)
    fid = r.json()["Id"]
    intruder = ApiClient.for_account(http, other_account)
    assert intruder.list("Filters") == [] and intruder.list("AssetFilters") == []
    for r in (intruder.get("Filters('secret')"), intruder.get(af_url(fid)), intruder.delete("Filters('secret')"),
              intruder.delete(af_url(fid)),
              intruder.request("MERGE", "Filters('secret')", b'{"FirstQuality":{"Bitrate":1}}', **JSON),
              intruder.get(f"Assets('{q(asset['Id'])}')/AssetFilters")):
        assert r.status_code == 404, (r.status_code, r.text)
    r = intruder.request("POST", "AssetFilters", json.dumps({"ParentAssetId": asset["Id"], "Name": "x"}).encode(),
                         **JSON)
    assert r.status_code == 404
    # the intruder may use the same names in its own account
    assert intruder.request("POST", "Filters", b'{"Name":"secret"}', **JSON).status_code == 201
    assert api.entity(api.get("Filters('secret')"))["FirstQuality"] is None
    assert len(api.list("AssetFilters")) == 1
