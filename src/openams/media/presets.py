"""The Media Encoder Standard preset model, its JSON and XML readers, and validation.

Presets reach the server as ``Task.Configuration`` strings written by hand, by SDKs and by old
tools, so the readers are lenient about syntax — numbers and booleans in quotes, keys in any
case, trailing commas, UTF-16 with or without a BOM, ``http``/``https`` namespaces, ISO-8601 or
``HH:MM:SS`` times — while ``validate()`` is strict about meaning and reports every problem with
the element it concerns, before anything is encoded.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .errors import PresetError

PRESET_NAMESPACES = (
    "https://www.windowsazure.com/media/encoding/Preset/2014/03",
    "http://www.windowsazure.com/media/encoding/Preset/2014/03",
)

STRETCH_MODES = ("None", "AutoSize", "AutoFit")
COMPLEXITIES = ("Speed", "Balanced", "Quality")
H264_PROFILES = ("Auto", "Baseline", "Main", "High")
H264_LEVELS = (
    "Auto",
    "1",
    "1b",
    "1.1",
    "1.2",
    "1.3",
    "2",
    "2.1",
    "2.2",
    "3",
    "3.1",
    "3.2",
    "4",
    "4.1",
    "4.2",
    "5",
    "5.1",
    "5.2",
    "6",
    "6.1",
    "6.2",
)
ENTROPY_MODES = ("Cabac", "Cavlc")
VIDEO_CONDITIONS = ("InsertBlackIfNoVideo", "InsertBlackIfNoVideoBottomLayerOnly")
AUDIO_CONDITIONS = ("InsertSilenceIfNoAudio",)
AAC_PROFILES = ("AACLC", "HEAACV1", "HEAACV2")
AAC_CHANNELS = (1, 2, 5, 6, 8)
AAC_SAMPLING_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
IMAGE_KINDS = ("Jpg", "Png", "Bmp")
OUTPUT_FORMATS = ("MP4Format", "JpgFormat", "PngFormat", "BmpFormat")
FILE_NAME_MACROS = (
    "Basename",
    "Width",
    "Height",
    "VideoBitrate",
    "AudioBitrate",
    "Bitrate",
    "Channels",
    "Channel",
    "Index",
    "Extension",
    "Label",
    "Codec",
    "Resolution",
)
MAX_THUMBNAILS = 5000


# ----------------------------------------------------------------------------------------------
# model


@dataclass(frozen=True)
class Dimension:
    """A width or height: pixels, or a percentage of the source's."""

    value: float
    percent: bool = False

    def resolve(self, source: int) -> int:
        return round(source * self.value / 100.0) if self.percent else int(self.value)

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else str(int(self.value))


@dataclass(frozen=True)
class TimeSpec:
    """An image codec's Start/Step/Range: ``{Best}``, a frame number, a percentage of the
    duration, or a time in seconds."""

    kind: str  # "best" | "frame" | "percent" | "time"
    value: float = 0.0

    def seconds(self, duration: float, fps: float) -> float:
        if self.kind == "frame":
            return self.value / fps if fps > 0 else 0.0
        if self.kind == "percent":
            return duration * self.value / 100.0
        return self.value

    def __str__(self) -> str:
        if self.kind == "best":
            return "{Best}"
        if self.kind == "frame":
            return str(int(self.value))
        if self.kind == "percent":
            return f"{self.value:g}%"
        return format_time(self.value)


BEST = TimeSpec("best")


@dataclass
class Source:
    start_time: float | None = None
    duration: float | None = None
    asset_id: str | None = None
    deinterlace: str = "Auto"
    rotation: str = "Auto"
    """``Auto`` (follow the file's rotation metadata), ``0`` (ignore it), ``90``, ``180``, ``270``."""
    pad: bool | None = None
    overlay: dict[str, Any] | None = None


@dataclass
class H264Layer:
    width: Dimension | None = None
    height: Dimension | None = None
    bitrate: int | None = None
    """kbps"""
    max_bitrate: int | None = None
    buffer_window: float = 5.0
    profile: str = "Auto"
    level: str = "Auto"
    b_frames: int | None = None
    reference_frames: int | None = None
    frame_rate: Fraction | None = None
    """None (or ``0/1`` in a preset) keeps the source frame rate."""
    entropy_mode: str = "Cabac"
    adaptive_b_frame: bool = True
    slices: int = 0
    label: str | None = None


@dataclass
class H264Video:
    layers: list[H264Layer] = field(default_factory=list)
    key_frame_interval: float = 2.0
    scene_change_detection: bool = False
    stretch_mode: str = "AutoSize"
    condition: str | None = None
    two_pass: bool = False
    complexity: str = "Balanced"

    type = "H264Video"


@dataclass
class AACAudio:
    profile: str = "AACLC"
    channels: int = 2
    sampling_rate: int = 48000
    bitrate: int = 128
    """kbps"""
    condition: str | None = None

    type = "AACAudio"


