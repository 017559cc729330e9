"""Protection certificates: what clients encrypt content keys to, and the three service functions
that hand them out and take keys back out (GetProtectionKeyId, GetProtectionKey, RebindContentKey).

AMS kept one X.509 certificate per ContentKeyType; a client asks for its thumbprint
(`GetProtectionKeyId?contentKeyType=N`), fetches the certificate (`GetProtectionKey`), wraps a fresh
content key to it with RSA-OAEP (SHA-1, MGF1-SHA-1, no label — .NET's RSAOAEPKeyExchangeFormatter)
and posts the ciphertext as `EncryptedContentKey`. The service alone can unwrap it.

Here each account has its own certificates (one tenant never unwraps another's keys), made on first
use — self-signed RSA-2048 — and kept for good: a key wrapped to a certificate stays readable as long
as the key exists. The private key is sealed with the server key (`auth.secrets.SecretBox`) before
it reaches the database, so a copied database reveals no content key.

Creating a certificate is the only write a GET here does. It runs in a short transaction of its own
(on SQLite that takes the write lock up front, so two first callers cannot collide or dead-lock a
reading transaction); two processes racing agree on whichever certificate was stored first.

Nothing here logs key material: errors name certificates by thumbprint and keys by id only.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from ..auth.accounts import Account
from ..auth.secrets import SecretBox
from ..config import Settings
from ..db.store import Store
from ..db.tables import protection_certificates
from ..errors import BadRequest, NotFound
from ..model.enums import CONTENT_KEY_TYPE
from .base import Ctx

RSA_BITS = 2048
CERTIFICATE_LIFETIME = timedelta(days=365 * 30)
"""Certificates are kept for good (keys wrapped to them must stay readable); clients only take the
public key out of them, so a long validity costs nothing and spares a rotation story."""
TYPE_NAMES: dict[int, str] = {v: k for k, v in CONTENT_KEY_TYPE.items()}

Db = Engine | Connection | Store


def _oaep() -> padding.OAEP:
    """RSA-OAEP as .NET's RSAOAEPKeyExchangeFormatter does it (SHA-1, MGF1-SHA-1, no label)."""
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


class UnwrapError(ValueError):
    """Ciphertext that our private key cannot open (wrapped to another certificate, or not RSA-OAEP)."""


@dataclass(frozen=True)
class ProtectionCertificate:
    account_id: str
    content_key_type: int
    thumbprint: str
    """SHA-1 of the DER certificate, 40 upper-case hex digits (as .NET prints a thumbprint)."""
    der: bytes = field(repr=False)
    sealed_private_key: str = field(repr=False)
    """PKCS#8 DER of the private key, base64, sealed with the server key. Never logged."""

    @property
    def base64(self) -> str:
        return base64.b64encode(self.der).decode("ascii")

    def unwrap(self, ciphertext: bytes, box: SecretBox) -> bytes:
        """Undo a client's RSA-OAEP wrap to this certificate."""
        try:
            return _private_key(self.sealed_private_key, box).decrypt(ciphertext, _oaep())
        except ValueError:
            raise UnwrapError(f"cannot be decrypted with protection certificate {self.thumbprint}") from None


@lru_cache(maxsize=256)
def _private_key(sealed: str, box: SecretBox) -> rsa.RSAPrivateKey:
    """The loaded key behind a sealed column value. Cached: opening the seal and parsing PKCS#8 on
    every key delivery would cost more than the RSA decryption itself."""
    der = base64.b64decode(box.open(sealed))
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@lru_cache(maxsize=8)
def _box(server_key: str, data_dir: Path) -> SecretBox:
    return SecretBox.for_settings(server_key, data_dir)


def box_for(settings: Settings) -> SecretBox:
    """The secret box of these settings (the same one `Runtime.box` builds), built once."""
    return _box(settings.server_key, settings.data_dir.resolve())


def account_id_of(account: Account | str) -> str:
    return account if isinstance(account, str) else account.id


@contextmanager
def connection(db: Db) -> Iterator[Connection]:
    """A connection for `db`: a Store's or a Connection as they are (inside the caller's
    transaction), or a short read transaction on an Engine."""
    if isinstance(db, Store):
        yield db.conn
    elif isinstance(db, Connection):
        yield db
    else:
        with db.connect() as conn, conn.begin():
            yield conn


# ------------------------------------------------------------------------------------------------
# certificates


def _from_row(row: Any) -> ProtectionCertificate:
    return ProtectionCertificate(row.account_id, row.content_key_type, row.thumbprint,
                                 base64.b64decode(row.certificate), row.private_key)


def _by_type(conn: Connection, account_id: str, content_key_type: int) -> ProtectionCertificate | None:
    t = protection_certificates
    row = conn.execute(select(t).where(t.c.account_id == account_id,
                                       t.c.content_key_type == content_key_type)).first()
    return _from_row(row) if row else None


def find_certificate(db: Db, account: Account | str, thumbprint: str) -> ProtectionCertificate | None:
    """The account's certificate with this thumbprint (any case, spaces ignored as in the Windows
    certificate dialog), or None — also for another account's thumbprint."""
    wanted = re.sub(r"\s+", "", thumbprint or "").upper()
    if not re.fullmatch(r"[0-9A-F]{40}", wanted):
        return None
    t = protection_certificates
    with connection(db) as conn:
        row = conn.execute(select(t).where(t.c.account_id == account_id_of(account),
                                           t.c.thumbprint == wanted)).first()
    return _from_row(row) if row else None


def _generate(account_id: str, content_key_type: int, box: SecretBox, now: datetime) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"openams {TYPE_NAMES[content_key_type]} protection key"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "openams"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + CERTIFICATE_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=True,
                                     data_encipherment=True, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    return {
        "account_id": account_id, "content_key_type": content_key_type,
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper(),
        "certificate": base64.b64encode(der).decode("ascii"),
        "private_key": box.seal(base64.b64encode(pkcs8).decode("ascii")),
        "created": now,
    }


