"""MPEG-DASH MPDs in the AMS dynamic-packaging shapes (`mpd-time-csf`, `mpd-time-cmaf`).

A static (VOD) MPD with one Period, `SegmentTemplate` + `SegmentTimeline` addressing (spec §2.2).
URLs are relative to `<name>.ism/`, where the MPD itself is served (spec §2.3):

- media:          `QualityLevels($Bandwidth$)/Fragments(<track name>=$Time$,format=<fmt>)`
- initialization: `QualityLevels($Bandwidth$)/Fragments(<track name>=i,format=<fmt>)`

`$Time$` is the segment's presentation time in the **track's own timescale** (the template's
`timescale` is the track's), so the origin finds the segment by exact match. `$Bandwidth$` is each
Representation's `bandwidth`, i.e. the track's bitrate: the URL only identifies a track if no two
tracks share a (name, bitrate) pair. The origin's indexer must guarantee that (nudge a bitrate by
1 bps when needed); `mpd` raises ValueError otherwise rather than serve ambiguous URLs.

When a filter has trimmed the start, the first segment no longer starts at 0; a
`presentationTimeOffset` equal to the presentation's first time is set so the Period still
starts at 0 and `mediaPresentationDuration` matches what is listed.

Content protection: `content_protection=` lists `ContentProtection` descriptors, written in that
order into every audio and video AdaptationSet (text is never encrypted). The usual set, built
with the helpers below, is `mp4_protection` (scheme `cenc`/`cbcs` + `cenc:default_KID`) followed
by one descriptor per DRM system: `clearkey_protection` (DASH-IF ClearKey with its licence URL),
`playready_protection` (`mspr:pro` + `cenc:pssh`), `widevine_protection` (`cenc:pssh`). A licence
URL is written as `<dashif:Laurl>` (namespace `https://dashif.org/CPS`), the element dash.js,
Shaka Player and ExoPlayer all read for any key system.

The DASH-IF ClearKey descriptor (`urn:uuid:e2719d58-…`) never carries a `cenc:pssh`. dash.js
(5.x) opens every ClearKey session with EME init data type `keyids`, i.e. a JSON
`{"kids": [...]}` document, and passes whatever init data the descriptor yields: a `cenc:pssh`
there would be handed over as binary box bytes under that JSON type, which Chromium's ClearKey
CDM rejects, so `generateRequest()` fails (dash.js error 113). Without it dash.js builds the JSON
from `cenc:default_KID`. The W3C common pssh still travels in the init segments (`moov/pssh`),
where Shaka Player and other EME players pick it up from the `encrypted` event as `cenc` data.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from lxml import etree

from openams.packaging.encryption import (
    CLEARKEY_DASH_SCHEME,
    PLAYREADY_SYSTEM_ID,
    WIDEVINE_SYSTEM_ID,
    SystemId,
)
from openams.packaging.filters import normalize_language
from openams.packaging.model import TrackInfo, TrackView
from openams.packaging.smooth import check_url_keys, track_name

__all__ = [
    "DASH_FORMATS",
    "MP4_PROTECTION_SCHEME",
    "DashContentProtection",
    "DashFormat",
    "clearkey_protection",
    "drm_protection",
    "frame_rate",
    "iso_duration",
    "kid_uuid",
    "mp4_protection",
    "mpd",
    "playready_protection",
    "timeline_entries",
    "widevine_protection",
]

DashFormat = Literal["mpd-time-csf", "mpd-time-cmaf"]
DASH_FORMATS: tuple[str, ...] = ("mpd-time-csf", "mpd-time-cmaf")

MPD_NS = "urn:mpeg:dash:schema:mpd:2011"
CENC_NS = "urn:mpeg:cenc:2013"
MSPR_NS = "urn:microsoft:playready"
DASHIF_NS = "https://dashif.org/CPS"
MP4_PROTECTION_SCHEME = "urn:mpeg:dash:mp4protection:2011"
PROFILE_LIVE = "urn:mpeg:dash:profile:isoff-live:2011"
PROFILE_CMAF = "urn:mpeg:dash:profile:cmaf:2019"
CHANNEL_SCHEME = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
ROLE_SCHEME = "urn:mpeg:dash:role:2011"

_STANDARD_RATES = [Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30),
                   Fraction(48), Fraction(50), Fraction(60000, 1001), Fraction(60), Fraction(15),
                   Fraction(12), Fraction(25, 2), Fraction(100), Fraction(120000, 1001), Fraction(120)]


@dataclass(frozen=True)
class DashContentProtection:
    """One `<ContentProtection>` descriptor, repeated in every audio/video AdaptationSet.

    For the `mp4protection` descriptor give `scheme_id_uri="urn:mpeg:dash:mp4protection:2011"`,
    `value="cenc"` or `"cbcs"` and `default_kid` (UUID form); for a DRM system its
    `urn:uuid:<system id>` and optionally the `pssh` box (→ `cenc:pssh`), a PlayReady Object
    (→ `mspr:pro`) and the licence server URL (→ `dashif:Laurl`). The helper functions
    below build the usual ones.
    """

    scheme_id_uri: str
    value: str | None = None
    default_kid: str | None = None
    pssh: bytes | None = None
    pro: bytes | None = None
    laurl: str | None = None


def kid_uuid(key_id: bytes) -> str:
    """A 16-byte key id in the UUID form of `cenc:default_KID` (`00112233-4455-…`)."""
    if len(key_id) != 16:
        raise ValueError("a key id is 16 bytes")
    return str(uuid.UUID(bytes=bytes(key_id)))


def mp4_protection(scheme: Literal["cenc", "cbcs"], key_id: bytes) -> DashContentProtection:
    """The `urn:mpeg:dash:mp4protection:2011` descriptor: which scheme, which default key."""
    if scheme not in ("cenc", "cbcs"):
        raise ValueError(f"not a CENC scheme: {scheme!r}")
    return DashContentProtection(MP4_PROTECTION_SCHEME, value=scheme, default_kid=kid_uuid(key_id))


def drm_protection(system_id: SystemId, *, value: str | None = None, pssh: bytes | None = None,
                   pro: bytes | None = None, laurl: str | None = None) -> DashContentProtection:
    """A DRM system's descriptor, `urn:uuid:<system id>` (lower case, as players compare it)."""
    if isinstance(system_id, uuid.UUID):
        text = str(system_id)
    elif isinstance(system_id, bytes):
        text = str(uuid.UUID(bytes=system_id))
    else:
        text = str(uuid.UUID(system_id))
    return DashContentProtection(f"urn:uuid:{text}", value=value, pssh=pssh, pro=pro, laurl=laurl)


