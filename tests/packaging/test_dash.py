"""DASH MPD: structure dash.js relies on, SegmentTimeline exactness, AMS URL templates."""

from __future__ import annotations

import base64
from fractions import Fraction

import pytest
from lxml import etree

from openams.packaging.dash import (
    DashContentProtection,
    clearkey_protection,
    frame_rate,
    iso_duration,
    kid_uuid,
    mp4_protection,
    mpd,
    playready_protection,
    timeline_entries,
    widevine_protection,
)
from openams.packaging.encryption import (
    clearkey_pssh,
    playready_header,
    playready_object,
    playready_pssh,
    widevine_pssh,
)
from openams.packaging.model import SegmentRef, TrackView
from tests.packaging.manifest_fixtures import (
    AUDIO_END,
    VIDEO_END,
    VIDEO_TS,
    audio_of,
    audio_track,
    presentation,
    video_of,
    with_info,
)

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
D = "{urn:mpeg:dash:schema:mpd:2011}"


def parse(text: str) -> etree._Element:
    assert text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    return etree.fromstring(text.encode("utf-8"))


def parse_duration(value: str) -> Fraction:
    assert value.startswith("PT") and value.endswith("S"), value
    return Fraction(value[2:-1])


def template_of(rep: etree._Element) -> etree._Element:
    """The SegmentTemplate that applies to a Representation (its own, else its AdaptationSet's)."""
    own = rep.find("d:SegmentTemplate", NS)
    if own is not None:
        return own
    found = rep.getparent().find("d:SegmentTemplate", NS)
    assert found is not None
    return found


def expand(template: etree._Element) -> list[tuple[int, int]]:
    """(t, d) of every segment of a SegmentTimeline, as a DASH client computes them."""
    out: list[tuple[int, int]] = []
    t = 0
    for s in template.findall("d:SegmentTimeline/d:S", NS):
        if s.get("t") is not None:
            t = int(s.get("t"))
        else:
            assert out, "the first S must carry t"
        d = int(s.get("d"))
        for _ in range(int(s.get("r", "0")) + 1):
            out.append((t, d))
            t += d
    return out


def check_dashjs_requirements(root: etree._Element) -> None:
    """What dash.js needs to play a static SegmentTimeline MPD."""
    assert root.tag == D + "MPD"
    assert root.get("type") == "static"
    assert root.get("minBufferTime")
    assert parse_duration(root.get("mediaPresentationDuration")) > 0
    assert "urn:mpeg:dash:profile:isoff-live:2011" in root.get("profiles").split(",")
    periods = root.findall("d:Period", NS)
    assert len(periods) == 1
    ids: set[str] = set()
    for aset in periods[0].findall("d:AdaptationSet", NS):
        assert aset.get("contentType") in ("video", "audio", "text")
        assert aset.get("mimeType")
        reps = aset.findall("d:Representation", NS)
        assert reps
        for rep in reps:
            rid = rep.get("id")
            assert rid and " " not in rid and rid not in ids
            ids.add(rid)
            assert int(rep.get("bandwidth")) > 0
            assert rep.get("codecs") or aset.get("codecs")
            template = template_of(rep)
            assert int(template.get("timescale")) > 0
            assert "$Time$" in template.get("media") and "$Number$" not in template.get("media")
            assert template.get("initialization")
            assert expand(template)
            if aset.get("contentType") == "video":
                assert int(rep.get("width")) > 0 and int(rep.get("height")) > 0
        # element order of the schema: ContentProtection, Role, SegmentTemplate, Representation
        names = [etree.QName(c).localname for c in aset]
        order = ["ContentProtection", "Role", "SegmentTemplate", "Representation"]
        ranks = [order.index(n) for n in names if n in order]
        assert ranks == sorted(ranks), names


