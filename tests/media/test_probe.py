"""Probing with PyAV, and refusing what is not (safe) media."""

from __future__ import annotations

import codecs
import os
import subprocess
from pathlib import Path

import pytest

from openams.media import encode
from openams.media.errors import NotMediaError, UnsafeInputError
from openams.media.ffmpeg import find_ffmpeg
from openams.media.probe import keyframe_times, probe, sniff
from tests.media.conftest import make_media


def test_probe_describes_streams(av_640: Path) -> None:
    info = probe(av_640, keyframes=True)
    assert info.demuxer == "mov" and "mp4" in info.format_name
    assert abs(info.duration - 4.0) < 0.05 and info.size == av_640.stat().st_size
    video, audio = info.video, info.audio
    assert video is not None and audio is not None
    assert (video.codec, video.width, video.height, video.fps, video.rotation) == ("h264", 640, 360, 30.0, 0)
    assert video.display_size == (640, 360) and video.bitrate and video.track_id == 1
    assert (audio.codec, audio.channels, audio.sample_rate) == ("aac", 2, 48000)
    assert info.video_keyframes() == [0.0, 1.0, 2.0, 3.0]  # fixture GOP is 30 frames
    assert keyframe_times(av_640) == [0.0, 1.0, 2.0, 3.0]


def test_probe_audio_only_and_video_only(audio_only: Path, video_only: Path) -> None:
    info = probe(audio_only)
    assert info.video is None and info.audio is not None and not info.has_video
    info = probe(video_only)
    assert info.audio is None and info.video is not None and info.video.fps == 25.0


def test_rotation_is_reported(tmp_path: Path, av_320: Path) -> None:
    rotated = tmp_path / "portrait.mp4"
    subprocess.run(
        [
            find_ffmpeg(),
            "-loglevel",
            "error",
            "-y",
            "-display_rotation",
            "90",
            "-i",
            str(av_320),
            "-c",
            "copy",
            str(rotated),
        ],
        check=True,
    )
    video = probe(rotated).video
    assert video is not None and video.rotation == 90
    assert (video.width, video.height) == (320, 180) and video.display_size == (180, 320)


def test_garbage_is_not_media(tmp_path: Path) -> None:
    garbage = tmp_path / "movie.mp4"
    garbage.write_bytes(os.urandom(20000))
    with pytest.raises(NotMediaError, match=r"^not a media file: movie\.mp4 \(Invalid data"):
        probe(garbage)


def test_text_is_not_media(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("Meeting notes\nnothing to see here\n" * 20)
    with pytest.raises(NotMediaError, match=r"^not a media file: notes\.mp4 is a text file$"):
        probe(text)
    utf16 = tmp_path / "notes16.mov"
    utf16.write_bytes(codecs.BOM_UTF16_LE + "just some text\r\n".encode("utf-16-le"))
    with pytest.raises(NotMediaError, match="is a text file"):
        probe(utf16)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(NotMediaError, match=r"empty\.mp4 is empty"):
        probe(empty)
    with pytest.raises(NotMediaError, match="does not exist"):
        probe(tmp_path / "absent.mp4")
    with pytest.raises(NotMediaError, match="not a regular file"):
        probe(tmp_path)


def test_truncated_files(tmp_path: Path, av_640: Path) -> None:
    data = av_640.read_bytes()  # faststart: the index survives, the media data does not
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 4])
    with pytest.raises(
        NotMediaError, match=r"^truncated media file: cut\.mp4 declares 4\.00 s but its data ends"
    ):
        probe(cut, verify=True)
    tail_index = make_media(tmp_path / "tail.mp4", size="320x180", duration=2.0, faststart=False)
    data = tail_index.read_bytes()  # index at the end: nothing survives
    (tmp_path / "cut2.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(NotMediaError, match=r"^not a media file: cut2\.mp4"):
        probe(tmp_path / "cut2.mp4", verify=True)


def _write_playlist(path: Path, target: Path, *, utf16: bool = False) -> Path:
    text = (
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile://{target}\n#EXTINF:10,\n{target}\n"
        "#EXTINF:10,\n/etc/passwd\n#EXT-X-ENDLIST\n"
    )
    path.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le") if utf16 else text.encode())
    return path


@pytest.mark.parametrize("utf16", [False, True])
def test_hls_playlist_disguised_as_mp4_is_refused_and_never_followed(
    tmp_path: Path, av_320: Path, open_watch, utf16: bool
) -> None:
    canary = tmp_path / "secret.mp4"
    canary.write_bytes(av_320.read_bytes())  # a real media file, so following the playlist would "work"
    evil = _write_playlist(tmp_path / "upload.mp4", canary, utf16=utf16)
    watch = open_watch(canary)
    with pytest.raises(UnsafeInputError, match=r"refusing upload\.mp4: it is an HLS/M3U playlist"):
        probe(evil)
    with pytest.raises(UnsafeInputError):
        encode("H264 Single Bitrate 720p", [evil], tmp_path / "out")
    assert watch.events() == b"", "the file referenced by the playlist was opened"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    canary.read_bytes()  # control: the watch does see an open
    assert watch.events() != b""


@pytest.mark.parametrize(
    "script",
    [
        "ffconcat version 1.0\nfile '{target}'\n",
        "file '{target}'\nfile '/etc/passwd'\n",
        "[playlist]\nFile1={target}\n",
        '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><BaseURL>file://{target}</BaseURL></MPD>',
        "http://example.com/video.mp4\n",
    ],
)
def test_concat_scripts_and_other_reference_files_are_refused(
    tmp_path: Path, av_320: Path, open_watch, script: str
) -> None:
    canary = tmp_path / "secret.mp4"
    canary.write_bytes(av_320.read_bytes())
    evil = tmp_path / "upload.mov"
    evil.write_text(script.format(target=canary))
    watch = open_watch(canary)
    with pytest.raises(UnsafeInputError, match=r"^refusing upload\.mov"):
        sniff(evil)
    with pytest.raises(UnsafeInputError):
        probe(evil)
    assert watch.events() == b""


def test_snapshot_in_process(av_640: Path, audio_only: Path, tmp_path: Path) -> None:
    import io

    import av

    from openams.media.snapshot import snapshot

    for fmt, codec in (("jpeg", "mjpeg"), ("png", "png")):
        data = snapshot(av_640, 2.0, width=320, image_format=fmt)
        with av.open(io.BytesIO(data)) as container:
            ctx = container.streams.video[0].codec_context
            assert (ctx.name, ctx.width, ctx.height) == (codec, 320, 180)
    rotated = tmp_path / "phone.mp4"
    subprocess.run(
        [
            find_ffmpeg(),
            "-loglevel",
            "error",
            "-y",
            "-display_rotation",
            "90",
            "-i",
            str(av_640),
            "-c",
            "copy",
            str(rotated),
        ],
        check=True,
    )
    with av.open(io.BytesIO(snapshot(rotated, height=320))) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.width, ctx.height) == (180, 320)
    with pytest.raises(NotMediaError, match="no video stream"):
        snapshot(audio_only)
