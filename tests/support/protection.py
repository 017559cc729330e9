"""Content keys made the way AMS clients make them (the .NET SDK and the REST samples), written from
the client's side only — nothing here imports openams — so tests check the service against an
independent implementation of the wrapping and the checksum."""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID
from lxml import etree

from tests.support.client import CONTENT_TYPE, NS, ApiClient

JSON = {"Content-Type": "application/json"}
KEY_SIZES = {0: 16, 1: 32, 2: 32, 4: 16, 6: 16, 7: 16}


def oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def guid_bytes_dotnet(guid: str) -> bytes:
    """`Guid.ToByteArray()`: Data1 (4 bytes), Data2 and Data3 (2 bytes each) little-endian, then the
    last 8 bytes as written — spelled out byte by byte rather than with uuid's `bytes_le`."""
    raw = bytes.fromhex(guid.replace("-", ""))
    return raw[3::-1] + raw[5:3:-1] + raw[7:5:-1] + raw[8:]


def key_checksum(clear: bytes, key_id: str) -> str:
    guid = key_id.rsplit(":", 1)[-1]
    enc = Cipher(algorithms.AES(clear), modes.ECB()).encryptor()
    return base64.b64encode((enc.update(guid_bytes_dotnet(guid)) + enc.finalize())[:8]).decode()


def fn_value(api: ApiClient, r: Any, name: str) -> str:
    """The string a service function returned, in any dialect."""
    assert r.status_code == 200, (r.status_code, r.text)
    if api.dialect == "light":
        data = r.json()
        assert data["odata.metadata"].endswith("/$metadata#Edm.String"), data
        return str(data["value"])
    if api.dialect == "verbose":
        return str(r.json()["d"][name])
    root = etree.fromstring(r.content)
    assert etree.QName(root).localname == name and root.nsmap.get("d") == NS["d"]
    return root.text or ""


def protection_key_id(api: ApiClient, key_type: int) -> str:
    return fn_value(api, api.get(f"GetProtectionKeyId?contentKeyType={key_type}"), "GetProtectionKeyId")


def protection_certificate(api: ApiClient, thumbprint: str, param: str = "ProtectionKeyId") -> x509.Certificate:
    r = api.get(f"GetProtectionKey?{param}='{quote(thumbprint, safe='')}'")
    return x509.load_der_x509_certificate(base64.b64decode(fn_value(api, r, "GetProtectionKey")))


def wrap(cert: x509.Certificate, clear: bytes) -> str:
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    return base64.b64encode(public.encrypt(clear, oaep())).decode()


def key_props(api: ApiClient, key_type: int = 4, clear: bytes | None = None, key_id: str | None = None,
              **overrides: Any) -> tuple[dict[str, Any], bytes]:
    """(ContentKey properties, clear key) as a client builds them: fresh key, the service's
    certificate for the type, RSA-OAEP wrap, checksum."""
    clear = os.urandom(KEY_SIZES.get(key_type, 16)) if clear is None else clear
    key_id = key_id or f"nb:kid:UUID:{uuid.uuid4()}"
    thumbprint = protection_key_id(api, key_type)
    cert = protection_certificate(api, thumbprint)
    props: dict[str, Any] = {
        "Id": key_id, "ContentKeyType": key_type, "EncryptedContentKey": wrap(cert, clear),
        "ProtectionKeyId": thumbprint, "ProtectionKeyType": 0, "Name": f"key-{key_type}",
    }
    if key_type != 8:  # (a key no AES takes cannot have a checksum: any value does, the length is refused)
        props["Checksum"] = key_checksum(clear, key_id) if len(clear) in (16, 24, 32) else "AAAAAAAAAAA="
    props.update(overrides)
    return props, clear


def post_key(api: ApiClient, props: dict[str, Any]) -> Any:
    body = api.encode("ContentKey", props) if api.dialect != "light" else json.dumps(props).encode()
    return api.request("POST", "ContentKeys", body, **{"Content-Type": CONTENT_TYPE[api.dialect]})


def make_key(api: ApiClient, key_type: int = 4, **kw: Any) -> tuple[dict[str, Any], bytes]:
    """Create a content key through the API; (entity as returned, clear key)."""
    props, clear = key_props(api, key_type, **kw)
    r = post_key(api, props)
    assert r.status_code == 201, (r.status_code, r.text)
    return api.entity(r), clear


