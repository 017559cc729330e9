"""Turn a preset and probed inputs into the exact FFmpeg command that encodes them.

One task is one FFmpeg process: the input(s) are decoded once, normalised to a constant frame
rate, and split into every video rung and thumbnail branch of the filter graph; each rung gets
its own libx264 encoder with the same closed, aligned GOP structure (keyframes forced every
KeyFrameInterval seconds, no scene-cut keyframes), so the MP4s switch cleanly when streamed.

Safety: inputs are absolute local paths passed as ``file:`` URLs with ``-protocol_whitelist file``
and the demuxer forced to the one the probe found (``-f``), so FFmpeg cannot be talked into
opening playlists, other files or network URLs. Nothing from the preset reaches the filter graph
except numbers the model parsed; file names never appear in it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from .errors import MediaError, PresetError
from .presets import (
    MAX_THUMBNAILS,
    AACAudio,
    CopyAudio,
    Dimension,
    H264Layer,
    H264Video,
    ImageCodec,
    Output,
    Preset,
    Source,
    TimeSpec,
    validate,
)
from .probe import MediaInfo, StreamInfo

COMPLEXITY_TO_X264 = {"Speed": "veryfast", "Balanced": "faster", "Quality": "medium"}
DEFAULT_FRAME_RATE = Fraction(25)
MAX_FRAME_RATE = Fraction(120)
BLACK_FRAME_RATE = Fraction(25)
BEST_SAMPLE_FPS = 2
BEST_BATCH = 20
COPYABLE_AUDIO = ("aac", "mp3", "ac3", "eac3", "opus", "flac", "alac")
CHANNEL_LAYOUTS = {1: "mono", 2: "stereo", 5: "5.0", 6: "5.1", 8: "7.1"}
IMAGE_ENCODERS = {"Jpg": "mjpeg", "Png": "png", "Bmp": "bmp"}
_UNSAFE_NAME_CHARS = re.compile(r"""[!*'();:@&=+$,/?%#\[\]"\\<>|\x00-\x1f]""")


@dataclass
class PlannedFile:
    """One output of the plan. Image outputs are a numbered series: ``path`` is its pattern."""

    path: Path
    kind: str
    """``av`` (video + audio), ``video``, ``audio`` or ``image``."""
    width: int = 0
    height: int = 0
    video_bitrate: int = 0
    audio_bitrate: int = 0
    channels: int = 0
    layer: int | None = None
    image_format: str | None = None
    expected_count: int | None = None

    @property
    def is_image(self) -> bool:
        return self.kind == "image"

    def image_files(self) -> list[Path]:
        """The numbered files an image output produced (call after the encode)."""
        found = []
        index = 1
        while True:
            candidate = Path(str(self.path).replace("%06d", f"{index:06d}").replace("%%", "%"))
            if not candidate.exists():
                break
            found.append(candidate)
            index += 1
        return found


@dataclass
class Rung:
    layer: H264Layer
    index: int
    scale_w: int
    scale_h: int
    out_w: int
    out_h: int
    bitrate: int
    max_bitrate: int


@dataclass
class EncodePlan:
    commands: list[list[str]]
    """FFmpeg argument lists (without the binary and the flags ``ffmpeg.run`` adds)."""
    outputs: list[PlannedFile]
    duration: float
    """Seconds of media each output covers (after trimming / concatenation)."""
    basename: str
    preset: Preset
    frame_rate: Fraction | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def args(self) -> list[str]:
        return self.commands[0]

    @property
    def media_outputs(self) -> list[PlannedFile]:
        return [o for o in self.outputs if not o.is_image]


@dataclass
class _Segment:
    info: MediaInfo
    source: Source
    offset: float
    length: float
    video: StreamInfo | None
    audio: StreamInfo | None


def safe_basename(name: str) -> str:
    """``{Basename}``: the input file name without its extension, first 32 characters, with
    characters that are not allowed in asset file names replaced by ``_``."""
    stem = Path(name).name
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    stem = _UNSAFE_NAME_CHARS.sub("_", stem).replace(".", "_").replace(" ", "_")
    stem = re.sub(r"_{2,}", "_", stem).strip("_") or "output"
    return stem[:32]


def build_plan(
    preset: Preset, inputs: list[MediaInfo], output_dir: Path, *, basename: str | None = None
) -> EncodePlan:
    """The FFmpeg command and the list of files it will write for ``preset`` on ``inputs``."""
    if not inputs:
        raise MediaError("an encode needs at least one input file")
    if preset.auto_ladder:
        from .system_presets import adaptive_preset

        reference = next((i for i in inputs if i.video is not None), inputs[0])
        preset = adaptive_preset(reference, interleaved=preset.auto_ladder == "interleaved", name=preset.name)
    validate(preset)
    output_dir = Path(output_dir).resolve()
    notes: list[str] = []
    segments = _segments(preset, inputs)
    duration = sum(s.length for s in segments)
    has_video = any(s.video is not None for s in segments)
    has_audio = any(s.audio is not None for s in segments)
    video_codec = preset.video
    audio_codec = preset.audio
    name_base = safe_basename(basename) if basename else safe_basename(inputs[0].path.name)

    # --- conditions: what to do when the input lacks a stream the preset asks for
    black = None
    if video_codec is not None and not has_video:
        if video_codec.condition is None:
            raise MediaError(
                f"{_names(inputs)} has no video stream but the preset encodes video (H264Video); set "
                "Condition to InsertBlackIfNoVideo or InsertBlackIfNoVideoBottomLayerOnly to insert "
                "black video, or use an audio-only preset such as 'AAC Audio'"
            )
        black = "bottom" if video_codec.condition.endswith("BottomLayerOnly") else "all"
    silence = False
    if isinstance(audio_codec, AACAudio) and not has_audio:
        if audio_codec.condition == "InsertSilenceIfNoAudio":
            silence = True
        elif video_codec is None or (not has_video and black is None):
            raise MediaError(
                f"{_names(inputs)} has no audio stream but the preset only encodes audio; set "
                "Condition to InsertSilenceIfNoAudio on AACAudio to insert silence"
            )
        else:
            notes.append("input has no audio: outputs are video-only")
    if isinstance(audio_codec, CopyAudio) and has_audio:
        if len(segments) > 1:
            raise MediaError("CopyAudio cannot be used when several inputs are concatenated; use AACAudio")
        codec = segments[0].audio.codec if segments[0].audio else ""
        if codec not in COPYABLE_AUDIO:
            raise MediaError(
                f"CopyAudio: the input's audio codec {codec!r} cannot be stored in MP4; use AACAudio"
            )
    if preset.images and not has_video:
        raise MediaError(f"{_names(inputs)} has no video stream to take thumbnails from")
    if (
        video_codec is None
        and not preset.images
        and audio_codec is not None
        and not has_audio
        and not silence
    ):
        raise MediaError(f"{_names(inputs)} has no audio stream")

    # --- picture geometry and frame rate
    canvas = _canvas(segments, video_codec)
    frame_rate = _frame_rate(segments, video_codec, black is not None)
    rungs: list[Rung] = []
    if video_codec is not None and (has_video or black):
        rungs = _rungs(video_codec, canvas, notes, explicit_box=black is not None)
        if black == "bottom":
            bottom = min(rungs, key=lambda r: r.bitrate)
            notes.append("no video in input: black video inserted in the lowest layer only")
            rungs = [bottom]

    audio_encoded = isinstance(audio_codec, AACAudio) and (has_audio or silence)
    audio_copied = isinstance(audio_codec, CopyAudio) and has_audio
    if isinstance(audio_codec, AACAudio) and audio_codec.profile != "AACLC":
        notes.append(f"{audio_codec.profile} is not available in this encoder: audio encoded as AAC-LC")

    # --- outputs
    names = _NameBook()
    for info in inputs:  # never overwrite an input that lives in the output folder
        if info.path.parent == output_dir:
            names.claim(info.path.name)
    media_files: list[tuple[PlannedFile, Rung | None]] = []
    for output in (o for o in preset.outputs if o.format == "MP4Format"):
        media_files.extend(
            _mp4_outputs(
                output, rungs, audio_codec, audio_encoded or audio_copied, name_base, output_dir, names
            )
        )
    image_jobs = _image_outputs(preset, canvas, frame_rate, duration, name_base, output_dir, names, notes)
    if image_jobs and not media_files and len(segments) == 1:
        # thumbnails only: stop reading the input after the last frame any of them needs
        needed = (max(job.last_frame for job in image_jobs) + 2) / float(frame_rate)
        if needed < segments[0].length:
            segments[0].length = needed
            duration = needed

    # --- command
    args: list[str] = ["-y"]
    for seg in segments:
        args += _input_args(seg)
    graph: list[str] = []
    need_video = bool(rungs) or bool(image_jobs)
    need_audio = audio_encoded
    audio_users = sum(1 for f, _ in media_files if f.kind in ("av", "audio"))
    video_label, audio_label = _source_chains(
        graph, segments, canvas, frame_rate, need_video, need_audio and audio_users > 0, audio_codec, notes
    )
    branches = len(rungs) + len(image_jobs)
    video_outs = _split(graph, video_label, branches, "v") if need_video and branches else []
    rung_labels: dict[int, str] = {}
    for rung, label in zip(rungs, video_outs[: len(rungs)], strict=False):
        out = f"r{rung.index}"
        graph.append(f"[{label}]{_scale_chain(rung.scale_w, rung.scale_h, rung.out_w, rung.out_h)}[{out}]")
        rung_labels[rung.index] = out
    image_labels = []
    for k, (job, label) in enumerate(zip(image_jobs, video_outs[len(rungs) :], strict=False)):
        out = f"i{k}"
        graph.append(f"[{label}]{job.filter}[{out}]")
        image_labels.append(out)
    audio_outs = _split(graph, audio_label, audio_users, "a") if audio_label and audio_users else []

    if graph:
        args += ["-filter_complex", ";".join(graph)]
    audio_iter = iter(audio_outs)
    for planned, rung in media_files:
        if rung is not None:
            args += ["-map", f"[{rung_labels[rung.index]}]"]
            args += _video_codec_args(video_codec, rung, frame_rate)  # type: ignore[arg-type]
        if planned.kind in ("av", "audio"):
            if audio_copied:
                seg = segments[0]
                args += ["-map", f"0:{seg.audio.index}", "-c:a", "copy"]  # type: ignore[union-attr]
            else:
                args += ["-map", f"[{next(audio_iter)}]"]
                args += _audio_codec_args(audio_codec)  # type: ignore[arg-type]
        args += [
            "-map_metadata",
            "-1",
            "-map_chapters",
            "-1",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
            "file:" + str(planned.path),
        ]
    for job, label in zip(image_jobs, image_labels, strict=True):
        args += [
            "-map",
            f"[{label}]",
            "-fps_mode",
            "passthrough",
            *job.codec_args,
            "-frames:v",
            str(job.count),
            "-f",
            "image2",
            "-start_number",
            "1",
            "file:" + str(job.planned.path),
        ]

    outputs = [f for f, _ in media_files] + [job.planned for job in image_jobs]
    if not outputs:
        raise PresetError("the preset produces no output for this input")
    return EncodePlan(
        commands=[args],
        outputs=outputs,
        duration=duration,
        basename=name_base,
        preset=preset,
        frame_rate=frame_rate if need_video else None,
        notes=notes,
    )


# ----------------------------------------------------------------------------------------------
# inputs and trimming


def _names(inputs: list[MediaInfo]) -> str:
    return ", ".join(i.path.name for i in inputs)


def _segments(preset: Preset, inputs: list[MediaInfo]) -> list[_Segment]:
    if len(preset.sources) > len(inputs):
        raise PresetError(
            f"Sources lists {len(preset.sources)} entries but the task has {len(inputs)} input file(s); "
            "give one Sources entry per input, in input order"
        )
    segments = []
    for i, info in enumerate(inputs):
        if info.video is None and info.audio is None:
            raise MediaError(f"not a media file: {info.path.name} has no audio or video stream")
        source = preset.sources[i] if i < len(preset.sources) else Source()
        origin = max(info.start_time, 0.0)
        offset = 0.0
        if source.start_time is not None:
            offset = max(0.0, source.start_time - origin)
            if info.duration and offset >= info.duration:
                raise PresetError(
                    f"Sources[{i}].StartTime: {source.start_time:g} s is at or after the end of "
                    f"{info.path.name} ({info.duration:.2f} s long)"
                )
        available = max(info.duration - offset, 0.0)
        length = min(available, source.duration) if source.duration is not None else available
        if length <= 0:
            raise MediaError(f"{info.path.name}: nothing to encode (duration {info.duration:.2f} s)")
        segments.append(_Segment(info, source, offset, length, info.video, info.audio))
    return segments


def _input_args(seg: _Segment) -> list[str]:
    args = ["-protocol_whitelist", "file", "-f", seg.info.demuxer]
    if seg.source.rotation != "Auto":
        args.append("-noautorotate")
    if seg.offset > 0:
        args += ["-ss", _num(seg.offset)]
    if seg.length < seg.info.duration - seg.offset - 1e-3:
        args += ["-t", _num(seg.length)]
    return [*args, "-i", "file:" + str(seg.info.path)]


def _num(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


# ----------------------------------------------------------------------------------------------
# geometry


def _display_size(seg: _Segment) -> tuple[int, int]:
    video = seg.video
    assert video is not None
    if seg.source.rotation == "Auto":
        return video.display_size
    width, height = video.width, video.height
    sar = video.sample_aspect_ratio
    if sar and sar > 0 and sar != 1:
        width = round(width * sar)
    if seg.source.rotation in ("90", "270"):
        width, height = height, width
    return width, height


def _canvas(segments: list[_Segment], video: H264Video | None) -> tuple[int, int]:
    for seg in segments:
        if seg.video is not None:
            w, h = _display_size(seg)
            return max(2, w // 2 * 2), max(2, h // 2 * 2)
    if video is not None and video.layers:  # black video: the largest layer's box
        layer = max(video.layers, key=lambda item: item.bitrate or 0)
        width = layer.width.resolve(1280) if layer.width else 1280
        height = layer.height.resolve(720) if layer.height else 720
        return max(2, width // 2 * 2), max(2, height // 2 * 2)
    return 1280, 720


def _frame_rate(segments: list[_Segment], video: H264Video | None, black: bool) -> Fraction:
    if video is not None:
        rates = {layer.frame_rate for layer in video.layers if layer.frame_rate}
        if rates:
            return min(rates.pop(), MAX_FRAME_RATE)
    for seg in segments:
        if seg.video is not None and seg.video.frame_rate:
            rate = Fraction(seg.video.frame_rate).limit_denominator(1001)
            return min(rate, MAX_FRAME_RATE) if rate > 0 else DEFAULT_FRAME_RATE
    return BLACK_FRAME_RATE if black else DEFAULT_FRAME_RATE


def _even(value: float) -> int:
    return max(2, round(value / 2.0) * 2)


def fit_size(source: tuple[int, int], box: tuple[int, int], mode: str) -> tuple[int, int, int, int, float]:
    """(scaled width, scaled height, output width, output height, scale factor) for a source
    frame placed in a box by StretchMode ``None``, ``AutoSize`` or ``AutoFit``."""
    sw, sh = source
    bw, bh = box
    if mode == "None":
        return bw, bh, bw, bh, max(bw / sw, bh / sh)
    ratio = min(bw / sw, bh / sh)
    w, h = _even(sw * ratio), _even(sh * ratio)
    if mode == "AutoFit":
        return min(w, bw), min(h, bh), bw, bh, ratio
    return w, h, w, h, ratio


def _rungs(video: H264Video, canvas: tuple[int, int], notes: list[str], *, explicit_box: bool) -> list[Rung]:
    cw, ch = canvas
    candidates = []
    for index, layer in enumerate(video.layers):
        box = (_resolve(layer.width, cw), _resolve(layer.height, ch))
        mode = "None" if explicit_box else video.stretch_mode
        sw, sh, ow, oh, ratio = fit_size(canvas, box, mode)
        bitrate = int(layer.bitrate or 0)
        max_bitrate = int(layer.max_bitrate or bitrate)
        candidates.append((index, layer, box, (sw, sh, ow, oh), ratio, bitrate, max_bitrate))
    mode = video.stretch_mode
    upscaling = [c for c in candidates if mode != "None" and not explicit_box and c[4] > 1.0 + 1e-3]
    kept = [c for c in candidates if c not in upscaling]
    for c in upscaling:
        if kept:
            notes.append(f"layer {c[0]} ({c[2][0]}x{c[2][1]}) dropped: larger than the {cw}x{ch} source")
    rungs = [
        Rung(layer, index, sw, sh, ow, oh, br, mbr)
        for index, layer, _box, (sw, sh, ow, oh), _r, br, mbr in kept
    ]
    if not rungs and upscaling:
        index, layer, box, _sizes, _ratio, bitrate, max_bitrate = min(
            upscaling, key=lambda c: c[2][0] * c[2][1]
        )
        factor = min(1.0, (cw * ch / max(box[0] * box[1], 1)) ** 0.75)
        bitrate = max(16, round(bitrate * factor))
        max_bitrate = max(bitrate, round(max_bitrate * factor))
        notes.append(
            f"layer {index} ({box[0]}x{box[1]}) clamped to the {cw}x{ch} source at {bitrate} kbps; "
            "other layers dropped"
        )
        rungs = [Rung(layer, index, cw, ch, cw, ch, bitrate, max_bitrate)]
    return rungs


def _resolve(dim: Dimension | None, source: int) -> int:
    if dim is None:
        return source
    return max(2, dim.resolve(source) // 2 * 2)


def _scale_chain(sw: int, sh: int, ow: int, oh: int) -> str:
    chain = f"scale={sw}:{sh}:flags=bicubic,setsar=1"
    if (ow, oh) != (sw, sh):
        chain += f",pad={ow}:{oh}:({ow}-iw)/2:({oh}-ih)/2:color=black"
    return chain


# ----------------------------------------------------------------------------------------------
# filter graph


def _split(graph: list[str], label: str, count: int, kind: str) -> list[str]:
    if count <= 1:
        return [label] if count == 1 else []
    outs = [f"{kind}s{i}" for i in range(count)]
    splitter = "split" if kind == "v" else "asplit"
    graph.append(f"[{label}]{splitter}={count}" + "".join(f"[{o}]" for o in outs))
    return outs


def _source_chains(
    graph: list[str],
    segments: list[_Segment],
    canvas: tuple[int, int],
    frame_rate: Fraction,
    need_video: bool,
    need_audio: bool,
    audio_codec: object,
    notes: list[str],
) -> tuple[str | None, str | None]:
    """Per-input video/audio chains (synthesising black/silence where an input lacks a stream),
    joined with the concat filter when there are several inputs. Returns the final labels."""
    multi = len(segments) > 1
    rate = f"{frame_rate.numerator}/{frame_rate.denominator}"
    cw, ch = canvas
    sample_rate = audio_codec.sampling_rate if isinstance(audio_codec, AACAudio) else 48000
    channels = audio_codec.channels if isinstance(audio_codec, AACAudio) else 2
    layout = CHANNEL_LAYOUTS.get(channels, "stereo")
    v_labels, a_labels = [], []
    for i, seg in enumerate(segments):
        if need_video:
            label = f"sv{i}"
            if seg.video is not None:
                chain = []
                if seg.source.rotation != "Auto":  # the file's own rotation is overridden: drop it
                    chain.append("sidedata=mode=delete:type=DISPLAYMATRIX")
                if seg.source.deinterlace != "Off" and seg.video.interlaced:
                    chain.append("bwdif=mode=send_frame:deint=interlaced")
                chain += {
                    "90": ["transpose=clock"],
                    "180": ["hflip", "vflip"],
                    "270": ["transpose=cclock"],
                }.get(seg.source.rotation, [])
                chain.append(f"fps={rate}")
                if multi:
                    chain += [
                        f"scale={cw}:{ch}:force_original_aspect_ratio=decrease:flags=bicubic",
                        f"pad={cw}:{ch}:({cw}-iw)/2:({ch}-ih)/2:color=black",
                        "setsar=1",
                    ]
                chain.append("format=yuv420p")
                graph.append(f"[{i}:{seg.video.index}]" + ",".join(chain) + f"[{label}]")
            else:
                graph.append(
                    f"color=c=black:s={cw}x{ch}:r={rate}:d={_num(seg.length)},format=yuv420p[{label}]"
                )
                if multi:
                    notes.append(
                        f"{seg.info.path.name} has no video: black inserted for its {seg.length:.2f} s"
                    )
            v_labels.append(label)
        if need_audio:
            label = f"sa{i}"
            if seg.audio is not None:
                graph.append(
                    f"[{i}:{seg.audio.index}]aresample={sample_rate},"
                    f"aformat=sample_fmts=fltp:sample_rates={sample_rate}:channel_layouts={layout}[{label}]"
                )
            else:
                graph.append(
                    f"anullsrc=r={sample_rate}:cl={layout},atrim=duration={_num(seg.length)}[{label}]"
                )
                if multi or not any(s.audio for s in segments):
                    notes.append(f"{seg.info.path.name} has no audio: silence inserted")
            a_labels.append(label)
    if not multi:
        return (v_labels[0] if v_labels else None), (a_labels[0] if a_labels else None)
    pads = "".join(f"[{v}]" if need_video else "" for v in v_labels)
    if need_video and need_audio:
        pads = "".join(f"[{v}][{a}]" for v, a in zip(v_labels, a_labels, strict=True))
    elif need_audio:
        pads = "".join(f"[{a}]" for a in a_labels)
    outs = ("[cv]" if need_video else "") + ("[ca]" if need_audio else "")
    graph.append(f"{pads}concat=n={len(segments)}:v={int(need_video)}:a={int(need_audio)}{outs}")
    return ("cv" if need_video else None), ("ca" if need_audio else None)


# ----------------------------------------------------------------------------------------------
# encoders


def _video_codec_args(video: H264Video, rung: Rung, frame_rate: Fraction) -> list[str]:
    layer = rung.layer
    kfi = video.key_frame_interval
    gop = max(1, math.ceil(kfi * float(frame_rate) - 1e-6))
    args = [
        "-c:v",
        "libx264",
        "-preset",
        COMPLEXITY_TO_X264.get(video.complexity, "fast"),
        "-b:v",
        f"{rung.bitrate}k",
        "-maxrate",
        f"{rung.max_bitrate}k",
        "-bufsize",
        f"{max(1, round(rung.max_bitrate * layer.buffer_window))}k",
        "-g",
        str(gop),
    ]
    if video.scene_change_detection:
        args += ["-keyint_min", str(max(1, min(gop, round(float(frame_rate)))))]
    else:
        args += [
            "-keyint_min",
            str(gop),
            "-sc_threshold",
            "0",
            "-force_key_frames",
            f"expr:gte(t,n_forced*{_num(kfi)})",
        ]
    baseline = layer.profile == "Baseline"
    b_frames = 0 if baseline else layer.b_frames
    if b_frames is not None:
        args += ["-bf", str(b_frames)]
    if layer.reference_frames is not None:
        args += ["-refs", str(layer.reference_frames)]
    params = ["open-gop=0"]
    if not video.scene_change_detection:
        params.append("scenecut=0")
    if b_frames:
        params.append(f"b-adapt={1 if layer.adaptive_b_frame else 0}")
    if layer.slices:
        params.append(f"slices={layer.slices}")
    if layer.entropy_mode == "Cavlc" or baseline:
        params.append("cabac=0")
    args += ["-x264-params", ":".join(params)]
    if layer.profile != "Auto":
        args += ["-profile:v", layer.profile.lower()]
    if layer.level != "Auto":
        args += ["-level:v", layer.level]
    args += ["-pix_fmt", "yuv420p"]
    return args


def _audio_codec_args(audio: AACAudio) -> list[str]:
    return [
        "-c:a",
        "aac",
        "-profile:a",
        "aac_low",
        "-b:a",
        f"{audio.bitrate}k",
        "-ac",
        str(audio.channels),
        "-ar",
        str(audio.sampling_rate),
    ]


# ----------------------------------------------------------------------------------------------
# output naming


class _NameBook:
    """Hands out unique file names: a repeated name gets ``_2``, ``_3``… before its extension."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def claim(self, name: str) -> str:
        candidate, n = name, 1
        while candidate.lower() in self.used:
            n += 1
            stem, dot, ext = name.rpartition(".")
            candidate = f"{stem}_{n}.{ext}" if dot else f"{name}_{n}"
        self.used.add(candidate.lower())
        return candidate


def expand_file_name(template: str, values: dict[str, str]) -> str:
    """Replace ``{Macro}`` (any case) with its value; unknown macros become empty."""
    lowered = {k.lower(): v for k, v in values.items()}
    name = re.sub(r"\{([^{}]*)\}", lambda m: lowered.get(m.group(1).lower(), ""), template)
    name = name.replace("/", "_").replace("\\", "_")
    if not name.strip(". "):
        raise PresetError(f"output FileName {template!r} expands to an empty name")
    return name


def _mp4_outputs(
    output: Output,
    rungs: list[Rung],
    audio_codec: object,
    audio_present: bool,
    base: str,
    output_dir: Path,
    names: _NameBook,
) -> list[tuple[PlannedFile, Rung | None]]:
    audio_kbps = audio_codec.bitrate if isinstance(audio_codec, AACAudio) else 0
    channels = audio_codec.channels if isinstance(audio_codec, AACAudio) else 0
    planned: list[tuple[PlannedFile, Rung | None]] = []
    with_audio = audio_present and output.streams == "all"
    if rungs and output.streams in ("all", "video"):
        for rung in rungs:
            kind = "av" if with_audio else "video"
            values = _macro_values(
                base,
                rung.out_w,
                rung.out_h,
                rung.bitrate,
                audio_kbps if with_audio else 0,
                channels if with_audio else 0,
                ".mp4",
                rung.layer.label,
                "H264",
            )
            name = names.claim(expand_file_name(output.file_name, values))
            planned.append(
                (
                    PlannedFile(
                        output_dir / name,
                        kind,
                        rung.out_w,
                        rung.out_h,
                        rung.bitrate,
                        audio_kbps if with_audio else 0,
                        channels if with_audio else 0,
                        layer=rung.index,
                    ),
                    rung,
                )
            )
    elif audio_present and output.streams in ("all", "audio") and not (rungs and output.streams == "all"):
        values = _macro_values(base, 0, 0, 0, audio_kbps, channels, ".mp4", None, "AAC")
        name = names.claim(expand_file_name(output.file_name, values))
        planned.append(
            (PlannedFile(output_dir / name, "audio", audio_bitrate=audio_kbps, channels=channels), None)
        )
    return planned


def _macro_values(
    base: str,
    width: int,
    height: int,
    video_kbps: int,
    audio_kbps: int,
    channels: int,
    extension: str,
    label: str | None,
    codec: str,
    index: str = "",
) -> dict[str, str]:
    bitrate = video_kbps or audio_kbps
    return {
        "Basename": base,
        "Width": str(width) if width else "",
        "Height": str(height) if height else "",
        "VideoBitrate": str(video_kbps) if video_kbps else "",
        "AudioBitrate": str(audio_kbps) if audio_kbps else "",
        "Bitrate": str(bitrate) if bitrate else "",
        "Channels": str(channels) if channels else "",
        "Channel": str(channels) if channels else "",
        "Extension": extension,
        "Label": _UNSAFE_NAME_CHARS.sub("_", label) if label else "",
        "Codec": codec,
        "Resolution": f"{width}x{height}" if width else "",
        "Index": index,
    }


# ----------------------------------------------------------------------------------------------
# thumbnails


@dataclass
class _ImageJob:
    planned: PlannedFile
    filter: str
    codec_args: list[str]
    count: int
    last_frame: int


def _image_outputs(
    preset: Preset,
    canvas: tuple[int, int],
    frame_rate: Fraction,
    duration: float,
    base: str,
    output_dir: Path,
    names: _NameBook,
    notes: list[str],
) -> list[_ImageJob]:
    jobs: list[_ImageJob] = []
    fps = float(frame_rate)
    total_frames = max(1, math.floor(duration * fps + 1e-6))
    cw, ch = canvas
    for codec_index, image in enumerate(preset.images):
        outputs = [o for o in preset.outputs if o.format == image.format]
        same_kind = [c for c in preset.images if c.kind == image.kind]
        output = outputs[min(same_kind.index(image), len(outputs) - 1)]
        select, count, last_frame = _selection(image, fps, duration, total_frames, notes, codec_index)
        for layer_index, layer in enumerate(image.layers):
            box = (_resolve(layer.width, cw), _resolve(layer.height, ch))
            sw, sh, ow, oh, ratio = fit_size(canvas, box, image.stretch_mode)
            if ratio > 1.0 + 1e-3 and image.stretch_mode != "None":
                sw, sh, ow, oh = cw, ch, cw, ch
                notes.append(
                    f"{image.type} layer {layer_index} ({box[0]}x{box[1]}) kept at the {cw}x{ch} source size"
                )
            values = _macro_values(
                base, ow, oh, 0, 0, 0, image.extension, layer.label, image.kind.upper(), index="\x00INDEX\x00"
            )
            expanded = expand_file_name(output.file_name, values)
            pattern = expanded.replace("%", "%%").replace("\x00INDEX\x00", "%06d")
            if len(image.layers) > 1 and not re.search(
                r"\{(width|height|label|resolution)\}", output.file_name, re.I
            ):
                stem, dot, ext = pattern.rpartition(".")
                pattern = f"{stem}_{ow}x{oh}.{ext}" if dot else f"{pattern}_{ow}x{oh}"
            pattern = names.claim(pattern)
            planned = PlannedFile(
                output_dir / pattern,
                "image",
                ow,
                oh,
                layer=layer_index,
                image_format=image.format,
                expected_count=count,
            )
            chain = f"{select},{_scale_chain(sw, sh, ow, oh)}"
            if image.start.kind == "best":
                chain += f",thumbnail=n={_best_batch(total_frames, fps)}"
            jobs.append(_ImageJob(planned, chain, _image_codec_args(image, layer.quality), count, last_frame))
    return jobs


def _best_batch(total_frames: int, fps: float) -> int:
    """How many sampled frames ``{Best}`` compares: up to BEST_BATCH, fewer for short inputs."""
    step = max(1, round(fps / BEST_SAMPLE_FPS))
    return max(1, min(BEST_BATCH, total_frames // step))


def _selection(
    image: ImageCodec, fps: float, duration: float, total_frames: int, notes: list[str], codec_index: int
) -> tuple[str, int, int]:
    """The ``select`` filter picking the frames of an image codec, how many it yields and the
    last frame it may need."""
    if image.start.kind == "best":
        step = max(1, round(fps / BEST_SAMPLE_FPS))
        return f"select='not(mod(n\\,{step}))'", 1, step * _best_batch(total_frames, fps)
    last = total_frames - 1
    first = _frame_at(image.start, fps, duration)
    if first > last:
        notes.append(
            f"{image.type} Start {image.start} is past the end of the {duration:.2f} s input: "
            "the last frame is used"
        )
        first = last
    if image.step is None:  # a single image (a Range without a Step selects nothing more)
        end, step = first, 1
    else:
        step = max(1, _frame_count(image.step, fps, duration))
        end = min(last, first + _frame_span(image.range, fps, duration)) if image.range is not None else last
    count = (end - first) // step + 1
    if count > MAX_THUMBNAILS:
        raise PresetError(
            f"Codecs[{codec_index}] ({image.type}): Start/Step/Range select {count} images; "
            f"at most {MAX_THUMBNAILS} are allowed"
        )
    expr = f"gte(n\\,{first})*lte(n\\,{end})*not(mod(n-{first}\\,{step}))"
    return f"select='{expr}'", count, end


def _frame_at(spec: TimeSpec, fps: float, duration: float) -> int:
    """The first frame at or after a Start position."""
    if spec.kind == "frame":
        return int(spec.value)
    return max(0, math.ceil(spec.seconds(duration, fps) * fps - 1e-6))


def _frame_count(spec: TimeSpec, fps: float, duration: float) -> int:
    """A Step as a whole number of frames (rounded half up)."""
    if spec.kind == "frame":
        return int(spec.value)
    return math.floor(spec.seconds(duration, fps) * fps + 0.5)


def _frame_span(spec: TimeSpec, fps: float, duration: float) -> int:
    """A Range as a number of frames after Start (inclusive end)."""
    if spec.kind == "frame":
        return int(spec.value)
    return math.floor(spec.seconds(duration, fps) * fps + 1e-6)


def _image_codec_args(image: ImageCodec, quality: int | None) -> list[str]:
    encoder = IMAGE_ENCODERS[image.kind]
    if image.kind == "Jpg":
        q = quality if quality is not None else 90
        qscale = max(2, min(31, round(31 - (q - 1) * 29 / 99)))
        return ["-c:v", encoder, "-q:v", str(qscale), "-pix_fmt", "yuvj420p", "-strict", "-1"]
    if image.kind == "Png":
        return ["-c:v", encoder, "-pix_fmt", "rgb24"]
    return ["-c:v", encoder, "-pix_fmt", "bgr24"]
