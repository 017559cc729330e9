"""The streaming URL grammar, parsed into a request description (pure, no I/O).

Relative to `/<locator-guid>/` the origin answers:

- `<file>` — progressive download of an MP4 (never `.ism*` files);
- `<name>.ism/Manifest[(<params>)]` — the top-level manifest of a format (Smooth when none);
- `<name>.ism/QualityLevels(<bitrate>)/Manifest(<track>,<params>)` — an HLS media playlist;
- `<name>.ism/QualityLevels(<bitrate>)/Fragments(<track>=<time>|i[,<params>])` — a segment
  (`i` is the init segment of fMP4 formats; no `format` means a Smooth fragment).

Keywords are matched case-insensitively, parameter values are not. A trailing `.m3u8` or `.mpd`
after the parentheses (`Manifest(format=m3u8-aapl).m3u8`), which some players need to pick a
protocol, is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

FORMATS = ("smooth", "fmp4-v20", "m3u8-aapl", "m3u8-aapl-v3", "m3u8-cmaf", "mpd-time-csf", "mpd-time-cmaf")
"""Every output the origin builds; `smooth` is the default (no `format=`)."""
NOT_BUILT_FORMATS = {"f4m-f4f": "Adobe HDS (format=f4m-f4f)"}
HLS_FORMATS = ("m3u8-aapl", "m3u8-aapl-v3", "m3u8-cmaf")
DASH_FORMATS = ("mpd-time-csf", "mpd-time-cmaf")
SMOOTH_FORMATS = ("smooth", "fmp4-v20")
MAX_FILTERS = 3
MAX_TIME = (1 << 63) - 1

_MANIFEST = re.compile(r"^manifest(?:\((?P<params>[^()]*)\))?(?:\.(?:m3u8|mpd|ism|ismc))?$", re.IGNORECASE)
_QUALITY = re.compile(r"^qualitylevels\((?P<bitrate>[^()]*)\)$", re.IGNORECASE)
_VARIANT = re.compile(r"^manifest\((?P<params>[^()]*)\)(?:\.m3u8)?$", re.IGNORECASE)
_FRAGMENT = re.compile(r"^fragments\((?P<params>[^()]*)\)(?:\.(?:ts|m4s|mp4|aac|m4a|m4v|cmfv|cmfa))?$",
                       re.IGNORECASE)
_TRACK = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class UrlError(ValueError):
    """The URL does not follow the grammar; `status` is 400 or 404, the message says what is wrong."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Params:
    format: str = "smooth"
    filters: tuple[str, ...] = ()
    audio_only: bool = True
    keyframes: bool = False
    audio_track: str | None = None
    encryption: str | None = None


@dataclass(frozen=True)
class OriginRequest:
    kind: str
    """`file`, `manifest`, `playlist` (HLS media playlist) or `fragment`."""
    name: str
    """The `.ism` name (without extension), or the file name for `file`."""
    params: Params = field(default_factory=Params)
    bitrate: int = 0
    track: str = ""
    time: int | None = None
    """Fragment start time in the format's time units; None for an init segment."""
    token: str = ""
    """A viewer token given as `?token=` on a manifest or playlist URL: carried into the playlists'
    URIs and the AES key URI, so players that cannot add headers (native HLS, FFmpeg) still
    present it to the key delivery service."""


