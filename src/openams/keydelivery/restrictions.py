"""Who may receive a content key: the restrictions of ContentKeyAuthorizationPolicyOptions.

Pure code — no HTTP, no database, no network — shared by the entity rules (which refuse a
restriction that could never be satisfied, when the client stores it) and by the key delivery
service (which judges each key request against the same parsed values).

* `parse_template(xml)`: the TokenRestrictionTemplate XML a .NET DataContractSerializer writes
  (namespace `…/KeyDelivery/TokenRestrictionTemplate/v1`), parsed with defusedxml.
* `verify_token(template, token, key_id, now)`: signature (HS256 for symmetric JWT keys, RS256 for
  X.509 and RSA keys, HMAC-SHA256 for SWT), expiry, issuer, audience, required claims and the
  content-key-identifier claim.
* `check_ip(ranges, client_ip)`: the IPRestricted restriction. AMS documented IP restrictions as
  reserved and never specified `Requirements`; openams defines it as a list of IPv4/IPv6 addresses,
  CIDR blocks and `first-last` ranges separated by commas, semicolons or white space, e.g.
  `10.0.0.0/8, 192.168.1.20-192.168.1.40; 2001:db8::/32 203.0.113.7`.
* `evaluate_option(...)` (every restriction of an option must pass) and `evaluate_policy(...)`
  (any option passing allows).
* `mint_token(template, ...)`: a token that satisfies a template, for tests and for
  `openams token --viewer`.

Answers are `Decision`s: allowed or denied with a machine reason (`Reason`) and a message for
people. Messages never contain the token, a key, or the template's expected values — a denied
caller learns which check failed, not how to forge a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit
from xml.etree.ElementTree import Element, ParseError

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from defusedxml import ElementTree as SafeElementTree
from defusedxml.common import DefusedXmlException

TEMPLATE_NS = "http://schemas.microsoft.com/Azure/MediaServices/KeyDelivery/TokenRestrictionTemplate/v1"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
CONTENT_KEY_ID_CLAIM = "urn:microsoft:azure:mediaservices:contentkeyidentifier"
"""A required claim of this type with a nil value means: the token must name the key requested."""
KEY_ID_PREFIX = "nb:kid:UUID:"

OPEN, TOKEN_RESTRICTED, IP_RESTRICTED = 0, 1, 2
"""ContentKeyRestrictionType values."""
SWT, JWT = "SWT", "JWT"
CLOCK_SKEW = timedelta(minutes=1)
"""Tolerance for `exp`/`ExpiresOn` and `nbf`: the token issuer's clock is not ours."""

_HMAC_ALGS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
_RSA_ALGS = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512}
_ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$")
_MAX_TEMPLATE_CHARS = 256 * 1024
_MAX_TOKEN_CHARS = 64 * 1024


class TemplateError(ValueError):
    """A TokenRestrictionTemplate that cannot be used; the message says what to fix."""


class Reason(StrEnum):
    """Machine-readable outcome of a key request check."""

    ALLOWED = "Allowed"
    TOKEN_MISSING = "TokenMissing"
    MALFORMED_TOKEN = "MalformedToken"
    WRONG_TOKEN_TYPE = "WrongTokenType"
    INVALID_SIGNATURE = "InvalidSignature"
    TOKEN_EXPIRED = "TokenExpired"
    TOKEN_NOT_YET_VALID = "TokenNotYetValid"
    INVALID_ISSUER = "InvalidIssuer"
    INVALID_AUDIENCE = "InvalidAudience"
    MISSING_CLAIM = "MissingClaim"
    WRONG_CLAIM_VALUE = "WrongClaimValue"
    WRONG_KEY_ID = "WrongKeyId"
    UNSUPPORTED_VERIFICATION = "UnsupportedVerification"
    IP_NOT_ALLOWED = "IPNotAllowed"
    INVALID_RESTRICTION = "InvalidRestriction"
    NO_MATCHING_OPTION = "NoMatchingOption"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: Reason
    message: str
    option_id: str | None = None
    """The option that allowed the request (or, for a denial, the option whose failure is reported)."""

    @classmethod
    def allow(cls, message: str = "Allowed.", option_id: str | None = None) -> Decision:
        return cls(True, Reason.ALLOWED, message, option_id)

    @classmethod
    def deny(cls, reason: Reason, message: str, option_id: str | None = None) -> Decision:
        return cls(False, reason, message, option_id)


