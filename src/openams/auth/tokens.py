"""API tokens: ACS-style SWT and AAD-style JWT, issued for account keys and checked on every call.

Both kinds are signed with the account key the client presented (HMAC-SHA256; the primary key for
registered clients), so rotating a key invalidates every token obtained with it at once, and the
token alone says which account it is for.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

import jwt

from ..errors import Unauthorized
from .accounts import Account

ISSUER = "urn:openams:tokens"
SWT_AUDIENCES = frozenset({"urn:WindowsAzureMediaServices", "urn:Nimbus"})
JWT_AUDIENCES = frozenset({
    "https://rest.media.azure.net",
    "https://rest.media.chinacloudapi.cn",
    "https://rest.media.usgovcloudapi.net",
    "https://rest.media.cloudapi.de",
    "urn:WindowsAzureMediaServices",
})
SWT_TOKEN_TYPE = "http://schemas.xmlsoap.org/ws/2009/11/swt-token-profile-1.0"
CLAIM_NAME_ID = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
CLAIM_IDP = "http://schemas.microsoft.com/accesscontrolservice/2010/07/claims/identityprovider"
CLOCK_SKEW = 60


def _key_bytes(key: str) -> bytes:
    return base64.b64decode(key)


@dataclass(frozen=True)
class TokenClaims:
    account: str
    client_id: str
    expires: int


# ---- SWT ---------------------------------------------------------------------------------------


def issue_swt(account: Account, scope: str, lifetime: int, now: float | None = None,
              key: str | None = None) -> tuple[str, int]:
    """An SWT signed with `key` (the account key the client presented; the primary key by default)."""
    expires = int((now or time.time()) + lifetime)
    pairs = [
        (CLAIM_NAME_ID, account.name),
        ("urn:SubscriptionId", account.id),
        (CLAIM_IDP, ISSUER),
        ("Audience", scope),
        ("ExpiresOn", str(expires)),
        ("Issuer", ISSUER),
    ]
    unsigned = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    signing_key = _key_bytes(key or account.primary_key)
    sig = base64.b64encode(hmac.new(signing_key, unsigned.encode(), hashlib.sha256).digest())
    return f"{unsigned}&HMACSHA256={quote(sig.decode('ascii'), safe='')}", expires


def swt_account(token: str) -> str:
    claims = dict(parse_qsl(token.rsplit("&HMACSHA256=", 1)[0], keep_blank_values=True))
    name = claims.get(CLAIM_NAME_ID)
    if not name:
        raise Unauthorized("The token names no account.")
    return name


def verify_swt(token: str, account: Account, now: float | None = None) -> TokenClaims:
    unsigned, sep, sig = token.rpartition("&HMACSHA256=")
    if not sep:
        raise Unauthorized("The token is not a signed SWT.")
    try:
        given = base64.b64decode(_unquote(sig), validate=True)
    except ValueError:
        raise Unauthorized("The token signature is malformed.") from None
    keys = account.keys()
    if not any(hmac.compare_digest(hmac.new(_key_bytes(k), unsigned.encode(), hashlib.sha256).digest(), given)
               for k in keys):
        raise Unauthorized("The token signature is not valid for this account's keys.")
    claims = dict(parse_qsl(unsigned, keep_blank_values=True))
    if claims.get("Issuer") != ISSUER:
        raise Unauthorized("The token was not issued by this service.")
    if claims.get("Audience") not in SWT_AUDIENCES:
        raise Unauthorized("The token audience is not urn:WindowsAzureMediaServices.")
    try:
        expires = int(claims.get("ExpiresOn", ""))
    except ValueError:
        raise Unauthorized("The token has no valid ExpiresOn.") from None
    if expires + CLOCK_SKEW < (now or time.time()):
        raise Unauthorized("The token has expired; request a new one.", code="TokenExpired")
    if claims.get(CLAIM_NAME_ID) != account.name:
        raise Unauthorized("The token is for another account.")
    return TokenClaims(account.name, account.name, expires)


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


# ---- JWT ---------------------------------------------------------------------------------------


def issue_jwt(account: Account, client_id: str, resource: str, tenant: str, lifetime: int,
              now: float | None = None, key: str | None = None) -> tuple[str, int]:
    """A JWT signed with `key` (the account key the client presented; the primary key by default)."""
    issued = int(now or time.time())
    expires = issued + lifetime
    claims = {
        "iss": ISSUER,
        "aud": resource,
        "iat": issued,
        "nbf": issued,
        "exp": expires,
        "sub": client_id,
        "appid": client_id,
        "tid": tenant,
        "ams_account": account.name,
        "ams_account_id": account.id,
    }
    return jwt.encode(claims, _key_bytes(key or account.primary_key), algorithm="HS256"), expires


def jwt_account(token: str) -> tuple[str, str]:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise Unauthorized("The token is not a well-formed JWT.") from None
    name = claims.get("ams_account")
    if not isinstance(name, str):
        raise Unauthorized("The token names no account.")
    return name, str(claims.get("appid", name))


def verify_jwt(token: str, account: Account, now: float | None = None,
               extra_audiences: set[str] | frozenset[str] = frozenset()) -> TokenClaims:
    last_error = "signature"
    keys = account.keys()
    for key in keys:
        try:
            claims = jwt.decode(
                token, _key_bytes(key), algorithms=["HS256"], issuer=ISSUER, leeway=CLOCK_SKEW,
                options={"verify_aud": False, "require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired; request a new one.", code="TokenExpired") from None
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            last_error = str(exc)
            break
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if not any(isinstance(a, str) and audience_accepted(a, extra_audiences) for a in auds):
            raise Unauthorized(f"The token audience {aud!r} is not a Media Services resource.")
        if claims.get("ams_account") != account.name or claims.get("ams_account_id") != account.id:
            raise Unauthorized("The token is for another account.")
        return TokenClaims(account.name, str(claims.get("appid")), int(claims["exp"]))
    if last_error == "signature":
        raise Unauthorized("The token signature is not valid for this account's keys.")
    raise Unauthorized(f"The token is not valid: {last_error}.")


def _bare(resource: str) -> str:
    """A resource URI without scheme (a proxy may terminate TLS), trailing slash or case."""
    return resource.split("://", 1)[-1].rstrip("/").lower()


def audience_accepted(resource: str, extra_audiences: set[str] | frozenset[str] = frozenset()) -> bool:
    """Whether a JWT for `resource` is good for this API (the token endpoint refuses other resources)."""
    return _bare(resource) in {_bare(a) for a in JWT_AUDIENCES | extra_audiences}


def parse_bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("Authorization header missing: send 'Authorization: Bearer <token>'.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'.")
    return token.strip()


def is_jwt(token: str) -> bool:
    return token.count(".") == 2 and "&" not in token and "=" not in token.rstrip("=")
