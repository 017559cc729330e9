"""Published assets on a real `openams serve`, shared by the origin's end-to-end tests.

One server per test session of each xdist worker that needs one (module scope would encode the
same clips several times). The encoded set (`published`) is shared by the modules of the
`xdist_group("origin")`, which therefore run on one worker; modules that only need a server and
make their own assets have groups of their own, so they spread over the workers. The assets are
made the way users make them: an upload encoded with system presets through the Jobs API, and a
set of MP4 renditions uploaded as they are (no `.ism`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openams.media.ffmpeg import find_ffmpeg
from tests.support.serve import ServeProcess

SOURCE_SECONDS = 12
SOURCE_FPS = 25
PRESETS = {"adaptive": "Adaptive Streaming", "mbr720": "H264 Multiple Bitrate 720p",
           "sbr": "H264 Single Bitrate 720p", "aac": "AAC Good Quality Audio"}
USER_RUNGS = (("640x360", "900k"), ("480x270", "500k"), ("320x180", "250k"))


@dataclass
class Published:
    label: str
    asset_id: str
    path: str
    """The locator's Path: `http://127.0.0.1:<port>/<guid>/`."""
    files: list[dict[str, Any]]
    manifest: str
    """`<name>.ism` as used in URLs."""

    def url(self, fmt: str | None = None, extra: str = "") -> str:
        params = ",".join(p for p in ((f"format={fmt}" if fmt else ""), extra) if p)
        return f"{self.path}{self.manifest}/manifest" + (f"({params})" if params else "")


def make_clip(path: Path, seconds: float, size: str, *, fps: int = SOURCE_FPS, bitrate: str | None = None,
              gop: int | None = None, audio: bool = True) -> Path:
    """testsrc2 + a 48 kHz stereo tone as H.264/AAC MP4."""
    args = [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}", "-ac", "2"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    if bitrate:
        args += ["-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate]
    if gop:
        args += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "128k"]
    subprocess.run([*args, "-movflags", "+faststart", str(path)], check=True, timeout=300)
    return path


@pytest.fixture(scope="session")
def origin_server(tmp_path_factory: pytest.TempPathFactory, db_url: str) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path_factory.mktemp("origin") / "data", database_url=db_url).start()
    try:
        yield server
    finally:
        server.stop()


def publish(server: ServeProcess, label: str, asset_id: str) -> Published:
    from openams.client import READ

    with server.client() as client:
        files = client.files(asset_id)
        policy = client.create_policy(f"stream {label}", READ, 600)
        locator = client.create_origin_locator(asset_id, policy["Id"])
    ism = next((f["Name"] for f in files if f["Name"].endswith(".ism")), "manifest.ism")
    return Published(label, asset_id, locator["Path"], files, ism)


@pytest.fixture(scope="session")
def source_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("src") / "source.mp4", SOURCE_SECONDS, "1280x720")


@pytest.fixture(scope="session")
def published(origin_server: ServeProcess, source_clip: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, Published]:
    """Every kind of streamable asset, published: encoder outputs of each preset and a user set."""
    out: dict[str, Published] = {}
    with origin_server.client() as client:
        source = client.upload(str(source_clip)).asset_id
        jobs = {label: client.submit_job(source, preset, f"origin-{label}")["Id"] for label, preset in PRESETS.items()}
        for label, job_id in jobs.items():
            status = client.wait_job(job_id, interval=0.5, timeout=600)
            assert status.label == "Finished", status.errors
            out[label] = publish(origin_server, label, client.job_outputs(job_id)[0]["Id"])
        folder = tmp_path_factory.mktemp("userset")
        rungs = [make_clip(folder / f"user_{size}.mp4", SOURCE_SECONDS, size, bitrate=rate, gop=2 * SOURCE_FPS)
                 for size, rate in USER_RUNGS]
        user = client.upload_files([str(p) for p in rungs], "user set").asset_id
    out["userset"] = publish(origin_server, "userset", user)
    return out
