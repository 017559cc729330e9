"""The sample index, checked against PyAV's view of real FFmpeg-made files, and against a plain
reference implementation on hand-built sample tables."""

from __future__ import annotations

import random
import struct
from dataclasses import replace
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
import pytest

from openams.packaging.index import MAX_MOOV_SIZE, MediaFormatError, MediaIndex, TrackIndex, index_file
from openams.packaging.isobmff import box, full_box
from tests.packaging.conftest import (
    VirtualFile,
    index_path,
    stbl_boxes,
    synth_moov,
    u32s,
)

# -- real files against PyAV ---------------------------------------------------------------------------------


def av_packets(path: Path, stream_index: int) -> list[av.Packet]:
    with av.open(str(path)) as container:
        stream = container.streams[stream_index]
        return [p for p in container.demux(stream) if p.size]


def assert_matches_pyav(path: Path, track: TrackIndex, stream_index: int, *, shift: int | None = None,
                        pts_shift: int = 0) -> None:
    """Sample for sample: sizes, bytes, decode/presentation times, keyframes.

    PyAV (FFmpeg's mov demuxer) applies the edit list to both dts and pts; `shift` overrides the
    expected shift (for files whose absolute times FFmpeg ignores). In fragments with negative
    composition offsets FFmpeg moves every pts later by the largest negative offset (it wants
    pts >= dts): `pts_shift`."""
    info, table = track.info, track.table
    packets = av_packets(path, stream_index)
    assert len(packets) == len(table)
    data = path.read_bytes()
    with av.open(str(path)) as container:
        assert container.streams[stream_index].time_base == Fraction(1, info.timescale)
    offset = info.media_time if shift is None else shift
    for i, p in enumerate(packets):
        assert table.sizes[i] == p.size, i
        assert data[table.offsets[i] : table.offsets[i] + table.sizes[i]] == bytes(p), i
        assert table.dts[i] - offset == p.dts, i
        assert table.dts[i] + table.cts_offsets[i] - offset + pts_shift == p.pts, i
        assert table.is_sync(i) == p.is_keyframe, i
    assert all(d > 0 for d in table.durations)


def sps_codec(extradata: bytes) -> str:
    """`avc1.PPCCLL` from the first SPS in an avcC record (not from the record's header)."""
    assert extradata[5] & 0x1F >= 1
    length = int.from_bytes(extradata[6:8], "big")
    sps = extradata[8 : 8 + length]
    assert sps[0] & 0x1F == 7
    return f"avc1.{sps[1]:02x}{sps[2]:02x}{sps[3]:02x}"