def test_mpd_structure_and_templates() -> None:
    tracks = presentation()
    root = parse(mpd(tracks, fmt="mpd-time-csf"))
    check_dashjs_requirements(root)
    assert root.get("profiles") == "urn:mpeg:dash:profile:isoff-live:2011"
    assert root.get("mediaPresentationDuration") == "PT10.03S"
    assert root.get("maxSegmentDuration") == "PT2.03S"
    assert root.get("minBufferTime") == "PT2S"

    sets = root.findall("d:Period/d:AdaptationSet", NS)
    assert [s.get("contentType") for s in sets] == ["video", "audio", "audio"]
    video = sets[0]
    assert video.get("mimeType") == "video/mp4"
    assert video.get("segmentAlignment") == "true"
    assert video.get("maxWidth") == "1920" and video.get("maxHeight") == "1080"
    assert video.find("d:Role", NS).get("value") == "main"
    assert video.find("d:Role", NS).get("schemeIdUri") == "urn:mpeg:dash:role:2011"
    template = video.find("d:SegmentTemplate", NS)
    assert template is not None  # shared timeline → set level
    assert template.get("timescale") == str(VIDEO_TS)
    assert template.get("media") == "QualityLevels($Bandwidth$)/Fragments(video=$Time$,format=mpd-time-csf)"
    assert template.get("initialization") == "QualityLevels($Bandwidth$)/Fragments(video=i,format=mpd-time-csf)"
    assert template.get("presentationTimeOffset") is None
    reps = video.findall("d:Representation", NS)
    assert [r.get("bandwidth") for r in reps] == ["6000000", "3500000", "2200000", "1000000"]
    assert [r.get("id") for r in reps] == ["video_6000000", "video_3500000", "video_2200000", "video_1000000"]
    assert reps[0].get("codecs") == "avc1.640028"
    assert (reps[0].get("width"), reps[0].get("height"), reps[0].get("frameRate")) == ("1920", "1080", "25")

    eng, spa = sets[1], sets[2]
    assert (eng.get("lang"), spa.get("lang")) == ("en", "es")
    assert eng.get("mimeType") == "audio/mp4"
    assert eng.find("d:Role", NS).get("value") == "main"
    assert spa.find("d:Role", NS).get("value") == "alternate"
    rep = eng.find("d:Representation", NS)
    assert rep.get("audioSamplingRate") == "48000"
    assert rep.get("codecs") == "mp4a.40.2"
    channels = rep.find("d:AudioChannelConfiguration", NS)
    assert channels.get("schemeIdUri") == "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
    assert channels.get("value") == "2"
    assert eng.find("d:SegmentTemplate", NS).get("media") == \
        "QualityLevels($Bandwidth$)/Fragments(audio_eng=$Time$,format=mpd-time-csf)"


def test_segment_timelines_expand_to_exactly_the_segments() -> None:
    tracks = presentation()
    root = parse(mpd(tracks, fmt="mpd-time-csf"))
    by_name = {}
    for rep in root.iterfind(".//d:Representation", NS):
        by_name[rep.get("id")] = expand(template_of(rep))
    for view in tracks:
        got = by_name[f"{view.info.name}_{view.info.bitrate}"]
        assert got == [(s.start, s.duration) for s in view.segments]
        end = got[-1][0] + got[-1][1]
        assert end == view.end
    assert by_name["video_6000000"][-1][0] + by_name["video_6000000"][-1][1] == VIDEO_END
    assert by_name["audio_eng_128000"][-1][0] + by_name["audio_eng_128000"][-1][1] == AUDIO_END
    # r compresses the four 2 s video segments
    template = root.find(".//d:AdaptationSet/d:SegmentTemplate", NS)
    first = template.find("d:SegmentTimeline/d:S", NS)
    assert (first.get("t"), first.get("d"), first.get("r")) == ("0", "25600", "3")
    assert sum(Fraction(d, VIDEO_TS) for _, d in by_name["video_6000000"]) == parse_duration(
        root.get("mediaPresentationDuration"))


def test_cmaf_profile_and_urls() -> None:
    root = parse(mpd(presentation(), fmt="mpd-time-cmaf"))
    check_dashjs_requirements(root)
    assert root.get("profiles") == "urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019"
    for template in root.iterfind(".//d:SegmentTemplate", NS):
        assert template.get("media").endswith(",format=mpd-time-cmaf)")
        assert template.get("initialization").endswith("=i,format=mpd-time-cmaf)")


def test_unaligned_renditions_get_per_representation_templates() -> None:
    tracks = presentation()
    videos = video_of(tracks)
    odd = videos[0]
    shifted = TrackView(odd.info, (SegmentRef(0, 38_400, 0, 75), SegmentRef(38_400, VIDEO_END - 38_400, 75, 176)))
    root = parse(mpd([shifted, *videos[1:]], fmt="mpd-time-csf"))
    check_dashjs_requirements(root)
    video = root.find(".//d:AdaptationSet", NS)
    assert video.find("d:SegmentTemplate", NS) is None
    for rep in video.findall("d:Representation", NS):
        assert rep.find("d:SegmentTemplate", NS) is not None
    rep = next(r for r in video.findall("d:Representation", NS) if r.get("bandwidth") == str(odd.info.bitrate))
    assert expand(template_of(rep)) == [(0, 38_400), (38_400, VIDEO_END - 38_400)]


def test_sets_split_by_language_and_codec_family_and_bitrates_group() -> None:
    tracks = presentation()
    low_eng = audio_track(20, "audio_eng", "eng", 64_000)
    hevc = with_info(video_of(tracks)[0], track_id=30, codec="hvc1.1.6.L93.B0", fourcc="hvc1", bitrate=1_500_000)
    root = parse(mpd([*tracks, low_eng, hevc], fmt="mpd-time-csf"))
    check_dashjs_requirements(root)
    sets = root.findall("d:Period/d:AdaptationSet", NS)
    assert [s.get("contentType") for s in sets] == ["video", "video", "audio", "audio"]
    assert [r.get("codecs") for r in sets[1].findall("d:Representation", NS)] == ["hvc1.1.6.L93.B0"]
    assert [r.get("bandwidth") for r in sets[2].findall("d:Representation", NS)] == ["128000", "64000"]


