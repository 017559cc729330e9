"""The HTTP surface of the Connector API (spec §6), plain ASGI.

Mounted on the API listener at `/connector/api/…`: the Connector's own base path is `/api` on a
host of its own, which would clash with the Operations API's `/api/`, so a Connector client
changes its base URL to `http://<host>:<port>/connector` and keeps every path below it.

Authentication is not part of the Connector spec (it sat behind the App Service gateway), so it
takes the Operations API's bearer tokens (`Authorization: Bearer <SWT or JWT>` from
`/v2/OAuth2-13` or the AAD-style endpoint) and everything is scoped to that token's account.

Per request: route, authenticate, run the operation (`videos`) in a worker thread inside one
transaction, answer JSON. Every failure is a JSON body `{"status": 0, "source": <url>, "message":
…, "code": …}` — the shape the spec gives for the Connector's 400 — with the error's HTTP status;
unexpected exceptions are logged and answered 500 with the request id, never a traceback.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import anyio

from ..db.store import Store
from ..entities.base import Ctx
from ..entities.deferred import discard_deferred, run_deferred
from ..errors import (
    ApiError,
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    UriTooLong,
)
from ..model import MODEL
from ..rest.app import read_body, request_headers
from ..runtime import Runtime
from . import videos
from .formats import FORMATS

log = logging.getLogger("openams.connector")

PREFIX = "/connector"
MAX_BODY = 64 * 1024
INVALID = "The request is invalid."

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def is_connector_path(path: str) -> bool:
    """True for the paths this surface owns (the API listener routes them here)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


@dataclass
class Request:
    method: str
    path: str
    """Below `/connector`, e.g. `/api/Videos/<id>/Status`."""
    query: dict[str, str]
    """Query parameters by lower-case name."""
    headers: dict[str, str]
    body: bytes
    url: str
    """The absolute URL asked for (the `source` of error bodies)."""


@dataclass
class Answer:
    status: int
    payload: Any = None
    wrote: bool = False
    """Whether something changed that the origin must see at once (locators made or deleted)."""


def _accepts_json(accept: str | None) -> bool:
    if not accept or not accept.strip():
        return True
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ("*/*", "application/*", "application/json", "text/json", "text/*", "*"):
            return True
    return False


async def _read_body(receive: Receive, declared: str | None) -> bytes:
    return await read_body(receive, MAX_BODY, declared, f"The request body is larger than {MAX_BODY // 1024} KiB; "
                                                        "a Video is a small JSON object.")


# (method, path pattern) → (handler name, writes?)
ROUTES: list[tuple[str, re.Pattern[str], str, bool]] = [
    ("POST", re.compile(r"/api/videos/?", re.I), "create", True),
    ("GET", re.compile(r"/api/videos/(?P<id>[^/]+)/?", re.I), "get", False),
    ("DELETE", re.compile(r"/api/videos/(?P<id>[^/]+)/?", re.I), "delete", True),
    ("POST", re.compile(r"/api/videos/(?P<id>[^/]+)/markcomplete/?", re.I), "mark_complete", True),
    ("GET", re.compile(r"/api/videos/(?P<id>[^/]+)/status/?", re.I), "status", False),
    ("GET", re.compile(r"/api/videos/(?P<id>[^/]+)/authorizationtoken/?", re.I), "token", False),
    ("GET", re.compile(r"/api/videos/(?P<id>[^/]+)/playbackendpoint/?", re.I), "playback", True),
    ("GET", re.compile(r"/api/videos/(?P<id>[^/]+)/thumbnails/?", re.I), "thumbnails", True),
    ("GET", re.compile(r"/api/formats/?", re.I), "formats", False),
]


def _route(method: str, path: str) -> tuple[str, dict[str, str], bool]:
    allowed = []
    for verb, pattern, name, writes in ROUTES:
        m = pattern.fullmatch(path)
        if m is None:
            continue
        if verb == method or (verb == "GET" and method == "HEAD"):
            return name, m.groupdict(), writes
        allowed.append(verb)
    if allowed:
        raise MethodNotAllowed(f"{path} takes {' or '.join(sorted(set(allowed)))}, not {method}.",
                               headers={"Allow": ", ".join(sorted(set(allowed)))})
    if path.lower().rstrip("/") == "/api/videos":
        raise MethodNotAllowed("Videos are created with POST /api/Videos and read one at a time with "
                               "GET /api/Videos/{id}; the Connector API has no list of videos.",
                               headers={"Allow": "POST"})
    raise NotFound(f"The Connector API has no resource at {PREFIX}{path}. It serves {PREFIX}/api/Videos, "
                   f"{PREFIX}/api/Videos/{{id}}[/MarkComplete|/Status|/PlaybackEndpoint|/Thumbnails|"
                   f"/AuthorizationToken] and {PREFIX}/api/Formats.")