def parse(rest: str) -> OriginRequest:
    """Parse the part of a streaming path after `/<locator-guid>/` (still percent-encoded)."""
    parts = rest.split("/")
    if not parts or not parts[0]:
        raise UrlError("the URL names no file or manifest after the locator id", 404)
    head = unquote(parts[0])
    if not head.lower().endswith(".ism"):
        if len(parts) != 1:
            raise UrlError(f"'{head}' is not a server manifest (.ism); only .ism paths have sub-resources", 404)
        return OriginRequest("file", head)
    name = head[:-4]
    if not name:
        raise UrlError("the manifest name before .ism is empty", 404)
    if len(parts) == 2:
        m = _MANIFEST.match(parts[1])
        if not m:
            raise UrlError(f"'{parts[1]}' is not a manifest request; expected Manifest or Manifest(format=…)", 404)
        return OriginRequest("manifest", name, _params(m.group("params") or "", allow_track=False)[0])
    if len(parts) == 3:
        q = _QUALITY.match(parts[1])
        if not q:
            raise UrlError(f"'{parts[1]}' is not QualityLevels(<bitrate>)", 404)
        bitrate = _bitrate(q.group("bitrate"))
        v = _VARIANT.match(parts[2])
        if v:
            params, track, _time = _params(v.group("params"), allow_track=True)
            if not track:
                raise UrlError("a playlist request must name its track: Manifest(<track>,format=…)")
            if params.format not in HLS_FORMATS:
                raise UrlError(f"track playlists exist only for HLS formats, not '{params.format}'")
            return OriginRequest("playlist", name, params, bitrate, track)
        f = _FRAGMENT.match(parts[2])
        if f:
            params, track, time = _params(f.group("params"), allow_track=True, fragment=True)
            if not track:
                raise UrlError("a fragment request must be Fragments(<track>=<time>)")
            return OriginRequest("fragment", name, params, bitrate, track, time)
        raise UrlError(f"'{parts[2]}' is neither Manifest(…) nor Fragments(…)", 404)
    raise UrlError("the URL has more path segments than the streaming grammar allows", 404)


def _bitrate(text: str) -> int:
    if not text.isdigit() or len(text) > 10:
        raise UrlError(f"QualityLevels({text}) must hold a bitrate in bits per second")
    return int(text)


def _params(text: str, *, allow_track: bool, fragment: bool = False) -> tuple[Params, str, int | None]:
    fmt = "smooth"
    filters: tuple[str, ...] = ()
    audio_only = True
    keyframes = False
    audio_track = None
    encryption = None
    track = ""
    time: int | None = None
    seen: set[str] = set()
    items = [p.strip() for p in unquote(text).split(",")] if text.strip() else []
    for i, item in enumerate(items):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        low = key.lower()
        if i == 0 and allow_track and low not in ("format", "filter", "audio-only", "type", "encryption",
                                                  "audiotrack"):
            if not _TRACK.match(key):
                raise UrlError(f"'{key}' is not a valid track name")
            track = key
            if fragment:
                if not eq:
                    raise UrlError(f"Fragments({key}) needs a start time: Fragments({key}=<time>)")
                if value.lower() == "i":
                    time = None
                elif value.isdigit() and len(value) <= 19 and int(value) <= MAX_TIME:
                    time = int(value)
                else:
                    raise UrlError(f"'{value}' is not a fragment start time (a non-negative integer, or i)")
            elif eq:
                raise UrlError(f"Manifest({item}) takes a track name, not a time")
            continue
        if not eq:
            raise UrlError(f"'{item}' is not a key=value parameter")
        if low in seen:
            raise UrlError(f"the parameter '{key}' is given twice")
        seen.add(low)
        if low == "format":
            if value in NOT_BUILT_FORMATS:
                raise UrlError(f"{NOT_BUILT_FORMATS[value]} is not supported by this origin", 501)
            if value not in FORMATS or value == "smooth":
                raise UrlError(f"unknown format '{value}'; known formats: {', '.join(FORMATS[1:])} "
                               "(no format = Smooth Streaming)")
            fmt = value
        elif low == "filter":
            filters = tuple(n.strip() for n in value.split(";"))
            if not all(filters):
                raise UrlError("filter= names an empty filter")
            if len(filters) > MAX_FILTERS:
                raise UrlError(f"at most {MAX_FILTERS} filters can be combined, not {len(filters)}")
        elif low == "audio-only":
            if value.lower() not in ("true", "false"):
                raise UrlError("audio-only must be true or false")
            audio_only = value.lower() == "true"
        elif low == "type":
            if value.lower() != "keyframes":
                raise UrlError(f"type={value} is unknown; only type=keyframes (I-frame playlists) exists")
            keyframes = True
        elif low == "audiotrack":
            if not _TRACK.match(value):
                raise UrlError(f"'{value}' is not a valid audio track name")
            audio_track = value
        elif low == "encryption":
            if value not in ("cbc", "cenc", "cbcs-aapl"):
                raise UrlError("encryption must be cbc, cenc or cbcs-aapl")
            encryption = value
        else:
            raise UrlError(f"unknown parameter '{key}'; known: format, filter, audio-only, type, audiotrack, "
                           "encryption")
    params = Params(fmt, filters, audio_only, keyframes, audio_track, encryption)
    return params, track, time
