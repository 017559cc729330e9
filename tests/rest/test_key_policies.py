"""ContentKeyAuthorizationPolicies and ContentKeyAuthorizationPolicyOptions through the Operations
API: create, read, update, delete, `$links/Options`, validation of restrictions (token templates,
address lists) and of PlayReady / Widevine / FairPlay configuration, the in-use rule on delete, and
account isolation."""

from __future__ import annotations

import base64
import json
import os
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from tests.support.client import BASE, ApiClient
from tests.support.protection import make_key

JSON = {"Content-Type": "application/json"}
VERBOSE = {"Content-Type": "application/json;odata=verbose"}
XSI = "http://www.w3.org/2001/XMLSchema-instance"
TRT_NS = "http://schemas.microsoft.com/Azure/MediaServices/KeyDelivery/TokenRestrictionTemplate/v1"
PR_NS = "http://schemas.microsoft.com/Azure/MediaServices/KeyDelivery/PlayReadyTemplate/v1"
KEY = base64.b64encode(os.urandom(64)).decode()
TEMPLATE = (f'<TokenRestrictionTemplate xmlns:i="{XSI}" xmlns="{TRT_NS}"><AlternateVerificationKeys />'
            "<Audience>urn:test</Audience><Issuer>http://issuer.example/</Issuer>"
            f'<PrimaryVerificationKey i:type="SymmetricVerificationKey"><KeyValue>{KEY}</KeyValue>'
            "</PrimaryVerificationKey><RequiredClaims><TokenClaim><ClaimType>"
            'urn:microsoft:azure:mediaservices:contentkeyidentifier</ClaimType><ClaimValue i:nil="true" />'
            "</TokenClaim></RequiredClaims><TokenType>JWT</TokenType></TokenRestrictionTemplate>")
PLAYREADY = (f'<PlayReadyLicenseResponseTemplate xmlns:i="{XSI}" xmlns="{PR_NS}"><LicenseTemplates>'
             "<PlayReadyLicenseTemplate><AllowTestDevices>false</AllowTestDevices>"
             '<ContentKey i:type="ContentEncryptionKeyFromHeader" /><LicenseType>Nonpersistent</LicenseType>'
             "<PlayRight /></PlayReadyLicenseTemplate></LicenseTemplates></PlayReadyLicenseResponseTemplate>")
WIDEVINE = json.dumps({"allowed_track_types": "SD_HD", "content_key_specs": [
    {"track_type": "SD", "security_level": 1, "required_output_protection": {"hdcp": "HDCP_NONE"}}],
    "policy_overrides": {"can_play": True, "license_duration": 0}})
OPEN = [{"Name": "open", "KeyRestrictionType": 0, "Requirements": None}]


def q(key: str) -> str:
    return quote(key, safe="")


def post(api: ApiClient, path: str, props: dict[str, Any], expect: int = 201) -> Any:
    r = api.request("POST", path, json.dumps(props).encode(), **JSON)
    assert r.status_code == expect, (r.status_code, r.text)
    return r.json() if expect == 201 else r


def option(api: ApiClient, **props: Any) -> dict[str, Any]:
    body = {"Name": "opt", "KeyDeliveryType": 2, "KeyDeliveryConfiguration": None, "Restrictions": OPEN, **props}
    return post(api, "ContentKeyAuthorizationPolicyOptions", body)


def policy_url(policy: dict[str, Any]) -> str:
    return f"ContentKeyAuthorizationPolicies('{q(policy['Id'])}')"


def option_url(opt: dict[str, Any]) -> str:
    return f"ContentKeyAuthorizationPolicyOptions('{q(opt['Id'])}')"


def link(api: ApiClient, policy: dict[str, Any], opt: dict[str, Any]) -> Any:
    return api.request("POST", f"{policy_url(policy)}/$links/Options",
                       json.dumps({"uri": BASE + option_url(opt)}).encode(), **JSON)


# ---- CRUD and links ---------------------------------------------------------------------------------------


