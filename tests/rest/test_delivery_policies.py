"""AssetDeliveryPolicies through the Operations API — create, read, update, delete, validation of
type, protocols and configuration — the rules for linking them to assets (one policy per protocol,
the key each dynamic encryption needs, nothing changes while an OnDemandOrigin locator exists),
account isolation, and the origin's `delivery_decision`."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from openams.db.store import Store
from openams.entities.delivery_policies import (
    BLOCKED,
    CBCS,
    CENC,
    CLEAR,
    ENVELOPE,
    asset_delivery_policies,
    delivery_decision,
)
from openams.model import MODEL
from openams.runtime import Runtime
from tests.support.client import BASE, ApiClient
from tests.support.protection import make_key

JSON = {"Content-Type": "application/json"}
VERBOSE = {"Content-Type": "application/json;odata=verbose"}
KEY_URL = "https://keys.example/"
IV = base64.b64encode(bytes(range(16))).decode()
# what the .NET SDK's DataContractJsonSerializer writes: integer keys, escaped slashes
SDK_CONFIG = '[{"Key":2,"Value":"https:\\/\\/keys.example\\/"},{"Key":3,"Value":"' + IV + '"}]'
ENVELOPE_TYPE, COMMON_TYPE, CBCS_TYPE = 3, 4, 5
SMOOTH_DASH_HLS = 7


def q(key: str) -> str:
    return quote(key, safe="")


def post(api: ApiClient, path: str, props: dict[str, Any], expect: int = 201) -> Any:
    r = api.request("POST", path, json.dumps(props).encode(), **JSON)
    assert r.status_code == expect, (r.status_code, r.text)
    return r.json() if expect == 201 else r


def policy(api: ApiClient, kind: int = ENVELOPE_TYPE, protocol: int = SMOOTH_DASH_HLS,
           config: str | None = None, name: str = "policy") -> dict[str, Any]:
    return post(api, "AssetDeliveryPolicies", {"Name": name, "AssetDeliveryPolicyType": kind,
                                               "AssetDeliveryProtocol": protocol,
                                               "AssetDeliveryConfiguration": config})


def purl(p: dict[str, Any]) -> str:
    return f"AssetDeliveryPolicies('{q(p['Id'])}')"


def aurl(a: dict[str, Any]) -> str:
    return f"Assets('{q(a['Id'])}')"


def link(api: ApiClient, asset: dict[str, Any], p: dict[str, Any]) -> Any:
    return api.request("POST", f"{aurl(asset)}/$links/DeliveryPolicies", json.dumps({"uri": BASE + purl(p)}).encode(),
                       **JSON)


def unlink(api: ApiClient, asset: dict[str, Any], p: dict[str, Any]) -> Any:
    return api.delete(f"{aurl(asset)}/$links/DeliveryPolicies('{q(p['Id'])}')")


def asset_with_key(api: ApiClient, key_type: int | None = 4) -> dict[str, Any]:
    asset = post(api, "Assets", {"Name": "protected"})
    if key_type is not None:
        key, _ = make_key(api, key_type)
        r = api.request("POST", f"{aurl(asset)}/$links/ContentKeys",
                        json.dumps({"uri": f"{BASE}ContentKeys('{q(key['Id'])}')"}).encode(), **JSON)
        assert r.status_code == 204, r.text
    return asset


def origin_locator(api: ApiClient, asset: dict[str, Any], kind: int = 2) -> dict[str, Any]:
    access = post(api, "AccessPolicies", {"Name": "read", "DurationInMinutes": 60, "Permissions": 1})
    return post(api, "Locators", {"Type": kind, "AssetId": asset["Id"], "AccessPolicyId": access["Id"]})


def linked(api: ApiClient, asset: dict[str, Any]) -> list[str]:
    return [p["Id"] for p in api.list(f"{aurl(asset)}/DeliveryPolicies")]


# ---- CRUD ----------------------------------------------------------------------------------------------


def test_delivery_policy_crud(api: ApiClient) -> None:
    created = policy(api, config=SDK_CONFIG, name="AES dynamic")
    assert created["Id"].startswith("nb:adpid:UUID:")
    assert (created["AssetDeliveryPolicyType"], created["AssetDeliveryProtocol"]) == (3, 7)
    assert created["AssetDeliveryConfiguration"] == SDK_CONFIG  # the SDK's own text, as sent
    assert created["Created"] and created["LastModified"]
    assert api.entity(api.get(purl(created)))["AssetDeliveryConfiguration"] == SDK_CONFIG
    assert [p["Id"] for p in api.list("AssetDeliveryPolicies")] == [created["Id"]]
    r = api.request("MERGE", purl(created), json.dumps({"AssetDeliveryProtocol": 2, "AssetDeliveryConfiguration":
                                                        None}).encode(), **JSON)
    assert r.status_code == 204, r.text
    got = api.entity(api.get(purl(created)))
    assert got["AssetDeliveryProtocol"] == 2 and got["AssetDeliveryConfiguration"] is None
    assert api.delete(purl(created)).status_code == 204
    assert api.get(purl(created)).status_code == 404


def test_create_in_json_verbose(http: TestClient, account: Any) -> None:
    api = ApiClient.for_account(http, account, "verbose")
    body = {"Name": "Clear Policy", "AssetDeliveryPolicyType": 2, "AssetDeliveryProtocol": 7,
            "AssetDeliveryConfiguration": None, "Id": None, "Created": "0001-01-01T00:00:00",
            "LastModified": "0001-01-01T00:00:00"}
    r = api.request("POST", "AssetDeliveryPolicies", json.dumps(body).encode(), **VERBOSE)
    assert r.status_code == 201, r.text
    d = r.json()["d"]
    assert d["__metadata"]["type"].endswith(".AssetDeliveryPolicy") and d["Id"].startswith("nb:adpid:UUID:")
    assert d["AssetDeliveryPolicyType"] == 2 and d["Name"] == "Clear Policy"


@pytest.mark.parametrize("sent,stored", [
    ('[{"Key":"EnvelopeBaseKeyAcquisitionUrl","Value":"https://k/"}]', '[{"Key":2,"Value":"https://k/"}]'),
    ('{"EnvelopeKeyAcquisitionUrl":"https://k/?kid=1","3":"' + IV + '"}',
     '[{"Key":1,"Value":"https://k/?kid=1"},{"Key":3,"Value":"' + IV + '"}]'),
    ('[{"key":"12","value":"avc1,mp4a"}]', '[{"Key":12,"Value":"avc1,mp4a"}]'),
    ("[]", None),
    ("", None),
])
def test_configuration_forms_are_stored_as_the_sdk_reads_them(api: ApiClient, sent: str, stored: str | None) -> None:
    assert policy(api, config=sent)["AssetDeliveryConfiguration"] == stored


BAD = [
    ({"AssetDeliveryPolicyType": None}, "AssetDeliveryPolicyType"),
    ({"AssetDeliveryPolicyType": 0}, "AssetDeliveryPolicyType"),
    ({"AssetDeliveryPolicyType": 6}, "AssetDeliveryPolicyType"),
    ({"AssetDeliveryProtocol": None}, "AssetDeliveryProtocol"),
    ({"AssetDeliveryProtocol": 0}, "AssetDeliveryProtocol"),
    ({"AssetDeliveryProtocol": 32}, "AssetDeliveryProtocol"),
    ({"AssetDeliveryProtocol": -1}, "AssetDeliveryProtocol"),
    ({"AssetDeliveryConfiguration": "not json"}, "JSON"),
    ({"AssetDeliveryConfiguration": '"text"'}, "array"),
    ({"AssetDeliveryConfiguration": '[{"Key":99,"Value":"x"}]'}, "unknown key"),
    ({"AssetDeliveryConfiguration": '[{"Key":0,"Value":"x"}]'}, "unknown key"),
    ({"AssetDeliveryConfiguration": '[{"Key":"Nonsense","Value":"x"}]'}, "Nonsense"),
    ({"AssetDeliveryConfiguration": '[{"Value":"x"}]'}, "[0]"),
    ({"AssetDeliveryConfiguration": '[{"Key":1,"Value":"https://a/"},{"Key":"1","Value":"https://b/"}]'}, "twice"),
    ({"AssetDeliveryConfiguration": '[{"Key":1,"Value":5}]'}, "string"),
    ({"AssetDeliveryConfiguration": '[{"Key":1,"Value":"/relative"}]'}, "EnvelopeKeyAcquisitionUrl"),
    ({"AssetDeliveryConfiguration": '[{"Key":7,"Value":"ftp://x/"}]'}, "WidevineLicenseAcquisitionUrl"),
    ({"AssetDeliveryConfiguration": '[{"Key":3,"Value":"AAAA"}]'}, "EnvelopeEncryptionIVAsBase64"),
    ({"AssetDeliveryConfiguration": '[{"Key":11,"Value":"0x0011"}]'}, "CommonEncryptionIVForCbcs"),
    ({"AssetDeliveryConfiguration": '[{"Key":12,"Value":"avc1,toolong"}]'}, "UnencryptedTracksByFourCC"),
    ({"AssetDeliveryConfiguration": '[{"Key":13,"Value":"maybe"}]'}, "AllowPersistentLicense"),
]


@pytest.mark.parametrize("change,fragment", BAD)
def test_bad_policies_are_refused(api: ApiClient, change: dict[str, Any], fragment: str) -> None:
    body = {"Name": "bad", "AssetDeliveryPolicyType": 2, "AssetDeliveryProtocol": 7, **change}
    r = api.request("POST", "AssetDeliveryPolicies", json.dumps(body).encode(), **JSON)
    assert r.status_code == 400, (r.status_code, r.text)
    assert fragment in api.error(r)[1], api.error(r)
    assert api.list("AssetDeliveryPolicies") == []
    good = policy(api, kind=2)
    r = api.request("MERGE", purl(good), json.dumps(change).encode(), **JSON)
    assert r.status_code == 400 and fragment in api.error(r)[1], r.text


@pytest.mark.parametrize("protocol", [1, 8, 16, 31, 0xFFFF])
def test_protocol_combinations(api: ApiClient, protocol: int) -> None:
    assert policy(api, kind=1, protocol=protocol)["AssetDeliveryProtocol"] == protocol


# ---- linking to assets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,key_type,other_key", [(ENVELOPE_TYPE, 4, 0), (COMMON_TYPE, 0, 4), (CBCS_TYPE, 6, 0)])
def test_dynamic_encryption_needs_the_matching_key(api: ApiClient, kind: int, key_type: int, other_key: int) -> None:
    p = policy(api, kind=kind)
    wrong = asset_with_key(api, other_key)
    r = link(api, wrong, p)
    assert r.status_code == 400, r.text
    names = {4: "EnvelopeEncryption", 0: "CommonEncryption", 6: "CommonEncryptionCbcs"}
    assert f"type {names[key_type]} ({key_type})" in api.error(r)[1]
    assert linked(api, wrong) == []
    right = asset_with_key(api, key_type)
    assert link(api, right, p).status_code == 204
    assert linked(api, right) == [p["Id"]]


@pytest.mark.parametrize("kind", [1, 2])
def test_blocked_and_clear_policies_need_no_key(api: ApiClient, kind: int) -> None:
    asset = asset_with_key(api, None)
    assert link(api, asset, policy(api, kind=kind)).status_code == 204


def test_one_policy_per_protocol(api: ApiClient) -> None:
    asset = asset_with_key(api, 4)
    envelope = policy(api, kind=ENVELOPE_TYPE, protocol=1 | 4)
    assert link(api, asset, envelope).status_code == 204
    dash_and_hls = policy(api, kind=2, protocol=2 | 4)
    r = link(api, asset, dash_and_hls)
    assert r.status_code == 409, r.text
    assert "HLS" in api.error(r)[1] and envelope["Id"] in api.error(r)[1]
    assert link(api, asset, policy(api, kind=2, protocol=2 | 16)).status_code == 204
    assert link(api, asset, policy(api, kind=1, protocol=0xFFFF)).status_code == 409
    assert link(api, asset, envelope).status_code == 409  # already linked
    assert len(linked(api, asset)) == 2
    # a linked policy cannot be widened onto a protocol another policy covers
    r = api.request("MERGE", purl(envelope), b'{"AssetDeliveryProtocol":3}', **JSON)
    assert r.status_code == 409, r.text
    assert api.request("MERGE", purl(envelope), b'{"AssetDeliveryProtocol":1}', **JSON).status_code == 204
    # nor turned into an encryption the asset has no key for
    r = api.request("MERGE", purl(envelope), b'{"AssetDeliveryPolicyType":4}', **JSON)
    assert r.status_code == 400 and "CommonEncryption" in api.error(r)[1], r.text


def test_bound_when_the_asset_is_created(api: ApiClient) -> None:
    clear = policy(api, kind=2)
    body = {"Name": "bound", "DeliveryPolicies@odata.bind": [BASE + purl(clear)]}
    r = api.request("POST", "Assets", json.dumps(body).encode(), **JSON)
    assert r.status_code == 201, r.text
    assert linked(api, r.json()) == [clear["Id"]]
    envelope = policy(api, kind=ENVELOPE_TYPE)
    body = {"Name": "no key", "DeliveryPolicies@odata.bind": [BASE + purl(envelope)]}
    r = api.request("POST", "Assets", json.dumps(body).encode(), **JSON)
    assert r.status_code == 400 and "EnvelopeEncryption" in api.error(r)[1], r.text


def test_no_policy_changes_while_an_origin_locator_exists(api: ApiClient) -> None:
    asset = asset_with_key(api, 4)
    envelope = policy(api, kind=ENVELOPE_TYPE, protocol=1 | 2 | 4)
    assert link(api, asset, envelope).status_code == 204
    sas = origin_locator(api, asset, kind=1)  # upload/download locators do not stream: no effect
    assert api.request("MERGE", purl(envelope), b'{"AssetDeliveryProtocol":5}', **JSON).status_code == 204
    assert api.request("MERGE", purl(envelope), b'{"AssetDeliveryProtocol":7}', **JSON).status_code == 204
    loc = origin_locator(api, asset)
    progressive = policy(api, kind=2, protocol=16)
    attempts = [
        link(api, asset, progressive),
        unlink(api, asset, envelope),
        api.request("MERGE", purl(envelope), b'{"AssetDeliveryProtocol":3}', **JSON),
        api.request("MERGE", purl(envelope), json.dumps({"AssetDeliveryConfiguration": SDK_CONFIG}).encode(), **JSON),
        api.delete(purl(envelope)),
    ]
    for r in attempts:
        assert r.status_code == 400, (r.status_code, r.text)
        message = api.error(r)[1]
        assert "OnDemandOrigin locator" in message and loc["Id"] in message and "Delete" in message
    assert linked(api, asset) == [envelope["Id"]]
    got = api.entity(api.get(purl(envelope)))
    assert got["AssetDeliveryProtocol"] == 7 and got["AssetDeliveryConfiguration"] is None
    # a new name changes nothing about delivery
    assert api.request("MERGE", purl(envelope), b'{"Name":"renamed"}', **JSON).status_code == 204
    # an unlinked policy is free to change
    assert api.request("MERGE", purl(progressive), b'{"AssetDeliveryProtocol":24}', **JSON).status_code == 204
    # remove the locator, change the policies, create the same locator again
    assert api.delete(f"Locators('{q(loc['Id'])}')").status_code == 204
    assert api.delete(f"Locators('{q(sas['Id'])}')").status_code == 204
    assert link(api, asset, progressive).status_code == 204
    assert unlink(api, asset, envelope).status_code == 204
    assert api.delete(purl(envelope)).status_code == 204
    access = post(api, "AccessPolicies", {"Name": "read", "DurationInMinutes": 60, "Permissions": 1})
    again = post(api, "Locators", {"Id": loc["Id"], "Type": 2, "AssetId": asset["Id"], "AccessPolicyId": access["Id"]})
    assert again["Id"] == loc["Id"]


def test_deleting_an_unstreamed_linked_policy_unlinks_it(api: ApiClient) -> None:
    asset = asset_with_key(api, None)
    clear = policy(api, kind=2)
    assert link(api, asset, clear).status_code == 204
    assert api.delete(purl(clear)).status_code == 204
    assert linked(api, asset) == []


# ---- isolation ------------------------------------------------------------------------------------------


def test_another_account_cannot_see_or_link_policies(http: TestClient, api: ApiClient, other_account: Any) -> None:
    mine = policy(api, kind=2)
    asset = asset_with_key(api, None)
    assert link(api, asset, mine).status_code == 204
    intruder = ApiClient.for_account(http, other_account)
    assert intruder.list("AssetDeliveryPolicies") == []
    for r in (intruder.get(purl(mine)), intruder.delete(purl(mine)), intruder.get(f"{aurl(asset)}/DeliveryPolicies"),
              intruder.request("MERGE", purl(mine), b'{"Name":"x"}', **JSON), unlink(intruder, asset, mine)):
        assert r.status_code == 404, (r.status_code, r.text)
    own_asset = post(intruder, "Assets", {"Name": "theirs"})
    assert link(intruder, own_asset, mine).status_code == 404
    theirs = policy(intruder, kind=2)
    assert link(intruder, asset, theirs).status_code == 404
    assert link(api, asset, theirs).status_code == 404
    assert linked(api, asset) == [mine["Id"]] and api.entity(api.get(purl(mine)))["Name"] == "policy"


# ---- the origin's decision -----------------------------------------------------------------------------


def entity(kind: int, protocol: int, config: str | None = None, pid: str = "p") -> dict[str, Any]:
    return {"Id": pid, "AssetDeliveryPolicyType": kind, "AssetDeliveryProtocol": protocol,
            "AssetDeliveryConfiguration": config}


KID = uuid.UUID("11112222-3333-4444-5555-666677778888")


def test_no_policy_means_clear_unless_storage_encrypted() -> None:
    for protocol in ("smooth", "dash", "hls", "progressive", "HLS"):
        assert delivery_decision([], protocol).kind == CLEAR
    d = delivery_decision([], "dash", storage_encrypted=True)
    assert d.kind == BLOCKED and d.blocked and "storage-encrypted" in d.reason
    with pytest.raises(ValueError):
        delivery_decision([], "rtmp")


def test_uncovered_protocols_are_blocked() -> None:
    policies = [entity(ENVELOPE_TYPE, 1 | 4, SDK_CONFIG, "env"), entity(2, 16, None, "clear")]
    d = delivery_decision(policies, "hls")
    assert (d.kind, d.policy_id, d.key_type, d.encrypted) == (ENVELOPE, "env", 4, True)
    assert d.iv == bytes(range(16))
    assert d.key_acquisition_url(KID) == f"{KEY_URL}?KID={KID}"
    assert d.key_acquisition_url(f"nb:kid:UUID:{KID}") == f"{KEY_URL}?KID={KID}"
    assert delivery_decision(policies, "smooth").kind == ENVELOPE
    assert delivery_decision(policies, "progressive").kind == CLEAR
    d = delivery_decision(policies, "dash")
    assert d.kind == BLOCKED and d.policy_id is None and "Dash" in d.reason
    assert delivery_decision([entity(2, 0xFFFF)], "dash").kind == CLEAR


def test_each_policy_type() -> None:
    assert delivery_decision([entity(1, 7)], "dash").kind == BLOCKED
    assert delivery_decision([entity(2, 7)], "dash").kind == CLEAR
    pr = '[{"Key":4,"Value":"https://pr.example/rightsmanager.asmx"},{"Key":8,"Value":"https://wv.example/"}]'
    d = delivery_decision([entity(COMMON_TYPE, 2, pr)], "dash")
    assert (d.kind, d.key_type) == (CENC, 0)
    assert d.playready_license_url == "https://pr.example/rightsmanager.asmx"
    assert d.widevine_license_url(KID) == f"https://wv.example/?KID={KID}"
    assert d.iv is None and d.key_acquisition_url(KID) is None
    # the REST sample's PlayReady URL under key 2 is understood
    legacy = delivery_decision([entity(COMMON_TYPE, 1, '[{"Key":2,"Value":"https://pr.example/"}]')], "smooth")
    assert legacy.playready_license_url == "https://pr.example/"
    fp = ('[{"Key":10,"Value":"https://fp.example/?x=1"},{"Key":11,"Value":"00112233445566778899AABBCCDDEEFF"},'
          '{"Key":13,"Value":"True"},{"Key":12,"Value":"mp4a, ac-3"}]')
    d = delivery_decision([entity(CBCS_TYPE, 4, fp)], "hls")
    assert (d.kind, d.key_type) == (CBCS, 6)
    assert d.fairplay_license_url(KID) == f"https://fp.example/?x=1&KID={KID}"
    assert d.iv == bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    assert d.allow_persistent_license and d.unencrypted_fourccs == ("mp4a", "ac-3")
    exact = delivery_decision([entity(ENVELOPE_TYPE, 4, '[{"Key":1,"Value":"https://k/x"}]')], "hls")
    assert exact.key_acquisition_url(KID) == "https://k/x"
    for kind in (ENVELOPE_TYPE, COMMON_TYPE, CBCS_TYPE):
        d = delivery_decision([entity(kind, 0xFFFF)], "progressive")
        assert d.kind == BLOCKED and "Progressive" in d.reason
    assert delivery_decision([entity(0, 7)], "hls").kind == BLOCKED  # an invalid stored type fails closed


def test_decision_from_an_assets_linked_policies(runtime: Runtime, api: ApiClient, account: Any) -> None:
    asset = asset_with_key(api, 4)
    assert link(api, asset, policy(api, kind=ENVELOPE_TYPE, protocol=4, config=SDK_CONFIG)).status_code == 204
    assert link(api, asset, policy(api, kind=2, protocol=2)).status_code == 204
    with runtime.engine.connect() as conn:
        policies = asset_delivery_policies(Store(conn, account.id, MODEL), asset["Id"])
    assert [p["AssetDeliveryProtocol"] for p in policies] == [4, 2]
    assert delivery_decision(policies, "hls").kind == ENVELOPE
    assert delivery_decision(policies, "dash").kind == CLEAR
    assert delivery_decision(policies, "smooth").kind == BLOCKED
