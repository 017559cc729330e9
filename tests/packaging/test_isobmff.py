"""Box reading and writing primitives."""

from __future__ import annotations

import struct

import pytest

from openams.packaging.isobmff import Box, BoxError, box, full_box, iter_boxes, parse_header, uuid_box


def test_box_and_full_box_layout() -> None:
    assert box("free") == b"\x00\x00\x00\x08free"
    assert box(b"skip", b"ab", b"cd") == b"\x00\x00\x00\x0cskipabcd"
    assert full_box("mfhd", 1, 0x020304, b"\x00\x00\x00\x07") == (
        b"\x00\x00\x00\x10mfhd\x01\x02\x03\x04\x00\x00\x00\x07"
    )
    with pytest.raises(ValueError):
        box("toolong")


def test_iter_nested_boxes_and_full_header() -> None:
    inner = full_box("tfhd", 0, 0x020000, struct.pack(">I", 3))
    data = box("moof", full_box("mfhd", 0, 0, struct.pack(">I", 9)), box("traf", inner)) + box("mdat", b"xyz")
    boxes = list(iter_boxes(data))
    assert [b.type for b in boxes] == ["moof", "mdat"]
    moof, mdat = boxes
    assert moof.start == 0 and moof.size == len(data) - 11
    assert bytes(mdat.payload) == b"xyz"
    tfhd = moof.find("traf/tfhd")
    assert isinstance(tfhd, Box)
    assert tfhd.full_header() == (0, 0x020000)
    assert tfhd.unpack(">I", 4) == (3,)
    assert tfhd.raw == inner
    assert moof.find("traf/trun") is None and moof.child("nope") is None


def test_largesize_and_size_zero_headers() -> None:
    payload = b"0123456789"
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + len(payload)) + payload
    (b,) = iter_boxes(large)
    assert (b.type, b.body - b.start, b.size, bytes(b.payload)) == ("mdat", 16, 26, payload)
    to_end = struct.pack(">I4s", 0, b"mdat") + payload
    assert parse_header(to_end, 0, len(to_end)) == ("mdat", 8, 18, b"")


def test_uuid_boxes() -> None:
    usertype = bytes(range(16))
    data = uuid_box(usertype, b"\x00\x00\x00\x05", version=1, flags=0)
    (b,) = iter_boxes(data)
    assert b.type == "uuid" and b.usertype == usertype
    assert b.full_header() == (1, 0)
    assert b.unpack(">I", 4) == (5,)
    with pytest.raises(ValueError):
        uuid_box(b"short")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (struct.pack(">I4s", 4, b"free"), "smaller than its 8-byte header"),
        (struct.pack(">I4s", 100, b"free") + bytes(8), "declares 100 bytes but only 16 remain"),
        (struct.pack(">I4s", 1, b"mdat") + b"\x00\x00", "truncated 64-bit box header"),
        (struct.pack(">I4s", 24, b"uuid") + bytes(4), "truncated uuid box header"),
        (box("free") + b"\x01\x02", "stray bytes"),
    ],
)
def test_malformed_boxes_raise_box_error(data: bytes, message: str) -> None:
    with pytest.raises(BoxError, match=message):
        list(iter_boxes(data))


def test_truncated_header() -> None:
    with pytest.raises(BoxError, match="truncated box header at 0: 3 bytes left"):
        parse_header(b"\x00\x00\x10", 0, 3)


def test_trailing_zero_padding_is_tolerated() -> None:
    assert [b.type for b in iter_boxes(box("free") + b"\x00\x00\x00\x00")] == ["free"]


def test_children_must_fit_their_parent() -> None:
    parent = box("traf", struct.pack(">I4s", 64, b"trun"))
    (traf,) = iter_boxes(parent)
    with pytest.raises(BoxError, match="'trun' box at 8 declares 64 bytes"):
        list(traf.children())


def test_field_reads_are_bounds_checked() -> None:
    (b,) = iter_boxes(box("tfdt", b"\x01"))
    with pytest.raises(BoxError, match="too short for a full-box header"):
        b.full_header()
    with pytest.raises(BoxError, match="too short: needs 8 payload bytes, has 1"):
        b.unpack(">Q")
