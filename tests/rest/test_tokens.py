"""Token endpoints (ACS-style SWT, AAD-style JWT) and bearer checks on the Operations API."""

from __future__ import annotations

import base64
import dataclasses
import time
from typing import Any
from urllib.parse import parse_qsl, quote

import jwt
import pytest
from starlette.testclient import TestClient

from openams.auth import tokens
from openams.runtime import Runtime
from tests.conftest import _new_account
from tests.support.client import ApiClient

ACS = "/v2/OAuth2-13"
AAD = "/contoso.onmicrosoft.com/oauth2/token"
SCOPE = "urn:WindowsAzureMediaServices"
RESOURCE = "https://rest.media.azure.net"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def acs_form(
    name: str, secret: str, scope: str = "urn%3aWindowsAzureMediaServices", extra: str = ""
) -> bytes:
    return (
        f"grant_type=client_credentials&client_id={name}&client_secret={quote(secret, safe='')}{extra}"
        f"&scope={scope}"
    ).encode()


def call(
    http: TestClient, authorization: str | None, accept: str = "application/json", path: str = "/api/Assets"
) -> Any:
    headers = {"x-ms-version": "2.19", "Accept": accept}
    if authorization is not None:
        headers["Authorization"] = authorization
    return http.get(path, headers=headers)


def assert_unauthorized(r: Any, fragment: str = "") -> None:
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.headers["www-authenticate"].lower().startswith("bearer")
    err = r.json()["odata.error"]
    assert err["code"] in ("Unauthorized", "TokenExpired")
    assert fragment.lower() in err["message"]["value"].lower()


def write(runtime: Runtime, fn: Any) -> Any:
    with runtime.engine.connect() as conn:
        conn.info["write"] = True
        with conn.begin():
            return fn(conn)


# ---- ACS (SWT) ------------------------------------------------------------------------------------


def test_acs_token_is_an_swt_with_expires_on(http: TestClient, account: Any) -> None:
    before = int(time.time())
    r = http.post(ACS, content=acs_form(account.name, account.primary_key), headers=FORM)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "no-store" in r.headers["cache-control"]
    body = r.json()
    assert body["token_type"] == "http://schemas.xmlsoap.org/ws/2009/11/swt-token-profile-1.0"
    assert body["scope"] == SCOPE
    assert isinstance(body["expires_in"], str) and int(body["expires_in"]) > 0
    token = body["access_token"]
    claims = dict(parse_qsl(token))
    # what the ACS-era SDK parses: ExpiresOn=<unix seconds> inside the token, plus the account name
    assert "ExpiresOn=" in token and "HMACSHA256=" in token
    expires_on = int(claims["ExpiresOn"])
    assert (
        before + int(body["expires_in"]) - 5 <= expires_on <= int(time.time()) + int(body["expires_in"]) + 5
    )
    assert claims["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"] == account.name
    assert claims["Audience"] == SCOPE
    assert call(http, f"Bearer {token}").status_code == 200


def test_acs_form_with_stray_space_after_the_secret(http: TestClient, account: Any) -> None:
    r = http.post(ACS, content=acs_form(account.name, account.primary_key, extra=" "), headers=FORM)
    assert r.status_code == 200, r.text
    assert call(http, f"Bearer {r.json()['access_token']}").status_code == 200


def test_acs_accepts_the_secondary_key_and_the_legacy_scope(http: TestClient, account: Any) -> None:
    r = http.post(ACS, content=acs_form(account.name, account.secondary_key), headers=FORM)
    assert r.status_code == 200
    assert call(http, f"Bearer {r.json()['access_token']}").status_code == 200
    r = http.post(
        ACS, content=acs_form(account.name, account.primary_key, scope="urn%3ANimbus"), headers=FORM
    )
    assert r.status_code == 200


