"""Azure Blob backend: blob content lives in a real Azure Storage account (or Azurite).

Operators who already pay for Azure Storage keep their media there; openams then only fronts it
with its own SAS-checked blob surface. Every interface call maps onto one or two real Blob service
operations, so the service itself keeps the block-blob semantics (staged blocks, atomic commit,
Latest/Committed/Uncommitted) and we add nothing that could drift from them.

Container mapping. Our (storage account, container) pair becomes ONE container in the configured
Azure account (`settings.azure_connection_string`):

    <account>-<container>                    when that is at most 62 characters
    <account>-<container head>-<sha256 hex>  otherwise, exactly 63 characters

Account names are `[a-z0-9]{3,24}` (no hyphen), so the plain form is unambiguous; the hashed form
always has length 63 and the plain form never does, so the two can never collide. Both are valid
Azure container names (lowercase, no double hyphen, alphanumeric at both ends). The hash covers
`<account>/<container>`; the readable head is only there to help an operator browsing the account.

Block ids. The public `BlobClient` block methods take *text* ids and base64-encode them again,
which cannot carry the binary ids real clients send (the .NET SDK uses GUID bytes) and would push
a 64-byte id past the service's limit. So staging and listing blocks go through the generated REST
layer the SDK is built on (`BlobClient._client`), passing the client's id through unchanged, and
Put Block List is sent as our own XML body because the SDK groups the list by kind and so loses
the order of a mixed Committed/Uncommitted/Latest list.

Memory. Put Blob and Put Block stream the spool file as the request body (one request, constant
memory); reads come back in chunks of at most `CHUNK` bytes.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from threading import Lock
from typing import Any
from xml.sax.saxutils import escape

from .base import (
    MAX_COMMITTED_BLOCKS,
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

CHUNK = 4 * 1024 * 1024
_MARKER_CACHE = 256

_STATUS_CODES = {400: "InvalidInput", 404: "ResourceNotFound", 409: "Conflict", 412: "ConditionNotMet",
                 416: "InvalidRange"}
_DEFAULT_MESSAGES = {
    "ContainerNotFound": "The specified container does not exist.",
    "BlobNotFound": "The specified blob does not exist.",
    "ContainerAlreadyExists": "The specified container already exists.",
    "InvalidBlockList": "The specified block list is invalid.",
    "InvalidRange": "The range specified is invalid for the current size of the resource.",
    "ConditionNotMet": "The condition specified using HTTP conditional header(s) is not met.",
}


def azure_container_name(account: str, container: str) -> str:
    """The real Azure container holding our (account, container); see the module docstring."""
    plain = f"{account}-{container}"
    if len(plain) <= 62:
        return plain
    digest = hashlib.sha256(f"{account}/{container}".encode()).hexdigest()
    head = container[: 63 - len(account) - 2 - 32].rstrip("-")
    return f"{account}-{head}-{digest[: 63 - len(account) - 2 - len(head)]}"


def _canonical_id(block_id: str) -> str:
    """The block id in canonical base64, so equal bytes always reach the service as equal ids."""
    return base64.b64encode(validate_block_id(block_id)).decode("ascii")


def _utc(value: datetime | str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, str):  # a raw Last-Modified header
        value = parsedate_to_datetime(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _b64(value: Any) -> str | None:
    if not value:
        return None
    if isinstance(value, str):
        return value
    return base64.b64encode(bytes(value)).decode("ascii")


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _error_code(exc: Any) -> str:
    code = getattr(exc, "error_code", None)
    if code:
        return str(getattr(code, "value", code))
    response = getattr(exc, "response", None)
    if response is not None:
        header = response.headers.get("x-ms-error-code")
        if header:
            return str(header)
        try:
            text = response.text()
        except Exception:
            text = ""
        if "<Code>" in text:
            return text.split("<Code>", 1)[1].split("</Code>", 1)[0].strip()
    return ""


def _error_message(exc: Any, code: str) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            text = response.text()
        except Exception:
            text = ""
        if "<Message>" in text:
            return text.split("<Message>", 1)[1].split("</Message>", 1)[0].strip().splitlines()[0]
    message = getattr(exc, "message", None) or getattr(exc, "reason", None) or str(exc)
    first = str(message).strip().splitlines()[0] if str(message).strip() else ""
    if not first or first.startswith("Operation returned an invalid status"):
        return _DEFAULT_MESSAGES.get(code, first or "The storage backend reported an error.")
    return first


def translate(exc: Exception) -> StorageError:
    """An azure.core exception as the StorageError carrying the status and code Azure answered.

    401/403 are the exception: they mean *our* credentials for the backend account are wrong, not
    that the caller may not act, so they become a 500 the operator can act on.
    """
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, HttpResponseError) and (exc.status_code or exc.response is not None):
        status = exc.status_code or exc.response.status_code  # type: ignore[union-attr]
        code = _error_code(exc)
        if status in (401, 403):
            return StorageError(500, "InternalError", "The Azure storage backend refused openams' "
                                f"credentials ({code or status}); check azure_connection_string.")
        if not code:
            code = _STATUS_CODES.get(status, "InternalError")
        return StorageError(status, code, _error_message(exc, code))
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return StorageError(503, "ServerBusy", "The Azure storage backend is not reachable; retry later.")
    return StorageError(500, "InternalError", f"The Azure storage backend failed: {type(exc).__name__}.")


@contextmanager
def _azure_errors() -> Iterator[None]:
    from azure.core.exceptions import AzureError

    try:
        yield
    except AzureError as exc:
        raise translate(exc) from exc


def _settings_of(cs: Any) -> ContentSettings:
    return ContentSettings(
        content_type=cs.content_type or None,
        content_encoding=cs.content_encoding or None,
        content_language=cs.content_language or None,
        content_disposition=cs.content_disposition or None,
        cache_control=cs.cache_control or None,
        content_md5=_b64(cs.content_md5),
    )


def _props_of(name: str, p: Any) -> BlobProperties:
    settings = _settings_of(p.content_settings)
    return BlobProperties(
        name=name,
        size=int(p.size or 0),
        etag=_quoted(p.etag),
        created=_utc(p.creation_time),
        last_modified=_utc(p.last_modified),
        settings=settings,
        metadata=dict(p.metadata or {}),
        content_md5=settings.content_md5,
    )


def _settings_headers(settings: ContentSettings) -> dict[str, str]:
    pairs = {
        "x-ms-blob-content-type": settings.content_type,
        "x-ms-blob-content-encoding": settings.content_encoding,
        "x-ms-blob-content-language": settings.content_language,
        "x-ms-blob-content-disposition": settings.content_disposition,
        "x-ms-blob-cache-control": settings.cache_control,
        "x-ms-blob-content-md5": settings.content_md5,
    }
    return {k: v for k, v in pairs.items() if v}


def _http_headers(settings: ContentSettings, md5: str | None) -> Any:
    from azure.storage.blob._generated.models import BlobHTTPHeaders

    return BlobHTTPHeaders(
        blob_cache_control=settings.cache_control,
        blob_content_type=settings.content_type,
        blob_content_md5=base64.b64decode(md5) if md5 else None,
        blob_content_encoding=settings.content_encoding,
        blob_content_language=settings.content_language,
        blob_content_disposition=settings.content_disposition,
    )


class AzureBackend(Staging):
    """`BlobBackend` on an Azure Storage account (see the module docstring for the mapping)."""

    name = "azure"

    def __init__(self, settings: Any) -> None:
        from azure.storage.blob import BlobServiceClient, ExponentialRetry

        if not settings.azure_connection_string:
            raise ValueError("storage_backend 'azure' needs azure_connection_string "
                             "(OPENAMS_AZURE_CONNECTION_STRING)")
        # small single-GET and chunk sizes keep downloads in constant memory; short retries (the
        # SDK default backs off for about a minute) because our own clients retry a 503 themselves
        self.service = BlobServiceClient.from_connection_string(
            settings.azure_connection_string, max_single_get_size=CHUNK, max_chunk_get_size=CHUNK,
            connection_timeout=20, read_timeout=300,
            retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2))
        self.staging = Path(settings.data_dir) / "spool"
        self.staging.mkdir(parents=True, exist_ok=True)
        # (account, container, prefix, our marker) -> Azure continuation token of the page holding
        # the next blob, so paging through a big container does not rescan it from the start
        self._markers: OrderedDict[tuple[str, str, str, str], str | None] = OrderedDict()
        self._markers_lock = Lock()

    # clients -----------------------------------------------------------------------------------
    def _container(self, account: str, container: str) -> Any:
        validate_account(account)
        validate_container(container)
        return self.service.get_container_client(azure_container_name(account, container))

    def _blob(self, account: str, container: str, name: str) -> Any:
        validate_blob_name(name)
        return self._container(account, container).get_blob_client(name)

    # spooling ----------------------------------------------------------------------------------
    # containers --------------------------------------------------------------------------------
    def create_container(self, account: str, container: str) -> None:
        with _azure_errors():
            self._container(account, container).create_container()

    def delete_container(self, account: str, container: str) -> None:
        with _azure_errors():
            self._container(account, container).delete_container()

    def container_exists(self, account: str, container: str) -> bool:
        with _azure_errors():
            return bool(self._container(account, container).exists())

    # writes ------------------------------------------------------------------------------------
    def put_blob(self, account: str, container: str, name: str, spool: Spool, settings: ContentSettings,
                 metadata: dict[str, str]) -> BlobProperties:
        blob = self._blob(account, container, name)
        spool.finish()
        md5 = settings.content_md5 or spool.md5_b64
        with _azure_errors(), open(spool.path, "rb") as fh:
            body: Any = fh if spool.size else b""  # an empty file would go out chunked, which Azure refuses
            # one streamed Put Blob: the service replaces the blob atomically and drops its
            # uncommitted blocks, exactly the semantics we promise
            headers = blob._client.block_blob.upload(
                content_length=spool.size, body=body,
                headers={f"x-ms-meta-{k}": v for k, v in metadata.items()},
                blob_http_headers=_http_headers(settings, md5), cls=lambda _r, _o, h: h)
            return self._after_write(blob, name, headers, md5)

    def _after_write(self, blob: Any, name: str, headers: dict[str, Any], md5: str | None) -> BlobProperties:
        """Properties after a write: read back, but with the etag/time of *our* write."""
        props = _props_of(name, blob.get_blob_properties())
        etag = headers.get("ETag")
        if etag and _quoted(etag) != props.etag:  # someone wrote again in between; report ours
            props.etag = _quoted(etag)
            props.last_modified = _utc(headers.get("Last-Modified"))
            props.content_md5 = md5
        return props

    def stage_block(self, account: str, container: str, name: str, block_id: str, spool: Spool) -> None:
        blob = self._blob(account, container, name)
        wire_id = _canonical_id(block_id)
        spool.finish()
        with _azure_errors(), open(spool.path, "rb") as fh:
            body: Any = fh if spool.size else b""
            blob._client.block_blob.stage_block(block_id=wire_id, content_length=spool.size, body=body)

    def commit_blocks(self, account: str, container: str, name: str, blocks: list[tuple[str, str]],
                      settings: ContentSettings, metadata: dict[str, str]) -> BlobProperties:
        from azure.core.rest import HttpRequest

        blob = self._blob(account, container, name)
        if len(blocks) > MAX_COMMITTED_BLOCKS:
            raise StorageError(400, "BlockListTooLong", f"The block list may not contain more than "
                               f"{MAX_COMMITTED_BLOCKS} blocks.")
        parts = ['<?xml version="1.0" encoding="utf-8"?><BlockList>']
        for kind, block_id in blocks:
            if kind not in ("Latest", "Committed", "Uncommitted"):
                raise StorageError(400, "InvalidXmlDocument", f"Unknown block list element '{kind}'.")
            parts.append(f"<{kind}>{escape(_canonical_id(block_id))}</{kind}>")
        parts.append("</BlockList>")
        body = "".join(parts).encode("utf-8")
        headers = {"x-ms-version": blob.api_version, "Content-Type": "application/xml; charset=utf-8",
                   "Content-Length": str(len(body)), **_settings_headers(settings)}
        headers.update({f"x-ms-meta-{k}": v for k, v in metadata.items()})
        request = HttpRequest("PUT", f"{blob.url}?comp=blocklist", headers=headers, content=body)
        with _azure_errors():
            response = blob._client._send_request(request)
            if response.status_code >= 300:
                from azure.core.exceptions import HttpResponseError

                raise HttpResponseError(response=response)
            return self._after_write(blob, name, dict(response.headers), settings.content_md5)

    # reads -------------------------------------------------------------------------------------
    def block_list(self, account: str, container: str, name: str) -> tuple[list[BlockInfo], list[BlockInfo]]:
        blob = self._blob(account, container, name)
        with _azure_errors():
            listing = blob._client.block_blob.get_block_list(list_type="all")
        committed = [BlockInfo(b.name, int(b.size)) for b in listing.committed_blocks or []]
        uncommitted = [BlockInfo(b.name, int(b.size)) for b in listing.uncommitted_blocks or []]
        return committed, uncommitted

    def properties(self, account: str, container: str, name: str) -> BlobProperties | None:
        blob = self._blob(account, container, name)
        try:
            with _azure_errors():
                return _props_of(name, blob.get_blob_properties())
        except StorageError as exc:
            if exc.code == "BlobNotFound":
                return None
            raise

    def read(self, account: str, container: str, name: str, start: int, end: int) -> Iterator[bytes]:
        if end < start:  # an empty range (an empty blob): nothing to fetch, and the services refuse it
            if self.properties(account, container, name) is None:
                raise not_found(container, name)
            return iter(())
        blob = self._blob(account, container, name)
        with _azure_errors():
            # the first GET happens here, so a missing blob or bad range fails before any byte is sent
            downloader = blob.download_blob(offset=start, length=end - start + 1, max_concurrency=1)
            source = downloader.chunks()

        def chunks() -> Iterator[bytes]:
            with _azure_errors():
                yield from source

        return chunks()

    def delete_blob(self, account: str, container: str, name: str) -> None:
        blob = self._blob(account, container, name)
        with _azure_errors():
            blob.delete_blob()

    def list_blobs(self, account: str, container: str, prefix: str = "", marker: str = "",
                   max_results: int = 5000) -> tuple[list[BlobProperties], str]:
        """Blobs named > `marker`, in name order.

        Azure's own markers are opaque, so our marker is the last name returned. To resume without
        rescanning, the Azure continuation token of the page holding the next blob is remembered
        for that marker (a small LRU); an unknown marker falls back to a scan from the start.
        """
        client = self._container(account, container)
        key = (account, container, prefix, marker)
        with self._markers_lock:
            token = self._markers.get(key) if marker else None
        per_page = min(5000, max_results + 1) if (token or not marker) else 5000
        items: list[BlobProperties] = []
        next_token: str | None = None
        with _azure_errors():
            pages = client.list_blobs(name_starts_with=prefix or None, include=["metadata"],
                                      results_per_page=per_page).by_page(continuation_token=token)
            page_token = token
            for page in pages:
                for item in page:
                    if marker and item.name <= marker:
                        continue
                    items.append(_props_of(item.name, item))
                    if len(items) > max_results:
                        next_token = page_token
                        break
                if len(items) > max_results:
                    break
                page_token = pages.continuation_token
                if not page_token:
                    break
        page_items = items[:max_results]
        if len(items) <= max_results:
            return page_items, ""
        next_marker = page_items[-1].name
        with self._markers_lock:
            self._markers[(account, container, prefix, next_marker)] = next_token
            while len(self._markers) > _MARKER_CACHE:
                self._markers.popitem(last=False)
        return page_items, next_marker

    def set_metadata(self, account: str, container: str, name: str,
                     metadata: dict[str, str]) -> BlobProperties:
        blob = self._blob(account, container, name)
        with _azure_errors():
            headers = blob.set_blob_metadata(metadata=dict(metadata))
            return self._after_write(blob, name, {"ETag": headers.get("etag"),
                                                  "Last-Modified": headers.get("last_modified")}, None)

    def set_properties(self, account: str, container: str, name: str,
                       settings: ContentSettings) -> BlobProperties:
        from azure.storage.blob import ContentSettings as AzureContentSettings

        blob = self._blob(account, container, name)
        for attempt in range(3):
            with _azure_errors():
                current = blob.get_blob_properties()
            # Azure clears Content-MD5 when Set Blob Properties omits it; our contract keeps it
            md5 = settings.content_md5 or _b64(current.content_settings.content_md5)
            try:
                with _azure_errors():
                    headers = blob.set_http_headers(content_settings=AzureContentSettings(
                        content_type=settings.content_type, content_encoding=settings.content_encoding,
                        content_language=settings.content_language,
                        content_disposition=settings.content_disposition,
                        cache_control=settings.cache_control,
                        content_md5=bytearray(base64.b64decode(md5)) if md5 else None),
                        etag=current.etag, match_condition=_if_match())
                    return self._after_write(blob, name, {"ETag": headers.get("etag"),
                                                          "Last-Modified": headers.get("last_modified")}, md5)
            except StorageError as exc:
                # the blob changed between reading its MD5 and writing: read again
                if exc.status != 412 or attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _if_match() -> Any:
    from azure.core import MatchConditions

    return MatchConditions.IfNotModified
