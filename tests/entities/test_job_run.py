"""Jobs run end to end through the in-process runner: encode, outputs, states, cancel, failures."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from openams.entities.assets import container_name
from openams.storage.base import ContentSettings
from tests.support.client import ApiClient, key_url

MES = "nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56"
BODY = "<taskBody><inputAsset>JobInputAsset(0)</inputAsset><outputAsset>JobOutputAsset(0)</outputAsset></taskBody>"


def q(key: str) -> str:
    return quote(key, safe="")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from openams.media.ffmpeg import find_ffmpeg

    out = tmp_path_factory.mktemp("clips") / "clip.mp4"
    subprocess.run([find_ffmpeg(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=320x180:rate=25:duration=3", "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out)], check=True)
    return out


@pytest.fixture
def scheduler(runtime):  # type: ignore[no-untyped-def]
    runtime.start_jobs()
    yield runtime.scheduler
    runtime.stop_jobs()


def _upload(runtime, api: ApiClient, path: Path, name: str = "clip.mp4") -> dict:  # type: ignore[no-untyped-def]
    asset = api.create("Assets", "Asset", {"Name": "src"})
    store = runtime.storage
    with store.spool() as spool:
        spool.write(path.read_bytes())
        store.put_blob(asset["StorageAccountName"], container_name(asset["Id"]), name, spool,
                       ContentSettings(content_type="video/mp4"), {})
    assert api.get(f"CreateFileInfos?assetid='{q(asset['Id'])}'").status_code == 204
    return asset


def _job(api: ApiClient, asset: dict, preset: str) -> dict:
    r = api.request("POST", "Jobs", json.dumps({
        "Name": "run", "InputMediaAssets": [{"__metadata": {"uri": key_url("Assets", asset["Id"])}}],
        "Tasks": [{"Configuration": preset, "MediaProcessorId": MES, "TaskBody": BODY}]}).encode(),
        **{"Content-Type": "application/json;odata=verbose", "Accept": "application/json"})
    assert r.status_code == 201, r.text
    return r.json()


def _wait(api: ApiClient, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.list(f"Jobs()?$filter=Id eq '{job_id}'&$top=1")[0]
        if job["State"] in (3, 4, 5):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_single_bitrate_job_finishes_with_outputs(runtime, api: ApiClient, clip: Path, scheduler) -> None:  # type: ignore[no-untyped-def]
    asset = _upload(runtime, api, clip)
    job = _job(api, asset, "H264 Single Bitrate 720p")
    done = _wait(api, job["Id"])
    task = api.list(f"Jobs('{q(job['Id'])}')/Tasks")[0]
    assert done["State"] == 3, task
    assert task["Progress"] == 100.0 and task["ErrorDetails"] == [] and task["EndTime"]
    out = api.list(f"Jobs('{q(job['Id'])}')/OutputMediaAssets")[0]
    files = api.list(f"Assets('{q(out['Id'])}')/Files")
    names = {f["Name"] for f in files}
    assert any(n.endswith(".mp4") for n in names) and any(n.endswith(".ism") for n in names), names
    primary = [f["Name"] for f in files if f["IsPrimary"]]
    assert len(primary) == 1 and primary[0].endswith(".ism")
    assert all(int(f["ContentFileSize"]) > 0 for f in files)
    codes = [e["Code"] for e in task["HistoricalEvents"]]
    assert codes[0] == "Queued" and "Processing" in codes and codes[-1] == "Finished"


def test_bad_input_and_bad_preset_end_in_error(runtime, api: ApiClient, clip: Path, scheduler, tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    bad = _upload(runtime, api, text, "notes.mp4")
    job = _job(api, bad, "H264 Single Bitrate 720p")
    done = _wait(api, job["Id"])
    task = api.list(f"Jobs('{q(job['Id'])}')/Tasks")[0]
    assert done["State"] == 4 and task["ErrorDetails"][0]["Code"] == "InvalidInput", task
    good = _upload(runtime, api, clip)
    job = _job(api, good, "No Such Preset 9000")
    done = _wait(api, job["Id"])
    task = api.list(f"Jobs('{q(job['Id'])}')/Tasks")[0]
    assert done["State"] == 4 and task["ErrorDetails"][0]["Code"] == "PresetError", task
    assert "No Such Preset 9000" in task["ErrorDetails"][0]["Message"]
    out = api.list(f"Jobs('{q(job['Id'])}')/OutputMediaAssets")[0]
    assert api.list(f"Assets('{q(out['Id'])}')/Files") == []
