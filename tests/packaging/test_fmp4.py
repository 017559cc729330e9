"""The fMP4 writer: init + media segments cut from real files must play back (PyAV) with the
source's samples and presentation times; rescaling must not drift; Smooth fragments carry tfxd."""

from __future__ import annotations

import io
import random
import struct
from array import array
from pathlib import Path

import av
import pytest

from openams.packaging.encryption import clearkey_pssh
from openams.packaging.fmp4 import (
    NON_SYNC_SAMPLE_FLAGS,
    PIFF_SENC_UUID,
    SYNC_SAMPLE_FLAGS,
    TFXD_UUID,
    init_segment,
    load_samples,
    media_segment,
    read_plan,
    smooth_fragment,
)
from openams.packaging.index import MediaIndex, TrackIndex, index_file
from openams.packaging.isobmff import Box, iter_boxes
from openams.packaging.model import Protection, Sample, SampleTable, TrackInfo
from tests.packaging.conftest import AVCC, file_reader, index_path, visual_entry

TEN_MHZ = 10_000_000


def rescale(t: int, out: int, src: int) -> int:
    """The reference rounding: nearest, halves up."""
    return (2 * t * out + src) // (2 * src)


def cuts(track: TrackIndex) -> list[tuple[int, int]]:
    """(first, count) per segment: at every sync sample for video, every 50 samples otherwise."""
    n = len(track.table)
    starts = list(track.table.sync) if track.info.kind == "video" else list(range(0, n, 50))
    ends = [*starts[1:], n]
    return [(a, b - a) for a, b in zip(starts, ends, strict=True)]


def package(path: Path, track: TrackIndex, *, timescale: int | None = None) -> bytes:
    read = file_reader(path)
    parts = [init_segment(track.info, timescale=timescale)]
    for seq, (first, count) in enumerate(cuts(track), start=1):
        samples = load_samples(track.table, first, count, read)
        parts.append(media_segment(track.info, samples, sequence_number=seq, timescale=timescale))
    return b"".join(parts)


def index_bytes(data: bytes) -> MediaIndex:
    return index_file(lambda o, n: data[o : o + n], len(data))


def demux(source: Path | bytes, stream_index: int) -> list[av.Packet]:
    with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as container:
        return [p for p in container.demux(container.streams[stream_index]) if p.size]


def decoded_frames(source: Path | bytes, stream_index: int) -> int:
    with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as container:
        return sum(1 for _ in container.decode(container.streams[stream_index]))


