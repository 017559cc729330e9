"""Protection certificates and the content-key unwrap below the HTTP surface: certificates are kept
across restarts, their private keys are never stored in the clear, two first callers agree on one
certificate, `clear_key` works from any handle on the database and only within the account, and the
checksum is the one clients compute."""

from __future__ import annotations

import base64
import threading
import uuid
from typing import Any

import pytest
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from starlette.testclient import TestClient

from openams.auth.secrets import SecretBox
from openams.db.store import Store
from openams.db.tables import protection_certificates
from openams.entities import content_keys, protection
from openams.errors import BadRequest, NotFound
from openams.model import MODEL
from openams.rest.app import RestApp
from openams.runtime import Runtime
from tests.conftest import _new_account
from tests.support.client import ApiClient
from tests.support.protection import key_checksum, make_key, protection_key_id


def _rows(runtime: Runtime, account_id: str) -> list[Any]:
    t = protection_certificates
    with runtime.engine.connect() as conn:
        return list(conn.execute(select(t).where(t.c.account_id == account_id)))


def test_certificate_is_made_once_and_survives_a_restart(runtime: Runtime) -> None:
    account = _new_account(runtime)
    first = protection.certificate_for_type(runtime.engine, account, 4, runtime.settings)
    assert protection.certificate_for_type(runtime.engine, account.id, 4, runtime.settings) == first
    # a new process on the same database and server key
    restarted = Runtime(runtime.settings)
    try:
        again = protection.certificate_for_type(restarted.engine, account, 4, restarted.settings)
        assert again.thumbprint == first.thumbprint and again.der == first.der
        http = TestClient(RestApp(restarted), base_url="http://openams.test")
        assert protection_key_id(ApiClient.for_account(http, account), 4) == first.thumbprint
    finally:
        restarted.engine.dispose()
    assert len(_rows(runtime, account.id)) == 1


def test_the_certificate_is_what_clients_expect(runtime: Runtime) -> None:
    cert_row = protection.certificate_for_type(runtime.engine, _new_account(runtime), 1, runtime.settings)
    cert = x509.load_der_x509_certificate(cert_row.der)
    assert cert.fingerprint(hashes.SHA1()).hex().upper() == cert_row.thumbprint
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    assert cert.issuer == cert.subject
    assert cert.not_valid_after_utc.year - cert.not_valid_before_utc.year >= 20
    assert "StorageEncryption" in cert.subject.rfc4514_string()
    assert base64.b64decode(cert_row.base64) == cert_row.der
    assert "sealed" not in repr(cert_row) and cert_row.sealed_private_key not in repr(cert_row)


def test_private_keys_are_never_stored_in_the_clear(runtime: Runtime) -> None:
    account = _new_account(runtime)
    cert = protection.certificate_for_type(runtime.engine, account, 0, runtime.settings)
    (row,) = _rows(runtime, account.id)
    stored = row.private_key
    assert "PRIVATE KEY" not in stored and "BEGIN" not in stored
    assert stored.startswith("gAAAAA")  # a Fernet token
    with pytest.raises(ValueError):  # not PKCS#8 DER either, raw or base64
        serialization.load_der_private_key(base64.b64decode(stored + "=" * (-len(stored) % 4),
                                                            altchars=b"-_"), password=None)
    # the server key opens it, and it is the certificate's key
    opened = SecretBox.for_settings(runtime.settings.server_key, runtime.settings.data_dir).open(stored)
    key = serialization.load_der_private_key(base64.b64decode(opened), password=None)
    public = x509.load_der_x509_certificate(cert.der).public_key()
    assert isinstance(key, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey)
    assert key.public_key().public_numbers() == public.public_numbers()
    # another server key cannot
    with pytest.raises(ValueError):
        SecretBox(Fernet.generate_key()).open(stored)


def test_two_first_callers_agree_on_one_certificate(runtime: Runtime) -> None:
    account = _new_account(runtime)
    got: list[str] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            got.append(protection.certificate_for_type(runtime.engine, account, 6, runtime.settings).thumbprint)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(got)) == 1 and len(_rows(runtime, account.id)) == 1


def test_certificates_belong_to_their_account(runtime: Runtime) -> None:
    a, b = _new_account(runtime), _new_account(runtime)
    cert_a = protection.certificate_for_type(runtime.engine, a, 4, runtime.settings)
    cert_b = protection.certificate_for_type(runtime.engine, b, 4, runtime.settings)
    assert cert_a.thumbprint != cert_b.thumbprint
    assert protection.find_certificate(runtime.engine, b, cert_a.thumbprint) is None
    assert protection.find_certificate(runtime.engine, a, cert_a.thumbprint.lower()) == cert_a
    with pytest.raises(protection.UnwrapError):
        protection.decrypt(runtime.engine, b, cert_a.thumbprint, b"\0" * 256, runtime.settings)
    with pytest.raises(BadRequest):
        protection.certificate_for_type(runtime.engine, a, 5, runtime.settings)


def test_clear_key_from_any_handle(runtime: Runtime, api: ApiClient, account: Any,
                                   other_account: Any) -> None:
    key, clear = make_key(api, 4)
    guid = key["Id"].rsplit(":", 1)[-1]
    settings = runtime.settings
    assert content_keys.clear_key(runtime.engine, account, key["Id"], settings=settings) == clear
    with runtime.engine.connect() as conn, conn.begin():
        assert content_keys.clear_key(conn, account.id, guid.upper(), settings=settings) == clear
        store = Store(conn, account.id, MODEL)
        assert content_keys.clear_key(store, account, f"nb:kid:UUID:{guid}", settings=settings) == clear
        with pytest.raises(NotFound):
            content_keys.clear_key(conn, other_account, key["Id"], settings=settings)
        with pytest.raises(NotFound):
            content_keys.clear_key(conn, account, f"nb:kid:UUID:{uuid.uuid4()}", settings=settings)
        # the key delivery service finds the account by the KID alone
        found = content_keys.find_content_key_in_any_account(conn, guid)
        assert found is not None and found[0] == account.id and found[1]["Id"] == key["Id"]
        assert content_keys.find_content_key_in_any_account(conn, str(uuid.uuid4())) is None
        assert content_keys.find_content_key_in_any_account(conn, "not a guid") is None


def test_checksum_matches_the_client_computation() -> None:
    for size in (16, 32):
        clear = bytes(range(size))
        key_id = "nb:kid:UUID:00112233-4455-6677-8899-aabbccddeeff"
        assert content_keys.checksum(clear, key_id) == key_checksum(clear, key_id)
        assert content_keys.checksum(clear, key_id.upper().replace("NB:KID:UUID:", "nb:kid:UUID:")) \
            == key_checksum(clear, key_id)


def test_a_wrapped_key_round_trips_through_our_certificate(runtime: Runtime) -> None:
    account = _new_account(runtime)
    cert = protection.certificate_for_type(runtime.engine, account, 4, runtime.settings)
    clear = bytes(16)
    wrapped = protection.wrap_for_certificate(x509.load_der_x509_certificate(cert.der), clear)
    assert protection.decrypt(runtime.engine, account, cert.thumbprint, wrapped, runtime.settings) == clear


@pytest.mark.parametrize("text", ["", "%%%", "-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----",
                                  base64.b64encode(b"hello").decode()])
def test_client_certificates_that_do_not_parse_are_400(text: str) -> None:
    with pytest.raises(BadRequest):
        protection.load_client_certificate(text)
