"""Hand-built presentations for the manifest-writer and filter tests.

A 10.03 s presentation: four H.264 video rungs (1080p/720p/540p/360p, 25 fps, timescale 12800,
2 s GOPs → segments of 2, 2, 2, 2, 2.03 s) and two AAC-LC stereo tracks at 48 kHz (English
128 kb/s, Spanish 96 kb/s) cut, as the timeline module does, at the first 1024-sample AAC frame
starting at or after each video boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from openams.packaging.model import SegmentRef, TrackInfo, TrackView

VIDEO_TS = 12_800
FRAME = 512  # 25 fps at 12800
AUDIO_TS = 48_000
AAC_FRAME = 1024

SPS = bytes.fromhex("6764001facd9405005bb011000000300100000030320f1831960")
PPS = bytes.fromhex("68ebecb22c")
AVCC = bytes([1, 0x64, 0x00, 0x1F, 0xFF, 0xE1]) + len(SPS).to_bytes(2, "big") + SPS + b"\x01" + \
    len(PPS).to_bytes(2, "big") + PPS
ASC_LC = bytes.fromhex("1190")  # AAC-LC, 48 kHz, 2 channels

VIDEO_END = 128_384  # 10.03 s at 12800
VIDEO_BOUNDARIES = [0, 25_600, 51_200, 76_800, 102_400]
AUDIO_FRAMES = 470  # 481280 samples = 10.0267 s

RUNGS = [  # (height, width, bitrate, peak, codec)
    (1080, 1920, 6_000_000, 7_200_000, "avc1.640028"),
    (720, 1280, 3_500_000, 4_200_000, "avc1.64001f"),
    (540, 960, 2_200_000, 2_640_000, "avc1.64001f"),
    (360, 640, 1_000_000, 1_200_000, "avc1.64001e"),
]


def segments_from_starts(starts: Sequence[int], end: int, unit: int) -> tuple[SegmentRef, ...]:
    """Segments from ascending start times, `unit` ticks per sample."""
    out = []
    first = 0
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else end
        count = max(1, (stop - start) // unit)
        out.append(SegmentRef(start=start, duration=stop - start, first_sample=first, sample_count=count))
        first += count
    return tuple(out)


def video_track(track_id: int, height: int, width: int, bitrate: int, peak: int, codec: str) -> TrackView:
    info = TrackInfo(
        track_id=track_id, kind="video", timescale=VIDEO_TS, fourcc="avc1", codec=codec, duration=VIDEO_END,
        bitrate=bitrate, max_bitrate=peak, language="und", name="video", width=width, height=height,
        codec_private=AVCC, source=f"video_{height}.mp4",
    )
    return TrackView(info, segments_from_starts(VIDEO_BOUNDARIES, VIDEO_END, FRAME))


def audio_boundaries() -> list[int]:
    """First AAC frame start at or after each video boundary, in 48 kHz ticks."""
    out = []
    for b in VIDEO_BOUNDARIES:
        t = b * AUDIO_TS  # exact numerator over VIDEO_TS
        frame = -(-t // (VIDEO_TS * AAC_FRAME))
        out.append(frame * AAC_FRAME)
    return out


AUDIO_END = AUDIO_FRAMES * AAC_FRAME


def audio_track(track_id: int, name: str, language: str, bitrate: int, codec: str = "mp4a.40.2") -> TrackView:
    info = TrackInfo(
        track_id=track_id, kind="audio", timescale=AUDIO_TS, fourcc="mp4a", codec=codec, duration=AUDIO_END,
        bitrate=bitrate, max_bitrate=bitrate + 1000, language=language, name=name, sample_rate=48_000, channels=2,
        codec_private=ASC_LC, source=f"{name}.mp4",
    )
    return TrackView(info, segments_from_starts(audio_boundaries(), AUDIO_END, AAC_FRAME))


def presentation() -> list[TrackView]:
    """Video rungs (in a deliberately unsorted order) then English and Spanish audio."""
    videos = [video_track(i + 1, *RUNGS[i]) for i in (2, 0, 3, 1)]
    return [
        *videos,
        audio_track(10, "audio_eng", "eng", 128_000),
        audio_track(11, "audio_spa", "spa", 96_000),
    ]


def long_track(seconds: int = 300, *, kind: str = "video") -> TrackView:
    """A long single-rung track with 2 s segments, for window tests (filters need ≥ 120 s)."""
    starts = list(range(0, seconds * 1000, 2000))
    info = TrackInfo(track_id=99, kind=kind, timescale=1000, fourcc="avc1", codec="avc1.64001f",  # type: ignore[arg-type]
                     duration=seconds * 1000, bitrate=1_000_000, name=kind, width=640, height=360)
    return TrackView(info, segments_from_starts(starts, seconds * 1000, 40))


def with_info(view: TrackView, **changes: object) -> TrackView:
    return TrackView(replace(view.info, **changes), view.segments)  # type: ignore[arg-type]


def video_of(tracks: Sequence[TrackView]) -> list[TrackView]:
    return [t for t in tracks if t.info.kind == "video"]


def audio_of(tracks: Sequence[TrackView]) -> list[TrackView]:
    return [t for t in tracks if t.info.kind == "audio"]


def hls_attributes(line: str) -> dict[str, str]:
    """The attribute list of an HLS tag line (`#TAG:A=1,B="x,y"`), quotes removed."""
    _, _, rest = line.partition(":")
    out: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.index("=", i)
        key = rest[i:eq]
        j = eq + 1
        if rest[j] == '"':
            end = rest.index('"', j + 1)
            out[key] = rest[j + 1 : end]
            i = end + 2
        else:
            end = rest.find(",", j)
            end = len(rest) if end < 0 else end
            out[key] = rest[j:end]
            i = end + 1
    return out


def hls_entries(text: str, tag: str) -> list[tuple[dict[str, str], str | None]]:
    """Every `tag` line with its attributes and, for URI-line tags, the URI on the next line."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith(tag + ":"):
            uri = lines[i + 1] if tag in ("#EXT-X-STREAM-INF",) else None
            out.append((hls_attributes(line), uri))
    return out


def hls_segments(text: str) -> list[tuple[float, str, str | None]]:
    """(EXTINF seconds, URI, byte range or None) of a media playlist, checking the line structure."""
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("#EXTINF:"):
            seconds = float(lines[i][len("#EXTINF:"):].split(",")[0])
            i += 1
            byterange = None
            if lines[i].startswith("#EXT-X-BYTERANGE:"):
                byterange = lines[i].split(":", 1)[1]
                i += 1
            assert not lines[i].startswith("#"), f"no URI after EXTINF at line {i}"
            out.append((seconds, lines[i], byterange))
        i += 1
    return out
