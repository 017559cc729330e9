"""The key delivery service's HTTP surface, under `/keydelivery/` on the API listener.

- `GET|POST /keydelivery/?KID=<guid>` — an AES-128 envelope key: the 16 raw bytes. The token
  comes from `Authorization: Bearer …`, the SWT form `Authorization: Bearer=…`, or a `token`
  query parameter (native HLS players cannot add headers, so the key URI in the playlist may carry
  it).
- `POST /keydelivery/ClearKey/` — a W3C ClearKey licence for CENC content (`{"kids": [...]}` in,
  `{"keys": [{"kty": "oct", "kid", "k"}]}` out), which is how browsers play CENC without a
  commercial DRM.
- `/keydelivery/PlayReady/`, `/Widevine/`, `/FairPlay/` — answer 501 naming what is missing: a
  licence needs a provider (`LicenseProvider`) that an operator plugs in; the packaged content
  already carries the PSSH/headers an operator's own licence server needs.

Refusals answer 401 (no or bad token: WWW-Authenticate says so) or 403 (token valid but not for
this key, or the address is not allowed), with a JSON body carrying a reason code.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl

import anyio

from .service import Outcome, deliver, parse_kid

log = logging.getLogger("openams.keydelivery")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PREFIX = "/keydelivery"
MAX_BODY = 64 * 1024
MAX_CLEARKEY_KIDS = 16


class LicenseProvider(Protocol):
    """What an operator implements to issue PlayReady, Widevine or FairPlay licences: given the
    request body, the clear content key and its id (already authorised by the key's policy),
    return the licence response (status, content type, body)."""

    def license(self, system: str, body: bytes, key_id: uuid.UUID, key: bytes) -> tuple[int, str, bytes]: ...


def is_keydelivery_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def _json(status: int, payload: dict[str, Any], extra: list[tuple[str, str]] | None = None
          ) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "application/json; charset=utf-8"), *(extra or [])], json.dumps(payload).encode()


def _error(status: int, code: str, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    extra = [("WWW-Authenticate", f'Bearer error="invalid_token", error_description="{code}"')] if status == 401 \
        else []
    return _json(status, {"error": {"code": code, "message": message}}, extra)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class KeyDeliveryApp:
    def __init__(self, runtime: Any, provider: LicenseProvider | None = None) -> None:
        self.rt = runtime
        self.provider = provider

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"].upper()
        request_id = str(uuid.uuid4())
        try:
            if method == "OPTIONS":
                status, out, body = 200, [("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
                                          ("Access-Control-Allow-Headers",
                                           headers.get("access-control-request-headers", "authorization")),
                                          ("Access-Control-Max-Age", "86400")], b""
            elif method not in ("GET", "POST"):
                status, out, body = _error(405, "MethodNotAllowed", "The key delivery service answers GET and POST.")
            else:
                payload = await self._body(receive, headers)
                status, out, body = await anyio.to_thread.run_sync(self._handle, scope, headers, method, payload)
        except _TooLarge:
            status, out, body = _error(413, "RequestTooLarge", f"Key requests are at most {MAX_BODY} bytes.")
        except Exception:
            log.exception("unhandled error in key delivery request %s", request_id)
            status, out, body = _error(500, "InternalError", f"An unexpected error occurred (request id {request_id}).")
        out = [*out, ("Cache-Control", "no-store"), ("Access-Control-Allow-Origin", "*"),
               ("Access-Control-Expose-Headers", "request-id"), ("request-id", request_id),
               ("Content-Length", str(len(body)))]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in out]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _body(receive: Receive, headers: dict[str, str]) -> bytes:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            raise _TooLarge
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    # ---- worker thread --------------------------------------------------------------------------
    def _handle(self, scope: Scope, headers: dict[str, str], method: str, body: bytes
                ) -> tuple[int, list[tuple[str, str]], bytes]:
        path = scope["path"][len(PREFIX):].strip("/").lower()
        query = dict((k.lower(), v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                                          keep_blank_values=True))
        token = headers.get("authorization") or query.get("token")
        client_ip = (scope.get("client") or ("", 0))[0]
        if path == "":
            kid = parse_kid(query.get("kid"))
            if kid is None:
                return _error(400, "InvalidKeyId", "Ask for a key with ?KID=<key id GUID>.")
            outcome = deliver(self.rt.engine, self.rt.settings, kid, token, client_ip, "aes")
            if outcome.status != 200:
                return _error(outcome.status, outcome.reason, outcome.message)
            return 200, [("Content-Type", "application/octet-stream")], outcome.key
        if path == "clearkey":
            return self._clearkey(method, body, token, client_ip)
        if path in ("playready", "widevine", "fairplay"):
            return self._drm(path, query, body, token, client_ip)
        return _error(404, "NotFound", "Key delivery paths: /keydelivery/?KID=…, /keydelivery/ClearKey/, "
                                       "/keydelivery/PlayReady/, /keydelivery/Widevine/, /keydelivery/FairPlay/.")

    def _clearkey(self, method: str, body: bytes, token: str | None, client_ip: str
                  ) -> tuple[int, list[tuple[str, str]], bytes]:
        if method != "POST":
            return _error(405, "MethodNotAllowed", "ClearKey licences are requested with POST and a JSON body.")
        try:
            request = json.loads(body)
            kids = [uuid.UUID(bytes=_b64url_decode(k)) for k in request["kids"]]
        except (ValueError, KeyError, TypeError):
            return _error(400, "InvalidLicenseRequest", 'A ClearKey request is JSON: {"kids": ["<base64url key id>"], '
                                                        '"type": "temporary"}.')
        if not kids or len(kids) > MAX_CLEARKEY_KIDS:
            return _error(400, "InvalidLicenseRequest", f"Ask for 1 to {MAX_CLEARKEY_KIDS} key ids.")
        keys = []
        for kid in kids:
            outcome: Outcome = deliver(self.rt.engine, self.rt.settings, kid, token, client_ip, "clearkey")
            if outcome.status != 200:
                return _error(outcome.status, outcome.reason, outcome.message)
            keys.append({"kty": "oct", "kid": _b64url(kid.bytes), "k": _b64url(outcome.key)})
        return _json(200, {"keys": keys, "type": request.get("type", "temporary")})

    def _drm(self, system: str, query: dict[str, str], body: bytes, token: str | None, client_ip: str
             ) -> tuple[int, list[tuple[str, str]], bytes]:
        names = {"playready": "PlayReady", "widevine": "Widevine", "fairplay": "FairPlay"}
        if self.provider is None:
            return _error(501, "NotImplemented", f"{names[system]} licences need a licence provider, and none is "
                          "configured (setting license_provider / OPENAMS_LICENSE_PROVIDER = 'package.module:name'). "
                          "The packaged content carries the PSSH / protection header, so a licence server of your "
                          "own can issue them; browsers can use ClearKey (/keydelivery/ClearKey/).")
        kid = parse_kid(query.get("kid"))
        if kid is None:
            return _error(400, "InvalidKeyId", "Ask with ?KID=<key id GUID>.")
        outcome = deliver(self.rt.engine, self.rt.settings, kid, token, client_ip, "clearkey")
        if outcome.status != 200:
            return _error(outcome.status, outcome.reason, outcome.message)
        status, ctype, payload = self.provider.license(names[system], body, kid, outcome.key)
        return status, [("Content-Type", ctype)], payload


class _TooLarge(Exception):
    pass
