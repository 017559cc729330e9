"""The HTTP surface of the Operations API and its token endpoints (plain ASGI, no framework on the
hot path).

Per request: enforce size limits, authenticate the bearer token, open one transaction, run the
executor in a worker thread, add the protocol headers (`request-id`, `x-ms-request-id`, echoed
client request ids, `DataServiceVersion`), and render every failure as an OData error. Unexpected
exceptions are logged with a traceback and answered 500 with the request id — never a traceback.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio

from ..entities.base import Ctx
from ..entities.deferred import discard_deferred, run_deferred
from ..errors import (
    ApiError,
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UriTooLong,
)
from ..odata.batch import BatchRequest, ChangeSet
from ..odata.uri import decode_path
from ..runtime import Runtime
from .operations import (
    ApiRequest,
    Reply,
    batch_items,
    batch_response,
    error_reply,
    execute,
    sub_request,
    to_batch_response,
)
from .tokens import token_reply

log = logging.getLogger("openams.rest")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_CLIENT_REQUEST_ID = 2096
VERSION_RE = re.compile(r"^2\.\d{1,2}$")
WRITE_METHODS = {"POST", "PUT", "PATCH", "MERGE", "DELETE"}
WRITING_FUNCTIONS = ("createfileinfos", "canceljob")
"""Service operations called with GET that write (SQLite must take the write lock up front, or a
concurrent writer makes the upgrade fail at once with "database is locked")."""


def _writing_function(path: str) -> bool:
    return path.lstrip("/").split("?", 1)[0].split("(", 1)[0].lower() in WRITING_FUNCTIONS


async def read_body(receive: Receive, limit: int, declared: str | None, too_large: str = "") -> bytes:
    """The whole request body, refused with 413 (`too_large`, or a message naming the limit) as
    soon as the declared or received size passes `limit`."""
    message_413 = too_large or f"The request body is larger than the {limit // (1024 * 1024)} MiB limit."
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(message_413)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("The client disconnected before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(message_413)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_reply(send: Send, reply: Reply, extra: list[tuple[str, str]]) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in [*reply.headers, *extra]]
    headers.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def request_headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name; repeated headers joined with ", " (RFC 9110)."""
    out: dict[str, str] = {}
    for k, v in scope["headers"]:
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


