"""The streaming endpoint's HTTP surface: `/<locator-guid>/…` on the API listener.

Per request: parse the URL grammar (`urls.py`), find the locator, its asset and the endpoint
that serves this Host (cached for a second), enforce the endpoint's state and IP allow-list,
then hand the work to `OriginService` in a worker thread and send the result as one body with
content type, length, ETag, Last-Modified, Cache-Control and CORS headers. Conditional GETs get
304, progressive downloads honour byte ranges, manifests are gzipped when the client asks.
Failures answer a JSON error body with a status and a code — never a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import random
import re
import threading
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import anyio

from ..entities import content_keys, origin_lookup
from ..entities.files import same_key_id
from ..errors import ApiError
from ..packaging.mpegts import TsMuxError
from ..packaging.storage_crypto import StorageCryptoError, parse_iv
from .cache import TtlCache
from .http import Response, error, http_date, maybe_gzip, not_modified, parse_range, preflight
from .protection import Plan, plan_for
from .service import AssetRef, Built, OriginError, OriginService
from .urls import MAX_FILTERS, OriginRequest, UrlError, parse

log = logging.getLogger("openams.origin")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
POLICY_FILES = {"/crossdomain.xml": "CrossDomainPolicy", "/clientaccesspolicy.xml": "ClientAccessPolicy"}
DEFAULT_SEGMENT_MAX_AGE = 86_400
DEFAULT_MANIFEST_MAX_AGE = 2
"""VOD manifests change when filters or files change; players re-read them rarely anyway."""
MAX_PROGRESSIVE_CHUNK = 4 << 20
MAX_TOKEN = 8192
TARGET_TTL = 1.0
"""Seconds a locator lookup is trusted; after that it is refreshed in the background (a deleted
locator stops working within about this long on other processes, at once on this one)."""
STALE_GRACE = 30.0
"""How long past its TTL a lookup may still answer while its refresh runs."""


def is_origin_path(path: str) -> bool:
    """True for the paths this surface owns (the API listener routes them here)."""
    if path in POLICY_FILES:
        return True
    first = path[1:].split("/", 1)[0]
    return bool(GUID.match(first)) and "/" in path[1:]


class OriginApp:
    def __init__(self, runtime: Any, service: OriginService | None = None) -> None:
        self.rt = runtime
        settings = runtime.settings
        self.service = service or OriginService(
            runtime.storage, settings.data_dir / "origin-index",
            cache_bytes=int(getattr(settings, "origin_cache_mb", 256)) << 20)
        self.targets: TtlCache[Any] = TtlCache(TARGET_TTL)
        # a filter change may take a while to show, as in AMS; delivery policies cannot change
        # while a streaming locator exists; both are dropped at once on writes through this process
        self.filters: TtlCache[Any] = TtlCache(60.0)
        self.plans: TtlCache[Any] = TtlCache(60.0)
        self._refreshing: set[tuple[str, str]] = set()
        self._refresh_guard = threading.Lock()
        self.keys: TtlCache[bytes] = TtlCache(60.0)
        self._generation = getattr(runtime, "changes", 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"].upper()
        request_id = _request_id()
        try:
            if method == "OPTIONS":
                response = preflight(headers)
            elif method not in ("GET", "HEAD"):
                response = error(405, "MethodNotAllowed", "The streaming endpoint answers GET, HEAD and OPTIONS.")
                response.headers.append(("Allow", "GET, HEAD, OPTIONS"))
            else:
                response = await self._get(scope, headers)
        except Exception:
            log.exception("unhandled error in streaming request %s", request_id)
            response = error(500, "InternalError", f"An unexpected error occurred (request id {request_id}).")
        response.headers += [("request-id", request_id), ("Access-Control-Allow-Origin", "*"),
                             ("Access-Control-Expose-Headers", "Content-Length, Content-Range, ETag, request-id")]
        await _send(send, response, head=method == "HEAD")

    async def _get(self, scope: Scope, headers: dict[str, str]) -> Response:
        path = scope["path"]
        host = headers.get("host", "")
        if path in POLICY_FILES:
            return await anyio.to_thread.run_sync(self._policy_file, host, POLICY_FILES[path])
        raw = (scope.get("raw_path") or path.encode()).decode("latin-1")
        guid, _, rest = raw[1:].partition("/")
        if not GUID.match(guid):
            return error(404, "LocatorNotFound", f"'{guid}' is not a locator id (a GUID)")
        try:
            req = with_query_filters(parse(rest), scope.get("query_string", b""))
        except UrlError as exc:
            return error(exc.status, "InvalidStreamingUrl", str(exc))
        guid = guid.lower()
        fast = self._from_cache(guid, host, req, headers, scope)
        if fast is not None:
            return fast
        return await anyio.to_thread.run_sync(self._serve, guid, host, req, headers, scope)

    def _fresh(self) -> None:
        """Forget cached lookups when this process's API changed anything (a deleted locator or a
        stopped endpoint takes effect at once here; other processes see it within the TTL)."""
        generation = getattr(self.rt, "changes", 0)
        if generation != self._generation:
            self._generation = generation
            self.targets.clear()
            self.filters.clear()
            self.plans.clear()
            self.keys.clear()

    def _from_cache(self, guid: str, host: str, req: OriginRequest, headers: dict[str, str],
                    scope: Scope) -> Response | None:
        """The hot path without a thread hop: everything this request needs is already cached."""
        if req.kind == "file":
            return None
        self._fresh()
        state, found = self.targets.peek((guid, host.lower()), STALE_GRACE)
        if state == "miss" or found is None:
            return None
        target, ref = found
        if state == "stale":
            self._refresh_later(guid, host)
        filters: Any = []
        if req.params.filters:
            hit, filters = self.filters.get((target.asset.id, req.params.filters))
            if not hit:
                return None
        hit, plan = self.plans.get(_plan_key(target, req))
        if not hit or not isinstance(plan, Plan):
            return None
        built = self.service.cached(ref, req, filters or [], plan)
        if built is None:
            return None
        refusal = _check_target(target, scope)
        if refusal is not None:
            return refusal
        return _respond(built, headers, target, ref)

    def _refresh_later(self, guid: str, host: str) -> None:
        """Look the locator up again in a worker thread, once per key however many requests see the
        stale entry; they are answered from it meanwhile."""
        key = (guid, host.lower())
        with self._refresh_guard:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def refresh() -> None:
            try:
                self._lookup(guid, host)
            except Exception:  # the next request looks it up itself and reports the error
                log.exception("refreshing streaming locator %s failed", guid)
            finally:
                with self._refresh_guard:
                    self._refreshing.discard(key)

        asyncio.get_running_loop().run_in_executor(None, refresh)

    # ---- worker thread ----------------------------------------------------------------------------
    def _target(self, guid: str, host: str) -> tuple[Any, AssetRef] | None:
        self._fresh()
        hit, found = self.targets.get((guid, host.lower()))
        if not hit:
            found = self._lookup(guid, host)
        return found

    def _lookup(self, guid: str, host: str) -> tuple[Any, AssetRef] | None:
        target = origin_lookup.find_origin_target(self.rt.engine, guid, host, datetime.now(UTC))
        found = (target, _asset_ref(target, self._storage_key(target))) if target is not None else None
        self.targets.put((guid, host.lower()), found)
        return found

    def _storage_key(self, target: Any) -> bytes:
        """The clear StorageEncryption key of an asset with storage-encrypted files, else b"".
        A key that cannot be read is b"" too: the service then refuses to read the encrypted
        files, saying so, rather than serving ciphertext (logged without any key material)."""
        if not target.storage_encrypted_files or not target.storage_key_id:
            return b""
        try:
            return self._clear_key(target.account_id, target.storage_key_id)
        except ApiError as exc:
            log.warning("asset %s: its StorageEncryption key %s cannot be read (%s)", target.asset.id,
                        target.storage_key_id, exc.code)
            return b""

    def _filters(self, target: Any, names: tuple[str, ...]) -> list[dict[str, Any]]:
        if not names:
            return []
        key = (target.asset.id, names)
        hit, found = self.filters.get(key)
        if not hit:
            found = origin_lookup.find_filters(self.rt.engine, target.account_id, target.asset.id, list(names))
            self.filters.put(key, found)
        return list(found or [])

    def _serve(self, guid: str, host: str, req: OriginRequest, headers: dict[str, str], scope: Scope) -> Response:
        found = self._target(guid, host)
        if found is None:
            return _no_locator()
        target, ref = found
        refusal = _check_target(target, scope)
        if refusal is not None:
            return refusal
        try:
            if req.kind == "file":
                return self._progressive(ref, req.name, headers, target)
            filters = self._filters(target, req.params.filters)
            if req.params.encryption is not None:
                return error(501, "NotImplemented", "Choosing the encryption in the URL (encryption=…) is not "
                             "supported; the asset's delivery policies decide it.")
            plan = self._plan(target, req)
            built = self.service.build(ref, req, filters, plan)
        except OriginError as exc:
            return error(exc.status, exc.code, exc.message)
        except UrlError as exc:
            return error(exc.status, "InvalidStreamingUrl", str(exc))
        except ApiError as exc:
            return error(exc.status, exc.code, exc.message)
        except TsMuxError as exc:
            return error(500, "UnstreamableFile", f"the segment cannot be packaged: {exc}")
        return _respond(built, headers, target, ref)

    def _plan(self, target: Any, req: OriginRequest) -> Plan:
        """How this request is protected (cached with the lookups; an OriginError is cached too)."""
        key = _plan_key(target, req)
        hit, plan = self.plans.get(key)
        if not hit:
            try:
                plan = plan_for(target, req, self.rt.settings.api_base, self._clear_key)
            except OriginError as exc:
                plan = exc
            self.plans.put(key, plan)
        if isinstance(plan, OriginError):
            raise plan
        return plan

    def _clear_key(self, account_id: str, key_id: str) -> bytes:
        hit, key = self.keys.get((account_id, key_id))
        if not hit or key is None:
            key = content_keys.clear_key(self.rt.engine, account_id, key_id, settings=self.rt.settings)
            self.keys.put((account_id, key_id), key)
        return key

    def _progressive(self, ref: AssetRef, name: str, headers: dict[str, str], target: Any) -> Response:
        self._plan(target, OriginRequest("file", name))  # a policy may block progressive download
        size, etag, read = self.service.progressive(ref, name)
        base = [("Content-Type", "video/mp4" if name.lower().endswith((".mp4", ".m4v")) else
                 "application/octet-stream"), ("ETag", etag), ("Accept-Ranges", "bytes"),
                ("Cache-Control", _cache_control(target, True))]
        if ref.last_modified is not None:
            base.append(("Last-Modified", http_date(ref.last_modified)))
        if not_modified(headers, etag, ref.last_modified):
            return Response(304, base)
        wanted = parse_range(headers.get("range", ""), size)
        if headers.get("if-range") and headers["if-range"] != etag:
            wanted = None
        if wanted == "unsatisfiable":
            return Response(416, [*base, ("Content-Range", f"bytes */{size}")])
        if wanted is None:
            start, end, status = 0, size - 1, 200
        else:
            assert isinstance(wanted, tuple)
            start, end, status = wanted[0], wanted[1], 206
            base.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        if end - start + 1 <= MAX_PROGRESSIVE_CHUNK:
            return Response(status, base, read(start, end - start + 1) if size else b"")
        chunks = self.service.stream(ref, name, start, end)
        return Response(status, base, stream=chunks, length=end - start + 1)

    def _policy_file(self, host: str, prop: str) -> Response:
        endpoint = origin_lookup.endpoint_for_host(self.rt.engine, host)
        policies = (getattr(endpoint, "cross_site_access_policies", None) or {}) if endpoint else {}
        body = policies.get(prop) if isinstance(policies, dict) else None
        if not body:
            return error(404, "PolicyNotFound", f"The streaming endpoint has no {prop} configured.")
        return Response(200, [("Content-Type", "text/xml; charset=utf-8"), ("Cache-Control", "max-age=3600")],
                        body.encode())


def _plan_key(target: Any, req: OriginRequest) -> tuple[Any, ...]:
    return (target.asset.id, req.kind == "file", req.params.format)


def with_query_filters(req: OriginRequest, query: bytes) -> OriginRequest:
    """Playlists and MPDs carry their filters (and a viewer token) to sub-requests as
    `?filter=a;b&token=…`; a segment is the same whatever the filter or token, so fragments drop
    them (one cache entry per segment)."""
    if req.kind == "fragment":
        return dataclasses.replace(req, params=dataclasses.replace(req.params, filters=()))
    if not query:
        return req
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    values = [v for k, v in pairs if k.lower() == "filter"]
    tokens = [v for k, v in pairs if k.lower() == "token"]
    if tokens and len(tokens[-1]) <= MAX_TOKEN:
        req = dataclasses.replace(req, token=tokens[-1])
    if not values or req.params.filters:
        return req
    names = tuple(n.strip() for n in values[-1].split(";"))
    if not all(names) or len(names) > MAX_FILTERS:
        raise UrlError(f"?filter= must name 1 to {MAX_FILTERS} filters separated by ';'")
    return dataclasses.replace(req, params=dataclasses.replace(req.params, filters=names))


def _asset_ref(target: Any, storage_key: bytes = b"") -> AssetRef:
    asset = target.asset
    files = tuple(sorted((f.name, int(f.size or 0), str(f.last_modified or "")) for f in target.files))
    storage_key_id = getattr(target, "storage_key_id", None)
    # a file that names another key than the asset's (its key was replaced) cannot be decrypted:
    # without a usable IV the service refuses to read it instead of serving garbage
    encrypted = tuple(sorted((f.name, _iv(f.initialization_vector) if not f.encryption_key_id or not storage_key_id
                              or same_key_id(f.encryption_key_id, storage_key_id) else None)
                             for f in target.files if getattr(f, "storage_encrypted", False)))
    return AssetRef(asset.id, asset.storage_account_name, asset.container, files,
                    getattr(asset, "last_modified", None), encrypted, storage_key)


def _iv(text: str | None) -> int | None:
    """A file's IV, or None when missing or unreadable (the service then refuses to read the file)."""
    if not text:
        return None
    try:
        return parse_iv(text)
    except StorageCryptoError:
        return None