def test_base_query_is_appended_and_dollar_escaped() -> None:
    root = parse(mpd(presentation(), fmt="mpd-time-csf", base_query="?token=a$b&filter=f"))
    template = root.find(".//d:SegmentTemplate", NS)
    assert template.get("media") == \
        "QualityLevels($Bandwidth$)/Fragments(video=$Time$,format=mpd-time-csf)?token=a$$b&filter=f"
    assert template.get("initialization").endswith("(video=i,format=mpd-time-csf)?token=a$$b&filter=f")


def test_trimmed_presentation_gets_a_presentation_time_offset() -> None:
    tracks = presentation()
    trimmed = [TrackView(t.info, tuple(s for s in t.segments if s.start * 2 >= t.info.timescale * 7))
               for t in tracks]  # keep segments starting at or after 3.5 s
    root = parse(mpd(trimmed, fmt="mpd-time-csf"))
    check_dashjs_requirements(root)
    video_t = root.find(".//d:AdaptationSet/d:SegmentTemplate", NS)
    audio_t = root.findall(".//d:AdaptationSet", NS)[1].find("d:SegmentTemplate", NS)
    # the earliest kept time is the video's 4 s (audio resumes at 192512 / 48000 = 4.0107 s); every
    # template starts the period there
    first = Fraction(4)
    assert video_t.get("presentationTimeOffset") == "51200"
    assert audio_t.get("presentationTimeOffset") == "192000"
    assert expand(video_t)[0] == (51_200, 25_600)
    assert expand(audio_t)[0] == (192_512, 96_256)
    assert parse_duration(root.get("mediaPresentationDuration")) == round(
        (Fraction(VIDEO_END, VIDEO_TS) - first) * 1000) / Fraction(1000)


def test_duration_override_and_iso_durations() -> None:
    root = parse(mpd(presentation(), fmt="mpd-time-csf", duration_seconds=12.5))
    assert root.get("mediaPresentationDuration") == "PT12.5S"
    assert iso_duration(0) == "PT0S"
    assert iso_duration(Fraction(7200)) == "PT7200S"
    assert iso_duration(Fraction(1003, 100)) == "PT10.03S"
    assert iso_duration(2.0004) == "PT2S"


def test_timeline_entries_gaps_and_runs() -> None:
    info = video_of(presentation())[0].info
    view = TrackView(info, (
        SegmentRef(100, 10, 0, 1), SegmentRef(110, 10, 1, 1), SegmentRef(120, 12, 2, 1),
        SegmentRef(140, 12, 3, 1), SegmentRef(152, 12, 4, 1),
    ))
    assert timeline_entries(view) == [(100, 10, 1), (None, 12, 0), (140, 12, 1)]


def test_frame_rate() -> None:
    video = video_of(presentation())[0]
    assert frame_rate(video) == 25
    ntsc = with_info(video, extra={"frame_rate": "30000/1001"})
    assert frame_rate(ntsc) == Fraction(30000, 1001)
    near = TrackView(video.info, (SegmentRef(0, 60_060, 0, 60), SegmentRef(60_060, 5, 60, 1)))
    near = with_info(near, timescale=30_000)
    assert frame_rate(near) == Fraction(30000, 1001)
    assert frame_rate(audio_of(presentation())[0]) is None


def test_content_protection_elements() -> None:
    kid = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
    items = [
        DashContentProtection("urn:mpeg:dash:mp4protection:2011", value="cenc", default_kid=kid),
        DashContentProtection("urn:uuid:9a04f079-9840-4286-ab92-e65be0885f95", pssh=b"\x00pssh", pro=b"pro"),
    ]
    root = parse(mpd(presentation(), fmt="mpd-time-csf", content_protection=items))
    check_dashjs_requirements(root)
    cenc = "urn:mpeg:cenc:2013"
    for aset in root.iterfind(".//d:AdaptationSet", NS):
        cps = aset.findall("d:ContentProtection", NS)
        assert len(cps) == 2
        assert cps[0].get(f"{{{cenc}}}default_KID") == kid
        assert cps[0].get("value") == "cenc"
        assert cps[1].find(f"{{{cenc}}}pssh").text == base64.b64encode(b"\x00pssh").decode()
        assert cps[1].find("{urn:microsoft:playready}pro").text == base64.b64encode(b"pro").decode()