@dataclass
class CopyAudio:
    type = "CopyAudio"


@dataclass
class ImageLayer:
    width: Dimension | None = None
    height: Dimension | None = None
    quality: int | None = None
    label: str | None = None


@dataclass
class ImageCodec:
    kind: str  # "Jpg" | "Png" | "Bmp"
    layers: list[ImageLayer] = field(default_factory=list)
    start: TimeSpec = BEST
    step: TimeSpec | None = None
    range: TimeSpec | None = None
    stretch_mode: str = "AutoSize"
    preserve_resolution_after_rotation: bool = False

    @property
    def type(self) -> str:
        return f"{self.kind}Image"

    @property
    def format(self) -> str:
        return f"{self.kind}Format"

    @property
    def extension(self) -> str:
        return "." + self.kind.lower()


Codec = H264Video | AACAudio | CopyAudio | ImageCodec


@dataclass
class Output:
    file_name: str
    format: str = "MP4Format"
    streams: str = "all"
    """Which streams an MP4 output carries: ``all`` (each video layer interleaved with the audio),
    ``video`` (video only) or ``audio`` (one audio-only file). Not part of the MES format: system
    presets use it to keep audio and video in separate files."""


@dataclass
class Preset:
    version: str = "1.0"
    sources: list[Source] = field(default_factory=list)
    codecs: list[Codec] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    name: str | None = None
    """The system preset name this preset came from, if any."""
    auto_ladder: str | None = None
    """``separate`` or ``interleaved`` for presets whose layers are chosen from the source
    (Adaptive Streaming); the encoder replaces the layers once the input is probed."""

    @property
    def video(self) -> H264Video | None:
        return next((c for c in self.codecs if isinstance(c, H264Video)), None)

    @property
    def audio(self) -> AACAudio | CopyAudio | None:
        return next((c for c in self.codecs if isinstance(c, AACAudio | CopyAudio)), None)

    @property
    def images(self) -> list[ImageCodec]:
        return [c for c in self.codecs if isinstance(c, ImageCodec)]


# ----------------------------------------------------------------------------------------------
# scalar parsing

_CLOCK = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")
_ISO = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


class _Invalid(ValueError):
    pass


def parse_time(value: Any) -> float:
    """Seconds from ``HH:MM:SS[.fff]``, ``d.HH:MM:SS``, ISO-8601 ``PT…`` or a number."""
    if isinstance(value, bool):
        raise _Invalid(f"expected a time, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise _Invalid(f"expected a non-negative time, got {value!r}")
        return float(value)
    text = str(value).strip()
    match = _CLOCK.match(text)
    if match:
        days, hours, minutes, seconds = match.groups()
        if int(minutes) >= 60 or float(seconds) >= 60:
            raise _Invalid(f"expected a time like 00:00:02, got {text!r}")
        return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    match = _ISO.match(text)
    if match and text.upper() not in ("P", "PT"):
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
        return (
            parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)
        )
    try:
        number = float(text)
    except ValueError:
        raise _Invalid(f"expected a time like 00:00:02 or PT2S, got {text!r}") from None
    if not math.isfinite(number) or number < 0:
        raise _Invalid(f"expected a non-negative time, got {text!r}")
    return number


