"""OData v3 `$batch`: reading multipart/mixed batch requests and writing batch responses.

A batch request body (`Content-Type: multipart/mixed; boundary=batch_<x>`) holds parts. Each part
is either a *changeset* (`multipart/mixed; boundary=changeset_<y>`, whose parts are non-GET
operations applied atomically) or a single *query operation* (a GET). Every operation part is
`Content-Type: application/http`, `Content-Transfer-Encoding: binary`, a blank line, then an embedded
HTTP request: request line, headers, blank line, body.

`parse_batch` turns such a body into `BatchRequest` / `ChangeSet` objects; `write_batch` renders the
answer (`multipart/mixed; boundary=batchresponse_<uuid>`, changesets as nested
`changesetresponse_<uuid>` parts). `resolve_reference` rewrites a `$<Content-ID>` URL (`$1/Tasks`)
into the URL of the entity created by an earlier operation of the same changeset.

Reading is lenient the way real clients need: CRLF or bare-LF framing, quoted boundaries, transport
padding after delimiters, preamble and epilogue, request lines without an HTTP version, folded
headers, and `Content-ID` either on the MIME part headers or inside the embedded request. Bodies are
kept as exact bytes (the multipart framing is cut by hand, not by the `email` package, so CRLFs and
binary content survive). Anything that cannot be read is a `BadRequest` naming the part at fault;
an over-large part is `PayloadTooLarge`; a body that is not multipart/mixed at all is
`UnsupportedMediaType`.

Only URL-level `$<id>` references are resolved here. References inside bodies (a JSON
`"uri":"$1"`, an Atom `href="$1"`) are *not* rewritten by this module: a payload reader that meets
such a binding should pass the value through `resolve_reference` itself.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote

from openams.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

__all__ = [
    "CHANGESET_METHODS",
    "DEFAULT_MAX_PARTS",
    "DEFAULT_MAX_PART_BYTES",
    "BatchRequest",
    "BatchResponse",
    "ChangeSet",
    "parse_batch",
    "parse_media_type",
    "reference_id",
    "resolve_reference",
    "write_batch",
]

DEFAULT_MAX_PARTS = 1000
DEFAULT_MAX_PART_BYTES = 16 * 1024 * 1024

#: Methods a changeset may contain (MERGE is the OData v3 / WCF spelling of PATCH).
CHANGESET_METHODS = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})
#: Methods allowed outside a changeset.
QUERY_METHODS = frozenset({"GET"})

# `$name` segments that are OData system segments, never Content-ID references.
_SYSTEM_SEGMENTS = frozenset({
    "metadata", "batch", "links", "count", "value", "ref", "entity", "all", "crossjoin", "root",
    "each", "it", "filter", "select", "expand", "orderby", "top", "skip", "format", "inlinecount",
    "skiptoken", "search", "apply", "id",
})

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HTTP_VERSION = re.compile(r"^HTTP/\d+(\.\d+)?$", re.IGNORECASE)
_BINARY_ENCODINGS = frozenset({"binary", "8bit", "7bit"})


# --------------------------------------------------------------------------------------------------
# Data


@dataclass
class BatchRequest:
    """One operation of a batch, as the client wrote it.

    `method` is upper-cased; `url` is exactly the text of the request line (absolute, rooted, or
    relative such as `Assets` or `$1/Tasks`); `headers` has lower-cased names (repeated headers are
    joined with ", "); `body` is the exact bytes after the embedded blank line (cut to the embedded
    `Content-Length` when one is given). `content_id` comes from a `Content-ID` header on the MIME
    part or in the embedded request. `label` says where the operation sits ("batch part 1,
    changeset part 2"), for error messages.
    """

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_id: str | None = None
    http_version: str = "HTTP/1.1"
    label: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        """The value of header `name` (any case), or `default`."""
        return self.headers.get(name.lower(), default)


@dataclass
class ChangeSet:
    """Operations that must succeed or fail together, in the order the client sent them."""

    requests: list[BatchRequest] = field(default_factory=list)
    label: str = ""


@dataclass
class BatchResponse:
    """The answer to one operation. `reason` defaults to the standard phrase for `status`.

    `content_id`, when given, is echoed as a `Content-ID` header of the embedded response (the place
    WCF Data Services v3 put it), unless `headers` already has one.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    content_id: str | None = None
    reason: str | None = None


# --------------------------------------------------------------------------------------------------
# Header-level helpers


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """Split `type/subtype; a=b; c="d;e"` into the lower-cased media type and its parameters.

    Parameter names are lower-cased; quoted values are unquoted (backslash escapes honoured).
    """
    text = value or ""
    params: dict[str, str] = {}
    i = text.find(";")
    media = (text if i < 0 else text[:i]).strip().lower()
    if i < 0:
        return media, params
    pos, n = i + 1, len(text)
    while pos < n:
        while pos < n and text[pos] in " \t;":
            pos += 1
        start = pos
        while pos < n and text[pos] not in "=;":
            pos += 1
        name = text[start:pos].strip().lower()
        val = ""
        if pos < n and text[pos] == "=":
            pos += 1
            while pos < n and text[pos] in " \t":
                pos += 1
            if pos < n and text[pos] == '"':
                pos += 1
                chars: list[str] = []
                while pos < n and text[pos] != '"':
                    if text[pos] == "\\" and pos + 1 < n:
                        pos += 1
                    chars.append(text[pos])
                    pos += 1
                pos += 1  # closing quote (or end of text)
                val = "".join(chars)
                while pos < n and text[pos] != ";":
                    pos += 1
            else:
                start = pos
                while pos < n and text[pos] != ";":
                    pos += 1
                val = text[start:pos].strip()
        if name:
            params.setdefault(name, val)
    return media, params


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _lines(data: bytes, start: int = 0) -> Iterator[tuple[bytes, int]]:
    """Yield (line without its terminator, offset just after the terminator) from `start`."""
    pos, n = start, len(data)
    while pos < n:
        nl = data.find(b"\n", pos)
        if nl < 0:
            line = data[pos:]
            yield (line[:-1] if line.endswith(b"\r") else line), n
            return
        line = data[pos:nl]
        yield (line[:-1] if line.endswith(b"\r") else line), nl + 1
        pos = nl + 1


def _read_head(data: bytes, start: int, where: str, what: str) -> tuple[list[tuple[str, str]], int]:
    """Read header lines from `start` up to a blank line (or the end of `data`).

    Returns the (name, value) pairs and the offset of the first byte after the blank line.
    """
    headers: list[tuple[str, str]] = []
    end = len(data)
    for raw, after in _lines(data, start):
        if raw == b"":
            return headers, after
        line = _decode(raw)
        if line[:1] in (" ", "\t"):
            if not headers:
                raise BadRequest(f"{where}: the {what} begin with a continuation line {line.strip()!r}.")
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.match(name):
            raise BadRequest(
                f"{where}: {line[:80]!r} is not a header line; the {what} must be 'Name: value' lines "
                "followed by a blank line.")
        headers.append((name, value.strip()))
    return headers, end


def _header_dict(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


# --------------------------------------------------------------------------------------------------
# Multipart framing


def _boundary_of(content_type: str, where: str) -> str:
    media, params = parse_media_type(content_type)
    if media != "multipart/mixed":
        raise UnsupportedMediaType(
            f"{where} has Content-Type {content_type or '(none)'!r}; a $batch body must be "
            "multipart/mixed with a boundary parameter.")
    boundary = params.get("boundary", "")
    if not boundary:
        raise BadRequest(
            f"{where} has Content-Type {content_type!r} without a boundary parameter; "
            "send multipart/mixed; boundary=<boundary>.")
    if len(boundary) > 200 or any(c in boundary for c in "\r\n") or not boundary.isascii():
        raise BadRequest(f"{where} declares an unusable boundary {boundary[:80]!r}.")
    return boundary


def _split_multipart(body: bytes, boundary: str, where: str, part_word: str, budget: list[int],
                     max_parts: int) -> list[bytes]:
    """Cut `body` at its `--boundary` delimiter lines; return the parts' contents (exact bytes).

    A delimiter is a line that is exactly `--boundary` (or `--boundary--` for the end), optionally
    followed by spaces/tabs; the line break before it belongs to the delimiter, not to the part.
    Text before the first delimiter (preamble) and after the closing one (epilogue) is ignored.
    `budget[0]` counts parts left across the whole batch.
    """
    marker = b"--" + boundary.encode("ascii")
    n = len(body)
    parts: list[bytes] = []
    start: int | None = None
    crlf = True
    pos = 0
    while True:
        i = body.find(marker, pos)
        if i < 0:
            break
        pos = i + 1
        if i > 0 and body[i - 1] != 0x0A:
            continue  # not at the start of a line: ordinary content
        j = i + len(marker)
        closing = body.startswith(b"--", j)
        k = j + 2 if closing else j
        while k < n and body[k] in b" \t":
            k += 1
        if k == n:
            eol_len = 0
        elif body.startswith(b"\r\n", k):
            eol_len = 2
        elif body[k] == 0x0A or (body[k] == 0x0D and k + 1 == n):
            eol_len = 1
        else:
            continue  # `--boundaryXYZ`: a longer word, not a delimiter
        if start is None:
            crlf = eol_len != 1
        else:
            content = body[start:i]
            if crlf and content.endswith(b"\r\n"):
                content = content[:-2]
            elif content.endswith(b"\n"):
                content = content[:-1]
            parts.append(content)
        if closing:
            return parts
        budget[0] -= 1
        if budget[0] < 0:
            raise BadRequest(
                f"The batch has more than {max_parts} parts (limit reached in {where}); "
                "split it into smaller batches.")
        start = k + eol_len
    here = where[:1].upper() + where[1:]
    if start is None:
        raise BadRequest(
            f"{here} contains no delimiter line '--{boundary}'; the boundary in the Content-Type "
            "does not match the body.")
    raise BadRequest(
        f"{here} is truncated: {part_word} {len(parts) + 1} is not followed by a closing "
        f"delimiter '--{boundary}--'.")


# --------------------------------------------------------------------------------------------------
# Parts


def _read_operation(content: bytes, where: str, max_part_bytes: int,
                    mime: list[tuple[str, str]], body_start: int) -> BatchRequest:
    if len(content) > max_part_bytes:
        raise PayloadTooLarge(
            f"{where} is {len(content)} bytes; the limit for one batch operation is {max_part_bytes} bytes.")
    mime_h = _header_dict(mime)
    cte = mime_h.get("content-transfer-encoding", "binary").strip().lower()
    if cte not in _BINARY_ENCODINGS:
        raise BadRequest(
            f"{where} has Content-Transfer-Encoding {cte!r}; only binary is supported.")

    request_line = ""
    after = len(content)
    for raw, nxt in _lines(content, body_start):
        if raw.strip():
            request_line = _decode(raw).strip()
            after = nxt
            break
    if not request_line:
        raise BadRequest(
            f"{where} has no request line; after the part headers and a blank line it must hold an "
            "HTTP request such as 'POST https://host/api/Jobs HTTP/1.1'.")
    tokens = request_line.split()
    version = "HTTP/1.1"
    if len(tokens) >= 3 and tokens[-1].upper().startswith("HTTP/"):
        if not _HTTP_VERSION.match(tokens[-1]):
            raise BadRequest(
                f"{where}: malformed request line {request_line[:200]!r}; {tokens[-1]!r} is not an "
                "HTTP version.")
        version = tokens.pop().upper()
    if len(tokens) < 2 or not _TOKEN.match(tokens[0]) or tokens[-1].upper().startswith("HTTP/"):
        raise BadRequest(
            f"{where}: malformed request line {request_line[:200]!r}; expected "
            "'<METHOD> <URL> HTTP/1.1'.")
    method = tokens[0].upper()
    url = " ".join(tokens[1:])

    pairs, body_at = _read_head(content, after, where, "embedded request headers")
    headers = _header_dict(pairs)
    body = content[body_at:]
    length = headers.get("content-length")
    if length is not None:
        try:
            declared = int(length.strip())
        except ValueError:
            raise BadRequest(f"{where}: Content-Length {length!r} is not a number.") from None
        if declared < 0 or declared > len(body):
            raise BadRequest(
                f"{where}: Content-Length says {declared} bytes but the operation body has {len(body)}.")
        body = body[:declared]

    outer_id = mime_h.get("content-id")
    inner_id = headers.get("content-id")
    outer_id = outer_id.strip() if outer_id is not None else None
    inner_id = inner_id.strip() if inner_id is not None else None
    if outer_id and inner_id and outer_id != inner_id:
        raise BadRequest(
            f"{where} has two different Content-IDs ({outer_id!r} on the part, {inner_id!r} in the "
            "request); send one.")
    content_id = outer_id or inner_id or None
    return BatchRequest(method=method, url=url, headers=headers, body=body, content_id=content_id,
                        http_version=version, label=where)


def _part_type(mime: list[tuple[str, str]], where: str) -> str:
    ctype = _header_dict(mime).get("content-type")
    if ctype is None:
        raise BadRequest(
            f"{where} has no Content-Type header; use application/http for an operation or "
            "multipart/mixed for a changeset.")
    return ctype


def parse_batch(content_type: str, body: bytes, *, max_parts: int = DEFAULT_MAX_PARTS,
                max_part_bytes: int = DEFAULT_MAX_PART_BYTES) -> list[BatchRequest | ChangeSet]:
    """Read a `$batch` request body into top-level GETs and changesets, in order.

    `max_parts` bounds the number of MIME parts in the whole batch (changesets and the operations
    inside them all count); `max_part_bytes` bounds one operation part.
    """
    boundary = _boundary_of(content_type, "The $batch request")
    budget = [max_parts]
    items: list[BatchRequest | ChangeSet] = []
    parts = _split_multipart(bytes(body), boundary, "the $batch body", "batch part", budget, max_parts)
    for index, content in enumerate(parts, start=1):
        where = f"batch part {index}"
        mime, body_start = _read_head(content, 0, where, "part headers")
        ctype = _part_type(mime, where)
        media, _ = parse_media_type(ctype)
        if media == "multipart/mixed":
            items.append(_read_changeset(content[body_start:], ctype, where, budget, max_parts,
                                         max_part_bytes))
        elif media == "application/http":
            op = _read_operation(content, where, max_part_bytes, mime, body_start)
            if op.method not in QUERY_METHODS:
                raise BadRequest(
                    f"{where} is a {op.method} outside a changeset; only GET may stand at the top level "
                    "of a batch. Put POST, PUT, PATCH, MERGE and DELETE operations in a changeset.")
            items.append(op)
        else:
            raise BadRequest(
                f"{where} has Content-Type {ctype!r}; expected application/http (an operation) or "
                "multipart/mixed (a changeset).")
    return items


def _read_changeset(body: bytes, ctype: str, where: str, budget: list[int], max_parts: int,
                    max_part_bytes: int) -> ChangeSet:
    boundary = _boundary_of(ctype, where)  # the caller checked the media type is multipart/mixed
    parts = _split_multipart(body, boundary, f"the changeset in {where}", "changeset part", budget,
                             max_parts)
    cs = ChangeSet(label=where)
    seen: set[str] = set()
    for index, content in enumerate(parts, start=1):
        inner = f"{where}, changeset part {index}"
        mime, body_start = _read_head(content, 0, inner, "part headers")
        ctype_inner = _part_type(mime, inner)
        media, _ = parse_media_type(ctype_inner)
        if media.startswith("multipart/"):
            raise BadRequest(f"{inner} is a nested changeset; changesets cannot contain changesets.")
        if media != "application/http":
            raise BadRequest(f"{inner} has Content-Type {ctype_inner!r}; expected application/http.")
        op = _read_operation(content, inner, max_part_bytes, mime, body_start)
        if op.method == "GET":
            raise BadRequest(
                f"{inner} is a GET; a changeset may only contain POST, PUT, PATCH, MERGE or DELETE. "
                "Move the GET outside the changeset.")
        if op.method not in CHANGESET_METHODS:
            raise BadRequest(f"{inner} uses method {op.method!r}, which a changeset does not support.")
        ref = reference_id(op.url)
        if ref is not None and ref not in seen:
            raise BadRequest(
                f"{inner} refers to ${ref}, but no earlier operation in this changeset has "
                f"Content-ID {ref}.")
        if op.content_id is not None:
            if op.content_id in seen:
                raise BadRequest(f"{inner} repeats Content-ID {op.content_id!r}; Content-IDs must be unique "
                                 "within a changeset.")
            seen.add(op.content_id)
        cs.requests.append(op)
    return cs


# --------------------------------------------------------------------------------------------------
# $<Content-ID> references


def _locate_reference(url: str, base: str | None) -> tuple[str, int] | None:
    """Find a `$<id>` first resource segment: return (id, offset just past it in `url`)."""
    text = url.strip()
    lead = len(url) - len(url.lstrip())
    path_start: int
    if base and text.lower().startswith(base.rstrip("/").lower() + "/"):
        path_start = len(base.rstrip("/")) + 1
        only_first = True
    elif text.startswith(("$", "%24")):
        path_start = 0
        only_first = True
    else:
        scheme = text.find("://")
        if scheme > 0 and text[:scheme].isalpha():
            slash = text.find("/", scheme + 3)
            if slash < 0:
                return None
            path_start = slash
        elif text.startswith("/"):
            path_start = 0
        else:
            return None  # a relative resource path such as `Assets`: no reference
        only_first = False
    stop = len(text)
    for ch in "?#":
        k = text.find(ch, path_start)
        if 0 <= k < stop:
            stop = k
    pos = path_start
    while pos <= stop:
        nxt = text.find("/", pos, stop)
        end = stop if nxt < 0 else nxt
        segment = unquote(text[pos:end])
        if segment.startswith("$"):
            name = segment[1:]
            if not name or name.lower() in _SYSTEM_SEGMENTS:
                return None
            return name, lead + end
        if segment and only_first:
            return None
        if nxt < 0:
            return None
        pos = nxt + 1
    return None


def reference_id(url: str, *, base: str | None = None) -> str | None:
    """The Content-ID a URL refers to (`$1/Tasks` → `"1"`), or None when it is not a reference.

    A reference is a `$<id>` first resource segment: at the start of a relative URL, right after
    `base` when one is given, otherwise the first `$` segment of an absolute or rooted path that is
    not an OData system segment (`$metadata`, `$links`, `$count`, `$value`, ...).
    """
    found = _locate_reference(url, base)
    return None if found is None else found[0]


def resolve_reference(url: str, content_ids: dict[str, str], *, base: str | None = None) -> str:
    """Replace a leading `$<id>` in `url` with the URL of the entity operation `<id>` created.

    `content_ids` maps Content-ID → that entity's URL (e.g. `https://host/api/Jobs('nb%3Ajid%3A…')`).
    `$1/Tasks`, `/api/$1/Tasks` and `https://host/api/$1/Tasks` all become
    `https://host/api/Jobs('…')/Tasks`; the query string is kept. A URL with no reference is
    returned unchanged; an id that no earlier operation declared is a `BadRequest`. Only URLs are
    resolved — `$<id>` values inside request bodies are left to the payload readers.
    """
    found = _locate_reference(url, base)
    if found is None:
        return url
    cid, end = found
    if cid not in content_ids:
        raise BadRequest(
            f"The URL {url!r} refers to ${cid}, but no earlier operation in this changeset has "
            f"Content-ID {cid}.")
    target = content_ids[cid].rstrip("/")
    return target + url[end:].rstrip()


# --------------------------------------------------------------------------------------------------
# Responses


def _check_header(name: str, value: str) -> None:
    if not _TOKEN.match(name) or any(c in value for c in "\r\n"):
        raise ValueError(f"unsafe header in batch response: {name!r}: {value!r}")


def _render_response(resp: BatchResponse) -> bytes:
    reason = resp.reason
    if reason is None:
        try:
            reason = HTTPStatus(resp.status).phrase
        except ValueError:
            reason = ""
    if any(c in reason for c in "\r\n"):
        raise ValueError(f"unsafe reason phrase in batch response: {reason!r}")
    lines = [f"HTTP/1.1 {resp.status} {reason}".rstrip()]
    names = {name.lower() for name, _ in resp.headers}
    if resp.content_id is not None and "content-id" not in names:
        _check_header("Content-ID", resp.content_id)
        lines.append(f"Content-ID: {resp.content_id}")
    for name, value in resp.headers:
        _check_header(name, value)
        lines.append(f"{name}: {value}")
    if resp.body and "content-length" not in names:
        lines.append(f"Content-Length: {len(resp.body)}")
    head = ("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            + "\r\n".join(lines) + "\r\n\r\n")
    return head.encode("utf-8") + resp.body


def _new_boundary(prefix: str, bodies: list[bytes]) -> str:
    while True:
        boundary = f"{prefix}_{uuid.uuid4()}"
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in b for b in bodies):
            return boundary


def _multipart(boundary: str, parts: list[bytes]) -> bytes:
    marker = b"--" + boundary.encode("ascii")
    out = bytearray()
    for part in parts:
        out += marker + b"\r\n" + part + b"\r\n"
    out += marker + b"--"
    return bytes(out)


def write_batch(items: list[BatchResponse | list[BatchResponse]]) -> tuple[str, bytes]:
    """Render batch responses: returns (Content-Type header value, body).

    Each item is the answer to one top-level operation (`BatchResponse`) or to one changeset (a list
    of `BatchResponse`, rendered as a nested `changesetresponse_<uuid>` multipart). A changeset that
    failed as a whole is answered with a single `BatchResponse` in its place, as OData v3 requires.
    Line breaks are CRLF.
    """
    bodies = [r.body for item in items for r in (item if isinstance(item, list) else [item])]
    outer = _new_boundary("batchresponse", bodies)
    parts: list[bytes] = []
    for item in items:
        if isinstance(item, list):
            inner = _new_boundary("changesetresponse", bodies)
            nested = _multipart(inner, [_render_response(r) for r in item])
            parts.append(f"Content-Type: multipart/mixed; boundary={inner}\r\n\r\n".encode("ascii") + nested)
        else:
            parts.append(_render_response(item))
    return f"multipart/mixed; boundary={outer}", _multipart(outer, parts) + b"\r\n"
