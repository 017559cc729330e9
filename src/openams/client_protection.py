"""Client-side content protection helpers: what an AMS client app does before it asks the service to
encrypt an asset, done over the public API (`AmsClient`) so `openams protect` exercises exactly the
path a .NET or REST client takes.

* `create_content_key(client, key_type)`: the client makes the key. It generates 16 random bytes,
  asks the service which certificate protects keys of that type (GetProtectionKeyId, then
  GetProtectionKey), wraps the key to it (RSA-OAEP, SHA-1, as the SDK does), computes the checksum
  (first 8 bytes of AES-ECB(key, key-id GUID in .NET byte order), base64) and POSTs the ContentKey.
  The clear key never leaves this function: nothing returned, printed or logged contains it, so a
  caller cannot leak it by accident. The service keeps the only copy, and hands it out through the
  key delivery service to callers its authorization policy allows.
* `token_restriction_template(...)`: the TokenRestrictionTemplate XML a .NET
  `TokenRestrictionTemplateSerializer.Serialize` writes (elements in DataContract order), with a
  symmetric verification key and the required claims.

This module imports only the standard library, `cryptography` and `openams.client`: it is client
code and must work against any openams (or AMS-compatible) server, never reaching into the server's
modules.
"""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .client import AmsClient, ClientError

COMMON_ENCRYPTION, ENVELOPE_ENCRYPTION, COMMON_ENCRYPTION_CBCS = 0, 4, 6
"""ContentKeyType values of the keys `openams protect` makes."""
KEY_TYPE_NAMES = {COMMON_ENCRYPTION: "CommonEncryption", ENVELOPE_ENCRYPTION: "EnvelopeEncryption",
                  COMMON_ENCRYPTION_CBCS: "CommonEncryptionCbcs"}
CONTENT_KEY_BYTES = 16
"""AES-128: the size of every streaming content key (envelope, cenc and cbcs)."""
KEY_ID_PREFIX = "nb:kid:UUID:"

TEMPLATE_NS = "http://schemas.microsoft.com/Azure/MediaServices/KeyDelivery/TokenRestrictionTemplate/v1"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
CONTENT_KEY_ID_CLAIM = "urn:microsoft:azure:mediaservices:contentkeyidentifier"
"""A required claim of this type with a nil value: the token must name the content key requested."""
TOKEN_KEY_BYTES = 64
"""A generated token signing key: 64 random bytes, as the SDK's `SymmetricVerificationKey()` makes."""
MIN_TOKEN_KEY_BYTES = 16


def _oaep() -> padding.OAEP:
    """RSA-OAEP with SHA-1 and MGF1-SHA-1: what the AMS SDKs use to wrap content keys."""
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def key_guid(key_id: str) -> uuid.UUID:
    """The GUID of `nb:kid:UUID:<guid>` (or of a bare GUID)."""
    text = key_id.strip()
    if text.lower().startswith(KEY_ID_PREFIX.lower()):
        text = text[len(KEY_ID_PREFIX):]
    return uuid.UUID(text)


def key_checksum(clear: bytes, key_id: str) -> str:
    """The ContentKey Checksum: base64 of the first 8 bytes of AES-ECB(clear key, the key id's GUID in
    .NET `Guid.ToByteArray()` order, which is `uuid.bytes_le`). The service recomputes it after
    unwrapping, so a key damaged in transit (or wrapped to the wrong certificate) is refused."""
    encryptor = Cipher(algorithms.AES(clear), modes.ECB()).encryptor()
    block = encryptor.update(key_guid(key_id).bytes_le) + encryptor.finalize()
    return base64.b64encode(block[:8]).decode("ascii")


def wrap_key(certificate: x509.Certificate, clear: bytes) -> str:
    """Base64 RSA-OAEP(certificate's public key, clear key): the EncryptedContentKey property."""
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise ClientError("the service's protection certificate does not carry an RSA key; cannot wrap the key.")
    return base64.b64encode(public.encrypt(clear, _oaep())).decode("ascii")


