"""The blob service: an Azure-Blob-compatible REST surface, path-style on its own port.

`/<storage-account>/<container>[/<blob>]` with the block-blob operations AMS clients use: Put Blob,
Put Block, Put Block List, Get Block List, Get Blob (ranged), Get Blob Properties, Set Blob
Metadata/Properties, Delete Blob, List Blobs, and Create/Delete Container. Requests are authorised by
a service SAS (verified with the account keys; `si` is a Locator, so deleting or expiring the
Locator revokes the URL at once) or by Shared Key / Shared Key Lite. Bodies are spooled to disk in
constant memory; failures answer the Azure XML error format.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote

import anyio

from ..auth import sas
from ..entities.storage_accounts import storage_account_exists
from ..storage.base import (
    MAX_BLOCK_SIZE,
    MAX_COMMITTED_BLOCKS,
    MAX_PUT_BLOB_SIZE,
    BlobProperties,
    ContentSettings,
    StorageError,
    validate_blob_name,
    validate_block_id,
    validate_container,
)
from .xml import block_list_body, error_body, http_date, list_blobs_body, parse_block_list

log = logging.getLogger("openams.blob")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

DEFAULT_VERSION = "2025-01-05"
OLD_BLOCK_LIMIT = 100 * 1024 * 1024
OLD_PUT_LIMIT = 256 * 1024 * 1024
CLOCK_SKEW = timedelta(minutes=5)
CORS_HEADERS = "*"
AUTH_FAILED = ("Server failed to authenticate the request. Make sure the value of Authorization header is "
               "formed correctly including the signature.")
NOT_AUTHORISED = "This request is not authorized to perform this operation using this"
TOO_LARGE = "The request body is too large and exceeds the maximum permissible limit"
SAS_FIELDS = frozenset({"sv", "ss", "srt", "sp", "st", "se", "sr", "si", "sip", "spr", "sig", "skoid"})


@dataclass
class BlobRequest:
    method: str
    account: str
    container: str
    blob: str | None
    raw_path: str
    query: list[tuple[str, str]]
    params: dict[str, str]
    headers: dict[str, str]
    request_id: str
    version: str
    extra: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class BlobReply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: Any = None
    length: int | None = None


class BlobApp:
    def __init__(self, runtime: Any) -> None:
        self.rt = runtime

    @property
    def backend(self) -> Any:
        return self.rt.storage

    # ---- ASGI entry ----------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request_id = str(uuid.uuid4())
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            headers[k.decode("latin-1").lower()] = v.decode("latin-1")
        version = headers.get("x-ms-version", "")
        try:
            reply = await self._handle(scope, receive, headers, request_id)
        except StorageError as exc:
            reply = self._error(exc, request_id, scope["method"] == "HEAD")
        except Exception:
            log.exception("unhandled blob error in request %s", request_id)
            internal = StorageError(500, "InternalError", "The server encountered an internal error.")
            reply = self._error(internal, request_id)
        base = [("x-ms-request-id", request_id), ("x-ms-version", version or DEFAULT_VERSION),
                ("Date", http_date(datetime.now(UTC))), ("Server", "openams-blob")]
        if "origin" in headers:
            base += [("Access-Control-Allow-Origin", headers["origin"]),
                     ("Access-Control-Expose-Headers", "*"), ("Access-Control-Allow-Credentials", "false")]
        if "x-ms-client-request-id" in headers:
            base.append(("x-ms-client-request-id", headers["x-ms-client-request-id"]))
        await self._send(send, reply, base, scope["method"] == "HEAD")

    async def _send(self, send: Send, reply: BlobReply, base: list[tuple[str, str]], head: bool) -> None:
        headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1"))
                   for k, v in [*reply.headers, *base]]
        length = reply.length if reply.stream is not None else len(reply.body)
        headers.append((b"content-length", str(length or 0).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        if head or reply.stream is None:
            await send({"type": "http.response.body", "body": b"" if head else reply.body})
            if head and reply.stream is not None:
                reply.stream.close()
            return
        it = reply.stream
        try:
            while True:
                chunk = await anyio.to_thread.run_sync(next, it, None)
                if chunk is None:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            it.close()

    def _error(self, exc: StorageError, request_id: str, head: bool = False) -> BlobReply:
        if exc.status == 304:
            return BlobReply(304)
        extra: list[tuple[str, str]] = list(getattr(exc, "headers", []))
        if head:  # a HEAD answer has no body, so no body type either
            return BlobReply(exc.status, [("x-ms-error-code", exc.code), *extra])
        body = error_body(exc.code, exc.message, request_id, datetime.now(UTC))
        headers = [("Content-Type", "application/xml"), ("x-ms-error-code", exc.code), *extra]
        return BlobReply(exc.status, headers, body)

    # ---- routing -------------------------------------------------------------------------------
    async def _handle(self, scope: dict[str, Any], receive: Receive, headers: dict[str, str],
                      request_id: str) -> BlobReply:
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?")[0]
        if raw_path == "/health":
            return BlobReply(200, [("Content-Type", "application/json")], b'{"status":"ok"}')
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        params = {k.lower(): v for k, v in query}
        parts = unquote(raw_path).lstrip("/").split("/", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise StorageError(400, "InvalidUri", "The requested URI does not represent any resource on the "
                               "server (use /<account>/<container>/<blob>).")
        account, container = parts[0], parts[1]
        blob = parts[2] if len(parts) == 3 and parts[2] != "" else None
        validate_container(container)
        if blob is not None:
            validate_blob_name(blob)
        version = headers.get("x-ms-version") or params.get("sv") or DEFAULT_VERSION
        req = BlobRequest(scope["method"].upper(), account, container, blob, raw_path, query, params, headers,
                          request_id, version)
        if req.method == "OPTIONS":
            return self._preflight(req)
        return await self._dispatch(req, receive)

    def _preflight(self, req: BlobRequest) -> BlobReply:
        origin = req.headers.get("origin")
        method = req.headers.get("access-control-request-method")
        if not origin or not method:
            raise StorageError(400, "InvalidHeaderValue", "CORS preflight needs Origin and "
                               "Access-Control-Request-Method headers.")
        return BlobReply(200, [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Methods", "GET,HEAD,PUT,DELETE,OPTIONS"),
            ("Access-Control-Allow-Headers", req.headers.get("access-control-request-headers", CORS_HEADERS)),
            ("Access-Control-Max-Age", "3600"),
        ])

    async def _dispatch(self, req: BlobRequest, receive: Receive) -> BlobReply:
        comp = req.params.get("comp", "")
        restype = req.params.get("restype", "")
        m = req.method
        if req.blob is None:
            if restype == "container" and m == "PUT" and not comp:
                return await self._run(req, "create-container", self._create_container)
            if restype == "container" and m == "DELETE":
                return await self._run(req, "delete-container", self._delete_container)
            if comp == "list" and m == "GET":
                return await self._run(req, "list", self._list)
            if restype == "container" and m in ("GET", "HEAD") and not comp:
                return await self._run(req, "container-properties", self._container_properties)
            raise StorageError(400, "UnsupportedHttpVerb" if m not in ("GET", "PUT", "DELETE", "HEAD")
                               else "InvalidQueryParameterValue",
                               f"The container operation {m} ?{comp or restype} is not supported.")
        if m == "PUT" and comp == "block":
            return await self._with_body(req, receive, "write", self._put_block)
        if m == "PUT" and comp == "blocklist":
            return await self._with_small_body(req, receive, "write", self._put_block_list)
        if m == "PUT" and comp == "metadata":
            return await self._run(req, "write", self._set_metadata)
        if m == "PUT" and comp == "properties":
            return await self._run(req, "write", self._set_properties)
        if m == "PUT" and not comp:
            if "x-ms-copy-source" in req.headers:
                raise StorageError(501, "NotImplemented", "Copy Blob is not implemented.")
            return await self._with_body(req, receive, "write", self._put_blob)
        if m == "GET" and comp == "blocklist":
            return await self._run(req, "read", self._get_block_list)
        if m in ("GET", "HEAD") and comp in ("", "metadata"):
            read = self._get_blob if m == "GET" and not comp else self._head_blob
            return await self._run(req, "read", read)
        if m == "DELETE" and not comp:
            return await self._run(req, "delete", self._delete_blob)
        raise StorageError(400, "UnsupportedHttpVerb" if m not in ("GET", "PUT", "DELETE", "HEAD")
                           else "InvalidQueryParameterValue",
                           f"The blob operation {m} ?comp={comp} is not supported.")

    # ---- auth ----------------------------------------------------------------------------------
    def _authorise(self, req: BlobRequest, need: str) -> None:
        """Check SAS or Shared Key for the operation class `need` (read/write/delete/list/...)."""
        with self.rt.engine.connect() as conn, conn.begin():
            account = self.rt.accounts.find(conn, req.account)
            if account is None:
                raise StorageError(403, "AuthenticationFailed", "Server failed to authenticate the request: "
                                   "the storage account is not known.")
            if "sig" in req.params:
                self._check_sas(conn, account, req, need)
            elif "authorization" in req.headers:
                self._check_shared_key(account, req)
            elif SAS_FIELDS & req.params.keys():
                raise StorageError(403, "AuthenticationFailed", "Server failed to authenticate the request: "
                                   "the shared access signature has no signature (sig).")
            else:
                raise StorageError(401, "NoAuthenticationInformation", "Server failed to authenticate the "
                                   "request: no shared access signature or Authorization header was given.")
            from ..db.store import Store
            from ..entities.base import Ctx
            from ..model import MODEL

            ctx = Ctx(Store(conn, account.id, MODEL), account, self.rt.settings)
            if not storage_account_exists(ctx, req.account):
                raise StorageError(403, "AuthenticationFailed", "The storage account is not attached.")

    def _check_shared_key(self, account: Any, req: BlobRequest) -> None:
        header = req.headers["authorization"]
        scheme, _, cred = header.partition(" ")
        name, _, signature = cred.partition(":")
        if name != req.account or scheme not in ("SharedKey", "SharedKeyLite"):
            raise StorageError(403, "AuthenticationFailed", AUTH_FAILED)
        if scheme == "SharedKey":
            text = sas.shared_key_string(req.method, req.headers, req.account, req.raw_path, req.query,
                                         req.version)
        else:
            text = sas.shared_key_lite_string(req.method, req.headers, req.account, req.raw_path, req.query)
        if not sas.verify_signature(account.keys(), text, signature):
            raise StorageError(403, "AuthenticationFailed", AUTH_FAILED)
        date = req.headers.get("x-ms-date") or req.headers.get("date")
        if date:
            from email.utils import parsedate_to_datetime

            try:
                when = parsedate_to_datetime(date)
            except (TypeError, ValueError):
                raise StorageError(403, "AuthenticationFailed", "The request date is not valid.") from None
            if abs(datetime.now(UTC) - when) > timedelta(minutes=15):
                raise StorageError(403, "AuthenticationFailed", "Request date header too old (more than 15 "
                                   "minutes off).")

    def _check_sas(self, conn: Any, account: Any, req: BlobRequest, need: str) -> None:
        p = req.params
        fail = AUTH_FAILED
        sr = p.get("sr", "")
        if sr not in ("c", "b") or ("skoid" in p):
            raise StorageError(403, "AuthenticationFailed", fail)
        if sr == "b" and req.blob is None:
            raise StorageError(403, "AuthorizationResourceTypeMismatch", f"{NOT_AUTHORISED} resource type.")
        text = sas.service_sas_string(p, req.account, req.container, req.blob)
        if not sas.verify_signature(account.keys(), text, p.get("sig", "")):
            raise StorageError(403, "AuthenticationFailed", f"{fail} Signature did not match.")
        if p.get("spr") == "https":
            raise StorageError(403, "AuthorizationProtocolMismatch", f"{NOT_AUTHORISED} protocol.")
        perms, start, expiry = p.get("sp", ""), p.get("st"), p.get("se")
        starts: list[datetime] = []
        expiries: list[datetime] = []
        if p.get("si"):
            # The Locator is the stored policy: its permissions, and its times as well as the URL's.
            perms, policy_start, policy_expiry = self._stored_policy(conn, account, req, p["si"])
            starts += [_aware(policy_start)] if policy_start else []
            expiries.append(_aware(policy_expiry))
        try:
            if start:
                starts.append(sas.parse_sas_time(start))
            if expiry:
                expiries.append(sas.parse_sas_time(expiry))
        except ValueError:
            raise StorageError(403, "AuthenticationFailed", f"{fail} Signed times are malformed.") from None
        start_dt = max(starts) if starts else None
        expiry_dt = min(expiries) if expiries else None
        now = datetime.now(UTC)
        if expiry_dt is None or now > expiry_dt or (start_dt is not None and now + CLOCK_SKEW < start_dt):
            raise StorageError(403, "AuthenticationFailed", f"{fail} Signed expiry time [{expiry}] must be "
                               f"after signed start time and the current time [{http_date(now)}].")
        needed = {"read": "r", "write": "w", "delete": "d", "list": "l"}.get(need)
        if needed is None:  # container create/delete/properties need the account key
            raise StorageError(403, "AuthorizationPermissionMismatch", f"{NOT_AUTHORISED} permission.")
        ok = needed in perms or (needed == "w" and "c" in perms and need == "write" and
                                 req.params.get("comp") != "metadata")
        if not ok:
            raise StorageError(403, "AuthorizationPermissionMismatch", f"{NOT_AUTHORISED} permission.")

    def _stored_policy(self, conn: Any, account: Any, req: BlobRequest, si: str
                       ) -> tuple[str, datetime | None, datetime]:
        """A SAS `si` names a SAS Locator of this container's asset (the rule lives in entities)."""
        from ..db.store import Store
        from ..entities.locators import sas_grant
        from ..model import MODEL

        grant = sas_grant(Store(conn, account.id, MODEL), si, req.container)
        if grant is None:
            raise StorageError(403, "AuthenticationFailed", "Server failed to authenticate the request: the "
                               "signed identifier (stored access policy) does not exist or has expired.")
        return grant

    # ---- helpers -------------------------------------------------------------------------------
    async def _run(self, req: BlobRequest, need: str, op: Callable[[BlobRequest], BlobReply]) -> BlobReply:
        def work() -> BlobReply:
            self._authorise(req, need)
            return op(req)

        return await anyio.to_thread.run_sync(work)

    async def _with_body(self, req: BlobRequest, receive: Receive, need: str,
                         op: Callable[[BlobRequest, Any], BlobReply]) -> BlobReply:
        """Authorise first, then spool the body to disk in constant memory, then run the operation."""
        await anyio.to_thread.run_sync(self._authorise, req, need)
        limit = self._body_limit(req)
        declared = req.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise StorageError(413, "RequestBodyTooLarge", f"{TOO_LARGE} ({limit} bytes).")
        with self.backend.spool() as spool:
            pending: list[bytes] = []
            pending_size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise StorageError(400, "IncompleteBody",
                                       "The client disconnected before the body was sent.")
                chunk = message.get("body", b"")
                if chunk:
                    if spool.size + pending_size + len(chunk) > limit:
                        raise StorageError(413, "RequestBodyTooLarge", f"{TOO_LARGE} ({limit} bytes).")
                    pending.append(chunk)
                    pending_size += len(chunk)
                    if pending_size >= 1024 * 1024:
                        data = b"".join(pending)
                        pending, pending_size = [], 0
                        await anyio.to_thread.run_sync(spool.write, data)
                if not message.get("more_body"):
                    break
            if pending:
                spool.write(b"".join(pending))
            if declared is not None and declared.isdigit() and spool.size != int(declared):
                raise StorageError(400, "InvalidHeaderValue", "Content-Length does not match the body.")
            md5 = req.headers.get("content-md5")
            if md5 and md5 != spool.md5_b64:
                raise StorageError(400, "Md5Mismatch", "The MD5 value specified in the request did not match "
                                   "with the MD5 value calculated by the server.")
            return await anyio.to_thread.run_sync(op, req, spool)

    async def _with_small_body(self, req: BlobRequest, receive: Receive, need: str,
                               op: Callable[[BlobRequest, bytes], BlobReply]) -> BlobReply:
        await anyio.to_thread.run_sync(self._authorise, req, need)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise StorageError(400, "IncompleteBody", "The client disconnected before the body was sent.")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > 8 * 1024 * 1024:
                raise StorageError(413, "RequestBodyTooLarge", "The block list is too large.")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return await anyio.to_thread.run_sync(op, req, b"".join(chunks))

    def _body_limit(self, req: BlobRequest) -> int:
        # The version a client asked for in x-ms-version, not the `sv` of the SAS it was handed: a
        # SAS-only client (curl with a Locator URL) gets today's limits, not those of 2012.
        old = (req.headers.get("x-ms-version") or DEFAULT_VERSION) < "2019-12-12"
        if req.params.get("comp") == "block":
            return OLD_BLOCK_LIMIT if old else MAX_BLOCK_SIZE
        return OLD_PUT_LIMIT if old else MAX_PUT_BLOB_SIZE

    def _settings(self, req: BlobRequest, prefix: str = "x-ms-blob-") -> ContentSettings:
        h = req.headers
        return ContentSettings(
            content_type=h.get(f"{prefix}content-type") or (h.get("content-type") if prefix == "" else None),
            content_encoding=h.get(f"{prefix}content-encoding"),
            content_language=h.get(f"{prefix}content-language"),
            content_disposition=h.get(f"{prefix}content-disposition"),
            cache_control=h.get(f"{prefix}cache-control"),
            content_md5=h.get(f"{prefix}content-md5"),
        )

    def _put_settings(self, req: BlobRequest) -> ContentSettings:
        """Put Blob: standard headers set the blob's properties, x-ms-blob-* override them."""
        h = req.headers
        return ContentSettings(
            content_type=(h.get("x-ms-blob-content-type") or h.get("content-type")
                          or "application/octet-stream"),
            content_encoding=h.get("x-ms-blob-content-encoding") or h.get("content-encoding"),
            content_language=h.get("x-ms-blob-content-language") or h.get("content-language"),
            content_disposition=h.get("x-ms-blob-content-disposition"),
            cache_control=h.get("x-ms-blob-cache-control") or h.get("cache-control"),
            content_md5=h.get("x-ms-blob-content-md5"),
        )

    @staticmethod
    def _metadata(req: BlobRequest) -> dict[str, str]:
        return {k[len("x-ms-meta-"):]: v for k, v in req.headers.items() if k.startswith("x-ms-meta-")}

    def _check_conditions(self, req: BlobRequest, props: BlobProperties | None) -> None:
        h = req.headers
        if "if-none-match" in h and h["if-none-match"].strip() == "*" and props is not None \
                and req.method == "PUT":
            raise StorageError(409, "BlobAlreadyExists", "The specified blob already exists.")
        wanted = h.get("if-match", "*").strip()
        if wanted != "*" and (props is None or props.etag != wanted):
            raise StorageError(412, "ConditionNotMet", "The condition specified using HTTP conditional "
                               "header(s) is not met.")
        if "if-none-match" in h and props is not None and h["if-none-match"].strip() == props.etag \
                and req.method in ("GET", "HEAD"):
            raise StorageError(304, "ConditionNotMet", "Not modified.")

    @staticmethod
    def _write_headers(props: BlobProperties, md5: bool = True) -> list[tuple[str, str]]:
        out = [("ETag", props.etag), ("Last-Modified", http_date(props.last_modified)),
               ("x-ms-request-server-encrypted", "true")]
        if md5 and props.content_md5:
            out.append(("Content-MD5", props.content_md5))
        return out

    # ---- container operations ------------------------------------------------------------------
    def _create_container(self, req: BlobRequest) -> BlobReply:
        self.backend.create_container(req.account, req.container)
        now = datetime.now(UTC)
        etag = f'"0x{uuid.uuid4().hex[:15].upper()}"'
        return BlobReply(201, [("ETag", etag), ("Last-Modified", http_date(now))])

    def _delete_container(self, req: BlobRequest) -> BlobReply:
        self.backend.delete_container(req.account, req.container)
        return BlobReply(202)

    def _container_properties(self, req: BlobRequest) -> BlobReply:
        if not self.backend.container_exists(req.account, req.container):
            raise StorageError(404, "ContainerNotFound", "The specified container does not exist.")
        return BlobReply(200, [("x-ms-lease-status", "unlocked"), ("x-ms-lease-state", "available")])

    def _list(self, req: BlobRequest) -> BlobReply:
        p = req.params
        prefix, marker, delimiter = p.get("prefix", ""), p.get("marker", ""), p.get("delimiter", "")
        max_results: int | None = None
        if "maxresults" in p:
            try:
                max_results = int(p["maxresults"])
            except ValueError:
                max_results = 0
            if not 1 <= max_results <= 5000:
                raise StorageError(400, "OutOfRangeQueryParameterValue", "One of the query parameters "
                                   "specified in the request URI is outside the permissible range "
                                   "(maxresults 1 to 5000).")
        limit = max_results or 5000
        include = {x.strip() for x in p.get("include", "").split(",") if x.strip()}
        blobs, prefixes, next_marker = self._page(req, prefix, marker, delimiter, limit)
        endpoint = f"{self.rt.settings.blob_base}/{req.account}/"
        body = list_blobs_body(endpoint, req.container, prefix, marker, max_results, delimiter, blobs,
                               prefixes, next_marker, "metadata" in include)
        return BlobReply(200, [("Content-Type", "application/xml")], body)

    def _page(self, req: BlobRequest, prefix: str, marker: str, delimiter: str, limit: int
              ) -> tuple[list[BlobProperties], list[str], str]:
        if not delimiter:
            blobs, next_marker = self.backend.list_blobs(req.account, req.container, prefix, marker, limit)
            return blobs, [], next_marker
        blobs_out: list[BlobProperties] = []
        prefixes: list[str] = []
        cursor = marker
        # The next marker is the last blob name *consumed* (returned, or folded into a prefix): the
        # backend lists names after the marker, and names sharing a prefix sort together, so the next
        # page starts with the first item not returned and never repeats a prefix.
        last = marker
        while True:
            page, nxt = self.backend.list_blobs(req.account, req.container, prefix, cursor, 5000)
            for b in page:
                rest = b.name[len(prefix):]
                cut = rest.find(delimiter)
                if cut >= 0:
                    group = prefix + rest[: cut + len(delimiter)]
                    if not prefixes or prefixes[-1] != group:
                        if len(blobs_out) + len(prefixes) >= limit:
                            return blobs_out, prefixes, last
                        prefixes.append(group)
                    last = b.name
                    continue
                if len(blobs_out) + len(prefixes) >= limit:
                    return blobs_out, prefixes, last
                blobs_out.append(b)
                last = b.name
            if not nxt:
                return blobs_out, prefixes, ""
            cursor = nxt

    # ---- blob operations -----------------------------------------------------------------------
    def _put_blob(self, req: BlobRequest, spool: Any) -> BlobReply:
        blob_type = req.headers.get("x-ms-blob-type", "BlockBlob")
        if blob_type != "BlockBlob":
            raise StorageError(400, "InvalidBlobType" if blob_type in ("PageBlob", "AppendBlob") else
                               "InvalidHeaderValue", f"Only block blobs are supported, not {blob_type}.")
        assert req.blob is not None
        self._check_conditions(req, self.backend.properties(req.account, req.container, req.blob))
        props = self.backend.put_blob(req.account, req.container, req.blob, spool, self._put_settings(req),
                                      self._metadata(req))
        return BlobReply(201, self._write_headers(props))

    def _put_block(self, req: BlobRequest, spool: Any) -> BlobReply:
        block_id = req.params.get("blockid")
        if not block_id:
            raise StorageError(400, "MissingRequiredQueryParameter", "A query parameter that's mandatory for "
                               "this request is not specified (blockid).")
        assert req.blob is not None
        self.backend.stage_block(req.account, req.container, req.blob, block_id, spool)
        headers = [("x-ms-request-server-encrypted", "true")]
        if "content-md5" in req.headers or req.version < "2019-02-02":
            headers.append(("Content-MD5", spool.md5_b64))
        return BlobReply(201, headers)

    def _put_block_list(self, req: BlobRequest, body: bytes) -> BlobReply:
        assert req.blob is not None
        blocks = parse_block_list(body)
        if len(blocks) > MAX_COMMITTED_BLOCKS:
            raise StorageError(400, "BlockListTooLong", f"The block list may not contain more than "
                               f"{MAX_COMMITTED_BLOCKS} blocks.")
        for _, block_id in blocks:
            try:
                validate_block_id(block_id)
            except StorageError:
                raise StorageError(400, "InvalidBlockList", "The specified block list is invalid.") from None
        self._check_conditions(req, self.backend.properties(req.account, req.container, req.blob))
        props = self.backend.commit_blocks(req.account, req.container, req.blob, blocks, self._settings(req),
                                           self._metadata(req))
        # Azure: this Content-MD5 is the hash of the request (the block list), not of the blob
        body_md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii")
        return BlobReply(201, [*self._write_headers(props, md5=False), ("Content-MD5", body_md5)])

    def _get_block_list(self, req: BlobRequest) -> BlobReply:
        assert req.blob is not None
        kind = req.params.get("blocklisttype", "committed").lower()
        if kind not in ("committed", "uncommitted", "all"):
            raise StorageError(400, "InvalidQueryParameterValue", "blocklisttype must be committed, "
                               "uncommitted or all.")
        committed, uncommitted = self.backend.block_list(req.account, req.container, req.blob)
        props = self.backend.properties(req.account, req.container, req.blob)
        headers = [("Content-Type", "application/xml")]
        if props is not None:
            headers += [("ETag", props.etag), ("Last-Modified", http_date(props.last_modified)),
                        ("x-ms-blob-content-length", str(props.size))]
        return BlobReply(200, headers, block_list_body(committed, uncommitted, kind))

    def _props_headers(self, props: BlobProperties, tier: bool = False) -> list[tuple[str, str]]:
        s = props.settings
        out = [("ETag", props.etag), ("Last-Modified", http_date(props.last_modified)),
               ("x-ms-creation-time", http_date(props.created)), ("x-ms-blob-type", "BlockBlob"),
               ("Accept-Ranges", "bytes"), ("x-ms-server-encrypted", "true"),
               ("x-ms-lease-status", "unlocked"), ("x-ms-lease-state", "available"),
               ("Content-Type", s.content_type or "application/octet-stream")]
        if tier:  # Get Blob Properties reports the tier; Get Blob does not
            out += [("x-ms-access-tier", "Hot"), ("x-ms-access-tier-inferred", "true")]
        for name, value in (("Content-Encoding", s.content_encoding),
                            ("Content-Language", s.content_language),
                            ("Content-Disposition", s.content_disposition),
                            ("Cache-Control", s.cache_control)):
            if value:
                out.append((name, value))
        out += [(f"x-ms-meta-{k}", v) for k, v in props.metadata.items()]
        return out

    def _require(self, req: BlobRequest) -> BlobProperties:
        assert req.blob is not None
        props = self.backend.properties(req.account, req.container, req.blob)
        if props is None:
            raise StorageError(404, "BlobNotFound", "The specified blob does not exist.")
        return props

    def _head_blob(self, req: BlobRequest) -> BlobReply:
        props = self._require(req)
        self._check_conditions(req, props)
        headers = self._props_headers(props, tier=True)
        if props.content_md5:
            headers.append(("Content-MD5", props.content_md5))
        return BlobReply(200, headers, stream=_Empty(), length=props.size)

    def _get_blob(self, req: BlobRequest) -> BlobReply:
        props = self._require(req)
        self._check_conditions(req, props)
        headers = self._props_headers(props)
        rng = req.headers.get("x-ms-range") or req.headers.get("range")
        assert req.blob is not None
        if rng:
            start, end = _parse_range(rng, props.size)
            headers.append(("Content-Range", f"bytes {start}-{end}/{props.size}"))
            if req.headers.get("x-ms-range-get-content-md5") == "true" and end - start < 4 * 1024 * 1024:
                data = b"".join(self.backend.read(req.account, req.container, req.blob, start, end))
                headers.append(("Content-MD5", base64.b64encode(hashlib.md5(data, usedforsecurity=False)
                                                                .digest()).decode()))
                return BlobReply(206, headers, data)
            if props.content_md5:
                headers.append(("x-ms-blob-content-md5", props.content_md5))
            stream = self.backend.read(req.account, req.container, req.blob, start, end)
            return BlobReply(206, headers, stream=stream, length=end - start + 1)
        if props.content_md5:
            headers.append(("Content-MD5", props.content_md5))
        if props.size == 0:
            return BlobReply(200, headers, b"")
        return BlobReply(200, headers, stream=self.backend.read(req.account, req.container, req.blob, 0,
                                                                props.size - 1), length=props.size)

    def _delete_blob(self, req: BlobRequest) -> BlobReply:
        assert req.blob is not None
        props = self.backend.properties(req.account, req.container, req.blob)
        self._check_conditions(req, props)
        self.backend.delete_blob(req.account, req.container, req.blob)
        return BlobReply(202, [("x-ms-delete-type-permanent", "true")])

    def _set_metadata(self, req: BlobRequest) -> BlobReply:
        assert req.blob is not None
        self._check_conditions(req, self._require(req))
        props = self.backend.set_metadata(req.account, req.container, req.blob, self._metadata(req))
        return BlobReply(200, self._write_headers(props, md5=False))

    def _set_properties(self, req: BlobRequest) -> BlobReply:
        assert req.blob is not None
        self._check_conditions(req, self._require(req))
        props = self.backend.set_properties(req.account, req.container, req.blob, self._settings(req))
        return BlobReply(200, self._write_headers(props, md5=False))


class _Empty:
    """A stream of nothing, so HEAD replies can carry the blob's Content-Length."""

    def __iter__(self) -> _Empty:
        return self

    def __next__(self) -> bytes:
        raise StopIteration

    def close(self) -> None:
        pass


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _unsatisfiable(size: int) -> StorageError:
    exc = StorageError(416, "InvalidRange", "The range specified is invalid for the current size of the "
                       "resource.")
    exc.headers = [("Content-Range", f"bytes */{size}")]  # type: ignore[attr-defined]
    return exc


def _parse_range(text: str, size: int) -> tuple[int, int]:
    """`bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive (start, end); 416 when unsatisfiable."""
    spec = text.strip()
    if not spec.startswith("bytes="):
        raise _unsatisfiable(size)
    first, _, last = spec[6:].split(",")[0].partition("-")
    try:
        if first == "":
            n = int(last)
            start, end = max(size - n, 0), size - 1
        else:
            start = int(first)
            end = int(last) if last else size - 1
    except ValueError:
        raise _unsatisfiable(size) from None
    end = min(end, size - 1)
    if start < 0 or start >= size or end < start:
        raise _unsatisfiable(size)
    return start, end
