"""Media Encoder Standard system presets (the names clients put in ``Task.Configuration``).

The documentation gives, for each system preset, its file count and top/bottom bitrates, and
the full ladder of ``H264 Multiple Bitrate 720p``; the rungs in between are designed here
(16:9 and 4:3 sizes, bitrates spaced roughly evenly in log scale, every file GOP-aligned with 2 s
keyframes). ``Adaptive Streaming`` and ``Content Adaptive Multiple Bitrate MP4`` build their
ladder from the probed source (``adaptive_ladder``), reproducing the documented example ladders
for 1080p29.97 and 720p23.976 sources and never going above the source's size.
Legacy Azure Media Encoder preset names map onto these ladders.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import PresetError
from .presets import (
    BEST,
    AACAudio,
    Dimension,
    H264Layer,
    H264Video,
    ImageCodec,
    ImageLayer,
    Output,
    Preset,
)
from .probe import MediaInfo

MBR_FILE_NAME = "{Basename}_{Width}x{Height}_{VideoBitrate}.mp4"
AUDIO_FILE_NAME = "{Basename}_AAC_{AudioBitrate}.mp4"

Rung = tuple[int, int, int]  # width, height, kbps


# ----------------------------------------------------------------------------------------------
# content-adaptive ladder

REFERENCE_FPS = 30000 / 1001
# Video bitrate (kbps) by picture size at 29.97 fps. The 180p…1080p points are the documented
# example ladder for a 1080p29.97 source; 1440p and 2160p extend the same curve.
_BITRATE_CURVE: tuple[tuple[int, int], ...] = (
    (320 * 180, 380),
    (480 * 270, 720),
    (640 * 360, 1150),
    (960 * 540, 2210),
    (1280 * 720, 3520),
    (1920 * 1080, 6780),
    (2560 * 1440, 10400),
    (3840 * 2160, 17000),
)
# Short-side sizes below the source's own size that the ladder offers.
LADDER_SIZES = (2160, 1440, 1080, 720, 540, 360, 270, 180)
MAX_RUNGS = 8


def reference_bitrate(width: int, height: int, fps: float | None = None) -> float:
    """kbps for a picture size and frame rate, interpolated on the curve in log-log space and
    scaled by (fps / 29.97) ** 0.8 (a 23.976 fps source needs about 84 %)."""
    pixels = max(width * height, 1)
    points = _BITRATE_CURVE
    if pixels <= points[0][0]:
        lo, hi = points[0], points[1]
    elif pixels >= points[-1][0]:
        lo, hi = points[-2], points[-1]
    else:
        lo, hi = next(
            (points[i], points[i + 1]) for i in range(len(points) - 1) if points[i + 1][0] >= pixels
        )
    slope = (math.log(hi[1]) - math.log(lo[1])) / (math.log(hi[0]) - math.log(lo[0]))
    kbps = math.exp(math.log(lo[1]) + slope * (math.log(pixels) - math.log(lo[0])))
    if fps and fps > 0:
        kbps *= min(max((fps / REFERENCE_FPS) ** 0.8, 0.5), 1.6)
    return kbps


def adaptive_ladder(
    width: int, height: int, fps: float | None = None, source_kbps: float | None = None
) -> list[Rung]:
    """Rungs (width, height, kbps) for a source of the given display size.

    The top rung is the source size itself; below it come the standard sizes (2160, 1440, 1080,
    720, 540, 360, 270, 180 on the short side) that are clearly smaller (< 85 %) than the source,
    with the source's aspect ratio. Bitrates follow ``reference_bitrate``; when the source's own
    video bitrate is known and low, the whole ladder is scaled down so the top rung stays at or
    below 90 % of it (never below a quarter of the reference). Sizes are even, never above the
    source, and portrait sources get the same ladder on their short side.
    """
    width, height = _even_floor(width), _even_floor(height)
    if width < 2 or height < 2:
        raise ValueError("source has no usable picture size")
    portrait = height > width
    short, long_ = (width, height) if portrait else (height, width)
    aspect = long_ / short
    shorts = [short] + [s for s in LADDER_SIZES if s < 0.85 * short]
    shorts = shorts[:MAX_RUNGS]
    sizes: list[tuple[int, int]] = []
    for s in shorts:
        if s == short:
            size = (width, height)
        else:
            other = _even_round(s * aspect)
            size = (s, other) if portrait else (other, s)
        if size not in sizes:
            sizes.append(size)
    reference = [reference_bitrate(w, h, fps) for w, h in sizes]
    scale = 1.0
    if source_kbps and source_kbps > 0:
        scale = min(1.0, max(0.25, 0.9 * source_kbps / reference[0]))
    return [(w, h, _round_kbps(kbps * scale)) for (w, h), kbps in zip(sizes, reference, strict=True)]


def _even_floor(value: float) -> int:
    return int(value) // 2 * 2


def _even_round(value: float) -> int:
    return max(2, round(value / 2.0) * 2)


def _round_kbps(kbps: float) -> int:
    return max(10, round(kbps / 10.0) * 10)


def adaptive_preset(
    source: MediaInfo | None = None, *, interleaved: bool = False, name: str | None = None
) -> Preset:
    """The ``Adaptive Streaming`` preset (or, with ``interleaved``, ``Content Adaptive Multiple
    Bitrate MP4``) for a probed source. Without a source the 1080p example ladder stands in; the
    encoder recomputes the ladder from the real input (``Preset.auto_ladder``)."""
    rungs: list[Rung]
    if source is not None and source.video is not None:
        video = source.video
        w, h = video.display_size
        src_kbps = video.bitrate / 1000 if video.bitrate else None
        if src_kbps is None and source.bitrate:
            audio_bps = sum(a.bitrate or 128000 for a in source.audio_streams)
            src_kbps = max(source.bitrate - audio_bps, 0) / 1000 or None
        rungs = adaptive_ladder(w, h, video.fps, src_kbps)
    else:
        rungs = adaptive_ladder(1920, 1080, REFERENCE_FPS)
    codecs: list = []
    if source is None or source.video is not None:
        codecs.append(_video(rungs))
    if source is None or source.audio is not None:
        codecs.append(AACAudio(profile="AACLC", channels=2, sampling_rate=48000, bitrate=128))
    if interleaved:
        outputs = [Output(MBR_FILE_NAME, "MP4Format")]
        if not any(isinstance(c, H264Video) for c in codecs):
            outputs = [Output(AUDIO_FILE_NAME, "MP4Format")]
    else:
        outputs = []
        if any(isinstance(c, H264Video) for c in codecs):
            outputs.append(Output(MBR_FILE_NAME, "MP4Format", streams="video"))
        if any(isinstance(c, AACAudio) for c in codecs):
            outputs.append(Output(AUDIO_FILE_NAME, "MP4Format", streams="audio"))
    default_name = "Content Adaptive Multiple Bitrate MP4" if interleaved else "Adaptive Streaming"
    return Preset(
        version="1.0",
        codecs=codecs,
        outputs=outputs,
        name=name or default_name,
        auto_ladder="interleaved" if interleaved else "separate",
    )


# ----------------------------------------------------------------------------------------------
# fixed ladders

_LADDERS: dict[str, list[Rung]] = {
    "1080p": [
        (1920, 1080, 6000),
        (1920, 1080, 4700),
        (1280, 720, 3400),
        (960, 540, 2250),
        (960, 540, 1500),
        (640, 360, 1000),
        (640, 360, 650),
        (320, 180, 400),
    ],
    "720p": [
        (1280, 720, 3400),
        (960, 540, 2250),
        (960, 540, 1500),
        (640, 360, 1000),
        (640, 360, 650),
        (320, 180, 400),
    ],
    "16x9 SD": [(848, 480, 1900), (848, 480, 1400), (640, 360, 1000), (640, 360, 650), (320, 180, 400)],
    "4x3 SD": [(640, 480, 1600), (640, 480, 1200), (480, 360, 900), (480, 360, 650), (320, 240, 400)],
    "4K": [
        (3840, 2160, 20000),
        (3840, 2160, 18000),
        (3840, 2160, 16000),
        (3840, 2160, 14000),
        (3072, 1728, 12000),
        (2560, 1440, 10000),
        (2560, 1440, 8000),
        (1920, 1080, 6000),
        (1920, 1080, 4700),
        (1280, 720, 3400),
        (960, 540, 2250),
        (640, 360, 1000),
    ],
    "16x9 for iOS": [
        (1920, 1080, 8500),
        (1280, 720, 6500),
        (960, 540, 5000),
        (960, 540, 3500),
        (640, 360, 1200),
        (640, 360, 600),
        (480, 270, 400),
        (416, 234, 200),
    ],
    "4x3 for iOS": [
        (1440, 1080, 8500),
        (960, 720, 6500),
        (720, 540, 5000),
        (720, 540, 3500),
        (640, 480, 1200),
        (480, 360, 600),
        (480, 360, 400),
        (400, 300, 200),
    ],
    "16x9 cellular": [(640, 360, 1200), (640, 360, 600), (480, 270, 400), (416, 234, 200)],
    "4x3 cellular": [(640, 480, 1200), (480, 360, 600), (480, 360, 400), (400, 300, 200)],
}

_SINGLE: dict[str, Rung] = {
    "1080p": (1920, 1080, 6750),
    "4K": (3840, 2160, 18000),
    "4x3 SD": (640, 480, 1800),
    "16x9 SD": (848, 480, 2200),
    "720p": (1280, 720, 4500),
}

_STEREO = {"channels": 2, "bitrate": 128}
_SURROUND = {"channels": 6, "bitrate": 384}


def _video(
    rungs: list[Rung],
    *,
    scene_change: bool = False,
    profile: str = "Auto",
    b_frames: int = 3,
    entropy: str = "Cabac",
) -> H264Video:
    layers = [
        H264Layer(
            width=Dimension(w),
            height=Dimension(h),
            bitrate=kbps,
            max_bitrate=kbps,
            buffer_window=5.0,
            profile=profile,
            level="Auto",
            b_frames=b_frames,
            reference_frames=3,
            frame_rate=None,
            entropy_mode=entropy,
            adaptive_b_frame=b_frames > 0,
            slices=0,
        )
        for w, h, kbps in rungs
    ]
    return H264Video(
        layers=layers, key_frame_interval=2.0, scene_change_detection=scene_change, stretch_mode="AutoSize"
    )


def _av(
    name: str,
    rungs: list[Rung],
    audio: dict[str, int],
    *,
    scene_change: bool = False,
    profile: str = "Auto",
    b_frames: int = 3,
    entropy: str = "Cabac",
    sampling_rate: int = 48000,
) -> Preset:
    return Preset(
        version="1.0",
        codecs=[
            _video(rungs, scene_change=scene_change, profile=profile, b_frames=b_frames, entropy=entropy),
            AACAudio(profile="AACLC", sampling_rate=sampling_rate, **audio),
        ],
        outputs=[Output(MBR_FILE_NAME, "MP4Format")],
        name=name,
    )


def _audio_only(name: str, kbps: int) -> Preset:
    return Preset(
        version="1.0",
        codecs=[AACAudio(profile="AACLC", channels=2, sampling_rate=48000, bitrate=kbps)],
        outputs=[Output(AUDIO_FILE_NAME, "MP4Format")],
        name=name,
    )


def _thumbnails(name: str) -> Preset:
    image = ImageCodec(
        kind="Jpg",
        start=BEST,
        layers=[ImageLayer(width=Dimension(100, True), height=Dimension(100, True), quality=90)],
    )
    return Preset(
        version="1.0",
        codecs=[image],
        outputs=[Output("{Basename}_{Index}{Extension}", "JpgFormat")],
        name=name,
    )


@dataclass(frozen=True)
class _Entry:
    build: Callable[[str], Preset]
    legacy: bool = False


def _mbr(key: str, audio: dict[str, int] = _STEREO) -> Callable[[str], Preset]:
    return lambda name: _av(name, _LADDERS[key], audio)


def _sbr(key: str, audio: dict[str, int] = _STEREO) -> Callable[[str], Preset]:
    return lambda name: _av(name, [_SINGLE[key]], audio, scene_change=True)


def _android(rung: Rung, audio: dict[str, int], sampling_rate: int = 48000) -> Callable[[str], Preset]:
    return lambda name: _av(
        name,
        [rung],
        audio,
        scene_change=True,
        profile="Baseline",
        b_frames=0,
        entropy="Cavlc",
        sampling_rate=sampling_rate,
    )


def _cellular(key: str) -> Callable[[str], Preset]:
    return lambda name: _av(name, _LADDERS[key], {"channels": 2, "bitrate": 64})


_PRESETS: dict[str, _Entry] = {
    "Adaptive Streaming": _Entry(lambda name: adaptive_preset(name=name)),
    "Content Adaptive Multiple Bitrate MP4": _Entry(
        lambda name: adaptive_preset(interleaved=True, name=name)
    ),
    "H264 Multiple Bitrate 1080p Audio 5.1": _Entry(_mbr("1080p", _SURROUND)),
    "H264 Multiple Bitrate 1080p": _Entry(_mbr("1080p")),
    "H264 Multiple Bitrate 16x9 for iOS": _Entry(_mbr("16x9 for iOS")),
    "H264 Multiple Bitrate 16x9 SD Audio 5.1": _Entry(_mbr("16x9 SD", _SURROUND)),
    "H264 Multiple Bitrate 16x9 SD": _Entry(_mbr("16x9 SD")),
    "H264 Multiple Bitrate 4K Audio 5.1": _Entry(_mbr("4K", _SURROUND)),
    "H264 Multiple Bitrate 4K": _Entry(_mbr("4K")),
    "H264 Multiple Bitrate 4x3 for iOS": _Entry(_mbr("4x3 for iOS")),
    "H264 Multiple Bitrate 4x3 SD Audio 5.1": _Entry(_mbr("4x3 SD", _SURROUND)),
    "H264 Multiple Bitrate 4x3 SD": _Entry(_mbr("4x3 SD")),
    "H264 Multiple Bitrate 720p Audio 5.1": _Entry(_mbr("720p", _SURROUND)),
    "H264 Multiple Bitrate 720p": _Entry(_mbr("720p")),
    "H264 Single Bitrate 1080p Audio 5.1": _Entry(_sbr("1080p", _SURROUND)),
    "H264 Single Bitrate 1080p": _Entry(_sbr("1080p")),
    "H264 Single Bitrate 4K Audio 5.1": _Entry(_sbr("4K", _SURROUND)),
    "H264 Single Bitrate 4K": _Entry(_sbr("4K")),
    "H264 Single Bitrate 4x3 SD Audio 5.1": _Entry(_sbr("4x3 SD", _SURROUND)),
    "H264 Single Bitrate 4x3 SD": _Entry(_sbr("4x3 SD")),
    "H264 Single Bitrate 16x9 SD Audio 5.1": _Entry(_sbr("16x9 SD", _SURROUND)),
    "H264 Single Bitrate 16x9 SD": _Entry(_sbr("16x9 SD")),
    "H264 Single Bitrate 720p Audio 5.1": _Entry(_sbr("720p", _SURROUND)),
    "H264 Single Bitrate 720p": _Entry(_sbr("720p")),
    "H264 Single Bitrate 720p for Android": _Entry(
        _android((1280, 720, 2000), {"channels": 2, "bitrate": 192})
    ),
    "H264 Single Bitrate High Quality SD for Android": _Entry(
        _android((480, 360, 500), {"channels": 2, "bitrate": 128})
    ),
    "H264 Single Bitrate Low Quality SD for Android": _Entry(
        _android((176, 144, 56), {"channels": 1, "bitrate": 24}, sampling_rate=22050)
    ),
    "AAC Audio": _Entry(lambda name: _audio_only(name, 128)),
    "AAC Good Quality Audio": _Entry(lambda name: _audio_only(name, 192)),
}

# Legacy Azure Media Encoder (and older) names → the MES ladder that plays the same role.
_LEGACY: dict[str, str | Callable[[str], Preset]] = {
    "H264 Adaptive Bitrate MP4 Set 1080p": "H264 Multiple Bitrate 1080p",
    "H264 Adaptive Bitrate MP4 Set 720p": "H264 Multiple Bitrate 720p",
    "H264 Adaptive Bitrate MP4 Set SD 16x9": "H264 Multiple Bitrate 16x9 SD",
    "H264 Adaptive Bitrate MP4 Set SD 4x3": "H264 Multiple Bitrate 4x3 SD",
    "H264 Adaptive Bitrate MP4 Set 1080p for iOS Cellular Only": _cellular("16x9 cellular"),
    "H264 Adaptive Bitrate MP4 Set 720p for iOS Cellular Only": _cellular("16x9 cellular"),
    "H264 Adaptive Bitrate MP4 Set SD 16x9 for iOS Cellular Only": _cellular("16x9 cellular"),
    "H264 Adaptive Bitrate MP4 Set SD 4x3 for iOS Cellular Only": _cellular("4x3 cellular"),
    "H264 Broadband 1080p": "H264 Single Bitrate 1080p",
    "H264 Broadband 720p": "H264 Single Bitrate 720p",
    "H264 Broadband SD 16x9": "H264 Single Bitrate 16x9 SD",
    "H264 Broadband SD 4x3": "H264 Single Bitrate 4x3 SD",
    "H264 Smooth Streaming 1080p": "H264 Multiple Bitrate 1080p",
    "H264 Smooth Streaming 720p": "H264 Multiple Bitrate 720p",
    "H264 Smooth Streaming 720p for 3G or 4G": _cellular("16x9 cellular"),
    "H264 Smooth Streaming 720p Xbox Live ADK": "H264 Multiple Bitrate 720p",
    "H264 Smooth Streaming SD 16x9": "H264 Multiple Bitrate 16x9 SD",
    "H264 Smooth Streaming SD 4x3": "H264 Multiple Bitrate 4x3 SD",
    "H264 Smooth Streaming Windows Phone 7 Series": _cellular("16x9 cellular"),
    "Thumbnails": _thumbnails,
    "VC1 Broadband 1080p": "H264 Single Bitrate 1080p",
    "VC1 Broadband 720p": "H264 Single Bitrate 720p",
    "VC1 Broadband SD 16x9": "H264 Single Bitrate 16x9 SD",
    "VC1 Broadband SD 4x3": "H264 Single Bitrate 4x3 SD",
    "VC1 Smooth Streaming 1080p": "H264 Multiple Bitrate 1080p",
    "VC1 Smooth Streaming 720p": "H264 Multiple Bitrate 720p",
    "VC1 Smooth Streaming 720p Xbox Live ADK": "H264 Multiple Bitrate 720p",
    "VC1 Smooth Streaming SD 16x9": "H264 Multiple Bitrate 16x9 SD",
    "VC1 Smooth Streaming SD 4x3": "H264 Multiple Bitrate 4x3 SD",
    "WMA High Quality Audio": "AAC Good Quality Audio",
    "H.264 HD 720p VBR": "H264 Single Bitrate 720p",
    "H.264 iPad": "H264 Single Bitrate 720p",
}


def _key(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip()).lower()


_INDEX: dict[str, tuple[str, _Entry]] = {_key(n): (n, e) for n, e in _PRESETS.items()}
for _legacy_name, _target in _LEGACY.items():
    if isinstance(_target, str):
        _INDEX[_key(_legacy_name)] = (_legacy_name, _Entry(_PRESETS[_target].build, legacy=True))
    else:
        _INDEX[_key(_legacy_name)] = (_legacy_name, _Entry(_target, legacy=True))


def system_preset_names(*, legacy: bool = True) -> list[str]:
    """Every accepted preset name: MES system presets, then (optionally) legacy encoder names."""
    names = list(_PRESETS)
    if legacy:
        names += [n for n in _LEGACY if _key(n) not in {_key(p) for p in _PRESETS}]
    return names


def is_system_preset(name: str) -> bool:
    return _key(name) in _INDEX


def get_system_preset(name: str, source: MediaInfo | None = None) -> Preset:
    """The preset for a system (or legacy) preset name, case-insensitively. Adaptive presets use
    ``source`` to pick their ladder. Unknown names raise PresetError listing close matches."""
    found = _INDEX.get(_key(name))
    if found is None:
        raise PresetError(_unknown_message(name))
    canonical, entry = found
    if source is not None and _key(canonical) in (
        _key("Adaptive Streaming"),
        _key("Content Adaptive Multiple Bitrate MP4"),
    ):
        return adaptive_preset(
            source, interleaved=_key(canonical) != _key("Adaptive Streaming"), name=canonical
        )
    preset = entry.build(canonical)
    preset.name = canonical
    return preset


def _unknown_message(name: str) -> str:
    keys = list(_INDEX)
    close = difflib.get_close_matches(_key(name), keys, n=5, cutoff=0.6)
    if not close:  # fall back to word overlap, e.g. "Multiple Bitrate 720"
        words = set(_key(name).split())
        scored = sorted(keys, key=lambda k: -len(words & set(k.split())))
        close = [k for k in scored[:3] if words & set(k.split())]
    text = f"unknown preset name {name.strip()!r}"
    if close:
        text += "; did you mean " + ", ".join(repr(_INDEX[k][0]) for k in close) + "?"
    return text + " (a preset can also be given as MES JSON or XML)"
