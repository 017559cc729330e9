"""ContentKeys: the AES keys (and FairPlay secrets) that protect content, as clients hand them over —
wrapped to one of the account's protection certificates (see `protection`).

Create (`POST ContentKeys`): the client picks the id `nb:kid:UUID:<guid>` (the service makes one when
it is omitted) and sends `EncryptedContentKey` = base64 RSA-OAEP(our certificate, clear key),
`ProtectionKeyId` = that certificate's thumbprint, and `Checksum`. The service checks everything it
can before storing: the certificate is the account's certificate for the key's type; the ciphertext
opens with its private key; the clear key has the length of its type; the checksum — base64 of the
first 8 bytes of AES-ECB(clear key, key-id GUID in .NET `Guid.ToByteArray()` order) — matches (when
it is omitted the service computes it; FairPlayPfxPassword keys have none). The ciphertext is
stored as sent: it already is the key encrypted at rest (under a private key that is itself sealed
with the server key), and clients read it back unchanged.

Key ids are unique across accounts: the key delivery URL (`…/keydelivery/?KID=<guid>`) names no
account, so the delivery service finds the key by its GUID alone (`find_content_key_in_any_account`).
A client-chosen id another account uses is refused with 409, without saying whose it is.

`clear_key` is the one place a stored content key is unwrapped: RebindContentKey, the key delivery
service and the origin all go through it. Nothing here logs key material.

Asset links (`Assets('id')/$links/ContentKeys`), per the asset reference page: a StorageEncryption
key only on a StorageEncrypted asset (Options 1), and at most one per asset (409); a statically
protected asset (Options 2 CommonEncryptionProtected, 4 EnvelopeEncryptionProtected) only takes the
key type of its protection; the same key twice is 409. Removing an asset's link to a key deletes the
key when no other asset links it (as AMS documents); deleting a key removes its links.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy import Connection, select

from ..auth.accounts import Account
from ..config import Settings
from ..db.store import Store
from ..errors import BadRequest, Conflict, InternalError, NotFound
from ..model import MODEL
from ..model.enums import ASSET_CREATION_OPTIONS, CONTENT_KEY_DELIVERY_TYPE, CONTENT_KEY_TYPE
from ..odata.edm import FunctionImport
from ..odata.payload import EntityPayload
from . import protection
from .base import Ctx, Rules, guid_of

PREFIX = "nb:kid:UUID:"
LINK = "asset_contentkeys"

COMMON, STORAGE, CONFIGURATION, URL, ENVELOPE, CBCS, FAIRPLAY_ASK, FAIRPLAY_PFX_PASSWORD = (
    CONTENT_KEY_TYPE[n] for n in ("CommonEncryption", "StorageEncryption", "ConfigurationEncryption",
                                  "UrlEncryption", "EnvelopeEncryption", "CommonEncryptionCbcs", "FairPlayASk",
                                  "FairPlayPfxPassword"))
TYPE_NAMES: dict[int, str] = {v: k for k, v in CONTENT_KEY_TYPE.items()}

KEY_LENGTHS: dict[int, tuple[int, ...]] = {
    COMMON: (16,), ENVELOPE: (16,), CBCS: (16,), FAIRPLAY_ASK: (16,),
    STORAGE: (32,), CONFIGURATION: (32,),
    # UrlEncryption is SDK-only and undocumented: any AES key size the checksum can be made with
    URL: (16, 32),
}
"""Clear key sizes in bytes. FairPlayPfxPassword keys are password bytes: any length, no checksum."""

PROTECTION_KEY_TYPES = (0, 1)
"""0 = X509CertificateThumbprint is the only defined value; a documentation sample sends 1."""

# Asset options whose files are statically protected take only the key of that protection.
STATIC_ASSET_KEY = {ASSET_CREATION_OPTIONS["CommonEncryptionProtected"]: COMMON,
                    ASSET_CREATION_OPTIONS["EnvelopeEncryptionProtected"]: ENVELOPE}
STORAGE_ENCRYPTED = ASSET_CREATION_OPTIONS["StorageEncrypted"]
OPTION_NAMES: dict[int, str] = {v: k for k, v in ASSET_CREATION_OPTIONS.items()}

# GetKeyDeliveryUrl: delivery type → (key types it serves, path under /keydelivery/ with {kid})
DELIVERY: dict[int, tuple[frozenset[int], str]] = {
    CONTENT_KEY_DELIVERY_TYPE["PlayReadyLicense"]: (frozenset({COMMON}), "PlayReady/"),
    CONTENT_KEY_DELIVERY_TYPE["BaselineHttp"]: (frozenset({ENVELOPE}), "?KID={kid}"),
    CONTENT_KEY_DELIVERY_TYPE["Widevine"]: (frozenset({COMMON}), "Widevine/?KID={kid}"),
    CONTENT_KEY_DELIVERY_TYPE["FairPlay"]: (frozenset({CBCS}), "FairPlay/?KID={kid}"),
}
DELIVERY_NAMES: dict[int, str] = {v: k for k, v in CONTENT_KEY_DELIVERY_TYPE.items()}

MATERIAL = ("EncryptedContentKey", "ProtectionKeyId", "ProtectionKeyType", "Checksum")
"""What makes up the key itself: fixed once created (a new key is a new ContentKey)."""


def _es() -> Any:
    es = MODEL.entity_set("ContentKeys")
    assert es is not None
    return es


# ------------------------------------------------------------------------------------------------
# the key material


def checksum(clear: bytes, key_id: str) -> str:
    """The PlayReady AES key checksum clients send: AES-ECB with the clear key over the key id's
    GUID in .NET `Guid.ToByteArray()` order (first three fields little-endian), first 8 bytes, base64."""
    block = uuid.UUID(guid_of(key_id)).bytes_le
    encryptor = Cipher(algorithms.AES(clear), modes.ECB()).encryptor()
    return base64.b64encode((encryptor.update(block) + encryptor.finalize())[:8]).decode("ascii")


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"ContentKey.{what} is not base64.") from None


def _type_name(key_type: int) -> str:
    return f"{TYPE_NAMES.get(key_type, 'unknown')} ({key_type})"


def _check_length(key_type: int, clear: bytes) -> None:
    lengths = KEY_LENGTHS.get(key_type)
    if lengths is not None and len(clear) not in lengths:
        wanted = " or ".join(str(n) for n in lengths)
        raise BadRequest(f"A {_type_name(key_type)} content key must be {wanted} bytes long; the decrypted "
                         f"EncryptedContentKey is {len(clear)} bytes.")


def _check_checksum(values: dict[str, Any], clear: bytes) -> None:
    key_type = values["ContentKeyType"]
    if key_type == FAIRPLAY_PFX_PASSWORD:
        return  # a password, not an AES key: the SDK sends no checksum
    expected = checksum(clear, values["Id"])
    given = values.get("Checksum")
    if given in (None, ""):
        values["Checksum"] = expected  # the client could not know a service-made id: give it the checksum
        return
    if _b64(str(given), "Checksum") != base64.b64decode(expected):
        raise BadRequest(f"ContentKey.Checksum does not match the key: the checksum is the first 8 bytes of "
                         f"AES-ECB(clear key, key id {guid_of(values['Id'])} in Guid.ToByteArray() order), "
                         "base64. Check the key id (an id left to the service cannot be in a checksum made "
                         "before) and the key bytes.")


def _unwrap_new_key(ctx: Ctx, values: dict[str, Any]) -> bytes:
    key_type = values["ContentKeyType"]
    wrapped = values.get("EncryptedContentKey")
    if wrapped in (None, ""):
        raise BadRequest("ContentKey.EncryptedContentKey is required: the key encrypted (RSA-OAEP) with the "
                         "certificate from GetProtectionKey, base64.", code="MissingProperty")
    thumbprint = values.get("ProtectionKeyId")
    if thumbprint in (None, ""):
        raise BadRequest(f"ContentKey.ProtectionKeyId is required: the thumbprint that "
                         f"GetProtectionKeyId?contentKeyType={key_type} returns.", code="MissingProperty")
    cert = protection.find_certificate(ctx.store, ctx.account, str(thumbprint))
    if cert is None:
        raise BadRequest(f"ContentKey.ProtectionKeyId '{thumbprint}' is not a protection key of this account; "
                         f"get it with GetProtectionKeyId?contentKeyType={key_type}.")
    if cert.content_key_type != key_type:
        raise BadRequest(f"ContentKey.ProtectionKeyId '{thumbprint}' is the protection key for "
                         f"{_type_name(cert.content_key_type)} keys, not {_type_name(key_type)} keys; get the "
                         f"right one with GetProtectionKeyId?contentKeyType={key_type}.")
    ciphertext = _b64(str(wrapped), "EncryptedContentKey")
    try:
        return cert.unwrap(ciphertext, protection.box_for(ctx.settings))
    except protection.UnwrapError:
        raise BadRequest(f"ContentKey.EncryptedContentKey cannot be decrypted with protection key "
                         f"{cert.thumbprint}: encrypt the clear key with RSA-OAEP (SHA-1) using the public key "
                         f"of the certificate that GetProtectionKey?ProtectionKeyId='{cert.thumbprint}' returns, "
                         "then base64 it.") from None


# ------------------------------------------------------------------------------------------------
# lookups and the one unwrap


def _candidates(key_id: str) -> list[str]:
    """The ids a key may be stored under: as given, and with its GUID lower- or upper-case."""
    raw = key_id.strip()
    guid = guid_of(raw) if raw.lower().startswith(PREFIX.lower()) else raw
    out = {raw if raw.lower().startswith(PREFIX.lower()) else PREFIX + raw, PREFIX + guid}
    try:
        canonical = str(uuid.UUID(guid))
    except ValueError:
        return sorted(out)
    out |= {PREFIX + canonical, PREFIX + canonical.upper()}
    return sorted(out)


def find_content_key(store: Store, key_id: str) -> dict[str, Any] | None:
    """The account's content key with this id (`nb:kid:UUID:<guid>` or the bare GUID, any case)."""
    es = _es()
    rows = store.query(es, [store.key_column(es).in_(_candidates(key_id))], top=1)
    return rows[0] if rows else None