def _insert_if_absent(conn: Connection, row: dict[str, Any]) -> None:
    """Insert unless the (account, type) certificate exists already: the first one stored wins."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(protection_certificates).values(row).on_conflict_do_nothing(
        index_elements=["account_id", "content_key_type"])
    conn.execute(stmt)


def certificate_for_type(db: Db, account: Account | str, content_key_type: int,
                         settings: Settings) -> ProtectionCertificate:
    """The account's certificate for keys of this type, made (and stored) on first use."""
    if content_key_type not in TYPE_NAMES:
        raise BadRequest(f"contentKeyType must be one of {_type_list()}, not {content_key_type}.")
    account_id = account_id_of(account)
    with connection(db) as conn:
        found = _by_type(conn, account_id, content_key_type)
        if found is not None:
            return found
        row = _generate(account_id, content_key_type, box_for(settings), datetime.now(UTC))
        if conn.info.get("write"):  # already a write transaction: it holds the lock, use it
            _insert_if_absent(conn, row)
            made = _by_type(conn, account_id, content_key_type)
        else:
            with conn.engine.connect() as own:
                own.info["write"] = True
                with own.begin():
                    _insert_if_absent(own, row)
                    made = _by_type(own, account_id, content_key_type)
    assert made is not None
    return made


def _type_list() -> str:
    return ", ".join(f"{v} ({k})" for k, v in CONTENT_KEY_TYPE.items())


def decrypt(db: Db, account: Account | str, thumbprint: str, ciphertext: bytes, settings: Settings) -> bytes:
    """Unwrap a secret a client RSA-OAEP-encrypted to one of the account's protection certificates.

    Raises `UnwrapError` when the thumbprint is not the account's or the ciphertext does not open.
    Content keys go through `content_keys.clear_key`; this is the primitive under it (and for other
    certificate-wrapped secrets, such as notification endpoint credentials)."""
    cert = find_certificate(db, account, thumbprint)
    if cert is None:
        raise UnwrapError(f"'{thumbprint}' is not a protection certificate of this account")
    return cert.unwrap(ciphertext, box_for(settings))


# ------------------------------------------------------------------------------------------------
# a client's certificate (RebindContentKey)


def load_client_certificate(text: str) -> x509.Certificate:
    """A certificate as clients send it in a query string: base64 DER (the SDK's form), possibly
    with `+` turned into spaces by a form decoder, still percent-encoded, or wrapped in PEM."""
    # not strip(): a space at either end may be a `+` a form decoder turned into one
    s = text.strip("\r\n\t")
    if "%" in s:
        s = unquote(s)
    try:
        if s.strip().startswith("-----BEGIN"):
            return x509.load_pem_x509_certificate(s.strip().encode("ascii"))
        s = re.sub(r"[\r\n\t]", "", s).replace(" ", "+")
        der = base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
        return x509.load_der_x509_certificate(der)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise BadRequest("x509Certificate is not an X.509 certificate: send the DER certificate base64-encoded "
                         "(and URL-encoded), or '' for the clear key.") from None


def wrap_for_certificate(cert: x509.Certificate, clear: bytes) -> bytes:
    """RSA-OAEP (SHA-1) `clear` to the certificate's public key, as a client would unwrap it."""
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise BadRequest("x509Certificate must carry an RSA public key (content keys are wrapped with RSA-OAEP).")
    try:
        return public.encrypt(clear, _oaep())
    except ValueError:
        raise BadRequest("The key is too long to wrap with this certificate's RSA key.") from None


# ------------------------------------------------------------------------------------------------
# service functions (GET /api/<Name>?…)


def _required(params: dict[str, Any], name: str, example: str) -> Any:
    value = params.get(name)
    if value is None:
        raise BadRequest(f"The parameter {name} is required, for example {name}={example}.")
    return value


def get_protection_key_id(ctx: Ctx, params: dict[str, Any]) -> str:
    """`GetProtectionKeyId?contentKeyType=N` → the thumbprint of the certificate for that key type."""
    key_type = _required(params, "contentKeyType", "1")
    return certificate_for_type(ctx.store, ctx.account, key_type, ctx.settings).thumbprint


def get_protection_key(ctx: Ctx, params: dict[str, Any]) -> str:
    """`GetProtectionKey?ProtectionKeyId='<thumbprint>'` → the certificate, base64 DER."""
    thumbprint = _required(params, "protectionKeyId", "'<thumbprint from GetProtectionKeyId>'")
    cert = find_certificate(ctx.store, ctx.account, str(thumbprint))
    if cert is None:
        raise NotFound(f"No protection key with id '{thumbprint}' exists; get the id with "
                       "GetProtectionKeyId?contentKeyType=<ContentKeyType>.")
    return cert.base64


def rebind_content_key(ctx: Ctx, params: dict[str, Any]) -> str:
    """`RebindContentKey?id='<kid>'&x509Certificate='<base64 DER>'` → the content key wrapped to that
    certificate (RSA-OAEP, base64); with `x509Certificate=''` the clear key, base64 (the SDK's
    GetClearKeyValue)."""
    from .content_keys import clear_key

    key_id = _required(params, "id", "'nb:kid:UUID:<guid>'")
    certificate = _required(params, "x509Certificate", "'' (the clear key) or '<base64 DER certificate>'")
    target = load_client_certificate(certificate) if str(certificate).strip() else None
    clear = clear_key(ctx.store, ctx.account, str(key_id), settings=ctx.settings)
    out = clear if target is None else wrap_for_certificate(target, clear)
    return base64.b64encode(out).decode("ascii")
