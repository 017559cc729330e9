"""HTTP details of the origin that do not depend on media: conditional requests, ranges,
cache headers, CORS, compression and error bodies."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

GZIP_MIN_BYTES = 1024
"""Manifests smaller than this are sent as they are: compressing them saves nothing."""


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: Any = None
    """An iterator of chunks sent instead of `body` (progressive downloads of large files)."""
    length: int | None = None


def error(status: int, code: str, message: str) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Response(status, [("Content-Type", "application/json; charset=utf-8"), ("Cache-Control", "no-store")],
                    body)


def http_date(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return format_datetime(value.astimezone(UTC), usegmt=True)


def not_modified(headers: dict[str, str], etag: str, last_modified: datetime | None) -> bool:
    """RFC 9110 §13.2.2: If-None-Match wins over If-Modified-Since."""
    inm = headers.get("if-none-match")
    if inm is not None:
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return "*" in tags or etag in tags
    ims = headers.get("if-modified-since")
    if ims and last_modified is not None:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        lm = last_modified if last_modified.tzinfo else last_modified.replace(tzinfo=UTC)
        return lm.replace(microsecond=0) <= since
    return False


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """`bytes=a-b` → (start, end inclusive); None when the header is absent or not a single byte
    range (the whole body is sent, as RFC 9110 allows); "unsatisfiable" for 416."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            if not last.isdigit():
                return None
            length = int(last)
            if length == 0:
                return "unsatisfiable"
            return max(size - length, 0), size - 1
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    if start > end:
        return None
    return start, min(end, size - 1)


def maybe_gzip(headers: dict[str, str], body: bytes) -> tuple[bytes, bool]:
    accept = headers.get("accept-encoding", "")
    wants = any(part.split(";")[0].strip().lower() in ("gzip", "*") and "q=0" not in part.replace(" ", "")
                for part in accept.split(","))
    if not wants or len(body) < GZIP_MIN_BYTES:
        return body, False
    return gzip.compress(body, compresslevel=5, mtime=0), True


def preflight(headers: dict[str, str]) -> Response:
    asked = headers.get("access-control-request-headers", "")
    out = [("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
           ("Access-Control-Max-Age", "86400")]
    if asked:
        out.append(("Access-Control-Allow-Headers", asked))
    return Response(200, out)
