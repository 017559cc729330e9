"""Files (AssetFile): the blobs of an asset, with size, type, checksum, the primary flag and, for
storage-encrypted assets, how each blob was encrypted.

Storage encryption (spec §3.11): a client uploading to a StorageEncrypted asset (Options 1)
encrypts each file with AES-256-CTR under the asset's StorageEncryption content key and records
on the AssetFile `IsEncrypted` true, `EncryptionScheme` "StorageEncryption", `EncryptionVersion`
"1.0", `EncryptionKeyId` (the key's id) and `InitializationVector` (decimal 64-bit IV). The
encoder and the origin decrypt with exactly these values, so a file that claims encryption they
could not undo is refused here (400) rather than failing later as garbled media: on a
StorageEncrypted asset an encrypted file needs a decimal 64-bit IV and the id of the
StorageEncryption key linked to the asset. Files that are not encrypted (IsEncrypted false, as
CreateFileInfos makes them) are accepted on any asset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest, Conflict, NotFound
from ..model.enums import ASSET_CREATION_OPTIONS, CONTENT_KEY_TYPE
from ..odata.payload import EntityPayload
from ..packaging.storage_crypto import SCHEME as STORAGE_SCHEME
from ..packaging.storage_crypto import VERSION as STORAGE_VERSION
from ..packaging.storage_crypto import StorageCryptoError, parse_iv
from .base import Ctx, Rules, guid_of

FORBIDDEN = set("!*'();:@&=+$,/?%#[]\"")
MAX_NAME = 260
STORAGE_ENCRYPTED = ASSET_CREATION_OPTIONS["StorageEncrypted"]
STORAGE_KEY_TYPE = CONTENT_KEY_TYPE["StorageEncryption"]
KEY_LINK = "asset_contentkeys"
"""The Assets('id')/$links/ContentKeys relation (as `content_keys.LINK`)."""
ENCRYPTION_FIELDS = ("IsEncrypted", "EncryptionScheme", "EncryptionVersion", "EncryptionKeyId", "InitializationVector")


def is_storage_encrypted(file: Mapping[str, Any], asset_options: int | None) -> bool:
    """Whether a file's stored bytes are AES-256-CTR ciphertext that readers must decrypt: it says
    IsEncrypted and its scheme is StorageEncryption — or names no scheme on a StorageEncrypted
    asset (the only encryption such an asset's files can carry). Files of statically protected
    assets (CommonEncryption/EnvelopeEncryption) are served as stored."""
    if not file.get("IsEncrypted"):
        return False
    scheme = (file.get("EncryptionScheme") or "").strip()
    if scheme:
        return scheme.lower() == STORAGE_SCHEME.lower()
    return bool((asset_options or 0) & STORAGE_ENCRYPTED)


def same_key_id(a: str | None, b: str | None) -> bool:
    """Whether two content key ids name the same key (`nb:kid:UUID:<guid>` or the bare GUID, any case)."""
    if not a or not b:
        return False
    return guid_of(a.strip()).lower() == guid_of(b.strip()).lower()


def validate_file_name(name: str) -> None:
    """AMS file-name rules: the name is used verbatim in blob and streaming URLs."""
    if not name or not name.strip():
        raise BadRequest("AssetFile.Name must not be empty.")
    if len(name) > MAX_NAME:
        raise BadRequest(f"AssetFile.Name must be at most {MAX_NAME} characters.")
    bad = sorted(FORBIDDEN.intersection(name))
    if bad or "\\" in name or any(ord(c) < 32 for c in name):
        shown = " ".join(bad) if bad else "control characters or backslashes"
        raise BadRequest(f"AssetFile.Name '{name}' contains characters that cannot be used in media URLs: {shown}.")
    if name.count(".") > 1:
        raise BadRequest(f"AssetFile.Name '{name}' has more than one '.'; use one dot, before the extension.")


class FileRules(Rules):
    set_name = "Files"

    def _siblings(self, ctx: Ctx, asset_id: str) -> list[dict[str, Any]]:
        es = self.entity_set
        return ctx.store.query(es, [ctx.store.table(es).c.ParentAssetId == asset_id], top=None)

    def _check(self, ctx: Ctx, values: dict[str, Any], own_id: str | None) -> None:
        asset_id = values["ParentAssetId"]
        others = [f for f in self._siblings(ctx, asset_id) if f["Id"] != own_id]
        if any(f["Name"] == values["Name"] for f in others):
            raise Conflict(f"The asset already has a file named '{values['Name']}'.")
        if values.get("IsPrimary") and any(f["IsPrimary"] for f in others):
            raise Conflict("The asset already has a primary file; unset it first.")
        size = values.get("ContentFileSize")
        if size is not None and size < 0:
            raise BadRequest("AssetFile.ContentFileSize cannot be negative.")

    def _check_encryption(self, ctx: Ctx, values: dict[str, Any]) -> None:
        """A file claiming storage encryption must carry what decrypting it takes (module docstring)."""
        asset = ctx.store.get(ctx.entity_set("Assets"), values["ParentAssetId"])
        options = (asset or {}).get("Options") or 0
        if not is_storage_encrypted(values, options):
            return
        name = values.get("Name") or values.get("Id")
        if not options & STORAGE_ENCRYPTED:
            raise BadRequest(f"AssetFile '{name}' says it is storage-encrypted, but asset '{values['ParentAssetId']}' "
                             "is not StorageEncrypted (Options 1): create the asset with Options 1 and link its "
                             "StorageEncryption key, or set IsEncrypted false.")
        version = values.get("EncryptionVersion")
        if version not in (None, "", STORAGE_VERSION):
            raise BadRequest(f"AssetFile.EncryptionVersion of a storage-encrypted file must be "
                             f"\"{STORAGE_VERSION}\", not \"{version}\".")
        iv = values.get("InitializationVector")
        if iv in (None, ""):
            raise BadRequest(f"AssetFile '{name}' is storage-encrypted and needs its InitializationVector: the "
                             "64-bit IV used for AES-256-CTR, as a decimal string.", code="MissingProperty")
        try:
            parse_iv(str(iv))
        except StorageCryptoError as exc:
            raise BadRequest(f"AssetFile.InitializationVector: {exc}") from None
        key_id = values.get("EncryptionKeyId")
        if not key_id:
            raise BadRequest(f"AssetFile '{name}' is storage-encrypted and needs its EncryptionKeyId: the id of the "
                             "asset's StorageEncryption content key.", code="MissingProperty")
        keys_es = ctx.entity_set("ContentKeys")
        linked = [ctx.store.get(keys_es, k) for k in ctx.store.link_targets(KEY_LINK, asset["Id"])]
        storage = [k for k in linked if k is not None and k.get("ContentKeyType") == STORAGE_KEY_TYPE]
        if not any(same_key_id(k["Id"], str(key_id)) for k in storage):
            linked_text = f"its StorageEncryption key is '{storage[0]['Id']}'" if storage else \
                "it has no StorageEncryption key linked (POST Assets('id')/$links/ContentKeys first)"
            raise BadRequest(f"AssetFile.EncryptionKeyId '{key_id}' is not the StorageEncryption key of asset "
                             f"'{asset['Id']}': {linked_text}.")

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        if not values.get("ParentAssetId"):
            raise BadRequest("AssetFile.ParentAssetId is required.", code="MissingProperty")
        if not ctx.store.exists(ctx.entity_set("Assets"), values["ParentAssetId"]):
            raise NotFound(f"Asset '{values['ParentAssetId']}' does not exist.")
        validate_file_name(values.get("Name") or "")
        self._check(ctx, values, None)
        self._check_encryption(ctx, values)

    def on_update(self, ctx: Ctx, old: dict[str, Any], changes: dict[str, Any]) -> None:
        if "Name" in changes:
            validate_file_name(changes["Name"] or "")
        if {"Name", "IsPrimary", "ContentFileSize"} & changes.keys():
            self._check(ctx, {**old, **changes}, old["Id"])
        if set(ENCRYPTION_FIELDS) & changes.keys():
            self._check_encryption(ctx, {**old, **changes})
