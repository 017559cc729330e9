"""Single frames in-process with PyAV, for quick posters and previews (no FFmpeg process).

Encodes use the thumbnail codecs of a preset (``plan.py``); this is for callers that need one
picture of an already probed file right now, e.g. a portal preview.
"""

from __future__ import annotations

from pathlib import Path

from .errors import NotMediaError
from .probe import SAFE_DEMUXERS, probe

_ENCODERS = {"jpeg": ("mjpeg", "yuvj420p"), "png": ("png", "rgb24")}


def snapshot(
    path: str | Path,
    at: float | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
    image_format: str = "jpeg",
) -> bytes:
    """The frame at (or just after) ``at`` seconds — default 10 % into the file — as JPEG or PNG
    bytes. With only ``width`` or ``height`` the other side keeps the display aspect ratio."""
    import av

    if image_format not in _ENCODERS:
        raise ValueError(f"image_format must be one of {', '.join(_ENCODERS)}")
    info = probe(path)  # refuses playlists, scripts and non-media before decoding anything
    video = info.video
    if video is None:
        raise NotMediaError(f"{info.path.name} has no video stream to take a picture from")
    target = info.duration * 0.1 if at is None else max(0.0, min(at, max(info.duration - 0.001, 0.0)))
    display_w, display_h = video.display_size
    if width and not height:
        height = max(2, round(display_h * width / display_w / 2) * 2)
    elif height and not width:
        width = max(2, round(display_w * height / display_h / 2) * 2)
    width, height = width or display_w, height or display_h
    options = {"protocol_whitelist": "file", "format_whitelist": ",".join(SAFE_DEMUXERS)}
    with av.open("file:" + str(info.path), options=options) as container:
        stream = container.streams[video.index]
        start = info.start_time + target
        if target > 0 and stream.time_base:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
        chosen = None
        for frame in container.decode(stream):
            chosen = frame
            if frame.time is not None and frame.time >= start - 1e-3:
                break
        if chosen is None:
            raise NotMediaError(f"{info.path.name}: no decodable picture at {target:.2f} s")
        if chosen.rotation % 360:
            chosen = _rotate(chosen)
        codec_name, pix_fmt = _ENCODERS[image_format]
        picture = chosen.reformat(width=width, height=height, format=pix_fmt)
        encoder = av.CodecContext.create(codec_name, "w")
        encoder.width, encoder.height, encoder.pix_fmt = width, height, pix_fmt
        encoder.time_base = stream.time_base or av.time_base
        picture.pts = None
        return b"".join(bytes(packet) for packet in [*encoder.encode(picture), *encoder.encode(None)])


def _rotate(frame):  # type: ignore[no-untyped-def]
    """Apply a frame's display rotation with a tiny filter graph."""
    import av.filter

    graph = av.filter.Graph()
    source = graph.add_buffer(template=frame)
    steps = {90: ["transpose=cclock"], 180: ["hflip", "vflip"], 270: ["transpose=clock"]}.get(
        round(frame.rotation) % 360, []
    )
    node = source
    for step in steps:
        name, _, args = step.partition("=")
        nxt = graph.add(name, args or None)
        node.link_to(nxt)
        node = nxt
    sink = graph.add("buffersink")
    node.link_to(sink)
    graph.configure()
    graph.push(frame)
    return graph.pull()
