"""Filters (global, keyed by Name) and AssetFilters (bound to one asset): dynamic-manifest rules
that trim the presentation time range and select tracks. A manifest URL names up to three of them
(`filter=a;b;c`); an asset filter wins over a global filter of the same name.

Values are validated and stored normalized, so the origin can apply them without re-checking:
PresentationTimeRange with every member filled in (the SDK's defaults: Timescale 10,000,000,
StartTimestamp 0, EndTimestamp and PresentationWindowDuration Int64.MaxValue meaning "none",
LiveBackoffDuration 0, ForceEndTimestamp false); track conditions with the canonical spelling of
Property and Operator and lower-case Type values.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import BadRequest, Conflict, NotFound
from ..model.complex import INT64_MAX
from ..model.enums import FILTER_TRACK_COMPARE_OPERATOR, FILTER_TRACK_PROPERTIES, FILTER_TRACK_TYPE
from ..model.streaming import ASSET_FILTER_ID_SEPARATOR
from ..odata.payload import EntityPayload
from .base import Ctx, Rules

NAME_RE = re.compile(r"^[A-Za-z0-9_.~-]{1,128}$")
"""Filter names go verbatim into manifest URLs (`filter=a;b`): no separators, no reserved characters."""
MAX_FILTERS_PER_REQUEST = 3
TIMESCALE = 10_000_000
MIN_WINDOW_SECONDS = 120
MAX_BACKOFF_SECONDS = 60
TRACK_TYPES = tuple(t.lower() for t in FILTER_TRACK_TYPE)
_BITRATE_RE = re.compile(r"^(\d+)$|^(\d*)-(\d*)$")


def validate_name(name: Any, what: str) -> str:
    if name in (None, ""):
        raise BadRequest(f"{what}.Name is required.", code="MissingProperty")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadRequest(f"{what}.Name '{name}' is not valid: use up to 128 letters, digits, '-', '_', '.' or '~' "
                         "(the name is written into manifest URLs).")
    return name


def normalize_time_range(ptr: dict[str, Any] | None) -> dict[str, Any] | None:
    if ptr is None:
        return None
    defaults = {"StartTimestamp": 0, "EndTimestamp": INT64_MAX, "PresentationWindowDuration": INT64_MAX,
                "LiveBackoffDuration": 0, "Timescale": TIMESCALE, "ForceEndTimestamp": False}
    out = {k: (ptr.get(k) if ptr.get(k) is not None else v) for k, v in defaults.items()}
    ts = out["Timescale"]
    if ts <= 0:
        raise BadRequest(f"PresentationTimeRange.Timescale must be greater than 0, not {ts}.")
    start, end = out["StartTimestamp"], out["EndTimestamp"]
    if start < 0:
        raise BadRequest(f"PresentationTimeRange.StartTimestamp cannot be negative ({start}).")
    if end < 0:
        raise BadRequest(f"PresentationTimeRange.EndTimestamp cannot be negative ({end}).")
    if start > end:
        raise BadRequest(f"PresentationTimeRange.StartTimestamp ({start}) must not be after EndTimestamp ({end}).")
    window = out["PresentationWindowDuration"]
    if window != INT64_MAX and window < MIN_WINDOW_SECONDS * ts:
        raise BadRequest(f"PresentationTimeRange.PresentationWindowDuration must be at least {MIN_WINDOW_SECONDS} "
                         f"seconds ({MIN_WINDOW_SECONDS * ts} at Timescale {ts}), not {window}.")
    backoff = out["LiveBackoffDuration"]
    if not 0 <= backoff <= MAX_BACKOFF_SECONDS * ts:
        raise BadRequest(f"PresentationTimeRange.LiveBackoffDuration must be between 0 and {MAX_BACKOFF_SECONDS} "
                         f"seconds ({MAX_BACKOFF_SECONDS * ts} at Timescale {ts}), not {backoff}.")
    if out["ForceEndTimestamp"] and end == INT64_MAX:
        raise BadRequest("PresentationTimeRange.ForceEndTimestamp needs an EndTimestamp.")
    return out


def _canonical(value: Any, names: Any) -> str | None:
    return next((n for n in names if n.lower() == str(value).lower()), None) if value is not None else None


def _check_bitrate(where: str, value: str) -> str:
    m = _BITRATE_RE.match(value.strip())
    if m is None or (m.group(1) is None and not (m.group(2) or m.group(3))):
        raise BadRequest(f"{where}.Value '{value}' is not a bitrate: use a number (bits per second) or a range "
                         "low-high, low- or -high.")
    if m.group(1) is not None:
        return m.group(1)
    low, high = m.group(2), m.group(3)
    if low and high and int(low) > int(high):
        raise BadRequest(f"{where}.Value '{value}': the low bitrate is above the high one.")
    if low and high and int(low) == int(high):
        return low
    return f"{low}-{high}"


def normalize_tracks(tracks: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for i, select in enumerate(tracks or []):
        conditions = (select or {}).get("PropertyConditions") or []
        if not conditions:
            raise BadRequest(f"Tracks[{i}].PropertyConditions must hold at least one condition.")
        fixed = []
        for j, cond in enumerate(conditions):
            where = f"Tracks[{i}].PropertyConditions[{j}]"
            prop = _canonical(cond.get("Property"), FILTER_TRACK_PROPERTIES)
            if prop is None:
                raise BadRequest(f"{where}.Property must be one of {', '.join(FILTER_TRACK_PROPERTIES)}, not "
                                 f"'{cond.get('Property')}'.")
            operator = _canonical(cond.get("Operator") or "Equal", FILTER_TRACK_COMPARE_OPERATOR)
            if operator is None:
                raise BadRequest(f"{where}.Operator must be Equal or NotEqual, not '{cond.get('Operator')}'.")
            value = cond.get("Value")
            if value is None or not str(value).strip():
                raise BadRequest(f"{where}.Value is required.")
            value = str(value).strip()
            if prop == "Type":
                if value.lower() not in TRACK_TYPES:
                    raise BadRequest(f"{where}.Value must be video, audio or text for a Type condition, not "
                                     f"'{value}'.")
                value = value.lower()
            elif prop == "Bitrate":
                value = _check_bitrate(where, value)
            fixed.append({"Property": prop, "Value": value, "Operator": operator})
        out.append({"PropertyConditions": fixed})
    return out


def _normalize(values: dict[str, Any], touched: set[str]) -> None:
    if "PresentationTimeRange" in touched:
        values["PresentationTimeRange"] = normalize_time_range(values.get("PresentationTimeRange"))
    if "Tracks" in touched:
        values["Tracks"] = normalize_tracks(values.get("Tracks"))
    if "FirstQuality" in touched and values.get("FirstQuality") is not None:
        bitrate = values["FirstQuality"].get("Bitrate")
        if bitrate is None or bitrate <= 0:
            raise BadRequest(f"FirstQuality.Bitrate must be a positive number of bits per second, not {bitrate}.")


class FilterRules(Rules):
    set_name = "Filters"

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        validate_name(values.get("Name"), "Filter")
        _normalize(values, {"PresentationTimeRange", "Tracks", "FirstQuality"})

    def on_update(self, ctx: Ctx, old: dict[str, Any], changes: dict[str, Any]) -> None:
        _normalize(changes, set(changes))


def asset_filter_id(asset_id: str, name: str) -> str:
    return f"{asset_id}{ASSET_FILTER_ID_SEPARATOR}{name}"


class AssetFilterRules(Rules):
    set_name = "AssetFilters"

    def new_key(self, ctx: Ctx, values: dict[str, Any]) -> Any:
        asset_id = values.get("ParentAssetId")
        if not asset_id:
            raise BadRequest("AssetFilter.ParentAssetId is required.", code="MissingProperty")
        name = validate_name(values.get("Name"), "AssetFilter")
        if not ctx.store.exists(ctx.entity_set("Assets"), asset_id):
            raise NotFound(f"Asset '{asset_id}' does not exist.")
        key = asset_filter_id(asset_id, name)
        if ctx.store.exists(self.entity_set, key):
            raise Conflict(f"The asset already has a filter named '{name}'.")
        return key

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        _normalize(values, {"PresentationTimeRange", "Tracks", "FirstQuality"})

    def on_update(self, ctx: Ctx, old: dict[str, Any], changes: dict[str, Any]) -> None:
        _normalize(changes, set(changes))
