"""Token endpoints: ACS-style `POST /v2/OAuth2-13` (SWT) and AAD-style `POST /<tenant>/oauth2/token`
(JWT). Both take a client_credentials form; the account name and key always work as id/secret."""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import parse_qsl

from ..auth import tokens
from ..errors import ApiError
from .operations import Reply

NO_CACHE = [("Cache-Control", "no-cache, no-store"), ("Pragma", "no-cache"), ("Expires", "-1")]


def _oauth_error(status: int, error: str, description: str) -> Reply:
    body = json.dumps({"error": error, "error_description": description}).encode()
    return Reply(status, [("Content-Type", "application/json; charset=utf-8"), *NO_CACHE], body)


def _api_root(rt: Any, headers: dict[str, str]) -> str:
    """The API root as a client on this Host would see it (what `Runtime.audiences` expects)."""
    if rt.settings.public_url or not headers.get("host"):
        return rt.settings.api_base + "/api/"
    return f"http://{headers['host']}/api/"


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def token_reply(rt: Any, path: str, headers: dict[str, str], body: bytes) -> Reply:
    try:
        form = {k: v.strip() for k, v in parse_qsl(body.decode("utf-8"), keep_blank_values=True)}
    except UnicodeDecodeError:
        return _oauth_error(400, "invalid_request", "The form body is not UTF-8.")
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "Only grant_type=client_credentials is supported.")
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    if not client_id or not secret:
        return _oauth_error(400, "invalid_request", "client_id and client_secret are required.")
    lifetime = rt.settings.token_lifetime
    try:
        with rt.engine.connect() as conn, conn.begin():
            account = rt.accounts.find(conn, client_id)
            presented = [k for k in (account.keys() if account else ()) if _same(k, secret)]
            if account is not None and presented:
                principal, signing_key = client_id, presented[0]
            else:
                found = rt.accounts.client(conn, client_id)
                if found is None or not _same(found[1], secret):
                    return _oauth_error(401, "invalid_client", "Unknown client id or wrong secret.")
                account, principal, signing_key = found[0], client_id, None
    except ApiError as exc:
        return _oauth_error(exc.status, "invalid_request", exc.message)
    if path == "/v2/OAuth2-13":
        scope = form.get("scope") or "urn:WindowsAzureMediaServices"
        if scope not in tokens.SWT_AUDIENCES:
            return _oauth_error(400, "invalid_scope",
                                f"scope must be urn:WindowsAzureMediaServices, not '{scope}'.")
        token, _exp = tokens.issue_swt(account, scope, lifetime, key=signing_key)
        payload = {"token_type": tokens.SWT_TOKEN_TYPE, "access_token": token, "expires_in": str(lifetime),
                   "scope": scope}
    else:
        tenant = path.strip("/").split("/")[0]
        resource = form.get("resource") or "https://rest.media.azure.net"
        if not tokens.audience_accepted(resource, rt.audiences(_api_root(rt, headers))):
            # a token for another resource would be refused by every API call
            return _oauth_error(400, "invalid_resource",
                                f"resource must be https://rest.media.azure.net (or this server's API URL), "
                                f"not '{resource}'.")
        token, exp = tokens.issue_jwt(account, principal, resource, tenant, lifetime,
                                       key=signing_key)
        payload = {"token_type": "Bearer", "access_token": token, "expires_in": str(lifetime),
                   "expires_on": str(exp), "resource": resource}
    return Reply(200, [("Content-Type", "application/json; charset=utf-8"), *NO_CACHE],
                 json.dumps(payload).encode())