class RestApp:
    """ASGI app for `/api/`, `/API/`, the token endpoints and `/health`."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request_id = str(uuid.uuid4())
        headers = request_headers(scope)
        extra = [("request-id", request_id), ("x-ms-request-id", request_id), ("Cache-Control", "no-cache"),
                 ("X-Content-Type-Options", "nosniff"),
                 ("Access-Control-Expose-Headers", "request-id, x-ms-request-id")]
        query_pairs: list[tuple[str, str]] = []
        try:
            raw_path = scope.get("raw_path") or scope["path"].encode()
            raw_query = scope.get("query_string", b"")
            if len(raw_path) + len(raw_query) > self.rt.settings.max_url_bytes:
                raise UriTooLong(f"The URL is longer than {self.rt.settings.max_url_bytes} bytes.")
            for name in ("x-ms-client-request-id", "client-request-id"):
                if name in headers:
                    if len(headers[name].encode()) > MAX_CLIENT_REQUEST_ID:
                        raise BadRequest(f"{name} is longer than {MAX_CLIENT_REQUEST_ID} bytes.")
                    extra.append((name, headers[name]))
            query_pairs = parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True)
            reply = await self._route(scope, receive, headers, raw_path.decode("latin-1"), query_pairs)
        except ApiError as exc:
            reply = error_reply(headers, query_pairs, exc)
        except Exception:
            log.exception("unhandled error in request %s", request_id)
            reply = error_reply(headers, query_pairs,
                                InternalError(f"An unexpected error occurred (request id {request_id})."))
        await send_reply(send, reply, extra)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive, headers: dict[str, str], raw_path: str,
                     query_pairs: list[tuple[str, str]]) -> Reply:
        method = scope["method"].upper()
        path = decode_path(raw_path)
        if path == "/health":
            if not self.rt.ready:
                return Reply(503, [("Content-Type", "application/json")], b'{"status":"starting"}')
            return Reply(200, [("Content-Type", "application/json")], b'{"status":"ok"}')
        if path == "/API" or path.startswith("/API/"):
            return self._redirect(scope, headers)
        if path.lower() == "/api" or path.lower().startswith("/api/"):
            body = await read_body(receive, self.rt.settings.max_body_bytes, headers.get("content-length"))
            return await self._api(scope, method, headers, path[5:], query_pairs, body)
        if path == "/v2/OAuth2-13" or re.fullmatch(r"/[^/]+/oauth2/token", path):
            if method != "POST":
                raise MethodNotAllowed("Token endpoints take POST with a form body.")
            body = await read_body(receive, 64 * 1024, headers.get("content-length"))
            return await anyio.to_thread.run_sync(token_reply, self.rt, path, headers, body)
        raise NotFound(f"Nothing is served at {path}. The Operations API is at /api/.")

    def _base_url(self, scope: Scope, headers: dict[str, str]) -> str:
        if self.rt.settings.public_url:
            return self.rt.settings.public_url.rstrip("/") + "/api/"
        host = headers.get("host") or self.rt.settings.api_base.split("://", 1)[1]
        scheme = scope.get("scheme", "http")
        return f"{scheme}://{host}/api/"

    def _redirect(self, scope: Scope, headers: dict[str, str]) -> Reply:
        # Location is the account's API root, whatever was asked: clients adopt it as their base
        # URI and re-send the request below it (Location + path), as with AMS's global endpoint.
        target = self._base_url(scope, headers)
        body = (f'<html><head><title>Object moved</title></head><body>\r\n<h2>Object moved to '
                f'<a href="{target}">here</a>.</h2>\r\n</body></html>\r\n').encode()
        return Reply(301, [("Location", target), ("Content-Type", "text/html; charset=utf-8")], body)

    async def _api(self, scope: Scope, method: str, headers: dict[str, str], path: str,
                   query_pairs: list[tuple[str, str]], body: bytes) -> Reply:
        req = ApiRequest(method, path, query_pairs, headers, body, self._base_url(scope, headers))
        return await anyio.to_thread.run_sync(self._serve, req)

    # ---- synchronous part (worker thread) ------------------------------------------------------
    def _check_version(self, req: ApiRequest) -> None:
        version = req.headers.get("x-ms-version") or next((v for k, v in req.query if k == "api-version"), None)
        if not version:
            raise BadRequest("Send the header x-ms-version (2.0 to 2.19, e.g. 2.19), or ?api-version=2.19.",
                             code="MissingApiVersion")
        if not VERSION_RE.match(version.strip()):
            raise BadRequest(f"x-ms-version '{version}' is not supported; use a 2.x version such as 2.19.",
                             code="UnsupportedApiVersion")

    def _serve(self, req: ApiRequest) -> Reply:
        is_batch = req.method.upper() == "POST" and req.path.rstrip("/") == "$batch"
        with self.rt.engine.connect() as conn:
            if is_batch:
                with conn.begin():
                    account = self.rt.authenticate(conn, req.headers.get("authorization"), req.base_url)
                    self._check_version(req)
                try:
                    return self._batch(conn, account, req)
                finally:
                    self.rt.changes += 1
            # SQLite: writers take the database lock when their transaction begins
            conn.info["write"] = req.method.upper() in WRITE_METHODS or _writing_function(req.path)
            with conn.begin():
                account = self.rt.authenticate(conn, req.headers.get("authorization"), req.base_url)
                self._check_version(req)
                try:
                    reply = execute(self._ctx(conn, account, req), req)
                    run_deferred(conn)
                finally:
                    discard_deferred(conn)
            if conn.info["write"] and reply.status < 400:
                self.rt.changes += 1
            return reply

    def _ctx(self, conn: Any, account: Any, req: ApiRequest, content_ids: dict[str, str] | None = None) -> Ctx:
        from ..db.store import Store
        from ..model import MODEL

        return Ctx(Store(conn, account.id, MODEL), account, self.rt.settings, base_url=req.base_url,
                   storage=self.rt.storage, content_ids=content_ids if content_ids is not None else {},
                   on_job_submitted=self.rt.scheduler.notify_submitted if self.rt.scheduler else None,
                   on_job_canceled=self.rt.scheduler.notify_canceled if self.rt.scheduler else None)

    def _batch(self, conn: Any, account: Any, req: ApiRequest) -> Reply:
        results: list[Any] = []
        for item in batch_items(req):
            if isinstance(item, ChangeSet):
                results.append(self._changeset(conn, account, req, item))
            else:
                results.append(self._batch_query(conn, account, req, item))
        return batch_response(results)

    def _batch_query(self, conn: Any, account: Any, req: ApiRequest, item: BatchRequest) -> Any:
        """A GET outside any changeset: its own read transaction."""
        try:
            sub = sub_request(req, item, {})
            with conn.begin():
                reply = execute(self._ctx(conn, account, sub), sub)
        except ApiError as exc:
            reply = error_reply(item.headers, [], exc)
        return to_batch_response(reply, item.content_id)

    def _changeset(self, conn: Any, account: Any, req: ApiRequest, cs: ChangeSet) -> Any:
        """All operations of a changeset in one transaction: all apply, or none (one error reply)."""
        content_ids: dict[str, str] = {}
        replies = []
        conn.info["write"] = True
        try:
            with conn.begin():
                for item in cs.requests:
                    sub = sub_request(req, item, content_ids)
                    reply = execute(self._ctx(conn, account, sub, content_ids), sub)
                    if reply.status >= 400:
                        raise BadRequest(f"{item.label} failed with status {reply.status}.")
                    location = next((v for k, v in reply.headers if k.lower() == "location"), None)
                    if item.content_id and location:
                        content_ids[item.content_id] = location
                    replies.append(to_batch_response(reply, item.content_id))
                run_deferred(conn)
        except ApiError as exc:
            return to_batch_response(error_reply(req.headers, [], exc), None)
        finally:
            conn.info["write"] = False
            discard_deferred(conn)
        return replies