# ------------------------------------------------------------------------------------------------
# the template


class KeyKind(StrEnum):
    SYMMETRIC = "SymmetricVerificationKey"
    X509 = "X509CertTokenVerificationKey"
    RSA = "RsaTokenVerificationKey"


@dataclass(frozen=True)
class VerificationKey:
    kind: KeyKind
    secret: bytes | None = field(default=None, repr=False)
    """The HMAC key of a SymmetricVerificationKey."""
    public_key: rsa.RSAPublicKey | None = field(default=None, repr=False, compare=False)
    """The RSA public key of an X509CertTokenVerificationKey or RsaTokenVerificationKey."""

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(_HMAC_ALGS) if self.kind is KeyKind.SYMMETRIC else tuple(_RSA_ALGS)


@dataclass(frozen=True)
class TokenClaim:
    claim_type: str
    claim_value: str | None
    """None (`i:nil`): the claim must be present with any value (for the key-id claim: the key requested)."""


@dataclass(frozen=True)
class TokenRestrictionTemplate:
    issuer: str
    audience: str
    primary_key: VerificationKey | None
    alternate_keys: tuple[VerificationKey, ...] = ()
    required_claims: tuple[TokenClaim, ...] = ()
    token_type: str = SWT
    openid_discovery_uri: str | None = None

    @property
    def verification_keys(self) -> tuple[VerificationKey, ...]:
        """The primary key first, then the alternates: a token signed by any of them is genuine."""
        head = (self.primary_key,) if self.primary_key is not None else ()
        return head + self.alternate_keys


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def _xsi(el: Element, name: str) -> str | None:
    """An `i:<name>` attribute, whatever spelling the instance namespace has (the docs print it with
    https://), or none at all."""
    for key, value in el.attrib.items():
        if _local(key) == name and (not key.startswith("{") or "XMLSchema-instance" in _namespace(key)):
            return value
    return None


def _is_nil(el: Element) -> bool:
    return (_xsi(el, "nil") or "").strip().lower() in ("true", "1")


def _child(el: Element, name: str) -> Element | None:
    return next((c for c in el if _local(c.tag) == name), None)