def find_content_key_in_any_account(conn: Connection, key_id: str) -> tuple[str, dict[str, Any]] | None:
    """(account id, content key) of the key with this id or GUID, whichever account owns it.

    Deliberately unscoped — the one place that reads content keys across accounts: the key delivery
    service resolves `?KID=<guid>` before it knows an account, and creating a key checks that its id
    is free everywhere (ids are unique across accounts, see db.tables.GLOBAL_KEYS)."""
    es = _es()
    t = Store.table(es)
    row = conn.execute(select(t).where(t.c.Id.in_(_candidates(key_id))).limit(1)).first()
    if row is None:
        return None
    return row.account_id, Store(conn, row.account_id, MODEL).to_entity(es, row)


def clear_key(db: Store | Connection | Any, account: Account | str, key_id: str, *,
              settings: Settings | None = None) -> bytes:
    """The clear bytes of one of the account's content keys — the only place a stored key is unwrapped.

    `db` is a Store, a Connection (inside the caller's transaction) or an Engine; `account` an Account
    or an account id; `key_id` `nb:kid:UUID:<guid>` or the bare GUID. `settings` locate the server key
    (pass the running server's; without them the environment's settings are used). Raises NotFound
    when the account has no such key. Never log the result."""
    if settings is None:
        from ..config import load

        settings = load()
    account_id = protection.account_id_of(account)
    with protection.connection(db) as conn:
        key = find_content_key(Store(conn, account_id, MODEL), key_id)
        if key is None:
            raise NotFound(f"No ContentKey with id '{key_id}' exists.")
        try:
            ciphertext = base64.b64decode(key["EncryptedContentKey"] or "")
            return protection.decrypt(conn, account_id, key["ProtectionKeyId"] or "", ciphertext, settings)
        except (protection.UnwrapError, binascii.Error, ValueError):
            # stored keys were unwrapped once at create: this means a lost certificate or server key
            raise InternalError(f"The stored ContentKey '{key['Id']}' cannot be decrypted: its protection key "
                                f"'{key['ProtectionKeyId']}' is missing or the server key has changed.") from None


