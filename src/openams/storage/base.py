"""The blob storage interface every backend implements (local disk, Azure Blob, S3).

Semantics are Azure block blobs: containers; blobs written whole (Put Blob) or as staged blocks
committed by a block list; committed data replaced atomically; metadata and content settings.
Request bodies are first spooled to a local file (`spool()`), so backends never hold a whole blob
in memory and a failed upload leaves nothing behind. Names are validated here, once.

No HTTP here: the blob surface maps these calls and `StorageError`s onto the Azure wire format.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

CONTAINER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$")
ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")
MAX_BLOB_NAME = 1024
MAX_BLOCK_ID_BYTES = 64
MAX_COMMITTED_BLOCKS = 50_000
MAX_UNCOMMITTED_BLOCKS = 100_000
MAX_BLOCK_SIZE = 4000 * 1024 * 1024
MAX_PUT_BLOB_SIZE = 5000 * 1024 * 1024
MAX_BLOB_SIZE = MAX_COMMITTED_BLOCKS * MAX_BLOCK_SIZE


class StorageError(Exception):
    """A storage failure with the Azure error code and HTTP status it maps to."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_found(container: str, name: str | None = None) -> StorageError:
    if name is None:
        return StorageError(404, "ContainerNotFound", "The specified container does not exist.")
    return StorageError(404, "BlobNotFound", "The specified blob does not exist.")


@dataclass
class ContentSettings:
    content_type: str | None = None
    content_encoding: str | None = None
    content_language: str | None = None
    content_disposition: str | None = None
    cache_control: str | None = None
    content_md5: str | None = None
    """Base64 MD5 of the whole blob, as the client declared it (x-ms-blob-content-md5)."""


@dataclass
class BlobProperties:
    name: str
    size: int
    etag: str
    """Quoted, as sent in the ETag header."""
    created: datetime
    last_modified: datetime
    settings: ContentSettings = field(default_factory=ContentSettings)
    metadata: dict[str, str] = field(default_factory=dict)
    content_md5: str | None = None
    """Base64 MD5 the service computed (Put Blob) or the client declared (block list)."""


@dataclass
class BlockInfo:
    id: str
    size: int


def validate_account(account: str) -> None:
    if not ACCOUNT_RE.match(account):
        raise StorageError(400, "InvalidResourceName", "The specified account name is not valid.")


def validate_container(container: str) -> None:
    if not CONTAINER_RE.match(container):
        raise StorageError(400, "InvalidResourceName", "The specifed resource name contains invalid characters.")


def validate_blob_name(name: str) -> None:
    """Blob names are opaque to Azure, but a name that walks out of its container never is."""
    if not name or len(name) > MAX_BLOB_NAME:
        raise StorageError(400, "InvalidResourceName", "The specifed resource name length is not within the "
                           "permissible limits.")
    parts = name.replace("\\", "/").split("/")
    if any(p in (".", "..") for p in parts) or "\x00" in name or any(ord(c) < 32 for c in name):
        raise StorageError(400, "InvalidResourceName",
                           "The specifed resource name contains invalid characters ('.' or '..' path segments).")


def validate_block_id(block_id: str) -> bytes:
    try:
        raw = base64.b64decode(block_id, validate=True)
    except ValueError:
        raise StorageError(400, "InvalidQueryParameterValue",
                           "Value for one of the query parameters specified in the request URI is invalid "
                           "(blockid must be base64).") from None
    if not raw or len(raw) > MAX_BLOCK_ID_BYTES:
        raise StorageError(400, "InvalidQueryParameterValue",
                           f"blockid must encode 1 to {MAX_BLOCK_ID_BYTES} bytes.")
    return raw


class Spool:
    """A file a request body is written to before the backend takes it over."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in finish()/discard()
        import hashlib

        self._md5 = hashlib.md5(usedforsecurity=False)

    def write(self, chunk: bytes) -> None:
        self._fh.write(chunk)
        self._md5.update(chunk)
        self.size += len(chunk)

    def finish(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()

    @property
    def md5_b64(self) -> str:
        return base64.b64encode(self._md5.digest()).decode("ascii")

    def discard(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class BlobBackend(Protocol):
    name: str

    @contextmanager
    def spool(self) -> Iterator[Spool]:
        """A spool file on the backend's staging area; removed afterwards unless taken over."""
        ...

    def create_container(self, account: str, container: str) -> None: ...
    def delete_container(self, account: str, container: str) -> None: ...
    def container_exists(self, account: str, container: str) -> bool: ...

    def put_blob(self, account: str, container: str, name: str, spool: Spool, settings: ContentSettings,
                 metadata: dict[str, str]) -> BlobProperties: ...

    def stage_block(self, account: str, container: str, name: str, block_id: str, spool: Spool) -> None: ...

    def commit_blocks(self, account: str, container: str, name: str, blocks: list[tuple[str, str]],
                      settings: ContentSettings, metadata: dict[str, str]) -> BlobProperties:
        """`blocks` is [(kind, id)] with kind `Latest`, `Committed` or `Uncommitted`."""
        ...

    def block_list(self, account: str, container: str, name: str) -> tuple[list[BlockInfo], list[BlockInfo]]:
        """(committed, uncommitted) blocks of a blob (either may be empty)."""
        ...

    def properties(self, account: str, container: str, name: str) -> BlobProperties | None: ...

    def read(self, account: str, container: str, name: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes [start, end] inclusive, in chunks."""
        ...

    def delete_blob(self, account: str, container: str, name: str) -> None: ...

    def list_blobs(self, account: str, container: str, prefix: str = "", marker: str = "",
                   max_results: int = 5000) -> tuple[list[BlobProperties], str]:
        """Blobs in name order after `marker`; returns (page, next marker or '')."""
        ...

    def set_metadata(self, account: str, container: str, name: str, metadata: dict[str, str]) -> BlobProperties: ...

    def set_properties(self, account: str, container: str, name: str,
                       settings: ContentSettings) -> BlobProperties: ...


class Staging:
    """Spool files under `self.staging` (each backend sets it): one place receives request bodies
    before the backend takes them, and a restart sweeps what a killed request left there."""

    staging: Path

    @contextmanager
    def spool(self) -> Iterator[Spool]:
        sp = Spool(self.staging / f"{uuid.uuid4().hex}.part")
        try:
            yield sp
        finally:
            sp.discard()

    def clean_staging(self) -> None:
        """Remove spool and temp files a crash left behind (called when `openams serve` starts)."""
        for f in self.staging.iterdir():
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)


def default_spool_dir() -> Path:
    return Path(tempfile.gettempdir())