def _text(el: Element | None) -> str:
    return "" if el is None else (el.text or "").strip()


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional (keys are pasted by hand as often as generated)."""
    compact = "".join(text.split())
    padded = compact + "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return base64.b64decode(padded, altchars=b"-_", validate=True)


def _b64_field(el: Element | None, where: str) -> bytes:
    text = _text(el)
    if not text:
        raise TemplateError(f"{where} is empty.")
    try:
        return _b64decode(text)
    except (binascii.Error, ValueError):
        raise TemplateError(f"{where} is not base64.") from None


def _parse_key(el: Element, where: str) -> VerificationKey:
    kind = (_xsi(el, "type") or "").rsplit(":", 1)[-1].strip()
    low = kind.lower()
    if low == "symmetricverificationkey":
        return VerificationKey(KeyKind.SYMMETRIC, secret=_b64_field(_child(el, "KeyValue"), f"{where}.KeyValue"))
    if low == "x509certtokenverificationkey":
        der = _b64_field(_child(el, "RawBody"), f"{where}.RawBody")
        try:
            public = x509.load_der_x509_certificate(der).public_key()
        except ValueError:
            raise TemplateError(f"{where}.RawBody is not a DER-encoded X.509 certificate.") from None
        if not isinstance(public, rsa.RSAPublicKey):
            raise TemplateError(f"{where}: the certificate must carry an RSA public key (tokens are RS256).")
        return VerificationKey(KeyKind.X509, public_key=public)
    if low == "rsatokenverificationkey":
        raw = _b64_field(_child(el, "RawBody"), f"{where}.RawBody")
        try:
            body = json.loads(raw.decode("utf-8"))
            exponent = int.from_bytes(_b64decode(str(body["e"])), "big")
            modulus = int.from_bytes(_b64decode(str(body["n"])), "big")
            public = rsa.RSAPublicNumbers(exponent, modulus).public_key()
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, binascii.Error):
            raise TemplateError(f'{where}.RawBody must be base64 of the JSON {{"e": "<base64 exponent>", '
                                '"n": "<base64 modulus>"}} of an RSA public key.') from None
        return VerificationKey(KeyKind.RSA, public_key=public)
    if not kind:
        raise TemplateError(f"{where} has no i:type (SymmetricVerificationKey, X509CertTokenVerificationKey or "
                            "RsaTokenVerificationKey).")
    raise TemplateError(f"{where} has the unsupported i:type '{kind[:80]}'; use SymmetricVerificationKey, "
                        "X509CertTokenVerificationKey or RsaTokenVerificationKey.")


def _token_type(text: str) -> str:
    low = text.strip().lower()
    if low in ("", "undefined", "0", "swt", "1"):
        return SWT  # a template without TokenType (the older schema) is SWT, as the SDK reads it
    if low in ("jwt", "2"):
        return JWT
    raise TemplateError(f"TokenType must be SWT or JWT, not '{text[:40]}'.")


def parse_template(xml: str | bytes) -> TokenRestrictionTemplate:
    """Parse and check a TokenRestrictionTemplate (raises `TemplateError` saying what is wrong)."""
    if isinstance(xml, bytes):
        try:
            xml = xml.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise TemplateError("is not UTF-8 text.") from None
    if xml is None or not xml.strip():
        raise TemplateError("is empty; a TokenRestricted restriction needs a TokenRestrictionTemplate.")
    if len(xml) > _MAX_TEMPLATE_CHARS:
        raise TemplateError(f"is longer than {_MAX_TEMPLATE_CHARS} characters.")
    try:
        root = SafeElementTree.fromstring(xml.lstrip("\ufeff"), forbid_dtd=True)
    except DefusedXmlException:
        raise TemplateError("uses DTDs or entities, which are not accepted.") from None
    except (ParseError, ValueError):
        raise TemplateError("is not well-formed XML.") from None
    if _local(root.tag) != "TokenRestrictionTemplate" or _namespace(root.tag) not in (TEMPLATE_NS, ""):
        raise TemplateError(f"must be a <TokenRestrictionTemplate xmlns=\"{TEMPLATE_NS}\"> element.")

    issuer, audience = _text(_child(root, "Issuer")), _text(_child(root, "Audience"))
    if not issuer:
        raise TemplateError("has no Issuer.")
    if not audience:
        raise TemplateError("has no Audience.")
    token_type = _token_type(_text(_child(root, "TokenType")))

    primary_el = _child(root, "PrimaryVerificationKey")
    primary = None if primary_el is None or _is_nil(primary_el) else _parse_key(primary_el, "PrimaryVerificationKey")
    alternates: list[VerificationKey] = []
    alt_el = _child(root, "AlternateVerificationKeys")
    if alt_el is not None and not _is_nil(alt_el):
        for i, key_el in enumerate(c for c in alt_el if not _is_nil(c)):
            alternates.append(_parse_key(key_el, f"AlternateVerificationKeys[{i}]"))

    claims: list[TokenClaim] = []
    claims_el = _child(root, "RequiredClaims")
    if claims_el is not None and not _is_nil(claims_el):
        for i, claim_el in enumerate(c for c in claims_el if _local(c.tag) == "TokenClaim"):
            claim_type = _text(_child(claim_el, "ClaimType"))
            if not claim_type:
                raise TemplateError(f"RequiredClaims[{i}] has no ClaimType.")
            value_el = _child(claim_el, "ClaimValue")
            value = None if value_el is None or _is_nil(value_el) else (value_el.text or "")
            if claim_type == CONTENT_KEY_ID_CLAIM and value is not None and _as_uuid(value) is None:
                raise TemplateError(f"RequiredClaims[{i}]: the {CONTENT_KEY_ID_CLAIM} claim value must be nil "
                                    "(the key requested) or a content key GUID.")
            claims.append(TokenClaim(claim_type, value))

    discovery: str | None = None
    doc_el = _child(root, "OpenIdConnectDiscoveryDocument")
    if doc_el is not None and not _is_nil(doc_el):
        uri_el = _child(doc_el, "OpenIdDiscoveryUri")
        discovery = "" if uri_el is None or _is_nil(uri_el) else _text(uri_el)
        if not discovery:
            raise TemplateError("OpenIdConnectDiscoveryDocument.OpenIdDiscoveryUri is empty.")
        parts = urlsplit(discovery)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise TemplateError("OpenIdConnectDiscoveryDocument.OpenIdDiscoveryUri must be an absolute http(s) URI.")

    if primary is None and discovery is None:
        raise TemplateError("needs a PrimaryVerificationKey or an OpenIdConnectDiscoveryDocument.")
    keys = ([primary] if primary else []) + alternates
    if token_type == SWT:
        for what, value in (("Issuer", issuer), ("Audience", audience)):
            if not _ABSOLUTE_URI.match(value):
                raise TemplateError(f"{what} must be an absolute URI for SWT tokens.")
        if discovery is not None:
            raise TemplateError("OpenIdConnectDiscoveryDocument applies to JWT tokens only.")
        if any(k.kind is not KeyKind.SYMMETRIC for k in keys):
            raise TemplateError("SWT tokens are signed with HMAC-SHA256: every verification key must be a "
                                "SymmetricVerificationKey.")
    return TokenRestrictionTemplate(issuer, audience, primary, tuple(alternates), tuple(claims), token_type,
                                    discovery)


@lru_cache(maxsize=512)
def _cached_template(xml: str) -> TokenRestrictionTemplate:
    """Templates are immutable and re-read on every key request: parse each text once."""
    return parse_template(xml)


# ------------------------------------------------------------------------------------------------
# tokens


def strip_bearer(token: str | None) -> str:
    """The token itself from `Bearer <t>`, `Bearer=<t>` (the SDK's test tokens and Azure Media
    Player send that form) or a bare token."""
    text = (token or "").strip()
    match = re.match(r"bearer(?:=|\s+|$)", text, re.IGNORECASE)
    return text[match.end():].strip() if match else text


def _as_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    text = str(value).strip()
    if text.lower().startswith(KEY_ID_PREFIX.lower()):
        text = text[len(KEY_ID_PREFIX):]
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _same_identifier(expected: str, given: Any) -> bool:
    """Issuer/audience equality as .NET `Uri` sees it: scheme and host case-insensitive, and an
    empty path equal to `/` (`Uri.AbsoluteUri` adds the slash, hand-made tokens often do not)."""
    if not isinstance(given, str):
        return False
    if given == expected:
        return True
    a, b = urlsplit(expected), urlsplit(given)
    if not a.scheme or not a.netloc or not b.netloc:
        return False
    return (a.scheme.lower(), a.netloc.lower(), a.path or "/", a.query, a.fragment) == \
        (b.scheme.lower(), b.netloc.lower(), b.path or "/", b.query, b.fragment)


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and "&" not in token


def _check_times(expires: float, not_before: float | None, now: datetime) -> Decision | None:
    current = _timestamp(now)
    skew = CLOCK_SKEW.total_seconds()
    if current >= expires + skew:
        when = datetime.fromtimestamp(expires, UTC).isoformat() if abs(expires) < 1e11 else str(expires)
        return Decision.deny(Reason.TOKEN_EXPIRED, f"The token expired at {when}; get a new one.")
    if not_before is not None and current + skew < not_before:
        return Decision.deny(Reason.TOKEN_NOT_YET_VALID, "The token is not valid yet (nbf is in the future).")
    return None


def _timestamp(now: datetime) -> float:
    return (now if now.tzinfo else now.replace(tzinfo=UTC)).timestamp()


def _check_claims(template: TokenRestrictionTemplate, claims: Mapping[str, list[str]],
                  key_id: uuid.UUID | None) -> Decision | None:
    for claim in template.required_claims:
        values = claims.get(claim.claim_type) or []
        if not values:
            return Decision.deny(Reason.MISSING_CLAIM, f"The token lacks the required claim '{claim.claim_type}'.")
        if claim.claim_type == CONTENT_KEY_ID_CLAIM:
            named = {_as_uuid(v) for v in values} - {None}
            fixed = _as_uuid(claim.claim_value) if claim.claim_value is not None else None
            if key_id is None or key_id not in named or (fixed is not None and fixed not in named):
                return Decision.deny(Reason.WRONG_KEY_ID,
                                     "The token is for another content key than the one requested.")
            continue
        if claim.claim_value is not None and claim.claim_value not in values:
            return Decision.deny(Reason.WRONG_CLAIM_VALUE,
                                 f"The token's '{claim.claim_type}' claim does not have the required value.")
    return None


def _b64url(segment: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_\-]*={0,2}", segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _jwt_signature_ok(key: VerificationKey, alg: str, signing_input: bytes, signature: bytes) -> bool:
    if key.kind is KeyKind.SYMMETRIC:
        digest = _HMAC_ALGS.get(alg)
        if digest is None or key.secret is None:
            return False
        return hmac.compare_digest(hmac.new(key.secret, signing_input, digest).digest(), signature)
    hash_cls = _RSA_ALGS.get(alg)
    if hash_cls is None or key.public_key is None:
        return False
    try:
        key.public_key.verify(signature, signing_input, padding.PKCS1v15(), hash_cls())
    except (InvalidSignature, ValueError):
        return False
    return True


def _claim_strings(value: Any) -> list[str]:
    """A JWT claim as the strings .NET claims would hold (`true`, `42`, each element of an array)."""
    if isinstance(value, list):
        return [s for v in value for s in _claim_strings(v)]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if value is None:
        return []
    if isinstance(value, dict):
        return [json.dumps(value, separators=(",", ":"))]
    return [str(value)]


def _verify_jwt(template: TokenRestrictionTemplate, token: str, key_id: uuid.UUID | None,
                now: datetime) -> Decision:
    parts = token.split(".")
    if len(parts) != 3:
        if "&HMACSHA256=" in token:
            return Decision.deny(Reason.WRONG_TOKEN_TYPE, "An SWT token was sent; this restriction requires a JWT.")
        return Decision.deny(Reason.MALFORMED_TOKEN, "The token is not a JWT (header.payload.signature).")
    try:
        header = json.loads(_b64url(parts[0]))
        payload = json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    except (ValueError, UnicodeError):
        return Decision.deny(Reason.MALFORMED_TOKEN, "The token is not a well-formed JWT.")
    if not isinstance(header, dict) or not isinstance(payload, dict) or not isinstance(header.get("alg"), str):
        return Decision.deny(Reason.MALFORMED_TOKEN, "The token is not a well-formed JWT.")
    alg = header["alg"]
    keys = template.verification_keys
    if not keys:
        return Decision.deny(Reason.UNSUPPORTED_VERIFICATION,
                             "This restriction's keys are published through OpenID Connect discovery, which this "
                             "server cannot fetch; add the signing key to the template as a verification key.")
    if not any(_jwt_signature_ok(k, alg, signing_input, signature) for k in keys):
        if not any(alg in k.algorithms for k in keys):
            usable = sorted({a for k in keys for a in k.algorithms})
            return Decision.deny(Reason.INVALID_SIGNATURE,
                                 f"The token is signed with '{alg[:16]}', which none of the restriction's keys "
                                 f"verifies (accepted: {', '.join(usable)}).")
        return Decision.deny(Reason.INVALID_SIGNATURE, "The token's signature matches none of the restriction's keys.")
    exp, nbf = payload.get("exp"), payload.get("nbf")
    if not _is_number(exp):
        return Decision.deny(Reason.MALFORMED_TOKEN, "The token has no numeric expiry (exp).")
    if nbf is not None and not _is_number(nbf):
        return Decision.deny(Reason.MALFORMED_TOKEN, "The token's nbf is not a number.")
    denied = _check_times(float(exp), None if nbf is None else float(nbf), now)
    if denied:
        return denied
    if not _same_identifier(template.issuer, payload.get("iss")):
        return Decision.deny(Reason.INVALID_ISSUER,
                             "The token's issuer (iss) is not the one this restriction requires.")
    aud = payload.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if not any(_same_identifier(template.audience, a) for a in audiences):
        return Decision.deny(Reason.INVALID_AUDIENCE,
                             "The token's audience (aud) is not the one this restriction requires.")
    claims = {name: _claim_strings(value) for name, value in payload.items()}
    return _check_claims(template, claims, key_id) or Decision.allow("The token satisfies the restriction.")


def _is_number(value: Any) -> bool:
    """A JSON number usable as a time (json accepts NaN and Infinity, which would never expire)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _verify_swt(template: TokenRestrictionTemplate, token: str, key_id: uuid.UUID | None,
                now: datetime) -> Decision:
    unsigned, sep, sig_text = token.rpartition("&HMACSHA256=")
    if not sep:
        if _looks_like_jwt(token):
            return Decision.deny(Reason.WRONG_TOKEN_TYPE, "A JWT was sent; this restriction requires an SWT token.")
        return Decision.deny(Reason.MALFORMED_TOKEN, "The token is not a signed SWT (no HMACSHA256 field).")
    try:
        signature = base64.b64decode(unquote(sig_text), validate=True)
        message = unsigned.encode("utf-8")
    except (binascii.Error, ValueError, UnicodeError):
        return Decision.deny(Reason.MALFORMED_TOKEN, "The token's HMACSHA256 signature is not base64.")
    secrets = [k.secret for k in template.verification_keys if k.kind is KeyKind.SYMMETRIC and k.secret]
    if not any(hmac.compare_digest(hmac.new(s, message, hashlib.sha256).digest(), signature) for s in secrets):
        return Decision.deny(Reason.INVALID_SIGNATURE, "The token's signature matches none of the restriction's keys.")
    claims: dict[str, list[str]] = {}
    for pair in unsigned.split("&"):
        name, eq, value = pair.partition("=")
        if not eq or not name:
            return Decision.deny(Reason.MALFORMED_TOKEN, "The token is not a well-formed SWT (name=value pairs).")
        values = claims.setdefault(unquote_plus(name), [])
        decoded = unquote_plus(value)
        values.append(decoded)
        if "," in decoded:  # SWT writes a multi-valued claim as one comma-separated value
            values.extend(v for v in decoded.split(",") if v)
    try:
        (expires_text,) = claims.get("ExpiresOn") or [""]
        expires = int(expires_text)
    except ValueError:
        return Decision.deny(Reason.MALFORMED_TOKEN, "The token has no valid ExpiresOn.")
    denied = _check_times(float(expires), None, now)
    if denied:
        return denied
    if not any(_same_identifier(template.issuer, v) for v in claims.get("Issuer") or []):
        return Decision.deny(Reason.INVALID_ISSUER, "The token's Issuer is not the one this restriction requires.")
    if not any(_same_identifier(template.audience, v) for v in claims.get("Audience") or []):
        return Decision.deny(Reason.INVALID_AUDIENCE, "The token's Audience is not the one this restriction requires.")
    return _check_claims(template, claims, key_id) or Decision.allow("The token satisfies the restriction.")