# ------------------------------------------------------------------------------------------------
# asset links


def _linked_keys(ctx: Ctx, asset_id: str) -> list[dict[str, Any]]:
    es = _es()
    ids = ctx.store.link_targets(LINK, asset_id)
    return ctx.store.query(es, [ctx.store.key_column(es).in_(ids)], top=None) if ids else []


def check_asset_link(ctx: Ctx, asset: dict[str, Any], key: dict[str, Any]) -> None:
    """May `key` be linked to `asset`? (Raises 400 for a type the asset cannot take, 409 for a second
    storage key.) Links already in place, including this one, are not counted against it."""
    key_type, options = key["ContentKeyType"], asset.get("Options") or 0
    option_name = f"{OPTION_NAMES.get(options, 'unknown')} ({options})"
    if key_type == STORAGE and options != STORAGE_ENCRYPTED:
        raise BadRequest(f"A StorageEncryption key can only be linked to a StorageEncrypted asset (Options 1); "
                         f"asset '{asset['Id']}' has Options {option_name}.")
    wanted = STATIC_ASSET_KEY.get(options)
    if wanted is not None and key_type != wanted:
        raise BadRequest(f"Asset '{asset['Id']}' has Options {option_name}: it takes only "
                         f"{_type_name(wanted)} keys, not {_type_name(key_type)} keys.")
    if key_type == STORAGE and any(k["ContentKeyType"] == STORAGE and k["Id"] != key["Id"]
                                   for k in _linked_keys(ctx, asset["Id"])):
        raise Conflict(f"Asset '{asset['Id']}' already has a StorageEncryption key; an asset has at most one.")


