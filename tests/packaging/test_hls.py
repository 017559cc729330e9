"""HLS master and media playlists: AMS URL grammar, RFC 8216 rules, v3/v4/CMAF shapes."""

from __future__ import annotations

import base64
import math

import pytest

from openams.packaging.encryption import playready_header, playready_object, widevine_pssh
from openams.packaging.hls import (
    HlsKey,
    aes128_key,
    fairplay_key,
    master_playlist,
    media_playlist,
    playready_key,
    sample_aes_method,
    target_duration,
    widevine_key,
)
from openams.packaging.model import SegmentRef, TrackView
from tests.packaging.manifest_fixtures import (
    VIDEO_END,
    VIDEO_TS,
    audio_of,
    hls_attributes,
    hls_entries,
    hls_segments,
    presentation,
    video_of,
    with_info,
)


def _tags(text: str, tag: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(tag)]


def test_master_v4_lists_renditions_variants_and_iframes_in_ams_grammar() -> None:
    text = master_playlist(presentation(), fmt="m3u8-aapl")
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    assert lines[1] == "#EXT-X-VERSION:4"
    assert text.endswith("\n")

    media = [a for a, _ in hls_entries(text, "#EXT-X-MEDIA")]
    assert [m["NAME"] for m in media] == ["audio_eng", "audio_spa"]
    assert all(m["TYPE"] == "AUDIO" and m["GROUP-ID"] == "audio" and m["AUTOSELECT"] == "YES" for m in media)
    assert [m["DEFAULT"] for m in media] == ["YES", "NO"]
    assert [m["LANGUAGE"] for m in media] == ["en", "es"]
    assert media[0]["URI"] == "QualityLevels(128000)/Manifest(audio_eng,format=m3u8-aapl)"
    assert media[1]["URI"] == "QualityLevels(96000)/Manifest(audio_spa,format=m3u8-aapl)"

    variants = hls_entries(text, "#EXT-X-STREAM-INF")
    video_variants = [v for v in variants if "RESOLUTION" in v[0]]
    # highest bitrate first, whatever the input order
    assert [uri for _, uri in video_variants] == [
        f"QualityLevels({b})/Manifest(video,format=m3u8-aapl)" for b in (6000000, 3500000, 2200000, 1000000)
    ]
    top = video_variants[0][0]
    assert top["RESOLUTION"] == "1920x1080"
    assert top["CODECS"] == "avc1.640028,mp4a.40.2"
    assert top["AUDIO"] == "audio"
    assert top["FRAME-RATE"] == "25.000"
    # peak = video peak + the largest audio peak of the group; average likewise
    assert int(top["BANDWIDTH"]) == 7_200_000 + 129_000
    assert int(top["AVERAGE-BANDWIDTH"]) == 6_000_000 + 128_000

    audio_variant = variants[-1]
    assert "RESOLUTION" not in audio_variant[0]
    assert audio_variant[0]["CODECS"] == "mp4a.40.2"
    assert audio_variant[1] == "QualityLevels(128000)/Manifest(audio_eng,format=m3u8-aapl)"

    iframes = [a for a, _ in hls_entries(text, "#EXT-X-I-FRAME-STREAM-INF")]
    assert [a["URI"] for a in iframes] == [
        f"QualityLevels({b})/Manifest(video,format=m3u8-aapl,type=keyframes)"
        for b in (6000000, 3500000, 2200000, 1000000)
    ]
    assert iframes[0]["CODECS"] == "avc1.640028" and iframes[0]["RESOLUTION"] == "1920x1080"
    assert int(iframes[0]["BANDWIDTH"]) == 7_200_000


def test_master_audio_only_false_drops_the_audio_only_variant() -> None:
    text = master_playlist(presentation(), fmt="m3u8-aapl", audio_only=False)
    variants = hls_entries(text, "#EXT-X-STREAM-INF")
    assert len(variants) == 4
    assert all("RESOLUTION" in a for a, _ in variants)