def verify_token(template: TokenRestrictionTemplate | str, token: str | None, key_id: uuid.UUID | str | None,
                 now: datetime) -> Decision:
    """Judge `token` (bare, or with a `Bearer `/`Bearer=` prefix) against a TokenRestricted
    restriction's template, for a request of content key `key_id` (a GUID or `nb:kid:UUID:<guid>`)
    at time `now`. Checks, in order: token type and shape, signature (primary key, then the
    alternates), expiry and not-before, issuer, audience, required claims and the key id claim."""
    if isinstance(template, str):
        try:
            template = _cached_template(template)
        except TemplateError as exc:
            return Decision.deny(Reason.INVALID_RESTRICTION, f"The restriction's TokenRestrictionTemplate {exc}")
    bare = strip_bearer(token)
    if not bare:
        return Decision.deny(Reason.TOKEN_MISSING,
                             "A token is required: send it as 'Authorization: Bearer <token>'.")
    if len(bare) > _MAX_TOKEN_CHARS:
        return Decision.deny(Reason.MALFORMED_TOKEN, f"The token is longer than {_MAX_TOKEN_CHARS} characters.")
    kid = _as_uuid(key_id) if key_id is not None else None
    if template.token_type == JWT:
        return _verify_jwt(template, bare, kid, now)
    return _verify_swt(template, bare, kid, now)


