"""Dynamic manifests: applying Filters and AssetFilters to a presentation (spec §2.6, §7.1).

A manifest URL may name up to three filters (`filter=a;b;c`); each one trims the presentation in
time and/or selects tracks, and they combine by intersection. This module turns a stored
Filter/AssetFilter entity into a `FilterSpec` (validating it, because a filter stored by an older
or lenient API path must still fail with a clear message rather than produce an empty manifest)
and applies a list of them to `TrackView`s before any manifest writer sees the tracks — so every
protocol trims identically.

Time trimming is GOP-accurate in the way AMS described it: whole segments (which start at a sync
sample) are kept or dropped, never cut. A segment is kept when it overlaps the range
[start, end): the start rounds back to the segment containing it, and a segment straddling the end
is kept whole. The spec digest words the start as "rounded to the next GOP start"; keeping the
containing segment is the reading that never loses requested media.

Track selection: conditions inside one `FilterTrackSelect` are ANDed, separate selects are ORed,
a filter with no `Tracks` keeps every track. Language values compare by primary subtag after
mapping ISO 639-2 three-letter codes to their two-letter ISO 639-1 equivalents (see
`normalize_language`), so `en` selects tracks tagged `en`, `en-US`, `eng`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal

from openams.packaging.model import SMOOTH_TIMESCALE, TrackInfo, TrackView
from openams.packaging.smooth import track_name

__all__ = [
    "INT64_MAX",
    "FilterError",
    "FilterSpec",
    "TimeRange",
    "TrackCondition",
    "apply_filters",
    "first_quality",
    "normalize_language",
]

INT64_MAX = 9_223_372_036_854_775_807
"""Int64.MaxValue: what the SDK writes for "no end" and "no window"."""

MIN_WINDOW_SECONDS = 120
MAX_LIVE_BACKOFF_SECONDS = 60

Property = Literal["type", "name", "language", "fourcc", "bitrate"]
_PROPERTIES: dict[str, Property] = {
    "type": "type", "name": "name", "language": "language", "fourcc": "fourcc", "bitrate": "bitrate",
}
_OPERATORS = {"equal": False, "notequal": True, "0": False, "1": True}
_TYPES = {"video", "audio", "text"}
_BITRATE = re.compile(r"^\s*(\d*)\s*(-)?\s*(\d*)\s*$")

# ISO 639-2 (bibliographic and terminology forms) → ISO 639-1, for the languages media is
# commonly tagged with. MP4 `mdhd` stores three-letter codes while filters and players use
# BCP 47, so without this a filter `Language=en` would miss every track an encoder tagged `eng`.
_ISO639_2_TO_1 = {
    "afr": "af", "alb": "sq", "sqi": "sq", "amh": "am", "ara": "ar", "arm": "hy", "hye": "hy", "aze": "az",
    "baq": "eu", "eus": "eu", "bel": "be", "ben": "bn", "bos": "bs", "bul": "bg", "bur": "my", "mya": "my",
    "cat": "ca", "chi": "zh", "zho": "zh", "hrv": "hr", "cze": "cs", "ces": "cs", "dan": "da", "dut": "nl",
    "nld": "nl", "eng": "en", "est": "et", "fil": "tl", "tgl": "tl", "fin": "fi", "fre": "fr", "fra": "fr",
    "geo": "ka", "kat": "ka", "ger": "de", "deu": "de", "gle": "ga", "glg": "gl", "gre": "el", "ell": "el",
    "guj": "gu", "heb": "he", "hin": "hi", "hun": "hu", "ice": "is", "isl": "is", "ind": "id", "ita": "it",
    "jpn": "ja", "kan": "kn", "kaz": "kk", "khm": "km", "kor": "ko", "lao": "lo", "lat": "la", "lav": "lv",
    "lit": "lt", "mac": "mk", "mkd": "mk", "may": "ms", "msa": "ms", "mal": "ml", "mlt": "mt", "mar": "mr",
    "mon": "mn", "nep": "ne", "nor": "no", "nob": "nb", "nno": "nn", "per": "fa", "fas": "fa", "pol": "pl",
    "por": "pt", "pan": "pa", "rum": "ro", "ron": "ro", "rus": "ru", "srp": "sr", "sin": "si", "slo": "sk",
    "slk": "sk", "slv": "sl", "som": "so", "spa": "es", "swa": "sw", "swe": "sv", "tam": "ta", "tel": "te",
    "tha": "th", "tur": "tr", "ukr": "uk", "urd": "ur", "uzb": "uz", "vie": "vi", "wel": "cy", "cym": "cy",
    "yid": "yi", "zul": "zu", "wol": "wo", "yor": "yo", "hau": "ha", "ibo": "ig", "xho": "xh",
}


class FilterError(ValueError):
    """A filter that cannot be applied: a malformed value, or a result with nothing left to play."""


def normalize_language(tag: str) -> str:
    """A language tag in BCP 47 form: lower-case, `-` separated, two-letter primary when one exists.

    `eng` → `en`, `en_US` → `en-us`, `fre` → `fr`; unknown three-letter codes are kept as they
    are (valid BCP 47 for languages without a two-letter code). Empty → `und`.
    """
    parts = [p for p in re.split(r"[-_]", tag.strip().lower()) if p]
    if not parts:
        return "und"
    parts[0] = _ISO639_2_TO_1.get(parts[0], parts[0])
    return "-".join(parts)


def _language_matches(wanted: str, actual: str) -> bool:
    """`wanted` (a filter value) matches `actual` when it is a subtag-wise prefix of it."""
    w = normalize_language(wanted).split("-")
    a = normalize_language(actual).split("-")
    return a[: len(w)] == w


# --------------------------------------------------------------------------------------------
# The filter model


@dataclass(frozen=True)
class TrackCondition:
    """One FilterTrackPropertyCondition, parsed."""

    property: Property
    value: str
    negate: bool = False
    bitrate_range: tuple[int, int | None] | None = None
    """For `Bitrate`: inclusive (low, high); high None means no upper bound."""

    def matches(self, info: TrackInfo) -> bool:
        return self._equal(info) != self.negate

    def _equal(self, info: TrackInfo) -> bool:
        value = self.value
        if self.property == "type":
            return info.kind == value.lower()
        if self.property == "name":
            return track_name(info).casefold() == value.casefold()
        if self.property == "language":
            return _language_matches(value, info.language)
        if self.property == "fourcc":
            wanted = value.lower()
            return wanted in (info.codec.split(".")[0].lower(), info.fourcc.lower())
        assert self.bitrate_range is not None
        low, high = self.bitrate_range
        return info.bitrate >= low and (high is None or info.bitrate <= high)


@dataclass(frozen=True)
class TimeRange:
    """A PresentationTimeRange, as exact fractions of a second; None means unset."""

    start: Fraction | None = None
    end: Fraction | None = None
    window: Fraction | None = None
    live_backoff: Fraction | None = None

    @property
    def is_unbounded(self) -> bool:
        return self.start is None and self.end is None and self.window is None and self.live_backoff is None


@dataclass(frozen=True)
class FilterSpec:
    """A Filter or AssetFilter, ready to apply."""

    name: str = ""
    time_range: TimeRange = field(default_factory=TimeRange)
    tracks: tuple[tuple[TrackCondition, ...], ...] = ()
    """FilterTrackSelects (ORed), each a tuple of conditions (ANDed); empty = every track."""
    first_quality: int | None = None

    @classmethod
    def from_entity(cls, d: Mapping[str, Any]) -> FilterSpec:
        """Build from a Filter/AssetFilter entity dict as stored or as posted.

        Accepts Int64 values as numbers or strings (OData v3 JSON sends strings), verbose-JSON
        collection wrappers (`{"results": [...]}`), and any letter case in property names.
        Raises FilterError naming the filter and the bad value.
        """
        name = str(_get(d, "Name") or "")
        label = f"filter {name!r}" if name else "filter"
        try:
            time_range = _parse_time_range(_get(d, "PresentationTimeRange"))
            tracks = tuple(_parse_select(sel) for sel in _collection(_get(d, "Tracks"), "Tracks"))
            first = _parse_first_quality(_get(d, "FirstQuality"))
        except FilterError as exc:
            raise FilterError(f"{label}: {exc}") from None
        return cls(name=name, time_range=time_range, tracks=tracks, first_quality=first)

    def selects(self, info: TrackInfo) -> bool:
        """Whether this filter's track selection keeps a track."""
        if not self.tracks:
            return True
        return any(all(c.matches(info) for c in select) for select in self.tracks)


