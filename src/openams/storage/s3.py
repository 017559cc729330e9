"""S3 backend: blob content in one S3 (or S3-compatible) bucket, with Azure block-blob semantics.

S3 has no staged blocks, no block lists and no container notion, so this module rebuilds them on
plain objects. The bucket (`settings.s3_bucket`, created when missing) holds:

    <account>/<container>/<blob name>                      blob content (one object per blob)
    .openams/<account>/<container>/container.json          the container exists iff this exists
    .openams/<account>/<container>/blocks/<h>/<id-hex>     staged (uncommitted) blocks
    .openams/<account>/<container>/blockmaps/<h>/<v>.json  committed block map of version <v>

`<h>` is the SHA-256 of the blob name and `<id-hex>` the block id's bytes in hex. Blob keys are
exactly `<account>/<container>/<name>` so an operator browsing the bucket sees the files; every
private object lives under `.openams/`, a prefix no account name can have (account names are
`[a-z0-9]{3,24}`). Keeping the private objects *inside* the container prefix (`.../.container`,
`.../.blocks/`) would collide with legal blob names such as `.container`.

Properties. A blob's properties (our quoted ETag, creation and modification time, content
settings, metadata, Content-MD5 and the content version `v`) travel in ONE user-metadata field
(`x-amz-meta-openams`, JSON) of the content object itself, so content and properties change
together in a single atomic S3 write. S3's own ETag is never shown to clients: it is not an Azure
ETag (multipart ETags, unchanged by metadata updates).

Commit. Put Block List resolves every (kind, id) against the staged block objects and the old
version's block map, writes the new block map (keyed by a fresh version), then builds the new
object in one multipart upload: large pieces are server-side copies (UploadPartCopy from a staged
block or from a byte range of the old object), and runs of small pieces (S3 parts must be at least
5 MiB except the last) are downloaded into a local temp file and uploaded as one part, so memory
stays constant. Completing the upload swaps the blob atomically; only then are the staged blocks
and the old block map deleted. A crash at any point leaves the old blob or the new one, never a
half-written one, plus at worst some orphaned private objects that the next write cleans up.

Limits specific to S3: keys are at most 1024 bytes (so `<account>/<container>/<name>` must fit);
AWS allows 2 KB of user metadata per object (other S3 servers allow more).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

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
MIN_PART = 8 * 1024 * 1024
"""Smallest part we upload or copy (S3's own minimum is 5 MiB for every part but the last)."""
MAX_PARTS = 9000
"""Parts we plan for at most (S3 allows 10,000); the part size grows with the blob to stay below."""
MAX_COPY = 5 * 1024 * 1024 * 1024
"""Largest object CopyObject can rewrite in one call; bigger ones are rewritten part by part."""
PRIVATE = ".openams"
_SESSION: Any = None
_SESSION_LOCK = threading.Lock()
META_KEY = "openams"


def _h(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def new_etag() -> str:
    return f'"0x{uuid.uuid4().hex[:15].upper()}"'


def translate(exc: Exception, container: str = "", name: str | None = None) -> StorageError:
    """A botocore exception as the StorageError the Azure blob surface should answer.

    Missing keys become BlobNotFound (callers that can tell a missing container refine it);
    credential and bucket problems are the operator's, so they are 500s, not the caller's 403s.
    """
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500)
        if code in ("NoSuchKey", "NotFound", "404") or (status == 404 and code != "NoSuchBucket"):
            return not_found(container, name or "")
        if code == "InvalidRange" or status == 416:
            return StorageError(416, "InvalidRange", "The range specified is invalid for the current size of "
                                "the resource.")
        if code in ("PreconditionFailed", "412") or status == 412:
            return StorageError(412, "ConditionNotMet", "The blob changed while it was being used.")
        if code == "KeyTooLongError":
            return StorageError(400, "InvalidResourceName", "The blob name is too long for the S3 storage "
                                "backend (S3 keys are at most 1024 bytes).")
        if code in ("MetadataTooLarge",):
            return StorageError(400, "InvalidMetadata", "The blob's metadata and properties are too large "
                                "for the S3 storage backend.")
        if code in ("SlowDown", "ServiceUnavailable", "RequestTimeout") or status == 503:
            return StorageError(503, "ServerBusy", "The S3 storage backend is busy; retry later.")
        if status in (401, 403) or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageError(500, "InternalError", f"The S3 storage backend refused openams' credentials "
                                f"({code or status}); check the s3_* settings.")
        return StorageError(500, "InternalError", f"The S3 storage backend failed ({code or status}).")
    from botocore.exceptions import BotoCoreError

    if isinstance(exc, BotoCoreError):
        return StorageError(503, "ServerBusy", "The S3 storage backend is not reachable "
                            f"({type(exc).__name__}); retry later.")
    return StorageError(500, "InternalError", f"The S3 storage backend failed: {type(exc).__name__}.")


def _is_missing(exc: StorageError) -> bool:
    return exc.status == 404


class S3Backend(Staging):
    """`BlobBackend` on one S3 bucket (see the module docstring for the layout)."""

    name = "s3"

    def __init__(self, settings: Any) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        if not settings.s3_bucket:
            raise ValueError("storage_backend 's3' needs s3_bucket (OPENAMS_S3_BUCKET)")
        self.bucket = settings.s3_bucket
        self.region = settings.s3_region or "us-east-1"
        config = Config(
            region_name=self.region, signature_version="s3v4", max_pool_connections=32,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"} if settings.s3_endpoint_url else {},
            # S3-compatible servers (MinIO, Ceph, moto) do not all speak the newer default checksums
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        )
        with _SESSION_LOCK:  # one shared session: loading botocore's models costs ~0.5 s each time
            global _SESSION
            if _SESSION is None:
                _SESSION = boto3.session.Session()
            self.s3 = _SESSION.client(
                "s3", endpoint_url=settings.s3_endpoint_url or None, config=config,
                aws_access_key_id=settings.s3_access_key or None,
                aws_secret_access_key=settings.s3_secret_key or None)
        # 8 MiB parts, 4 at a time: at most ~32 MiB in flight per upload however big the file
        self.transfer = TransferConfig(multipart_threshold=64 * 1024 * 1024, multipart_chunksize=MIN_PART,
                                       max_concurrency=4, use_threads=True)
        self.staging = Path(settings.data_dir) / "spool"
        self.staging.mkdir(parents=True, exist_ok=True)
        self._bucket_ready = False
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._stage_counts: dict[str, int] = {}

    # keys, locks, errors -----------------------------------------------------------------------
    @staticmethod
    def _base(account: str, container: str) -> str:
        validate_account(account)
        validate_container(container)
        return f"{account}/{container}/"

    @staticmethod
    def _private(account: str, container: str) -> str:
        return f"{PRIVATE}/{account}/{container}/"

    def _key(self, account: str, container: str, name: str) -> str:
        validate_blob_name(name)
        return self._base(account, container) + name

    def _blocks_prefix(self, account: str, container: str, name: str) -> str:
        return f"{self._private(account, container)}blocks/{_h(name)}/"

    def _maps_prefix(self, account: str, container: str, name: str) -> str:
        return f"{self._private(account, container)}blockmaps/{_h(name)}/"

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    @contextmanager
    def _errors(self, container: str = "", name: str | None = None) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, container, name) from exc

    def _ensure_bucket(self) -> None:
        """Create the bucket on first use (not in __init__, so a server can start while S3 is down)."""
        if self._bucket_ready:
            return
        from botocore.exceptions import ClientError

        with self._guard, self._errors():
            if self._bucket_ready:
                return
            try:
                self.s3.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) != 404:
                    raise
                kwargs: dict[str, Any] = {"Bucket": self.bucket}
                if self.region != "us-east-1":
                    kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
                try:
                    self.s3.create_bucket(**kwargs)
                except ClientError as exc2:
                    if exc2.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou",
                                                                           "BucketAlreadyExists"):
                        raise
            self._bucket_ready = True

    # spooling ----------------------------------------------------------------------------------
    # small S3 helpers --------------------------------------------------------------------------
    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) == 404:
                return None
            raise

    def _keys(self, prefix: str, start_after: str = "") -> Iterator[dict[str, Any]]:
        """Every object under `prefix` (after `start_after`), in key order."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        while True:
            resp = self.s3.list_objects_v2(**kwargs)
            yield from resp.get("Contents", [])
            if not resp.get("IsTruncated"):
                return
            kwargs.pop("StartAfter", None)
            kwargs["ContinuationToken"] = resp["NextContinuationToken"]

    def _delete_prefix(self, prefix: str, keep: str = "") -> None:
        batch: list[dict[str, str]] = []
        for obj in self._keys(prefix):
            if obj["Key"] != keep:
                batch.append({"Key": obj["Key"]})
            if len(batch) == 1000:
                self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                batch = []
        if batch:
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def _require_container(self, account: str, container: str) -> None:
        if not self.container_exists(account, container):
            raise not_found(container)

    # containers --------------------------------------------------------------------------------
    def create_container(self, account: str, container: str) -> None:
        from botocore.exceptions import ClientError

        marker = self._private(account, container) + "container.json"
        self._base(account, container)
        self._ensure_bucket()
        with self._lock(marker), self._errors(container):
            if self._head(marker) is not None:
                raise StorageError(409, "ContainerAlreadyExists", "The specified container already exists.")
            # leftovers of a deletion that crashed half-way must not reappear in the new container
            self._delete_prefix(self._base(account, container))
            self._delete_prefix(self._private(account, container))
            body = json.dumps({"created": datetime.now(UTC).isoformat(), "etag": new_etag()}).encode()
            try:
                self.s3.put_object(Bucket=self.bucket, Key=marker, Body=body, IfNoneMatch="*",
                                   ContentType="application/json")
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                if status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise StorageError(409, "ContainerAlreadyExists",
                                       "The specified container already exists.") from None
                if status != 501:
                    raise
                # a server without conditional writes: the in-process lock is all we have
                self.s3.put_object(Bucket=self.bucket, Key=marker, Body=body, ContentType="application/json")

    def delete_container(self, account: str, container: str) -> None:
        marker = self._private(account, container) + "container.json"
        self._base(account, container)
        self._ensure_bucket()
        with self._lock(marker), self._errors(container):
            if self._head(marker) is None:
                raise not_found(container)
            # the marker goes first, so the container disappears at once; its objects follow
            self.s3.delete_object(Bucket=self.bucket, Key=marker)
            self._delete_prefix(self._base(account, container))
            self._delete_prefix(self._private(account, container))

    def container_exists(self, account: str, container: str) -> bool:
        marker = self._private(account, container) + "container.json"
        self._base(account, container)
        self._ensure_bucket()
        with self._errors(container):
            return self._head(marker) is not None

    # properties <-> object metadata ------------------------------------------------------------
    @staticmethod
    def _encode(props: BlobProperties, version: str) -> dict[str, str]:
        doc = {"etag": props.etag, "created": props.created.isoformat(),
               "modified": props.last_modified.isoformat(), "settings": asdict(props.settings),
               "metadata": props.metadata, "md5": props.content_md5, "v": version}
        return {META_KEY: json.dumps(doc, separators=(",", ":"), ensure_ascii=True)}

    @staticmethod
    def _decode(name: str, head: dict[str, Any]) -> tuple[BlobProperties, str]:
        """(properties, content version) from a HEAD/GET answer.

        An object written by another tool (no openams field) still shows up as a blob, with
        properties derived from what S3 knows about it.
        """
        raw = (head.get("Metadata") or {}).get(META_KEY)
        if raw:
            doc = json.loads(raw)
            props = BlobProperties(name, int(head["ContentLength"]), doc["etag"],
                                   datetime.fromisoformat(doc["created"]),
                                   datetime.fromisoformat(doc["modified"]),
                                   ContentSettings(**doc["settings"]), dict(doc["metadata"]), doc.get("md5"))
            return props, str(doc.get("v") or "")
        modified = head.get("LastModified") or datetime.now(UTC)
        etag = str(head.get("ETag") or "").strip('"')
        props = BlobProperties(name, int(head["ContentLength"]), f'"{etag}"', modified, modified,
                               ContentSettings(content_type=head.get("ContentType")))
        return props, ""

    @staticmethod
    def _content_type(settings: ContentSettings) -> str:
        return settings.content_type or "application/octet-stream"

    # writes ------------------------------------------------------------------------------------
    def put_blob(self, account: str, container: str, name: str, spool: Spool, settings: ContentSettings,
                 metadata: dict[str, str]) -> BlobProperties:
        key = self._key(account, container, name)
        self._require_container(account, container)
        spool.finish()
        with self._lock(key), self._errors(container, name):
            old = self._head(key)
            now = datetime.now(UTC)
            created = self._decode(name, old)[0].created if old else now
            props = BlobProperties(name, spool.size, new_etag(), created, now, settings, dict(metadata),
                                   settings.content_md5 or spool.md5_b64)
            version = uuid.uuid4().hex
            self.s3.upload_file(str(spool.path), self.bucket, key, Config=self.transfer, ExtraArgs={
                "Metadata": self._encode(props, version), "ContentType": self._content_type(settings)})
            # Put Blob discards the blob's uncommitted blocks and its committed block list
            self._delete_prefix(self._blocks_prefix(account, container, name))
            self._prune_maps(account, container, name)
            self._stage_counts.pop(key, None)
            return props

    def stage_block(self, account: str, container: str, name: str, block_id: str, spool: Spool) -> None:
        key = self._key(account, container, name)
        raw = validate_block_id(block_id)
        self._require_container(account, container)
        prefix = self._blocks_prefix(account, container, name)
        with self._errors(container, name):
            first = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1).get("Contents", [])
            if first and len(first[0]["Key"].rsplit("/", 1)[1]) != len(raw.hex()):
                raise StorageError(400, "InvalidBlobOrBlock", "The specified blob or block content is "
                                   "invalid (block ids of one blob must all have the same length).")
            self._check_block_count(key, prefix, raw.hex())
            spool.finish()
            self.s3.upload_file(str(spool.path), self.bucket, prefix + raw.hex(), Config=self.transfer)

    def _check_block_count(self, key: str, prefix: str, hexid: str) -> None:
        """Enforce the uncommitted-block cap without listing every block on every Put Block.

        The per-blob counter only over-counts (restaged ids, other processes' commits); when it
        reaches the cap, the real count is taken from S3 and decides.
        """
        with self._guard:
            count = self._stage_counts.get(key, 0) + 1
            self._stage_counts[key] = count
        if count < MAX_UNCOMMITTED_BLOCKS:
            return
        names = {obj["Key"].rsplit("/", 1)[1] for obj in self._keys(prefix)}
        with self._guard:
            self._stage_counts[key] = len(names) + 1
        if hexid not in names and len(names) >= MAX_UNCOMMITTED_BLOCKS:
            raise StorageError(409, "BlockCountExceedsLimit",
                               f"The uncommitted block count cannot exceed {MAX_UNCOMMITTED_BLOCKS}.")

    def _load_map(self, account: str, container: str, name: str, version: str) -> list[dict[str, Any]]:
        if not version:
            return []
        from botocore.exceptions import ClientError

        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=f"{self._maps_prefix(account, container, name)}"
                                                                f"{version}.json")
        except ClientError as exc:
            if int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) == 404:
                return []  # written by Put Blob: no committed blocks
            raise
        body = obj["Body"]
        try:
            return list(json.loads(body.read())["blocks"])
        finally:
            body.close()

    def _prune_maps(self, account: str, container: str, name: str) -> None:
        """Delete every block map but the one of the version now stored.

        The version is read back after our own write rather than assumed to be ours: another
        process may have committed the same blob just after us, and its map must survive."""
        head = self._head(self._key(account, container, name))
        current = self._decode(name, head)[1] if head else ""
        maps = self._maps_prefix(account, container, name)
        self._delete_prefix(maps, keep=f"{maps}{current}.json" if current else "")

    def _staged(self, account: str, container: str, name: str) -> dict[str, dict[str, Any]]:
        """Staged blocks by id hex: {hex: {"key", "size", "modified"}}."""
        prefix = self._blocks_prefix(account, container, name)
        return {obj["Key"][len(prefix):]: {"key": obj["Key"], "size": int(obj["Size"]),
                                           "modified": obj.get("LastModified")}
                for obj in self._keys(prefix)}

    def commit_blocks(self, account: str, container: str, name: str, blocks: list[tuple[str, str]],
                      settings: ContentSettings, metadata: dict[str, str]) -> BlobProperties:
        key = self._key(account, container, name)
        if len(blocks) > MAX_COMMITTED_BLOCKS:
            raise StorageError(400, "BlockListTooLong", f"The block list may not contain more than "
                               f"{MAX_COMMITTED_BLOCKS} blocks.")
        ids = [(kind, validate_block_id(block_id)) for kind, block_id in blocks]
        self._require_container(account, container)
        with self._lock(key), self._errors(container, name):
            old = self._head(key)
            old_props, old_version = self._decode(name, old) if old else (None, "")
            committed = {b["id"]: b for b in self._load_map(account, container, name, old_version)}
            staged = self._staged(account, container, name)
            # (source key, offset, size, S3 ETag the source must still have)
            segments: list[tuple[str, int, int, str | None]] = []
            block_map: list[dict[str, Any]] = []
            offset = 0
            for kind, raw in ids:
                canonical = base64.b64encode(raw).decode("ascii")
                hexid = raw.hex()
                if kind in ("Uncommitted", "Latest") and hexid in staged:
                    size = staged[hexid]["size"]
                    segments.append((staged[hexid]["key"], 0, size, None))
                elif kind in ("Committed", "Latest") and canonical in committed and old is not None:
                    b = committed[canonical]
                    size = int(b["size"])
                    segments.append((key, int(b["offset"]), size, str(old["ETag"])))
                else:
                    raise StorageError(400, "InvalidBlockList", "The specified block list is invalid.")
                block_map.append({"id": canonical, "size": size, "offset": offset})
                offset += size
            if offset > MAX_BLOB_SIZE:
                raise StorageError(413, "RequestBodyTooLarge", "The blob would exceed the maximum blob size.")
            now = datetime.now(UTC)
            props = BlobProperties(name, offset, new_etag(), old_props.created if old_props else now, now,
                                   settings, dict(metadata), settings.content_md5)
            version = uuid.uuid4().hex
            maps = self._maps_prefix(account, container, name)
            if block_map:
                self.s3.put_object(Bucket=self.bucket, Key=f"{maps}{version}.json",
                                   Body=json.dumps({"blocks": block_map}).encode(),
                                   ContentType="application/json")
            try:
                self._assemble(key, segments, offset, self._encode(props, version),
                               self._content_type(settings))
            except BaseException as exc:
                self.s3.delete_object(Bucket=self.bucket, Key=f"{maps}{version}.json")
                if translate(exc).status == 404:  # a staged block vanished (a concurrent commit)
                    raise StorageError(400, "InvalidBlockList",
                                       "The specified block list is invalid.") from exc
                raise
            # after a commit Azure discards every uncommitted block of the blob
            self._delete_prefix(self._blocks_prefix(account, container, name))
            self._prune_maps(account, container, name)
            self._stage_counts.pop(key, None)
            return props

    def _assemble(self, key: str, segments: list[tuple[str, int, int, str | None]], total: int,
                  meta: dict[str, str], content_type: str) -> None:
        """Write `segments` (byte ranges of existing objects) as the object `key`, atomically."""
        part_size = max(MIN_PART, math.ceil(total / MAX_PARTS))
        pending_path = self.staging / f"commit-{uuid.uuid4().hex}.part"
        try:
            with open(pending_path, "w+b") as pending:
                if total <= part_size:
                    for src, start, size, etag in segments:
                        self._fetch(src, start, size, etag, pending)
                    pending.seek(0)
                    self.s3.put_object(Bucket=self.bucket, Key=key, Body=pending, ContentLength=total,
                                       Metadata=meta, ContentType=content_type)
                    return
                self._multipart(key, segments, part_size, meta, content_type, pending)
        finally:
            pending_path.unlink(missing_ok=True)

    def _multipart(self, key: str, segments: list[tuple[str, int, int, str | None]], part_size: int,
                   meta: dict[str, str], content_type: str, pending: IO[bytes]) -> None:
        upload = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key, Metadata=meta,
                                                 ContentType=content_type)["UploadId"]
        parts: list[dict[str, Any]] = []
        held = 0

        def flush() -> None:
            nonlocal held
            pending.seek(0)
            number = len(parts) + 1
            resp = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=number,
                                       Body=pending, ContentLength=held)
            parts.append({"ETag": resp["ETag"], "PartNumber": number})
            pending.seek(0)
            pending.truncate()
            held = 0

        try:
            for src, start, size, etag in segments:
                while size > 0:
                    if held == 0 and size >= part_size:
                        # a whole big piece: copied inside S3, never through this machine
                        number = len(parts) + 1
                        copy: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "UploadId": upload,
                                                "PartNumber": number,
                                                "CopySource": {"Bucket": self.bucket, "Key": src},
                                                "CopySourceRange": f"bytes={start}-{start + size - 1}"}
                        if etag:
                            copy["CopySourceIfMatch"] = etag
                        resp = self.s3.upload_part_copy(**copy)
                        parts.append({"ETag": resp["CopyPartResult"]["ETag"], "PartNumber": number})
                        start, size = start + size, 0
                    else:
                        take = min(size, part_size - held)
                        self._fetch(src, start, take, etag, pending)
                        held += take
                        start, size = start + take, size - take
                        if held >= part_size:
                            flush()
            if held:
                flush()
            self.s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload,
                                              MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            except Exception:
                pass
            raise

    def _fetch(self, src: str, start: int, size: int, etag: str | None, out: IO[bytes]) -> None:
        """Append bytes [start, start+size) of object `src` to `out`, a chunk at a time."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": src,
                                  "Range": f"bytes={start}-{start + size - 1}"}
        if etag:
            kwargs["IfMatch"] = etag
        obj = self.s3.get_object(**kwargs)
        left = size
        body = obj["Body"]
        try:
            for chunk in body.iter_chunks(CHUNK):
                out.write(chunk[:left])
                left -= len(chunk)
                if left <= 0:
                    break
        finally:
            body.close()
        if left > 0:
            raise StorageError(500, "InternalError", "A stored block is truncated.")

    # reads -------------------------------------------------------------------------------------
    def block_list(self, account: str, container: str, name: str) -> tuple[list[BlockInfo], list[BlockInfo]]:
        key = self._key(account, container, name)
        self._require_container(account, container)
        with self._errors(container, name):
            head = self._head(key)
            version = self._decode(name, head)[1] if head else ""
            committed = [BlockInfo(b["id"], int(b["size"]))
                         for b in self._load_map(account, container, name, version)]
            staged = sorted(self._staged(account, container, name).items(),
                            key=lambda kv: (kv[1]["modified"] or datetime.min.replace(tzinfo=UTC), kv[0]))
        uncommitted = [BlockInfo(base64.b64encode(bytes.fromhex(hexid)).decode("ascii"), info["size"])
                       for hexid, info in staged]
        if head is None and not uncommitted:
            raise not_found(container, name)
        return committed, uncommitted

    def properties(self, account: str, container: str, name: str) -> BlobProperties | None:
        key = self._key(account, container, name)
        with self._errors(container, name):
            self._ensure_bucket()
            head = self._head(key)
        if head is None:
            self._require_container(account, container)
            return None
        return self._decode(name, head)[0]

    def read(self, account: str, container: str, name: str, start: int, end: int) -> Iterator[bytes]:
        if end < start:  # an empty range (an empty blob): nothing to fetch, and the services refuse it
            if self.properties(account, container, name) is None:
                raise not_found(container, name)
            return iter(())
        key = self._key(account, container, name)
        try:
            with self._errors(container, name):
                obj = self.s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}")
        except StorageError as exc:
            if _is_missing(exc):
                self._require_container(account, container)
            raise
        body = obj["Body"]
        left = end - start + 1

        def chunks() -> Iterator[bytes]:
            nonlocal left
            try:
                with self._errors(container, name):
                    for chunk in body.iter_chunks(CHUNK):
                        if left <= 0:
                            return
                        out = chunk[:left]
                        left -= len(out)
                        yield out
            finally:
                body.close()

        return chunks()

    def delete_blob(self, account: str, container: str, name: str) -> None:
        key = self._key(account, container, name)
        self._require_container(account, container)
        with self._lock(key), self._errors(container, name):
            if self._head(key) is None:
                raise not_found(container, name)
            self.s3.delete_object(Bucket=self.bucket, Key=key)
            self._delete_prefix(self._blocks_prefix(account, container, name))
            self._delete_prefix(self._maps_prefix(account, container, name))
            self._stage_counts.pop(key, None)

    def list_blobs(self, account: str, container: str, prefix: str = "", marker: str = "",
                   max_results: int = 5000) -> tuple[list[BlobProperties], str]:
        """Blobs named > `marker` in name order (S3 lists keys in UTF-8 byte order, which is the
        same as code-point order). S3 listings carry no user metadata, so each listed blob costs a
        HEAD; they run in parallel."""
        base = self._base(account, container)
        self._require_container(account, container)
        keys: list[str] = []
        with self._errors(container):
            for obj in self._keys(base + prefix, base + marker if marker else ""):
                if obj["Key"] == base:  # a "folder" object another tool made: no blob name
                    continue
                keys.append(obj["Key"])
                if len(keys) > max_results:
                    break
            more = len(keys) > max_results
            keys = keys[:max_results]

            def head(k: str) -> BlobProperties | None:
                found = self._head(k)
                return self._decode(k[len(base):], found)[0] if found else None

            with ThreadPoolExecutor(max_workers=min(16, max(1, len(keys)))) as pool:
                found = list(pool.map(head, keys))
        page = [p for p in found if p is not None]  # deleted while listing: gone
        return page, keys[-1][len(base):] if more and keys else ""

    def _rewrite(self, account: str, container: str, name: str,
                 change: Callable[[BlobProperties], None]) -> BlobProperties:
        """Change a blob's properties: an in-place copy with new metadata (content unchanged)."""
        key = self._key(account, container, name)
        self._require_container(account, container)
        with self._lock(key), self._errors(container, name):
            for attempt in range(3):
                head = self._head(key)
                if head is None:
                    raise not_found(container, name)
                props, version = self._decode(name, head)
                change(props)
                props.etag = new_etag()
                props.last_modified = datetime.now(UTC)
                meta = self._encode(props, version)
                try:
                    if props.size <= MAX_COPY:
                        self.s3.copy_object(Bucket=self.bucket, Key=key, MetadataDirective="REPLACE",
                                            CopySource={"Bucket": self.bucket, "Key": key}, Metadata=meta,
                                            ContentType=self._content_type(props.settings),
                                            CopySourceIfMatch=str(head["ETag"]))
                    else:
                        source_etag = str(head["ETag"])
                        segments: list[tuple[str, int, int, str | None]] = [
                            (key, start, min(MAX_COPY, props.size - start), source_etag)
                            for start in range(0, props.size, MAX_COPY)]
                        self._assemble(key, segments, props.size, meta, self._content_type(props.settings))
                    return props
                except StorageError as exc:
                    if exc.status != 412 or attempt == 2:
                        raise
                except Exception as exc:
                    err = translate(exc, container, name)
                    if err.status != 412 or attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def set_metadata(self, account: str, container: str, name: str,
                     metadata: dict[str, str]) -> BlobProperties:
        return self._rewrite(account, container, name, lambda p: setattr(p, "metadata", dict(metadata)))

    def set_properties(self, account: str, container: str, name: str,
                       settings: ContentSettings) -> BlobProperties:
        def change(p: BlobProperties) -> None:
            p.settings = settings
            # like the local backend: the stored Content-MD5 survives unless a new one is given
            p.content_md5 = settings.content_md5 or p.content_md5

        return self._rewrite(account, container, name, change)
