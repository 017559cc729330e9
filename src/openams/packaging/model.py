"""The shared vocabulary of the packager: what a track is, what a sample is, what a segment is.

Every other module of `packaging/` speaks in these types, so the MP4 index, the fragment writers
(fMP4 and MPEG-TS), the manifest writers and the filters can be built and tested separately.
Times are integers in the track's own timescale unless a name says otherwise; nothing here
does I/O.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Literal

TrackKind = Literal["video", "audio", "text"]

SMOOTH_TIMESCALE = 10_000_000
"""Smooth Streaming manifests and fragments count in 100 ns ticks."""


@dataclass(frozen=True)
class TrackInfo:
    """Everything about one elementary stream that a manifest or an init segment needs."""

    track_id: int
    kind: TrackKind
    timescale: int
    fourcc: str
    """Sample entry type as stored: `avc1`, `avc3`, `hvc1`, `hev1`, `mp4a`, `ec-3`…"""
    codec: str
    """RFC 6381 codecs string: `avc1.64001f`, `mp4a.40.2`."""
    duration: int
    """Presentation duration in `timescale` units (after the edit list)."""
    bitrate: int
    """Average bits per second (from the `.ism` when it names one, else measured)."""
    max_bitrate: int = 0
    language: str = "und"
    name: str = ""
    """Track name used in URLs (`video`, `audio`, `audio_eng`…); unique within a presentation."""
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    codec_private: bytes = b""
    """Decoder configuration: the AVCDecoderConfigurationRecord (avcC payload) for H.264, the
    HEVCDecoderConfigurationRecord for H.265, the AudioSpecificConfig for AAC."""
    sample_entry: bytes = b""
    """The original `stsd` sample entry box (header included), re-emitted in init segments."""
    media_time: int = 0
    """Edit-list shift: presentation time = dts + cts_offset - media_time."""
    source: str = ""
    """Name of the file (blob) that holds this track's samples."""
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class SampleRef:
    """Where one sample lives and when it plays; no payload."""

    offset: int
    size: int
    dts: int
    duration: int
    cts_offset: int
    is_sync: bool

    @property
    def pts(self) -> int:
        """Composition time before the edit list is applied."""
        return self.dts + self.cts_offset


@dataclass
class SampleTable:
    """All samples of one track in decode order, as parallel compact arrays (a 2-hour 1080p
    track has ~180 k samples; arrays keep the index small enough to cache and persist)."""

    offsets: array  # 'q': absolute byte offset in the source file
    sizes: array  # 'L'
    dts: array  # 'q': decode time, track timescale, first sample at its stored time
    durations: array  # 'L'
    cts_offsets: array  # 'l': composition offset (may be negative)
    sync: array  # 'L': sorted indices of sync samples (every sample when the track has no stss)

    def __len__(self) -> int:
        return len(self.sizes)

    def ref(self, i: int) -> SampleRef:
        return SampleRef(self.offsets[i], self.sizes[i], self.dts[i], self.durations[i], self.cts_offsets[i],
                         self.is_sync(i))

    def is_sync(self, i: int) -> bool:
        from bisect import bisect_left

        j = bisect_left(self.sync, i)
        return j < len(self.sync) and self.sync[j] == i


@dataclass(frozen=True)
class Sample:
    """A sample with its payload, as the fragment writers take it."""

    data: bytes
    dts: int
    duration: int
    cts_offset: int
    is_sync: bool

    @property
    def pts(self) -> int:
        return self.dts + self.cts_offset


@dataclass(frozen=True)
class SegmentRef:
    """One segment of one track: a run of whole samples starting at a sync sample (video)."""

    start: int
    """Presentation time (after the edit list) of the segment's earliest sample, track timescale."""
    duration: int
    first_sample: int
    sample_count: int


@dataclass(frozen=True)
class TrackView:
    """A track as a manifest writer sees it: its description and its segment timeline."""

    info: TrackInfo
    segments: tuple[SegmentRef, ...]

    @property
    def end(self) -> int:
        if not self.segments:
            return 0
        last = self.segments[-1]
        return last.start + last.duration


@dataclass(frozen=True)
class Protection:
    """How a segment is to be encrypted; filled in by the content-protection layer.

    `scheme` is `cenc`, `cbcs` (both sample encryption in fMP4, `senc`/`saiz`/`saio`), or
    `aes-128` (whole-segment CBC, applied to the finished segment bytes by the HTTP layer).
    """

    scheme: Literal["cenc", "cbcs", "aes-128"]
    key_id: bytes
    """16 bytes, the UUID in big-endian (RFC 4122) order, as `tenc` and `pssh` carry it."""
    key: bytes
    iv: bytes = b""
    """Per scheme: `aes-128` — the HLS IV (16 bytes) the caller encrypts with; `cbcs` — the
    constant IV (16 bytes; empty = derived from the key id); `cenc` — an optional seed mixed into
    the per-sample IVs (pass something asset-unique, so assets sharing a key never share IVs;
    see `encryption.py`)."""
    pssh: tuple[bytes, ...] = ()
    """Complete `pssh` boxes to place in the init segment (ClearKey, PlayReady, Widevine)."""