def _no_locator() -> Response:
    return error(404, "LocatorNotFound", "No streaming locator with this id is active (it may never have existed, "
                 "have expired, not have started yet, or have been deleted).")


def _check_target(target: Any, scope: Scope) -> Response | None:
    """Refusals that depend on time or the client: an expired locator (also when the lookup was
    cached), a stopped endpoint, an address outside the endpoint's allow-list."""
    expiry = target.locator.expiration
    if expiry is not None:
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        if expiry <= datetime.now(UTC):
            return _no_locator()
    return _check_endpoint(target.endpoint, scope)


def _check_endpoint(endpoint: Any, scope: Scope) -> Response | None:
    if endpoint is None:
        return error(404, "StreamingEndpointNotFound", "No streaming endpoint of the account serves this host name.")
    if endpoint.state != "Running":
        return error(403, "StreamingEndpointNotRunning",
                     f"The streaming endpoint '{endpoint.name}' is {endpoint.state}; start it to stream.")
    allow = endpoint.ip_allow
    if allow is not None:
        client = (scope.get("client") or ("", 0))[0]
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            address = None
        if address is None or not any(address in net for net in allow):
            return error(403, "IpNotAllowed", f"The streaming endpoint does not accept requests from {client}.")
    return None


_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)  # a forked worker must not repeat its parent's ids