def _get(d: Any, key: str) -> Any:
    if not isinstance(d, Mapping):
        return None
    if key in d:
        return d[key]
    lowered = key.lower()
    for k, v in d.items():
        if isinstance(k, str) and k.lower() == lowered:
            return v
    return None


def _collection(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Mapping) and "results" in value:
        value = value["results"]
    if not isinstance(value, list | tuple):
        raise FilterError(f"{what} must be a list, got {type(value).__name__}")
    return list(value)


def _int64(value: Any, what: str) -> int | None:
    """An Edm.Int64 given as int or string; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise FilterError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value)) or (
        isinstance(value, float) and value.is_integer()
    ):
        number = int(value)
    else:
        raise FilterError(f"{what} must be an integer, got {value!r}")
    if number < 0:
        raise FilterError(f"{what} must not be negative, got {number}")
    return number


def _parse_time_range(raw: Any) -> TimeRange:
    if raw is None:
        return TimeRange()
    if not isinstance(raw, Mapping):
        raise FilterError("PresentationTimeRange must be an object")
    timescale = _int64(_get(raw, "Timescale"), "PresentationTimeRange.Timescale")
    if timescale is None:
        timescale = SMOOTH_TIMESCALE
    if timescale == 0:
        raise FilterError("PresentationTimeRange.Timescale must be positive")

    def seconds(key: str, *, max_means_unset: bool) -> Fraction | None:
        value = _int64(_get(raw, key), f"PresentationTimeRange.{key}")
        if value is None or (max_means_unset and value == INT64_MAX):
            return None
        return Fraction(value, timescale)

    start = seconds("StartTimestamp", max_means_unset=False)
    end = seconds("EndTimestamp", max_means_unset=True)
    window = seconds("PresentationWindowDuration", max_means_unset=True)
    backoff = seconds("LiveBackoffDuration", max_means_unset=True)
    if start == 0:
        start = None  # the SDK's "unset" start; equivalent to no trim
    if backoff == 0:
        backoff = None
    if start is not None and end is not None and start > end:
        raise FilterError(
            f"PresentationTimeRange.StartTimestamp ({float(start):g} s) is after EndTimestamp ({float(end):g} s)"
        )
    if window is not None and window < MIN_WINDOW_SECONDS:
        raise FilterError(
            f"PresentationTimeRange.PresentationWindowDuration must be at least {MIN_WINDOW_SECONDS} s, "
            f"got {float(window):g} s"
        )
    if backoff is not None and backoff > MAX_LIVE_BACKOFF_SECONDS:
        raise FilterError(
            f"PresentationTimeRange.LiveBackoffDuration must be at most {MAX_LIVE_BACKOFF_SECONDS} s, "
            f"got {float(backoff):g} s"
        )
    force_end = _get(raw, "ForceEndTimestamp")
    if force_end in (True, "true", "True") and end is None:
        raise FilterError("PresentationTimeRange.ForceEndTimestamp requires an EndTimestamp")
    return TimeRange(start=start, end=end, window=window, live_backoff=backoff)


def _parse_select(raw: Any) -> tuple[TrackCondition, ...]:
    if not isinstance(raw, Mapping):
        raise FilterError("each Tracks entry must be an object with PropertyConditions")
    conditions = _collection(_get(raw, "PropertyConditions"), "PropertyConditions")
    if not conditions:
        raise FilterError("a Tracks entry has no PropertyConditions")
    return tuple(_parse_condition(c) for c in conditions)


def _parse_condition(raw: Any) -> TrackCondition:
    if not isinstance(raw, Mapping):
        raise FilterError("a PropertyCondition must be an object with Property, Value and Operator")
    prop_raw = _get(raw, "Property")
    prop = _PROPERTIES.get(str(prop_raw).strip().lower()) if prop_raw is not None else None
    if prop is None:
        raise FilterError(f"unknown track Property {prop_raw!r} (expected Type, Name, Language, FourCC or Bitrate)")
    op_raw = _get(raw, "Operator")
    op_key = "equal" if op_raw is None else str(op_raw).strip().lower()
    if op_key not in _OPERATORS:
        raise FilterError(f"unknown Operator {op_raw!r} for {prop_raw} (expected Equal or NotEqual)")
    value_raw = _get(raw, "Value")
    value = "" if value_raw is None else str(value_raw).strip()
    if not value:
        raise FilterError(f"track Property {prop_raw} has no Value")
    bitrate_range = None
    if prop == "type" and value.lower() not in _TYPES:
        raise FilterError(f"track Type {value!r} is not video, audio or text")
    if prop == "bitrate":
        bitrate_range = _parse_bitrate(value)
    return TrackCondition(property=prop, value=value, negate=_OPERATORS[op_key], bitrate_range=bitrate_range)


def _parse_bitrate(value: str) -> tuple[int, int | None]:
    """`n`, `low-high`, `low-` or `-high` → inclusive (low, high)."""
    m = _BITRATE.match(value)
    if not m or not (m.group(1) or m.group(3)) or (not m.group(2) and m.group(3)):
        raise FilterError(f"malformed Bitrate {value!r} (expected n, low-high, low- or -high)")
    low_s, dash, high_s = m.groups()
    low = int(low_s) if low_s else 0
    if not dash:
        return (low, low)
    high = int(high_s) if high_s else None
    if high is not None and low > high:
        raise FilterError(f"Bitrate range {value!r} has its low bound above its high bound")
    return (low, high)


def _parse_first_quality(raw: Any) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise FilterError("FirstQuality must be an object with a Bitrate")
    bitrate = _int64(_get(raw, "Bitrate"), "FirstQuality.Bitrate")
    if bitrate == 0:
        return None
    return bitrate


# --------------------------------------------------------------------------------------------
# Applying filters


def first_quality(filters: Sequence[FilterSpec]) -> int | None:
    """The bitrate HLS should list first: the first filter (in URL order) that sets one."""
    for spec in filters:
        if spec.first_quality is not None:
            return spec.first_quality
    return None


def _window(tracks: Sequence[TrackView], filters: Sequence[FilterSpec], live: bool) -> tuple[Fraction, Fraction]:
    """The combined [start, end) kept, in seconds: the intersection of every filter's range.

    For VOD a PresentationWindowDuration keeps the last `window` seconds of the presentation and
    LiveBackoffDuration is ignored. For live, the right edge is the live edge held back by the
    largest backoff, EndTimestamp is ignored (spec: it applies once the presentation is VOD),
    and the window is measured back from that edge.
    """
    edge = max((Fraction(t.end, t.info.timescale) for t in tracks if t.segments), default=Fraction(0))
    lo = Fraction(-(10**30))
    hi = Fraction(10**30)
    if live:
        backoffs = [f.time_range.live_backoff for f in filters if f.time_range.live_backoff is not None]
        if backoffs:
            edge -= max(backoffs)
        hi = edge
    for spec in filters:
        r = spec.time_range
        if r.start is not None:
            lo = max(lo, r.start)
        if r.end is not None and not live:
            hi = min(hi, r.end)
        if r.window is not None:
            lo = max(lo, edge - r.window)
    return lo, hi


def _trim(view: TrackView, lo: Fraction, hi: Fraction, *, live: bool) -> TrackView:
    """Keep the segments overlapping [lo, hi); for live, also drop segments ending past hi (the
    held-back edge) so the player is never offered media beyond it."""
    ts = view.info.timescale
    lo_n = lo * ts  # exact, in track units
    hi_n = hi * ts
    kept = tuple(
        s for s in view.segments
        if s.start + s.duration > lo_n and s.start < hi_n and (not live or s.start + s.duration <= hi_n)
    )
    if len(kept) == len(view.segments):
        return view
    return replace(view, segments=kept)


def apply_filters(
    tracks: Sequence[TrackView], filters: Sequence[FilterSpec], *, live: bool = False
) -> list[TrackView]:
    """The presentation as the combined filters allow it (every filter must keep a track/segment).

    Tracks keep their order; tracks left with no segments are dropped (so a kind the filters
    select nothing of simply disappears from the manifest). Raises FilterError when the
    filters select no track at all, or leave no media in the time range.
    """
    if not filters:
        return list(tracks)
    names = ", ".join(repr(f.name) for f in filters if f.name) or "the filter"
    selected = [t for t in tracks if all(f.selects(t.info) for f in filters)]
    if not selected:
        raise FilterError(f"{names} selects no tracks")
    if all(f.time_range.is_unbounded for f in filters) and not live:
        return selected
    lo, hi = _window(tracks, filters, live)
    if lo >= hi:
        raise FilterError(f"{names}: the presentation time range is empty")
    trimmed = [v for v in (_trim(t, lo, hi, live=live) for t in selected) if v.segments]
    if not trimmed:
        raise FilterError(f"{names}: the presentation time range selects no media")
    return trimmed