class ConnectorApp:
    """ASGI app for `/connector/…`."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = str(uuid.uuid4())
        headers = request_headers(scope)
        url = self._url(scope, headers)
        try:
            if len(url) > self.rt.settings.max_url_bytes:
                raise UriTooLong(f"The URL is longer than {self.rt.settings.max_url_bytes} bytes.")
            method = scope["method"].upper()
            path = scope["path"][len(PREFIX):] or "/"
            name, params, writes = _route(method, path)
            if not _accepts_json(headers.get("accept")):
                raise NotAcceptable("The Connector API answers application/json only; accept it.")
            body = await _read_body(receive, headers.get("content-length")) if method in ("POST", "PUT") else b""
            query = {k.lower(): v for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                                        keep_blank_values=True)}
            req = Request(method, path, query, headers, body, url)
            answer = await anyio.to_thread.run_sync(self._serve, req, name, params, writes)
            status, payload, extra = answer.status, answer.payload, []
            if method == "HEAD":
                payload = None
        except ApiError as exc:
            status, extra = exc.status, list(exc.headers.items())
            payload = self._error(exc, url)
        except Exception:
            log.exception("unhandled error in Connector request %s", request_id)
            status, extra = 500, []
            payload = self._error(InternalError(f"An unexpected error occurred (request id {request_id})."), url)
        body_bytes = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode("utf-8")
        out = [(b"content-type", b"application/json; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-content-type-options", b"nosniff"), (b"x-ms-request-id", request_id.encode()),
               (b"content-length", str(len(body_bytes)).encode())]
        out += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra]
        if status == 204:
            out = [h for h in out if h[0] not in (b"content-type", b"content-length")]
            body_bytes = b""
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body_bytes})

    def _url(self, scope: Scope, headers: dict[str, str]) -> str:
        if self.rt.settings.public_url:
            base = self.rt.settings.public_url.rstrip("/")
        else:
            host = headers.get("host") or self.rt.settings.api_base.split("://", 1)[1]
            base = f"{scope.get('scheme', 'http')}://{host}"
        query = scope.get("query_string", b"").decode("latin-1")
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        return base + path + (f"?{query}" if query else "")

    @staticmethod
    def _error(exc: ApiError, url: str) -> dict[str, Any]:
        message = exc.message
        if isinstance(exc, videos.InvalidRequest):
            message = f"{INVALID} {exc.message}"
        return {"status": 0, "source": url, "message": message, "code": exc.code}

    # ---- synchronous part (worker thread) ------------------------------------------------------
    def _serve(self, req: Request, name: str, params: dict[str, str], writes: bool) -> Answer:
        api_base = self.rt.settings.api_base.rstrip("/") + "/api/"
        with self.rt.engine.connect() as conn:
            conn.info["write"] = writes  # SQLite: writers take the database lock when they begin
            with conn.begin():
                account = self.rt.authenticate(conn, req.headers.get("authorization"), api_base)
                scheduler = self.rt.scheduler
                ctx = Ctx(Store(conn, account.id, MODEL), account, self.rt.settings, base_url=api_base,
                          storage=self.rt.storage,
                          on_job_submitted=scheduler.notify_submitted if scheduler else None,
                          on_job_canceled=scheduler.notify_canceled if scheduler else None)
                try:
                    answer = getattr(self, f"_{name}")(ctx, req, params)
                    run_deferred(conn)
                finally:
                    discard_deferred(conn)
        if answer.wrote:
            self.rt.changes += 1
        return answer

    # ---- operations ----------------------------------------------------------------------------
    def _create(self, ctx: Ctx, req: Request, params: dict[str, str]) -> Answer:
        try:
            body = json.loads(req.body.decode("utf-8")) if req.body.strip() else None
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("Unable to deserialize JSON into Video object: the body is not JSON. Send "
                             '{"OriginalFileName": "movie.mp4"} with Content-Type: application/json.',
                             code="InvalidVideo") from None
        return Answer(200, videos.create(ctx, body), wrote=True)

    def _get(self, ctx: Ctx, req: Request, params: dict[str, str]) -> Answer:
        return Answer(200, videos.to_json(ctx, videos.find_video(ctx, params["id"])))

    def _delete(self, ctx: Ctx, req: Request, params: dict[str, str]) -> Answer:
        pending = videos.delete(ctx, params["id"])
        if pending is not None:
            return Answer(409, {"status": 0, "source": req.url, "message": pending, "code": "EncodingStopping"},
                          wrote=True)
        return Answer(204, None, wrote=True)

    def _mark_complete(self, ctx: Ctx, req: Request, params: dict[str, str]) -> Answer:
        return Answer(200, videos.mark_complete(ctx, params["id"]), wrote=True)

    def _status(self, ctx: Ctx, req: Request, params: dict[str, str]) -> Answer:
        return Answer(200, videos.status(ctx, params["id"]))

    def _token(self, ctx: Ctx, req: Request, params: dict[str, str]) -> Answer:
        return Answer(200, videos.authorization_token(ctx, params["id"], req.query.get("keyid")))

    def _playback(self, ctx: Ctx, req: Request, params: dict[str, str]) -> Answer:
        payload, made = videos.playback_endpoint(ctx, params["id"], req.query.get("endpointtype"))
        return Answer(200, payload, wrote=made)

    def _thumbnails(self, ctx: Ctx, req: Request, params: dict[str, str]) -> Answer:
        payload, made = videos.thumbnails(ctx, params["id"])
        return Answer(200, payload, wrote=made)

    def _formats(self, ctx: Ctx, req: Request, params: dict[str, str]) -> Answer:
        return Answer(200, [dict(f) for f in FORMATS])