def _request_id() -> str:
    """A random GUID for the request-id header. Unique, not secret: so drawn from a seeded PRNG,
    not one getrandom() system call per request (each hands the GIL away and back on the event
    loop thread, which under segment-building load waits a switch interval to get it back)."""
    return str(uuid.UUID(int=_ids.getrandbits(128), version=4))


def _cache_control(target: Any, segment: bool) -> str:
    max_age = target.endpoint.cache_max_age
    if max_age is None:
        max_age = DEFAULT_SEGMENT_MAX_AGE if segment else DEFAULT_MANIFEST_MAX_AGE
    expiry = target.locator.expiration
    if expiry is not None:  # never let a cache serve content past the locator's expiry
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        max_age = max(0, min(max_age, int((expiry - datetime.now(UTC)).total_seconds())))
    return f"public, max-age={max_age}" + (", immutable" if segment else "")


def _respond(built: Built, headers: dict[str, str], target: Any, ref: AssetRef) -> Response:
    base = [("Content-Type", built.content_type), ("ETag", built.etag),
            ("Cache-Control", _cache_control(target, built.cacheable))]
    if ref.last_modified is not None:
        base.append(("Last-Modified", http_date(ref.last_modified)))
    if not built.cacheable:
        base.append(("Vary", "Accept-Encoding"))
    if not_modified(headers, built.etag, ref.last_modified):
        return Response(304, base)
    body = built.body
    if not built.cacheable:
        body, zipped = maybe_gzip(headers, body)
        if zipped:
            base.append(("Content-Encoding", "gzip"))
    return Response(200, base, body)


async def _send(send: Send, response: Response, head: bool) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    length = response.length if response.stream is not None else len(response.body)
    if response.status != 304:
        headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if response.stream is None or head:
        close = getattr(response.stream, "close", None)
        if close is not None:
            close()
        await send({"type": "http.response.body", "body": b"" if head or response.status == 304 else response.body})
        return
    chunks = response.stream
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, chunks, None)
            if chunk is None:
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
