"""Low-level ISO base media file format (ISO/IEC 14496-12) box reading and writing.

Reading works on a buffer that is already in memory (a `moov` or `moof` read in one piece); the
file-level scan that decides *which* buffers to read lives in `index.py`, because media data must
never be fetched just to find the next box. Boxes are returned as light views (`Box`) over a
`memoryview`, so walking a 50 MB `moov` copies nothing until a caller asks for bytes.

Every malformed structure raises `BoxError` (never `struct.error` or `IndexError`), so callers
can turn it into their own error with context.

Writing is plain byte concatenation: `box()` and `full_box()` take already-serialised payload
parts and prepend the header, choosing the 64-bit `largesize` form only when needed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "CONTAINERS",
    "Box",
    "BoxError",
    "box",
    "fourcc",
    "full_box",
    "iter_boxes",
    "parse_header",
    "uuid_box",
]

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HDR = struct.Struct(">I4s")

MAX_U32 = 0xFFFFFFFF

CONTAINERS = frozenset(
    {"moov", "trak", "mdia", "minf", "stbl", "edts", "dinf", "mvex", "moof", "traf", "mfra", "udta", "sinf", "schi"}
)
"""Boxes whose payload is nothing but child boxes."""


class BoxError(ValueError):
    """A box structure is malformed: a size that does not fit, a payload too short for its fields."""


def fourcc(raw: bytes) -> str:
    """Box or codec type as text. Latin-1 keeps every byte value representable (`©nam` exists)."""
    return raw.decode("latin-1")


@dataclass(frozen=True, slots=True)
class Box:
    """A view of one box inside `buf`: `start` is the first header byte, `body` the first payload
    byte (after size, type, largesize and uuid), `end` one past the last byte."""

    type: str
    buf: memoryview
    start: int
    body: int
    end: int
    usertype: bytes = b""
    """The 16-byte extended type of a `uuid` box; empty for every other box."""

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def payload(self) -> memoryview:
        """The payload (everything after the header), zero-copy."""
        return self.buf[self.body : self.end]

    @property
    def raw(self) -> bytes:
        """The whole box, header included, as bytes (e.g. to re-emit a sample entry verbatim)."""
        return bytes(self.buf[self.start : self.end])

    def children(self, offset: int = 0) -> Iterator[Box]:
        """The child boxes, which start `offset` bytes into the payload (sample entries and full
        boxes such as `stsd` have fixed fields before their children)."""
        return iter_boxes(self.buf, self.body + offset, self.end)

    def child(self, type_: str, offset: int = 0) -> Box | None:
        """The first child of type `type_`, or None."""
        for b in self.children(offset):
            if b.type == type_:
                return b
        return None

    def find(self, path: str) -> Box | None:
        """The first box along a slash-separated path of container types: `mdia/minf/stbl`."""
        node: Box | None = self
        for part in path.split("/"):
            if node is None:
                return None
            node = node.child(part)
        return node

    def full_header(self) -> tuple[int, int]:
        """(version, flags) of a full box."""
        if self.end - self.body < 4:
            raise BoxError(f"'{self.type}' box at {self.start} is too short for a full-box header")
        word = _U32.unpack_from(self.buf, self.body)[0]
        return word >> 24, word & 0xFFFFFF

    def unpack(self, fmt: str | struct.Struct, offset: int = 0) -> tuple:
        """Unpack fixed fields `offset` bytes into the payload, bounds-checked against the box end."""
        st = fmt if isinstance(fmt, struct.Struct) else struct.Struct(fmt)
        pos = self.body + offset
        if offset < 0 or pos + st.size > self.end:
            raise BoxError(
                f"'{self.type}' box at {self.start} is too short: needs {offset + st.size} payload bytes, "
                f"has {self.end - self.body}"
            )
        return st.unpack_from(self.buf, pos)


def parse_header(data: bytes | memoryview, pos: int, limit: int) -> tuple[str, int, int, bytes]:
    """Decode the box header at `data[pos:]`; the box may not extend past `limit`.

    Returns (type, header size, total size, usertype). A size of 0 ("to the end of the
    enclosing space") is resolved against `limit`.
    """
    if pos + 8 > limit or pos + 8 > len(data):
        raise BoxError(f"truncated box header at {pos}: {max(0, min(limit, len(data)) - pos)} bytes left, need 8")
    size, raw_type = _HDR.unpack_from(data, pos)
    header = 8
    if size == 1:
        if pos + 16 > limit or pos + 16 > len(data):
            raise BoxError(f"truncated 64-bit box header at {pos}")
        size = _U64.unpack_from(data, pos + 8)[0]
        header = 16
    elif size == 0:
        size = limit - pos
    usertype = b""
    if raw_type == b"uuid":
        if pos + header + 16 > limit or pos + header + 16 > len(data):
            raise BoxError(f"truncated uuid box header at {pos}")
        usertype = bytes(data[pos + header : pos + header + 16])
        header += 16
    type_ = fourcc(raw_type)
    if size < header:
        raise BoxError(f"'{type_}' box at {pos} declares size {size}, smaller than its {header}-byte header")
    if pos + size > limit:
        raise BoxError(f"'{type_}' box at {pos} declares {size} bytes but only {limit - pos} remain in its parent")
    return type_, header, size, usertype


def iter_boxes(buf: bytes | bytearray | memoryview, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """Iterate the sibling boxes in `buf[start:end]`, validating that each fits its parent.

    Trailing bytes fewer than a box header are tolerated only when they are zero (some muxers
    pad `udta` with a 32-bit terminator); anything else is an error.
    """
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    limit = len(mv) if end is None else end
    pos = start
    while pos < limit:
        if limit - pos < 8:
            if any(mv[pos:limit]):
                raise BoxError(f"{limit - pos} stray bytes at {pos} where a box header was expected")
            return
        type_, header, size, usertype = parse_header(mv, pos, limit)
        yield Box(type_, mv, pos, pos + header, pos + size, usertype)
        pos += size


# -- writing ---------------------------------------------------------------------------------------


def box(type_: str | bytes, *payload: bytes) -> bytes:
    """Serialise one box: header + the concatenated payload parts."""
    raw = type_.encode("latin-1") if isinstance(type_, str) else type_
    if len(raw) != 4:
        raise ValueError(f"box type must be 4 bytes: {raw!r}")
    body = b"".join(payload)
    size = len(body) + 8
    if size > MAX_U32:
        return _U32.pack(1) + raw + _U64.pack(size + 8) + body
    return _U32.pack(size) + raw + body


def full_box(type_: str | bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """Serialise a full box: the version/flags word goes before the payload."""
    return box(type_, _U32.pack((version << 24) | (flags & 0xFFFFFF)), *payload)


def uuid_box(usertype: bytes, *payload: bytes, version: int | None = None, flags: int = 0) -> bytes:
    """Serialise a `uuid` box (PIFF/Smooth extensions); `version` given = a full-box layout."""
    if len(usertype) != 16:
        raise ValueError("a uuid box type is 16 bytes")
    parts = [usertype]
    if version is not None:
        parts.append(_U32.pack((version << 24) | (flags & 0xFFFFFF)))
    return box("uuid", *parts, *payload)
