"""Sample encryption (CENC `cenc`/`cbcs`), DRM `pssh` builders and HLS AES-128.

The checks that matter are external: FFmpeg must decode what we encrypt (with the key) to the
same frames as the clear packaging, and Shaka Packager's output for the same source, key and
key id must agree with ours — both decrypted here by an independent test-side decryptor that
reads the fragments the way a browser does (`saiz`/`saio` → auxiliary information, `trun` →
samples) and uses AES only as a block cipher (ECB), so it shares no code with `encryption.py`.
"""

from __future__ import annotations

import base64
import re
import struct
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lxml import etree

from openams.media.ffmpeg import find_ffmpeg
from openams.packaging.encryption import (
    CLEARKEY_SYSTEM_ID,
    MAX_SUBSAMPLES,
    PLAYREADY_SYSTEM_ID,
    WIDEVINE_SYSTEM_ID,
    aes128_segment,
    cbcs_constant_iv,
    cenc_iv,
    clearkey_pssh,
    encrypt_samples,
    parse_pssh,
    playready_checksum,
    playready_header,
    playready_object,
    playready_pssh,
    pssh,
    sample_crypto,
    segment_iv,
    subsample_map,
    subsample_maps,
    track_encryption,
    widevine_pssh,
    widevine_pssh_data,
)
from openams.packaging.fmp4 import PIFF_SENC_UUID, init_segment, load_samples, media_segment, smooth_fragment
from openams.packaging.hls import aes128_key, media_playlist
from openams.packaging.index import TrackIndex
from openams.packaging.isobmff import iter_boxes
from openams.packaging.model import Protection, Sample, SegmentRef, TrackInfo, TrackView
from openams.packaging.mpegts import advance_continuity, packet_counts, ts_segment
from tests.packaging.conftest import AVCC, file_reader, index_path
from tests.support.shaka_packager import packager_path

KID = bytes.fromhex("0b1c2d3e4f5061728394a5b6c7d8e9f0")
KEY = bytes.fromhex("3a5c7e90b2d4f6183a5c7e90b2d4f618")
TEN_MHZ = 10_000_000


# -- an independent CENC reader/decryptor -------------------------------------------------------------------


@dataclass(frozen=True)
class Tenc:
    entry: str
    original: str
    scheme: str
    scheme_version: int
    iv_size: int
    constant_iv: bytes
    crypt: int
    skip: int
    kid: bytes


def read_tenc(init: bytes) -> Tenc:
    (moov,) = [b for b in iter_boxes(init) if b.type == "moov"]
    stsd = moov.find("trak/mdia/minf/stbl/stsd")
    assert stsd is not None
    entry = next(iter_boxes(stsd.buf, stsd.body + 8, stsd.end))
    sinf = entry.child("sinf", 78 if entry.type == "encv" else 28)
    assert sinf is not None, entry.type
    frma, schm, tenc = sinf.child("frma"), sinf.child("schm"), sinf.find("schi/tenc")
    assert frma is not None and schm is not None and tenc is not None
    scheme, scheme_version = bytes(schm.payload[4:8]).decode(), schm.unpack(">I", 8)[0]
    version, _ = tenc.full_header()
    _, pattern, protected, iv_size = tenc.unpack(">BBBB", 4)
    assert protected == 1
    kid = bytes(tenc.payload[8:24])
    constant = b""
    if iv_size == 0:
        size = tenc.payload[24]
        constant = bytes(tenc.payload[25 : 25 + size])
    crypt, skip = (pattern >> 4, pattern & 15) if version == 1 else (0, 0)
    return Tenc(entry.type, bytes(frma.payload).decode(), scheme, scheme_version, iv_size, constant, crypt, skip, kid)


@dataclass
class Fragment:
    dts: int
    samples: list[bytes]
    ivs: list[bytes]
    subsamples: list[list[tuple[int, int]] | None]


def _aux_entries(data: bytes, count: int, iv_size: int, subsamples: bool) -> tuple[list[bytes], list[list | None]]:
    ivs: list[bytes] = []
    subs: list[list[tuple[int, int]] | None] = []
    pos = 0
    for _ in range(count):
        ivs.append(data[pos : pos + iv_size])
        pos += iv_size
        if subsamples:
            (n,) = struct.unpack_from(">H", data, pos)
            pos += 2
            subs.append([struct.unpack_from(">HI", data, pos + 6 * k) for k in range(n)])
            pos += 6 * n
        else:
            subs.append(None)
    assert pos == len(data)
    return ivs, subs