@pytest.mark.parametrize(
    "case", ["wrong secret", "unknown account", "missing secret", "grant", "scope", "no form", "non-ascii"]
)
def test_acs_refusals_are_oauth_errors(http: TestClient, account: Any, case: str) -> None:
    bodies = {
        "wrong secret": acs_form(account.name, base64.b64encode(b"x" * 32).decode()),
        "unknown account": acs_form("nosuchaccount1", account.primary_key),
        "missing secret": f"grant_type=client_credentials&client_id={account.name}&scope={SCOPE}".encode(),
        "grant": acs_form(account.name, account.primary_key).replace(b"client_credentials", b"password"),
        "scope": acs_form(account.name, account.primary_key, scope="urn%3Aother"),
        "no form": b'{"client_id": "x"}',
        "non-ascii": acs_form(account.name, "sécrét☃"),
    }
    expected = {
        "wrong secret": (401, "invalid_client"),
        "unknown account": (401, "invalid_client"),
        "missing secret": (400, "invalid_request"),
        "grant": (400, "unsupported_grant_type"),
        "scope": (400, "invalid_scope"),
        "no form": (400, "unsupported_grant_type"),
        "non-ascii": (401, "invalid_client"),
    }
    r = http.post(ACS, content=bodies[case], headers=FORM)
    status, error = expected[case]
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == error and r.json()["error_description"]
    assert "access_token" not in r.json()


def test_token_endpoints_take_post_only(http: TestClient) -> None:
    assert http.get(ACS).status_code == 405
    assert http.get(AAD).status_code == 405


# ---- AAD (JWT) ------------------------------------------------------------------------------------


