"""Real encodes of tiny generated clips: outputs, GOP alignment, faststart, thumbnails, trimming,
conditions, concatenation, cancel, and the manifests written next to the media."""

from __future__ import annotations

import json
import struct
import subprocess
import threading
import time
from pathlib import Path

import av
import pytest
from lxml import etree

from openams.media import encode
from openams.media import ffmpeg as ff
from openams.media.errors import EncodeCanceledError, MediaError, NotMediaError
from openams.media.probe import probe
from tests.media.conftest import make_media, pid_alive, processes_in_group

SMIL = "{http://www.w3.org/2001/SMIL20/Language}"


def preset(codecs: list[dict], outputs: list[dict] | None = None, sources: list[dict] | None = None) -> str:
    data: dict = {
        "Version": 1.0,
        "Codecs": codecs,
        "Outputs": outputs
        or [{"FileName": "{Basename}_{Width}x{Height}_{VideoBitrate}.mp4", "Format": {"Type": "MP4Format"}}],
    }
    if sources is not None:
        data["Sources"] = sources
    return json.dumps(data)


def video(*sizes: tuple[int, int, int], **extra: object) -> dict:
    return {
        "Type": "H264Video",
        "KeyFrameInterval": "00:00:02",
        "Complexity": "Speed",
        **extra,
        "H264Layers": [
            {"Type": "H264Layer", "Width": w, "Height": h, "Bitrate": b, "BFrames": 2} for w, h, b in sizes
        ],
    }


AAC = {"Type": "AACAudio", "Profile": "AACLC", "Channels": 2, "SamplingRate": 48000, "Bitrate": 96}


@pytest.fixture(scope="module")
def av_6s(media_dir: Path) -> Path:
    return make_media(media_dir / "six.mp4", size="640x360", duration=6.0)


def top_level_boxes(path: Path) -> list[str]:
    boxes, offset, size_total = [], 0, path.stat().st_size
    with open(path, "rb") as handle:
        while offset < size_total:
            handle.seek(offset)
            size, kind = struct.unpack(">I4s", handle.read(8))
            if size == 1:
                size = struct.unpack(">Q", handle.read(8))[0]
            boxes.append(kind.decode("latin-1"))
            offset += size if size else size_total
    return boxes


