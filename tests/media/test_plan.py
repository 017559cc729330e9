"""The FFmpeg command built for a preset: structure, safety, geometry, trimming, conditions, names."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from openams.media.errors import MediaError, PresetError
from openams.media.plan import build_plan, fit_size, safe_basename
from openams.media.presets import load_preset
from openams.media.system_presets import get_system_preset
from tests.media.test_system_presets import fake_info

OUT = Path("/tmp/openams-plan-out")


def preset(codecs: list[dict], outputs: list[dict] | None = None, sources: list[dict] | None = None):
    data: dict = {
        "Version": 1.0,
        "Codecs": codecs,
        "Outputs": outputs
        or [{"FileName": "{Basename}_{Width}x{Height}_{VideoBitrate}.mp4", "Format": {"Type": "MP4Format"}}],
    }
    if sources is not None:
        data["Sources"] = sources
    return load_preset(json.dumps(data))


def layers(*sizes: tuple[int, int, int]) -> list[dict]:
    return [{"Type": "H264Layer", "Width": w, "Height": h, "Bitrate": b} for w, h, b in sizes]


def video(*sizes: tuple[int, int, int], **extra: object) -> dict:
    return {"Type": "H264Video", "H264Layers": layers(*sizes), **extra}


AAC = {"Type": "AACAudio", "Channels": 2, "SamplingRate": 48000, "Bitrate": 128}


def value_after(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_one_process_with_aligned_closed_gops() -> None:
    plan = build_plan(get_system_preset("H264 Multiple Bitrate 720p"), [fake_info(1280, 720)], OUT)
    assert len(plan.commands) == 1
    args = plan.args
    graph = value_after(args, "-filter_complex")[0]
    assert "split=6" in graph and "asplit=6" in graph and "fps=30000/1001" in graph
    assert value_after(args, "-c:v") == ["libx264"] * 6
    assert value_after(args, "-g") == ["60"] * 6 and value_after(args, "-keyint_min") == ["60"] * 6
    assert value_after(args, "-sc_threshold") == ["0"] * 6
    assert value_after(args, "-force_key_frames") == ["expr:gte(t,n_forced*2)"] * 6
    assert all("open-gop=0" in p for p in value_after(args, "-x264-params"))
    assert value_after(args, "-movflags") == ["+faststart"] * 6
    assert value_after(args, "-b:v") == ["3400k", "2250k", "1500k", "1000k", "650k", "400k"]
    assert [(o.width, o.height) for o in plan.outputs] == [
        (1280, 720),
        (960, 540),
        (960, 540),
        (640, 360),
        (640, 360),
        (320, 180),
    ]
    assert [o.path.name for o in plan.outputs][:2] == ["movie_1280x720_3400.mp4", "movie_960x540_2250.mp4"]


def test_inputs_are_local_files_with_forced_demuxer() -> None:
    plan = build_plan(get_system_preset("AAC Audio"), [fake_info(640, 360)], OUT)
    args = plan.args
    i = args.index("-i")
    assert args[i + 1] == "file:/media/movie.mp4"
    assert args[:i] == ["-y", "-protocol_whitelist", "file", "-f", "mov"]
    assert "concat:" not in " ".join(args) and "-safe" not in args


def test_layers_above_the_source_are_dropped_never_upscaled() -> None:
    plan = build_plan(get_system_preset("H264 Multiple Bitrate 1080p"), [fake_info(960, 540)], OUT)
    sizes = [(o.width, o.height, o.video_bitrate) for o in plan.outputs]
    assert sizes == [(960, 540, 2250), (960, 540, 1500), (640, 360, 1000), (640, 360, 650), (320, 180, 400)]
    assert any("dropped" in note for note in plan.notes)


def test_single_layer_is_clamped_to_a_small_source() -> None:
    plan = build_plan(get_system_preset("H264 Single Bitrate 1080p"), [fake_info(320, 180)], OUT)
    (out,) = plan.outputs
    assert (out.width, out.height) == (320, 180)
    assert out.video_bitrate < 6750
    assert any("clamped" in note for note in plan.notes)


def test_4x3_source_in_a_16x9_ladder_keeps_its_aspect() -> None:
    plan = build_plan(get_system_preset("H264 Multiple Bitrate 720p"), [fake_info(640, 480)], OUT)
    assert [(o.width, o.height) for o in plan.outputs] == [(480, 360), (480, 360), (240, 180)]


@pytest.mark.parametrize(
    ("mode", "source", "box", "expected"),
    [
        ("AutoSize", (1920, 1080), (1280, 1280), (1280, 720, 1280, 720)),
        ("AutoFit", (1440, 1080), (1280, 720), (960, 720, 1280, 720)),
        ("None", (1920, 1080), (640, 640), (640, 640, 640, 640)),
    ],
)
def test_stretch_modes(
    mode: str, source: tuple[int, int], box: tuple[int, int], expected: tuple[int, int, int, int]
) -> None:
    assert fit_size(source, box, mode)[:4] == expected


def test_autofit_pads_and_none_stretches() -> None:
    fit = build_plan(preset([video((640, 360, 500), StretchMode="AutoFit")]), [fake_info(480, 360)], OUT)
    graph = value_after(fit.args, "-filter_complex")[0]
    assert "scale=480:360" in graph and "pad=640:360:(640-iw)/2:(360-ih)/2" in graph
    assert (fit.outputs[0].width, fit.outputs[0].height) == (640, 360)
    stretched = build_plan(preset([video((640, 640, 500), StretchMode="None")]), [fake_info(1280, 720)], OUT)
    assert (stretched.outputs[0].width, stretched.outputs[0].height) == (640, 640)


def test_percent_sizes_follow_the_source() -> None:
    plan = build_plan(
        preset([{"Type": "H264Video", "H264Layers": [{"Width": "50%", "Height": "50%", "Bitrate": 500}]}]),
        [fake_info(1280, 720)],
        OUT,
    )
    assert (plan.outputs[0].width, plan.outputs[0].height) == (640, 360)


def test_trimming_seeks_the_input() -> None:
    plan = build_plan(
        preset([video((640, 360, 500)), AAC], sources=[{"StartTime": "00:00:02", "Duration": "00:00:03"}]),
        [fake_info(640, 360)],
        OUT,
    )
    args = plan.args
    i = args.index("-i")
    assert value_after(args[:i], "-ss") == ["2"] and value_after(args[:i], "-t") == ["3"]
    assert plan.duration == 3.0
    with pytest.raises(
        PresetError, match=r"Sources\[0\]\.StartTime: 12 s is at or after the end of movie\.mp4"
    ):
        build_plan(preset([AAC], sources=[{"StartTime": "00:00:12"}]), [fake_info(640, 360)], OUT)
    with pytest.raises(PresetError, match="Sources lists 2 entries but the task has 1 input"):
        build_plan(preset([AAC], sources=[{}, {}]), [fake_info(640, 360)], OUT)


def test_several_inputs_use_the_concat_filter() -> None:
    plan = build_plan(
        preset([video((640, 360, 500)), AAC], sources=[{"Duration": "00:00:04"}, {}]),
        [fake_info(640, 360, name="a.mp4"), fake_info(1280, 720, name="b.mp4", audio=False)],
        OUT,
    )
    args = plan.args
    assert args.count("-i") == 2 and "-safe" not in args
    graph = value_after(args, "-filter_complex")[0]
    assert "concat=n=2:v=1:a=1[cv][ca]" in graph
    assert "anullsrc" in graph  # b.mp4 has no audio: its part is silent
    assert plan.duration == 14.0 and plan.basename == "a"


def test_audio_only_input_with_a_video_preset_follows_the_condition() -> None:
    source = fake_info(0, 0, name="song.m4a")
    with pytest.raises(MediaError, match=r"song\.m4a has no video stream .* InsertBlackIfNoVideo"):
        build_plan(get_system_preset("H264 Multiple Bitrate 720p"), [source], OUT)
    plan = build_plan(
        preset([video((640, 360, 500), (320, 180, 200), Condition="InsertBlackIfNoVideo"), AAC]),
        [source],
        OUT,
    )
    assert "color=c=black:s=640x360" in value_after(plan.args, "-filter_complex")[0]
    assert [o.kind for o in plan.outputs] == ["av", "av"]
    bottom = build_plan(
        preset(
            [video((640, 360, 500), (320, 180, 200), Condition="InsertBlackIfNoVideoBottomLayerOnly"), AAC]
        ),
        [source],
        OUT,
    )
    assert [(o.width, o.video_bitrate) for o in bottom.outputs] == [(320, 200)]


def test_video_only_input_and_audio() -> None:
    source = fake_info(640, 360, audio=False)
    with pytest.raises(MediaError, match=r"has no audio stream .* InsertSilenceIfNoAudio"):
        build_plan(get_system_preset("AAC Audio"), [source], OUT)
    plain = build_plan(get_system_preset("H264 Single Bitrate 720p"), [source], OUT)
    assert [o.kind for o in plain.outputs] == ["video"]
    silent = build_plan(
        preset([video((640, 360, 500)), {**AAC, "Condition": "InsertSilenceIfNoAudio"}]), [source], OUT
    )
    assert "anullsrc=r=48000:cl=stereo" in value_after(silent.args, "-filter_complex")[0]
    assert [o.kind for o in silent.outputs] == ["av"]


def test_output_names_use_the_macros_and_stay_unique() -> None:
    plan = build_plan(
        preset(
            [video((640, 360, 500), (640, 360, 500)), AAC],
            outputs=[
                {
                    "FileName": "{Basename}-{Resolution}-{Bitrate}-{AudioBitrate}-{Channels}-{Codec}"
                    "{Extension}",
                    "Format": {"Type": "MP4Format"},
                }
            ],
        ),
        [fake_info(640, 360, name="My Movie (final).mov")],
        OUT,
    )
    assert [o.path.name for o in plan.outputs] == [
        "My_Movie_final-640x360-500-128-2-H264.mp4",
        "My_Movie_final-640x360-500-128-2-H264_2.mp4",
    ]
    assert safe_basename("a" * 40 + ".mp4") == "a" * 32
    assert safe_basename("we#ird?name.v2.mp4") == "we_ird_name_v2"


def test_thumbnail_selection() -> None:
    plan = build_plan(
        preset(
            [
                {
                    "Type": "PngImage",
                    "Start": "00:00:01",
                    "Step": "00:00:02",
                    "Range": "00:00:05",
                    "PngLayers": [{"Width": 160, "Height": 90}],
                },
                {
                    "Type": "JpgImage",
                    "Start": "10%",
                    "Step": "10%",
                    "Range": "90%",
                    "JpgLayers": [{"Width": "100%", "Height": "100%", "Quality": 90}],
                },
                {"Type": "BmpImage", "Start": "{Best}", "BmpLayers": [{"Width": 320, "Height": 180}]},
            ],
            outputs=[
                {"FileName": "{Basename}_{Index}{Extension}", "Format": {"Type": "PngFormat"}},
                {"FileName": "{Basename}_pct_{Index}{Extension}", "Format": {"Type": "JpgFormat"}},
                {"FileName": "{Basename}_best_{Index}{Extension}", "Format": {"Type": "BmpFormat"}},
            ],
        ),
        [fake_info(640, 360, fps=Fraction(25))],
        OUT,
    )
    png, jpg, bmp = plan.outputs
    assert (png.expected_count, png.width, png.height, png.path.name) == (3, 160, 90, "movie_%06d.png")
    assert (jpg.expected_count, jpg.width, jpg.height) == (9, 640, 360)
    assert (bmp.expected_count, bmp.path.name) == (1, "movie_best_%06d.bmp")
    graph = value_after(plan.args, "-filter_complex")[0]
    assert "select='gte(n\\,25)*lte(n\\,150)*not(mod(n-25\\,50))'" in graph
    assert "select='gte(n\\,25)*lte(n\\,249)*not(mod(n-25\\,25))'" in graph
    assert "thumbnail=n=" in graph
    assert value_after(plan.args, "-frames:v") == ["3", "9", "1"]
    assert not any(o.kind in ("av", "video", "audio") for o in plan.outputs)


def test_thumbnails_need_video() -> None:
    with pytest.raises(MediaError, match="no video stream to take thumbnails from"):
        build_plan(get_system_preset("Thumbnails"), [fake_info(0, 0)], OUT)


def test_copy_audio() -> None:
    plan = build_plan(preset([video((640, 360, 500)), {"Type": "CopyAudio"}]), [fake_info(640, 360)], OUT)
    args = plan.args
    assert value_after(args, "-c:a") == ["copy"] and "0:1" in value_after(args, "-map")
    with pytest.raises(MediaError, match="CopyAudio cannot be used when several inputs"):
        build_plan(
            preset([video((640, 360, 500)), {"Type": "CopyAudio"}]),
            [fake_info(640, 360), fake_info(640, 360, name="b.mp4")],
            OUT,
        )


def test_scene_change_detection_single_layer_drops_forced_keyframes() -> None:
    plan = build_plan(get_system_preset("H264 Single Bitrate 720p"), [fake_info(1280, 720)], OUT)
    args = plan.args
    assert "-force_key_frames" not in args and "-sc_threshold" not in args
    assert value_after(args, "-g") == ["60"]


def test_outputs_never_overwrite_an_input_in_the_output_folder() -> None:
    source = fake_info(640, 360, name="movie_AAC_128.mp4")
    plan = build_plan(get_system_preset("AAC Audio"), [source], Path("/media"))
    assert plan.outputs[0].path.name == "movie_AAC_128_AAC_128.mp4"
    source = fake_info(640, 360, name="x.mp4")
    plan = build_plan(
        preset([AAC], outputs=[{"FileName": "x.mp4", "Format": {"Type": "MP4Format"}}]),
        [source],
        Path("/media"),
    )
    assert plan.outputs[0].path == Path("/media/x_2.mp4")
