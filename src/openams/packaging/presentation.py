"""From an asset's files to an adaptive presentation: which tracks, named how, cut where.

An asset is streamable when it holds MP4s (progressive or fragmented, e.g. Smooth `.ismv`/
`.isma`). The `.ism` server manifest, when present, says which tracks of which files make the
set and their nominal bitrates (our encoder and AMS both write it). Without one, every video
track of every MP4 is a rung and identical audio renditions interleaved into several files are
offered once. Tracks get the names the URL grammar uses: `video` for all video rungs (one
Smooth StreamIndex, rungs told apart by bitrate), `audio` — or `audio_<lang>`/`audio_<n>` when
there are several renditions — for audio.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from defusedxml import ElementTree as SafeET

from .index import MediaIndex
from .model import SampleTable, SegmentRef, TrackInfo, TrackView
from .timeline import aligned_segments, fixed_segments, video_segments

MEDIA_EXTENSIONS = (".mp4", ".m4v", ".m4a", ".ismv", ".isma", ".cmfv", ".cmfa", ".mov")
"""Files whose tracks can be streamed (matched case-insensitively)."""

MAX_ISM_BYTES = 1 << 20


class PresentationError(ValueError):
    """The asset cannot be presented as an adaptive stream; the message says why."""


@dataclass(frozen=True)
class PresentedTrack:
    info: TrackInfo
    table: SampleTable
    segments: tuple[SegmentRef, ...]

    @property
    def view(self) -> TrackView:
        return TrackView(self.info, self.segments)

    @cached_property
    def dts_shift(self) -> int:
        """Ticks to take off decode times so that no composition offset is negative (MPEG-TS needs
        PTS ≥ DTS; MP4s written with negative ctts offsets would break that)."""
        return max(0, -min(self.table.cts_offsets, default=0))


@dataclass(frozen=True)
class Presentation:
    tracks: tuple[PresentedTrack, ...]

    @property
    def duration_seconds(self) -> float:
        return max((t.view.end / t.info.timescale for t in self.tracks), default=0.0)

    def views(self) -> list[TrackView]:
        return [t.view for t in self.tracks]

    def track(self, name: str, bitrate: int) -> PresentedTrack | None:
        """The track a `QualityLevels(<bitrate>)/…(<name>=…)` URL names."""
        for t in self.tracks:
            if t.info.name == name and t.info.bitrate == bitrate:
                return t
        return None



@dataclass(frozen=True)
class IsmEntry:
    kind: str
    src: str
    bitrate: int
    track_id: int | None
    track_name: str | None
    language: str | None


def parse_ism(data: bytes) -> list[IsmEntry]:
    """The `<video>`/`<audio>` entries of a SMIL server manifest (untrusted input)."""
    if len(data) > MAX_ISM_BYTES:
        raise PresentationError("the .ism server manifest is larger than 1 MB")
    try:
        root = SafeET.fromstring(data)
    except Exception as exc:  # defusedxml raises several types for hostile or broken XML
        raise PresentationError(f"the .ism server manifest is not valid XML ({exc})") from None
    entries: list[IsmEntry] = []
    for el in root.iter():
        kind = el.tag.rsplit("}", 1)[-1]
        if kind not in ("video", "audio", "textstream"):
            continue
        src = el.get("src")
        if not src:
            continue
        params = {p.get("name", "").lower(): p.get("value", "") for p in el
                  if p.tag.rsplit("}", 1)[-1] == "param"}
        try:
            bitrate = int(el.get("systemBitrate") or 0)
            track_id = int(params["trackid"]) if params.get("trackid") else None
        except ValueError:
            raise PresentationError(f"the .ism entry for '{src}' has a non-numeric bitrate or trackID") from None
        entries.append(IsmEntry("text" if kind == "textstream" else kind, src, bitrate, track_id,
                                params.get("trackname") or None, el.get("systemLanguage")))
    return entries


def media_files(names: Sequence[str]) -> list[str]:
    return sorted(n for n in names if n.lower().endswith(MEDIA_EXTENSIONS))


def build_presentation(indexes: Mapping[str, MediaIndex], ism: bytes | None = None,
                       target_seconds: float = 2.0) -> Presentation:
    """The adaptive presentation of the indexed files, guided by the `.ism` when there is one."""
    chosen: list[tuple[TrackInfo, SampleTable]] = []
    if ism is not None:
        for entry in parse_ism(ism):
            index = indexes.get(entry.src)
            if index is None:
                raise PresentationError(f"the .ism names '{entry.src}', which is not a file of the asset")
            match = [t for t in index.tracks if t.info.kind == entry.kind
                     and (entry.track_id is None or t.info.track_id == entry.track_id)]
            if not match:
                raise PresentationError(f"'{entry.src}' has no {entry.kind} track"
                                        + (f" with id {entry.track_id}" if entry.track_id else ""))
            t = match[0]
            info = dataclasses.replace(t.info, bitrate=entry.bitrate or t.info.bitrate,
                                       language=entry.language or t.info.language,
                                       name=entry.track_name or "")
            chosen.append((info, t.table))
    else:
        seen_audio: set[tuple[object, ...]] = set()
        for name in sorted(indexes):
            for t in indexes[name].tracks:
                if t.info.kind == "audio":
                    key = (t.info.codec, round(t.info.bitrate / 8000), t.info.channels, t.info.sample_rate,
                           t.info.language)
                    if key in seen_audio:
                        continue
                    seen_audio.add(key)
                if t.info.kind in ("video", "audio"):
                    chosen.append((t.info, t.table))
    chosen = [(i, tab) for i, tab in chosen if i.kind in ("video", "audio") and len(tab)]
    if not chosen:
        raise PresentationError("the asset has no video or audio track to stream")
    return Presentation(tuple(_cut(_named(chosen), target_seconds)))


def _named(chosen: list[tuple[TrackInfo, SampleTable]]) -> list[tuple[TrackInfo, SampleTable]]:
    """Give every track its URL name and a bitrate unique within that name."""
    audio = [i for i, _ in chosen if i.kind == "audio"]
    languages = [i.language for i in audio]
    out: list[tuple[TrackInfo, SampleTable]] = []
    used: set[tuple[str, int]] = set()
    audio_n = 0
    for info, table in chosen:
        name = info.name
        if info.kind == "video":
            name = "video"
        elif not name:
            if len(audio) == 1:
                name = "audio"
            elif len(set(languages)) == len(languages) and "und" not in languages:
                name = f"audio_{info.language}"
            else:
                name = f"audio_{audio_n}"
            audio_n += 1
        bitrate = max(int(info.bitrate), 1)
        while (name, bitrate) in used:
            bitrate += 1
        used.add((name, bitrate))
        out.append((dataclasses.replace(info, name=name, bitrate=bitrate), table))
    videos = sorted((p for p in out if p[0].kind == "video"), key=lambda p: -p[0].bitrate)
    audios = [p for p in out if p[0].kind == "audio"]
    return videos + audios


def _cut(tracks: list[tuple[TrackInfo, SampleTable]], target_seconds: float) -> list[PresentedTrack]:
    out: list[PresentedTrack] = []
    reference: list[tuple[int, int]] | None = None
    for info, table in tracks:
        if info.kind == "video":
            segments = video_segments(info, table, target_seconds)
            if reference is None:
                reference = [(s.start, info.timescale) for s in segments[1:]]
        elif reference is not None:
            segments = aligned_segments(info, table, reference)
        else:
            segments = fixed_segments(info, table, target_seconds)
        out.append(PresentedTrack(info, table, tuple(segments)))
    return out

