"""Media library: probing, Media Encoder Standard presets, FFmpeg command planning and running,
thumbnails and the manifests written next to encoded media.

Pure library: no HTTP, no database, nothing of openams above it. Errors are the classes in
``media.errors``; callers map them onto their own catalogue.
"""

from .encode import EncodeResult, encode, resolve_preset
from .errors import (
    EncodeCanceledError,
    EncodeTimeoutError,
    FFmpegError,
    FFmpegNotFoundError,
    MediaError,
    NotMediaError,
    PresetError,
    UnsafeInputError,
)
from .ffmpeg import FFmpegInfo, ffmpeg_info, find_ffmpeg
from .plan import EncodePlan, PlannedFile, build_plan
from .presets import Preset, load_preset, parse_preset, validate
from .probe import MediaInfo, StreamInfo, probe
from .snapshot import snapshot
from .system_presets import get_system_preset, is_system_preset, system_preset_names

__all__ = [
    "EncodeCanceledError",
    "EncodePlan",
    "EncodeResult",
    "EncodeTimeoutError",
    "FFmpegError",
    "FFmpegInfo",
    "FFmpegNotFoundError",
    "MediaError",
    "MediaInfo",
    "NotMediaError",
    "PlannedFile",
    "Preset",
    "PresetError",
    "StreamInfo",
    "UnsafeInputError",
    "build_plan",
    "encode",
    "ffmpeg_info",
    "find_ffmpeg",
    "get_system_preset",
    "is_system_preset",
    "load_preset",
    "parse_preset",
    "probe",
    "resolve_preset",
    "snapshot",
    "system_preset_names",
    "validate",
]