def test_policy_and_option_lifecycle(api: ApiClient) -> None:
    policy = post(api, "ContentKeyAuthorizationPolicies", {"Name": "Open Authorization Policy"})
    assert policy["Id"].startswith("nb:ckpid:UUID:") and policy["Name"] == "Open Authorization Policy"
    opt = option(api, Name="policy", Restrictions=[{"Name": "HLS Open Authorization Policy",
                                                     "KeyRestrictionType": 0, "Requirements": None}])
    assert opt["Id"].startswith("nb:ckpoid:UUID:")
    assert opt["KeyDeliveryType"] == 2 and opt["KeyDeliveryConfiguration"] is None
    assert opt["Restrictions"] == [{"Name": "HLS Open Authorization Policy", "KeyRestrictionType": 0,
                                    "Requirements": None}]
    r = link(api, policy, opt)
    assert r.status_code == 204, r.text
    assert [o["Id"] for o in api.list(f"{policy_url(policy)}/Options")] == [opt["Id"]]
    r = api.get(f"{policy_url(policy)}/$links/Options")
    assert r.status_code == 200 and option_url(opt) in r.text
    assert link(api, policy, opt).status_code == 409  # already linked
    # a second option: any of them grants the key
    token = option(api, Name="token", Restrictions=[{"Name": "t", "KeyRestrictionType": 1, "Requirements": TEMPLATE}])
    assert token["Restrictions"][0]["Requirements"] == TEMPLATE  # stored as sent
    assert link(api, policy, token).status_code == 204
    assert [o["Name"] for o in api.list(f"{policy_url(policy)}/Options")] == ["policy", "token"]
    r = api.delete(f"{policy_url(policy)}/$links/Options('{q(opt['Id'])}')")
    assert r.status_code == 204, r.text
    assert [o["Id"] for o in api.list(f"{policy_url(policy)}/Options")] == [token["Id"]]
    assert api.get(option_url(opt)).status_code == 200  # unlinking keeps the option
    # updates
    r = api.request("MERGE", policy_url(policy), b'{"Name":"renamed"}', **JSON)
    assert r.status_code == 204
    assert api.entity(api.get(policy_url(policy)))["Name"] == "renamed"
    r = api.request("MERGE", option_url(token), json.dumps({"KeyDeliveryType": 3, "KeyDeliveryConfiguration": "{}"})
                    .encode(), **JSON)
    assert r.status_code == 204, r.text
    got = api.entity(api.get(option_url(token)))
    assert got["KeyDeliveryType"] == 3 and got["KeyDeliveryConfiguration"] == "{}"
    # deletes
    assert api.delete(option_url(token)).status_code == 204
    assert api.list(f"{policy_url(policy)}/Options") == []
    assert api.delete(policy_url(policy)).status_code == 204
    assert api.get(policy_url(policy)).status_code == 404
    assert api.delete(option_url(opt)).status_code == 204


def test_create_in_json_verbose(http: TestClient, account: Any) -> None:
    api = ApiClient.for_account(http, account, "verbose")
    r = api.request("POST", "ContentKeyAuthorizationPolicies", b'{"Name":"verbose policy"}', **VERBOSE)
    assert r.status_code == 201, r.text
    policy = api.entity(r)
    body = {"Name": "token", "KeyDeliveryType": 2, "KeyDeliveryConfiguration": "",
            "Restrictions": {"__metadata": {"type": "Collection(ContentKeyAuthorizationPolicyRestriction)"},
                             "results": [{"Name": "Token Authorization Policy", "KeyRestrictionType": 1,
                                          "Requirements": TEMPLATE}]}}
    r = api.request("POST", "ContentKeyAuthorizationPolicyOptions", json.dumps(body).encode(), **VERBOSE)
    assert r.status_code == 201, r.text
    d = r.json()["d"]
    assert d["__metadata"]["type"].endswith(".ContentKeyAuthorizationPolicyOption")
    assert d["Restrictions"]["results"][0]["Requirements"] == TEMPLATE
    r = api.request("POST", f"{policy_url(policy)}/$links/Options",
                    json.dumps({"uri": BASE + option_url(d)}).encode(), **VERBOSE)
    assert r.status_code == 204, r.text