def test_master_first_bitrate_moves_that_rung_first() -> None:
    text = master_playlist(presentation(), fmt="m3u8-aapl", first_bitrate=2_200_000)
    uris = [uri for _, uri in hls_entries(text, "#EXT-X-STREAM-INF")]
    assert uris[0] == "QualityLevels(2200000)/Manifest(video,format=m3u8-aapl)"
    assert uris[1:4] == [f"QualityLevels({b})/Manifest(video,format=m3u8-aapl)" for b in (6000000, 3500000, 1000000)]
    # not an exact rung: the nearest one
    text = master_playlist(presentation(), fmt="m3u8-aapl", first_bitrate=1_300_000)
    assert hls_entries(text, "#EXT-X-STREAM-INF")[0][1] == "QualityLevels(1000000)/Manifest(video,format=m3u8-aapl)"


def test_master_query_is_appended_to_every_uri() -> None:
    text = master_playlist(presentation(), fmt="m3u8-aapl", query="filter=f1")
    uris = [a["URI"] for a, _ in hls_entries(text, "#EXT-X-MEDIA")]
    uris += [uri for _, uri in hls_entries(text, "#EXT-X-STREAM-INF")]  # type: ignore[misc]
    uris += [a["URI"] for a, _ in hls_entries(text, "#EXT-X-I-FRAME-STREAM-INF")]
    assert len(uris) == 2 + 5 + 4
    assert all(u.endswith(")?filter=f1") for u in uris)
    assert "?filter=f1" in master_playlist(presentation(), fmt="m3u8-aapl", query="?filter=f1")
    assert "??" not in master_playlist(presentation(), fmt="m3u8-aapl", query="?filter=f1")


def test_master_v3_muxes_the_default_audio_into_each_variant() -> None:
    text = master_playlist(presentation(), fmt="m3u8-aapl-v3")
    assert text.splitlines()[1] == "#EXT-X-VERSION:3"
    assert not _tags(text, "#EXT-X-MEDIA")
    assert not _tags(text, "#EXT-X-I-FRAME-STREAM-INF")
    variants = hls_entries(text, "#EXT-X-STREAM-INF")
    assert [uri for _, uri in variants] == [
        *(f"QualityLevels({b})/Manifest(video,format=m3u8-aapl-v3,audiotrack=audio_eng)"
          for b in (6000000, 3500000, 2200000, 1000000)),
        "QualityLevels(128000)/Manifest(audio_eng,format=m3u8-aapl-v3)",
    ]
    top = variants[0][0]
    assert "AUDIO" not in top
    assert top["CODECS"] == "avc1.640028,mp4a.40.2"
    assert int(top["BANDWIDTH"]) == 7_200_000 + 129_000
    text = master_playlist(presentation(), fmt="m3u8-aapl-v3", audio_only=False)
    assert len(hls_entries(text, "#EXT-X-STREAM-INF")) == 4


def test_master_cmaf_uses_version_7_and_cmaf_urls() -> None:
    text = master_playlist(presentation(), fmt="m3u8-cmaf")
    assert "#EXT-X-VERSION:7" in text.splitlines()
    assert all("format=m3u8-cmaf" in uri for _, uri in hls_entries(text, "#EXT-X-STREAM-INF") if uri)
    assert all("format=m3u8-cmaf" in a["URI"] for a, _ in hls_entries(text, "#EXT-X-MEDIA"))
    assert "format=m3u8-aapl" not in text


