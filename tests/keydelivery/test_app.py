"""The key delivery service over HTTP: a key goes only to a caller its policy allows; every
refusal is 401/403 with a reason code; ClearKey licences for CENC keys; DRM licences answer 501
without a provider; nothing secret reaches the logs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, quote_plus

import jwt
import pytest
from starlette.testclient import TestClient

from openams.keydelivery.app import KeyDeliveryApp
from openams.keydelivery.restrictions import mint_token
from tests.support.client import BASE, ApiClient
from tests.support.protection import make_key

JSON = {"Content-Type": "application/json"}
XSI = "http://www.w3.org/2001/XMLSchema-instance"
TRT_NS = "http://schemas.microsoft.com/Azure/MediaServices/KeyDelivery/TokenRestrictionTemplate/v1"
SECRET = bytes(range(64))
KID_CLAIM = "urn:microsoft:azure:mediaservices:contentkeyidentifier"


def template(token_type: str = "JWT", issuer: str = "http://issuer.example/", extra_claim: str = "") -> str:
    claims = (f"<TokenClaim><ClaimType>{KID_CLAIM}</ClaimType><ClaimValue i:nil=\"true\" /></TokenClaim>"
              + (f"<TokenClaim><ClaimType>{extra_claim}</ClaimType><ClaimValue>yes</ClaimValue></TokenClaim>"
                 if extra_claim else ""))
    return (f'<TokenRestrictionTemplate xmlns:i="{XSI}" xmlns="{TRT_NS}"><AlternateVerificationKeys />'
            f"<Audience>urn:viewers</Audience><Issuer>{issuer}</Issuer>"
            f'<PrimaryVerificationKey i:type="SymmetricVerificationKey"><KeyValue>'
            f"{base64.b64encode(SECRET).decode()}</KeyValue></PrimaryVerificationKey>"
            f"<RequiredClaims>{claims}</RequiredClaims><TokenType>{token_type}</TokenType></TokenRestrictionTemplate>")


@pytest.fixture
def keys(runtime: Any) -> TestClient:
    return TestClient(KeyDeliveryApp(runtime), base_url="http://openams.test")


def _post(api: ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = api.request("POST", path, json.dumps(body).encode(), **JSON)
    assert r.status_code in (201, 204), (r.status_code, r.text)
    return r.json() if r.status_code == 201 else {}


def protect(api: ApiClient, key_type: int, restrictions: list[dict[str, Any]], delivery: int = 2
            ) -> tuple[str, bytes]:
    """A content key of `key_type` with an authorization policy of one option; (key guid, clear key)."""
    key, clear = make_key(api, key_type)
    option = _post(api, "ContentKeyAuthorizationPolicyOptions", {
        "Name": "o", "KeyDeliveryType": delivery, "Restrictions": restrictions,
        "KeyDeliveryConfiguration": "{}" if delivery == 3 else None})
    policy = _post(api, "ContentKeyAuthorizationPolicies", {"Name": "p"})
    _post(api, f"ContentKeyAuthorizationPolicies('{quote(policy['Id'], safe='')}')/$links/Options",
          {"uri": f"{BASE}ContentKeyAuthorizationPolicyOptions('{quote(option['Id'], safe='')}')"})
    r = api.request("MERGE", f"ContentKeys('{quote(key['Id'], safe='')}')",
                    json.dumps({"AuthorizationPolicyId": policy["Id"]}).encode(), **JSON)
    assert r.status_code == 204, r.text
    return key["Id"].rsplit(":", 1)[1], clear


def token_restricted(tmpl: str) -> list[dict[str, Any]]:
    return [{"Name": "token", "KeyRestrictionType": 1, "Requirements": tmpl}]


def hs256(payload: dict[str, Any], secret: bytes = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def claims(kid: str, **over: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    base = {"iss": "http://issuer.example/", "aud": "urn:viewers", "nbf": now - 10, "exp": now + 600,
            KID_CLAIM: kid}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def test_jwt_restricted_aes_key(api: ApiClient, keys: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tmpl = template()
    kid, clear = protect(api, 4, token_restricted(tmpl))
    token = mint_token(tmpl, key_id=kid)
    for query, headers in (("", {"Authorization": f"Bearer {token}"}), (f"&token={token}", {}),
                           ("", {"Authorization": f"Bearer={token}"})):
        r = keys.get(f"/keydelivery/?KID={kid}{query}", headers=headers)
        assert r.status_code == 200 and r.content == clear, r.text
        assert r.headers["content-type"] == "application/octet-stream" and r.headers["cache-control"] == "no-store"
    assert keys.post(f"/keydelivery?KID={kid}", headers={"Authorization": f"Bearer {token}"}).content == clear
    past = datetime.now(UTC) - timedelta(hours=2)
    other_kid = str(uuid.uuid4())
    refusals = {
        "TokenMissing": (None, 401),
        "TokenExpired": (mint_token(tmpl, key_id=kid, now=past), 401),
        "InvalidSignature": (hs256(claims(kid), secret=b"x" * 64), 401),
        "MalformedToken": ("not.a.token", 401),
        "InvalidIssuer": (hs256(claims(kid, iss="http://evil.example/")), 403),
        "InvalidAudience": (hs256(claims(kid, aud="urn:others")), 403),
        "MissingClaim": (hs256(claims(kid, **{KID_CLAIM: None})), 403),
        "WrongKeyId": (hs256(claims(other_kid, **{KID_CLAIM: other_kid})), 403),
    }
    for reason, (bad, status) in refusals.items():
        headers = {"Authorization": f"Bearer {bad}"} if bad else {}
        r = keys.get(f"/keydelivery/?KID={kid}", headers=headers)
        assert r.status_code == status, (reason, r.status_code, r.text)
        assert r.json()["error"]["code"] in (reason, "MissingClaim", "WrongClaimValue", "WrongKeyId"), (reason, r.text)
        assert clear not in r.content
        if status == 401:
            assert "invalid_token" in r.headers["www-authenticate"]
    # everything the service logged (the test client's own request log would show the token query)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("openams"))
    for secret in (token, clear.hex(), base64.b64encode(clear).decode(), base64.b64encode(SECRET).decode()):
        assert secret not in logged
    assert f"kid={kid}" in logged and "reason=TokenExpired" in logged


def test_swt_restricted_aes_key(api: ApiClient, keys: TestClient) -> None:
    tmpl = template("SWT", issuer="http://issuer.example/")
    kid, clear = protect(api, 4, token_restricted(tmpl))
    good = mint_token(tmpl, key_id=kid)
    for headers, query in (({"Authorization": f"Bearer={good}"}, ""), ({"Authorization": f"Bearer {good}"}, ""),
                           ({}, f"&token={quote(good, safe='')}")):
        r = keys.get(f"/keydelivery/?KID={kid}{query}", headers=headers)
        assert r.status_code == 200 and r.content == clear, r.text
    forged = good.rsplit("HMACSHA256=", 1)[0] + "HMACSHA256=" + quote(base64.b64encode(b"0" * 32).decode())
    other_kid = str(uuid.uuid4())
    # SWTs written by hand (independent of mint_token), as the SDK's GenerateTestToken lays them out
    refusals = {
        "TokenExpired": (swt(kid, expires=datetime.now(UTC) - timedelta(hours=2)), 401),
        "InvalidSignature": (forged, 401),
        "InvalidIssuer": (swt(kid, issuer="http://evil.example/"), 403),
        "InvalidAudience": (swt(kid, audience="urn:others"), 403),
        "MissingClaim": (swt(None), 403),
        "WrongKeyId": (swt(other_kid), 403),
    }
    for reason, (bad, status) in refusals.items():
        r = keys.get(f"/keydelivery/?KID={kid}", headers={"Authorization": f"Bearer={bad}"})
        assert (r.status_code, r.json()["error"]["code"]) == (status, reason), (reason, r.text)
        assert clear not in r.content
    assert swt(kid) and keys.get(f"/keydelivery/?KID={kid}",
                                 headers={"Authorization": f"Bearer={swt(kid)}"}).content == clear


def swt(kid: str | None, issuer: str = "http://issuer.example/", audience: str = "urn:viewers",
        expires: datetime | None = None) -> str:
    """An SWT signed with `SECRET`: claims, Audience, ExpiresOn, Issuer, then HMACSHA256."""
    fields = [(KID_CLAIM, kid)] if kid else []
    expiry = int((expires or datetime.now(UTC) + timedelta(minutes=10)).timestamp())
    fields += [("Audience", audience), ("ExpiresOn", str(expiry)), ("Issuer", issuer)]
    unsigned = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in fields)
    signature = base64.b64encode(hmac.new(SECRET, unsigned.encode(), hashlib.sha256).digest()).decode()
    return f"{unsigned}&HMACSHA256={quote_plus(signature)}"


def test_open_policy_no_policy_and_bad_requests(api: ApiClient, keys: TestClient) -> None:
    kid, clear = protect(api, 4, [{"Name": "open", "KeyRestrictionType": 0, "Requirements": None}])
    assert keys.get(f"/keydelivery/?KID={kid}").content == clear
    bare, _ = make_key(api, 4)
    r = keys.get(f"/keydelivery/?KID={bare['Id'].rsplit(':', 1)[1]}")
    assert r.status_code == 403 and r.json()["error"]["code"] == "NoAuthorizationPolicy"
    assert keys.get(f"/keydelivery/?KID={uuid.uuid4()}").status_code == 404
    assert keys.get("/keydelivery/?KID=nonsense").status_code == 400
    assert keys.get("/keydelivery/nowhere").status_code == 404
    assert keys.put(f"/keydelivery/?KID={kid}").status_code == 405


def test_clearkey_licence_for_cenc_keys(api: ApiClient, keys: TestClient) -> None:
    kid, clear = protect(api, 0, [{"Name": "open", "KeyRestrictionType": 0, "Requirements": None}], delivery=3)
    b64kid = base64.urlsafe_b64encode(uuid.UUID(kid).bytes).rstrip(b"=").decode()
    r = keys.post("/keydelivery/ClearKey/", json={"kids": [b64kid], "type": "temporary"})
    assert r.status_code == 200, r.text
    (entry,) = r.json()["keys"]
    assert entry["kty"] == "oct" and entry["kid"] == b64kid
    assert base64.urlsafe_b64decode(entry["k"] + "==") == clear
    assert keys.post("/keydelivery/ClearKey/", content=b"{not json").status_code == 400
    aes_kid, _ = protect(api, 4, [{"Name": "open", "KeyRestrictionType": 0, "Requirements": None}])
    wrong = base64.urlsafe_b64encode(uuid.UUID(aes_kid).bytes).rstrip(b"=").decode()
    assert keys.post("/keydelivery/ClearKey/", json={"kids": [wrong]}).status_code == 400
    assert keys.get(f"/keydelivery/?KID={kid}").status_code == 400  # a CENC key is not an envelope key


def test_clearkey_licence_answers_a_browser_player(api: ApiClient, keys: TestClient) -> None:
    """What an EME player in a page (dash.js, shaka) does cross-origin: a preflight, because the
    JSON POST carries `Content-Type: application/json`, then the licence request, whose answer
    it must be allowed to read."""
    kid, _ = protect(api, 0, [{"Name": "open", "KeyRestrictionType": 0, "Requirements": None}], delivery=3)
    page = {"Origin": "http://player.example"}
    pre = keys.options("/keydelivery/ClearKey/", headers={**page, "Access-Control-Request-Method": "POST",
                                                         "Access-Control-Request-Headers": "content-type"})
    assert pre.status_code in (200, 204)
    assert pre.headers["access-control-allow-origin"] == "*"
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "content-type" in pre.headers["access-control-allow-headers"].lower()
    b64kid = base64.urlsafe_b64encode(uuid.UUID(kid).bytes).rstrip(b"=").decode()
    r = keys.post("/keydelivery/ClearKey/", json={"kids": [b64kid], "type": "temporary"}, headers=page)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["type"] == "temporary" and r.json()["keys"][0]["kid"] == b64kid


@pytest.mark.parametrize("system", ["PlayReady", "Widevine", "FairPlay"])
def test_drm_licences_need_a_provider(keys: TestClient, system: str) -> None:
    r = keys.post(f"/keydelivery/{system}/?KID={uuid.uuid4()}", content=b"challenge")
    assert r.status_code == 501 and "licence provider" in r.json()["error"]["message"]


def test_another_accounts_token_policy_does_not_open_a_key(api: ApiClient, keys: TestClient) -> None:
    tmpl = template(issuer="http://issuer.example/")
    kid, _ = protect(api, 4, token_restricted(tmpl))
    other_kid, _ = protect(api, 4, token_restricted(tmpl))
    token_for_other = mint_token(tmpl, key_id=other_kid)
    r = keys.get(f"/keydelivery/?KID={kid}", headers={"Authorization": f"Bearer {token_for_other}"})
    assert r.status_code == 403