def test_all_delivery_types_with_good_configuration(api: ApiClient) -> None:
    assert option(api, KeyDeliveryType=1, KeyDeliveryConfiguration=PLAYREADY)["KeyDeliveryConfiguration"] == PLAYREADY
    assert option(api, KeyDeliveryType=3, KeyDeliveryConfiguration="{}")["KeyDeliveryType"] == 3
    assert option(api, KeyDeliveryType=3, KeyDeliveryConfiguration=WIDEVINE)["KeyDeliveryConfiguration"] == WIDEVINE
    ask, _ = make_key(api, 7)
    password, _ = make_key(api, 8, clear=b"pfx-password")
    fairplay = json.dumps({"ASkId": ask["Id"].rsplit(":", 1)[1], "FairPlayPfxPasswordId":
                           password["Id"].rsplit(":", 1)[1], "FairPlayPfx": base64.b64encode(b"pfx").decode(),
                           "ContentEncryptionIV": "00112233445566778899AABBCCDDEEFF"})
    assert option(api, KeyDeliveryType=4, KeyDeliveryConfiguration=fairplay)["KeyDeliveryType"] == 4
    bad = json.loads(fairplay) | {"ASkId": password["Id"].rsplit(":", 1)[1]}
    r = api.request("POST", "ContentKeyAuthorizationPolicyOptions", json.dumps(
        {"Name": "fp", "KeyDeliveryType": 4, "KeyDeliveryConfiguration": json.dumps(bad), "Restrictions": OPEN})
        .encode(), **JSON)
    assert r.status_code == 400 and "FairPlayASk" in api.error(r)[1], r.text
    ip = option(api, Restrictions=[{"Name": "office", "KeyRestrictionType": 2,
                                    "Requirements": "10.0.0.0/8, 192.168.1.20-192.168.1.40"}])
    assert ip["Restrictions"][0]["KeyRestrictionType"] == 2


# ---- validation -------------------------------------------------------------------------------------------


def _pr(template_body: str) -> str:
    return (f'<PlayReadyLicenseResponseTemplate xmlns:i="{XSI}" xmlns="{PR_NS}"><LicenseTemplates>'
            f"<PlayReadyLicenseTemplate>{template_body}</PlayReadyLicenseTemplate></LicenseTemplates>"
            "</PlayReadyLicenseResponseTemplate>")


