"""Filters and dynamic manifests: parsing stored entities, trimming, track selection, intersection."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from openams.packaging.dash import mpd
from openams.packaging.filters import (
    INT64_MAX,
    FilterError,
    FilterSpec,
    apply_filters,
    first_quality,
    normalize_language,
)
from openams.packaging.hls import master_playlist, media_playlist
from openams.packaging.model import TrackView
from openams.packaging.smooth import client_manifest, to_smooth_time
from tests.packaging.manifest_fixtures import (
    audio_of,
    hls_entries,
    hls_segments,
    long_track,
    presentation,
    video_of,
    with_info,
)

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


def cond(prop: str, value: str, op: str = "Equal") -> dict[str, str]:
    return {"Property": prop, "Value": value, "Operator": op}


def spec(*selects: list[dict[str, str]], name: str = "f", **time: Any) -> FilterSpec:
    entity: dict[str, Any] = {"Name": name, "Tracks": [{"PropertyConditions": s} for s in selects]}
    if time:
        entity["PresentationTimeRange"] = time
    return FilterSpec.from_entity(entity)


def starts(view: TrackView) -> list[int]:
    return [s.start for s in view.segments]


def by_name(tracks: list[TrackView]) -> dict[tuple[str, int], TrackView]:
    return {(t.info.name, t.info.bitrate): t for t in tracks}


# --------------------------------------------------------------------------------------------
# Parsing


def test_from_entity_as_stored_with_string_int64s() -> None:
    f = FilterSpec.from_entity({
        "Name": "trim",
        "PresentationTimeRange": {
            "StartTimestamp": "40000000", "EndTimestamp": "100000000",
            "PresentationWindowDuration": str(INT64_MAX), "LiveBackoffDuration": "0", "Timescale": "10000000",
            "ForceEndTimestamp": False,
        },
        "Tracks": [{"PropertyConditions": [cond("Type", "Video"), cond("Bitrate", "0-3000000", "notEqual")]}],
        "FirstQuality": {"Bitrate": "2200000"},
    })
    assert f.name == "trim"
    assert (f.time_range.start, f.time_range.end) == (4, 10)
    assert f.time_range.window is None and f.time_range.live_backoff is None
    assert f.first_quality == 2_200_000
    ((type_cond, bitrate_cond),) = f.tracks
    assert (type_cond.property, type_cond.negate) == ("type", False)
    assert (bitrate_cond.property, bitrate_cond.negate, bitrate_cond.bitrate_range) == ("bitrate", True, (0, 3_000_000))


def test_from_entity_defaults_wrappers_and_case() -> None:
    f = FilterSpec.from_entity({"Name": "all"})
    assert f.tracks == () and f.time_range.is_unbounded and f.first_quality is None
    sdk_defaults = {"StartTimestamp": 0, "EndTimestamp": INT64_MAX, "PresentationWindowDuration": INT64_MAX,
                    "LiveBackoffDuration": 0, "Timescale": 10_000_000}
    assert FilterSpec.from_entity({"PresentationTimeRange": sdk_defaults}).time_range.is_unbounded
    verbose = {
        "name": "v",
        "presentationTimeRange": {"startTimestamp": 4, "timescale": 1},
        "Tracks": {"__metadata": {"type": "Collection(FilterTrackSelect)"}, "results": [
            {"PropertyConditions": {"results": [{"property": "type", "value": "audio", "operator": "EQUAL"}]}},
        ]},
        "FirstQuality": None,
    }
    f = FilterSpec.from_entity(verbose)
    assert f.name == "v"
    assert f.time_range.start == 4
    assert f.tracks[0][0].property == "type"
    # a missing operator means Equal (the SDK enum default); SDK enum numbers are accepted too
    assert FilterSpec.from_entity({"Tracks": [{"PropertyConditions": [{"Property": "Type", "Value": "video"}]}]}) \
        .tracks[0][0].negate is False
    assert FilterSpec.from_entity({"Tracks": [{"PropertyConditions": [cond("Type", "video", 1)]}]}) \
        .tracks[0][0].negate is True  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "expected"), [
    ("500000", (500_000, 500_000)), ("0-1048576", (0, 1_048_576)), ("100000-", (100_000, None)),
    ("-2000000", (0, 2_000_000)), (" 1 - 2 ", (1, 2)), ("7-7", (7, 7)),
])
def test_bitrate_values(value: str, expected: tuple[int, int | None]) -> None:
    assert spec([cond("Bitrate", value)]).tracks[0][0].bitrate_range == expected


@pytest.mark.parametrize(("entity", "message"), [
    ({"Tracks": [{"PropertyConditions": [cond("Colour", "red")]}]}, "unknown track Property 'Colour'"),
    ({"Tracks": [{"PropertyConditions": [cond("Type", "video", "Like")]}]}, "unknown Operator 'Like'"),
    ({"Tracks": [{"PropertyConditions": [cond("Type", "data")]}]}, "not video, audio or text"),
    ({"Tracks": [{"PropertyConditions": [cond("Bitrate", "abc")]}]}, "malformed Bitrate 'abc'"),
    ({"Tracks": [{"PropertyConditions": [cond("Bitrate", "-")]}]}, "malformed Bitrate"),
    ({"Tracks": [{"PropertyConditions": [cond("Bitrate", "1 2")]}]}, "malformed Bitrate"),
    ({"Tracks": [{"PropertyConditions": [cond("Bitrate", "1-2-3")]}]}, "malformed Bitrate"),
    ({"Tracks": [{"PropertyConditions": [cond("Bitrate", "5000-3000")]}]}, "low bound above its high bound"),
    ({"Tracks": [{"PropertyConditions": [{"Property": "Name", "Operator": "Equal"}]}]}, "has no Value"),
    ({"Tracks": [{"PropertyConditions": []}]}, "no PropertyConditions"),
    ({"Tracks": "video"}, "Tracks must be a list"),
    ({"PresentationTimeRange": {"StartTimestamp": "100000000", "EndTimestamp": "40000000"}},
     r"StartTimestamp \(10 s\) is after EndTimestamp \(4 s\)"),
    ({"PresentationTimeRange": {"StartTimestamp": "4.5"}}, "must be an integer"),
    ({"PresentationTimeRange": {"StartTimestamp": -1}}, "must not be negative"),
    ({"PresentationTimeRange": {"Timescale": 0}}, "Timescale must be positive"),
    ({"PresentationTimeRange": {"PresentationWindowDuration": 600_000_000}}, "at least 120 s"),
    ({"PresentationTimeRange": {"LiveBackoffDuration": 610_000_000}}, "at most 60 s"),
    ({"PresentationTimeRange": {"ForceEndTimestamp": True}}, "requires an EndTimestamp"),
    ({"FirstQuality": {"Bitrate": "fast"}}, "FirstQuality.Bitrate must be an integer"),
    ({"FirstQuality": 5}, "FirstQuality must be an object"),
])
def test_bad_entities_raise_filter_error(entity: dict[str, Any], message: str) -> None:
    with pytest.raises(FilterError, match=message) as info:
        FilterSpec.from_entity({"Name": "bad", **entity})
    assert str(info.value).startswith("filter 'bad': ")
    assert isinstance(info.value, ValueError)


def test_normalize_language() -> None:
    assert normalize_language("eng") == "en"
    assert normalize_language("en_US") == "en-us"
    assert normalize_language("fre") == normalize_language("fra") == "fr"
    assert normalize_language("") == "und"
    assert normalize_language("haw") == "haw"


# --------------------------------------------------------------------------------------------
# Time range


def test_time_range_4_to_10_seconds_keeps_whole_overlapping_segments() -> None:
    tracks = presentation()
    f = FilterSpec.from_entity({"Name": "t", "PresentationTimeRange": {
        "StartTimestamp": 40_000_000, "EndTimestamp": 100_000_000}})
    out = apply_filters(tracks, [f])
    assert len(out) == len(tracks)
    video = video_of(out)[0]
    # 4 s starts a segment; the 8-10.03 s segment straddles the end and is kept whole
    assert starts(video) == [51_200, 76_800, 102_400]
    audio = audio_of(out)[0]
    # audio cut at AAC frames: the 2.005-4.011 s segment contains 4 s, so it is kept
    assert starts(audio) == [96_256, 192_512, 288_768, 384_000]

    # …and every manifest lists exactly those segments
    master = master_playlist(out, fmt="m3u8-aapl")
    assert len(hls_entries(master, "#EXT-X-STREAM-INF")) == 5
    assert [uri for _, uri, _ in hls_segments(media_playlist(video, fmt="m3u8-aapl"))] == [
        f"Fragments(video={t},format=m3u8-aapl).ts" for t in (51_200, 76_800, 102_400)]
    assert hls_segments(media_playlist(audio, fmt="m3u8-cmaf"))[0][1] == \
        "Fragments(audio_eng=96256,format=m3u8-cmaf).m4s"

    root = etree.fromstring(mpd(out, fmt="mpd-time-csf").encode())
    first_s = root.find(".//d:AdaptationSet/d:SegmentTemplate/d:SegmentTimeline/d:S", NS)
    assert (first_s.get("t"), first_s.get("d"), first_s.get("r")) == ("51200", "25600", "1")
    audio_s = root.findall(".//d:AdaptationSet", NS)[1].find("d:SegmentTemplate/d:SegmentTimeline/d:S", NS)
    assert audio_s.get("t") == "96256"

    smooth = etree.fromstring(client_manifest(out).encode())
    video_index, audio_index = smooth.findall("StreamIndex")[:2]
    assert video_index.get("Chunks") == "3"
    assert video_index.find("c").get("t") == "40000000"
    assert audio_index.find("c").get("t") == str(to_smooth_time(96_256, 48_000))
    assert smooth.get("Duration") == str(100_300_000 - 20_053_333)


def test_time_range_in_another_timescale_and_open_end() -> None:
    tracks = presentation()
    f = FilterSpec.from_entity({"PresentationTimeRange": {"StartTimestamp": "6", "Timescale": "1"}})
    out = apply_filters(tracks, [f])
    assert starts(video_of(out)[0]) == [76_800, 102_400]
    f = FilterSpec.from_entity({"PresentationTimeRange": {"EndTimestamp": "4000", "Timescale": "1000"}})
    out = apply_filters(tracks, [f])
    assert starts(video_of(out)[0]) == [0, 25_600]  # [4, 6) does not overlap [0, 4)
    assert starts(audio_of(out)[0]) == [0, 96_256]


def test_presentation_window_keeps_the_last_window_for_vod() -> None:
    track = long_track(300)
    f = FilterSpec.from_entity({"PresentationTimeRange": {"PresentationWindowDuration": 1_200_000_000,
                                                          "LiveBackoffDuration": 50_000_000}})
    (out,) = apply_filters([track], [f])
    assert starts(out) == list(range(180_000, 300_000, 2000))
    # the window intersects with a start
    f2 = FilterSpec.from_entity({"PresentationTimeRange": {"StartTimestamp": 2_000_000_000}})
    (out,) = apply_filters([track], [f, f2])
    assert starts(out)[0] == 200_000


def test_live_edge_backoff_and_window() -> None:
    track = long_track(300)
    f = FilterSpec.from_entity({"PresentationTimeRange": {"LiveBackoffDuration": 100_000_000,
                                                          "EndTimestamp": 500_000_000}})
    (out,) = apply_filters([track], [f], live=True)
    # edge held back to 290 s; EndTimestamp is ignored while live
    assert starts(out)[0] == 0 and out.end == 290_000
    f = FilterSpec.from_entity({"PresentationTimeRange": {"PresentationWindowDuration": 1_200_000_000}})
    (out,) = apply_filters([track], [f], live=True)
    assert starts(out)[0] == 180_000 and out.end == 300_000


def test_empty_or_out_of_range_time_is_an_error() -> None:
    tracks = presentation()
    beyond = FilterSpec.from_entity({"Name": "late", "PresentationTimeRange": {"StartTimestamp": 200_000_000}})
    with pytest.raises(FilterError, match=r"'late'.*selects no media"):
        apply_filters(tracks, [beyond])
    empty = FilterSpec.from_entity({"PresentationTimeRange": {"StartTimestamp": 5, "EndTimestamp": 5,
                                                              "Timescale": 1}})
    with pytest.raises(FilterError, match="empty"):
        apply_filters(tracks, [empty])


# --------------------------------------------------------------------------------------------
# Track selection


def test_bitrate_range_thins_the_video_ladder() -> None:
    tracks = presentation()
    f = spec([cond("Type", "video"), cond("Bitrate", "1000000-4000000")], [cond("Type", "audio")])
    out = apply_filters(tracks, [f])
    assert sorted(t.info.bitrate for t in video_of(out)) == [1_000_000, 2_200_000, 3_500_000]
    assert len(audio_of(out)) == 2
    master = master_playlist(out, fmt="m3u8-aapl")
    assert [a["RESOLUTION"] for a, _ in hls_entries(master, "#EXT-X-STREAM-INF") if "RESOLUTION" in a] == [
        "1280x720", "960x540", "640x360"]
    root = etree.fromstring(mpd(out, fmt="mpd-time-csf").encode())
    assert len(root.findall(".//d:AdaptationSet[@contentType='video']/d:Representation", NS)) == 3

    # a Bitrate condition without Type applies to every track (audio is far below the bound)
    out = apply_filters(tracks, [spec([cond("Bitrate", "-3000000")])])
    assert sorted(t.info.bitrate for t in out) == [96_000, 128_000, 1_000_000, 2_200_000]

    # selecting only video drops audio entirely, and the manifests simply have none
    out = apply_filters(tracks, [spec([cond("Type", "video"), cond("Bitrate", "3000000-")])])
    assert [t.info.kind for t in out] == ["video", "video"]
    master = master_playlist(out, fmt="m3u8-aapl")
    assert "#EXT-X-MEDIA" not in master
    assert 'AUDIO="audio"' not in master


def test_language_selects_audio() -> None:
    tracks = presentation()
    out = apply_filters(tracks, [spec([cond("Type", "video")], [cond("Type", "audio"), cond("Language", "en")])])
    assert [t.info.name for t in audio_of(out)] == ["audio_eng"]
    assert len(video_of(out)) == 4
    master = master_playlist(out, fmt="m3u8-aapl")
    assert [a["NAME"] for a, _ in hls_entries(master, "#EXT-X-MEDIA")] == ["audio_eng"]

    assert [t.info.name for t in apply_filters(tracks, [spec([cond("Language", "es")])])] == ["audio_spa"]
    assert [t.info.name for t in apply_filters(tracks, [spec([cond("Language", "spa")])])] == ["audio_spa"]
    tagged = [with_info(audio_of(tracks)[0], language="en-US"), with_info(audio_of(tracks)[1], language="en-GB",
                                                                          name="audio_gb")]
    assert len(apply_filters(tagged, [spec([cond("Language", "en")])])) == 2
    assert [t.info.name for t in apply_filters(tagged, [spec([cond("Language", "en-us")])])] == ["audio_eng"]
    with pytest.raises(FilterError, match="selects no tracks"):
        apply_filters(tracks, [spec([cond("Language", "en-US")])])  # a region the tracks do not state


def test_not_equal_name_and_fourcc() -> None:
    tracks = presentation()
    out = apply_filters(tracks, [spec([cond("Language", "en", "NotEqual")])])
    assert len(video_of(out)) == 4  # video is `und`
    assert [t.info.name for t in audio_of(out)] == ["audio_spa"]
    out = apply_filters(tracks, [spec([cond("Type", "video", "notequal")])])
    assert {t.info.kind for t in out} == {"audio"}
    out = apply_filters(tracks, [spec([cond("Name", "audio_spa")], [cond("FourCC", "AVC1")])])
    assert [t.info.name for t in out] == ["video"] * 4 + ["audio_spa"]
    out = apply_filters(tracks, [spec([cond("FourCC", "mp4a")])])
    assert len(out) == 2 and all(t.info.kind == "audio" for t in out)
    out = apply_filters(tracks, [spec([cond("FourCC", "mp4a", "NotEqual"), cond("Bitrate", "2200000", "NotEqual")])])
    assert sorted(t.info.bitrate for t in out) == [1_000_000, 3_500_000, 6_000_000]


def test_filters_intersect() -> None:
    tracks = presentation()
    trim = FilterSpec.from_entity({"Name": "trim", "PresentationTimeRange": {"StartTimestamp": 40_000_000,
                                                                             "EndTimestamp": 100_000_000}})
    thin = spec([cond("Type", "video"), cond("Bitrate", "-2500000")], [cond("Language", "en")], name="thin")
    out = apply_filters(tracks, [trim, thin])
    assert sorted((t.info.name, t.info.bitrate) for t in out) == [
        ("audio_eng", 128_000), ("video", 1_000_000), ("video", 2_200_000)]
    assert all(starts(t)[0] in (51_200, 96_256) for t in out)

    # two time ranges intersect to [4, 6)
    early = FilterSpec.from_entity({"PresentationTimeRange": {"EndTimestamp": 60_000_000}})
    out = by_name(apply_filters(tracks, [trim, early]))
    assert starts(out[("video", 6_000_000)]) == [51_200]
    assert starts(out[("audio_eng", 128_000)]) == [96_256, 192_512]

    # track selections intersect too; disjoint selections leave nothing
    audio_only = spec([cond("Type", "audio")], name="a")
    assert [t.info.name for t in apply_filters(tracks, [thin, audio_only])] == ["audio_eng"]
    with pytest.raises(FilterError, match="'thin', 'v' selects no tracks"):
        apply_filters(tracks, [thin, spec([cond("Type", "video"), cond("Bitrate", "3000000-")], name="v")])


def test_no_filters_or_empty_filter_keeps_everything() -> None:
    tracks = presentation()
    assert apply_filters(tracks, []) == tracks
    assert apply_filters(tracks, [FilterSpec.from_entity({"Name": "noop"})]) == tracks


def test_first_quality_reorders_hls() -> None:
    with_fq = FilterSpec.from_entity({"Name": "fq", "FirstQuality": {"Bitrate": 2_200_000}})
    later = FilterSpec.from_entity({"Name": "fq2", "FirstQuality": {"Bitrate": 1_000_000}})
    plain = FilterSpec.from_entity({"Name": "plain"})
    assert first_quality([plain]) is None
    assert first_quality([plain, with_fq, later]) == 2_200_000
    filters = [plain, with_fq]
    tracks = apply_filters(presentation(), filters)
    master = master_playlist(tracks, fmt="m3u8-aapl", first_bitrate=first_quality(filters))
    variants = hls_entries(master, "#EXT-X-STREAM-INF")
    assert variants[0][1] == "QualityLevels(2200000)/Manifest(video,format=m3u8-aapl)"
    assert [uri for _, uri in variants[1:4]] == [
        f"QualityLevels({b})/Manifest(video,format=m3u8-aapl)" for b in (6_000_000, 3_500_000, 1_000_000)]