def on_asset_link(ctx: Ctx, asset: dict[str, Any], key: dict[str, Any], add: bool) -> None:
    """The Asset rules' hook for `$links/ContentKeys`: check a new link; on removal, delete the key
    when this asset was the last to link it (called before the link itself goes)."""
    if add:
        check_asset_link(ctx, asset, key)
        return
    from .service import remove_row

    key_id = key[_es().entity_type.key]
    if ctx.store.exists(_es(), key_id) and ctx.store.link_sources(LINK, key_id) == [asset["Id"]]:
        remove_row(ctx, _es(), key_id)


# ------------------------------------------------------------------------------------------------
# rules


def _check_policy(ctx: Ctx, policy_id: Any) -> None:
    if policy_id in (None, ""):
        return
    policies = ctx.entity_set("ContentKeyAuthorizationPolicies")
    if not ctx.store.exists(policies, policy_id):
        raise NotFound(f"ContentKeyAuthorizationPolicy '{policy_id}' does not exist.")


class ContentKeyRules(Rules):
    set_name = "ContentKeys"

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        key_type = values.get("ContentKeyType")
        values["ContentKeyType"] = key_type = 0 if key_type is None else key_type
        if key_type not in TYPE_NAMES:
            raise BadRequest(f"ContentKey.ContentKeyType must be one of "
                             f"{', '.join(f'{v} ({k})' for k, v in CONTENT_KEY_TYPE.items())}, not {key_type}.")
        pkt = values.get("ProtectionKeyType")
        values["ProtectionKeyType"] = pkt = 0 if pkt is None else pkt
        if pkt not in PROTECTION_KEY_TYPES:
            raise BadRequest(f"ContentKey.ProtectionKeyType must be 0 (X509CertificateThumbprint), not {pkt}.")
        if find_content_key_in_any_account(ctx.store.conn, values["Id"]) is not None:
            raise Conflict(f"The content key id '{values['Id']}' is already taken; choose another GUID or let the "
                           "service generate the id.")
        clear = _unwrap_new_key(ctx, values)
        _check_length(key_type, clear)
        _check_checksum(values, clear)
        _check_policy(ctx, values.get("AuthorizationPolicyId"))

    def after_create(self, ctx: Ctx, entity: dict[str, Any], payload: EntityPayload) -> None:
        # created through `Assets('id')/ContentKeys`: the parent link is in place, check it like $links
        assets = ctx.entity_set("Assets")
        for asset_id in ctx.store.link_sources(LINK, entity["Id"]):
            asset = ctx.store.get(assets, asset_id)
            if asset is not None:
                check_asset_link(ctx, asset, entity)

    def on_update(self, ctx: Ctx, old: dict[str, Any], changes: dict[str, Any]) -> None:
        for name in MATERIAL:
            if name not in changes:
                continue
            default = self.entity_set.entity_type.property(name).default  # type: ignore[union-attr]
            if changes[name] in (None, "", default):
                # a PUT that names only AuthorizationPolicyId (the documented call) leaves the key alone
                del changes[name]
                continue
            raise BadRequest(f"ContentKey.{name} cannot be changed: a content key's material is fixed once "
                             "created. Create a new ContentKey instead.", code="PropertyNotUpdatable")
        if "AuthorizationPolicyId" in changes:
            _check_policy(ctx, changes["AuthorizationPolicyId"])

    def call(self, ctx: Ctx, fn: FunctionImport, entity: dict[str, Any] | None, params: dict[str, Any]) -> Any:
        assert entity is not None
        if fn.name == "GetKeyDeliveryUrl":
            return key_delivery_url(ctx.settings, entity, params.get("keyDeliveryType"))
        return super().call(ctx, fn, entity, params)


def key_delivery_url(settings: Settings, key: dict[str, Any], delivery_type: Any) -> str:
    """Where players get this key (or a licence for it): `<public base>/keydelivery/…`."""
    if delivery_type is None:
        raise BadRequest("GetKeyDeliveryUrl needs keyDeliveryType, for example {\"keyDeliveryType\": 2} "
                         "(1 PlayReadyLicense, 2 BaselineHttp, 3 Widevine, 4 FairPlay).")
    name = f"{DELIVERY_NAMES.get(delivery_type, 'unknown')} ({delivery_type})"
    if delivery_type not in DELIVERY:
        raise BadRequest(f"keyDeliveryType {name} has no key delivery URL; use 1 PlayReadyLicense, "
                         "2 BaselineHttp, 3 Widevine or 4 FairPlay.")
    key_types, path = DELIVERY[delivery_type]
    if key["ContentKeyType"] not in key_types:
        serves = " or ".join(_type_name(t) for t in sorted(key_types))
        raise BadRequest(f"keyDeliveryType {name} delivers {serves} keys; this key is "
                         f"{_type_name(key['ContentKeyType'])}.")
    return f"{settings.api_base}/keydelivery/" + path.format(kid=guid_of(key["Id"]))