HEADER_KEY = '<ContentKey i:type="ContentEncryptionKeyFromHeader" />'
BAD_OPTIONS = [
    ({"KeyDeliveryType": None}, "KeyDeliveryType"),
    ({"KeyDeliveryType": 0}, "KeyDeliveryType"),
    ({"KeyDeliveryType": 9}, "KeyDeliveryType"),
    ({"Restrictions": []}, "Restrictions"),
    ({"Restrictions": None}, "Restrictions"),
    ({"Restrictions": [{"Name": "x", "KeyRestrictionType": None}]}, "Restrictions[0].KeyRestrictionType"),
    ({"Restrictions": [*OPEN, {"Name": "x", "KeyRestrictionType": 5}]}, "Restrictions[1].KeyRestrictionType"),
    ({"Restrictions": [{"Name": "t", "KeyRestrictionType": 1, "Requirements": None}]}, "TokenRestrictionTemplate"),
    ({"Restrictions": [{"Name": "t", "KeyRestrictionType": 1, "Requirements": "<x/>"}]}, "TokenRestrictionTemplate"),
    ({"Restrictions": [{"Name": "t", "KeyRestrictionType": 1, "Requirements": TEMPLATE.replace(
        "<Issuer>http://issuer.example/</Issuer>", "")}]}, "Issuer"),
    ({"Restrictions": [{"Name": "ip", "KeyRestrictionType": 2, "Requirements": ""}]}, "Requirements"),
    ({"Restrictions": [{"Name": "ip", "KeyRestrictionType": 2, "Requirements": "10.0.0.1/99"}]}, "10.0.0.1/99"),
    ({"KeyDeliveryType": 1, "KeyDeliveryConfiguration": None}, "KeyDeliveryConfiguration is required"),
    ({"KeyDeliveryType": 1, "KeyDeliveryConfiguration": "<oops"}, "well-formed"),
    ({"KeyDeliveryType": 1, "KeyDeliveryConfiguration": "<Other/>"}, "PlayReadyLicenseResponseTemplate"),
    ({"KeyDeliveryType": 1, "KeyDeliveryConfiguration": f'<PlayReadyLicenseResponseTemplate xmlns="{PR_NS}">'
        "<LicenseTemplates /></PlayReadyLicenseResponseTemplate>"}, "at least one"),
    ({"KeyDeliveryType": 1, "KeyDeliveryConfiguration": _pr("<LicenseType>Nonpersistent</LicenseType><PlayRight/>")},
     "ContentKey"),
    ({"KeyDeliveryType": 1, "KeyDeliveryConfiguration": _pr(f"{HEADER_KEY}")}, "PlayRight"),
    ({"KeyDeliveryType": 1, "KeyDeliveryConfiguration": _pr(
        f"<BeginDate>2024-01-01T00:00:00Z</BeginDate>{HEADER_KEY}<LicenseType>Persistent</LicenseType>"
        "<PlayRight/><RelativeBeginDate>PT1H</RelativeBeginDate>")}, "BeginDate or RelativeBeginDate"),
    ({"KeyDeliveryType": 1, "KeyDeliveryConfiguration": _pr(
        f"<BeginDate>2024-01-01T00:00:00Z</BeginDate>{HEADER_KEY}<LicenseType>Nonpersistent</LicenseType>"
        "<PlayRight/>")}, "Nonpersistent"),
    ({"KeyDeliveryType": 1, "KeyDeliveryConfiguration": _pr(
        f"{HEADER_KEY}<LicenseType>Sometimes</LicenseType><PlayRight/>")}, "LicenseType"),
    ({"KeyDeliveryType": 1, "KeyDeliveryConfiguration": _pr(
        f"{HEADER_KEY}<PlayRight><AllowPassingVideoContentToUnknownOutput>Allowed"
        "</AllowPassingVideoContentToUnknownOutput><DigitalVideoOnlyContentRestriction>true"
        "</DigitalVideoOnlyContentRestriction></PlayRight>")}, "DigitalVideoOnlyContentRestriction"),
    ({"KeyDeliveryType": 1, "KeyDeliveryConfiguration": _pr(
        f"{HEADER_KEY}<PlayRight><CompressedDigitalVideoOpl>300</CompressedDigitalVideoOpl></PlayRight>")},
     "CompressedDigitalVideoOpl"),
    ({"KeyDeliveryType": 1, "KeyDeliveryConfiguration": _pr(
        '<ContentKey i:type="ContentEncryptionKeyFromKeyIdentifier"><KeyIdentifier>nope</KeyIdentifier>'
        "</ContentKey><PlayRight/>")}, "KeyIdentifier"),
    ({"KeyDeliveryType": 3, "KeyDeliveryConfiguration": None}, "KeyDeliveryConfiguration is required"),
    ({"KeyDeliveryType": 3, "KeyDeliveryConfiguration": "not json"}, "JSON"),
    ({"KeyDeliveryType": 3, "KeyDeliveryConfiguration": "[]"}, "object"),
    ({"KeyDeliveryType": 3, "KeyDeliveryConfiguration": '{"allowed_track_types":"ALL"}'}, "allowed_track_types"),
    ({"KeyDeliveryType": 3, "KeyDeliveryConfiguration": '{"content_key_specs":[{"security_level":9}]}'},
     "security_level"),
    ({"KeyDeliveryType": 3, "KeyDeliveryConfiguration":
        '{"content_key_specs":[{"required_output_protection":{"hdcp":"HDCP_V9"}}]}'}, "hdcp"),
    ({"KeyDeliveryType": 4, "KeyDeliveryConfiguration": "{}"}, "ASkId"),
    ({"KeyDeliveryType": 4, "KeyDeliveryConfiguration": json.dumps({"ASkId": str(uuid.uuid4())})}, "no ContentKey"),
]