def read_fragment(segment: bytes, tenc: Tenc) -> Fragment:
    """Samples and their sample-encryption information; the information is read twice, from the
    `senc` (or PIFF) box and through `saiz`/`saio` as browsers do, and must agree."""
    boxes = list(iter_boxes(segment))
    (moof,) = [b for b in boxes if b.type == "moof"]
    (mdat,) = [b for b in boxes if b.type == "mdat"]
    traf = moof.child("traf")
    assert traf is not None
    tfhd, tfdt, trun = traf.child("tfhd"), traf.child("tfdt"), traf.child("trun")
    assert tfhd is not None and tfdt is not None and trun is not None
    _, tf_flags = tfhd.full_header()
    assert not tf_flags & 0x1  # no explicit base: offsets count from the moof
    pos = 8
    default_size = 0
    for bit, width in ((0x2, 4), (0x8, 4), (0x10, 4), (0x20, 4)):
        if tf_flags & bit:
            if bit == 0x10:
                default_size = tfhd.unpack(">I", pos)[0]
            pos += width
    _, tr_flags = trun.full_header()
    count = trun.unpack(">I", 4)[0]
    pos = 8
    data_offset = 0
    if tr_flags & 0x1:
        data_offset = trun.unpack(">i", pos)[0]
        pos += 4
    if tr_flags & 0x4:
        pos += 4
    sizes = []
    for _ in range(count):
        for bit in (0x100, 0x200, 0x400, 0x800):
            if tr_flags & bit:
                if bit == 0x200:
                    sizes.append(trun.unpack(">I", pos)[0])
                pos += 4
        if not tr_flags & 0x200:
            sizes.append(default_size)
    start = moof.start + data_offset
    assert mdat.body <= start and start + sum(sizes) <= mdat.end
    samples = []
    for size in sizes:
        samples.append(segment[start : start + size])
        start += size

    senc = traf.child("senc") or next((b for b in traf.children() if b.usertype == PIFF_SENC_UUID), None)
    assert senc is not None
    _, senc_flags = senc.full_header()
    assert senc.unpack(">I", 4)[0] == count
    senc_data = bytes(senc.buf[senc.body + 8 : senc.end])
    ivs, subs = _aux_entries(senc_data, count, tenc.iv_size, bool(senc_flags & 2))
    saiz, saio = traf.child("saiz"), traf.child("saio")
    if saiz is None:
        assert saio is None and not senc_data  # only when there is nothing to describe (cbcs audio)
    else:
        assert saio is not None
        default, n = saiz.unpack(">BI", 4)
        assert n == count
        info_sizes = [default] * n if default else list(saiz.payload[9 : 9 + n])
        assert saio.unpack(">I", 4)[0] == 1
        offset = saio.unpack(">I", 8)[0] if saio.full_header()[0] == 0 else saio.unpack(">Q", 8)[0]
        aux = segment[moof.start + offset : moof.start + offset + sum(info_sizes)]
        assert aux == senc_data  # saio points exactly at the first entry, relative to the moof
    dts = tfdt.unpack(">Q", 4)[0] if tfdt.full_header()[0] == 1 else tfdt.unpack(">I", 4)[0]
    return Fragment(dts, samples, ivs, subs)


def _ecb(key: bytes, blocks: bytes, decrypt: bool = False) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(blocks) + ctx.finalize()


def _protected_ranges(size: int, subs: list[tuple[int, int]] | None) -> list[tuple[int, int]]:
    if subs is None:
        return [(0, size)]
    ranges, pos = [], 0
    for clear, protected in subs:
        pos += clear
        ranges.append((pos, pos + protected))
        pos += protected
    assert pos == size, "sub-samples must cover the sample exactly"
    return ranges