def test_master_without_audio_or_without_video() -> None:
    videos_only = video_of(presentation())
    text = master_playlist(videos_only, fmt="m3u8-aapl")
    assert not _tags(text, "#EXT-X-MEDIA")
    variants = hls_entries(text, "#EXT-X-STREAM-INF")
    assert len(variants) == 4
    assert all("AUDIO" not in a and a["CODECS"].startswith("avc1") and "," not in a["CODECS"] for a, _ in variants)

    audio_only = audio_of(presentation())
    for fmt in ("m3u8-aapl", "m3u8-aapl-v3"):
        # an audio-only presentation still needs a variant, even with audio-only=false
        text = master_playlist(audio_only, fmt=fmt, audio_only=False)  # type: ignore[arg-type]
        variants = hls_entries(text, "#EXT-X-STREAM-INF")
        assert len(variants) == 1
        assert variants[0][1] == f"QualityLevels(128000)/Manifest(audio_eng,format={fmt})"


def test_master_rejects_unknown_format_and_ambiguous_tracks() -> None:
    with pytest.raises(ValueError, match="not an HLS format"):
        master_playlist(presentation(), fmt="m3u8-foo")  # type: ignore[arg-type]
    tracks = presentation()
    clash = with_info(tracks[0], track_id=50)
    with pytest.raises(ValueError, match="could not tell them apart"):
        master_playlist([*tracks, clash], fmt="m3u8-aapl")


def test_master_session_keys() -> None:
    key = HlsKey("SAMPLE-AES", uri="skd://key", keyformat="com.apple.streamingkeydelivery", keyformatversions="1")
    text = master_playlist(presentation(), fmt="m3u8-aapl", session_keys=[key])
    (line,) = _tags(text, "#EXT-X-SESSION-KEY")
    attrs = hls_attributes(line)
    assert attrs == {"METHOD": "SAMPLE-AES", "URI": "skd://key", "KEYFORMAT": "com.apple.streamingkeydelivery",
                     "KEYFORMATVERSIONS": "1"}


def test_media_playlist_video_v4() -> None:
    video = video_of(presentation())[0]
    text = media_playlist(video, fmt="m3u8-aapl")
    lines = text.splitlines()
    assert lines[:5] == ["#EXTM3U", "#EXT-X-VERSION:4", "#EXT-X-TARGETDURATION:3", "#EXT-X-MEDIA-SEQUENCE:0",
                         "#EXT-X-PLAYLIST-TYPE:VOD"]
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in lines
    assert lines[-1] == "#EXT-X-ENDLIST"
    assert not _tags(text, "#EXT-X-MAP")
    segments = hls_segments(text)
    assert [uri for _, uri, _ in segments] == [
        f"Fragments(video={t},format=m3u8-aapl).ts" for t in (0, 25600, 51200, 76800, 102400)
    ]
    assert [d for d, _, _ in segments] == [2.0, 2.0, 2.0, 2.0, 2.03]
    assert all(",no-desc" in line for line in _tags(text, "#EXTINF:"))
    assert math.isclose(sum(d for d, _, _ in segments), VIDEO_END / VIDEO_TS, abs_tol=1e-5)


def test_media_playlist_audio_target_duration_covers_every_rounded_extinf() -> None:
    for track in presentation():
        text = media_playlist(track, fmt="m3u8-aapl")
        target = int(_tags(text, "#EXT-X-TARGETDURATION:")[0].split(":")[1])
        durations = [d for d, _, _ in hls_segments(text)]
        assert all(round(d) <= target for d in durations)
        assert target == math.ceil(max(durations) - 1e-9)
        if track.info.kind == "audio":
            assert "#EXT-X-INDEPENDENT-SEGMENTS" not in text
            # 6 decimals, times in the track timescale (48 kHz)
            assert _tags(text, "#EXTINF:")[0] == "#EXTINF:2.005333,no-desc"
            assert hls_segments(text)[1][1] == f"Fragments({track.info.name}=96256,format=m3u8-aapl).ts"


def test_target_duration_rounds_up_and_is_at_least_one() -> None:
    info = video_of(presentation())[0].info
    view = TrackView(info, (SegmentRef(0, 12_801, 0, 25), SegmentRef(12_801, 100, 25, 1)))
    assert target_duration(view) == 2
    assert target_duration(TrackView(info, (SegmentRef(0, 100, 0, 1),))) == 1
    assert target_duration(TrackView(info, ())) == 1