def test_aad_token_is_a_jwt(http: TestClient, account: Any) -> None:
    r = http.post(
        AAD,
        data={
            "grant_type": "client_credentials",
            "client_id": account.name,
            "client_secret": account.primary_key,
            "resource": RESOURCE,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and isinstance(body["expires_in"], str)
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == RESOURCE and claims["exp"] > time.time()
    assert claims["tid"] == "contoso.onmicrosoft.com"
    assert call(http, f"Bearer {body['access_token']}").status_code == 200


def test_aad_token_for_an_unknown_resource_is_refused(http: TestClient, account: Any) -> None:
    r = http.post(
        AAD,
        data={
            "grant_type": "client_credentials",
            "client_id": account.name,
            "client_secret": account.primary_key,
            "resource": "https://graph.example.com",
        },
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_resource"


def test_aad_token_for_this_servers_own_url(http: TestClient, account: Any) -> None:
    r = http.post(
        AAD,
        data={
            "grant_type": "client_credentials",
            "client_id": account.name,
            "client_secret": account.primary_key,
            "resource": "http://openams.test/",
        },
    )
    assert r.status_code == 200, r.text
    assert call(http, f"Bearer {r.json()['access_token']}").status_code == 200


def test_registered_clients_get_jwts(http: TestClient, runtime: Runtime, account: Any) -> None:
    client_id, secret = write(runtime, lambda conn: runtime.accounts.add_client(conn, account.name))
    r = http.post(
        AAD,
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "resource": RESOURCE,
        },
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["appid"] == client_id
    api = ApiClient(http, token, "light")
    created = api.create("Assets", "Asset", {"Name": "by-client"})
    owner = ApiClient.for_account(http, account, "light")
    assert [a["Id"] for a in owner.list("Assets")] == [created["Id"]]
    # a wrong secret for the client is refused
    r = http.post(
        AAD, data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": "nope"}
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


# ---- bearer checks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "bearer garbage",
        "Bearer a.b.c",
        "Bearer x=1&HMACSHA256=%%%",
        "Token abc",
    ],
)
def test_missing_or_malformed_authorization_is_401(http: TestClient, header: str | None) -> None:
    assert_unauthorized(call(http, header))


def test_401_body_follows_the_requested_format(http: TestClient) -> None:
    r = call(http, None, accept="application/atom+xml")
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/xml")
    assert b"<m:code>Unauthorized</m:code>" in r.content
    r = call(http, None, accept="application/json;odata=verbose")
    assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"


def test_expired_tokens_are_401(http: TestClient, account: Any) -> None:
    past = time.time() - 3 * 3600
    swt, _ = tokens.issue_swt(account, SCOPE, 3600, now=past)
    token, _ = tokens.issue_jwt(account, account.name, RESOURCE, "t", 3600, now=past)
    assert_unauthorized(call(http, f"Bearer {swt}"), "expired")
    assert_unauthorized(call(http, f"Bearer {token}"), "expired")
    # a fresh token minted the same way is accepted (the refusal was the time, not the form)
    swt, _ = tokens.issue_swt(account, SCOPE, 3600)
    assert call(http, f"Bearer {swt}").status_code == 200


def test_forged_tokens_are_401(http: TestClient, account: Any, other_account: Any) -> None:
    # signed with another account's key
    impostor = dataclasses.replace(
        account, primary_key=other_account.primary_key, secondary_key=other_account.secondary_key
    )
    swt, _ = tokens.issue_swt(impostor, SCOPE, 3600)
    assert_unauthorized(call(http, f"Bearer {swt}"), "signature")
    token, _ = tokens.issue_jwt(impostor, account.name, RESOURCE, "t", 3600)
    assert_unauthorized(call(http, f"Bearer {token}"), "signature")
    # a valid SWT of B with the account name swapped to A
    genuine, _ = tokens.issue_swt(other_account, SCOPE, 3600)
    assert_unauthorized(
        call(http, "Bearer " + genuine.replace(other_account.name, account.name)), "signature"
    )
    # a valid SWT with a later ExpiresOn pasted in
    genuine, expires = tokens.issue_swt(account, SCOPE, 3600)
    assert_unauthorized(
        call(http, "Bearer " + genuine.replace(str(expires), str(expires + 10**6))), "signature"
    )
    # JWT with alg none, and a JWT naming another account id
    unsigned = jwt.encode(
        {
            "iss": tokens.ISSUER,
            "aud": RESOURCE,
            "exp": int(time.time()) + 600,
            "ams_account": account.name,
            "ams_account_id": account.id,
        },
        None,
        algorithm="none",
    )
    assert_unauthorized(call(http, f"Bearer {unsigned}"))
    wrong_id = dataclasses.replace(account, id=other_account.id)
    token, _ = tokens.issue_jwt(wrong_id, account.name, RESOURCE, "t", 3600)
    assert_unauthorized(call(http, f"Bearer {token}"))
    # a JWT for a foreign audience, signed correctly
    token, _ = tokens.issue_jwt(account, account.name, "https://graph.example.com", "t", 3600)
    assert_unauthorized(call(http, f"Bearer {token}"), "audience")


def test_token_of_a_deleted_account_is_401(http: TestClient, runtime: Runtime) -> None:
    gone = _new_account(runtime, "gone")
    api = ApiClient.for_account(http, gone, "light")
    assert api.get("Assets").status_code == 200
    write(runtime, lambda conn: runtime.accounts.delete(conn, gone.name))
    assert_unauthorized(api.get("Assets"))
    # recreating the name with a new key does not revive the old token
    write(runtime, lambda conn: runtime.accounts.create(conn, gone.name))
    assert_unauthorized(api.get("Assets"))


def _tokens_for(http: TestClient, name: str, key: str) -> tuple[str, str]:
    swt = http.post(ACS, content=acs_form(name, key), headers=FORM).json()["access_token"]
    token = http.post(
        AAD,
        data={
            "grant_type": "client_credentials",
            "client_id": name,
            "client_secret": key,
            "resource": RESOURCE,
        },
    ).json()["access_token"]
    return swt, token


@pytest.mark.parametrize("which", ["primary", "secondary"])
def test_rotating_a_key_invalidates_tokens_obtained_with_it(
    http: TestClient, runtime: Runtime, which: str
) -> None:
    account = _new_account(runtime, "rot")
    rotated_key, kept_key = account.primary_key, account.secondary_key
    if which == "secondary":
        rotated_key, kept_key = kept_key, rotated_key
    doomed = _tokens_for(http, account.name, rotated_key)
    kept = _tokens_for(http, account.name, kept_key)
    for token in (*doomed, *kept):
        assert call(http, f"Bearer {token}").status_code == 200
    rotated = write(runtime, lambda conn: runtime.accounts.regenerate(conn, account.name, which))
    for token in doomed:
        assert_unauthorized(call(http, f"Bearer {token}"), "signature")
    for token in kept:
        assert call(http, f"Bearer {token}").status_code == 200
    # the old key no longer buys a token; the new one does
    assert http.post(ACS, content=acs_form(account.name, rotated_key), headers=FORM).status_code == 401
    new_key = rotated.primary_key if which == "primary" else rotated.secondary_key
    r = http.post(ACS, content=acs_form(account.name, new_key), headers=FORM)
    assert r.status_code == 200
    assert call(http, f"Bearer {r.json()['access_token']}").status_code == 200


def test_batch_requires_a_token_too(http: TestClient) -> None:
    r = http.post(
        "/api/$batch",
        content=b"--b--",
        headers={
            "x-ms-version": "2.19",
            "Accept": "application/json",
            "Content-Type": "multipart/mixed; boundary=b",
        },
    )
    assert_unauthorized(r)