@pytest.mark.parametrize("change,fragment", BAD_OPTIONS)
def test_bad_options_are_refused(api: ApiClient, change: dict[str, Any], fragment: str) -> None:
    body = {"Name": "bad", "KeyDeliveryType": 2, "KeyDeliveryConfiguration": None, "Restrictions": OPEN, **change}
    r = api.request("POST", "ContentKeyAuthorizationPolicyOptions", json.dumps(body).encode(), **JSON)
    assert r.status_code == 400, (r.status_code, r.text)
    _code, message = api.error(r)
    assert fragment in message, message
    assert KEY not in message  # never echo key material
    assert api.list("ContentKeyAuthorizationPolicyOptions") == []


def test_updates_are_validated_too(api: ApiClient) -> None:
    opt = option(api)
    for change, fragment in ({"KeyDeliveryType": 1}, "KeyDeliveryConfiguration is required"), \
            ({"Restrictions": []}, "Restrictions"), \
            ({"Restrictions": [{"Name": "t", "KeyRestrictionType": 1, "Requirements": "<nope"}]}, "XML"):
        r = api.request("MERGE", option_url(opt), json.dumps(change).encode(), **JSON)
        assert r.status_code == 400 and fragment in api.error(r)[1], r.text
    assert api.entity(api.get(option_url(opt)))["Restrictions"] == OPEN
    r = api.request("MERGE", option_url(opt), json.dumps(
        {"Restrictions": [{"Name": "ip", "KeyRestrictionType": 2, "Requirements": "127.0.0.1"}]}).encode(), **JSON)
    assert r.status_code == 204, r.text


def test_a_policy_in_use_by_a_content_key_cannot_be_deleted(api: ApiClient) -> None:
    policy = post(api, "ContentKeyAuthorizationPolicies", {"Name": "used"})
    key, _ = make_key(api, 4)
    key_url = f"ContentKeys('{q(key['Id'])}')"
    r = api.request("PUT", key_url, json.dumps({"AuthorizationPolicyId": policy["Id"]}).encode(), **JSON)
    assert r.status_code == 204, r.text
    r = api.delete(policy_url(policy))
    assert r.status_code == 409, r.text
    assert key["Id"] in api.error(r)[1] and "AuthorizationPolicyId" in api.error(r)[1]
    r = api.request("MERGE", key_url, json.dumps({"AuthorizationPolicyId": None}).encode(), **JSON)
    assert r.status_code == 204, r.text
    assert api.delete(policy_url(policy)).status_code == 204


# ---- isolation --------------------------------------------------------------------------------------------


def test_another_account_cannot_see_or_use_policies(http: TestClient, api: ApiClient, other_account: Any) -> None:
    policy = post(api, "ContentKeyAuthorizationPolicies", {"Name": "mine"})
    opt = option(api)
    assert link(api, policy, opt).status_code == 204
    intruder = ApiClient.for_account(http, other_account)
    assert intruder.list("ContentKeyAuthorizationPolicies") == []
    assert intruder.list("ContentKeyAuthorizationPolicyOptions") == []
    for r in (intruder.get(policy_url(policy)), intruder.get(option_url(opt)),
              intruder.get(f"{policy_url(policy)}/Options"), intruder.delete(policy_url(policy)),
              intruder.delete(option_url(opt)),
              intruder.request("MERGE", option_url(opt), b'{"Name":"x"}', **JSON)):
        assert r.status_code == 404, (r.status_code, r.text)
    # linking someone else's option into one's own policy: the option does not exist here
    own = post(intruder, "ContentKeyAuthorizationPolicies", {"Name": "theirs"})
    assert link(intruder, own, opt).status_code == 404
    assert [o["Id"] for o in api.list(f"{policy_url(policy)}/Options")] == [opt["Id"]]