@pytest.mark.parametrize("layout", ["progressive", "faststart"])
def test_progressive_h264_aac(layout: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(layout)
    index = index_path(path)
    assert [t.info.kind for t in index.tracks] == ["video", "audio"]
    assert index.size == path.stat().st_size and index.source == path.name
    video, audio = index.tracks
    with av.open(str(path)) as container:
        vs, as_ = container.streams.video[0], container.streams.audio[0]
        v_extra, a_extra = bytes(vs.codec_context.extradata), bytes(as_.codec_context.extradata)
        assert (video.info.width, video.info.height) == (vs.codec_context.width, vs.codec_context.height)
        assert (audio.info.sample_rate, audio.info.channels) == (as_.codec_context.sample_rate, 2)
        assert as_.metadata.get("language") == "fre"
        assert vs.codec_context.profile == "High"

    assert video.info.codec == sps_codec(v_extra) and video.info.codec.startswith("avc1.64")
    assert video.info.codec_private == v_extra
    assert video.info.fourcc == "avc1" and video.info.sample_entry[4:8] == b"avc1"
    assert video.info.timescale == 12800 and video.info.duration == 4 * 12800
    assert video.info.media_time == video.table.cts_offsets[0] > 0  # B-frames: the edit list delays
    assert len(video.table.sync) == 2 and list(video.table.sync) == [0, 50]
    assert video.info.language == "und"

    assert audio.info.codec == "mp4a.40.2" and audio.info.codec_private == a_extra
    assert audio.info.language == "fre"
    assert audio.info.media_time == 1024  # AAC priming
    assert abs(audio.info.duration - 4 * 48000) <= 1024
    assert list(audio.table.sync) == list(range(len(audio.table)))
    for t in index.tracks:
        expected = sum(t.table.sizes) * 8 * t.info.timescale // t.info.duration
        assert t.info.bitrate == expected
        assert t.info.max_bitrate >= t.info.bitrate
        assert t.info.source == path.name

    assert_matches_pyav(path, video, 0)
    assert_matches_pyav(path, audio, 1)


def test_faststart_holds_the_same_samples(progressive: Path, faststart: Path) -> None:
    a, b = index_path(progressive), index_path(faststart)
    for x, y in zip(a.tracks, b.tracks, strict=True):
        assert replace(x.info, sample_entry=b"", source="") == replace(y.info, sample_entry=b"", source="")
        for attr in ("sizes", "dts", "durations", "cts_offsets", "sync"):
            assert getattr(x.table, attr) == getattr(y.table, attr)
        assert x.table.offsets != y.table.offsets


def test_fragmented_mp4(fragmented: Path, progressive: Path) -> None:
    index = index_path(fragmented)
    video, audio = index.tracks
    assert video.info.codec == index_path(progressive).tracks[0].info.codec
    assert video.info.media_time == 0  # FFmpeg writes no edit list with empty_moov
    assert list(video.table.sync) == [0, 50]
    assert_matches_pyav(fragmented, video, 0)
    assert_matches_pyav(fragmented, audio, 1)
    assert list(audio.table.sizes) == list(index_path(progressive).tracks[1].table.sizes)


def test_smooth_ismv(ismv: Path, progressive: Path) -> None:
    index = index_path(ismv)
    source = index_path(progressive)
    video, audio = index.tracks
    assert video.info.timescale == audio.info.timescale == 10_000_000
    assert set(video.table.durations) == {400_000}
    # FFmpeg's mov demuxer ignores the tfxd times (which the Smooth writer made negative for the
    # AAC priming frame); we honour them. Compare times relative to each track's start.
    assert audio.table.dts[0] < 0 and video.table.dts[0] == 0
    assert min(video.table.cts_offsets) < 0  # FFmpeg's Smooth writer folds the edit list in, like we do
    assert_matches_pyav(ismv, video, 0, shift=0, pts_shift=-min(video.table.cts_offsets))
    assert_matches_pyav(ismv, audio, 1, shift=audio.table.dts[0])
    for mine, theirs in zip(index.tracks, source.tracks, strict=True):
        assert mine.info.codec == theirs.info.codec and mine.info.codec_private == theirs.info.codec_private
        assert mine.table.sizes == theirs.table.sizes and mine.table.sync == theirs.table.sync


def test_audio_only(audio_only: Path) -> None:
    (track,) = index_path(audio_only).tracks
    info = track.info
    assert (info.kind, info.codec, info.sample_rate, info.channels) == ("audio", "mp4a.40.2", 44100, 1)
    with av.open(str(audio_only)) as container:
        assert info.codec_private == bytes(container.streams.audio[0].codec_context.extradata)
    assert_matches_pyav(audio_only, track, 0)


def test_hevc(hevc: Path) -> None:
    (track,) = index_path(hevc).tracks
    with av.open(str(hevc)) as container:
        cc = container.streams.video[0].codec_context
        assert cc.profile == "Main"
        level = cc.level
    # Main profile (1), compatible with Main and Main 10 (flags 0x60000000 bit-reversed = 6), Main tier
    assert track.info.codec.startswith(f"hvc1.1.6.L{level}")
    assert (track.info.width, track.info.height) == (320, 180)
    assert track.info.codec_private[0] == 1  # HEVCDecoderConfigurationRecord version
    assert_matches_pyav(hevc, track, 0)


def test_eac3(eac3: Path) -> None:
    (track,) = index_path(eac3).tracks
    assert (track.info.codec, track.info.channels, track.info.sample_rate) == ("ec-3", 6, 48000)
    assert_matches_pyav(eac3, track, 0)


def test_unsupported_codec_is_named(mpeg4_part2: Path) -> None:
    with pytest.raises(MediaFormatError, match="track 1: unsupported video codec 'mp4v'"):
        index_path(mpeg4_part2)


# -- I/O economy --------------------------------------------------------------------------------------------


class CountingReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[tuple[int, int]] = []

    def __call__(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.data[offset : offset + length]


def test_progressive_reads_headers_and_moov_only(progressive: Path) -> None:
    data = progressive.read_bytes()
    reader = CountingReader(data)
    index_file(reader, len(data))
    moov_size = len(data) - data.rindex(b"moov") + 4
    assert len(reader.reads) <= 4
    assert sum(n for _, n in reader.reads) <= moov_size + 2 * 4096


def test_fragmented_reads_once_per_fragment(fragmented: Path) -> None:
    data = fragmented.read_bytes()
    reader = CountingReader(data)
    index_file(reader, len(data))
    fragments = data.count(b"moof")
    assert len(reader.reads) <= fragments + 3
    assert sum(n for _, n in reader.reads) <= (fragments + 3) * 4096


# -- sidecar ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["progressive", "fragmented", "ismv", "audio_only"])
def test_sidecar_round_trip(layout: str, request: pytest.FixtureRequest) -> None:
    index = index_path(request.getfixturevalue(layout))
    data = index.to_bytes()
    again = MediaIndex.from_bytes(data)
    assert again == index
    for a, b in zip(again.tracks, index.tracks, strict=True):
        assert a.info.extra == b.info.extra
        for attr in ("offsets", "sizes", "dts", "durations", "cts_offsets", "sync"):
            x, y = getattr(a.table, attr), getattr(b.table, attr)
            assert x.typecode == y.typecode and x == y


def test_sidecar_refuses_other_versions_and_garbage(progressive: Path) -> None:
    data = index_path(progressive).to_bytes()
    wrong_version = data[:8] + struct.pack("<H", 99) + data[10:]
    with pytest.raises(MediaFormatError, match="version 99 is not supported"):
        MediaIndex.from_bytes(wrong_version)
    with pytest.raises(MediaFormatError, match="not an openams index sidecar"):
        MediaIndex.from_bytes(b"garbage" * 10)
    with pytest.raises(MediaFormatError, match="corrupt"):
        MediaIndex.from_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(MediaFormatError):
        MediaIndex.from_bytes(data[:30])


# -- malformed input ------------------------------------------------------------------------------------------


def index_bytes(data: bytes) -> MediaIndex:
    return index_file(lambda o, n: data[o : o + n], len(data), source="bad.mp4")


def test_truncated_files(progressive: Path, faststart: Path) -> None:
    data = progressive.read_bytes()
    with pytest.raises(MediaFormatError, match=r"bad\.mp4: file truncated or corrupt: 'mdat' box"):
        index_bytes(data[: len(data) // 2])
    with pytest.raises(MediaFormatError, match="truncated"):
        index_bytes(data[:-10])  # the moov itself is cut
    fast = faststart.read_bytes()
    with pytest.raises(MediaFormatError, match="truncated"):
        index_bytes(fast[: len(fast) * 2 // 3])


def test_garbage_and_empty_input() -> None:
    with pytest.raises(MediaFormatError, match="not an MP4"):
        index_bytes(random.Random(7).randbytes(5000))
    with pytest.raises(MediaFormatError, match="not an MP4"):
        index_bytes(b"#EXTM3U\n#EXT-X-VERSION:3\nhttp://example.com/a.ts\n")
    with pytest.raises(MediaFormatError, match="empty file"):
        index_bytes(b"")


def test_missing_moov_and_no_tracks() -> None:
    ftyp = VirtualFile.FTYP
    with pytest.raises(MediaFormatError, match="no 'moov' box"):
        index_bytes(ftyp + box("mdat", bytes(100)))
    mvhd = full_box("mvhd", 0, 0, u32s(0, 0, 1000, 0), bytes(80))
    with pytest.raises(MediaFormatError, match="no audio, video or text track"):
        index_bytes(ftyp + box("moov", mvhd))


def test_huge_box_sizes() -> None:
    ftyp = VirtualFile.FTYP
    huge = struct.pack(">I4sQ", 1, b"moov", 1 << 40)
    with pytest.raises(MediaFormatError, match=r"truncated or corrupt: 'moov' box at \d+ declares 1099511627776 bytes"):
        index_bytes(ftyp + huge + bytes(64))
    # a moov that would fit the (claimed) file but is beyond what we agree to read
    size = MAX_MOOV_SIZE + 1000

    def read(offset: int, length: int) -> bytes:
        head = ftyp + struct.pack(">I4s", MAX_MOOV_SIZE + 8, b"moov")
        return (head[offset : offset + length]).ljust(min(length, size - offset), b"\0")

    with pytest.raises(MediaFormatError, match="exceeds the 268435456-byte limit"):
        index_file(read, size)


def test_short_reads_are_reported(progressive: Path) -> None:
    data = progressive.read_bytes()
    with pytest.raises(MediaFormatError, match="short read"):
        index_file(lambda o, n: data[o : o + n // 2], len(data))


def one_track(stbl: list[bytes], *, payload: int = 10_000, **kw: object) -> VirtualFile:
    return VirtualFile(lambda start: synth_moov(stbl, **kw), payload)  # type: ignore[arg-type]


def test_inconsistent_sample_tables() -> None:
    base = {"stts": [(10, 512)], "sizes": [100] * 10, "stsc": [(1, 10)], "chunk_offsets": [36]}
    cases = [
        ({"sizes": [100] * 9}, "'stsz' has 9 samples, 'stts' 10"),
        ({"ctts": [(9, 0)]}, "'stsz' has 10 samples, 'ctts' 9"),
        ({"stsc": [(1, 4)]}, "'stsc'/'stco' describe 4 samples, 'stsz' 10"),
        ({"stsc": [(2, 4), (1, 3)]}, "'stsc' first-chunk numbers are not increasing"),
        ({"stss": [3, 2]}, "'stss' sample numbers are not increasing"),
        ({"stss": [11]}, "'stss' sample numbers are not increasing within 1..10"),
        ({"chunk_offsets": [9_990]}, "sample data reaches byte 10990 but the file has only"),
    ]
    for change, message in cases:
        f = one_track(stbl_boxes(**{**base, **change}))  # type: ignore[arg-type]
        with pytest.raises(MediaFormatError, match=message):
            index_file(f.read, f.size)
    # a box whose declared entry count overruns it
    stbl = stbl_boxes(**base)  # type: ignore[arg-type]
    stbl[0] = full_box("stts", 0, 0, u32s(1000), struct.pack(">II", 10, 512))
    f = one_track(stbl)
    with pytest.raises(MediaFormatError, match="track 1: 'stts' is shorter than its 2000 time-to-sample entries"):
        index_file(f.read, f.size)


def test_missing_codec_configuration() -> None:
    entry = box("avc1", bytes(78))
    f = one_track(stbl_boxes(stts=[(1, 512)], sizes=[10], stsc=[(1, 1)], chunk_offsets=[40]), entry=entry)
    with pytest.raises(MediaFormatError, match="track 1: 'avc1' sample entry has no valid 'avcC'"):
        index_file(f.read, f.size)


# -- hand-built tables against a reference implementation ---------------------------------------------------


def reference_offsets(stsc: list[tuple[int, int]], chunk_offsets: list[int], sizes: list[int]) -> list[int]:
    out = []
    i = 0
    for c, chunk_offset in enumerate(chunk_offsets, start=1):
        per_chunk = [n for first, n in stsc if first <= c][-1]
        pos = chunk_offset
        for _ in range(per_chunk):
            out.append(pos)
            pos += sizes[i]
            i += 1
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_tables_match_a_reference(seed: int) -> None:
    rng = random.Random(seed)
    n = 0
    stsc: list[tuple[int, int]] = []
    chunk_counts: list[int] = []
    for run in range(rng.randint(1, 5)):
        per_chunk, chunks = rng.randint(1, 7), rng.randint(1, 30)
        stsc.append((len(chunk_counts) + 1, per_chunk))
        chunk_counts += [per_chunk] * chunks
        n += per_chunk * chunks
        del run
    sizes = [rng.randint(0, 5000) for _ in range(n)]
    # chunks spread through a large payload, possibly beyond 4 GB (co64)
    co64 = seed == 3
    gap = (1 << 32) // len(chunk_counts) if co64 else 7
    stts = [(k, rng.choice([512, 1024, 1001])) for k in _split(n, rng)]
    ctts = [(k, rng.randint(-2000, 4000)) for k in _split(n, rng)]
    stss = sorted(rng.sample(range(1, n + 1), max(1, n // 10)))

    def moov_for(start: int) -> bytes:
        offsets, pos = [], start
        for c, count in enumerate(chunk_counts):
            offsets.append(pos)
            pos += sum(sizes[sum(chunk_counts[:c]) : sum(chunk_counts[:c]) + count]) + gap
        moov_for.offsets = offsets  # type: ignore[attr-defined]
        stbl = stbl_boxes(stts=stts, sizes=sizes, stsc=stsc, chunk_offsets=offsets, ctts=ctts, stss=stss, co64=co64)
        return synth_moov(stbl, elst=[(500, -1), (4000, 100)], movie_timescale=1000, timescale=12800)

    f = VirtualFile(moov_for, sum(sizes) + gap * len(chunk_counts))
    (track,) = index_file(f.read, f.size).tracks
    table = track.table
    assert list(table.offsets) == reference_offsets(stsc, moov_for.offsets, sizes)  # type: ignore[attr-defined]
    assert list(table.sizes) == sizes
    durations = [d for count, d in stts for _ in range(count)]
    assert list(table.durations) == durations
    assert list(table.dts) == [sum(durations[:i]) for i in range(n)]
    assert list(table.cts_offsets) == [o for count, o in ctts for _ in range(count)]
    assert list(table.sync) == [s - 1 for s in stss]
    assert [table.offsets.typecode, table.sizes.typecode, table.dts.typecode] == ["q", "L", "q"]
    assert [table.durations.typecode, table.cts_offsets.typecode, table.sync.typecode] == ["L", "l", "L"]
    # an empty edit of 500 ms delays the track: media_time = 100 - 0.5 s
    assert track.info.media_time == 100 - 6400


def _split(n: int, rng: random.Random) -> list[int]:
    cuts = sorted(rng.sample(range(1, n), min(4, n - 1))) if n > 1 else []
    bounds = [0, *cuts, n]
    return [b - a for a, b in pairwise(bounds)]


def test_two_hour_table() -> None:
    """216 000 samples at 30 fps, one chunk per sample, per-sample composition offsets."""
    n = 216_000
    rng = random.Random(5)
    sizes = [rng.randint(2_000, 60_000) for _ in range(n)]
    pattern = [2000, 5000, 0, 1000, 3000]

    def moov_for(start: int) -> bytes:
        offsets, pos = [], start
        for s in sizes:
            offsets.append(pos)
            pos += s
        stbl = stbl_boxes(stts=[(n, 1000)], sizes=sizes, stsc=[(1, 1)], chunk_offsets=offsets,
                          ctts=[(1, pattern[i % 5]) for i in range(n)], stss=list(range(1, n + 1, 60)), co64=True)
        return synth_moov(stbl, timescale=30_000, elst=[(7_200_000, 2000)])

    f = VirtualFile(moov_for, sum(sizes))
    (track,) = index_file(f.read, f.size).tracks
    table = track.table
    assert len(table) == n and len(table.sync) == n // 60
    assert table.offsets[-1] == f.data_start + sum(sizes) - sizes[-1]
    assert table.dts[-1] == (n - 1) * 1000
    assert table.cts_offsets[n - 3] == pattern[(n - 3) % 5]
    assert track.info.duration == 2 * 3600 * 30_000 and track.info.media_time == 2000
    assert len(f.reads) <= 3
    assert MediaIndex.from_bytes(MediaIndex([track]).to_bytes()).tracks[0].table == table


def test_fixed_size_and_stz2_tables() -> None:
    f = one_track(stbl_boxes(stts=[(4, 1024)], sizes=(300, 4), stsc=[(1, 2)], chunk_offsets=[40, 1000]),
                  handler=b"vide")
    (track,) = index_file(f.read, f.size).tracks
    assert list(track.table.offsets) == [40, 340, 1000, 1300]
    stbl = stbl_boxes(stts=[(3, 1024)], sizes=[1, 2, 3], stsc=[(1, 3)], chunk_offsets=[40])
    stbl[1] = full_box("stz2", 0, 0, u32s(4, 3), bytes([0x12, 0x30]))  # 4-bit fields: 1, 2, 3
    f = one_track(stbl)
    (track,) = index_file(f.read, f.size).tracks
    assert list(track.table.sizes) == [1, 2, 3] and list(track.table.offsets) == [40, 41, 43]


def test_skipped_and_text_tracks() -> None:
    stbl = stbl_boxes(stts=[(1, 1000)], sizes=[10], stsc=[(1, 1)], chunk_offsets=[40])
    hint = one_track(stbl, handler=b"hint")
    with pytest.raises(MediaFormatError, match="no audio, video or text track"):
        index_file(hint.read, hint.size)
    chapters = one_track(stbl, handler=b"text", entry=box("text", bytes(40)))
    with pytest.raises(MediaFormatError, match="no audio, video or text track"):
        index_file(chapters.read, chapters.size)
    wvtt = one_track(stbl, handler=b"text", entry=box("wvtt", bytes(8), box("vttC", b"WEBVTT")), timescale=1000,
                     language=0x15C7)  # 'eng'
    (track,) = index_file(wvtt.read, wvtt.size).tracks
    assert (track.info.kind, track.info.codec, track.info.language) == ("text", "wvtt", "eng")



@pytest.mark.parametrize("layout", ["faststart", "fragmented"])
def test_corrupted_files_raise_only_media_format_error(layout: str, request: pytest.FixtureRequest) -> None:
    """Random byte changes in the boxes we parse: the index either copes or says why — never
    another exception type."""
    data = request.getfixturevalue(layout).read_bytes()
    rng = random.Random(11)
    region = data.index(b"moov") + 6000 if layout == "faststart" else len(data)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(region)] = rng.randrange(256)
        try:
            index_bytes(bytes(mutated))
            outcomes["ok"] += 1
        except MediaFormatError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["ok"] > 0


def test_corrupted_sidecars_raise_only_media_format_error(audio_only: Path) -> None:
    data = index_path(audio_only).to_bytes()
    rng = random.Random(3)
    for _ in range(200):
        mutated = bytearray(data)
        mutated[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        with pytest.raises(MediaFormatError):
            MediaIndex.from_bytes(bytes(mutated))
