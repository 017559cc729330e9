"""Differential test: the origin's DASH segments against Shaka Packager's, from the same MP4.

Both packagers must cut the same segments (2 s GOPs) and put the same samples in each: the
decode-order sample bytes and sample durations of every video and audio segment are compared
(Shaka Packager comes from npm with its binary inside the package; see tests/support/shaka_packager.py).

Encrypted: the same comparison for CENC (`cenc`, AES-CTR with sub-samples) with one key on both
sides — each side's samples are decrypted here with that side's own `tenc`/`senc` (a decryptor
written from ISO 23001-7, independent of openams'), and must equal each other and the clear ones.
"""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lxml import etree

from tests.conftest import service_missing
from tests.origin.conftest import make_clip, publish
from tests.support.client import ApiClient
from tests.support.protection import protect_asset
from tests.support.serve import ServeProcess
from tests.support.shaka_packager import packager_path

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("origin-differential")]  # one server + encode per run
NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


def child_boxes(data: bytes, start: int, end: int) -> dict[str, tuple[int, int]]:
    """{type: (payload start, box end)} of the boxes in data[start:end] (first of each type)."""
    found: dict[str, tuple[int, int]] = {}
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        found.setdefault(kind.decode("latin-1"), (start + 8, start + size))
        start += size
    return found


def find_box(data: bytes, path: str) -> tuple[int, int]:
    """(payload start, end) of the box at a slash path such as `moof/traf/senc`; sample entries
    (`encv`/`enca`) are descended past their fixed fields."""
    start, end = 0, len(data)
    for name in path.split("/"):
        boxes = child_boxes(data, start, end)
        assert name in boxes, (path, name, sorted(boxes))
        start, end = boxes[name]
        if name == "stsd":
            start += 8  # version/flags + entry count
        elif name in ("encv", "enca"):
            start += 78 if name == "encv" else 28
    return start, end


def cenc_decrypt(init: bytes, segment: bytes, encrypted: list[bytes]) -> list[bytes]:
    """Decrypt one segment's samples with the key `KEY`: the per-sample IV size from `tenc`, each
    sample's IV and sub-samples from `senc`; AES-CTR over the protected ranges only."""
    entry = "encv" if child_boxes(init, *find_box(init, "moov/trak/mdia/minf/stbl/stsd")).get("encv") else "enca"
    tenc, _ = find_box(init, f"moov/trak/mdia/minf/stbl/stsd/{entry}/sinf/schi/tenc")
    assert init[tenc + 6] == 1, "tenc: not protected"
    iv_size = init[tenc + 7]
    senc, _ = find_box(segment, "moof/traf/senc")
    flags = int.from_bytes(segment[senc + 1:senc + 4], "big")
    (count,) = struct.unpack_from(">I", segment, senc + 4)
    assert count == len(encrypted)
    pos, out = senc + 8, []
    for sample in encrypted:
        iv = segment[pos:pos + iv_size].ljust(16, b"\0")
        pos += iv_size
        ranges = [(0, len(sample))]
        if flags & 2:
            (n,) = struct.unpack_from(">H", segment, pos)
            pos += 2
            ranges, at = [], 0
            for _ in range(n):
                clear, protected = struct.unpack_from(">HI", segment, pos)
                pos += 6
                ranges.append((at + clear, protected))
                at += clear + protected
            assert at == len(sample), "sub-samples do not cover the sample"
        ctr = Cipher(algorithms.AES(KEY), modes.CTR(iv)).decryptor()
        plain = bytearray(sample)
        for offset, size in ranges:
            plain[offset:offset + size] = ctr.update(sample[offset:offset + size])
        out.append(bytes(plain))
    return out


KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
"""The content key of the encrypted comparison (both packagers get the same one)."""


def samples(init: bytes, segment: bytes, decrypt: bool = False) -> list[tuple[bytes, int]]:
    """(bytes, duration) of every sample of one single-track fMP4 segment, in decode order, read
    from its `tfhd`/`trun` (decrypted with `KEY` when `decrypt`)."""
    moof = child_boxes(segment, 0, len(segment))
    assert "moof" in moof and "mdat" in moof, sorted(moof)
    moof_start = moof["moof"][0] - 8
    tfhd, _ = find_box(segment, "moof/traf/tfhd")
    tfhd_flags = int.from_bytes(segment[tfhd + 1:tfhd + 4], "big")
    pos = tfhd + 8  # version/flags + track id
    defaults = {"duration": 0, "size": 0}
    for bit, name in ((0x1, "base"), (0x2, "description"), (0x8, "duration"), (0x10, "size"), (0x20, "flags")):
        if tfhd_flags & bit:
            width = 8 if name == "base" else 4
            defaults[name] = int.from_bytes(segment[pos:pos + width], "big")
            pos += width
    assert not tfhd_flags & 0x1, "explicit base data offset"
    trun, _ = find_box(segment, "moof/traf/trun")
    flags = int.from_bytes(segment[trun + 1:trun + 4], "big")
    (count,) = struct.unpack_from(">I", segment, trun + 4)
    pos = trun + 8
    offset = moof_start
    if flags & 0x1:
        offset += struct.unpack_from(">i", segment, pos)[0]
        pos += 4
    if flags & 0x4:
        pos += 4
    found = []
    for _ in range(count):
        duration, size = defaults["duration"], defaults["size"]
        if flags & 0x100:
            (duration,) = struct.unpack_from(">I", segment, pos)
            pos += 4
        if flags & 0x200:
            (size,) = struct.unpack_from(">I", segment, pos)
            pos += 4
        pos += 4 * bool(flags & 0x400) + 4 * bool(flags & 0x800)
        found.append((segment[offset:offset + size], duration))
        offset += size
    assert offset <= len(segment)
    if decrypt:
        plain = cenc_decrypt(init, segment, [b for b, _d in found])
        found = [(p, d) for p, (_b, d) in zip(plain, found, strict=True)]
    return found