def test_media_playlist_cmaf_has_map_and_version_7() -> None:
    video = video_of(presentation())[0]
    text = media_playlist(video, fmt="m3u8-cmaf", query="t=abc")
    assert "#EXT-X-VERSION:7" in text.splitlines()
    (line,) = _tags(text, "#EXT-X-MAP")
    assert hls_attributes(line)["URI"] == "Fragments(video=i,format=m3u8-cmaf).mp4?t=abc"
    assert hls_segments(text)[0][1] == "Fragments(video=0,format=m3u8-cmaf).m4s?t=abc"
    # the MAP comes before the first segment
    lines = text.splitlines()
    assert lines.index(line) < lines.index(_tags(text, "#EXTINF:")[0])


def test_media_playlist_v3_muxed_audio() -> None:
    tracks = presentation()
    video, audio = video_of(tracks)[0], audio_of(tracks)[0]
    text = media_playlist(video, fmt="m3u8-aapl-v3", muxed_audio=audio)
    assert "#EXT-X-VERSION:3" in text.splitlines()
    assert [uri for _, uri, _ in hls_segments(text)] == [
        f"Fragments(video={t},format=m3u8-aapl-v3,audiotrack=audio_eng).ts" for t in (0, 25600, 51200, 76800, 102400)
    ]
    with pytest.raises(ValueError, match="only m3u8-aapl-v3"):
        media_playlist(video, fmt="m3u8-aapl", muxed_audio=audio)


def test_iframe_playlist_uses_caller_byte_ranges() -> None:
    video = video_of(presentation())[0]
    calls: list[int] = []

    def keyframe_range(track: TrackView, index: int) -> tuple[int, int]:
        assert track is video
        calls.append(index)
        return (376 * index, 188 * (index + 10))

    text = media_playlist(video, fmt="m3u8-aapl", keyframes_only=True, keyframe_range=keyframe_range)
    assert "#EXT-X-I-FRAMES-ONLY" in text.splitlines()
    assert "#EXT-X-VERSION:4" in text.splitlines()
    segments = hls_segments(text)
    assert calls == [0, 1, 2, 3, 4]
    assert [br for _, _, br in segments] == [f"{188 * (i + 10)}@{376 * i}" for i in range(5)]
    assert segments[0][1] == "Fragments(video=0,format=m3u8-aapl).ts"
    assert [d for d, _, _ in segments] == [2.0, 2.0, 2.0, 2.0, 2.03]

    with pytest.raises(ValueError, match="keyframe_range"):
        media_playlist(video, fmt="m3u8-aapl", keyframes_only=True)
    with pytest.raises(ValueError, match="version 4"):
        media_playlist(video, fmt="m3u8-aapl-v3", keyframes_only=True, keyframe_range=keyframe_range)
    with pytest.raises(ValueError, match="video"):
        media_playlist(audio_of(presentation())[0], fmt="m3u8-aapl", keyframes_only=True,
                       keyframe_range=keyframe_range)


def test_media_playlist_keys_follow_the_map() -> None:
    video = video_of(presentation())[0]
    key = HlsKey("AES-128", uri="https://keys.example/k?kid=1", iv=bytes(range(16)))
    text = media_playlist(video, fmt="m3u8-cmaf", keys=[key])
    lines = text.splitlines()
    (key_line,) = _tags(text, "#EXT-X-KEY")
    assert hls_attributes(key_line) == {"METHOD": "AES-128", "URI": "https://keys.example/k?kid=1",
                                        "IV": "0x000102030405060708090A0B0C0D0E0F"}
    assert lines.index(_tags(text, "#EXT-X-MAP")[0]) < lines.index(key_line) < lines.index(_tags(text, "#EXTINF")[0])
    with pytest.raises(ValueError, match="16 bytes"):
        HlsKey("AES-128", uri="x", iv=b"short").line()
    assert HlsKey("NONE").line() == "#EXT-X-KEY:METHOD=NONE"