def self_signed(common_name: str = "client") -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A certificate of the client's own (RebindContentKey targets, "another certificate")."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert, key


def der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def post_entity(api: ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a JSON light body; the created entity (201) or {} for a link (204)."""
    r = api.request("POST", path, json.dumps(body).encode(), **JSON)
    assert r.status_code in (201, 204), (path, r.status_code, r.text)
    return r.json() if r.status_code == 201 else {}


def _q(value: str) -> str:
    return quote(value, safe="")


def link_to_asset(api: ApiClient, api_base: str, asset_id: str, nav: str, set_name: str, target_id: str) -> None:
    """`POST Assets('…')/$links/<nav>` to the entity `<set_name>('<target_id>')`."""
    post_entity(api, f"Assets('{_q(asset_id)}')/$links/{nav}", {"uri": f"{api_base}/api/{set_name}('{_q(target_id)}')"})


def authorize_key(api: ApiClient, api_base: str, key_id: str, label: str, *, delivery: int,
                  restrictions: list[dict[str, Any]]) -> None:
    """An authorization policy with one option (`delivery`, `restrictions`), set as the key's
    AuthorizationPolicyId with MERGE, as the AMS samples do."""
    option = post_entity(api, "ContentKeyAuthorizationPolicyOptions", {
        "Name": label, "KeyDeliveryType": delivery, "Restrictions": restrictions,
        "KeyDeliveryConfiguration": "{}" if delivery == 3 else None})
    policy = post_entity(api, "ContentKeyAuthorizationPolicies", {"Name": label})
    post_entity(api, f"ContentKeyAuthorizationPolicies('{_q(policy['Id'])}')/$links/Options",
                {"uri": f"{api_base}/api/ContentKeyAuthorizationPolicyOptions('{_q(option['Id'])}')"})
    r = api.request("MERGE", f"ContentKeys('{_q(key_id)}')",
                    json.dumps({"AuthorizationPolicyId": policy["Id"]}).encode(), **JSON)
    assert r.status_code == 204, r.text


def link_delivery_policy(api: ApiClient, api_base: str, asset_id: str, label: str, *, policy_type: int,
                         protocols: int, configuration: dict[int, str] | None = None) -> None:
    """An AssetDeliveryPolicy (with its configuration dictionary) linked to the asset."""
    body: dict[str, Any] = {"Name": label, "AssetDeliveryPolicyType": policy_type, "AssetDeliveryProtocol": protocols}
    if configuration:
        # the SDK serializes the dictionary as a JSON list of {Key, Value} pairs
        body["AssetDeliveryConfiguration"] = json.dumps([{"Key": k, "Value": v} for k, v in configuration.items()])
    policy = post_entity(api, "AssetDeliveryPolicies", body)
    link_to_asset(api, api_base, asset_id, "DeliveryPolicies", "AssetDeliveryPolicies", policy["Id"])


def protect_asset(api: ApiClient, api_base: str, asset_id: str, label: str, *, key_type: int, delivery: int,
                  restrictions: list[dict[str, Any]], policy_type: int, protocols: int,
                  configuration: dict[int, str] | None = None, clear: bytes | None = None) -> tuple[str, bytes]:
    """The whole client-side setup of a protected asset, in the order the AMS samples do it: a
    content key linked to the asset, an authorization policy with one option, the key's
    AuthorizationPolicyId, an AssetDeliveryPolicy (with its configuration dictionary) linked to
    the asset. Returns (key GUID, clear key); the streaming locator is the caller's. `clear` fixes
    the key's value (random by default)."""
    key, clear = make_key(api, key_type, clear=clear)
    link_to_asset(api, api_base, asset_id, "ContentKeys", "ContentKeys", key["Id"])
    authorize_key(api, api_base, key["Id"], label, delivery=delivery, restrictions=restrictions)
    link_delivery_policy(api, api_base, asset_id, label, policy_type=policy_type, protocols=protocols,
                         configuration=configuration)
    return key["Id"].rsplit(":", 1)[1], clear
