"""Exceptions of the media library.

The library stands alone (it imports nothing of openams above it); callers translate these into
their own error catalogue. Every message is meant to be shown to the person who submitted the
media or the preset, so it names the file or the preset element and says what is wrong.
"""

from __future__ import annotations


class MediaError(Exception):
    """Base class: something about the media, the preset or the encoder is wrong."""


class NotMediaError(MediaError):
    """The input is not a media file this server can read (text, garbage, truncated, no streams)."""


class UnsafeInputError(MediaError):
    """The input is a playlist, concat script or another file that would make FFmpeg open other
    files or URLs. Such inputs are refused before any demuxer sees them."""


class PresetError(MediaError):
    """The preset (or preset name) is invalid. ``problems`` lists every issue found, each naming
    the preset element, e.g. ``Codecs[0].H264Layers[1].Width: must be an even number (got 641)``."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems or [message])


class FFmpegNotFoundError(MediaError):
    """No usable FFmpeg binary."""


class FFmpegError(MediaError):
    """FFmpeg exited with an error. ``stderr_tail`` holds its last lines of diagnostics."""

    def __init__(self, message: str, returncode: int | None = None, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class EncodeTimeoutError(FFmpegError):
    """FFmpeg ran longer than the allowed time and was killed."""


class EncodeCanceledError(MediaError):
    """The encode was canceled through its cancel event; FFmpeg was killed."""
