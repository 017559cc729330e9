"""CreateFileInfos: turn the blobs already in an asset's container into AssetFile entities.

`GET /api/CreateFileInfos?assetid='nb%3Acid%3AUUID%3A…'` is how hand-written clients finish an upload:
they PUT blobs through a SAS locator, then ask the service to describe them. For every blob this
creates an AssetFile (or refreshes the one with the same name) with the blob's size, a MIME type
from the extension and the blob's MD5, and makes sure the asset has a primary file when one can be
told.

Everything goes through the entity service (`service.create` / `service.update`), so the Files
rules (name rules, one primary per asset, account scope) apply exactly as for `POST /api/Files`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import mimetypes
from typing import Any

from ..errors import ApiError, BadRequest, NotFound
from ..odata.payload import EntityPayload
from .assets import container_name
from .base import Ctx
from .files import validate_file_name

log = logging.getLogger("openams.entities.file_infos")

# Extensions the standard table does not know (or maps differently from what AMS wrote): Smooth
# Streaming manifests and fragmented tracks are opaque binaries to AMS, MP4 variants are video/mp4.
MIME_OVERRIDES = {
    ".ism": "application/octet-stream",
    ".ismc": "application/octet-stream",
    ".ismv": "video/mp4",
    ".isma": "audio/mp4",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".m4a": "audio/mp4",
    ".mpi": "application/octet-stream",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".vtt": "text/vtt",
    ".ttml": "application/ttml+xml",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".flv": "video/x-flv",
    ".ts": "video/mp2t",
}
DEFAULT_MIME = "application/octet-stream"
# The built-in table only: the system's /etc/mime.types differs between machines.
_MIME = mimetypes.MimeTypes()

PAGE = 5000


def mime_type(name: str) -> str:
    """The MIME type AMS would record for a file name, from its extension."""
    dot = name.rfind(".")
    ext = name[dot:].lower() if dot > 0 else ""
    if ext in MIME_OVERRIDES:
        return MIME_OVERRIDES[ext]
    guessed, _encoding = _MIME.guess_type("x" + ext, strict=False) if ext else (None, None)
    return guessed or DEFAULT_MIME


def md5_hex(content_md5: str | None) -> str | None:
    """Base64 MD5 (as blob properties carry it) → lower-case hex (as AssetFile.ContentChecksum holds it)."""
    if not content_md5:
        return None
    try:
        raw = base64.b64decode(content_md5, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None


def _asset_id(params: dict[str, Any]) -> str:
    value = params.get("assetid")
    if value is None or not str(value).strip():
        raise BadRequest("CreateFileInfos needs the asset: ?assetid='nb:cid:UUID:<guid>'.",
                         code="MissingParameter")
    return str(value).strip()


def _list_all(ctx: Ctx, storage_account: str, container: str) -> list[Any]:
    from ..storage.base import StorageError

    out: list[Any] = []
    marker = ""
    while True:
        try:
            page, marker = ctx.storage.list_blobs(storage_account, container, "", marker, PAGE)
        except StorageError as exc:
            if exc.code == "ContainerNotFound":  # created with keepcontainer games or removed by hand
                return out
            raise
        out.extend(page)
        if not marker:
            return out


def primary_choice(names: list[str]) -> str | None:
    """Which file to make primary when an asset has none: the only file, else the `.ism`, else the
    first `.mp4` (by name); None when it cannot be told."""
    if len(names) == 1:
        return names[0]
    ordered = sorted(names)
    for ext in (".ism", ".mp4"):
        for name in ordered:
            if name.lower().endswith(ext):
                return name
    return None


def create_file_infos(ctx: Ctx, params: dict[str, Any]) -> None:
    """Create or refresh one AssetFile per blob in the asset's container; returns nothing (204).

    * Name = blob name, ContentFileSize = blob size, ContentChecksum = hex MD5 when the blob has one.
    * MimeType comes from the extension on create; a refresh keeps a MimeType the client set.
    * IsPrimary flags already set are kept; if no file of the asset is primary afterwards, the only
      file, else the `.ism`, else the first `.mp4` becomes primary.
    * Blobs whose names break the AssetFile name rules are skipped with a warning: the blob stays
      reachable through SAS, it just cannot be described as an AssetFile (or streamed).
    * AssetFiles whose blob is gone are left alone: AMS never deletes files behind a client's back,
      a client may create the AssetFile before uploading (the SDK flow), and an asset's files are
      removed with the asset or explicitly with `DELETE /api/Files('…')`.
    * Storage encryption cannot be seen in a blob: new files say IsEncrypted false, and a client that
      uploaded ciphertext to a StorageEncrypted asset MERGEs IsEncrypted, EncryptionScheme,
      EncryptionVersion, EncryptionKeyId and InitializationVector afterwards (checked by the Files
      rules). A refresh never touches those fields; ContentChecksum is the MD5 of the stored bytes.
    """
    from . import service

    asset_id = _asset_id(params)
    assets = ctx.entity_set("Assets")
    asset = ctx.store.get(assets, asset_id)
    if asset is None:
        raise NotFound(f"No Asset with key '{asset_id}' exists.")
    asset_id = asset["Id"]
    if ctx.storage is None:
        raise BadRequest("CreateFileInfos needs the blob service, which this server does not run.")
    files_es = ctx.entity_set("Files")
    store = ctx.store
    rows = store.query(files_es, [store.table(files_es).c.ParentAssetId == asset_id], top=None)
    existing = {f["Name"]: f for f in rows}
    seen: list[str] = []
    for blob in _list_all(ctx, asset["StorageAccountName"], container_name(asset_id)):
        name = blob.name
        try:
            validate_file_name(name)
        except ApiError as exc:
            log.warning("CreateFileInfos: asset %s: blob '%s' is not a valid AssetFile name, skipped (%s)",
                        asset_id, name, exc.message)
            continue
        checksum = md5_hex(blob.content_md5)
        old = existing.get(name)
        try:
            if old is None:
                props = {"Name": name, "ParentAssetId": asset_id, "ContentFileSize": blob.size,
                         "MimeType": mime_type(name), "ContentChecksum": checksum, "IsPrimary": False,
                         "IsEncrypted": False}
                existing[name] = service.create(ctx, files_es, EntityPayload(properties=props))
            else:
                changes: dict[str, Any] = {"ContentFileSize": blob.size}
                if checksum is not None:
                    changes["ContentChecksum"] = checksum
                if not old.get("MimeType"):
                    changes["MimeType"] = mime_type(name)
                if any(old.get(k) != v for k, v in changes.items()):  # no-op refreshes keep LastModified
                    service.update(ctx, files_es, old["Id"], EntityPayload(properties=changes))
        except BadRequest as exc:
            log.warning("CreateFileInfos: asset %s: blob '%s' skipped (%s)", asset_id, name, exc.message)
            continue
        seen.append(name)
    if seen and not any(f.get("IsPrimary") for f in existing.values()):
        choice = primary_choice(seen)
        if choice is not None:
            primary = EntityPayload(properties={"IsPrimary": True})
            service.update(ctx, files_es, existing[choice]["Id"], primary)
