"""System preset names, their ladders, and the content-adaptive ladder."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from openams.media.errors import PresetError
from openams.media.plan import build_plan
from openams.media.presets import AACAudio, H264Video, validate
from openams.media.probe import MediaInfo, StreamInfo
from openams.media.system_presets import (
    adaptive_ladder,
    get_system_preset,
    is_system_preset,
    system_preset_names,
)

# (files, top kbps, bottom kbps) per the documented preset descriptions
MULTI_BITRATE = {
    "H264 Multiple Bitrate 1080p Audio 5.1": (8, 6000, 400),
    "H264 Multiple Bitrate 1080p": (8, 6000, 400),
    "H264 Multiple Bitrate 16x9 for iOS": (8, 8500, 200),
    "H264 Multiple Bitrate 16x9 SD Audio 5.1": (5, 1900, 400),
    "H264 Multiple Bitrate 16x9 SD": (5, 1900, 400),
    "H264 Multiple Bitrate 4K Audio 5.1": (12, 20000, 1000),
    "H264 Multiple Bitrate 4K": (12, 20000, 1000),
    "H264 Multiple Bitrate 4x3 for iOS": (8, 8500, 200),
    "H264 Multiple Bitrate 4x3 SD Audio 5.1": (5, 1600, 400),
    "H264 Multiple Bitrate 4x3 SD": (5, 1600, 400),
    "H264 Multiple Bitrate 720p Audio 5.1": (6, 3400, 400),
    "H264 Multiple Bitrate 720p": (6, 3400, 400),
}
SINGLE_BITRATE = {
    "H264 Single Bitrate 1080p Audio 5.1": 6750,
    "H264 Single Bitrate 1080p": 6750,
    "H264 Single Bitrate 4K Audio 5.1": 18000,
    "H264 Single Bitrate 4K": 18000,
    "H264 Single Bitrate 4x3 SD Audio 5.1": 1800,
    "H264 Single Bitrate 4x3 SD": 1800,
    "H264 Single Bitrate 16x9 SD Audio 5.1": 2200,
    "H264 Single Bitrate 16x9 SD": 2200,
    "H264 Single Bitrate 720p Audio 5.1": 4500,
    "H264 Single Bitrate 720p": 4500,
    "H264 Single Bitrate 720p for Android": 2000,
    "H264 Single Bitrate High Quality SD for Android": 500,
    "H264 Single Bitrate Low Quality SD for Android": 56,
}
LEGACY = [
    "AAC Good Quality Audio",
    "H264 Adaptive Bitrate MP4 Set 1080p",
    "H264 Adaptive Bitrate MP4 Set 1080p for iOS Cellular Only",
    "H264 Adaptive Bitrate MP4 Set 720p",
    "H264 Adaptive Bitrate MP4 Set 720p for iOS Cellular Only",
    "H264 Adaptive Bitrate MP4 Set SD 16x9",
    "H264 Adaptive Bitrate MP4 Set SD 16x9 for iOS Cellular Only",
    "H264 Adaptive Bitrate MP4 Set SD 4x3",
    "H264 Adaptive Bitrate MP4 Set SD 4x3 for iOS Cellular Only",
    "H264 Broadband 1080p",
    "H264 Broadband 720p",
    "H264 Broadband SD 16x9",
    "H264 Broadband SD 4x3",
    "H264 Smooth Streaming 1080p",
    "H264 Smooth Streaming 720p",
    "H264 Smooth Streaming 720p for 3G or 4G",
    "H264 Smooth Streaming 720p Xbox Live ADK",
    "H264 Smooth Streaming SD 16x9",
    "H264 Smooth Streaming SD 4x3",
    "H264 Smooth Streaming Windows Phone 7 Series",
    "Thumbnails",
    "VC1 Broadband 1080p",
    "VC1 Broadband 720p",
    "VC1 Broadband SD 16x9",
    "VC1 Broadband SD 4x3",
    "VC1 Smooth Streaming 1080p",
    "VC1 Smooth Streaming 720p",
    "VC1 Smooth Streaming 720p Xbox Live ADK",
    "VC1 Smooth Streaming SD 16x9",
    "VC1 Smooth Streaming SD 4x3",
    "WMA High Quality Audio",
    "H.264 HD 720p VBR",
    "H.264 iPad",
]


def fake_info(
    width: int,
    height: int,
    fps: Fraction | None = Fraction(30000, 1001),
    video_kbps: int | None = None,
    audio: bool = True,
    name: str = "movie.mp4",
) -> MediaInfo:
    streams = []
    if width:
        streams.append(
            StreamInfo(
                index=0,
                kind="video",
                codec="h264",
                track_id=1,
                duration=10.0,
                bitrate=video_kbps * 1000 if video_kbps else None,
                width=width,
                height=height,
                sample_aspect_ratio=Fraction(1),
                frame_rate=fps,
                default=True,
            )
        )
    if audio:
        streams.append(
            StreamInfo(
                index=len(streams),
                kind="audio",
                codec="aac",
                track_id=2,
                duration=10.0,
                bitrate=128000,
                channels=2,
                sample_rate=48000,
                default=True,
            )
        )
    return MediaInfo(
        Path("/media/" + name),
        "mov,mp4,m4a,3gp,3g2,mj2",
        "QuickTime / MOV",
        10.0,
        0.0,
        1000,
        None,
        tuple(streams),
    )


def test_every_documented_name_resolves_and_validates() -> None:
    names = system_preset_names(legacy=False)
    expected = {
        "Adaptive Streaming",
        "Content Adaptive Multiple Bitrate MP4",
        "AAC Audio",
        "AAC Good Quality Audio",
        *MULTI_BITRATE,
        *SINGLE_BITRATE,
    }
    assert expected == set(names)
    for name in system_preset_names():
        preset = get_system_preset(name)
        validate(preset)
        assert preset.name == name


@pytest.mark.parametrize(("name", "shape"), MULTI_BITRATE.items())
def test_multiple_bitrate_ladders(name: str, shape: tuple[int, int, int]) -> None:
    files, top, bottom = shape
    preset = get_system_preset(name)
    video = preset.video
    assert isinstance(video, H264Video)
    rates = [layer.bitrate for layer in video.layers]
    assert (len(rates), rates[0], rates[-1]) == (files, top, bottom)
    assert rates == sorted(rates, reverse=True)
    assert video.key_frame_interval == 2.0 and not video.scene_change_detection
    audio = preset.audio
    assert isinstance(audio, AACAudio) and audio.profile == "AACLC"
    assert audio.channels == (6 if "Audio 5.1" in name else 2)
    widths = [layer.width.value for layer in video.layers]
    assert all(w % 2 == 0 for w in widths)
    # one aspect ratio per ladder
    ratios = {round(layer.width.value / layer.height.value, 1) for layer in video.layers}
    assert len(ratios) == 1


def test_documented_720p_reference_ladder() -> None:
    video = get_system_preset("H264 Multiple Bitrate 720p").video
    assert [(int(l_.width.value), int(l_.height.value), l_.bitrate) for l_ in video.layers] == [
        (1280, 720, 3400),
        (960, 540, 2250),
        (960, 540, 1500),
        (640, 360, 1000),
        (640, 360, 650),
        (320, 180, 400),
    ]
    preset = get_system_preset("H264 Multiple Bitrate 720p")
    assert preset.outputs[0].file_name == "{Basename}_{Width}x{Height}_{VideoBitrate}.mp4"


@pytest.mark.parametrize(("name", "kbps"), SINGLE_BITRATE.items())
def test_single_bitrate(name: str, kbps: int) -> None:
    video = get_system_preset(name).video
    assert [layer.bitrate for layer in video.layers] == [kbps]
    assert video.scene_change_detection is True


@pytest.mark.parametrize(("name", "kbps"), [("AAC Audio", 128), ("AAC Good Quality Audio", 192)])
def test_audio_only_presets(name: str, kbps: int) -> None:
    preset = get_system_preset(name)
    assert preset.video is None and not preset.images
    assert isinstance(preset.audio, AACAudio)
    assert (
        preset.audio.profile,
        preset.audio.channels,
        preset.audio.sampling_rate,
        preset.audio.bitrate,
    ) == ("AACLC", 2, 48000, kbps)
    assert preset.outputs[0].file_name == "{Basename}_AAC_{AudioBitrate}.mp4"


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_encoder_names_map_onto_mes_ladders(name: str) -> None:
    assert is_system_preset(name)
    validate(get_system_preset(name))


def test_lookup_is_case_and_space_insensitive() -> None:
    assert get_system_preset("  h264 multiple   BITRATE 720p ").name == "H264 Multiple Bitrate 720p"
    assert get_system_preset("adaptive streaming").name == "Adaptive Streaming"


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(PresetError) as info:
        get_system_preset("H264 Multiple Bitrate 720")
    message = str(info.value)
    assert "unknown preset name 'H264 Multiple Bitrate 720'" in message
    assert "'H264 Multiple Bitrate 720p'" in message
    with pytest.raises(PresetError, match="Adaptive Streaming"):
        get_system_preset("Adaptive Streeming")


def test_adaptive_ladder_1080p2997_matches_documented_example() -> None:
    assert adaptive_ladder(1920, 1080, 30000 / 1001) == [
        (1920, 1080, 6780),
        (1280, 720, 3520),
        (960, 540, 2210),
        (640, 360, 1150),
        (480, 270, 720),
        (320, 180, 380),
    ]


def test_adaptive_ladder_720p23976_matches_documented_example() -> None:
    assert adaptive_ladder(1280, 720, 24000 / 1001) == [
        (1280, 720, 2940),
        (960, 540, 1850),
        (640, 360, 960),
        (480, 270, 600),
        (320, 180, 320),
    ]


def test_adaptive_ladder_360p() -> None:
    ladder = adaptive_ladder(640, 360, 30000 / 1001, source_kbps=780)
    assert [(w, h) for w, h, _ in ladder] == [(640, 360), (480, 270), (320, 180)]
    assert [kbps for *_, kbps in ladder] == [700, 440, 230]  # the documented 360p example


@pytest.mark.parametrize(
    ("size", "fps", "kbps"),
    [
        ((1920, 1080), 30000 / 1001, None),
        ((1280, 720), 24000 / 1001, None),
        ((640, 360), 25, 500),
        ((3840, 2160), 60, None),
        ((1080, 1920), 30, None),
        ((854, 480), 30, None),
        ((1440, 1080), 25, 2000),
        ((200, 112), 15, None),
        ((720, 576), 25, None),
    ],
)
def test_adaptive_ladder_never_upscales(size: tuple[int, int], fps: float, kbps: int | None) -> None:
    width, height = size
    ladder = adaptive_ladder(width, height, fps, kbps)
    assert ladder[0][:2] == (width // 2 * 2, height // 2 * 2)
    for w, h, rate in ladder:
        assert w <= width and h <= height and w % 2 == 0 and h % 2 == 0 and rate > 0
    rates = [rate for *_, rate in ladder]
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == len(rates)
    if kbps:
        assert rates[0] <= 0.9 * kbps + 10
    assert len(ladder) <= 8


def test_adaptive_streaming_for_a_source_keeps_audio_and_video_apart() -> None:
    for (width, height), top in (((1920, 1080), 6780), ((1280, 720), 3520), ((640, 360), 1150)):
        source = fake_info(width, height)
        preset = get_system_preset("Adaptive Streaming", source)
        layers = preset.video.layers
        assert (layers[0].width.value, layers[0].height.value, layers[0].bitrate) == (width, height, top)
        assert [o.streams for o in preset.outputs] == ["video", "audio"]
        plan = build_plan(preset, [source], Path("/tmp/out"))
        assert {o.kind for o in plan.outputs} == {"video", "audio"}
        assert sum(o.kind == "audio" for o in plan.outputs) == 1
        assert all(o.width <= width and o.height <= height for o in plan.outputs)


def test_content_adaptive_mp4_interleaves() -> None:
    source = fake_info(1280, 720, Fraction(24000, 1001))
    preset = get_system_preset("Content Adaptive Multiple Bitrate MP4", source)
    plan = build_plan(preset, [source], Path("/tmp/out"))
    assert [o.kind for o in plan.outputs] == ["av"] * 5
    assert [o.video_bitrate for o in plan.outputs] == [2940, 1850, 960, 600, 320]


def test_adaptive_streaming_name_without_source_is_resolved_by_the_plan() -> None:
    preset = get_system_preset("Adaptive Streaming")
    assert preset.auto_ladder == "separate"
    plan = build_plan(preset, [fake_info(640, 360, Fraction(25), video_kbps=3000)], Path("/tmp/out"))
    assert [(o.width, o.height) for o in plan.outputs if o.kind == "video"] == [
        (640, 360),
        (480, 270),
        (320, 180),
    ]


def test_adaptive_streaming_of_audio_only_source() -> None:
    preset = get_system_preset("Adaptive Streaming", fake_info(0, 0))
    plan = build_plan(preset, [fake_info(0, 0)], Path("/tmp/out"))
    assert [o.kind for o in plan.outputs] == ["audio"]
