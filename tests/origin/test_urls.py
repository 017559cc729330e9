"""The streaming URL grammar: what parses, into what, and what is refused with which status."""

from __future__ import annotations

import pytest

from openams.origin.urls import UrlError, parse


def test_smooth_manifest_is_the_default() -> None:
    r = parse("clip.ism/manifest")
    assert (r.kind, r.name, r.params.format) == ("manifest", "clip", "smooth")
    assert parse("clip.ism/Manifest").kind == "manifest"


@pytest.mark.parametrize("fmt", ["m3u8-aapl", "m3u8-aapl-v3", "m3u8-cmaf", "mpd-time-csf", "mpd-time-cmaf",
                                 "fmp4-v20"])
def test_formats(fmt: str) -> None:
    assert parse(f"clip.ism/manifest(format={fmt})").params.format == fmt


def test_parameters_with_spaces_filters_and_suffix() -> None:
    r = parse("clip.ism/Manifest(format=mpd-time-csf, filter=a;b,audio-only=false).mpd")
    assert r.params.filters == ("a", "b") and not r.params.audio_only and r.params.format == "mpd-time-csf"
    assert parse("clip.ism/manifest(format=m3u8-aapl).m3u8").params.format == "m3u8-aapl"


def test_playlist_and_keyframes() -> None:
    r = parse("clip.ism/QualityLevels(3000000)/Manifest(video,format=m3u8-aapl,type=keyframes)")
    assert (r.kind, r.bitrate, r.track, r.params.keyframes) == ("playlist", 3000000, "video", True)


def test_fragments() -> None:
    r = parse("clip.ism/QualityLevels(128000)/Fragments(audio=96000,format=mpd-time-csf)")
    assert (r.kind, r.track, r.time, r.bitrate) == ("fragment", "audio", 96000, 128000)
    assert parse("clip.ism/QualityLevels(1)/Fragments(video=i,format=m3u8-cmaf)").time is None
    smooth = parse("clip.ism/QualityLevels(1)/Fragments(video=20000000)")
    assert smooth.params.format == "smooth" and smooth.time == 20000000


def test_progressive_file() -> None:
    r = parse("clip_1280x720_3000.mp4")
    assert (r.kind, r.name) == ("file", "clip_1280x720_3000.mp4")
    assert parse("my%20clip.mp4").name == "my clip.mp4"


@pytest.mark.parametrize(("rest", "status", "words"), [
    ("clip.ism/manifest(format=hls)", 400, "unknown format 'hls'"),
    ("clip.ism/manifest(format=f4m-f4f)", 501, "HDS"),
    ("clip.ism/manifest(foo=bar)", 400, "unknown parameter 'foo'"),
    ("clip.ism/manifest(format=m3u8-aapl,format=m3u8-aapl)", 400, "twice"),
    ("clip.ism/manifest(filter=a;b;c;d)", 400, "at most 3"),
    ("clip.ism/manifest(filter=)", 400, "empty filter"),
    ("clip.ism/QualityLevels(abc)/Fragments(video=0,format=m3u8-aapl)", 400, "bitrate"),
    ("clip.ism/QualityLevels(1)/Fragments(video=-5,format=m3u8-aapl)", 400, "start time"),
    ("clip.ism/QualityLevels(1)/Fragments(video=99999999999999999999999,format=m3u8-aapl)", 400, "start time"),
    ("clip.ism/QualityLevels(1)/Fragments(video)", 400, "needs a start time"),
    ("clip.ism/QualityLevels(1)/Manifest(video,format=mpd-time-csf)", 400, "only for HLS"),
    ("clip.ism/QualityLevels(1)/Manifest(video=3,format=m3u8-aapl)", 400, "track name"),
    ("clip.ism/nonsense", 404, "not a manifest request"),
    ("clip.ism/a/b/c", 404, "more path segments"),
    ("", 404, "names no file"),
    ("dir/file.mp4", 404, "not a server manifest"),
    ("clip.ism/manifest(type=thumbnails)", 400, "type=thumbnails"),
])
def test_bad_urls(rest: str, status: int, words: str) -> None:
    with pytest.raises(UrlError) as info:
        parse(rest)
    assert info.value.status == status and words in str(info.value)