def image_size(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


def ism_entries(path: Path) -> list[tuple[str, str, str]]:
    root = etree.parse(str(path)).getroot()
    assert root.tag == f"{SMIL}smil"
    assert root.find(f"{SMIL}head/{SMIL}meta").get("content") == "mp4"
    entries = []
    for element in root.find(f"{SMIL}body/{SMIL}switch"):
        track = next(p.get("value") for p in element.findall(f"{SMIL}param") if p.get("name") == "trackID")
        entries.append((element.tag.replace(SMIL, ""), element.get("src"), track))
    return entries


def test_two_rung_encode(av_6s: Path, tmp_path: Path) -> None:
    progress: list[float] = []
    result = encode(
        preset([video((640, 360, 600), (320, 180, 250)), AAC]), [av_6s], tmp_path, progress_cb=progress.append
    )
    names = [p.name for p in result.outputs]
    assert names == ["six_640x360_600.mp4", "six_320x180_250.mp4"]
    assert progress[-1] == 100.0 and progress == sorted(progress)
    keyframes = []
    for path, size in zip(result.outputs, [(640, 360), (320, 180)], strict=True):
        info = probe(path, keyframes=True)
        assert (info.video.width, info.video.height) == size
        assert info.audio is not None and info.audio.channels == 2 and info.audio.sample_rate == 48000
        for stream in (info.video, info.audio):
            assert abs(stream.duration - 6.0) <= 0.1, (path.name, stream.kind, stream.duration)
        keyframes.append(info.video_keyframes())
        boxes = top_level_boxes(path)
        assert boxes.index("moov") < boxes.index("mdat"), boxes  # faststart
    assert keyframes[0] == keyframes[1] == [0.0, 2.0, 4.0]

    entries = ism_entries(result.ism)
    assert result.ism.name == "six.ism"
    assert entries[:2] == [("video", "six_640x360_600.mp4", "1"), ("video", "six_320x180_250.mp4", "1")]
    assert entries[2] == ("audio", "six_640x360_600.mp4", "2")  # the shared audio rendition, once
    metadata = etree.parse(str(result.metadata)).getroot()
    assert result.metadata.name == "six_metadata.xml"
    assert [f.get("Name") for f in metadata.find("Inputs")] == ["six.mp4"]
    outputs = metadata.find("Outputs")
    assert [f.get("Name") for f in outputs.findall("AssetFile")] == names
    assert outputs.find("AssetFile/VideoTracks/VideoTrack").get("Width") == "640"
    assert set(result.files) == {*result.outputs, result.ism, result.metadata}
    assert "2 video layer(s)" in result.perf


def test_adaptive_streaming_separates_audio_and_video(av_640: Path, tmp_path: Path) -> None:
    result = encode("Adaptive Streaming", [av_640], tmp_path)
    infos = {p.name: probe(p) for p in result.outputs}
    assert list(infos) == [
        "clip640_640x360_1150.mp4",
        "clip640_480x270_720.mp4",
        "clip640_320x180_380.mp4",
        "clip640_AAC_128.mp4",
    ]
    for name, info in infos.items():
        if "AAC" in name:
            assert info.video is None and info.audio is not None
        else:
            assert info.audio is None and info.video is not None
    entries = ism_entries(result.ism)
    assert [(kind, src) for kind, src, _ in entries] == [
        ("video", "clip640_640x360_1150.mp4"),
        ("video", "clip640_480x270_720.mp4"),
        ("video", "clip640_320x180_380.mp4"),
        ("audio", "clip640_AAC_128.mp4"),
    ]
    assert all(track == "1" for *_, track in entries)


def test_thumbnails(av_640: Path, tmp_path: Path) -> None:
    result = encode(
        preset(
            [
                {
                    "Type": "PngImage",
                    "Start": "00:00:01",
                    "Step": "00:00:01",
                    "Range": "00:00:02",
                    "PngLayers": [{"Type": "PngLayer", "Width": 160, "Height": 90}],
                },
                {
                    "Type": "JpgImage",
                    "Start": "{Best}",
                    "JpgLayers": [{"Width": "100%", "Height": "100%", "Quality": 80}],
                },
                {
                    "Type": "BmpImage",
                    "Start": "25%",
                    "Step": "25%",
                    "Range": "100%",
                    "BmpLayers": [{"Width": "50%", "Height": "50%"}],
                },
            ],
            outputs=[
                {"FileName": "{Basename}_{Index}{Extension}", "Format": {"Type": "PngFormat"}},
                {"FileName": "{Basename}_best_{Index}{Extension}", "Format": {"Type": "JpgFormat"}},
                {"FileName": "{Basename}_{Width}_{Index}{Extension}", "Format": {"Type": "BmpFormat"}},
            ],
        ),
        [av_640],
        tmp_path,
    )
    names = [p.name for p in result.outputs]
    assert names == [
        "clip640_000001.png",
        "clip640_000002.png",
        "clip640_000003.png",
        "clip640_best_000001.jpg",
        "clip640_320_000001.bmp",
        "clip640_320_000002.bmp",
        "clip640_320_000003.bmp",
    ]
    sizes = [image_size(p) for p in result.outputs]
    assert sizes == [(160, 90)] * 3 + [(640, 360)] + [(320, 180)] * 3
    assert result.ism is None and result.thumbnails == result.outputs
    metadata = etree.parse(str(result.metadata)).getroot()
    assert len(metadata.findall("Outputs/Thumbnail")) == 7


def test_trimming(av_640: Path, tmp_path: Path) -> None:
    result = encode(
        preset([video((320, 180, 300)), AAC], sources=[{"StartTime": "00:00:01", "Duration": "PT2S"}]),
        [av_640],
        tmp_path,
    )
    info = probe(result.outputs[0], keyframes=True)
    assert abs(info.video.duration - 2.0) <= 0.1 and abs(info.audio.duration - 2.0) <= 0.1
    assert info.video_keyframes() == [0.0]


def test_audio_only_input_with_a_video_preset(audio_only: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"tone\.m4a has no video stream .* InsertBlackIfNoVideo"):
        encode(preset([video((320, 180, 200)), AAC]), [audio_only], tmp_path / "plain")
    assert not any((tmp_path / "plain").iterdir())
    result = encode(
        preset([video((320, 180, 200), Condition="InsertBlackIfNoVideo"), AAC]),
        [audio_only],
        tmp_path / "black",
    )
    info = probe(result.outputs[0])
    assert (info.video.width, info.video.height) == (320, 180)
    assert abs(info.video.duration - 3.0) <= 0.1 and abs(info.audio.duration - 3.0) <= 0.1
    with av.open(str(result.outputs[0])) as container:  # the inserted picture is black
        plane = next(container.decode(video=0)).planes[0]
        data = bytes(plane)
        luma = [
            max(data[row * plane.line_size : row * plane.line_size + plane.width])
            for row in range(plane.height)
        ]
        assert max(luma) <= 20


def test_concatenation(av_320: Path, video_only: Path, tmp_path: Path) -> None:
    result = encode(preset([video((320, 180, 300)), AAC]), [av_320, video_only], tmp_path)
    info = probe(result.outputs[0], keyframes=True)
    assert abs(info.duration - 5.0) <= 0.15
    assert info.audio is not None and abs(info.audio.duration - 5.0) <= 0.15
    assert info.video_keyframes()[:3] == [0.0, 2.0, 4.0]


def test_bad_inputs_fail_before_encoding(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01garbage" * 500)
    with pytest.raises(NotMediaError, match=r"not a media file: junk\.mp4"):
        encode("AAC Audio", [junk], tmp_path / "out")


def test_cancel_stops_ffmpeg_and_removes_partial_outputs(
    media_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = media_dir / "cancel720.mp4"
    if not source.exists():
        make_media(source, size="1280x720", duration=4.0)
    cancel = threading.Event()
    pids: list[int] = []
    canceled_at: list[float] = []
    real_run = ff.run

    def cancel_now() -> None:
        canceled_at.append(time.monotonic())
        cancel.set()

    def run_and_cancel(*args, **kwargs):
        def started(pid: int) -> None:
            pids.append(pid)
            threading.Timer(0.4, cancel_now).start()

        return real_run(*args, on_start=started, **kwargs)

    monkeypatch.setattr(ff, "run", run_and_cancel)
    heavy = preset([video((1280, 720, 3000), (960, 540, 2000), (640, 360, 1000), Complexity="Quality"), AAC])
    out = tmp_path / "out"
    with pytest.raises(EncodeCanceledError):
        encode(heavy, [source], out, cancel_event=cancel)
    assert canceled_at and time.monotonic() - canceled_at[0] < 5.0  # cancel reaches FFmpeg within 5 s
    assert pids and not pid_alive(pids[0]) and processes_in_group(pids[0]) == []
    assert list(out.iterdir()) == []


def test_rotation_is_applied_and_can_be_overridden(av_320: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "phone.mp4"
    subprocess.run(
        [
            ff.find_ffmpeg(),
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
    upright = encode(preset([video((640, 360, 400))]), [rotated], tmp_path / "auto")
    info = probe(upright.outputs[0])
    assert (info.video.width, info.video.height, info.video.rotation) == (180, 320, 0)
    assert upright.outputs[0].name == "phone_180x320_141.mp4"  # clamped to the source, bitrate scaled down
    ignored = encode(
        preset([video((640, 360, 400))], sources=[{"Filters": {"Rotation": "0"}}]),
        [rotated],
        tmp_path / "ignored",
    )
    info = probe(ignored.outputs[0])
    assert (info.video.width, info.video.height, info.video.rotation) == (320, 180, 0)


def test_surround_audio(av_320: Path, tmp_path: Path) -> None:
    result = encode("H264 Single Bitrate 720p Audio 5.1", [av_320], tmp_path)
    info = probe(result.outputs[0])
    assert (info.audio.channels, info.audio.sample_rate, info.audio.codec) == (6, 48000, "aac")


@pytest.mark.slow
def test_adaptive_streaming_1080p(av_1080: Path, tmp_path: Path) -> None:
    result = encode("Adaptive Streaming", [av_1080], tmp_path)
    videos = [p for p in result.outputs if "AAC" not in p.name]
    infos = [probe(p, keyframes=True) for p in videos]
    assert [(i.video.width, i.video.height) for i in infos] == [
        (1920, 1080),
        (1280, 720),
        (960, 540),
        (640, 360),
        (480, 270),
        (320, 180),
    ]
    first = infos[0].video_keyframes()
    assert len(first) == 5 and all(abs(a - b) < 0.01 for a, b in zip(first, [0, 2, 4, 6, 8], strict=True))
    for info in infos:
        assert info.video_keyframes() == first
        assert abs(info.video.duration - 10.0) <= 0.1
    assert len(ism_entries(result.ism)) == 7
