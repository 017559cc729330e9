"""Probe local media files in-process with PyAV.

Uploaded files are untrusted. Before any demuxer sees a file we sniff its first bytes and refuse
playlists, concat scripts and manifests (an HLS playlist named ``movie.mp4`` would otherwise make
FFmpeg open whatever it lists, ``/etc/passwd`` included) and plain text. PyAV then opens the file
with ``protocol_whitelist=file`` and a whitelist of container demuxers, so nothing that can
reference other files or URLs is ever selected; the encoder later forces the same demuxer
(``-f <format>``) on the FFmpeg command line.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from .errors import MediaError, NotMediaError, UnsafeInputError

# Demuxers accepted for uploaded media: self-contained containers and elementary streams. Not
# here on purpose: hls, dash, concat, image2 (file patterns), tty/text formats, sdp/rtp, data
# URIs, subtitle-only formats and anything network-backed.
SAFE_DEMUXERS: tuple[str, ...] = (
    "mov",
    "matroska",
    "avi",
    "mpegts",
    "mpeg",
    "mpegvideo",
    "flv",
    "asf",
    "wav",
    "w64",
    "mp3",
    "aac",
    "ogg",
    "mxf",
    "h264",
    "hevc",
    "m4v",
    "flac",
    "aiff",
    "ac3",
    "eac3",
    "dts",
    "truehd",
    "caf",
    "amr",
    "ivf",
    "dv",
    "gif",
    "wv",
    "ape",
    "obu",
)

_SNIFF_BYTES = 4096

_PLAYLIST_MARKERS: tuple[tuple[str, str], ...] = (
    ("#extm3u", "an HLS/M3U playlist"),
    ("#ext-x-", "an HLS playlist"),
    ("#extinf", "an M3U playlist"),
    ("ffconcat", "an FFmpeg concat script"),
    ("[playlist]", "a PLS playlist"),
    ("<mpd", "a DASH manifest"),
    ("<smil", "a SMIL playlist"),
    ("<asx", "an ASX playlist"),
    ("<?xml", "an XML document (playlist or manifest)"),
)


@dataclass(frozen=True)
class StreamInfo:
    index: int
    kind: str
    """``video``, ``audio``, ``subtitle``, ``data`` or ``attachment``."""
    codec: str
    track_id: int = 0
    """Container track id (the MP4 ``tkhd`` track id for MP4 files)."""
    profile: str | None = None
    duration: float | None = None
    bitrate: int | None = None
    """Bits per second, as declared by the container or measured while scanning."""
    language: str | None = None
    default: bool = False
    attached_pic: bool = False
    """Cover art (an MP3's embedded picture): not a video track."""
    # video
    width: int = 0
    height: int = 0
    sample_aspect_ratio: Fraction | None = None
    frame_rate: Fraction | None = None
    rotation: int = 0
    """Display rotation in degrees (0, 90, 180, 270) from the display matrix."""
    pix_fmt: str | None = None
    field_order: str | None = None
    frames: int = 0
    # audio
    channels: int = 0
    sample_rate: int = 0
    channel_layout: str | None = None

    @property
    def fps(self) -> float | None:
        return float(self.frame_rate) if self.frame_rate else None

    @property
    def interlaced(self) -> bool:
        return self.field_order not in (None, "", "progressive", "unknown")

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as shown: pixel aspect ratio applied, rotation compensated."""
        width, height = self.width, self.height
        sar = self.sample_aspect_ratio
        if sar and sar > 0 and sar != 1:
            width = round(width * sar)
        if self.rotation % 180 == 90:
            width, height = height, width
        return width, height


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    format_name: str
    """Demuxer names as FFmpeg reports them, e.g. ``mov,mp4,m4a,3gp,3g2,mj2``."""
    format_long_name: str
    duration: float
    start_time: float
    size: int
    bitrate: int | None
    streams: tuple[StreamInfo, ...]
    keyframes: dict[int, list[float]] | None = field(default=None, compare=False)
    """Keyframe presentation times per stream index (only when probed with ``keyframes=True``)."""

    @property
    def demuxer(self) -> str:
        """The demuxer name to force with ``-f``: the first of ``format_name`` that is safe."""
        names = self.format_name.split(",")
        return next((n for n in names if n in SAFE_DEMUXERS), names[0])

    @property
    def video_streams(self) -> list[StreamInfo]:
        return [s for s in self.streams if s.kind == "video" and not s.attached_pic]

    @property
    def audio_streams(self) -> list[StreamInfo]:
        return [s for s in self.streams if s.kind == "audio"]

    @property
    def video(self) -> StreamInfo | None:
        """The video stream an encode uses: the default one, else the first (cover art excluded)."""
        return _pick(self.video_streams)

    @property
    def audio(self) -> StreamInfo | None:
        return _pick(self.audio_streams)

    @property
    def has_video(self) -> bool:
        return self.video is not None

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    def video_keyframes(self) -> list[float]:
        if not self.keyframes or self.video is None:
            return []
        return self.keyframes.get(self.video.index, [])


def _pick(streams: list[StreamInfo]) -> StreamInfo | None:
    if not streams:
        return None
    return next((s for s in streams if s.default), streams[0])


def sniff(path: str | Path) -> None:
    """Refuse files that are not binary media before any demuxer sees them.

    Raises UnsafeInputError for playlists, concat scripts and manifests (whatever their file
    name) and NotMediaError for empty files and plain text.
    """
    p = Path(path)
    try:
        with open(p, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        raise NotMediaError(f"not a media file: {p.name} cannot be read ({exc.strerror})") from exc
    if not head:
        raise NotMediaError(f"not a media file: {p.name} is empty")
    text = _as_text(head)
    if text is None:
        return
    lowered = text.lstrip("\ufeff \t\r\n").lower()
    for marker, what in _PLAYLIST_MARKERS:
        if lowered.startswith(marker):
            raise UnsafeInputError(
                f"refusing {p.name}: it is {what}, not a media file; playlists and scripts that "
                "reference other files are not accepted as input"
            )
    for line in lowered.splitlines()[:50]:
        stripped = line.strip()
        if stripped.startswith(("file ", "file\t", "file'")) or "://" in stripped:
            raise UnsafeInputError(
                f"refusing {p.name}: it is a text file that references other files or URLs "
                "(a playlist or concat script), not a media file"
            )
    raise NotMediaError(f"not a media file: {p.name} is a text file")


def _as_text(head: bytes) -> str | None:
    """The sniffed bytes as text when they look like a text file, else None."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if head.startswith(bom):
            return _decode_text(head[len(bom) :], encoding)
    if b"\x00" in head:
        # UTF-16 without a BOM: every other byte is NUL for ASCII text.
        if len(head) >= 8 and head[1::2].count(0) > 0.9 * len(head[1::2]):
            return _decode_text(head, "utf-16-le")
        if len(head) >= 8 and head[0::2].count(0) > 0.9 * len(head[0::2]):
            return _decode_text(head, "utf-16-be")
        return None
    return _decode_text(head, "utf-8")


def _decode_text(data: bytes, encoding: str) -> str | None:
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    try:
        text = decoder.decode(data, final=False)  # a character cut at the end is fine
    except UnicodeDecodeError:
        return None
    if not text:
        return None
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\r\n\t\f")
    return text if printable >= 0.95 * len(text) else None


def probe(path: str | Path, *, keyframes: bool = False, verify: bool = False) -> MediaInfo:
    """Describe a local media file.

    ``keyframes=True`` lists keyframe times per stream; ``verify=True`` reads every packet and
    refuses files whose data ends well before their declared duration (truncated uploads). Both
    demux without decoding, so they cost about one read of the file.
    """
    import av  # imported lazily: the rest of the package works without PyAV

    p = Path(path)
    if not p.is_absolute():
        p = p.resolve()
    if not p.exists():
        raise NotMediaError(f"not a media file: {p.name} does not exist")
    if not p.is_file():
        raise NotMediaError(f"not a media file: {p.name} is not a regular file")
    sniff(p)
    size = p.stat().st_size
    options = {"protocol_whitelist": "file", "format_whitelist": ",".join(SAFE_DEMUXERS)}
    try:
        container = av.open("file:" + str(p), mode="r", options=options)
    except av.error.FFmpegError as exc:
        raise NotMediaError(f"not a media file: {p.name} ({_reason(exc)})") from exc
    try:
        format_name = container.format.name
        if not any(name in SAFE_DEMUXERS for name in format_name.split(",")):
            raise UnsafeInputError(f"refusing {p.name}: container format {format_name!r} is not accepted")
        rotation = _first_frame_rotation(container)
        streams = [_stream_info(s, rotation or 0) for s in container.streams]
        if not any(s.kind in ("video", "audio") and not s.attached_pic for s in streams):
            raise NotMediaError(f"not a media file: {p.name} has no audio or video stream")
        duration = container.duration / 1e6 if container.duration else 0.0
        if duration <= 0:
            duration = max((s.duration or 0.0) for s in streams)
        start = container.start_time / 1e6 if container.start_time is not None else 0.0
        bitrate = container.bit_rate or (int(size * 8 / duration) if duration > 0 else None)
        info = MediaInfo(
            p, format_name, container.format.long_name, duration, start, size, bitrate, tuple(streams)
        )
        if keyframes or verify:
            info = _scan(container, info, keep_keyframes=keyframes, verify=verify)
        return info
    except av.error.FFmpegError as exc:
        raise NotMediaError(f"not a media file: {p.name} ({_reason(exc)})") from exc
    finally:
        container.close()


def keyframe_times(path: str | Path) -> list[float]:
    """Presentation times (seconds) of the video keyframes of a file."""
    return probe(path, keyframes=True).video_keyframes()


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(":")[0].strip() or type(exc).__name__


def _first_frame_rotation(container) -> int | None:  # type: ignore[no-untyped-def]
    """Rotation of the first decodable video frame (decoders attach the display matrix)."""
    video = [s for s in container.streams.video if not _is_attached_pic(s)]
    if not video:
        return None
    try:
        for frame in container.decode(video[0]):
            return round(frame.rotation) % 360
    except Exception:
        return 0
    return 0


def _is_attached_pic(stream) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(int(stream.disposition) & 0x400)  # AV_DISPOSITION_ATTACHED_PIC
    except (TypeError, ValueError):
        return False


def _stream_info(stream, rotation: int) -> StreamInfo:  # type: ignore[no-untyped-def]
    kind = stream.type
    ctx = stream.codec_context
    duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
    try:
        disposition = int(stream.disposition)
    except (TypeError, ValueError):
        disposition = 0
    common = {
        "index": stream.index,
        "kind": kind,
        "codec": ctx.name if ctx is not None else "unknown",
        "track_id": int(stream.id or 0),
        "profile": getattr(stream, "profile", None),
        "duration": duration,
        "bitrate": getattr(stream, "bit_rate", None) or getattr(ctx, "bit_rate", None) or None,
        "language": (stream.metadata or {}).get("language"),
        "default": bool(disposition & 0x1),
        "attached_pic": bool(disposition & 0x400),
    }
    if kind == "video":
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if rate is not None and (rate <= 0 or rate > 1000):
            rate = stream.guessed_rate if stream.guessed_rate and 0 < stream.guessed_rate <= 1000 else None
        field_order = getattr(ctx, "field_order", None)
        return StreamInfo(
            **common,
            width=ctx.width or 0,
            height=ctx.height or 0,
            sample_aspect_ratio=stream.sample_aspect_ratio or None,
            frame_rate=Fraction(rate) if rate else None,
            rotation=rotation if not common["attached_pic"] else 0,
            pix_fmt=ctx.pix_fmt,
            field_order=_FIELD_ORDERS.get(field_order) if isinstance(field_order, int) else field_order,
            frames=int(stream.frames or 0),
        )
    if kind == "audio":
        layout = getattr(ctx, "layout", None)
        return StreamInfo(
            **common,
            channels=getattr(ctx, "channels", 0) or (len(layout.channels) if layout else 0),
            sample_rate=ctx.sample_rate or 0,
            channel_layout=layout.name if layout else None,
        )
    return StreamInfo(**common)


# AVFieldOrder values
_FIELD_ORDERS = {0: "unknown", 1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}


def _scan(container, info: MediaInfo, *, keep_keyframes: bool, verify: bool) -> MediaInfo:  # type: ignore[no-untyped-def]
    """Demux every packet: keyframe times, measured bitrates, and the truncation check."""
    wanted = {s.index for s in info.streams if s.kind in ("video", "audio") and not s.attached_pic}
    ends: dict[int, float] = {}
    sizes: dict[int, int] = {}
    keys: dict[int, list[float]] = {i: [] for i in wanted}
    container.seek(0)
    try:
        for packet in container.demux():
            index = packet.stream.index
            if index not in wanted or packet.size == 0:
                continue
            sizes[index] = sizes.get(index, 0) + packet.size
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None or packet.time_base is None:
                continue
            start = float(ts * packet.time_base)
            ends[index] = max(
                ends.get(index, start), start + float((packet.duration or 0) * packet.time_base)
            )
            if keep_keyframes and packet.is_keyframe:
                keys[index].append(start)
    except Exception as exc:
        if verify:
            raise NotMediaError(f"not a media file: {info.path.name} is damaged ({_reason(exc)})") from exc
    if verify:
        if not sizes:
            raise NotMediaError(f"not a media file: {info.path.name} contains no audio or video data")
        data_end = max(ends.values(), default=0.0) - max(info.start_time, 0.0)
        declared = info.duration
        if declared > 0 and data_end < declared - max(1.0, 0.05 * declared):
            raise NotMediaError(
                f"truncated media file: {info.path.name} declares {declared:.2f} s but its data "
                f"ends at {max(data_end, 0.0):.2f} s"
            )
    streams = []
    for s in info.streams:
        if s.index in sizes and not s.bitrate:
            length = (s.duration or info.duration) or 0.0
            if length > 0:
                s = _replace(s, bitrate=int(sizes[s.index] * 8 / length))
        streams.append(s)
    if keep_keyframes:
        for times in keys.values():
            times.sort()
    return MediaInfo(
        info.path,
        info.format_name,
        info.format_long_name,
        info.duration,
        info.start_time,
        info.size,
        info.bitrate,
        tuple(streams),
        keys if keep_keyframes else None,
    )


def _replace(stream: StreamInfo, **changes: object) -> StreamInfo:
    from dataclasses import replace

    return replace(stream, **changes)  # type: ignore[arg-type]


__all__ = ["SAFE_DEMUXERS", "MediaError", "MediaInfo", "StreamInfo", "keyframe_times", "probe", "sniff"]
