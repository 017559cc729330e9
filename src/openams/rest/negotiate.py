"""Content negotiation: which payload format a request is written in and which one to answer in.

Rule (as WCF Data Services v3 answered): `odata=verbose` → JSON verbose; other JSON (`application/
json`, `odata=minimalmetadata|fullmetadata|nometadata`) → JSON light, unless the client caps
MaxDataServiceVersion below 3.0 (then verbose); Atom/XML when asked or when nothing is said.
"""

from __future__ import annotations

from typing import Any

from ..errors import NotAcceptable, UnsupportedMediaType
from ..odata.atom import AtomWriter
from ..odata.jsonfmt import LightWriter, VerboseWriter

ATOM = AtomWriter()
VERBOSE = VerboseWriter()
LIGHT = {level: LightWriter(level) for level in ("minimal", "full", "none")}


def choose_writer(accept: str | None, fmt: str | None = None, max_dsv: str | None = None) -> Any:
    if fmt:
        f = fmt.strip().lower()
        if f in ("json", "application/json"):
            return LIGHT["minimal"]
        if f in ("verbose", "jsonverbose", "application/json;odata=verbose"):
            return VERBOSE
        if f in ("atom", "xml", "application/atom+xml", "application/xml"):
            return ATOM
        raise NotAcceptable(f"$format={fmt} is not supported; use json, verbose or atom.")
    text = (accept or "").lower().replace(" ", "")
    if not text or text.startswith("*/*"):
        return ATOM
    for item in text.split(","):
        media = item.split(";q=")[0]
        if "odata=verbose" in media:
            return VERBOSE
        if media.startswith("application/json"):
            if _below_v3(max_dsv):
                return VERBOSE
            for level in ("full", "none", "minimal"):
                if f"odata={level}metadata" in media:
                    return LIGHT[level]
            return LIGHT["minimal"]
        if media.startswith(("application/atom+xml", "application/xml", "text/xml", "application/atomsvc+xml")):
            return ATOM
        if media in ("*/*", "application/*", "text/*"):
            return ATOM
    raise NotAcceptable(
        f"Cannot answer in any of the formats in Accept: '{accept}'. Use application/json, "
        "application/json;odata=verbose or application/atom+xml."
    )


def _below_v3(max_dsv: str | None) -> bool:
    if not max_dsv:
        return False
    head = max_dsv.split(";")[0].strip()
    try:
        return float(head) < 3.0
    except ValueError:
        return False


def body_kind(content_type: str | None, body: bytes) -> str:
    """'json' or 'atom' for a request body, from Content-Type (sniffed when it is missing)."""
    ct = (content_type or "").lower()
    if "json" in ct:
        return "json"
    if "xml" in ct:
        return "atom"
    if not ct or ct.startswith(("application/octet-stream", "text/plain")):
        head = body.lstrip()[:1]
        if head in (b"{", b"["):
            return "json"
        if head == b"<" or body.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf<")):
            return "atom"
    raise UnsupportedMediaType(
        f"Request bodies must be application/json or application/atom+xml, not '{content_type}'."
    )


def content_type(writer: Any, kind: str) -> str:
    return getattr(writer, f"content_type_{kind}", None) or getattr(writer, "content_type_other", None) \
        or "application/xml;charset=utf-8"
