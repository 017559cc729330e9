"""`GET /api/Formats`: the file extensions the Connector lists, with their MIME types.

The list is the one the Connector's reference sample returns (spec §6.2), in that order and with
its MIME types as given (including `mp4` → `audio/mp4`). It is informative: a video is accepted
with any extension, and whether the file is media is decided by the encoder (a file that is not
ends the video in the Failed status with the encoder's reason).
"""

from __future__ import annotations

_GROUPS: tuple[tuple[str, str], ...] = (
    ("aif aifc aiff", "audio/x-aiff"),
    ("au", "audio/basic"),
    ("avi", "video/x-msvideo"),
    ("dif dv", "video/x-dv"),
    ("m3u", "audio/x-mpegurl"),
    ("m4a m4b m4p", "audio/mp4a-latm"),
    ("m4u mxu", "video/vnd.mpegurl"),
    ("m4v", "video/x-m4v"),
    ("mid midi", "audio/midi"),
    ("mov qt", "video/quicktime"),
    ("movie", "video/x-sgi-movie"),
    ("mp2 mp3 mpe mpeg mpg mpga", "audio/mpeg"),
    ("mp4", "audio/mp4"),
    ("ra ram", "audio/x-pn-realaudio"),
    ("wav", "audio/x-wav"),
    ("asf asx", "video/x-ms-asf"),
    ("wma", "audio/x-ms-wma"),
    ("wax", "audio/x-ms-wax"),
    ("wmv", "audio/x-ms-wmv"),
    ("wvx", "video/x-ms-wvx"),
    ("wm", "video/x-ms-wm"),
    ("wmx", "video/x-ms-wmx"),
)

FORMATS: tuple[dict[str, str], ...] = tuple(
    {"Extension": ext, "MimeType": mime} for exts, mime in _GROUPS for ext in exts.split())
