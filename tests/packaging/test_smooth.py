"""Smooth Streaming client manifests and the 100 ns time conversion."""

from __future__ import annotations

import base64
import random
from dataclasses import replace

import pytest
from lxml import etree

from openams.packaging.model import SMOOTH_TIMESCALE, SegmentRef, TrackView
from openams.packaging.smooth import (
    SmoothProtection,
    check_url_keys,
    chunk_timeline,
    client_manifest,
    codec_private_data,
    find_track,
    from_smooth_time,
    segment_index_at,
    smooth_fourcc,
    smooth_segment_index,
    to_smooth_time,
    track_name,
)
from tests.packaging.manifest_fixtures import PPS, SPS, audio_of, presentation, video_of, with_info


def parse(text: str) -> etree._Element:
    assert text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    return etree.fromstring(text.encode("utf-8"))


def expand_chunks(index: etree._Element) -> list[tuple[int, int]]:
    """(t, d) of every chunk, as dash.js's MSS parser reads them (`r` = chunks in the run)."""
    out: list[tuple[int, int]] = []
    t = 0
    for c in index.findall("c"):
        if c.get("t") is not None:
            t = int(c.get("t"))
        d = int(c.get("d"))
        for _ in range(int(c.get("r", "1"))):
            out.append((t, d))
            t += d
    return out


def test_client_manifest_structure() -> None:
    tracks = presentation()
    root = parse(client_manifest(tracks))
    assert root.tag == "SmoothStreamingMedia"
    assert (root.get("MajorVersion"), root.get("MinorVersion")) == ("2", "2")
    assert root.get("TimeScale") == "10000000"
    assert root.get("Duration") == "100300000"

    indexes = root.findall("StreamIndex")
    assert [(i.get("Type"), i.get("Name")) for i in indexes] == [
        ("video", "video"), ("audio", "audio_eng"), ("audio", "audio_spa")]
    video = indexes[0]
    assert video.get("Url") == "QualityLevels({bitrate})/Fragments(video={start time})"
    assert (video.get("Chunks"), video.get("QualityLevels")) == ("5", "4")
    assert (video.get("MaxWidth"), video.get("MaxHeight")) == ("1920", "1080")
    assert (video.get("DisplayWidth"), video.get("DisplayHeight")) == ("1920", "1080")
    levels = video.findall("QualityLevel")
    assert [ql.get("Index") for ql in levels] == ["0", "1", "2", "3"]
    assert [ql.get("Bitrate") for ql in levels] == ["6000000", "3500000", "2200000", "1000000"]
    assert all(ql.get("FourCC") == "H264" for ql in levels)
    assert (levels[1].get("MaxWidth"), levels[1].get("MaxHeight")) == ("1280", "720")
    assert levels[0].get("CodecPrivateData") == ("00000001" + SPS.hex() + "00000001" + PPS.hex()).upper()

    audio = indexes[1]
    assert audio.get("Language") == "eng"
    assert audio.get("Url") == "QualityLevels({bitrate})/Fragments(audio_eng={start time})"
    (ql,) = audio.findall("QualityLevel")
    assert ql.attrib == {
        "Index": "0", "Bitrate": "128000", "FourCC": "AACL", "SamplingRate": "48000", "Channels": "2",
        "BitsPerSample": "16", "PacketSize": "4", "AudioTag": "255", "CodecPrivateData": "1190",
    }
    # quality levels come before chunks (clients read them first)
    names = [c.tag for c in video]
    assert names.index("c") > max(i for i, n in enumerate(names) if n == "QualityLevel")


def test_chunks_are_exact_100ns_conversions_and_round_trip() -> None:
    tracks = presentation()
    root = parse(client_manifest(tracks))
    by_name = {i.get("Name"): expand_chunks(i) for i in root.findall("StreamIndex")}
    video = video_of(tracks)[0]
    audio = audio_of(tracks)[0]
    for view in (video, audio):
        chunks = by_name[view.info.name]
        ts = view.info.timescale
        assert [t for t, _ in chunks] == [to_smooth_time(s.start, ts) for s in view.segments]
        assert chunks[-1][0] + chunks[-1][1] == to_smooth_time(view.end, ts)
        # a URL time maps back to exactly its segment
        assert [from_smooth_time(t, ts) for t, _ in chunks] == [s.start for s in view.segments]
        assert [smooth_segment_index(view, t) for t, _ in chunks] == list(range(len(view.segments)))
    assert by_name["video"] == [(0, 20_000_000), (20_000_000, 20_000_000), (40_000_000, 20_000_000),
                                (60_000_000, 20_000_000), (80_000_000, 20_300_000)]
    # r compresses the four equal video chunks; the last one differs
    cs = root.find("StreamIndex").findall("c")
    assert [c.attrib for c in cs] == [{"t": "0", "d": "20000000", "r": "4"}, {"d": "20300000"}]
    assert smooth_segment_index(video, 20_000_001) is None


def test_fmp4_v20_has_minor_version_0_and_no_repeat() -> None:
    root = parse(client_manifest(presentation(), v20=True))
    assert root.get("MinorVersion") == "0"
    assert root.find(".//c[@r]") is None
    video = root.find("StreamIndex")
    cs = video.findall("c")
    assert len(cs) == 5
    assert cs[0].get("t") == "0" and all(c.get("t") is None for c in cs[1:])
    assert expand_chunks(video) == expand_chunks(parse(client_manifest(presentation())).find("StreamIndex"))


