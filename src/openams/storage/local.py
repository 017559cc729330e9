"""Local-disk blob backend (the default).

Layout under the root (`<data dir>/blobs`):

    <account>/<container>/.container.json        container properties
    <account>/<container>/blobs/<h>.json          blob properties + committed block map (the truth)
    <account>/<container>/blobs/<h>.<version>.<n> content extents of a committed version, in order
    <account>/<container>/blocks/<h>/<id-hex>     staged (uncommitted) blocks
    .staging/                                      request bodies being received

`<h>` is the SHA-256 of the blob name, so no name can reach outside its container. Every write
goes to a temp file that is fsynced and renamed into place; a blob's properties file is replaced
last and names the content extents, so a crash at any point leaves either the old blob or the new
one — never a half-written blob — and staged blocks survive a restart.

Committing a block list moves (or hard-links, for blocks kept from the previous version or listed
twice) the block files into place as the blob's extents: no byte is copied a second time, so a
commit costs a few metadata operations however large the blob is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .base import (
    MAX_BLOB_SIZE,
    MAX_COMMITTED_BLOCKS,
    MAX_UNCOMMITTED_BLOCKS,
    BlobProperties,
    BlockInfo,
    ContentSettings,
    Spool,
    Staging,
    StorageError,
    not_found,
    validate_account,
    validate_blob_name,
    validate_block_id,
    validate_container,
)

CHUNK = 1024 * 1024


def _h(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def new_etag() -> str:
    return f'"0x{uuid.uuid4().hex[:15].upper()}"'


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _props_to_json(p: BlobProperties) -> dict[str, Any]:
    return {"name": p.name, "size": p.size, "etag": p.etag, "created": p.created.isoformat(),
            "last_modified": p.last_modified.isoformat(), "settings": asdict(p.settings),
            "metadata": p.metadata, "content_md5": p.content_md5}


def _props_from_json(d: dict[str, Any]) -> BlobProperties:
    return BlobProperties(d["name"], d["size"], d["etag"], datetime.fromisoformat(d["created"]),
                          datetime.fromisoformat(d["last_modified"]), ContentSettings(**d["settings"]),
                          dict(d["metadata"]), d.get("content_md5"))


class LocalBackend(Staging):
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging = root / ".staging"
        self.staging.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # paths and locks ---------------------------------------------------------------------------
    def _container_dir(self, account: str, container: str) -> Path:
        validate_account(account)
        validate_container(container)
        return self.root / account / container

    def _existing(self, account: str, container: str) -> Path:
        d = self._container_dir(account, container)
        if not (d / ".container.json").exists():
            raise not_found(container)
        return d

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    def _meta_path(self, d: Path, name: str) -> Path:
        return d / "blobs" / f"{_h(name)}.json"

    def _load(self, d: Path, name: str) -> dict[str, Any] | None:
        try:
            with open(self._meta_path(d, name), encoding="utf-8") as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None

    # spooling ----------------------------------------------------------------------------------
    # containers --------------------------------------------------------------------------------
    def create_container(self, account: str, container: str) -> None:
        d = self._container_dir(account, container)
        if (d / ".container.json").exists():
            raise StorageError(409, "ContainerAlreadyExists", "The specified container already exists.")
        (d / "blobs").mkdir(parents=True, exist_ok=True)
        (d / "blocks").mkdir(exist_ok=True)
        _write_json(d / ".container.json", {"created": datetime.now(UTC).isoformat(), "etag": new_etag()})

    def delete_container(self, account: str, container: str) -> None:
        d = self._existing(account, container)
        # make it disappear atomically first, then remove the files
        trash = self.staging / f"deleted-{uuid.uuid4().hex}"
        os.replace(d, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def container_exists(self, account: str, container: str) -> bool:
        return (self._container_dir(account, container) / ".container.json").exists()

    # writes ------------------------------------------------------------------------------------
    def put_blob(self, account: str, container: str, name: str, spool: Spool, settings: ContentSettings,
                 metadata: dict[str, str]) -> BlobProperties:
        validate_blob_name(name)
        d = self._existing(account, container)
        with self._lock(f"{account}/{container}/{name}"):
            old = self._load(d, name)
            version = uuid.uuid4().hex
            spool.finish()
            block_map = []
            if spool.size:
                os.replace(spool.path, d / "blobs" / f"{_h(name)}.{version}.0")
                _fsync_dir(d / "blobs")
                block_map = [{"id": None, "size": spool.size, "file": f"{_h(name)}.{version}.0"}]
            props = self._commit(d, name, old, version, spool.size, settings, metadata, block_map,
                                 spool.md5_b64)
            # Put Blob discards any uncommitted blocks of the blob
            shutil.rmtree(d / "blocks" / _h(name), ignore_errors=True)
            return props

    def _commit(self, d: Path, name: str, old: dict[str, Any] | None, version: str, size: int,
                settings: ContentSettings, metadata: dict[str, str], block_map: list[dict[str, Any]],
                md5: str | None) -> BlobProperties:
        now = datetime.now(UTC)
        created = datetime.fromisoformat(old["props"]["created"]) if old else now
        props = BlobProperties(name, size, new_etag(), created, now, settings, dict(metadata),
                               settings.content_md5 or md5)
        _write_json(self._meta_path(d, name), {"props": _props_to_json(props), "version": version,
                                                "blocks": block_map})
        if old:
            self._drop_extents(d, old)
        return props

    @staticmethod
    def _drop_extents(d: Path, meta: dict[str, Any]) -> None:
        """Remove a superseded version's extent names (hard links shared with the new one survive)."""
        for block in meta.get("blocks", []):
            if block.get("file"):
                (d / "blobs" / block["file"]).unlink(missing_ok=True)

    def stage_block(self, account: str, container: str, name: str, block_id: str, spool: Spool) -> None:
        validate_blob_name(name)
        raw = validate_block_id(block_id)
        d = self._existing(account, container)
        bdir = d / "blocks" / _h(name)
        bdir.mkdir(parents=True, exist_ok=True)
        target = bdir / raw.hex()
        if not target.exists() and sum(1 for _ in bdir.iterdir()) >= MAX_UNCOMMITTED_BLOCKS:
            raise StorageError(409, "BlockCountExceedsLimit",
                               f"The uncommitted block count cannot exceed {MAX_UNCOMMITTED_BLOCKS}.")
        self._check_id_length(d, name, bdir, raw)
        spool.finish()
        os.replace(spool.path, target)
        _fsync_dir(bdir)

    def _check_id_length(self, d: Path, name: str, bdir: Path, raw: bytes) -> None:
        """Azure requires every block id of one blob to have the same length."""
        for existing in bdir.iterdir():
            if len(existing.name) != len(raw.hex()):
                raise StorageError(400, "InvalidBlobOrBlock",
                                   "The specified blob or block content is invalid (block ids of one blob must "
                                   "all have the same length).")
            break

    def commit_blocks(self, account: str, container: str, name: str, blocks: list[tuple[str, str]],
                      settings: ContentSettings, metadata: dict[str, str]) -> BlobProperties:
        validate_blob_name(name)
        d = self._existing(account, container)
        if len(blocks) > MAX_COMMITTED_BLOCKS:
            raise StorageError(400, "BlockListTooLong", f"The block list may not contain more than "
                               f"{MAX_COMMITTED_BLOCKS} blocks.")
        with self._lock(f"{account}/{container}/{name}"):
            old = self._load(d, name)
            committed = {b["id"]: b for b in (old or {}).get("blocks", []) if b.get("id")}
            bdir = d / "blocks" / _h(name)
            # resolve every entry first: an invalid list changes nothing
            sources: list[tuple[str, Path, int]] = []  # (id, file holding the block, size)
            total = 0
            for kind, block_id in blocks:
                raw = validate_block_id(block_id)
                staged = bdir / raw.hex()
                if kind in ("Uncommitted", "Latest") and staged.exists():
                    sources.append((block_id, staged, staged.stat().st_size))
                elif kind in ("Committed", "Latest") and block_id in committed:
                    b = committed[block_id]
                    sources.append((block_id, d / "blobs" / b["file"], b["size"]))
                else:
                    raise StorageError(400, "InvalidBlockList", "The specified block list is invalid.")
                total += sources[-1][2]
            if total > MAX_BLOB_SIZE:
                raise StorageError(413, "RequestBodyTooLarge", "The blob would exceed the maximum blob size.")
            version = uuid.uuid4().hex
            block_map: list[dict[str, Any]] = []
            made: list[Path] = []
            try:
                for n, (block_id, path, size) in enumerate(sources):
                    extent = d / "blobs" / f"{_h(name)}.{version}.{n}"
                    # link, never move: the same staged block may be listed twice, and a failure
                    # below must leave the staged blocks and the old version untouched
                    os.link(path, extent)
                    made.append(extent)
                    block_map.append({"id": block_id, "size": size, "file": extent.name})
                _fsync_dir(d / "blobs")
            except BaseException:
                for extent in made:
                    extent.unlink(missing_ok=True)
                raise
            props = self._commit(d, name, old, version, total, settings, metadata, block_map, None)
            # after a commit Azure discards every uncommitted block of the blob
            shutil.rmtree(bdir, ignore_errors=True)
            return props

    # reads -------------------------------------------------------------------------------------
    def block_list(self, account: str, container: str, name: str) -> tuple[list[BlockInfo], list[BlockInfo]]:
        validate_blob_name(name)
        d = self._existing(account, container)
        meta = self._load(d, name)
        committed = [BlockInfo(b["id"], b["size"]) for b in (meta or {}).get("blocks", []) if b.get("id")]
        bdir = d / "blocks" / _h(name)
        uncommitted: list[BlockInfo] = []
        if bdir.exists():
            import base64

            files = sorted(bdir.iterdir(), key=lambda p: p.stat().st_mtime_ns)
            for f in files:
                if f.name.endswith(".part"):
                    continue
                uncommitted.append(BlockInfo(base64.b64encode(bytes.fromhex(f.name)).decode(), f.stat().st_size))
        if meta is None and not uncommitted:
            raise not_found(container, name)
        return committed, uncommitted

    def properties(self, account: str, container: str, name: str) -> BlobProperties | None:
        validate_blob_name(name)
        d = self._existing(account, container)
        meta = self._load(d, name)
        return _props_from_json(meta["props"]) if meta else None

    def read(self, account: str, container: str, name: str, start: int, end: int) -> Iterator[bytes]:
        d = self._existing(account, container)
        meta = self._load(d, name)
        if meta is None:
            raise not_found(container, name)
        plan: list[tuple[Path, int, int]] = []  # (extent, skip, length)
        offset = 0
        for block in meta.get("blocks", []):
            size = block["size"]
            lo, hi = max(start, offset), min(end, offset + size - 1)
            if lo <= hi:
                plan.append((d / "blobs" / block["file"], lo - offset, hi - lo + 1))
            offset += size
        first = open(plan[0][0], "rb") if plan else None  # noqa: SIM115 - fails now if already replaced

        def chunks() -> Iterator[bytes]:
            for i, (path, skip, left) in enumerate(plan):
                try:
                    fh = first if i == 0 and first is not None else open(path, "rb")  # noqa: SIM115
                except FileNotFoundError:  # the blob was replaced while it was being read
                    raise StorageError(412, "ConditionNotMet", "The blob changed while it was being read.") \
                        from None
                with fh:
                    fh.seek(skip)
                    while left > 0:
                        chunk = fh.read(min(CHUNK, left))
                        if not chunk:
                            raise StorageError(500, "InternalError", "A stored extent is truncated.")
                        left -= len(chunk)
                        yield chunk

        return chunks()

    def delete_blob(self, account: str, container: str, name: str) -> None:
        validate_blob_name(name)
        d = self._existing(account, container)
        with self._lock(f"{account}/{container}/{name}"):
            meta = self._load(d, name)
            if meta is None:
                raise not_found(container, name)
            self._meta_path(d, name).unlink()
            _fsync_dir(d / "blobs")
            self._drop_extents(d, meta)
            shutil.rmtree(d / "blocks" / _h(name), ignore_errors=True)

    def list_blobs(self, account: str, container: str, prefix: str = "", marker: str = "",
                   max_results: int = 5000) -> tuple[list[BlobProperties], str]:
        d = self._existing(account, container)
        items: list[BlobProperties] = []
        for path in (d / "blobs").glob("*.json"):
            try:
                with open(path, encoding="utf-8") as fh:
                    props = _props_from_json(json.load(fh)["props"])
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                continue  # deleted or replaced while listing
            if props.name.startswith(prefix) and props.name > marker:
                items.append(props)
        items.sort(key=lambda p: p.name)
        page = items[:max_results]
        next_marker = page[-1].name if len(items) > max_results and page else ""
        return page, next_marker

    def _update_props(self, account: str, container: str, name: str, change: Any) -> BlobProperties:
        validate_blob_name(name)
        d = self._existing(account, container)
        with self._lock(f"{account}/{container}/{name}"):
            meta = self._load(d, name)
            if meta is None:
                raise not_found(container, name)
            props = _props_from_json(meta["props"])
            change(props)
            props.etag = new_etag()
            props.last_modified = datetime.now(UTC)
            meta["props"] = _props_to_json(props)
            _write_json(self._meta_path(d, name), meta)
            return props

    def set_metadata(self, account: str, container: str, name: str, metadata: dict[str, str]) -> BlobProperties:
        return self._update_props(account, container, name, lambda p: setattr(p, "metadata", dict(metadata)))

    def set_properties(self, account: str, container: str, name: str,
                       settings: ContentSettings) -> BlobProperties:
        return self._update_props(account, container, name, lambda p: setattr(p, "settings", settings))