def decrypt(tenc: Tenc, key: bytes, data: bytes, iv: bytes, subs: list[tuple[int, int]] | None) -> bytes:
    out = bytearray(data)
    ranges = _protected_ranges(len(data), subs)
    if tenc.scheme == "cenc":
        stream = b"".join(data[a:b] for a, b in ranges)
        blocks = -(-len(stream) // 16)
        counters = b"".join(iv + i.to_bytes(8, "big") for i in range(blocks))
        keystream = _ecb(key, counters)
        plain = bytes(x ^ y for x, y in zip(stream, keystream, strict=False))
        pos = 0
        for a, b in ranges:
            out[a:b] = plain[pos : pos + b - a]
            pos += b - a
        return bytes(out)
    assert tenc.scheme == "cbcs"
    crypt, skip = (tenc.crypt, tenc.skip) if subs is not None else (1, 0)
    for a, b in ranges:
        prev = tenc.constant_iv  # the chain restarts at every sub-sample
        block = a
        while block + 16 * crypt <= b:
            for _ in range(crypt):
                cipher = data[block : block + 16]
                out[block : block + 16] = bytes(x ^ y for x, y in zip(_ecb(key, cipher, True), prev, strict=True))
                prev = cipher
                block += 16
            block += 16 * skip
    return bytes(out)


def decrypt_all(init: bytes, segments: Sequence[bytes], key: bytes = KEY) -> list[list[bytes]]:
    tenc = read_tenc(init)
    out = []
    for segment in segments:
        frag = read_fragment(segment, tenc)
        out.append([decrypt(tenc, key, s, iv, sub)
                    for s, iv, sub in zip(frag.samples, frag.ivs, frag.subsamples, strict=True)])
    return out


# -- helpers ----------------------------------------------------------------------------------------------------


def cuts(track: TrackIndex) -> list[tuple[int, int]]:
    n = len(track.table)
    starts = list(track.table.sync) if track.info.kind == "video" else list(range(0, n, 47))
    return [(a, b - a) for a, b in zip(starts, [*starts[1:], n], strict=True)]


def source_samples(path: Path, track: TrackIndex) -> list[bytes]:
    read = file_reader(path)
    return [read(track.table.offsets[i], track.table.sizes[i]) for i in range(len(track.table))]


def package(path: Path, track: TrackIndex, protection: Protection | None) -> tuple[bytes, list[bytes]]:
    read = file_reader(path)
    segments = [media_segment(track.info, load_samples(track.table, first, count, read), sequence_number=seq,
                              protection=protection)
                for seq, (first, count) in enumerate(cuts(track), start=1)]
    return init_segment(track.info, protection=protection), segments


def run_ffmpeg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([find_ffmpeg(), "-nostdin", "-hide_banner", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def framecrc(path: Path, key: bytes | None = None) -> list[str]:
    """FFmpeg's decoded-frame CRCs (`-v error`: any decoder complaint fails the test)."""
    r = run_ffmpeg("-v", "error", *(["-decryption_key", key.hex()] if key else []), "-i", str(path),
                   "-f", "framecrc", "-")
    assert r.returncode == 0 and r.stderr == "", r.stderr[-2000:]
    return [line for line in r.stdout.splitlines() if line and not line.startswith("#")]


# -- (a) + (c): FFmpeg decodes what we encrypt ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
@pytest.mark.parametrize("layout", ["progressive", "hevc"])
def test_ffmpeg_decodes_encrypted_segments_like_clear_ones(scheme: str, layout: str, request: pytest.FixtureRequest,
                                                           tmp_path: Path) -> None:
    path: Path = request.getfixturevalue(layout)
    protection = Protection(scheme, KID, KEY, pssh=(clearkey_pssh([KID]),))  # type: ignore[arg-type]
    for track in index_path(path).tracks:
        clear_init, clear_segments = package(path, track, None)
        init, segments = package(path, track, protection)
        (tmp_path / "clear.mp4").write_bytes(clear_init + b"".join(clear_segments))
        (tmp_path / "enc.mp4").write_bytes(init + b"".join(segments))

        # served bytes differ from the clear ones in every sample that has something to encrypt
        # (a whole block under cbcs, any protected byte under cenc)…
        source = source_samples(path, track)
        fragments = [read_fragment(seg, read_tenc(init)) for seg in segments]
        served = [s for f in fragments for s in f.samples]
        layouts = [sub for f in fragments for sub in f.subsamples]
        assert len(served) == len(source)
        smallest = 16 if scheme == "cbcs" else 1
        for data, clear, sub in zip(served, source, layouts, strict=True):
            ranges = [p for _, p in sub] if sub is not None else [len(clear)]
            assert (data != clear) == any(p >= smallest for p in ranges)
        assert sum(a != b for a, b in zip(served, source, strict=True)) > 0.9 * len(source)
        # …and FFmpeg, given the key, decodes exactly the clear stream's frames
        expected = framecrc(tmp_path / "clear.mp4")
        assert framecrc(tmp_path / "enc.mp4", KEY) == expected
        if track.info.kind == "video":
            assert len(expected) == len(track.table)
        # our independent decryptor restores the source samples exactly
        assert [s for seg in decrypt_all(init, segments) for s in seg] == source


def test_wrong_key_does_not_decode(progressive: Path, tmp_path: Path) -> None:
    (track, _) = index_path(progressive).tracks
    init, segments = package(progressive, track, Protection("cenc", KID, KEY))
    (tmp_path / "enc.mp4").write_bytes(init + b"".join(segments))
    (tmp_path / "clear.mp4").write_bytes(b"".join([init_segment(track.info), *package(progressive, track, None)[1]]))
    r = run_ffmpeg("-v", "error", "-decryption_key", bytes(16).hex(), "-i", str(tmp_path / "enc.mp4"),
                   "-f", "framecrc", "-")
    assert r.stderr or r.stdout != run_ffmpeg("-v", "error", "-i", str(tmp_path / "clear.mp4"),
                                              "-f", "framecrc", "-").stdout


def test_smooth_fragments_carry_piff_sample_encryption(progressive: Path, tmp_path: Path) -> None:
    protection = Protection("cenc", KID, KEY)
    for track in index_path(progressive).tracks:
        read = file_reader(progressive)
        init = init_segment(track.info, timescale=TEN_MHZ, protection=protection)
        fragments, clear = [], []
        for seq, (first, count) in enumerate(cuts(track), start=1):
            samples = load_samples(track.table, first, count, read)
            fragments.append(smooth_fragment(track.info, samples, sequence_number=seq, protection=protection))
            clear.append(smooth_fragment(track.info, samples, sequence_number=seq))
            traf = next(iter_boxes(fragments[-1])).child("traf")
            assert traf is not None and traf.child("senc") is None
            assert [b.usertype for b in traf.children() if b.type == "uuid"][-1] == PIFF_SENC_UUID
        assert [s for seg in decrypt_all(init, fragments) for s in seg] == source_samples(progressive, track)
        (tmp_path / "enc.mp4").write_bytes(init + b"".join(fragments))
        (tmp_path / "clear.mp4").write_bytes(init_segment(track.info, timescale=TEN_MHZ) + b"".join(clear))
        assert framecrc(tmp_path / "enc.mp4", KEY) == framecrc(tmp_path / "clear.mp4")
    info = index_path(progressive).tracks[0].info
    with pytest.raises(ValueError, match="only cenc"):
        smooth_fragment(info, [Sample(b"\0\0\0\x02\x65\x88", 0, 512, 0, True)], sequence_number=1,
                        protection=Protection("cbcs", KID, KEY))


# -- (b) differential against Shaka Packager ------------------------------------------------------------------


def _shaka(packager: Path, source: Path, out: Path, scheme: str,
           iv: bytes | None) -> dict[str, tuple[bytes, list[bytes]]]:
    out.mkdir()
    args = [str(packager)]
    for kind in ("video", "audio"):
        args.append(f"in={source},stream={kind},init_segment={out}/{kind}_init.mp4,"
                    f"segment_template={out}/{kind}_$Number$.m4s")
    args += ["--segment_duration", "2", "--enable_raw_key_encryption", "--keys",
             f"label=:key_id={KID.hex()}:key={KEY.hex()}", "--protection_scheme", scheme, "--clear_lead", "0",
             "--protection_systems", "CommonSystem,Widevine,PlayReady", "--mpd_output", str(out / "x.mpd")]
    if iv is not None:
        args += ["--iv", iv.hex()]
    subprocess.run(args, check=True, capture_output=True, timeout=120)
    found = {}
    for kind in ("video", "audio"):
        numbers = sorted(int(m.group(1)) for p in out.glob(f"{kind}_*.m4s")
                         if (m := re.fullmatch(rf"{kind}_(\d+)\.m4s", p.name)))
        found[kind] = ((out / f"{kind}_init.mp4").read_bytes(),
                       [(out / f"{kind}_{n}.m4s").read_bytes() for n in numbers])
    return found


def _runs_of(source: list[bytes], segments: list[list[bytes]]) -> None:
    """Each segment's samples are a run of consecutive source samples, the runs back to back."""
    flat = [s for seg in segments for s in seg]
    start = source.index(flat[0])
    assert flat == source[start : start + len(flat)]
    assert all(segments)


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_same_decrypted_samples_as_shaka_packager(scheme: str, progressive: Path, tmp_path: Path) -> None:
    packager = packager_path()
    if packager is None:
        pytest.skip("Shaka Packager is not installed (npm shaka-packager; scripts/players.sh)")
    protection = Protection(scheme, KID, KEY)  # type: ignore[arg-type]
    constant_iv = cbcs_constant_iv(protection) if scheme == "cbcs" else None
    theirs = _shaka(packager, progressive, tmp_path / "shaka", scheme, constant_iv)
    tracks = {t.info.kind: t for t in index_path(progressive).tracks}
    for kind, track in tracks.items():
        source = source_samples(progressive, track)
        shaka_init, shaka_segments = theirs[kind]
        init, segments = package(progressive, track, protection)
        mine_tenc, shaka_tenc = read_tenc(init), read_tenc(shaka_init)
        assert mine_tenc == replace(shaka_tenc, constant_iv=mine_tenc.constant_iv) and mine_tenc.kid == KID
        assert (mine_tenc.crypt, mine_tenc.skip) == ((1, 9) if kind == "video" and scheme == "cbcs" else (0, 0))

        shaka_plain = decrypt_all(shaka_init, shaka_segments)
        mine_plain = decrypt_all(init, segments)
        _runs_of(source, shaka_plain)
        _runs_of(source, mine_plain)
        assert mine_plain[0][0] == source[0]
        if kind == "video":  # same 2 s GOPs: segment by segment the same samples
            assert mine_plain == shaka_plain
            # and the same clear/protected split of every sample (slice headers parsed alike)
            mine_subs = [s for seg in segments for s in read_fragment(seg, mine_tenc).subsamples]
            shaka_subs = [s for seg in shaka_segments for s in read_fragment(seg, shaka_tenc).subsamples]
            assert mine_subs == shaka_subs
        if scheme == "cbcs":  # same constant IV and layout: byte-identical encrypted samples
            ours = dict(zip((s for seg in mine_plain for s in seg),
                            (s for seg in segments for s in read_fragment(seg, mine_tenc).samples), strict=True))
            for seg, plain in zip(shaka_segments, shaka_plain, strict=True):
                assert read_fragment(seg, shaka_tenc).samples == [ours[p] for p in plain]

        # the pssh boxes we would build for the same key are the ones Shaka Packager writes
        (moov,) = [b for b in iter_boxes(shaka_init) if b.type == "moov"]
        boxes = {parse_pssh(b.raw).system_id: b.raw for b in moov.children() if b.type == "pssh"}
        assert boxes[CLEARKEY_SYSTEM_ID] == clearkey_pssh([KID])
        assert boxes[WIDEVINE_SYSTEM_ID] == widevine_pssh([KID], protection_scheme=scheme)  # type: ignore[arg-type]
        algorithm = "AESCTR" if scheme == "cenc" else "AESCBC"
        header = playready_header([KID], keys=[KEY], algorithm=algorithm)  # type: ignore[arg-type]
        assert boxes[PLAYREADY_SYSTEM_ID] == playready_pssh(playready_object(header))


# -- (d) HLS AES-128 ------------------------------------------------------------------------------------------------


def test_hls_aes128_playlist_plays_with_ffmpeg(progressive: Path, tmp_path: Path) -> None:
    video = index_path(progressive).tracks[0]
    read = file_reader(progressive)
    info = video.info
    segments, refs = [], []
    continuity: dict[int, int] = {}
    for first, count in cuts(video):
        samples = load_samples(video.table, first, count, read)
        tracks = [(info, samples)]
        segments.append(ts_segment(tracks, continuity=continuity))
        continuity = advance_continuity(continuity, packet_counts(tracks))
        start = min(s.pts for s in samples) - info.media_time
        end = samples[-1].dts + samples[-1].duration - info.media_time
        refs.append(SegmentRef(start, end - start, first, count))
    view = TrackView(info, tuple(refs))
    (tmp_path / "key.bin").write_bytes(KEY)
    explicit = bytes(range(16))
    for name, key_line_iv in (("implicit", None), ("explicit", explicit)):
        d = tmp_path / name
        d.mkdir()
        (d / "key.bin").write_bytes(KEY)
        text = media_playlist(view, fmt="m3u8-aapl", keys=[aes128_key("key.bin", key_line_iv)])
        assert '#EXT-X-KEY:METHOD=AES-128,URI="key.bin"' in text
        uris = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert len(uris) == len(segments)
        for sequence, (uri, data) in enumerate(zip(uris, segments, strict=True)):
            iv = key_line_iv if key_line_iv is not None else segment_iv(sequence)
            encrypted = aes128_segment(data, KEY, iv)
            assert len(encrypted) == (len(data) // 16 + 1) * 16 and encrypted[:188] != data[:188]
            (d / uri).write_bytes(encrypted)
        (d / "list.m3u8").write_text(text)
        r = run_ffmpeg("-v", "error", "-allowed_extensions", "ALL", "-i", str(d / "list.m3u8"), "-f", "framecrc", "-")
        assert r.returncode == 0 and r.stderr == "", r.stderr[-2000:]
        frames = [line for line in r.stdout.splitlines() if line and not line.startswith("#")]
        assert len(frames) == len(video.table)


def test_aes128_helpers() -> None:
    assert segment_iv(0) == bytes(16)
    assert segment_iv(258) == bytes(14) + b"\x01\x02"
    with pytest.raises(ValueError):
        segment_iv(-1)
    for size in (0, 1, 15, 16, 17, 188 * 7):
        data = bytes(range(256)) * 6
        data = data[:size]
        out = aes128_segment(data, KEY, segment_iv(5))
        assert len(out) == (size // 16 + 1) * 16
        plain = Cipher(algorithms.AES(KEY), modes.CBC(segment_iv(5))).decryptor().update(out)
        unpadder = padding.PKCS7(128).unpadder()
        assert unpadder.update(plain) + unpadder.finalize() == data
    with pytest.raises(ValueError, match="16 bytes"):
        aes128_segment(b"x", KEY, b"short")
    with pytest.raises(ValueError, match="16 bytes"):
        aes128_segment(b"x", b"short", bytes(16))


# -- (e) pssh, PlayReady, Widevine ----------------------------------------------------------------------------------


def test_clearkey_pssh_is_the_w3c_common_format() -> None:
    kid2 = uuid.UUID("9eb4050d-e44b-4802-932e-27d75083e266").bytes
    box = clearkey_pssh([KID, kid2])
    # W3C "Common SystemID and PSSH Box Format": size, 'pssh', version 1, flags 0, system id,
    # KID_count, KIDs, DataSize 0
    expected = (struct.pack(">I4sI", 8 + 4 + 16 + 4 + 2 * 16 + 4, b"pssh", 0x01000000)
                + bytes.fromhex("1077efecc0b24d02ace33c1e52e2fb4b") + struct.pack(">I", 2) + KID + kid2
                + struct.pack(">I", 0))
    assert box == expected
    parsed = parse_pssh(box)
    assert (parsed.system_id, parsed.version, parsed.kids, parsed.data) == (CLEARKEY_SYSTEM_ID, 1, (KID, kid2), b"")
    assert base64.b64encode(clearkey_pssh([bytes.fromhex("00112233445566778899aabbccddeeff")])).decode() == \
        "AAAANHBzc2gBAAAAEHfv7MCyTQKs4zweUuL7SwAAAAEAESIzRFVmd4iZqrvM3e7/AAAAAA=="
    with pytest.raises(ValueError):
        clearkey_pssh([])
    with pytest.raises(ValueError):
        clearkey_pssh([b"short"])


def test_generic_pssh_versions() -> None:
    system = uuid.UUID("12345678-1234-5678-1234-567812345678")
    v0 = pssh(system, data=b"opaque")
    assert parse_pssh(v0) == parse_pssh(pssh(str(system), (), b"opaque"))
    assert (parse_pssh(v0).version, parse_pssh(v0).kids, parse_pssh(v0).data) == (0, (), b"opaque")
    v1 = pssh(system.bytes, [KID], b"x")
    assert (parse_pssh(v1).version, parse_pssh(v1).kids) == (1, (KID,))
    assert parse_pssh(pssh(system, version=1)).kids == ()
    with pytest.raises(ValueError):
        pssh(system, [KID], version=0)
    with pytest.raises(ValueError):
        parse_pssh(v1[:-1])


def _protobuf(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field, value) pairs of a protobuf message (varints and length-delimited fields only)."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(data):
        key = varint()
        if key & 7 == 0:
            out.append((key >> 3, varint()))
        else:
            assert key & 7 == 2
            size = varint()
            out.append((key >> 3, data[pos : pos + size]))
            pos += size
    return out


def test_widevine_pssh_data_fields() -> None:
    kid2 = bytes(range(16))
    data = widevine_pssh_data([KID, kid2], provider="openams", content_id=b"asset-1", protection_scheme="cbcs",
                              policy="")
    assert _protobuf(data) == [(2, KID), (2, kid2), (3, b"openams"), (4, b"asset-1"), (6, b""),
                               (9, int.from_bytes(b"cbcs", "big"))]
    box = parse_pssh(widevine_pssh([KID], content_id=b"c" * 200))
    assert box.system_id == WIDEVINE_SYSTEM_ID and box.version == 0
    assert _protobuf(box.data) == [(2, KID), (4, b"c" * 200)]  # a two-byte varint length
    assert parse_pssh(widevine_pssh([KID], version=1)).kids == (KID,)
    with pytest.raises(ValueError):
        widevine_pssh_data()


def test_playready_header_and_object() -> None:
    la_url = "https://licence.example/PlayReady/?a=1&b=2"
    header = playready_header([KID], la_url=la_url, keys=[KEY],
                              custom_attributes="<IIS_DRM_VERSION>8</IIS_DRM_VERSION>")
    root = etree.fromstring(header.encode())
    ns = {"p": "http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader"}
    assert root.get("version") == "4.0.0.0"
    assert root.findtext("p:DATA/p:PROTECTINFO/p:ALGID", namespaces=ns) == "AESCTR"
    assert base64.b64decode(root.findtext("p:DATA/p:KID", namespaces=ns)) == uuid.UUID(bytes=KID).bytes_le
    assert root.findtext("p:DATA/p:LA_URL", namespaces=ns) == la_url
    assert root.find("p:DATA/p:CUSTOMATTRIBUTES/p:IIS_DRM_VERSION", ns) is not None
    # checksum as the AMS spec (§3.2) computes it: AES-ECB(key, KID as .NET GUID bytes)[:8]
    checksum = _ecb(KEY, uuid.UUID(bytes=KID).bytes_le)[:8]
    assert base64.b64decode(root.findtext("p:DATA/p:CHECKSUM", namespaces=ns)) == checksum == \
        playready_checksum(KID, KEY)

    many = etree.fromstring(playready_header([KID, bytes(16)], algorithm="AESCBC").encode())
    assert many.get("version") == "4.3.0.0"
    kids = many.findall("p:DATA/p:PROTECTINFO/p:KIDS/p:KID", ns)
    assert [k.get("ALGID") for k in kids] == ["AESCBC", "AESCBC"] and kids[1].get("VALUE") == "AAAAAAAAAAAAAAAAAAAAAA=="

    pro = playready_object(header)
    total, records, kind, size = struct.unpack_from("<IHHH", pro)
    assert (total, records, kind, size) == (len(pro), 1, 1, len(pro) - 10)
    assert pro[10:].decode("utf-16-le") == header
    box = parse_pssh(playready_pssh(pro))
    assert (box.system_id, box.version, box.data) == (PLAYREADY_SYSTEM_ID, 0, pro)
    with pytest.raises(ValueError):
        playready_header([])


# -- IVs ---------------------------------------------------------------------------------------------------------------


def test_cenc_ivs_are_unique_deterministic_and_timescale_independent(progressive: Path) -> None:
    video, audio = index_path(progressive).tracks
    protection = Protection("cenc", KID, KEY)
    seen: dict[bytes, tuple[int, int]] = {}
    for track in (video, audio):
        init, segments = package(progressive, track, protection)
        tenc = read_tenc(init)
        for k, segment in enumerate(segments):
            for i, iv in enumerate(read_fragment(segment, tenc).ivs):
                assert len(iv) == 8 and iv not in seen, (track.info.track_id, k, i)
                seen[iv] = (track.info.track_id, i)
        again = package(progressive, track, protection)[1]
        assert again == segments  # segments built again (in any order) are the same bytes
    # the same sample at 10 MHz, or as a Smooth fragment, keeps its IV (and so its ciphertext)
    read = file_reader(progressive)
    samples = load_samples(video.table, 0, 50, read)
    base = read_fragment(media_segment(video.info, samples, sequence_number=1, protection=protection),
                         read_tenc(init_segment(video.info, protection=protection)))
    for data in (media_segment(video.info, samples, sequence_number=1, timescale=TEN_MHZ, protection=protection),
                 smooth_fragment(video.info, samples, sequence_number=1, protection=protection)):
        other = read_fragment(data, read_tenc(init_segment(video.info, protection=protection)))
        assert other.ivs == base.ivs and other.samples == base.samples
    assert cenc_iv(video.info, protection, samples[3]) == base.ivs[3]
    # another source, another seed: unrelated IVs
    moved = replace(video.info, source="other.mp4")
    assert cenc_iv(moved, protection, samples[0]) != base.ivs[0]
    assert cenc_iv(video.info, replace(protection, iv=b"asset-2"), samples[0]) != base.ivs[0]
    # consecutive samples: IV = base + decode time
    first = int.from_bytes(base.ivs[0], "big")
    assert [int.from_bytes(iv, "big") - first for iv in base.ivs] == [s.dts - samples[0].dts for s in samples]


def test_zero_duration_samples_get_their_own_iv() -> None:
    info = TrackInfo(2, "audio", 48_000, "mp4a", "mp4a.40.2", 0, 0, sample_entry=b"\0\0\0\x08mp4a", source="a.mp4")
    protection = Protection("cenc", KID, KEY)
    a = Sample(b"a" * 40, 1024, 0, 0, True)
    b = Sample(b"b" * 40, 1024, 1024, 0, True)
    c = Sample(b"c" * 40, 1024, 0, 0, True)
    ivs = [e.iv for e in encrypt_samples(info, [a, b, c], protection)]
    assert len(set(ivs)) == 3
    assert encrypt_samples(info, [a], protection)[0].iv == ivs[0]  # still a function of the sample alone


# -- sub-sample maps -------------------------------------------------------------------------------------------------


def nal(nal_type: int, size: int, ref_idc: int = 3) -> bytes:
    """A NAL unit with its 4-byte length; slices start first_mb 0, P, pic_parameter_set_id 19 (which
    the track does not have, so the slice header cannot be parsed: the NAL header alone stays clear)."""
    payload = (b"\xc2\x80" + b"\x55" * size)[: size - 1]
    body = bytes([(ref_idc << 5) | nal_type]) + payload
    return len(body).to_bytes(4, "big") + body


VIDEO = TrackInfo(1, "video", 12_800, "avc1", "avc1.64001f", 0, 0, codec_private=AVCC, source="v.mp4",
                  sample_entry=b"")


def test_subsample_map_keeps_non_vcl_clear_and_aligns_cenc() -> None:
    sample = nal(9, 2, 0) + nal(6, 700, 0) + nal(1, 1000) + nal(1, 12) + nal(12, 30, 0) + nal(5, 70_000)
    cenc = subsample_map(VIDEO, sample, "cenc")
    cbcs = subsample_map(VIDEO, sample, "cbcs")
    for subs in (cenc, cbcs):
        assert sum(c + p for c, p in subs) == len(sample)
        assert all(c <= 0xFFFF for c, _ in subs)
    # AUD + SEI + length/header of the first slice clear, then its body (cenc: the largest multiple
    # of 16); the 12-byte slice is too short to protect under cenc and joins the clear run before
    # the IDR slice together with the filler NAL unit
    head = 4 + 2 + 4 + 700 + 4 + 1
    assert cenc == ((head + 999 % 16, 999 - 999 % 16), (4 + 12 + 4 + 30 + 4 + 1 + 69_999 % 16, 69_999 - 69_999 % 16))
    assert cbcs == ((head, 999), (4 + 1, 11), (4 + 30 + 4 + 1, 69_999))


def test_many_slices_fit_saiz() -> None:
    sample = b"".join(nal(1, 200) for _ in range(60))
    subs = subsample_map(VIDEO, sample, "cenc")
    assert len(subs) == MAX_SUBSAMPLES and sum(c + p for c, p in subs) == len(sample)
    protection = Protection("cenc", KID, KEY)
    info = replace(VIDEO, sample_entry=b"\0\0\0\x08avc1")
    data = media_segment(info, [Sample(sample, 0, 512, 0, True)], sequence_number=1, protection=protection)
    traf = next(b for b in iter_boxes(data) if b.type == "moof").child("traf")
    assert traf is not None and traf.child("saiz").payload[4] == 8 + 2 + 6 * MAX_SUBSAMPLES  # type: ignore[union-attr]


def test_huge_clear_runs_are_split() -> None:
    sample = nal(6, 150_000, 0) + nal(5, 5000)
    for scheme in ("cenc", "cbcs"):
        subs = subsample_map(VIDEO, sample, scheme)  # type: ignore[arg-type]
        assert subs[:2] == ((0xFFFF, 0), (0xFFFF, 0))
        assert sum(c + p for c, p in subs) == len(sample) and all(c <= 0xFFFF for c, _ in subs)


def test_malformed_nal_structure_is_protected_whole() -> None:
    sample = nal(1, 100) + b"\x00\x00\xff\xff" + bytes(50)  # a length running past the sample
    cenc = subsample_map(VIDEO, sample, "cenc")
    assert sum(c + p for c, p in cenc) == len(sample) and cenc[-1][1] == 48
    enc = encrypt_samples(VIDEO, [Sample(sample, 0, 512, 0, True)], Protection("cenc", KID, KEY))[0]
    tenc = Tenc("encv", "avc1", "cenc", 0x10000, 8, b"", 0, 0, KID)
    assert decrypt(tenc, KEY, enc.data, enc.iv, list(enc.subsamples or ())) == sample


def test_track_encryption_rules() -> None:
    audio = TrackInfo(2, "audio", 48_000, "mp4a", "mp4a.40.2", 0, 0)
    text = TrackInfo(3, "text", 1000, "wvtt", "wvtt", 0, 0)
    other = TrackInfo(4, "video", 1000, "vp09", "vp09.00.10.08", 0, 0)
    p = Protection("cbcs", KID, KEY, iv=bytes(range(16)))
    v = track_encryption(VIDEO, p)
    assert (v.crypt_byte_block, v.skip_byte_block, v.per_sample_iv_size, v.constant_iv) == (1, 9, 0, bytes(range(16)))
    a = track_encryption(audio, p)
    assert (a.crypt_byte_block, a.skip_byte_block, a.subsamples) == (0, 0, False)
    assert track_encryption(audio, Protection("cenc", KID, KEY)).per_sample_iv_size == 8
    bad = [(text, p), (other, p), (VIDEO, Protection("aes-128", KID, KEY)), (VIDEO, Protection("cenc", KID, b"short")),
           (VIDEO, Protection("cbcs", KID, KEY, iv=b"x"))]
    for info, protection in bad:
        with pytest.raises(ValueError):
            track_encryption(info, protection)
    # cbcs without an operator IV: derived from the key id, the same everywhere
    assert cbcs_constant_iv(Protection("cbcs", KID, KEY)) == cbcs_constant_iv(Protection("cbcs", KID, bytes(16)))
    assert cbcs_constant_iv(Protection("cbcs", KID, KEY)) != cbcs_constant_iv(Protection("cbcs", bytes(16), KEY))


# -- speed -------------------------------------------------------------------------------------------------------------


def test_known_subsample_maps_build_the_same_fragment(progressive: Path) -> None:
    """The origin keeps each segment's sub-sample maps and hands them back: the fragment must be
    byte for byte the one built without them, and maps that do not fit are refused."""
    track = index_path(progressive).tracks[0]
    first, count = cuts(track)[0]
    samples = load_samples(track.table, first, count, file_reader(progressive))
    for scheme in ("cenc", "cbcs"):
        protection = Protection(scheme, KID, KEY)  # type: ignore[arg-type]
        maps = subsample_maps(track.info, samples, scheme)  # type: ignore[arg-type]
        assert maps is not None and len(maps) == count
        assert maps == tuple(subsample_map(track.info, s.data, scheme) for s in samples[:1]) + maps[1:]  # type: ignore[arg-type]
        with_maps = media_segment(track.info, samples, sequence_number=3, protection=protection, subsample_maps=maps)
        assert with_maps == media_segment(track.info, samples, sequence_number=3, protection=protection)
        with pytest.raises(ValueError, match="sub-sample maps for"):
            sample_crypto(track.info, samples, protection, maps[:-1])
    audio = TrackInfo(2, "audio", 48_000, "mp4a", "mp4a.40.2", 0, 0)
    assert subsample_maps(audio, samples[:2], "cenc") is None


def test_a_long_hd_segment_round_trips(pkg_media: Path) -> None:
    """A 2 s 1080p30 H.264 segment (60 samples, several MB): every sample decrypts back to the clear
    one under both schemes (one cipher context serves the whole fragment: a counter left over from
    one sample must never leak into the next). Prints the build times as a report, asserts none."""
    path = pkg_media / "hd.mp4"
    r = run_ffmpeg("-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=1920x1080:r=30:d=2,noise=alls=12:allf=t",
                   "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "5M", "-g", "60", "-pix_fmt", "yuv420p",
                   str(path))
    assert r.returncode == 0, r.stderr
    track = index_path(path).tracks[0]
    samples = load_samples(track.table, 0, len(track.table), file_reader(path))
    timings = {}
    for scheme in (None, "cenc", "cbcs"):
        protection = Protection(scheme, KID, KEY) if scheme else None  # type: ignore[arg-type]
        start = time.perf_counter()
        segment = media_segment(track.info, samples, sequence_number=1, protection=protection)
        timings[scheme or "clear"] = (time.perf_counter() - start) * 1000
        if protection is not None:
            init = init_segment(track.info, protection=protection)
            assert decrypt_all(init, [segment]) == [[s.data for s in samples]]
            # the payload is not clear (1 KB inside the IDR frame: under cbcs 1:9 clear runs are 144 bytes)
            assert samples[0].data[4000:5000] not in segment
    size = sum(len(s.data) for s in samples)
    print(f"\n2 s 1080p segment, {len(samples)} samples, {size / 1e6:.2f} MB: "
          + ", ".join(f"{k} {v:.2f} ms" for k, v in timings.items()))