def shaka_segments(packager: Path, clip: Path, out: Path, key_id: str | None = None
                   ) -> dict[str, list[list[tuple[bytes, int]]]]:
    out.mkdir()
    crypt = ["--enable_raw_key_encryption", "--keys", f"label=:key_id={key_id.replace('-', '')}:key={KEY.hex()}",
             "--protection_scheme", "cenc", "--clear_lead", "0"] if key_id else []
    subprocess.run([str(packager),
                    f"in={clip},stream=video,init_segment={out}/v_init.mp4,segment_template={out}/v_$Number$.m4s",
                    f"in={clip},stream=audio,init_segment={out}/a_init.mp4,segment_template={out}/a_$Number$.m4s",
                    "--segment_duration", "2", "--mpd_output", str(out / "x.mpd"), *crypt],
                   check=True, capture_output=True, timeout=120)
    found: dict[str, list[list[tuple[bytes, int]]]] = {}
    for kind, prefix in (("video", "v"), ("audio", "a")):
        init = (out / f"{prefix}_init.mp4").read_bytes()
        numbers = sorted(int(m.group(1)) for p in out.glob(f"{prefix}_*.m4s")
                         if (m := re.fullmatch(rf"{prefix}_(\d+)\.m4s", p.name)))
        found[kind] = [samples(init, (out / f"{prefix}_{n}.m4s").read_bytes(), bool(key_id)) for n in numbers]
    return found


def origin_segments(mpd_url: str, decrypt: bool = False) -> dict[str, list[list[tuple[bytes, int]]]]:
    base = mpd_url.rsplit("/", 1)[0] + "/"
    root = etree.fromstring(httpx.get(mpd_url, timeout=30).content)
    found: dict[str, list[list[tuple[bytes, int]]]] = {}
    with httpx.Client(timeout=30) as http:
        for aset in root.iterfind(".//d:AdaptationSet", NS):
            kind = aset.get("contentType") or aset.get("mimeType", "").split("/")[0]
            rep = aset.find("d:Representation", NS)
            template = rep.find("d:SegmentTemplate", NS)
            if template is None:
                template = aset.find("d:SegmentTemplate", NS)
            bw = rep.get("bandwidth")
            init = http.get(base + template.get("initialization").replace("$Bandwidth$", bw)).content
            segs = []
            t = 0
            for s in template.iterfind("d:SegmentTimeline/d:S", NS):
                t = int(s.get("t", t))
                for _ in range(int(s.get("r", "0")) + 1):
                    url = base + template.get("media").replace("$Bandwidth$", bw).replace("$Time$", str(t))
                    r = http.get(url)
                    assert r.status_code == 200, url
                    segs.append(samples(init, r.content, decrypt))
                    t += int(s.get("d"))
            found[kind] = segs
    return found


def test_same_samples_and_timing_per_segment_as_shaka_packager(origin_server: ServeProcess, tmp_path: Path) -> None:
    packager = packager_path()
    if packager is None:
        service_missing("Shaka Packager is not installed (npm shaka-packager); run scripts/players.sh")
    clip = make_clip(tmp_path / "diff.mp4", 12, "640x360", gop=50)
    with origin_server.client() as client:
        asset_id = client.upload_files([str(clip)], "differential").asset_id
    published = publish(origin_server, "differential", asset_id)
    assert_same_samples(origin_segments(published.url("mpd-time-csf")),
                        shaka_segments(packager, clip, tmp_path / "shaka"))


Segments = dict[str, list[list[tuple[bytes, int]]]]


def assert_same_samples(ours: Segments, theirs: Segments) -> None:
    for kind in ("video", "audio"):
        assert len(ours[kind]) == len(theirs[kind]), (kind, len(ours[kind]), len(theirs[kind]))
        for n, (mine, ref) in enumerate(zip(ours[kind], theirs[kind], strict=True)):
            assert [d for _b, d in mine] == [d for _b, d in ref], f"{kind} segment {n}: durations differ"
            assert [b for b, _d in mine] == [b for b, _d in ref], f"{kind} segment {n}: sample bytes differ"
        assert sum(len(s) for s in ours[kind]) > 0


def test_cenc_segments_decrypt_to_the_same_samples_as_shaka_packagers(origin_server: ServeProcess,
                                                                      tmp_path: Path) -> None:
    packager = packager_path()
    if packager is None:
        service_missing("Shaka Packager is not installed (npm shaka-packager); run scripts/players.sh")
    clip = make_clip(tmp_path / "diff-cenc.mp4", 8, "640x360", gop=50)
    with origin_server.client() as client, httpx.Client(base_url=origin_server.api, timeout=60) as http:
        asset_id = client.upload_files([str(clip)], "differential-cenc").asset_id
        api = ApiClient(http, client.token())
        key_id, _ = protect_asset(api, origin_server.api, asset_id, "diff-cenc", key_type=0, delivery=3,
                                  restrictions=[{"Name": "open", "KeyRestrictionType": 0, "Requirements": None}],
                                  policy_type=4, protocols=2, clear=KEY)
    url = publish(origin_server, "differential-cenc", asset_id).url("mpd-time-csf")
    served = origin_segments(url)
    clear = shaka_segments(packager, clip, tmp_path / "clear")
    assert all(s != c for kind in ("video", "audio") for s, c in zip(served[kind], clear[kind], strict=True)), \
        "a served segment holds the clear samples"
    ours = origin_segments(url, decrypt=True)
    assert_same_samples(ours, shaka_segments(packager, clip, tmp_path / "shaka", key_id))
    assert_same_samples(ours, clear)
