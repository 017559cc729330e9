"""HLS playlists in the AMS dynamic-packaging shapes (`m3u8-aapl`, `m3u8-aapl-v3`, `m3u8-cmaf`).

URL grammar (spec §2.3). The master playlist lives at `<name>.ism/Manifest(format=…)` and its
URIs are relative to `<name>.ism/`:

- variant / rendition playlists: `QualityLevels(<bitrate>)/Manifest(<track name>,format=<fmt>)`
- I-frame playlists:             `QualityLevels(<bitrate>)/Manifest(<track name>,format=<fmt>,type=keyframes)`
- v3 muxed variants:             `QualityLevels(<video bitrate>)/Manifest(<video name>,format=m3u8-aapl-v3,
                                  audiotrack=<audio track name>)`

A media playlist therefore lives at `<name>.ism/QualityLevels(<bitrate>)/Manifest(…)` and its
segment URIs are relative to `<name>.ism/QualityLevels(<bitrate>)/` (as AMS wrote them):

- segments:       `Fragments(<track name>=<start>,format=<fmt>).ts` (`.m4s` for CMAF)
- v3 muxed:       `Fragments(<video name>=<start>,format=m3u8-aapl-v3,audiotrack=<audio name>).ts`
- CMAF init:      `Fragments(<track name>=i,format=m3u8-cmaf).mp4` (in `#EXT-X-MAP`)

The file-type suffix is our addition to the AMS shape (the origin accepts segment URLs with or
without it): FFmpeg's HLS reader refuses segment URLs whose extension is not a media type it
allows (`allowed_segment_extensions`), and AMS's extension-less URLs fail there.

`<start>` is the segment's presentation time in the **track's own timescale** (an integer), so the
origin finds the segment by exact match (`smooth.segment_index_at`). An optional `query` is
appended to every URI as `?<query>` so the origin can carry a filter or token through.

Text tracks are not listed (no WebVTT segmenter yet).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from openams.packaging.dash import frame_rate
from openams.packaging.encryption import WIDEVINE_SYSTEM_ID
from openams.packaging.filters import normalize_language
from openams.packaging.model import TrackView
from openams.packaging.smooth import check_url_keys, track_name

__all__ = [
    "FAIRPLAY_KEYFORMAT",
    "HLS_FORMATS",
    "PLAYREADY_KEYFORMAT",
    "WIDEVINE_KEYFORMAT",
    "HlsFormat",
    "HlsKey",
    "KeyframeRange",
    "aes128_key",
    "default_audio",
    "fairplay_key",
    "master_playlist",
    "media_playlist",
    "playlist_version",
    "playready_key",
    "sample_aes_method",
    "target_duration",
    "widevine_key",
]

HlsFormat = Literal["m3u8-aapl", "m3u8-aapl-v3", "m3u8-cmaf"]
HLS_FORMATS: tuple[str, ...] = ("m3u8-aapl", "m3u8-aapl-v3", "m3u8-cmaf")
SEGMENT_SUFFIX = {"m3u8-aapl": ".ts", "m3u8-aapl-v3": ".ts", "m3u8-cmaf": ".m4s"}
"""File-type suffix of segment URIs per format (see the module docstring)."""

KeyframeRange = Callable[[TrackView, int], tuple[int, int]]
"""`(track, segment_index) -> (byte offset, byte length)` of the segment's first keyframe, as laid
out by the segment writer (TS packets for `m3u8-aapl`, moof + first sample for `m3u8-cmaf`).
`segment_index` indexes the segments of the TrackView given to `media_playlist` — after filters,
so not necessarily the same index in the unfiltered track: look the segment up by its start."""


@dataclass(frozen=True)
class HlsKey:
    """One `#EXT-X-KEY` line, written by the content-protection layer's choice.

    The key line is placed after `#EXT-X-MAP`, so the CMAF init segment is never encrypted
    (RFC 8216 §4.3.2.4: a key applies to the Media Initialization Sections declared after it).
    """

    method: Literal["AES-128", "SAMPLE-AES", "SAMPLE-AES-CTR", "NONE"]
    uri: str = ""
    iv: bytes | None = None
    keyformat: str | None = None
    keyformatversions: str | None = None

    def line(self) -> str:
        attrs = [f"METHOD={self.method}"]
        if self.method != "NONE":
            attrs.append(f'URI="{self.uri}"')
            if self.iv is not None:
                if len(self.iv) != 16:
                    raise ValueError("an HLS IV is 16 bytes")
                attrs.append("IV=0x" + self.iv.hex().upper())
            if self.keyformat:
                attrs.append(f'KEYFORMAT="{self.keyformat}"')
            if self.keyformatversions:
                attrs.append(f'KEYFORMATVERSIONS="{self.keyformatversions}"')
        return "#EXT-X-KEY:" + ",".join(attrs)


FAIRPLAY_KEYFORMAT = "com.apple.streamingkeydelivery"
PLAYREADY_KEYFORMAT = "com.microsoft.playready"
WIDEVINE_KEYFORMAT = f"urn:uuid:{WIDEVINE_SYSTEM_ID}"


def aes128_key(uri: str, iv: bytes | None = None) -> HlsKey:
    """`METHOD=AES-128` (whole segments, `encryption.aes128_segment`). Without `iv` players use
    the media sequence number (`encryption.segment_iv`), which the origin must then match."""
    return HlsKey("AES-128", uri=uri, iv=iv)


def sample_aes_method(scheme: Literal["cenc", "cbcs"]) -> Literal["SAMPLE-AES", "SAMPLE-AES-CTR"]:
    """The METHOD for CMAF sample encryption: `SAMPLE-AES` is `cbcs`, `SAMPLE-AES-CTR` is `cenc`."""
    if scheme not in ("cenc", "cbcs"):
        raise ValueError(f"not a CENC scheme: {scheme!r}")
    return "SAMPLE-AES" if scheme == "cbcs" else "SAMPLE-AES-CTR"


def fairplay_key(uri: str) -> HlsKey:
    """FairPlay Streaming (`cbcs` only): `uri` is the `skd://…` the player hands its key server."""
    return HlsKey("SAMPLE-AES", uri=uri, keyformat=FAIRPLAY_KEYFORMAT, keyformatversions="1")


def widevine_key(pssh: bytes, scheme: Literal["cenc", "cbcs"]) -> HlsKey:
    """Widevine in CMAF HLS: the Widevine `pssh` box as a base64 data URI."""
    uri = "data:text/plain;base64," + base64.b64encode(pssh).decode("ascii")
    return HlsKey(sample_aes_method(scheme), uri=uri, keyformat=WIDEVINE_KEYFORMAT, keyformatversions="1")


def playready_key(pro: bytes, scheme: Literal["cenc", "cbcs"]) -> HlsKey:
    """PlayReady in CMAF HLS: the PlayReady Object as a UTF-16 base64 data URI."""
    uri = "data:text/plain;charset=UTF-16;base64," + base64.b64encode(pro).decode("ascii")
    return HlsKey(sample_aes_method(scheme), uri=uri, keyformat=PLAYREADY_KEYFORMAT, keyformatversions="1")


def _check_format(fmt: str) -> None:
    if fmt not in HLS_FORMATS:
        raise ValueError(f"not an HLS format: {fmt!r} (expected one of {', '.join(HLS_FORMATS)})")


def playlist_version(fmt: str) -> int:
    """EXT-X-VERSION: 3 for v3 (float EXTINF), 4 for v4 (I-frame playlists, byte ranges,
    EXT-X-MEDIA), 7 for CMAF (EXT-X-MAP in media playlists needs 6; Apple asks 7 for fMP4)."""
    _check_format(fmt)
    return {"m3u8-aapl-v3": 3, "m3u8-aapl": 4, "m3u8-cmaf": 7}[fmt]


def _q(uri: str, query: str) -> str:
    query = query.lstrip("?")
    return f"{uri}?{query}" if query else uri


def _quote(value: str) -> str:
    """A quoted-string attribute value; RFC 8216 forbids `"`, CR and LF inside one."""
    return '"' + value.replace('"', "'").replace("\r", " ").replace("\n", " ") + '"'


def target_duration(track: TrackView) -> int:
    """`#EXT-X-TARGETDURATION`: the longest segment rounded up to whole seconds.

    Rounding up (not to nearest) guarantees every EXTINF, rounded, is ≤ the target (RFC 8216 §4.3.3.1).
    """
    ts = track.info.timescale
    longest = max((s.duration for s in track.segments), default=0)
    return max(1, -(-longest // ts))


def default_audio(tracks: Sequence[TrackView]) -> TrackView | None:
    """The audio track played when the viewer has not chosen one: the first audio track of the
    presentation (the origin orders tracks as the `.ism` lists them)."""
    for view in tracks:
        if view.info.kind == "audio" and view.segments:
            return view
    return None


def _codecs(*views: TrackView | None) -> str:
    seen: list[str] = []
    for v in views:
        if v is not None and v.info.codec and v.info.codec not in seen:
            seen.append(v.info.codec)
    return ",".join(seen)


def _peak(view: TrackView) -> int:
    return max(view.info.max_bitrate, view.info.bitrate)


def _video_order(videos: list[TrackView], first_bitrate: int | None) -> list[TrackView]:
    """Highest bitrate first; FirstQuality moves the nearest rung (exact match, else the closest,
    ties to the lower) to the top so players start there."""
    ordered = sorted(videos, key=lambda v: -v.info.bitrate)
    if first_bitrate is not None and ordered:
        first = min(ordered, key=lambda v: (abs(v.info.bitrate - first_bitrate), v.info.bitrate))
        ordered.remove(first)
        ordered.insert(0, first)
    return ordered


def _rendition_uri(view: TrackView, fmt: str, *extra: str) -> str:
    params = ",".join((track_name(view.info), f"format={fmt}", *extra))
    return f"QualityLevels({view.info.bitrate})/Manifest({params})"


def _frame_rate_attr(view: TrackView) -> str:
    rate = frame_rate(view)
    return f",FRAME-RATE={float(rate):.3f}" if rate else ""


def master_playlist(
    tracks: Sequence[TrackView],
    *,
    fmt: HlsFormat,
    audio_only: bool = True,
    first_bitrate: int | None = None,
    query: str = "",
    iframes: bool = True,
    session_keys: Sequence[HlsKey] = (),
) -> str:
    """The master (multivariant) playlist.

    v4 and CMAF: every audio track is an `#EXT-X-MEDIA` rendition of group `audio` (the default
    audio has DEFAULT=YES), one `#EXT-X-STREAM-INF` per video track referring to that group, an
    audio-only variant (unless `audio_only` is False — Apple's cellular rule, spec §2.2) and one
    `#EXT-X-I-FRAME-STREAM-INF` per video track (unless `iframes` is False).
    v3: no renditions; each video variant muxes the default audio, the audio-only variant plays
    the default audio alone; no I-frame playlists (they need version 4).

    BANDWIDTH is the variant's peak: video peak plus the largest audio peak of the group;
    AVERAGE-BANDWIDTH the same with averages. An I-frame playlist's BANDWIDTH is the video peak —
    an upper bound, as the keyframe share of the bitrate is not known here.
    `session_keys` become `#EXT-X-SESSION-KEY` lines (lets players pre-fetch FairPlay/AES keys).
    """
    _check_format(fmt)
    check_url_keys(tracks)
    version = playlist_version(fmt)
    videos = [t for t in tracks if t.info.kind == "video" and t.segments]
    audios = [t for t in tracks if t.info.kind == "audio" and t.segments]
    main_audio = default_audio(audios)
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{version}"]
    for key in session_keys:
        lines.append(key.line().replace("#EXT-X-KEY:", "#EXT-X-SESSION-KEY:", 1))

    if fmt == "m3u8-aapl-v3":
        for video in _video_order(videos, first_bitrate):
            info = video.info
            extra = (f"audiotrack={track_name(main_audio.info)}",) if main_audio else ()
            bandwidth = _peak(video) + (_peak(main_audio) if main_audio else 0)
            average = info.bitrate + (main_audio.info.bitrate if main_audio else 0)
            lines.append(
                f"#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},AVERAGE-BANDWIDTH={average},"
                f"RESOLUTION={info.width}x{info.height}{_frame_rate_attr(video)},"
                f"CODECS={_quote(_codecs(video, main_audio))}"
            )
            lines.append(_q(_rendition_uri(video, fmt, *extra), query))
        if main_audio and (audio_only or not videos):
            lines.append(
                f"#EXT-X-STREAM-INF:BANDWIDTH={_peak(main_audio)},AVERAGE-BANDWIDTH={main_audio.info.bitrate},"
                f"CODECS={_quote(_codecs(main_audio))}"
            )
            lines.append(_q(_rendition_uri(main_audio, fmt), query))
        return "\n".join(lines) + "\n"

    group_attr = ',AUDIO="audio"' if audios else ""
    names: set[str] = set()
    for audio in audios:
        info = audio.info
        name = track_name(info)
        if name in names:  # NAME must be unique within the group
            name = f"{name}_{info.bitrate}"
        names.add(name)
        attrs = ["TYPE=AUDIO", 'GROUP-ID="audio"', f"NAME={_quote(name)}"]
        language = normalize_language(info.language)
        if language != "und":
            attrs.append(f"LANGUAGE={_quote(language)}")
        attrs.append("DEFAULT=YES" if audio is main_audio else "DEFAULT=NO")
        attrs.append("AUTOSELECT=YES")
        if info.channels:
            attrs.append(f'CHANNELS="{info.channels}"')
        attrs.append(f"URI={_quote(_q(_rendition_uri(audio, fmt), query))}")
        lines.append("#EXT-X-MEDIA:" + ",".join(attrs))

    audio_peak = max((_peak(a) for a in audios), default=0)
    audio_avg = max((a.info.bitrate for a in audios), default=0)
    for video in _video_order(videos, first_bitrate):
        info = video.info
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={_peak(video) + audio_peak},AVERAGE-BANDWIDTH={info.bitrate + audio_avg},"
            f"RESOLUTION={info.width}x{info.height}{_frame_rate_attr(video)},"
            f"CODECS={_quote(_codecs(video, *audios))}{group_attr}"
        )
        lines.append(_q(_rendition_uri(video, fmt), query))
    if main_audio and (audio_only or not videos):
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={_peak(main_audio)},AVERAGE-BANDWIDTH={main_audio.info.bitrate},"
            f"CODECS={_quote(_codecs(main_audio))}{group_attr}"
        )
        lines.append(_q(_rendition_uri(main_audio, fmt), query))
    if iframes:
        for video in sorted(videos, key=lambda v: -v.info.bitrate):
            info = video.info
            uri = _q(_rendition_uri(video, fmt, "type=keyframes"), query)
            lines.append(
                f"#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={_peak(video)},RESOLUTION={info.width}x{info.height},"
                f"CODECS={_quote(_codecs(video))},URI={_quote(uri)}"
            )
    return "\n".join(lines) + "\n"


def media_playlist(
    track: TrackView,
    *,
    fmt: HlsFormat,
    muxed_audio: TrackView | None = None,
    keyframes_only: bool = False,
    keyframe_range: KeyframeRange | None = None,
    query: str = "",
    keys: Sequence[HlsKey] = (),
) -> str:
    """A VOD media playlist for one track (or, for v3, a video track muxed with `muxed_audio`).

    Segment boundaries and EXTINF durations are the track's own segments (for v3, the video's:
    the TS muxer takes the audio samples of the same time span). EXTINF has 6 decimals; the
    target duration is the longest segment rounded up.

    `keyframes_only` writes the I-frame playlist (`#EXT-X-I-FRAMES-ONLY`): one entry per segment,
    the segment's first keyframe as a `#EXT-X-BYTERANGE` inside the normal segment URI, its EXTINF
    the segment's duration (segments start at sync samples, so this is the span until the next
    listed keyframe). The byte range depends on how the segment writer lays out the segment, so
    the caller supplies it through `keyframe_range`.
    """
    _check_format(fmt)
    info = track.info
    if muxed_audio is not None and fmt != "m3u8-aapl-v3":
        raise ValueError("only m3u8-aapl-v3 muxes audio into the video playlist")
    if keyframes_only:
        if fmt == "m3u8-aapl-v3":
            raise ValueError("I-frame playlists need HLS version 4; m3u8-aapl-v3 has none")
        if info.kind != "video":
            raise ValueError("I-frame playlists are for video tracks")
        if keyframe_range is None:
            raise ValueError("an I-frame playlist needs keyframe_range to locate each keyframe")
    name = track_name(info)
    ts = info.timescale
    extra = f",audiotrack={track_name(muxed_audio.info)}" if muxed_audio is not None else ""

    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{playlist_version(fmt)}",
        f"#EXT-X-TARGETDURATION:{target_duration(track)}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    if keyframes_only:
        lines.append("#EXT-X-I-FRAMES-ONLY")
    if info.kind == "video":
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    if fmt == "m3u8-cmaf":
        lines.append(f"#EXT-X-MAP:URI={_quote(_q(f'Fragments({name}=i,format={fmt}).mp4', query))}")
    lines.extend(key.line() for key in keys)
    for i, seg in enumerate(track.segments):
        lines.append(f"#EXTINF:{seg.duration / ts:.6f},no-desc")
        if keyframes_only:
            assert keyframe_range is not None
            offset, length = keyframe_range(track, i)
            lines.append(f"#EXT-X-BYTERANGE:{length}@{offset}")
        lines.append(_q(f"Fragments({name}={seg.start},format={fmt}{extra}){SEGMENT_SUFFIX[fmt]}", query))
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
