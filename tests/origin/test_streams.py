"""Every streaming format of every kind of asset decodes with FFmpeg, frame-exact.

FFmpeg reads the master playlist / MPD over HTTP from a real `openams serve`, follows every
variant and segment, and decodes all of it (`-f framecrc`): no error may be printed, and every
video rendition must have exactly the source's frames and duration.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict

import httpx
import pytest
from lxml import etree

from openams.media.ffmpeg import find_ffmpeg
from tests.origin.conftest import SOURCE_FPS, SOURCE_SECONDS, Published

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("origin")]  # one server + encode per run

DECODED_FORMATS = ("m3u8-aapl", "m3u8-aapl-v3", "m3u8-cmaf", "mpd-time-csf", "mpd-time-cmaf")
KINDS = ("adaptive", "mbr720", "sbr", "aac", "userset")


def decode(url: str) -> tuple[dict[int, dict[str, float]], str]:
    """Decode every stream of `url`; returns per stream {type, frames, seconds} and FFmpeg's errors."""
    proc = subprocess.run([find_ffmpeg(), "-nostdin", "-v", "error", "-i", url, "-map", "0", "-f", "framecrc", "-"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    streams: dict[int, dict[str, float]] = defaultdict(lambda: {"frames": 0, "ticks": 0})
    kinds: dict[int, str] = {}
    timebase: dict[int, float] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"#media_type (\d+): (\w+)", line)
        if m:
            kinds[int(m.group(1))] = m.group(2)
            continue
        m = re.match(r"#tb (\d+): (\d+)/(\d+)", line)
        if m:
            timebase[int(m.group(1))] = int(m.group(2)) / int(m.group(3))
            continue
        if line.startswith("#") or not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        index = int(parts[0])
        streams[index]["frames"] += 1
        streams[index]["ticks"] += int(parts[3])
    out = {i: {"type": kinds.get(i, "?"), "frames": s["frames"], "seconds": s["ticks"] * timebase.get(i, 0)}
           for i, s in streams.items()}
    return out, proc.stderr


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", DECODED_FORMATS)
def test_ffmpeg_decodes_every_rendition_frame_exact(published: dict[str, Published], kind: str, fmt: str) -> None:
    asset = published[kind]
    streams, errors = decode(asset.url(fmt))
    assert errors.strip() == "", errors[-3000:]
    videos = [s for s in streams.values() if s["type"] == "video"]
    audios = [s for s in streams.values() if s["type"] == "audio"]
    assert audios and (videos or kind == "aac"), streams
    expected_rungs = {"userset": 3, "sbr": 1, "aac": 0}.get(kind)
    if expected_rungs is not None:
        assert len(videos) == expected_rungs, streams
    for v in videos:
        assert v["frames"] == SOURCE_SECONDS * SOURCE_FPS, streams
        assert abs(v["seconds"] - SOURCE_SECONDS) <= 1 / SOURCE_FPS + 1e-6, streams
    for a in audios:
        assert abs(a["seconds"] - SOURCE_SECONDS) <= 0.05, streams


@pytest.mark.parametrize("kind", KINDS)
def test_smooth_manifest_lists_every_fragment_and_each_one_is_served(published: dict[str, Published],
                                                                     kind: str) -> None:
    asset = published[kind]
    r = httpx.get(asset.url(), timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.ms-sstr+xml", r.text
    root = etree.fromstring(r.content)
    assert root.tag == "SmoothStreamingMedia" and root.get("TimeScale", "10000000") == "10000000"
    assert abs(int(root.get("Duration")) / 1e7 - SOURCE_SECONDS) < 0.1
    fetched = 0
    with httpx.Client(timeout=30) as http:
        for stream in root.iter("StreamIndex"):
            template = stream.get("Url")
            bitrate = stream.find("QualityLevel").get("Bitrate")
            t = 0
            for c in stream.iter("c"):
                t = int(c.get("t", t))
                for _ in range(int(c.get("r", "1"))):
                    url = asset.path + asset.manifest + "/" + template.replace("{bitrate}", bitrate).replace(
                        "{start time}", str(t))
                    seg = http.get(url)
                    assert seg.status_code == 200, (url, seg.text)
                    assert seg.content[4:8] == b"moof", url
                    fetched += 1
                    t += int(c.get("d"))
    assert fetched == len(root.findall("StreamIndex")) * SOURCE_SECONDS / 2  # 2 s fragments, every stream


def test_progressive_download_of_each_mp4(published: dict[str, Published]) -> None:
    asset = published["userset"]
    name = sorted(f["Name"] for f in asset.files)[0]
    size = next(int(f["ContentFileSize"]) for f in asset.files if f["Name"] == name)
    whole = httpx.get(asset.path + name, timeout=30)
    assert whole.status_code == 200 and len(whole.content) == size
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    part = httpx.get(asset.path + name, headers={"Range": "bytes=100-199"}, timeout=30)
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{size}"
    tail = httpx.get(asset.path + name, headers={"Range": "bytes=-10"}, timeout=30)
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    beyond = httpx.get(asset.path + name, headers={"Range": f"bytes={size}-"}, timeout=30)
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