def test_duration_override_and_gaps_get_t() -> None:
    tracks = presentation()
    root = parse(client_manifest(tracks, duration=123))
    assert root.get("Duration") == "123"
    video = video_of(tracks)[0]
    gappy = TrackView(video.info, (video.segments[0], video.segments[2], video.segments[3]))
    root = parse(client_manifest([gappy]))
    cs = root.find("StreamIndex").findall("c")
    assert [c.attrib for c in cs] == [{"t": "0", "d": "20000000"}, {"t": "40000000", "d": "20000000", "r": "2"}]
    assert root.get("Duration") == "80000000"


def test_unaligned_quality_levels_are_refused() -> None:
    videos = video_of(presentation())
    odd = TrackView(videos[0].info, videos[0].segments[:-1])
    with pytest.raises(ValueError, match="aligned"):
        client_manifest([odd, *videos[1:]])


def test_fourcc_and_codec_private_data() -> None:
    audio = audio_of(presentation())[0]
    he = with_info(audio, codec="mp4a.40.5")
    assert smooth_fourcc(he.info) == "AACH"
    assert smooth_fourcc(with_info(audio, codec="mp4a.40.29").info) == "AACH"
    assert smooth_fourcc(with_info(audio, codec="mp4a", codec_private=bytes.fromhex("2b920800")).info) == "AACH"
    assert smooth_fourcc(with_info(audio, codec="ec-3", fourcc="ec-3").info) == "EC-3"
    video = video_of(presentation())[0]
    assert smooth_fourcc(with_info(video, fourcc="avc3", codec="avc3.64001f").info) == "H264"
    assert smooth_fourcc(with_info(video, fourcc="hev1", codec="hev1.1.6.L93.B0").info) == "HEVC"
    assert codec_private_data(with_info(video, codec_private=b"").info) == ""
    with pytest.raises(ValueError):
        codec_private_data(with_info(video, codec_private=b"\x01\x64").info)
    # HEVC: every NAL of every array, Annex B
    vps, sps, pps = b"\x40\x01\x0c", b"\x42\x01\x01", b"\x44\x01"
    hvcc = bytes(22) + bytes([3])
    for nal_type, nal in ((32, vps), (33, sps), (34, pps)):
        hvcc += bytes([0x80 | nal_type]) + (1).to_bytes(2, "big") + len(nal).to_bytes(2, "big") + nal
    hevc = with_info(video, fourcc="hvc1", codec="hvc1.1.6.L93.B0", codec_private=hvcc)
    assert codec_private_data(hevc.info) == "0000000140010C0000000142010100000001" + "4401"


def test_he_aac_quality_level() -> None:
    audio = with_info(audio_of(presentation())[0], codec="mp4a.40.5", channels=1)
    ql = parse(client_manifest([audio])).find("StreamIndex/QualityLevel")
    assert ql.get("FourCC") == "AACH"
    assert ql.get("PacketSize") == "2"


def test_protection_header() -> None:
    pro = "<WRMHEADER/>".encode("utf-16-le")
    root = parse(client_manifest(presentation(), protection=[
        SmoothProtection("9A04F079-9840-4286-AB92-E65BE0885F95", pro)]))
    header = root.find("Protection/ProtectionHeader")
    assert header.get("SystemID") == "9A04F079-9840-4286-AB92-E65BE0885F95"
    assert base64.b64decode(header.text) == pro
    # Protection follows the StreamIndexes
    assert [c.tag for c in root][-1] == "Protection"
    assert SmoothProtection.playready(pro) == SmoothProtection("9A04F079-9840-4286-AB92-E65BE0885F95", pro)


@pytest.mark.parametrize("timescale", [1000, 8000, 12_800, 25, 30_000, 44_100, 48_000, 90_000, 10_000_000])
def test_time_conversion_is_an_exact_inverse(timescale: int) -> None:
    rng = random.Random(timescale)
    for t in [0, 1, timescale - 1, timescale, *(rng.randrange(0, 10**12) for _ in range(500))]:
        ticks = to_smooth_time(t, timescale)
        assert from_smooth_time(ticks, timescale) == t
        assert abs(ticks * timescale - t * SMOOTH_TIMESCALE) * 2 <= timescale  # within half a tick
    assert to_smooth_time(1, 20_000_000) == 1  # half a tick rounds up
    assert to_smooth_time(3, 48_000) == 625


def test_high_timescales_still_find_segments() -> None:
    # above 10 MHz two track times can share a tick; the lookup compares in ticks
    info = replace(video_of(presentation())[0].info, timescale=30_000_000)
    view = TrackView(info, (SegmentRef(0, 60_000_001, 0, 50), SegmentRef(60_000_001, 60_000_000, 50, 50)))
    ticks = [t for t, _ in chunk_timeline(view)]
    assert [smooth_segment_index(view, t) for t in ticks] == [0, 1]


def test_naming_helpers() -> None:
    tracks = presentation()
    assert track_name(with_info(tracks[0], name="").info) == "video"
    assert find_track(tracks, "video", 3_500_000).info.height == 720  # type: ignore[union-attr]
    assert find_track(tracks, "video", 128_000) is None
    assert find_track(tracks, "audio_spa", 96_000).info.language == "spa"  # type: ignore[union-attr]
    assert segment_index_at(tracks[0], 51_200) == 2
    assert segment_index_at(tracks[0], 51_201) is None
    assert segment_index_at(tracks[0], 10**9) is None
    check_url_keys(tracks)
    with pytest.raises(ValueError, match="both named 'video' at 2200000"):
        check_url_keys([*tracks, with_info(tracks[0], track_id=42)])
    with pytest.raises(ValueError):
        to_smooth_time(1, 0)
    with pytest.raises(ValueError):
        from_smooth_time(1, -5)
