"""Files written next to the encoded media: the server manifest (``.ism``) and metadata XML.

The ``.ism`` is the SMIL 2.0 document Azure Media Services put in every streamable output asset:
one ``<video>``/``<audio>`` entry per track with its file, bitrate and MP4 track id. The origin
reads it to know which tracks make up the adaptive set. The metadata file describes the inputs
and outputs of an encode (files, tracks, durations, bitrates) in a small schema of our own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree

from .probe import MediaInfo, StreamInfo

SMIL_NAMESPACE = "http://www.w3.org/2001/SMIL20/Language"
METADATA_VERSION = "1.0"


def iso_duration(seconds: float | None) -> str:
    """xs:duration, e.g. ``PT4.005S``, ``PT1M30S``."""
    if seconds is None or seconds < 0:
        seconds = 0.0
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = rest / 1000
    text = "PT"
    if hours:
        text += f"{hours}H"
    if minutes:
        text += f"{minutes}M"
    if secs or text == "PT":
        text += (f"{secs:.3f}".rstrip("0").rstrip(".") if secs != int(secs) else str(int(secs))) + "S"
    return text


def build_ism(
    files: Iterable[MediaInfo],
    *,
    nominal_bitrates: Mapping[str, Mapping[str, int]] | None = None,
    dedupe_audio: bool = True,
) -> bytes:
    """The server manifest for a set of MP4 files.

    Every video track of every file is listed (highest bitrate first), then the audio tracks.
    With ``dedupe_audio``, identical audio renditions interleaved into several files (same codec,
    bitrate, channels, rate and language) are listed once, from the first file carrying them,
    so the manifest offers one audio quality per rendition. ``nominal_bitrates`` maps a file
    name to ``{"video": bps, "audio": bps}`` target bitrates, used instead of the measured ones.
    """
    nominal = nominal_bitrates or {}
    videos: list[tuple[int, str, StreamInfo]] = []
    audios: list[tuple[int, str, StreamInfo]] = []
    seen_audio: set[tuple[object, ...]] = set()
    for info in files:
        name = info.path.name
        for stream in info.streams:
            if stream.kind == "video" and not stream.attached_pic:
                bitrate = nominal.get(name, {}).get("video") or stream.bitrate or info.bitrate or 0
                videos.append((int(bitrate), name, stream))
            elif stream.kind == "audio":
                bitrate = nominal.get(name, {}).get("audio") or stream.bitrate or 0
                key = (
                    stream.codec,
                    round(bitrate / 1000),
                    stream.channels,
                    stream.sample_rate,
                    stream.language or "und",
                )
                if dedupe_audio and key in seen_audio:
                    continue
                seen_audio.add(key)
                audios.append((int(bitrate), name, stream))
    videos.sort(key=lambda item: -item[0])
    smil = etree.Element("smil", nsmap={None: SMIL_NAMESPACE})
    head = etree.SubElement(smil, "head")
    etree.SubElement(head, "meta", name="formats", content="mp4")
    switch = etree.SubElement(etree.SubElement(smil, "body"), "switch")
    for bitrate, name, stream in videos:
        element = etree.SubElement(switch, "video", src=name, systemBitrate=str(bitrate))
        _param(element, "trackID", str(stream.track_id or 1))
    languages = {s.language or "und" for _b, _n, s in audios}
    for bitrate, name, stream in audios:
        language = stream.language or "und"
        element = etree.SubElement(
            switch, "audio", src=name, systemBitrate=str(bitrate), systemLanguage=language
        )
        _param(element, "trackID", str(stream.track_id or 1))
        track_name = "audio" if len(languages) <= 1 else f"audio_{language}"
        _param(element, "trackName", track_name)
    return etree.tostring(smil, xml_declaration=True, encoding="utf-8", pretty_print=True)


def _param(parent: etree._Element, name: str, value: str) -> None:
    etree.SubElement(parent, "param", name=name, value=value, valuetype="data")


def write_ism(path: Path, files: Iterable[MediaInfo], **options: object) -> Path:
    path.write_bytes(build_ism(files, **options))  # type: ignore[arg-type]
    return path


def build_metadata(
    inputs: Iterable[MediaInfo],
    outputs: Iterable[MediaInfo],
    *,
    images: Iterable[Path] = (),
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
    preset_name: str | None = None,
    notes: Iterable[str] = (),
) -> bytes:
    """Input and output metadata of an encode as XML (openams schema, version 1.0)::

        <MediaMetadata Version="1.0" Created="…" Preset="…">
          <Inputs><AssetFile Name Size Duration StartTime FormatNames FormatVerboseNames OverallBitRate>
                    <VideoTracks><VideoTrack Id Codec Profile Width Height DisplayWidth DisplayHeight
                                             FrameRate Bitrate Duration Rotation/></VideoTracks>
                    <AudioTracks><AudioTrack Id Codec Profile Channels ChannelLayout SamplingRate
                                             Bitrate Duration Language/></AudioTracks></AssetFile></Inputs>
          <Outputs><AssetFile …>(same, plus <Sources><Source Name/></Sources>)</AssetFile>
                   <Thumbnail Name Width Height Format/></Outputs>
          <Notes><Note>…</Note></Notes>
        </MediaMetadata>

    Bitrates are kbps; durations are xs:duration.
    """
    inputs = list(inputs)
    root = etree.Element(
        "MediaMetadata", Version=METADATA_VERSION, Created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    if preset_name:
        root.set("Preset", preset_name)
    section = etree.SubElement(root, "Inputs")
    for info in inputs:
        _asset_file(section, info)
    section = etree.SubElement(root, "Outputs")
    for info in outputs:
        element = _asset_file(section, info)
        sources = etree.SubElement(element, "Sources")
        for source in inputs:
            etree.SubElement(sources, "Source", Name=source.path.name)
    sizes = image_sizes or {}
    for image in images:
        width, height = sizes.get(image.name, (0, 0))
        etree.SubElement(
            section,
            "Thumbnail",
            Name=image.name,
            Size=str(image.stat().st_size),
            Width=str(width),
            Height=str(height),
            Format=image.suffix.lstrip(".").upper(),
        )
    notes = list(notes)
    if notes:
        block = etree.SubElement(root, "Notes")
        for note in notes:
            etree.SubElement(block, "Note").text = note
    return etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True)


def _kbps(bps: int | None) -> str:
    return str(round((bps or 0) / 1000))


def _asset_file(parent: etree._Element, info: MediaInfo) -> etree._Element:
    element = etree.SubElement(
        parent,
        "AssetFile",
        Name=info.path.name,
        Size=str(info.size),
        Duration=iso_duration(info.duration),
        StartTime=iso_duration(max(info.start_time, 0.0)),
        NumberOfStreams=str(len(info.streams)),
        FormatNames=info.format_name,
        FormatVerboseNames=info.format_long_name or "",
        OverallBitRate=_kbps(info.bitrate),
    )
    videos = [s for s in info.streams if s.kind == "video" and not s.attached_pic]
    audios = [s for s in info.streams if s.kind == "audio"]
    if videos:
        tracks = etree.SubElement(element, "VideoTracks")
        for s in videos:
            dw, dh = s.display_size
            etree.SubElement(
                tracks,
                "VideoTrack",
                Id=str(s.track_id or s.index + 1),
                Codec=s.codec,
                Profile=s.profile or "",
                Width=str(s.width),
                Height=str(s.height),
                DisplayWidth=str(dw),
                DisplayHeight=str(dh),
                FrameRate=f"{s.fps:.3f}".rstrip("0").rstrip(".") if s.fps else "0",
                Bitrate=_kbps(s.bitrate),
                Duration=iso_duration(s.duration or info.duration),
                Rotation=str(s.rotation),
            )
    if audios:
        tracks = etree.SubElement(element, "AudioTracks")
        for s in audios:
            etree.SubElement(
                tracks,
                "AudioTrack",
                Id=str(s.track_id or s.index + 1),
                Codec=s.codec,
                Profile=s.profile or "",
                Channels=str(s.channels),
                ChannelLayout=s.channel_layout or "",
                SamplingRate=str(s.sample_rate),
                Bitrate=_kbps(s.bitrate),
                Duration=iso_duration(s.duration or info.duration),
                Language=s.language or "und",
            )
    return element


def write_metadata(
    path: Path, inputs: Iterable[MediaInfo], outputs: Iterable[MediaInfo], **options: object
) -> Path:
    path.write_bytes(build_metadata(inputs, outputs, **options))  # type: ignore[arg-type]
    return path