def test_clearkey_descriptor_never_carries_a_pssh() -> None:
    """dash.js hands a ClearKey descriptor's init data to the CDM as `keyids` JSON; a pssh box
    there makes Chromium's generateRequest() fail (dash.js error 113), so it is never written,
    even on a hand-built descriptor; the key id list comes from `cenc:default_KID` instead."""
    kid = bytes.fromhex("0b1c2d3e4f5061728394a5b6c7d8e9f0")
    hand_built = DashContentProtection("urn:uuid:E2719D58-A985-B3C9-781A-B030AF78D30E", value="ClearKey1.0",
                                       pssh=clearkey_pssh([kid]), laurl="https://keys.example/ck")
    for items in ([mp4_protection("cenc", kid), hand_built],
                  [mp4_protection("cenc", kid), clearkey_protection("https://keys.example/ck")]):
        root = parse(mpd(presentation(), fmt="mpd-time-csf", content_protection=items))
        for aset in root.iterfind(".//d:AdaptationSet", NS):
            mp4, clearkey = aset.findall("d:ContentProtection", NS)
            assert mp4.get("{urn:mpeg:cenc:2013}default_KID") == kid_uuid(kid)
            assert clearkey.find("{urn:mpeg:cenc:2013}pssh") is None
            assert clearkey.findtext("{https://dashif.org/CPS}Laurl") == "https://keys.example/ck"
    # a ClearKey descriptor alone declares no cenc namespace it does not use
    alone = mpd(presentation(), fmt="mpd-time-csf", content_protection=[hand_built])
    assert "xmlns:cenc" not in alone and "pssh" not in alone


def test_content_protection_helpers() -> None:
    kid = bytes.fromhex("0b1c2d3e4f5061728394a5b6c7d8e9f0")
    pro = playready_object(playready_header([kid], la_url="https://pr.example/rightsmanager.asmx"))
    wv = widevine_pssh([kid], protection_scheme="cbcs")
    clearkey_url = "https://keys.example/clearkey?kid=0b1c&token=a&b"
    items = [
        mp4_protection("cbcs", kid),
        clearkey_protection(clearkey_url),
        playready_protection(pro, pssh=playready_pssh(pro), laurl="https://pr.example/rightsmanager.asmx"),
        widevine_protection(wv, laurl="https://wv.example/proxy"),
    ]
    text = mpd(presentation(), fmt="mpd-time-cmaf", content_protection=items)
    root = parse(text)
    check_dashjs_requirements(root)
    assert root.nsmap == {None: NS["d"], "cenc": "urn:mpeg:cenc:2013", "mspr": "urn:microsoft:playready",
                          "dashif": "https://dashif.org/CPS"}
    assert "<dashif:Laurl>" in text  # ExoPlayer matches the prefixed name literally
    cenc, dashif = "{urn:mpeg:cenc:2013}", "{https://dashif.org/CPS}"
    sets = root.findall("d:Period/d:AdaptationSet", NS)
    assert {s.get("contentType") for s in sets} == {"video", "audio"}
    for aset in sets:
        cps = aset.findall("d:ContentProtection", NS)
        assert [(c.get("schemeIdUri"), c.get("value")) for c in cps] == [
            ("urn:mpeg:dash:mp4protection:2011", "cbcs"),
            ("urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e", "ClearKey1.0"),
            ("urn:uuid:9a04f079-9840-4286-ab92-e65be0885f95", "MSPR 2.0"),
            ("urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed", None),
        ]
        assert cps[0].get(cenc + "default_KID") == "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
        assert [len(c) for c in cps] == [0, 1, 3, 2]
        assert cps[1].findtext(dashif + "Laurl") == clearkey_url
        assert cps[1].find(cenc + "pssh") is None  # dash.js: ClearKey init data comes from default_KID
        assert base64.b64decode(cps[2].findtext("{urn:microsoft:playready}pro")) == pro
        assert base64.b64decode(cps[2].findtext(cenc + "pssh")) == playready_pssh(pro)
        assert base64.b64decode(cps[3].findtext(cenc + "pssh")) == wv
        assert cps[3].findtext(dashif + "Laurl") == "https://wv.example/proxy"
    assert kid_uuid(kid) == "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
    with pytest.raises(ValueError):
        kid_uuid(b"short")
    with pytest.raises(ValueError):
        mp4_protection("aes-128", kid)  # type: ignore[arg-type]
    # clear presentations keep their MPD byte for byte: no protection namespaces
    assert "xmlns:cenc" not in mpd(presentation(), fmt="mpd-time-csf")


def test_mpd_rejects_bad_format_and_ambiguous_urls() -> None:
    with pytest.raises(ValueError, match="not a DASH format"):
        mpd(presentation(), fmt="mpd-number")  # type: ignore[arg-type]
    tracks = presentation()
    with pytest.raises(ValueError, match="could not tell them apart"):
        mpd([*tracks, with_info(tracks[-1], track_id=77)], fmt="mpd-time-csf")
