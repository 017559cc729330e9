"""Smooth Streaming client manifests, and the `QualityLevels(…)/Fragments(…)` naming all protocols share.

AMS dynamic packaging grew out of Smooth Streaming: its fragment URL grammar
(`QualityLevels({bitrate})/Fragments({track name}={start time})`) is reused verbatim by the HLS
and DASH outputs, with a `format=` added. So this module also owns the two pieces every writer
and the origin need to agree on:

- how a track is named in a URL (`track_name`) and how a (name, bitrate) pair in a URL finds the
  track again (`find_track`): a presentation may hold several tracks with the same name (all
  video rungs are called `video`), distinguished by their bitrate, so (name, bitrate) must be
  unique — `check_url_keys` enforces it;
- how times are written: Smooth manifests and fragments count in 100 ns ticks (`SMOOTH_TIMESCALE`),
  whatever the track's own timescale. `to_smooth_time` / `from_smooth_time` are the one conversion
  the manifest, the fragment writer (`tfxd`/`tfdt`) and the origin's URL lookup must all use, or a
  player asks for a time that maps to no fragment. HLS and DASH URLs carry times in the track's own
  timescale and need no conversion.

Pure functions over `TrackView`s; no I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from openams.packaging.encryption import PLAYREADY_SYSTEM_ID
from openams.packaging.model import SMOOTH_TIMESCALE, TrackInfo, TrackView
from openams.packaging.timeline import find_segment

__all__ = [
    "SmoothProtection",
    "check_url_keys",
    "chunk_timeline",
    "client_manifest",
    "codec_private_data",
    "find_track",
    "from_smooth_time",
    "segment_index_at",
    "smooth_fourcc",
    "smooth_segment_index",
    "to_smooth_time",
    "track_name",
]


# --------------------------------------------------------------------------------------------
# Naming and time conversion shared by every protocol


def track_name(info: TrackInfo) -> str:
    """The name a track goes by in URLs: its `.ism` name, or its kind when it has none.

    Falling back to the kind gives the AMS default names (`video`, `audio`) for assets whose
    server manifest does not name tracks.
    """
    return info.name or info.kind


def check_url_keys(tracks: Sequence[TrackView]) -> None:
    """Refuse a presentation in which two tracks would have the same URL.

    Every fragment and playlist URL addresses a track as `QualityLevels(<bitrate>)/…(<name>…)`,
    so two tracks with the same name and bitrate cannot be told apart. The caller (the origin's
    indexer) must make them distinct, e.g. by nudging one bitrate by 1 bps; silently serving one
    track's bytes for the other would be worse than failing.
    """
    seen: dict[tuple[str, int], int] = {}
    for view in tracks:
        key = (track_name(view.info), view.info.bitrate)
        if key in seen:
            raise ValueError(
                f"tracks {seen[key]} and {view.info.track_id} are both named {key[0]!r} at {key[1]} bps; "
                "URLs (QualityLevels(bitrate)/...(name)) could not tell them apart"
            )
        seen[key] = view.info.track_id


def find_track(tracks: Sequence[TrackView], name: str, bitrate: int) -> TrackView | None:
    """The track a `QualityLevels(<bitrate>)/…(<name>=…)` URL designates, or None."""
    for view in tracks:
        if view.info.bitrate == bitrate and track_name(view.info) == name:
            return view
    return None


def segment_index_at(track: TrackView, start: int) -> int | None:
    """Index of the segment starting exactly at `start` (track timescale), or None.

    HLS and DASH URLs carry segment starts in the track timescale, so the lookup is exact.
    """
    return find_segment(track.segments, start)


def to_smooth_time(t: int, timescale: int) -> int:
    """Convert a time in `timescale` units to 100 ns ticks, rounding half up, exactly (no floats).

    Chunk starts and durations are derived from converted *absolute* times (cumulative rounding),
    so the sum of the durations never drifts from the converted end time.
    """
    if timescale <= 0:
        raise ValueError(f"timescale must be positive, got {timescale}")
    if timescale == SMOOTH_TIMESCALE:
        return t
    return (2 * t * SMOOTH_TIMESCALE + timescale) // (2 * timescale)


def from_smooth_time(ticks: int, timescale: int) -> int:
    """Convert 100 ns ticks back to `timescale` units (round half up).

    For any timescale up to 10 MHz this inverts `to_smooth_time` exactly:
    `from_smooth_time(to_smooth_time(t, ts), ts) == t`. Above 10 MHz two track times can share
    one tick; use `smooth_segment_index`, which compares in ticks, to find a segment.
    """
    if timescale <= 0:
        raise ValueError(f"timescale must be positive, got {timescale}")
    if timescale == SMOOTH_TIMESCALE:
        return ticks
    return (2 * ticks * timescale + SMOOTH_TIMESCALE) // (2 * SMOOTH_TIMESCALE)


def smooth_segment_index(track: TrackView, ticks: int) -> int | None:
    """Index of the segment whose start, converted to ticks, is exactly `ticks` (a Smooth URL time)."""
    timescale = track.info.timescale
    index = segment_index_at(track, from_smooth_time(ticks, timescale))
    if index is not None and to_smooth_time(track.segments[index].start, timescale) == ticks:
        return index
    # Only reachable for timescales above 10 MHz, where the inverse may be off by one unit.
    for i, seg in enumerate(track.segments):
        if to_smooth_time(seg.start, timescale) == ticks:
            return i
    return None


# --------------------------------------------------------------------------------------------
# Codec description


def smooth_fourcc(info: TrackInfo) -> str:
    """The FourCC a Smooth client expects for a track.

    Smooth clients (Silverlight, dash.js and Shaka MSS) know `H264` and `AACL`/`AACH`; they derive
    the RFC 6381 codec from FourCC + CodecPrivateData, so HE-AAC must be marked `AACH`.
    """
    entry = info.fourcc.lower()
    codec = info.codec.lower()
    if info.kind == "video":
        if entry in ("avc1", "avc3") or codec.startswith(("avc1", "avc3")):
            return "H264"
        if entry in ("hvc1", "hev1") or codec.startswith(("hvc1", "hev1")):
            return "HEVC"
        return info.fourcc.upper()
    if info.kind == "audio":
        if entry == "mp4a" or codec.startswith("mp4a"):
            object_type = codec.split(".")[2] if codec.count(".") >= 2 else ""
            if object_type in ("5", "29"):
                return "AACH"
            if not object_type and info.codec_private and info.codec_private[0] >> 3 in (5, 29):
                return "AACH"
            return "AACL"
        if entry in ("ec-3", "ec3"):
            return "EC-3"
        return info.fourcc.upper()
    if entry in ("stpp", "dfxp", "ttml"):
        return "TTML"
    return info.fourcc.upper()


def _nal_units_avcc(record: bytes) -> list[bytes]:
    """SPS then PPS NAL units from an AVCDecoderConfigurationRecord."""
    if len(record) < 7:
        raise ValueError("avcC record too short")
    nals: list[bytes] = []
    pos = 5
    count = record[pos] & 0x1F
    pos += 1
    for _ in range(count):
        size = int.from_bytes(record[pos : pos + 2], "big")
        nals.append(record[pos + 2 : pos + 2 + size])
        pos += 2 + size
    if pos >= len(record):
        raise ValueError("avcC record truncated before the PPS count")
    count = record[pos]
    pos += 1
    for _ in range(count):
        size = int.from_bytes(record[pos : pos + 2], "big")
        nals.append(record[pos + 2 : pos + 2 + size])
        pos += 2 + size
    if pos > len(record):
        raise ValueError("avcC record truncated")
    return nals


def _nal_units_hvcc(record: bytes) -> list[bytes]:
    """VPS, SPS, PPS (and any other arrays) NAL units from an HEVCDecoderConfigurationRecord."""
    if len(record) < 23:
        raise ValueError("hvcC record too short")
    nals: list[bytes] = []
    arrays = record[22]
    pos = 23
    for _ in range(arrays):
        count = int.from_bytes(record[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            size = int.from_bytes(record[pos : pos + 2], "big")
            nals.append(record[pos + 2 : pos + 2 + size])
            pos += 2 + size
    if pos > len(record):
        raise ValueError("hvcC record truncated")
    return nals


def codec_private_data(info: TrackInfo) -> str:
    """The `CodecPrivateData` hex string of a QualityLevel.

    H.264/H.265: the parameter sets in Annex B form (`00000001 SPS 00000001 PPS`), which is what
    Smooth clients split on to rebuild an `avcC`; AAC: the AudioSpecificConfig as is. Empty when the
    track carries no decoder configuration.
    """
    if not info.codec_private:
        return ""
    fourcc = smooth_fourcc(info)
    if fourcc == "H264":
        nals = _nal_units_avcc(info.codec_private)
    elif fourcc == "HEVC":
        nals = _nal_units_hvcc(info.codec_private)
    else:
        return info.codec_private.hex().upper()
    return "".join("00000001" + nal.hex() for nal in nals).upper()


# --------------------------------------------------------------------------------------------
# Client manifest


@dataclass(frozen=True)
class SmoothProtection:
    """One `<ProtectionHeader>`: a DRM system id (GUID) and its header, e.g. a PlayReady Object.

    Smooth clients know PlayReady with `cenc` (AES-CTR) fragments carrying the PIFF sample
    encryption box (`fmp4.smooth_fragment(protection=…)`); `playready()` builds the header.
    """

    system_id: str
    data: bytes

    @classmethod
    def playready(cls, pro: bytes) -> SmoothProtection:
        """The PlayReady header: SystemID `9A04F079-…` (upper case, as AMS writes it) and the
        PlayReady Object (`encryption.playready_object`)."""
        return cls(PLAYREADY_SYSTEM_ID_TEXT, pro)


PLAYREADY_SYSTEM_ID_TEXT = str(PLAYREADY_SYSTEM_ID).upper()


def chunk_timeline(track: TrackView) -> list[tuple[int, int]]:
    """(start, duration) of each segment in 100 ns ticks, both from converted absolute times."""
    ts = track.info.timescale
    return [(to_smooth_time(s.start, ts), to_smooth_time(s.start + s.duration, ts) - to_smooth_time(s.start, ts))
            for s in track.segments]


def _chunk_elements(parent: etree._Element, timeline: list[tuple[int, int]], *, repeat: bool) -> None:
    """`<c>` elements: `t` on the first chunk and after any gap, `r` for runs (when allowed).

    In MinorVersion 2 manifests `r` counts the chunks in a run (r="1" is a single chunk, like its
    absence); Smooth 2.0 (`fmp4-v20`) clients do not know `r`, so every chunk is listed.
    """
    expected: int | None = None
    last: etree._Element | None = None
    run = 0
    last_d = -1
    for start, duration in timeline:
        if repeat and last is not None and start == expected and duration == last_d:
            run += 1
            last.set("r", str(run))
        else:
            last = etree.SubElement(parent, "c")
            if start != expected:
                last.set("t", str(start))
            last.set("d", str(duration))
            run = 1
            last_d = duration
        expected = start + duration


def _stream_groups(tracks: Sequence[TrackView]) -> list[list[TrackView]]:
    """Tracks grouped into StreamIndexes: one per (kind, name), in first-seen order."""
    groups: dict[tuple[str, str], list[TrackView]] = {}
    for view in tracks:
        groups.setdefault((view.info.kind, track_name(view.info)), []).append(view)
    return list(groups.values())


def client_manifest(
    tracks: Sequence[TrackView],
    *,
    v20: bool = False,
    duration: int | None = None,
    protection: Sequence[SmoothProtection] = (),
) -> str:
    """The Smooth Streaming client manifest (`Manifest` with no format, or `format=fmp4-v20`).

    One StreamIndex per (kind, track name); its QualityLevels are the tracks of that name, highest
    bitrate first (AMS order), with `Index` in that order. All tracks of one StreamIndex must share
    one chunk timeline — Smooth cannot express per-quality fragment times — else ValueError.
    `duration` is in 100 ns ticks; by default, last chunk end minus first chunk start over all
    tracks. Text tracks other than TTML and tracks with no segments are left out.
    """
    check_url_keys(tracks)
    groups = [
        sorted(g, key=lambda v: -v.info.bitrate) for g in _stream_groups([t for t in tracks if t.segments])
        if g[0].info.kind != "text" or smooth_fourcc(g[0].info) == "TTML"
    ]
    timelines = [chunk_timeline(g[0]) for g in groups]
    if duration is None:
        starts = [tl[0][0] for tl in timelines]
        ends = [tl[-1][0] + tl[-1][1] for tl in timelines]
        duration = (max(ends) - min(starts)) if timelines else 0

    root = etree.Element("SmoothStreamingMedia")
    root.set("MajorVersion", "2")
    root.set("MinorVersion", "0" if v20 else "2")
    root.set("Duration", str(duration))
    root.set("TimeScale", str(SMOOTH_TIMESCALE))

    for group, timeline in zip(groups, timelines, strict=True):
        first = group[0]
        for other in group[1:]:
            if chunk_timeline(other) != timeline:
                raise ValueError(
                    f"tracks named {track_name(first.info)!r} do not share one fragment timeline "
                    f"({first.info.bitrate} vs {other.info.bitrate} bps); Smooth needs aligned fragments"
                )
        info = first.info
        name = track_name(info)
        index = etree.SubElement(root, "StreamIndex")
        index.set("Type", info.kind)
        if info.kind == "text":
            index.set("Subtype", "SUBT")
        index.set("Name", name)
        if info.kind != "video" and info.language:
            index.set("Language", info.language)
        index.set("Chunks", str(len(timeline)))
        index.set("QualityLevels", str(len(group)))
        index.set("Url", f"QualityLevels({{bitrate}})/Fragments({name}={{start time}})")
        if info.kind == "video":
            width = max(v.info.width for v in group)
            height = max(v.info.height for v in group)
            index.set("MaxWidth", str(width))
            index.set("MaxHeight", str(height))
            index.set("DisplayWidth", str(width))
            index.set("DisplayHeight", str(height))
        for i, view in enumerate(group):
            _quality_level(index, i, view.info)
        _chunk_elements(index, timeline, repeat=not v20)

    if protection:
        prot = etree.SubElement(root, "Protection")
        for header in protection:
            el = etree.SubElement(prot, "ProtectionHeader")
            el.set("SystemID", header.system_id)
            el.text = base64.b64encode(header.data).decode("ascii")

    body = etree.tostring(root, encoding="unicode", pretty_print=True)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body


def _quality_level(parent: etree._Element, index: int, info: TrackInfo) -> None:
    level = etree.SubElement(parent, "QualityLevel")
    level.set("Index", str(index))
    level.set("Bitrate", str(info.bitrate))
    level.set("FourCC", smooth_fourcc(info))
    if info.kind == "video":
        level.set("MaxWidth", str(info.width))
        level.set("MaxHeight", str(info.height))
    elif info.kind == "audio":
        channels = info.channels or 2
        level.set("SamplingRate", str(info.sample_rate))
        level.set("Channels", str(channels))
        level.set("BitsPerSample", "16")
        level.set("PacketSize", str(2 * channels))
        level.set("AudioTag", "255" if level.get("FourCC", "").startswith("AAC") else "65534")
    private = codec_private_data(info)
    if private or info.kind != "text":
        level.set("CodecPrivateData", private)
