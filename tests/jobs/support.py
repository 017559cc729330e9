"""Helpers shared by the job tests: generated clips, uploading an input asset, submitting a job."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from openams.entities.assets import container_name
from openams.storage.base import ContentSettings
from tests.support.client import ApiClient, key_url

MES = "nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56"
BODY = ("<taskBody><inputAsset>JobInputAsset(0)</inputAsset><outputAsset>JobOutputAsset(0)</outputAsset>"
        "</taskBody>")
FINAL = (3, 4, 5)
# a deliberately slow encode (x264 "Quality" complexity): long enough for cancel or kill to land mid-encode
SLOW_PRESET = json.dumps({
    "Version": 1.0,
    "Codecs": [
        {"KeyFrameInterval": "00:00:02", "Complexity": "Quality", "Type": "H264Video",
         "H264Layers": [{"Profile": "Auto", "Level": "auto", "Bitrate": 1500, "Width": 640, "Height": 360,
                         "Type": "H264Layer"}]},
        {"Profile": "AACLC", "Channels": 2, "SamplingRate": 48000, "Bitrate": 128, "Type": "AACAudio"},
    ],
    "Outputs": [{"FileName": "{Basename}_{Width}x{Height}_{VideoBitrate}.mp4",
                 "Format": {"Type": "MP4Format"}}],
})


def q(key: str) -> str:
    return quote(key, safe="")


def make_clip(path: Path, seconds: int, size: str = "320x180") -> Path:
    from openams.media.ffmpeg import find_ffmpeg

    subprocess.run([find_ffmpeg(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={size}:rate=25:duration={seconds}", "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)], check=True)
    return path


def upload(storage: Any, api: ApiClient, path: Path, name: str = "clip.mp4") -> dict[str, Any]:
    asset = api.create("Assets", "Asset", {"Name": "src"})
    with storage.spool() as spool:
        spool.write(path.read_bytes())
        storage.put_blob(asset["StorageAccountName"], container_name(asset["Id"]), name, spool,
                         ContentSettings(content_type="video/mp4"), {})
    assert api.get(f"CreateFileInfos?assetid='{q(asset['Id'])}'").status_code == 204
    return asset


def submit(api: ApiClient, asset: dict[str, Any], preset: str, name: str = "run",
           subscriptions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Name": name, "InputMediaAssets": [{"__metadata": {"uri": key_url("Assets", asset["Id"])}}],
        "Tasks": [{"Configuration": preset, "MediaProcessorId": MES, "TaskBody": BODY}]}
    if subscriptions:
        body["JobNotificationSubscriptions"] = subscriptions
    r = api.request("POST", "Jobs", json.dumps(body).encode(),
                    **{"Content-Type": "application/json;odata=verbose", "Accept": "application/json"})
    assert r.status_code == 201, r.text
    return dict(r.json())


def job(api: ApiClient, job_id: str) -> dict[str, Any]:
    return api.list(f"Jobs()?$filter=Id eq '{job_id}'&$top=1")[0]


def task(api: ApiClient, job_id: str) -> dict[str, Any]:
    return api.list(f"Jobs('{q(job_id)}')/Tasks")[0]


def wait_final(api: ApiClient, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    current: dict[str, Any] = {}
    while time.monotonic() < deadline:
        current = job(api, job_id)
        if current["State"] in FINAL:
            return current
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not end within {timeout}s: {current} / {task(api, job_id)}")


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def cancel(api: ApiClient, job_id: str) -> None:
    r = api.get(f"CancelJob?jobid='{q(job_id)}'")
    assert r.status_code == 204, r.text


# ---- a webhook receiver ---------------------------------------------------------------------------


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def message(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    base: str
    hits: list[Hit] = field(default_factory=list)
    answers: dict[str, list[int]] = field(default_factory=dict)
    """Per path: status codes to answer with, in order (then 200)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]