def clearkey_protection(laurl: str) -> DashContentProtection:
    """DASH-IF ClearKey (`urn:uuid:e2719d58-…`, value `ClearKey1.0`) pointing players at the
    licence URL that answers EME ClearKey licence requests. It has no `cenc:pssh`: the W3C common
    pssh belongs in the init segments (see the module docstring)."""
    return DashContentProtection(CLEARKEY_DASH_SCHEME, value="ClearKey1.0", laurl=laurl)


def playready_protection(pro: bytes, *, pssh: bytes | None = None, laurl: str | None = None) -> DashContentProtection:
    """PlayReady: the PlayReady Object as `mspr:pro` (older clients) and as a `pssh` box (EME)."""
    return drm_protection(PLAYREADY_SYSTEM_ID, value="MSPR 2.0", pssh=pssh, pro=pro, laurl=laurl)


def widevine_protection(pssh: bytes, *, laurl: str | None = None) -> DashContentProtection:
    """Widevine: its `pssh` box (`encryption.widevine_pssh`) and optionally the proxy URL."""
    return drm_protection(WIDEVINE_SYSTEM_ID, pssh=pssh, laurl=laurl)


def frame_rate(view: TrackView) -> Fraction | None:
    """A video track's frame rate: `extra["frame_rate"]` when the indexer recorded one (`25`,
    `30000/1001`), else samples per second over all but the last segment (whose last frame is
    often stretched to the audio end), snapped to a standard rate when within 0.2 %."""
    given = view.info.extra.get("frame_rate")
    if given:
        try:
            rate = Fraction(given)
        except (ValueError, ZeroDivisionError):
            rate = None
        if rate and rate > 0:
            return rate
    segments = view.segments[:-1] if len(view.segments) > 1 else view.segments
    samples = sum(s.sample_count for s in segments)
    duration = sum(s.duration for s in segments)
    if view.info.kind != "video" or samples <= 0 or duration <= 0:
        return None
    rate = Fraction(samples * view.info.timescale, duration)
    for standard in _STANDARD_RATES:
        if abs(rate - standard) <= standard * Fraction(2, 1000):
            return standard
    return rate.limit_denominator(1001)