# ------------------------------------------------------------------------------------------------
# minting (tests, `openams token --viewer`)


def _claim_values(template: TokenRestrictionTemplate, key_id: uuid.UUID | str | None,
                  extra: Mapping[str, str] | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    extra = dict(extra or {})
    for claim in template.required_claims:
        if claim.claim_type == CONTENT_KEY_ID_CLAIM:
            kid = _as_uuid(key_id) if key_id is not None else _as_uuid(claim.claim_value or "")
            if kid is None:
                raise ValueError(f"The template requires the {CONTENT_KEY_ID_CLAIM} claim: pass key_id.")
            out.append((claim.claim_type, str(kid)))
        else:
            value = extra.pop(claim.claim_type, claim.claim_value)
            out.append((claim.claim_type, "" if value is None else str(value)))
    out.extend(extra.items())
    return out


def mint_token(template: TokenRestrictionTemplate | str, *, key_id: uuid.UUID | str | None = None,
               now: datetime | None = None, lifetime: timedelta = timedelta(minutes=10),
               claims: Mapping[str, str] | None = None, signing_key: VerificationKey | None = None,
               rsa_private_key: rsa.RSAPrivateKey | None = None) -> str:
    """A token that satisfies `template` (without a `Bearer` prefix).

    SWT tokens follow the SDK's `GenerateTestToken` layout (required claims, Audience, ExpiresOn,
    Issuer, HMACSHA256). JWTs carry iss, aud, nbf, exp and the required claims, signed HS256 with
    `signing_key` or the template's first symmetric key — or RS256 with `rsa_private_key`, since a
    template holds only public keys. `claims` supplies values for nil-valued claims and extra claims.
    """
    if isinstance(template, str):
        template = parse_template(template)
    issued = now or datetime.now(UTC)
    expires = int(_timestamp(issued + lifetime))
    pairs = _claim_values(template, key_id, claims)
    if template.token_type == JWT:
        payload: dict[str, Any] = {"iss": template.issuer, "aud": template.audience,
                                   "nbf": int(_timestamp(issued)), "exp": expires}
        payload.update(pairs)
        if rsa_private_key is not None:
            alg, sign = "RS256", lambda data: rsa_private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:
            secret = _signing_secret(template, signing_key)
            alg, sign = "HS256", lambda data: hmac.new(secret, data, hashlib.sha256).digest()
        head = _b64url_encode(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
        body = _b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
        return f"{head}.{body}.{_b64url_encode(sign(f'{head}.{body}'.encode('ascii')))}"
    secret = _signing_secret(template, signing_key)
    fields = [*pairs, ("Audience", template.audience), ("ExpiresOn", str(expires)), ("Issuer", template.issuer)]
    unsigned = "&".join(f"{quote_plus(k, safe='')}={quote_plus(v, safe='')}" for k, v in fields)
    signature = base64.b64encode(hmac.new(secret, unsigned.encode("utf-8"), hashlib.sha256).digest()).decode()
    return f"{unsigned}&HMACSHA256={quote(signature, safe='')}"


def _signing_secret(template: TokenRestrictionTemplate, signing_key: VerificationKey | None) -> bytes:
    key = signing_key or next((k for k in template.verification_keys if k.kind is KeyKind.SYMMETRIC), None)
    if key is None or key.kind is not KeyKind.SYMMETRIC or not key.secret:
        raise ValueError("Minting needs a symmetric key (or rsa_private_key for an RS256 JWT).")
    return key.secret


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# ------------------------------------------------------------------------------------------------
# IP restrictions

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class IpRange:
    first: IpAddress
    last: IpAddress

    def __contains__(self, address: object) -> bool:
        return (isinstance(address, type(self.first)) and self.first <= address <= self.last)  # type: ignore[operator]


def _address(text: str) -> IpAddress:
    address = ipaddress.ip_address(text.strip().strip("[]"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d
    return address


def parse_ip_ranges(text: str | None) -> tuple[IpRange, ...]:
    """The address list of an IPRestricted restriction (see the module docstring for the format);
    raises ValueError naming the entry that is wrong."""
    entries = [e for e in re.split(r"[\s,;]+", (text or "").strip()) if e]
    if not entries:
        raise ValueError("is empty: list the allowed addresses, CIDR blocks or first-last ranges, separated by "
                         "commas (e.g. '10.0.0.0/8, 203.0.113.7').")
    ranges: list[IpRange] = []
    for entry in entries:
        try:
            if "/" in entry:
                net = ipaddress.ip_network(entry, strict=False)
                ranges.append(IpRange(net.network_address, net.broadcast_address))
            elif "-" in entry:
                low_text, high_text = entry.split("-", 1)
                low, high = _address(low_text), _address(high_text)
                if type(low) is not type(high) or low > high:  # type: ignore[operator]
                    raise ValueError
                ranges.append(IpRange(low, high))
            else:
                single = _address(entry)
                ranges.append(IpRange(single, single))
        except ValueError:
            raise ValueError(f"'{entry[:64]}' is not an IP address, a CIDR block (10.0.0.0/8) or a range of one "
                             "address family (192.168.1.20-192.168.1.40).") from None
    return tuple(ranges)


@lru_cache(maxsize=512)
def _cached_ranges(text: str) -> tuple[IpRange, ...]:
    return parse_ip_ranges(text)


def check_ip(ranges: str | Sequence[IpRange], client_ip: str | None) -> Decision:
    """Allowed when the client's address falls in one of the ranges (text or parsed)."""
    if isinstance(ranges, str):
        try:
            ranges = _cached_ranges(ranges)
        except ValueError as exc:
            return Decision.deny(Reason.INVALID_RESTRICTION, f"The restriction's address list {exc}")
    try:
        address = _address(client_ip or "")
    except ValueError:
        return Decision.deny(Reason.IP_NOT_ALLOWED, "The client's address is unknown, so an IP restriction cannot "
                                                    "allow it.")
    if any(address in r for r in ranges):
        return Decision.allow("The client's address is allowed.")
    return Decision.deny(Reason.IP_NOT_ALLOWED, f"The client address {address} is not in the allowed ranges.")


# ------------------------------------------------------------------------------------------------
# options and policies


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def evaluate_option(option: Mapping[str, Any], token: str | None, key_id: uuid.UUID | str | None,
                    client_ip: str | None, now: datetime) -> Decision:
    """One ContentKeyAuthorizationPolicyOption (as an entity dict): every restriction must pass.
    An option without restrictions allows nobody (fail closed; the entity rules refuse to store one)."""
    option_id = option.get("Id")
    restrictions = option.get("Restrictions") or []
    if not restrictions:
        return Decision.deny(Reason.INVALID_RESTRICTION, "The option has no restrictions, so it allows nobody.",
                             option_id)
    for restriction in restrictions:
        kind = _int_or_none(restriction.get("KeyRestrictionType"))
        requirements = restriction.get("Requirements")
        if kind == OPEN:
            continue
        if kind == TOKEN_RESTRICTED:
            decision = verify_token(requirements or "", token, key_id, now)
        elif kind == IP_RESTRICTED:
            decision = check_ip(requirements or "", client_ip)
        else:
            decision = Decision.deny(Reason.INVALID_RESTRICTION,
                                     f"Unknown KeyRestrictionType {restriction.get('KeyRestrictionType')!r}.")
        if not decision.allowed:
            return Decision.deny(decision.reason, decision.message, option_id)
    return Decision.allow("The option's restrictions are satisfied.", option_id)


def evaluate_policy(options: Iterable[Mapping[str, Any]], token: str | None, key_id: uuid.UUID | str | None,
                    client_ip: str | None, now: datetime, *, delivery_type: int | None = None) -> Decision:
    """A ContentKeyAuthorizationPolicy: allowed when any of its options allows. With `delivery_type`
    (ContentKeyDeliveryType), only options of that type count. A denial reports the first option's
    reason (options are alternatives; the first is the one the policy's author put first)."""
    considered = [o for o in options if delivery_type is None or _int_or_none(o.get("KeyDeliveryType"))
                  == delivery_type]
    if not considered:
        return Decision.deny(Reason.NO_MATCHING_OPTION, "The key's authorization policy has no option for this "
                                                        "kind of key delivery.")
    first_denial: Decision | None = None
    for option in considered:
        decision = evaluate_option(option, token, key_id, client_ip, now)
        if decision.allowed:
            return decision
        first_denial = first_denial or decision
    assert first_denial is not None
    return first_denial
