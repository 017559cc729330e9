"""Where segments start and end: the segment timeline of each track.

Video is cut only at sync samples (closed GOPs from our encoder are 2 s, so each GOP is one
segment; shorter GOPs are grouped until a segment reaches the target; longer GOPs cannot be
split). Audio has no GOPs: it is cut at the first sample that starts at or after each video
boundary, so that every protocol (including muxed HLS v3, which needs one timeline for both)
sees audio and video segments covering the same time. Audio-only presentations use fixed-length
segments. Times are presentation times (`dts + cts_offset - media_time`) in the track timescale.
"""

from __future__ import annotations

from collections.abc import Sequence

from .model import SampleTable, SegmentRef, TrackInfo

DEFAULT_TARGET_SECONDS = 2.0
"""The segment length AMS produced for 2 s GOPs, and what HLS/DASH players are tuned for."""

_TOLERANCE = 0.9
"""A GOP boundary closer than 90 % of the target to the segment start does not start a new
segment (so 1.98 s GOPs from a 29.97 fps source still give one GOP per segment)."""


def presentation_times(info: TrackInfo, table: SampleTable) -> list[int]:
    """The presentation time of every sample, in decode order."""
    shift = info.media_time
    return [d + c - shift for d, c in zip(table.dts, table.cts_offsets, strict=True)]


def track_end(info: TrackInfo, table: SampleTable, pts: Sequence[int] | None = None) -> int:
    """The time just after the last sample plays."""
    if not len(table):
        return 0
    times = pts if pts is not None else presentation_times(info, table)
    return max(t + d for t, d in zip(times, table.durations, strict=True))


def _segments_from_cuts(cuts: Sequence[int], pts: Sequence[int], end: int) -> list[SegmentRef]:
    """Segments starting at each sample index in `cuts` (ascending, first is 0)."""
    starts = []
    for k, first in enumerate(cuts):
        last = cuts[k + 1] if k + 1 < len(cuts) else len(pts)
        starts.append((min(pts[first:last]), first, last - first))
    if starts and starts[0][0] < 0:
        # an edit list that trims the start (AAC priming) makes the first samples play before
        # zero: players drop them; the timeline still begins at zero
        starts[0] = (0, starts[0][1], starts[0][2])
    out: list[SegmentRef] = []
    for k, (start, first, count) in enumerate(starts):
        nxt = starts[k + 1][0] if k + 1 < len(starts) else end
        out.append(SegmentRef(start, max(nxt - start, 0), first, count))
    return out


def video_segments(info: TrackInfo, table: SampleTable,
                   target_seconds: float = DEFAULT_TARGET_SECONDS) -> list[SegmentRef]:
    """Segments cut at sync samples, each at least ~`target_seconds` long where GOPs allow."""
    if not len(table):
        return []
    pts = presentation_times(info, table)
    target = target_seconds * info.timescale * _TOLERANCE
    cuts = [0]
    for s in table.sync:
        if s and pts[s] - pts[cuts[-1]] >= target:
            cuts.append(int(s))
    return _segments_from_cuts(cuts, pts, track_end(info, table, pts))


def aligned_segments(info: TrackInfo, table: SampleTable, boundaries: Sequence[tuple[int, int]]) -> list[SegmentRef]:
    """Segments of a track without sync constraints (audio) starting at the first sample that
    plays at or after each boundary. `boundaries` are `(time, timescale)` pairs — the starts of
    the reference (video) segments, in the reference's timescale."""
    if not len(table):
        return []
    pts = presentation_times(info, table)
    cuts = [0]
    i = 0
    n = len(pts)
    for time, scale in boundaries:
        mine = -(-time * info.timescale // scale)  # ceil: first sample at or after the boundary
        while i < n and pts[i] < mine:
            i += 1
        if i >= n:
            break
        if i > cuts[-1]:
            cuts.append(i)
    return _segments_from_cuts(cuts, pts, track_end(info, table, pts))


def fixed_segments(info: TrackInfo, table: SampleTable,
                   target_seconds: float = DEFAULT_TARGET_SECONDS) -> list[SegmentRef]:
    """Segments of about `target_seconds` for a track with no reference (audio-only assets)."""
    if not len(table):
        return []
    end = track_end(info, table)
    step = round(target_seconds * info.timescale)
    return aligned_segments(info, table, [(t, info.timescale) for t in range(step, end, step)])


def find_segment(segments: Sequence[SegmentRef], start: int) -> int | None:
    """The index of the segment that starts exactly at `start`, or None."""
    lo, hi = 0, len(segments)
    while lo < hi:
        mid = (lo + hi) // 2
        if segments[mid].start < start:
            lo = mid + 1
        else:
            hi = mid
    if lo < len(segments) and segments[lo].start == start:
        return lo
    return None
