"""One encode, end to end: probe the inputs, resolve the preset, plan, run FFmpeg, describe the
results (``.ism`` + metadata XML). Nothing half-written survives a failure or a cancel."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import ffmpeg as ff
from .errors import FFmpegError, MediaError
from .manifests import build_ism, build_metadata
from .plan import EncodePlan, build_plan
from .presets import Preset, load_preset, looks_like_preset_document
from .probe import MediaInfo, probe
from .system_presets import get_system_preset

ProgressCallback = Callable[[float], None]


@dataclass
class EncodeResult:
    outputs: list[Path]
    """Every media file written: MP4s first, then thumbnails."""
    ism: Path | None
    metadata: Path
    perf: str
    """A one-line summary for ``Task.PerfMessage``."""
    plan: EncodePlan | None = None
    thumbnails: list[Path] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        """Everything the output asset should receive."""
        return [*self.outputs, *([self.ism] if self.ism else []), self.metadata]


def resolve_preset(preset_or_name: Preset | str | bytes, source: MediaInfo | None = None) -> Preset:
    """A Preset from a Preset, a JSON/XML document, or a system preset name."""
    if isinstance(preset_or_name, Preset):
        return preset_or_name
    if looks_like_preset_document(preset_or_name):
        return load_preset(preset_or_name)
    name = preset_or_name.decode("utf-8", "replace") if isinstance(preset_or_name, bytes) else preset_or_name
    return get_system_preset(name, source)


def encode(
    preset_or_name: Preset | str | bytes,
    inputs: Sequence[Path | str],
    workdir: Path | str,
    progress_cb: ProgressCallback | None = None,
    cancel_event: threading.Event | None = None,
    *,
    ffmpeg: str | None = None,
    timeout: float | None = None,
    basename: str | None = None,
    metadata_name: str | None = None,
) -> EncodeResult:
    """Encode ``inputs`` (concatenated in order when there are several) with a preset into
    ``workdir``. ``basename`` is the ``{Basename}`` of output names (default: the first input's
    file name); ``metadata_name`` names ``<name>_metadata.xml`` (default: the basename)."""
    started = time.monotonic()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    report = _Progress(progress_cb)
    infos = [probe(Path(p), verify=True) for p in inputs]
    report(2.0)
    preset = resolve_preset(preset_or_name, infos[0] if infos else None)
    plan = build_plan(preset, infos, workdir, basename=basename)
    binary = ffmpeg or ff.find_ffmpeg()
    missing = ff.ffmpeg_info(binary).missing()
    if missing:
        raise MediaError(f"the FFmpeg at {binary} cannot run this encode; it lacks {', '.join(missing)}")

    result_files: list[Path] = []
    try:
        ff_elapsed = 0.0
        steps = len(plan.commands)
        for step, command in enumerate(plan.commands):

            def scaled(percent: float, step: int = step) -> None:
                report(3.0 + 92.0 * (step + percent / 100.0) / steps)

            run = ff.run(command, scaled, cancel_event, timeout, duration=plan.duration, ffmpeg=binary)
            ff_elapsed += run.elapsed
        media = [o for o in plan.outputs if not o.is_image]
        for planned in media:
            if not planned.path.is_file() or planned.path.stat().st_size == 0:
                raise FFmpegError(f"FFmpeg finished but did not write {planned.path.name}")
            result_files.append(planned.path)
        thumbnails: list[Path] = []
        image_sizes: dict[str, tuple[int, int]] = {}
        for planned in (o for o in plan.outputs if o.is_image):
            produced = planned.image_files()
            if not produced:
                raise FFmpegError(f"FFmpeg finished but wrote no image for {planned.path.name}")
            for image in produced:
                image_sizes[image.name] = (planned.width, planned.height)
            thumbnails += produced
        result_files += thumbnails
        report(96.0)

        output_infos = [probe(p) for p in (o.path for o in media)]
        ism = None
        if output_infos:
            nominal = {
                o.path.name: {"video": o.video_bitrate * 1000, "audio": o.audio_bitrate * 1000} for o in media
            }
            ism = workdir / f"{plan.basename}.ism"
            ism.write_bytes(build_ism(output_infos, nominal_bitrates=nominal))
            result_files.append(ism)
        metadata = workdir / f"{_meta_stem(metadata_name or plan.basename)}_metadata.xml"
        metadata.write_bytes(
            build_metadata(
                infos,
                output_infos,
                images=thumbnails,
                image_sizes=image_sizes,
                preset_name=plan.preset.name,
                notes=plan.notes,
            )
        )
        result_files.append(metadata)
    except BaseException:
        _remove(plan, result_files)
        raise
    report(100.0)
    perf = _perf(plan, infos, ff_elapsed, time.monotonic() - started, binary)
    return EncodeResult(
        outputs=[p for p in result_files if p not in (ism, metadata)],
        ism=ism,
        metadata=metadata,
        perf=perf,
        plan=plan,
        thumbnails=thumbnails,
    )


class _Progress:
    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.last = -1.0

    def __call__(self, percent: float) -> None:
        percent = round(max(0.0, min(100.0, percent)), 1)
        if self.callback is not None and percent > self.last:
            self.last = percent
            with contextlib.suppress(Exception):
                self.callback(percent)


def _meta_stem(name: str) -> str:
    from .plan import safe_basename

    return safe_basename(name + ".x")


def _remove(plan: EncodePlan, written: list[Path]) -> None:
    paths = set(written)
    for planned in plan.outputs:
        if planned.is_image:
            paths.update(planned.image_files())
        else:
            paths.add(planned.path)
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def _perf(plan: EncodePlan, inputs: list[MediaInfo], ff_seconds: float, total: float, binary: str) -> str:
    rungs = [o for o in plan.outputs if o.kind in ("av", "video")]
    audio = next((o for o in plan.outputs if o.audio_bitrate), None)
    images = sum(len(o.image_files()) for o in plan.outputs if o.is_image)
    parts = []
    if rungs:
        parts.append(
            f"{len(rungs)} video layer(s) "
            + ", ".join(f"{o.width}x{o.height}@{o.video_bitrate}k" for o in rungs)
        )
    if audio:
        parts.append(f"AAC {audio.audio_bitrate}k {audio.channels}ch")
    if images:
        parts.append(f"{images} image(s)")
    speed = plan.duration / ff_seconds if ff_seconds > 0 else 0.0
    version = ff.ffmpeg_info(binary).version
    text = (
        f"Encoded {plan.duration:.2f} s from {len(inputs)} input(s) in {total:.2f} s "
        f"({speed:.2f}x realtime, FFmpeg {version}): " + "; ".join(parts)
    )
    if plan.notes:
        text += ". Notes: " + "; ".join(plan.notes)
    return text