def _rate_text(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def iso_duration(seconds: Fraction | float) -> str:
    """An xs:duration in seconds, to the millisecond: `PT10.03S`, `PT0S`."""
    ms = round(Fraction(seconds) * 1000)
    whole, frac = divmod(ms, 1000)
    text = f"{whole}.{frac:03d}".rstrip("0").rstrip(".") if frac else str(whole)
    return f"PT{text}S"


def timeline_entries(view: TrackView) -> list[tuple[int | None, int, int]]:
    """`(t, d, r)` of the `<S>` elements: runs of equal, contiguous durations are one entry with
    `r` extra repeats; `t` is given on the first entry and after any gap or overlap, else None."""
    entries: list[list[int | None]] = []
    expected: int | None = None
    for seg in view.segments:
        if entries and seg.start == expected and entries[-1][1] == seg.duration:
            entries[-1][2] += 1  # type: ignore[operator]
        else:
            entries.append([seg.start if seg.start != expected else None, seg.duration, 0])
        expected = seg.start + seg.duration
    return [(e[0], e[1], e[2]) for e in entries]  # type: ignore[misc]


def _family(info: TrackInfo) -> str:
    """Codec family, so renditions a player cannot switch between seamlessly (AVC vs HEVC) land
    in separate AdaptationSets."""
    head = (info.codec.split(".")[0] or info.fourcc).lower()
    return {"avc3": "avc1", "hev1": "hvc1", "ec+3": "ec-3"}.get(head, head)


def _sets(tracks: Sequence[TrackView]) -> list[list[TrackView]]:
    """AdaptationSets: tracks grouped by (kind, name, language, codec family); video first, then
    audio, then text, each in first-seen order; representations by descending bitrate."""
    groups: dict[tuple[str, str, str, str], list[TrackView]] = {}
    for view in tracks:
        info = view.info
        key = (info.kind, track_name(info), normalize_language(info.language), _family(info))
        groups.setdefault(key, []).append(view)
    order = {"video": 0, "audio": 1, "text": 2}
    keys = sorted(groups, key=lambda k: order.get(k[0], 3))  # stable: first-seen order within a kind
    return [sorted(groups[k], key=lambda v: -v.info.bitrate) for k in keys]


def _mime(kind: str) -> str:
    return {"video": "video/mp4", "audio": "audio/mp4"}.get(kind, "application/mp4")


def _template(parent: etree._Element, view: TrackView, fmt: str, query: str, pto: int) -> None:
    name = track_name(view.info)
    suffix = ("?" + query.replace("$", "$$")) if query else ""
    el = etree.SubElement(parent, "SegmentTemplate")
    el.set("timescale", str(view.info.timescale))
    if pto:
        el.set("presentationTimeOffset", str(pto))
    el.set("media", f"QualityLevels($Bandwidth$)/Fragments({name}=$Time$,format={fmt}){suffix}")
    el.set("initialization", f"QualityLevels($Bandwidth$)/Fragments({name}=i,format={fmt}){suffix}")
    timeline = etree.SubElement(el, "SegmentTimeline")
    for t, d, r in timeline_entries(view):
        s = etree.SubElement(timeline, "S")
        if t is not None:
            s.set("t", str(t))
        s.set("d", str(d))
        if r:
            s.set("r", str(r))


def _writes_pssh(item: DashContentProtection) -> bool:
    """Whether the descriptor's `cenc:pssh` goes into the MPD: never for DASH-IF ClearKey, whose
    init data dash.js must derive from `cenc:default_KID` (see the module docstring)."""
    return bool(item.pssh) and item.scheme_id_uri.lower() != CLEARKEY_DASH_SCHEME


def _protection(parent: etree._Element, items: Sequence[DashContentProtection]) -> None:
    for item in items:
        el = etree.SubElement(parent, "ContentProtection")
        el.set("schemeIdUri", item.scheme_id_uri)
        if item.value:
            el.set("value", item.value)
        if item.default_kid:
            el.set(f"{{{CENC_NS}}}default_KID", item.default_kid)
        if item.pssh and _writes_pssh(item):
            etree.SubElement(el, f"{{{CENC_NS}}}pssh").text = base64.b64encode(item.pssh).decode("ascii")
        if item.pro:
            etree.SubElement(el, f"{{{MSPR_NS}}}pro").text = base64.b64encode(item.pro).decode("ascii")
        if item.laurl:
            etree.SubElement(el, f"{{{DASHIF_NS}}}Laurl").text = item.laurl


def mpd(
    tracks: Sequence[TrackView],
    *,
    fmt: DashFormat,
    duration_seconds: float | None = None,
    base_query: str = "",
    content_protection: Sequence[DashContentProtection] = (),
) -> str:
    """The MPD for a VOD presentation.

    One AdaptationSet per (kind, track name, language, codec family) — in practice one for all
    video rungs and one per audio language; the default (first) audio set has Role `main`, other
    audio sets `alternate`. The SegmentTemplate sits on the AdaptationSet when every
    Representation shares one timeline and timescale (the usual GOP-aligned ladder), else on each
    Representation. `duration_seconds` overrides the computed duration (last segment end minus
    the presentation's first time). `base_query` is appended to every segment URL as `?…`.
    """
    if fmt not in DASH_FORMATS:
        raise ValueError(f"not a DASH format: {fmt!r} (expected one of {', '.join(DASH_FORMATS)})")
    live = [t for t in tracks if t.segments and t.info.kind in ("video", "audio", "text")]
    check_url_keys(live)
    query = base_query.lstrip("?")
    first = min((Fraction(t.segments[0].start, t.info.timescale) for t in live), default=Fraction(0))
    first = max(first, Fraction(0))
    last = max((Fraction(t.end, t.info.timescale) for t in live), default=Fraction(0))
    duration = Fraction(duration_seconds) if duration_seconds is not None else last - first
    longest = max((Fraction(s.duration, t.info.timescale) for t in live for s in t.segments), default=Fraction(0))

    nsmap: dict[str | None, str] = {None: MPD_NS}
    if any(p.default_kid or _writes_pssh(p) for p in content_protection):
        nsmap["cenc"] = CENC_NS
    if any(p.pro for p in content_protection):
        nsmap["mspr"] = MSPR_NS
    if any(p.laurl for p in content_protection):
        nsmap["dashif"] = DASHIF_NS
    root = etree.Element("MPD", nsmap=nsmap)
    root.set("type", "static")
    root.set("profiles", PROFILE_LIVE + ("," + PROFILE_CMAF if fmt == "mpd-time-cmaf" else ""))
    root.set("mediaPresentationDuration", iso_duration(duration))
    root.set("maxSegmentDuration", iso_duration(longest))
    root.set("minBufferTime", "PT2S")
    period = etree.SubElement(root, "Period")
    period.set("id", "0")
    period.set("start", "PT0S")

    main_audio_done = False
    for set_index, group in enumerate(_sets(live)):
        head = group[0].info
        kind = head.kind
        aset = etree.SubElement(period, "AdaptationSet")
        aset.set("id", str(set_index))
        aset.set("contentType", kind)
        aset.set("mimeType", _mime(kind))
        aset.set("segmentAlignment", "true")
        aset.set("startWithSAP", "1")
        language = normalize_language(head.language)
        if kind != "video" and language != "und":
            aset.set("lang", language)
        if kind == "video":
            aset.set("maxWidth", str(max(v.info.width for v in group)))
            aset.set("maxHeight", str(max(v.info.height for v in group)))
            rates = [r for r in (frame_rate(v) for v in group) if r]
            if rates:
                aset.set("maxFrameRate", _rate_text(max(rates)))
        if kind in ("video", "audio"):
            _protection(aset, content_protection)
        role = "main"
        if kind == "audio":
            role = "alternate" if main_audio_done else "main"
            main_audio_done = True
        elif kind == "text":
            role = "subtitle"
        etree.SubElement(aset, "Role", schemeIdUri=ROLE_SCHEME, value=role)

        ptos = [_pto(first, v.info.timescale) for v in group]
        shared = all(
            v.info.timescale == head.timescale and track_name(v.info) == track_name(head)
            and _times(v) == _times(group[0]) for v in group
        )
        if shared:
            _template(aset, group[0], fmt, query, ptos[0])
        for view, pto in zip(group, ptos, strict=True):
            info = view.info
            rep = etree.SubElement(aset, "Representation")
            rep.set("id", f"{track_name(info)}_{info.bitrate}".replace(" ", "_"))
            rep.set("bandwidth", str(info.bitrate))
            codecs = info.codec or (info.fourcc if kind == "text" else "")
            if codecs:
                rep.set("codecs", codecs)
            if kind == "video":
                rep.set("width", str(info.width))
                rep.set("height", str(info.height))
                rate = frame_rate(view)
                if rate:
                    rep.set("frameRate", _rate_text(rate))
            elif kind == "audio":
                if info.sample_rate:
                    rep.set("audioSamplingRate", str(info.sample_rate))
                if info.channels:
                    etree.SubElement(rep, "AudioChannelConfiguration", schemeIdUri=CHANNEL_SCHEME,
                                     value=str(info.channels))
            if not shared:
                _template(rep, view, fmt, query, pto)

    body = etree.tostring(root, encoding="unicode", pretty_print=True)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body


def _times(view: TrackView) -> list[tuple[int, int]]:
    return [(s.start, s.duration) for s in view.segments]


def _pto(first: Fraction, timescale: int) -> int:
    """The presentation's first time in a track's timescale, rounded down so no segment starts
    before the Period."""
    return int(first * timescale)