def format_time(seconds: float) -> str:
    whole = int(seconds)
    frac = seconds - whole
    text = f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    if frac > 1e-9:
        text += f"{frac:.3f}".lstrip("0").rstrip("0")
    return text


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Invalid(f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        raise _Invalid(f"expected a whole number, got {text!r}") from None
    if not number.is_integer():
        raise _Invalid(f"expected a whole number, got {text!r}")
    return int(number)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise _Invalid(f"expected true or false, got {value!r}")


def _dimension(value: Any) -> Dimension:
    if isinstance(value, str) and value.strip().endswith("%"):
        text = value.strip()[:-1].strip()
        try:
            number = float(text)
        except ValueError:
            raise _Invalid(f"expected pixels or a percentage like 50%, got {value!r}") from None
        return Dimension(number, percent=True)
    return Dimension(_int(value))


def _rational(value: Any) -> Fraction | None:
    text = str(value).strip()
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            if int(den) == 0:
                raise _Invalid(f"expected a frame rate like 30000/1001, got {text!r}")
            rate = Fraction(int(num), int(den))
        else:
            rate = Fraction(text).limit_denominator(1001)
    except (ValueError, ZeroDivisionError):
        raise _Invalid(f"expected a frame rate like 30000/1001 or 0/1, got {text!r}") from None
    if rate < 0:
        raise _Invalid(f"frame rate cannot be negative, got {text!r}")
    return rate or None


def _choice(value: Any, allowed: tuple[str, ...]) -> str:
    text = str(value).strip()
    for option in allowed:
        if option.lower() == text.lower():
            return option
    raise _Invalid(f"expected one of {', '.join(allowed)}, got {text!r}")


def _timespec(value: Any) -> TimeSpec:
    if isinstance(value, bool):
        raise _Invalid(f"expected {{Best}}, a frame number, a percentage or a time, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise _Invalid(f"frame numbers cannot be negative, got {value}")
        return TimeSpec("frame", value)
    text = str(value).strip()
    if text.lower() == "{best}":
        return BEST
    if re.fullmatch(r"\d+", text):
        return TimeSpec("frame", int(text))
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text)
    if match:
        return TimeSpec("percent", float(match.group(1)))
    if ":" in text or text[:1].upper() == "P":
        return TimeSpec("time", parse_time(text))
    raise _Invalid(
        f"expected {{Best}}, a frame number, a percentage like 10% or a time like 00:00:05, got {text!r}"
    )


# ----------------------------------------------------------------------------------------------
# reading JSON and XML into one dict shape, then into the model


def parse_preset(data: str | bytes) -> Preset:
    """Parse a preset given as JSON or XML text (str or bytes in UTF-8/UTF-16)."""
    text = decode_text(data).strip()
    if text.startswith("{"):
        return preset_from_dict(_lenient_json(text))
    if text.startswith("<"):
        return preset_from_dict(_xml_to_dict(text))
    raise PresetError("not a preset: expected JSON ({…}) or XML (<Preset …>) text")


def looks_like_preset_document(data: str | bytes) -> bool:
    """True when ``data`` is JSON or XML rather than a preset name."""
    try:
        text = decode_text(data).lstrip()
    except PresetError:
        return False
    return text.startswith(("{", "<"))


def decode_text(data: str | bytes) -> str:
    if isinstance(data, str):
        return data.lstrip("\ufeff")
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            body, encoding_name = data[len(bom) :], encoding
            break
    else:
        body = data
        if len(data) >= 2 and data[0] != 0 and data[1] == 0:
            encoding_name = "utf-16-le"
        elif len(data) >= 2 and data[0] == 0 and data[1] != 0:
            encoding_name = "utf-16-be"
        else:
            encoding_name = "utf-8"
    try:
        return body.decode(encoding_name)
    except UnicodeDecodeError as exc:
        raise PresetError(
            f"preset text is not valid {encoding_name.upper()}: {exc.reason} at byte {exc.start}"
        ) from exc


def _lenient_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    cleaned = _clean_json(text)
    try:
        return json.loads(cleaned)
    except json.JSONDecodeError as exc:
        # report the position in the original text when the cleanup did not move things around
        raise PresetError(
            f"preset is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc


def _clean_json(text: str) -> str:
    """Rewrite the JSON dialect people actually send into strict JSON: comments, trailing commas,
    single-quoted strings and unquoted property names."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":
            j = i + 1
            buf = []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j : j + 2])
                    j += 2
                    continue
                buf.append('\\"' if text[j] == '"' else text[j])
                j += 1
            out.append('"' + "".join(buf) + '"')
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif ch == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "}]":
                i += 1
                continue
            out.append(ch)
            i += 1
        elif ch.isalpha() or ch in "_$":
            j = i
            while j < n and (text[j].isalnum() or text[j] in "_$"):
                j += 1
            word = text[i:j]
            k = j
            while k < n and text[k] in " \t\r\n":
                k += 1
            out.append(f'"{word}"' if k < n and text[k] == ":" else word)
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


_XML_COLLECTIONS = {
    "sources",
    "h264layers",
    "jpglayers",
    "pnglayers",
    "bmplayers",
    "outputs",
    "streams",
    "mediaparams",
    "chapters",
    "encoding",
}


def _xml_to_dict(text: str) -> dict[str, Any]:
    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException

    # The declaration may say utf-16 while we already hold decoded text: drop it.
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)
    try:
        root = DET.fromstring(text.encode("utf-8"), forbid_dtd=True)
    except DefusedXmlException as exc:
        raise PresetError(
            f"XML preset refused: {exc.__class__.__name__} (DTDs and entities are not allowed)"
        ) from exc
    except Exception as exc:  # xml.etree.ElementTree.ParseError and friends
        raise PresetError(f"preset is not well-formed XML: {exc}") from exc
    if _local(root.tag).lower() != "preset":
        raise PresetError(f"XML preset must have a <Preset> root element, found <{_local(root.tag)}>")
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    if namespace and namespace not in PRESET_NAMESPACES:
        raise PresetError(
            f"XML preset uses an unknown namespace {namespace!r}; expected {PRESET_NAMESPACES[0]}"
        )
    result: dict[str, Any] = dict(root.attrib)
    for child in root:
        name = _local(child.tag)
        lname = name.lower()
        if lname == "encoding":
            result["Codecs"] = [_element(c, always_dict=True) for c in child if isinstance(c.tag, str)]
        elif lname == "outputs":
            outputs = []
            for out in child:
                if not isinstance(out.tag, str):
                    continue
                entry: dict[str, Any] = dict(out.attrib)
                formats = [_local(f.tag) for f in out if isinstance(f.tag, str)]
                if formats:
                    entry["Format"] = {"Type": formats[0]}
                outputs.append(entry)
            result["Outputs"] = outputs
        elif lname == "sources":
            result["Sources"] = [_element(s, always_dict=True) for s in child if isinstance(s.tag, str)]
        else:
            result[name] = _element(child) if len(child) or child.attrib else (child.text or "").strip()
    return result


def _element(elem: Any, always_dict: bool = False) -> Any:
    if not len(elem) and not elem.attrib and not always_dict:
        return (elem.text or "").strip()
    data: dict[str, Any] = {"Type": _local(elem.tag)}
    data.update({_local(k): v for k, v in elem.attrib.items()})
    for child in elem:
        if not isinstance(child.tag, str):
            continue
        name = _local(child.tag)
        if name.lower() in _XML_COLLECTIONS:
            data[name] = [_element(c) for c in child if isinstance(c.tag, str)]
        else:
            data[name] = _element(child)
    return data


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


class _Reader:
    """Case-insensitive access to a preset dict that records problems with their element path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def get(self, obj: Any, key: str, default: Any = None) -> Any:
        if not isinstance(obj, dict):
            return default
        wanted = key.lower()
        for k, v in obj.items():
            if str(k).lower() == wanted:
                return v
        return default

    def has(self, obj: Any, key: str) -> bool:
        sentinel = object()
        return self.get(obj, key, sentinel) is not sentinel

    def value(self, obj: Any, key: str, path: str, convert: Any, default: Any = None) -> Any:
        raw = self.get(obj, key)
        if raw is None or (isinstance(raw, str) and raw.strip() == "" and convert is not str):
            return default
        try:
            return convert(raw)
        except _Invalid as exc:
            self.problems.append(f"{path}.{key}: {exc}")
            return default

    def items(self, obj: Any, key: str, path: str) -> list[Any]:
        raw = self.get(obj, key)
        if raw is None:
            return []
        if isinstance(raw, dict):
            return [raw]
        if not isinstance(raw, list):
            self.problems.append(f"{path}.{key}: expected a list")
            return []
        return raw


def preset_from_dict(data: Any) -> Preset:
    """Build the model from the dict shape shared by the JSON and XML forms."""
    if not isinstance(data, dict):
        raise PresetError("preset must be a JSON object")
    problems: list[str] = []
    r = _Reader(problems)
    version = r.get(data, "Version")
    # the schema requires Version, but a preset without one is unambiguous: treat it as 1.0
    preset = Preset(version=str(version).strip() if version not in (None, "") else "1.0")
    for i, raw in enumerate(r.items(data, "Sources", "Preset")):
        preset.sources.append(_source(r, raw, f"Sources[{i}]"))
    for i, raw in enumerate(r.items(data, "Codecs", "Preset")):
        codec = _codec(r, raw, f"Codecs[{i}]")
        if codec is not None:
            preset.codecs.append(codec)
    stretch = r.value(data, "StretchMode", "Preset", lambda v: _choice(v, STRETCH_MODES))
    if stretch:
        for codec in preset.codecs:
            if isinstance(codec, H264Video | ImageCodec):
                codec.stretch_mode = stretch
    for i, raw in enumerate(r.items(data, "Outputs", "Preset")):
        path = f"Outputs[{i}]"
        name = r.get(raw, "FileName")
        fmt = r.get(raw, "Format")
        fmt_type = r.get(fmt, "Type") if isinstance(fmt, dict) else fmt
        if fmt_type is None:
            problems.append(f"{path}.Format: missing; expected one of {', '.join(OUTPUT_FORMATS)}")
            continue
        try:
            fmt_name = _choice(fmt_type, OUTPUT_FORMATS)
        except _Invalid as exc:
            problems.append(f"{path}.Format: {exc}")
            continue
        preset.outputs.append(Output(file_name=str(name) if name is not None else "", format=fmt_name))
    if problems:
        raise PresetError(_summary(problems), problems)
    return preset


def _source(r: _Reader, raw: Any, path: str) -> Source:
    source = Source(
        start_time=r.value(raw, "StartTime", path, parse_time),
        duration=r.value(raw, "Duration", path, parse_time),
        asset_id=(str(r.get(raw, "AssetID")).strip() or None) if r.get(raw, "AssetID") is not None else None,
        pad=r.value(raw, "Pad", path, _bool),
    )
    clip = r.get(raw, "Clip")
    if isinstance(clip, dict):
        source.start_time = r.value(clip, "StartTime", f"{path}.Clip", parse_time, source.start_time)
        source.duration = r.value(clip, "Duration", f"{path}.Clip", parse_time, source.duration)
    filters = r.get(raw, "Filters")
    if isinstance(filters, dict):
        deint = r.get(filters, "Deinterlace")
        mode = r.get(deint, "Mode") if isinstance(deint, dict) else deint
        if mode not in (None, ""):
            try:
                source.deinterlace = _choice(mode, ("Auto", "Off", "AutoPixelAdaptive"))
            except _Invalid as exc:
                r.problems.append(f"{path}.Filters.Deinterlace.Mode: {exc}")
        rotation = r.get(filters, "Rotation")
        if rotation not in (None, ""):
            try:
                source.rotation = _choice(rotation, ("Auto", "0", "90", "180", "270"))
            except _Invalid as exc:
                r.problems.append(f"{path}.Filters.Rotation: {exc}")
        overlay = r.get(filters, "VideoOverlay")
        if overlay:
            source.overlay = overlay if isinstance(overlay, dict) else {"value": overlay}
    return source


_CODEC_TYPES = {
    "h264video": "H264Video",
    "aacaudio": "AACAudio",
    "copyaudio": "CopyAudio",
    "jpgimage": "JpgImage",
    "pngimage": "PngImage",
    "bmpimage": "BmpImage",
}


def _codec(r: _Reader, raw: Any, path: str) -> Codec | None:
    if not isinstance(raw, dict):
        r.problems.append(f"{path}: expected an object")
        return None
    type_name = r.get(raw, "Type")
    if type_name is None:  # infer from content, as the documented samples sometimes omit it
        if r.has(raw, "H264Layers"):
            type_name = "H264Video"
        elif any(r.has(raw, f"{k}Layers") for k in IMAGE_KINDS):
            type_name = next(f"{k}Image" for k in IMAGE_KINDS if r.has(raw, f"{k}Layers"))
        elif r.has(raw, "Channels") or r.has(raw, "SamplingRate"):
            type_name = "AACAudio"
    canonical = _CODEC_TYPES.get(str(type_name).strip().lower()) if type_name is not None else None
    if canonical is None:
        known = ", ".join(_CODEC_TYPES.values())
        r.problems.append(f"{path}: unknown codec Type {type_name!r}; supported: {known}")
        return None
    path = f"{path} ({canonical})"
    if canonical == "H264Video":
        video = H264Video(
            key_frame_interval=r.value(raw, "KeyFrameInterval", path, parse_time, 2.0),
            scene_change_detection=r.value(raw, "SceneChangeDetection", path, _bool, False),
            stretch_mode=r.value(raw, "StretchMode", path, lambda v: _choice(v, STRETCH_MODES), "AutoSize"),
            condition=r.value(raw, "Condition", path, lambda v: _choice(v, VIDEO_CONDITIONS)),
            two_pass=r.value(raw, "TwoPass", path, _bool, False),
            complexity=r.value(raw, "Complexity", path, lambda v: _choice(v, COMPLEXITIES), "Balanced"),
        )
        for i, layer in enumerate(r.items(raw, "H264Layers", path)):
            video.layers.append(_h264_layer(r, layer, f"{path}.H264Layers[{i}]"))
        return video
    if canonical == "AACAudio":
        return AACAudio(
            profile=r.value(raw, "Profile", path, lambda v: _choice(v, AAC_PROFILES), "AACLC"),
            channels=r.value(raw, "Channels", path, _int, 2),
            sampling_rate=r.value(raw, "SamplingRate", path, _int, 48000),
            bitrate=r.value(raw, "Bitrate", path, _int, 128),
            condition=r.value(raw, "Condition", path, lambda v: _choice(v, AUDIO_CONDITIONS)),
        )
    if canonical == "CopyAudio":
        return CopyAudio()
    kind = canonical[:3]
    image = ImageCodec(
        kind=kind,
        start=r.value(raw, "Start", path, _timespec, BEST),
        step=r.value(raw, "Step", path, _timespec),
        range=r.value(raw, "Range", path, _timespec),
        stretch_mode=r.value(raw, "StretchMode", path, lambda v: _choice(v, STRETCH_MODES), "AutoSize"),
        preserve_resolution_after_rotation=r.value(
            raw, "PreserveResolutionAfterRotation", path, _bool, False
        ),
    )
    for i, layer in enumerate(r.items(raw, f"{kind}Layers", path)):
        lpath = f"{path}.{kind}Layers[{i}]"
        image.layers.append(
            ImageLayer(
                width=r.value(layer, "Width", lpath, _dimension),
                height=r.value(layer, "Height", lpath, _dimension),
                quality=r.value(layer, "Quality", lpath, _int),
                label=_opt_str(r.get(layer, "Label")),
            )
        )
    return image


def _h264_layer(r: _Reader, raw: Any, path: str) -> H264Layer:
    return H264Layer(
        width=r.value(raw, "Width", path, _dimension),
        height=r.value(raw, "Height", path, _dimension),
        bitrate=r.value(raw, "Bitrate", path, _int),
        max_bitrate=r.value(raw, "MaxBitrate", path, _int),
        buffer_window=r.value(raw, "BufferWindow", path, parse_time, 5.0),
        profile=r.value(raw, "Profile", path, lambda v: _choice(v, H264_PROFILES), "Auto"),
        level=r.value(raw, "Level", path, _level, "Auto"),
        b_frames=r.value(raw, "BFrames", path, _int),
        reference_frames=r.value(raw, "ReferenceFrames", path, _int),
        frame_rate=r.value(raw, "FrameRate", path, _rational),
        entropy_mode=r.value(raw, "EntropyMode", path, lambda v: _choice(v, ENTROPY_MODES), "Cabac"),
        adaptive_b_frame=r.value(raw, "AdaptiveBFrame", path, _bool, True),
        slices=r.value(raw, "Slices", path, _int, 0),
        label=_opt_str(r.get(raw, "Label")),
    )


def _level(value: Any) -> str:
    text = str(value).strip()
    if text.lower() == "auto":
        return "Auto"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    for level in H264_LEVELS:
        if level.lower() == text.lower():
            return level
    raise _Invalid(f"expected Auto or an H.264 level such as 3.1 or 4, got {value!r}")


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _summary(problems: list[str]) -> str:
    if len(problems) == 1:
        return f"invalid preset: {problems[0]}"
    return f"invalid preset ({len(problems)} problems): " + "; ".join(problems)


# ----------------------------------------------------------------------------------------------
# validation


def validate(preset: Preset) -> Preset:
    """Check a preset's meaning; raise PresetError listing every problem. Returns the preset."""
    problems: list[str] = []
    add = problems.append
    try:
        version = float(preset.version)
        if version < 1.0:
            add(f"Preset.Version: must be 1.0 or higher (got {preset.version!r})")
    except ValueError:
        add(f"Preset.Version: required, e.g. 1.0 (got {preset.version!r})")
    if not preset.codecs:
        add(
            "Codecs: at least one codec is required "
            "(H264Video, AACAudio, CopyAudio, JpgImage, PngImage or BmpImage)"
        )
    if not preset.outputs:
        add("Outputs: at least one output (e.g. MP4Format) is required")

    for i, source in enumerate(preset.sources):
        path = f"Sources[{i}]"
        if source.duration is not None and source.duration <= 0:
            add(f"{path}.Duration: must be longer than zero")
        if source.overlay is not None:
            add(f"{path}.Filters.VideoOverlay: overlays are not supported by this server")

    videos = [c for c in preset.codecs if isinstance(c, H264Video)]
    audios = [c for c in preset.codecs if isinstance(c, AACAudio | CopyAudio)]
    if len(videos) > 1:
        add("Codecs: only one H264Video codec is allowed (put several H264Layers in it instead)")
    if len(audios) > 1:
        add("Codecs: only one audio codec (AACAudio or CopyAudio) is allowed")

    for i, codec in enumerate(preset.codecs):
        path = f"Codecs[{i}] ({codec.type})"
        if isinstance(codec, H264Video):
            _validate_video(codec, path, add, auto=preset.auto_ladder is not None)
        elif isinstance(codec, AACAudio):
            _validate_aac(codec, path, add)
        elif isinstance(codec, ImageCodec):
            _validate_image(codec, path, add)

    mp4_outputs = [o for o in preset.outputs if o.format == "MP4Format"]
    if mp4_outputs and not videos and not audios:
        add("Outputs: an MP4Format output needs an H264Video or audio codec")
    if (videos or audios) and not mp4_outputs:
        add("Outputs: video and audio codecs need an output with MP4Format")
    for kind in IMAGE_KINDS:
        codecs_of_kind = [c for c in preset.images if c.kind == kind]
        outputs_of_kind = [o for o in preset.outputs if o.format == f"{kind}Format"]
        if codecs_of_kind and not outputs_of_kind:
            add(f"Outputs: {kind}Image needs an output with {kind}Format")
        if outputs_of_kind and not codecs_of_kind:
            add(f"Outputs: {kind}Format output has no {kind}Image codec to take images from")

    for i, output in enumerate(preset.outputs):
        _validate_file_name(output, f"Outputs[{i}].FileName", add)

    if problems:
        raise PresetError(_summary(problems), problems)
    return preset


def _validate_video(video: H264Video, path: str, add: Any, *, auto: bool) -> None:
    if not auto and not video.layers:
        add(f"{path}.H264Layers: at least one H264Layer is required")
    if not 0 < video.key_frame_interval <= 20:
        add(
            f"{path}.KeyFrameInterval: must be between 00:00:00.1 and 00:00:20 "
            f"(got {format_time(video.key_frame_interval)})"
        )
    if video.scene_change_detection and len(video.layers) > 1:
        add(
            f"{path}.SceneChangeDetection: true is only allowed with a single H264Layer "
            "(multiple bitrates need aligned keyframes)"
        )
    rates = set()
    for j, layer in enumerate(video.layers):
        lpath = f"{path}.H264Layers[{j}]"
        _validate_size(layer.width, layer.height, lpath, add)
        if layer.bitrate is None:
            add(f"{lpath}.Bitrate: required (kbps)")
        elif not 16 <= layer.bitrate <= 250000:
            add(f"{lpath}.Bitrate: must be between 16 and 250000 kbps (got {layer.bitrate})")
        if layer.max_bitrate is not None and layer.bitrate is not None and layer.max_bitrate < layer.bitrate:
            add(f"{lpath}.MaxBitrate: must not be lower than Bitrate ({layer.max_bitrate} < {layer.bitrate})")
        if not 0.1 <= layer.buffer_window <= 60:
            add(f"{lpath}.BufferWindow: must be between 00:00:00.1 and 00:01:00")
        if layer.b_frames is not None and not 0 <= layer.b_frames <= 16:
            add(f"{lpath}.BFrames: must be between 0 and 16 (got {layer.b_frames})")
        if layer.reference_frames is not None and not 1 <= layer.reference_frames <= 16:
            add(f"{lpath}.ReferenceFrames: must be between 1 and 16 (got {layer.reference_frames})")
        if not 0 <= layer.slices <= 32:
            add(f"{lpath}.Slices: must be between 0 and 32 (got {layer.slices})")
        if layer.frame_rate is not None and not 0 < layer.frame_rate <= 120:
            add(
                f"{lpath}.FrameRate: must be 0/1 (keep the source rate) or up to 120 (got {layer.frame_rate})"
            )
        rates.add(layer.frame_rate)
    if len(rates) > 1:
        add(
            f"{path}.H264Layers: every layer must use the same FrameRate "
            f"(got {', '.join(str(r or '0/1') for r in rates)})"
        )


def _validate_size(width: Dimension | None, height: Dimension | None, path: str, add: Any) -> None:
    for name, dim in (("Width", width), ("Height", height)):
        if dim is None:
            add(f"{path}.{name}: required (pixels, or a percentage like 100%)")
        elif dim.percent:
            if not 0 < dim.value <= 100:
                add(f"{path}.{name}: a percentage must be between 1% and 100% (got {dim})")
        elif dim.value <= 0 or dim.value > 8192:
            add(f"{path}.{name}: must be between 2 and 8192 pixels (got {dim})")
        elif int(dim.value) % 2:
            add(f"{path}.{name}: must be an even number (got {dim})")


def _validate_aac(audio: AACAudio, path: str, add: Any) -> None:
    if audio.channels not in AAC_CHANNELS:
        add(f"{path}.Channels: must be one of {', '.join(map(str, AAC_CHANNELS))} (got {audio.channels})")
    if audio.sampling_rate not in AAC_SAMPLING_RATES:
        add(
            f"{path}.SamplingRate: must be one of {', '.join(map(str, AAC_SAMPLING_RATES))} Hz "
            f"(got {audio.sampling_rate})"
        )
    channels = max(audio.channels, 1)
    if not 8 * channels <= audio.bitrate <= 320 * channels or audio.bitrate > 1536:
        add(
            f"{path}.Bitrate: {audio.bitrate} kbps is outside the usable range for {audio.channels} "
            f"channel(s) ({8 * channels} to {min(320 * channels, 1536)} kbps)"
        )
    if audio.profile == "HEAACV2" and audio.channels != 2:
        add(f"{path}.Profile: HEAACV2 needs exactly 2 channels (got {audio.channels})")


def _validate_image(image: ImageCodec, path: str, add: Any) -> None:
    if not image.layers:
        add(f"{path}.{image.kind}Layers: at least one {image.kind}Layer is required")
    for j, layer in enumerate(image.layers):
        lpath = f"{path}.{image.kind}Layers[{j}]"
        _validate_size(layer.width, layer.height, lpath, add)
        if layer.quality is not None:
            if image.kind != "Jpg":
                add(f"{lpath}.Quality: only JpgLayer has a Quality")
            elif not 1 <= layer.quality <= 100:
                add(f"{lpath}.Quality: must be between 1 and 100 (got {layer.quality})")
    if image.start.kind != "best":
        if image.step is not None and image.step.value <= 0:
            add(f"{path}.Step: must be greater than zero")
        for name, spec in (("Start", image.start), ("Step", image.step), ("Range", image.range)):
            if spec is not None and spec.kind == "percent" and spec.value > 100:
                add(f"{path}.{name}: a percentage must be between 0% and 100% (got {spec})")
            if spec is not None and spec.kind == "best" and name != "Start":
                add(f"{path}.{name}: {{Best}} is only allowed for Start")


def _validate_file_name(output: Output, path: str, add: Any) -> None:
    name = output.file_name
    if not name.strip():
        add(f"{path}: required, e.g. {{Basename}}_{{Width}}x{{Height}}_{{VideoBitrate}}.mp4")
        return
    macros = re.findall(r"\{([^{}]*)\}", name)
    known = {m.lower(): m for m in FILE_NAME_MACROS}
    for macro in macros:
        if macro.lower() not in known:
            add(
                f"{path}: unknown macro {{{macro}}}; known macros: "
                + ", ".join("{" + m + "}" for m in FILE_NAME_MACROS)
            )
    literal = re.sub(r"\{[^{}]*\}", "", name)
    if any(ch in literal for ch in "/\\") or ".." in literal or any(ord(ch) < 32 for ch in literal):
        add(f"{path}: must be a plain file name (no folders, '..' or control characters)")
    if output.format != "MP4Format":
        count = sum(1 for m in macros if m.lower() == "index")
        if count != 1:
            add(
                f"{path}: image outputs ({output.format}) need the {{Index}} macro exactly once "
                f"(found {count})"
            )


# ----------------------------------------------------------------------------------------------
# writing (JSON), for exporting system presets and round trips


def preset_to_dict(preset: Preset) -> dict[str, Any]:
    """The preset in the MES JSON shape."""
    data: dict[str, Any] = {
        "Version": float(preset.version) if _is_number(preset.version) else preset.version
    }
    if preset.sources:
        sources = []
        for s in preset.sources:
            entry: dict[str, Any] = {}
            if s.asset_id:
                entry["AssetID"] = s.asset_id
            if s.start_time is not None:
                entry["StartTime"] = format_time(s.start_time)
            if s.duration is not None:
                entry["Duration"] = format_time(s.duration)
            filters: dict[str, Any] = {}
            if s.deinterlace != "Auto":
                filters["Deinterlace"] = {"Mode": s.deinterlace}
            if s.rotation != "Auto":
                filters["Rotation"] = s.rotation
            if filters:
                entry["Filters"] = filters
            sources.append(entry)
        data["Sources"] = sources
    codecs_out: list[dict[str, Any]] = []
    for codec in preset.codecs:
        if isinstance(codec, H264Video):
            entry = {
                "KeyFrameInterval": format_time(codec.key_frame_interval),
                "SceneChangeDetection": codec.scene_change_detection,
                "StretchMode": codec.stretch_mode,
                "Complexity": codec.complexity,
            }
            if codec.condition:
                entry["Condition"] = codec.condition
            entry["H264Layers"] = [_layer_dict(layer) for layer in codec.layers]
            entry["Type"] = "H264Video"
        elif isinstance(codec, AACAudio):
            entry = {
                "Profile": codec.profile,
                "Channels": codec.channels,
                "SamplingRate": codec.sampling_rate,
                "Bitrate": codec.bitrate,
            }
            if codec.condition:
                entry["Condition"] = codec.condition
            entry["Type"] = "AACAudio"
        elif isinstance(codec, CopyAudio):
            entry = {"Type": "CopyAudio"}
        else:
            entry = {"Start": str(codec.start)}
            if codec.step is not None:
                entry["Step"] = str(codec.step)
            if codec.range is not None:
                entry["Range"] = str(codec.range)
            layers = []
            for layer in codec.layers:
                item: dict[str, Any] = {
                    "Type": f"{codec.kind}Layer",
                    "Width": _dim_out(layer.width),
                    "Height": _dim_out(layer.height),
                }
                if layer.quality is not None:
                    item["Quality"] = layer.quality
                layers.append(item)
            entry[f"{codec.kind}Layers"] = layers
            entry["Type"] = codec.type
        codecs_out.append(entry)
    data["Codecs"] = codecs_out
    data["Outputs"] = [{"FileName": o.file_name, "Format": {"Type": o.format}} for o in preset.outputs]
    return data


def _layer_dict(layer: H264Layer) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "Profile": layer.profile,
        "Level": layer.level.lower() if layer.level == "Auto" else layer.level,
        "Bitrate": layer.bitrate,
        "MaxBitrate": layer.max_bitrate or layer.bitrate,
        "BufferWindow": format_time(layer.buffer_window),
        "Width": _dim_out(layer.width),
        "Height": _dim_out(layer.height),
    }
    if layer.b_frames is not None:
        entry["BFrames"] = layer.b_frames
    if layer.reference_frames is not None:
        entry["ReferenceFrames"] = layer.reference_frames
    entry.update(
        {
            "EntropyMode": layer.entropy_mode,
            "AdaptiveBFrame": layer.adaptive_b_frame,
            "Type": "H264Layer",
            "FrameRate": str(layer.frame_rate) if layer.frame_rate else "0/1",
            "Slices": layer.slices,
        }
    )
    if "/" not in entry["FrameRate"]:
        entry["FrameRate"] += "/1"
    if layer.label:
        entry["Label"] = layer.label
    return entry


def _dim_out(dim: Dimension | None) -> Any:
    if dim is None:
        return None
    return str(dim) if dim.percent else int(dim.value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_preset(data: str | bytes) -> Preset:
    """Parse and validate a JSON or XML preset."""
    return validate(parse_preset(data))