def test_key_helpers() -> None:
    assert aes128_key("key.bin").line() == '#EXT-X-KEY:METHOD=AES-128,URI="key.bin"'
    assert aes128_key("k?kid=1", bytes(range(16))).line() == \
        '#EXT-X-KEY:METHOD=AES-128,URI="k?kid=1",IV=0x000102030405060708090A0B0C0D0E0F'
    assert hls_attributes(fairplay_key("skd://kid=1").line()) == {
        "METHOD": "SAMPLE-AES", "URI": "skd://kid=1", "KEYFORMAT": "com.apple.streamingkeydelivery",
        "KEYFORMATVERSIONS": "1"}
    kid = bytes(range(16))
    wv = widevine_pssh([kid])
    attrs = hls_attributes(widevine_key(wv, "cenc").line())
    assert attrs["METHOD"] == "SAMPLE-AES-CTR"
    assert attrs["KEYFORMAT"] == "urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"
    assert base64.b64decode(attrs["URI"].removeprefix("data:text/plain;base64,")) == wv
    pro = playready_object(playready_header([kid], algorithm="AESCBC"))
    attrs = hls_attributes(playready_key(pro, "cbcs").line())
    assert (attrs["METHOD"], attrs["KEYFORMAT"], attrs["KEYFORMATVERSIONS"]) == (
        "SAMPLE-AES", "com.microsoft.playready", "1")
    assert base64.b64decode(attrs["URI"].removeprefix("data:text/plain;charset=UTF-16;base64,")) == pro
    assert (sample_aes_method("cbcs"), sample_aes_method("cenc")) == ("SAMPLE-AES", "SAMPLE-AES-CTR")
    with pytest.raises(ValueError):
        sample_aes_method("aes-128")  # type: ignore[arg-type]
    # CMAF: one key line per DRM system, after the (clear) init segment's EXT-X-MAP
    text = media_playlist(video_of(presentation())[0], fmt="m3u8-cmaf",
                          keys=[widevine_key(wv, "cbcs"), fairplay_key("skd://kid=1")])
    lines = text.splitlines()
    keys = _tags(text, "#EXT-X-KEY")
    assert len(keys) == 2
    assert lines.index(_tags(text, "#EXT-X-MAP")[0]) < lines.index(keys[0]) < lines.index(keys[1]) \
        < lines.index(_tags(text, "#EXTINF")[0])


def test_playlists_parse_with_the_m3u8_library() -> None:
    m3u8 = pytest.importorskip("m3u8")
    tracks = presentation()
    master = m3u8.loads(master_playlist(tracks, fmt="m3u8-aapl"))
    assert master.is_variant
    assert len(master.playlists) == 5
    assert len(master.iframe_playlists) == 4
    assert [m.name for m in master.media] == ["audio_eng", "audio_spa"]
    assert master.playlists[0].stream_info.resolution == (1920, 1080)
    assert master.playlists[0].stream_info.bandwidth == 7_329_000

    media = m3u8.loads(media_playlist(tracks[0], fmt="m3u8-cmaf"))
    assert media.is_endlist
    assert media.playlist_type == "vod"
    assert media.target_duration == 3
    assert media.segments[0].init_section.uri == "Fragments(video=i,format=m3u8-cmaf).mp4"
    assert [s.uri for s in media.segments][-1] == "Fragments(video=102400,format=m3u8-cmaf).m4s"

    iframes = m3u8.loads(media_playlist(tracks[0], fmt="m3u8-aapl", keyframes_only=True,
                                        keyframe_range=lambda t, i: (i * 1000, 500)))
    assert iframes.is_i_frames_only
    assert [s.byterange for s in iframes.segments][:2] == ["500@0", "500@1000"]