def content_key_properties(key_type: int, certificate: x509.Certificate, thumbprint: str, clear: bytes,
                           key_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    """The ContentKey a client POSTs for `clear`, wrapped to `certificate` (whose thumbprint the
    service gave as the ProtectionKeyId). Pure: no I/O, so it can be checked in isolation."""
    kid = key_id or f"{KEY_ID_PREFIX}{uuid.uuid4()}"
    return {
        "Id": kid,
        "ContentKeyType": key_type,
        "EncryptedContentKey": wrap_key(certificate, clear),
        "ProtectionKeyId": thumbprint,
        "ProtectionKeyType": 0,  # X509CertificateThumbprint
        "Checksum": key_checksum(clear, kid),
        "Name": name or f"{KEY_TYPE_NAMES.get(key_type, 'ContentKey')} key",
    }


def _function_value(client: AmsClient, path: str, what: str) -> str:
    """The string a service function returns (JSON light: `{"value": "..."}`)."""
    data = client.api("GET", path, what).json()
    value = data.get("value") if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise ClientError(f"{what}: the server's answer has no value.")
    return value


def protection_certificate(client: AmsClient, key_type: int) -> tuple[str, x509.Certificate]:
    """(thumbprint, certificate) the service wants keys of `key_type` wrapped to."""
    thumbprint = _function_value(client, f"GetProtectionKeyId?contentKeyType={key_type}",
                                 "asking for the protection key id (GetProtectionKeyId)")
    der_b64 = _function_value(client, f"GetProtectionKey?ProtectionKeyId='{quote(thumbprint, safe='')}'",
                              "fetching the protection certificate (GetProtectionKey)")
    try:
        certificate = x509.load_der_x509_certificate(base64.b64decode(der_b64, validate=True))
    except (binascii.Error, ValueError):
        raise ClientError("GetProtectionKey returned something that is not a base64 DER certificate.") from None
    return thumbprint, certificate


def create_content_key(client: AmsClient, key_type: int, name: str | None = None) -> dict[str, Any]:
    """Make a content key client-side and create it on the service; returns the ContentKey entity as
    the service stored it. The clear key exists only inside this function (see the module docstring)."""
    if key_type not in KEY_TYPE_NAMES:
        raise ValueError(f"unsupported content key type {key_type}")
    thumbprint, certificate = protection_certificate(client, key_type)
    props = content_key_properties(key_type, certificate, thumbprint, os.urandom(CONTENT_KEY_BYTES), name=name)
    return client.create("ContentKeys", props, "creating the content key")


def key_delivery_url(client: AmsClient, key_id: str, delivery_type: int) -> str:
    """GetKeyDeliveryUrl: where players get this key (or a licence for it), as the service says."""
    r = client.api("POST", f"ContentKeys('{quote(key_id, safe='')}')/GetKeyDeliveryUrl",
                   "asking for the key delivery URL (GetKeyDeliveryUrl)", {"keyDeliveryType": delivery_type})
    value = r.json().get("value")
    if not isinstance(value, str) or not value:
        raise ClientError("GetKeyDeliveryUrl: the server's answer has no URL.")
    return value


# ---- token restriction templates ---------------------------------------------------------------


def new_token_key() -> bytes:
    """A fresh symmetric token signing key (HMAC-SHA256 for JWT HS256 and SWT)."""
    return os.urandom(TOKEN_KEY_BYTES)


def decode_token_key(text: str) -> bytes:
    """A token signing key given as base64 (standard or URL-safe, padding optional); raises
    ValueError saying what is wrong."""
    compact = "".join(text.split())
    padded = compact + "=" * (-len(compact) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_" if ("-" in compact or "_" in compact) else None,
                               validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64") from None
    if len(raw) < MIN_TOKEN_KEY_BYTES:
        raise ValueError(f"is {len(raw)} bytes; use at least {MIN_TOKEN_KEY_BYTES} ({TOKEN_KEY_BYTES} recommended)")
    return raw


@dataclass(frozen=True)
class Claim:
    """A required claim: `value` None means the claim must be present (the key id claim: the key
    requested)."""

    claim_type: str
    value: str | None = None


def token_restriction_template(issuer: str, audience: str, key: bytes, *, token_type: str = "JWT",
                               claims: Sequence[Claim] = (Claim(CONTENT_KEY_ID_CLAIM),)) -> str:
    """The TokenRestrictionTemplate XML for tokens signed with the symmetric `key`, from `issuer` for
    `audience`, carrying `claims` (by default: the content key identifier, so a token opens only the
    key it names). `token_type` is JWT or SWT. The text is what the .NET serializer writes, so SDK
    apps reading the option back deserialize it."""
    if token_type not in ("JWT", "SWT"):
        raise ValueError("token_type must be JWT or SWT")
    claim_xml = "".join(
        f"<TokenClaim><ClaimType>{escape(c.claim_type)}</ClaimType>"
        + ('<ClaimValue i:nil="true" />' if c.value is None else f"<ClaimValue>{escape(c.value)}</ClaimValue>")
        + "</TokenClaim>" for c in claims)
    return (f'<TokenRestrictionTemplate xmlns:i="{XSI_NS}" xmlns="{TEMPLATE_NS}">'
            "<AlternateVerificationKeys />"
            f"<Audience>{escape(audience)}</Audience>"
            f"<Issuer>{escape(issuer)}</Issuer>"
            '<PrimaryVerificationKey i:type="SymmetricVerificationKey">'
            f"<KeyValue>{base64.b64encode(key).decode('ascii')}</KeyValue></PrimaryVerificationKey>"
            f"<RequiredClaims>{claim_xml}</RequiredClaims>"
            f"<TokenType>{token_type}</TokenType>"
            "</TokenRestrictionTemplate>")