@pytest.mark.parametrize(("layout", "stream_index"), [
    ("progressive", 0), ("progressive", 1), ("fragmented", 0), ("audio_only", 0), ("hevc", 0), ("eac3", 0),
])  # fmt: skip
def test_segments_play_back_like_the_source(layout: str, stream_index: int, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(layout)
    track = index_path(path).tracks[stream_index]
    out = package(path, track)

    # our own reading of the result: same samples, edit list folded into the composition offsets
    (mine,) = index_bytes(out).tracks
    assert mine.info.codec == track.info.codec and mine.info.media_time == 0
    assert mine.table.sizes == track.table.sizes and mine.table.sync == track.table.sync
    assert mine.table.durations == track.table.durations
    src_pts = [d + c - track.info.media_time for d, c in zip(track.table.dts, track.table.cts_offsets, strict=True)]
    assert [d + c for d, c in zip(mine.table.dts, mine.table.cts_offsets, strict=True)] == src_pts

    # FFmpeg's reading: same packet bytes and keyframes, and the source's presentation times (FFmpeg
    # moves pts later by the largest negative composition offset of a fragmented file)
    theirs, source = demux(out, 0), demux(path, stream_index)
    assert [bytes(p) for p in theirs] == [bytes(p) for p in source]
    assert [p.is_keyframe for p in theirs] == [p.is_keyframe for p in source]
    shift = max(0, -min(mine.table.cts_offsets))
    assert [p.pts - shift for p in theirs] == [p.pts for p in source]
    if track.info.kind == "video":
        assert decoded_frames(out, 0) == decoded_frames(path, stream_index) == len(track.table)
    else:
        assert decoded_frames(out, 0) >= len(track.table) - 1


def test_segments_rescaled_to_10_mhz(progressive: Path) -> None:
    for track in index_path(progressive).tracks:
        out = package(progressive, track, timescale=TEN_MHZ)
        (mine,) = index_bytes(out).tracks
        ts = track.info.timescale
        assert mine.info.timescale == TEN_MHZ
        assert list(mine.table.dts) == [rescale(d, TEN_MHZ, ts) for d in track.table.dts]
        src_pts = [d + c - track.info.media_time for d, c in zip(track.table.dts, track.table.cts_offsets, strict=True)]
        assert [d + c for d, c in zip(mine.table.dts, mine.table.cts_offsets, strict=True)] == [
            rescale(p, TEN_MHZ, ts) for p in src_pts
        ]
        assert [bytes(p) for p in demux(out, 0)] == [bytes(p) for p in demux(progressive, track.info.track_id - 1)]


def synthetic_track(kind: str, timescale: int, duration: int, n: int, seed: int = 0) -> tuple[TrackInfo, list[Sample]]:
    rng = random.Random(seed)
    if kind == "video":
        info = TrackInfo(1, "video", timescale, "avc1", "avc1.64001f", 0, 0, width=320, height=180,
                         codec_private=AVCC, sample_entry=visual_entry(), media_time=2 * duration)
        pattern = [2, 5, 0, 1, 3]
        samples = [Sample(rng.randbytes(rng.randint(1, 40)), i * duration, duration, pattern[i % 5] * duration,
                          i % 48 == 0) for i in range(n)]
    else:
        info = TrackInfo(2, "audio", timescale, "mp4a", "mp4a.40.2", 0, 0, sample_rate=timescale, channels=2,
                         sample_entry=b"\x00\x00\x00\x08mp4a", media_time=duration)
        samples = [Sample(rng.randbytes(rng.randint(1, 20)), i * duration, duration, 0, True) for i in range(n)]
    return info, samples


def parse_fragment(data: bytes) -> tuple[Box, Box, list[tuple[int, int, int, int]], bytes]:
    """(moof, traf, trun rows (duration, size, flags, cts), mdat payload) of one media segment."""
    boxes = {b.type: b for b in iter_boxes(data)}
    moof, mdat = boxes["moof"], boxes["mdat"]
    traf = moof.child("traf")
    assert traf is not None
    trun = traf.child("trun")
    assert trun is not None and trun.full_header() == (1, 0xF01)
    count, data_offset = trun.unpack(">Ii", 4)
    assert moof.start + data_offset == mdat.body  # the data offset lands on the first sample
    rows = list(struct.iter_unpack(">IIIi", bytes(trun.payload[12:])))
    assert len(rows) == count
    return moof, traf, rows, bytes(mdat.payload)


@pytest.mark.parametrize(("kind", "timescale", "duration"), [("video", 30_000, 1001), ("audio", 44_100, 1024),
                                                             ("video", 90_000, 3003), ("audio", 48_000, 1024)])
def test_rescaling_never_drifts(kind: str, timescale: int, duration: int) -> None:
    n = 6000
    info, samples = synthetic_track(kind, timescale, duration, n)
    t = 0  # decode time carried from fragment to fragment, as a player does
    for seq, first in enumerate(range(0, n, 48), start=1):
        chunk = samples[first : first + 48]
        for data in (media_segment(info, chunk, sequence_number=seq, timescale=TEN_MHZ, styp=False),
                     smooth_fragment(info, chunk, sequence_number=seq)):
            _, traf, rows, payload = parse_fragment(data)
            tfdt = traf.child("tfdt")
            assert tfdt is not None and tfdt.unpack(">Q", 4)[0] == rescale(chunk[0].dts, TEN_MHZ, timescale)
            assert tfdt.unpack(">Q", 4)[0] == t
            dts = t
            for s, (dur, size, _flags, cts) in zip(chunk, rows, strict=True):
                assert dts == rescale(s.dts, TEN_MHZ, timescale)
                assert dts + cts == rescale(s.pts - info.media_time, TEN_MHZ, timescale)
                assert size == len(s.data)
                dts += dur
            assert payload == b"".join(s.data for s in chunk)
        t = dts
    assert t == rescale(n * duration, TEN_MHZ, timescale)  # the end lands exactly where it should


def test_same_timescale_writes_times_verbatim() -> None:
    info, samples = synthetic_track("video", 12_800, 512, 96)
    data = media_segment(info, samples[48:], sequence_number=7)
    assert data[4:8] == b"styp"
    moof, traf, rows, _ = parse_fragment(data)
    mfhd = moof.child("mfhd")
    tfhd, tfdt = traf.child("tfhd"), traf.child("tfdt")
    assert mfhd is not None and tfhd is not None and tfdt is not None
    assert mfhd.unpack(">I", 4) == (7,)
    assert tfhd.full_header() == (0, 0x020000) and tfhd.unpack(">I", 4) == (1,)
    assert tfdt.full_header()[0] == 1 and tfdt.unpack(">Q", 4) == (48 * 512,)
    assert [r[0] for r in rows] == [512] * 48
    assert [r[3] for r in rows] == [s.cts_offset - info.media_time for s in samples[48:]]
    assert [r[2] for r in rows] == [SYNC_SAMPLE_FLAGS if s.is_sync else NON_SYNC_SAMPLE_FLAGS for s in samples[48:]]
    assert min(r[3] for r in rows) < 0  # B-frames after the edit-list shift: hence trun version 1


def test_decode_time_gaps_are_kept_within_a_fragment() -> None:
    info, samples = synthetic_track("audio", 48_000, 1024, 4)
    samples[2:] = [Sample(s.data, s.dts + 500, s.duration, 0, True) for s in samples[2:]]
    _, _, rows, _ = parse_fragment(media_segment(info, samples, sequence_number=1, styp=False))
    assert [r[0] for r in rows] == [1024, 1524, 1024, 1024]
    with pytest.raises(ValueError, match="decode order"):
        media_segment(info, samples[::-1], sequence_number=1)
    with pytest.raises(ValueError, match="at least one sample"):
        media_segment(info, [], sequence_number=1)


def test_smooth_fragment_layout() -> None:
    info, samples = synthetic_track("video", 12_800, 512, 50)
    data = smooth_fragment(info, samples, sequence_number=3)
    assert data[4:8] == b"moof"  # no styp: Smooth clients expect moof first
    _, traf, rows, _ = parse_fragment(data)
    tfhd = traf.child("tfhd")
    assert tfhd is not None and tfhd.full_header() == (0, 0)  # implicit base = the moof, as PIFF knows it
    (tfxd,) = [b for b in traf.children() if b.type == "uuid" and b.usertype == TFXD_UUID]
    assert tfxd.full_header() == (1, 0)
    absolute, duration = tfxd.unpack(">QQ", 4)
    assert absolute == 0 and duration == sum(r[0] for r in rows) == 50 * 400_000
    later = smooth_fragment(info, samples[25:], sequence_number=4)
    _, traf, _, _ = parse_fragment(later)
    (tfxd,) = [b for b in traf.children() if b.type == "uuid"]
    assert tfxd.unpack(">QQ", 4) == (25 * 400_000, 25 * 400_000)


def test_smooth_fragments_play_after_an_init_built_at_10_mhz(progressive: Path) -> None:
    track = index_path(progressive).tracks[0]
    read = file_reader(progressive)
    parts = [init_segment(track.info, timescale=TEN_MHZ)]
    for seq, (first, count) in enumerate(cuts(track), start=1):
        parts.append(smooth_fragment(track.info, load_samples(track.table, first, count, read), sequence_number=seq))
    out = b"".join(parts)
    assert [bytes(p) for p in demux(out, 0)] == [bytes(p) for p in demux(progressive, 0)]
    assert decoded_frames(out, 0) == len(track.table)


def test_init_segment_structure(progressive: Path) -> None:
    video, audio = index_path(progressive).tracks
    data = init_segment(video.info)
    ftyp, moov = iter_boxes(data)
    assert ftyp.type == "ftyp" and bytes(ftyp.payload[:4]) == b"iso6" and b"cmfc" in bytes(ftyp.payload)
    mdhd = moov.find("trak/mdia/mdhd")
    hdlr = moov.find("trak/mdia/hdlr")
    stsd = moov.find("trak/mdia/minf/stbl/stsd")
    trex = moov.find("mvex/trex")
    tkhd = moov.find("trak/tkhd")
    assert mdhd is not None and hdlr is not None and stsd is not None and trex is not None and tkhd is not None
    assert mdhd.unpack(">I", 12) == (12_800,)
    assert bytes(hdlr.payload[8:12]) == b"vide"
    assert moov.find("trak/mdia/minf/vmhd") is not None
    assert moov.find("trak/edts") is None  # the edit list lives in the fragments' offsets
    assert bytes(stsd.payload[8:]) == video.info.sample_entry
    assert trex.unpack(">II", 4) == (video.info.track_id, 1)
    assert tkhd.unpack(">II", 76) == (320 << 16, 180 << 16)
    for name in ("stts", "stsc", "stco"):
        table = moov.find(f"trak/mdia/minf/stbl/{name}")
        assert table is not None and table.unpack(">I", 4) == (0,)

    data = init_segment(audio.info, timescale=TEN_MHZ)
    _, moov = iter_boxes(data)
    mdhd = moov.find("trak/mdia/mdhd")
    assert mdhd is not None and mdhd.unpack(">IIH", 12) == (TEN_MHZ, 0, (6 << 10) | (18 << 5) | 5)  # "fre"
    assert moov.find("trak/mdia/minf/smhd") is not None
    # our index reads the init back as a track without samples
    (track,) = index_bytes(data).tracks
    assert (track.info.codec, track.info.channels, track.info.language) == ("mp4a.40.2", 2, "fre")
    assert len(track.table) == 0


def test_text_track_init() -> None:
    info = TrackInfo(3, "text", 1000, "wvtt", "wvtt", 0, 0, language="eng",
                     sample_entry=b"\x00\x00\x00\x10wvtt\x00\x00\x00\x00\x00\x00\x00\x01")
    _, moov = iter_boxes(init_segment(info))
    hdlr = moov.find("trak/mdia/hdlr")
    assert hdlr is not None and bytes(hdlr.payload[8:12]) == b"text"
    assert moov.find("trak/mdia/minf/nmhd") is not None


def test_sample_encryption_init_segment() -> None:
    info, _ = synthetic_track("video", 12_800, 512, 10)
    kid, key = bytes(range(16)), bytes(range(16, 32))
    box_ = clearkey_pssh([kid])
    _, moov = iter_boxes(init_segment(info, protection=Protection("cenc", kid, key, pssh=(box_,))))
    stsd = moov.find("trak/mdia/minf/stbl/stsd")
    assert stsd is not None
    (entry,) = stsd.children(8)
    assert entry.type == "encv"
    # the original entry's fields and children are kept, the sinf is appended
    assert bytes(entry.buf[entry.body : entry.end - 80]) == info.sample_entry[8:]
    sinf = entry.child("sinf", 78)
    assert sinf is not None
    frma, schm, tenc = sinf.child("frma"), sinf.child("schm"), sinf.find("schi/tenc")
    assert frma is not None and schm is not None and tenc is not None
    assert bytes(frma.payload) == b"avc1"
    assert schm.full_header() == (0, 0) and bytes(schm.payload[4:]) == b"cenc" + (0x00010000).to_bytes(4, "big")
    assert tenc.full_header() == (0, 0) and bytes(tenc.payload[4:]) == b"\0\0\x01\x08" + kid
    assert [b.type for b in moov.children()] == ["mvhd", "trak", "mvex", "pssh"]
    assert [b.raw for b in moov.children() if b.type == "pssh"] == [box_]

    audio, _ = synthetic_track("audio", 48_000, 1024, 4)
    constant = bytes(range(100, 116))
    _, moov = iter_boxes(init_segment(audio, protection=Protection("cbcs", kid, key, iv=constant)))
    stsd = moov.find("trak/mdia/minf/stbl/stsd")
    assert stsd is not None
    (entry,) = stsd.children(8)
    assert entry.type == "enca"
    tenc = entry.find("sinf/schi/tenc")  # the synthetic mp4a entry has no fields before its children
    assert tenc is not None and tenc.full_header() == (1, 0)
    assert bytes(tenc.payload[4:]) == b"\0\x00\x01\x00" + kid + b"\x10" + constant  # pattern 0:0, constant IV


def _traf_types(data: bytes) -> tuple[Box, list[Box]]:
    moof = next(b for b in iter_boxes(data) if b.type == "moof")
    traf = moof.child("traf")
    assert traf is not None
    return moof, list(traf.children())


def test_sample_encryption_fragments() -> None:
    info, samples = synthetic_track("video", 12_800, 512, 30)
    kid, key = bytes(range(16)), bytes(range(16, 32))
    cenc = Protection("cenc", kid, key)
    clear = media_segment(info, samples, sequence_number=4)
    data = media_segment(info, samples, sequence_number=4, protection=cenc)
    moof, children = _traf_types(data)
    assert [b.type for b in children] == ["tfhd", "tfdt", "trun", "saiz", "saio", "senc"]
    saiz, saio, senc = children[3:]
    assert senc.full_header() == (0, 2) and senc.unpack(">I", 4) == (30,)
    assert saio.full_header() == (0, 0) and saio.unpack(">II", 4) == (1, senc.start - moof.start + 16)
    assert saiz.unpack(">BI", 4)[1] == 30
    _, _, rows, payload = parse_fragment(data)  # the trun data offset still lands on the mdat
    _, _, clear_rows, clear_payload = parse_fragment(clear)
    assert rows == clear_rows and len(payload) == len(clear_payload) and payload != clear_payload

    smooth = smooth_fragment(info, samples, sequence_number=4, protection=cenc)
    moof, children = _traf_types(smooth)
    assert [b.type for b in children] == ["tfhd", "tfdt", "trun", "uuid", "saiz", "saio", "uuid"]
    piff, saio = children[-1], children[-2]
    assert piff.usertype == PIFF_SENC_UUID and piff.full_header() == (0, 2)
    assert saio.unpack(">I", 8) == (piff.start - moof.start + 32,)
    assert bytes(piff.payload[8:]) == bytes(senc.payload[8:])  # same entries as DASH's senc

    audio, audio_samples = synthetic_track("audio", 48_000, 1024, 8)
    cbcs = media_segment(audio, audio_samples, sequence_number=1, protection=Protection("cbcs", kid, key))
    _, children = _traf_types(cbcs)
    assert [b.type for b in children] == ["tfhd", "tfdt", "trun", "senc"]  # constant IV, no sub-samples
    assert children[-1].full_header() == (0, 0) and children[-1].size == 16


def test_protection_leaves_text_and_aes128_in_the_clear() -> None:
    info, samples = synthetic_track("video", 12_800, 512, 10)
    text = TrackInfo(3, "text", 1000, "wvtt", "wvtt", 0, 0, sample_entry=b"\x00\x00\x00\x08wvtt")
    cenc = Protection("cenc", key_id=bytes(16), key=bytes(16), pssh=(clearkey_pssh([bytes(16)]),))
    assert init_segment(text, protection=cenc) == init_segment(text)
    cue = [Sample(b"\x00\x00\x00\x08vtte", 0, 1000, 0, True)]
    assert media_segment(text, cue, sequence_number=1, protection=cenc) == media_segment(text, cue, sequence_number=1)
    # HLS AES-128 encrypts the finished segment outside the writer: clear media here
    aes = Protection("aes-128", key_id=bytes(16), key=bytes(16))
    assert init_segment(info, protection=aes) == init_segment(info)
    assert media_segment(info, samples, sequence_number=1, protection=aes) == media_segment(
        info, samples, sequence_number=1
    )


# -- reading samples -------------------------------------------------------------------------------------------


def table_of(offsets: list[int], sizes: list[int], sync: list[int] | None = None) -> SampleTable:
    n = len(offsets)
    return SampleTable(array("q", offsets), array("L", sizes), array("q", range(0, 100 * n, 100)),
                       array("L", [100] * n), array("l", [0] * n), array("L", range(n) if sync is None else sync))


def test_read_plan_merges_contiguous_and_bridges_small_gaps() -> None:
    table = table_of([100, 110, 130, 1000, 1005, 5000, 4000], [10, 20, 5, 5, 10, 10, 10])
    assert read_plan(table, 0, 7, max_gap=0) == [(100, 35), (1000, 15), (5000, 10), (4000, 10)]
    assert read_plan(table, 0, 7, max_gap=1000) == [(100, 915), (5000, 10), (4000, 10)]
    assert read_plan(table, 1, 2, max_gap=0) == [(110, 25)]
    assert read_plan(table, 3, 0) == []
    with pytest.raises(ValueError, match="outside the table"):
        read_plan(table, 5, 3)


def test_load_samples_uses_the_plan() -> None:
    blob = bytes(range(256)) * 40
    table = table_of([100, 110, 130, 1000, 1005, 5000, 4000], [10, 20, 5, 5, 10, 10, 10], sync=[0, 3, 6])
    reads: list[tuple[int, int]] = []

    def read(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return blob[offset : offset + length]

    samples = load_samples(table, 1, 6, read, max_gap=0)
    assert reads == [(110, 25), (1000, 15), (5000, 10), (4000, 10)]
    assert [s.data for s in samples] == [blob[o : o + n] for o, n in zip(table.offsets[1:], table.sizes[1:],
                                                                          strict=True)]
    assert [s.is_sync for s in samples] == [False, False, True, False, False, True]
    assert [s.dts for s in samples] == [100, 200, 300, 400, 500, 600]
    reads.clear()
    assert load_samples(table, 0, 7, read) == load_samples(table, 0, 7, lambda o, n: blob[o : o + n], max_gap=0)
    assert reads == [(100, 4910), (4000, 10)]  # the default bridges gaps up to 256 KB


def test_real_file_segments_need_few_reads(progressive: Path) -> None:
    video, audio = index_path(progressive).tracks
    for track in (video, audio):
        for first, count in cuts(track):
            assert len(read_plan(track.table, first, count)) <= 2
