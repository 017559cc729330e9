"""Encoding acceptance, through the Operations API with the in-process runner (and, for the crash
case, a real `openams serve`):

(a) a 10 s 1080p clip with stereo audio through `Adaptive Streaming` and `H264 Multiple Bitrate 720p`:
    the documented rungs (never above the source), sizes and bitrates (±15 %), keyframes every 2 s
    aligned across rungs, durations (±0.1 s) and an `.ism` listing every track;
(b) thumbnail presets (JpgImage/PngImage Start/Step/Range) write the expected number of images at the
    asked sizes;
(c) a job posted as verbose JSON deep insert, as JSON light and as an Atom `$batch` all finish; a
    two-task chain runs in order;
(d) cancel during encoding ends Canceled with no FFmpeg left; a server killed with SIGKILL mid-encode
    and restarted on the same data directory finishes the job (or fails it, saying why) — never stuck,
    never a half-written output asset;
(e) bad inputs and bad presets end in Error with a specific ErrorDetail, leaking neither FFmpeg processes
    nor scratch files.

Entity-level submission rules live in tests/entities/test_jobs.py and test_job_run.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from openams.entities.assets import container_name
from openams.media.ffmpeg import find_ffmpeg
from openams.media.probe import MediaInfo, keyframe_times, probe
from tests.jobs.support import (
    BODY,
    MES,
    SLOW_PRESET,
    cancel,
    job,
    q,
    submit,
    task,
    upload,
    wait_final,
    wait_for,
)
from tests.support.client import BASE, ApiClient, key_url

FINISHED, ERROR, CANCELED = 3, 4, 5
# the documented example ladder for a 1080p29.97 source (spec §4.2); a 25 fps source gets a little less
ADAPTIVE_1080 = [(1920, 1080, 6780), (1280, 720, 3520), (960, 540, 2210), (640, 360, 1150), (480, 270, 720),
                 (320, 180, 380)]
MBR_720 = [(1280, 720, 3400), (960, 540, 2250), (960, 540, 1500), (640, 360, 1000), (640, 360, 650),
           (320, 180, 400)]
RUNG_NAME = re.compile(r"_(\d+)x(\d+)_(\d+)\.mp4$")
TOLERANCE = 0.15


# ---- media and helpers --------------------------------------------------------------------------------


def make_av(path: Path, seconds: float, size: str = "320x180", *, video: bool = True, audio: bool = True,
            extra: tuple[str, ...] = ()) -> Path:
    """testsrc2 + a stereo 48 kHz tone, H.264/AAC in MP4, 25 fps."""
    args = [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-y"]
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}", "-ac", "2"]
    if video:
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "128k"]
    subprocess.run([*args, *extra, str(path)], check=True, timeout=120)
    return path


def _processes() -> list[tuple[int, str]]:
    """(pid, cmdline) of every live process, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat[stat.rindex(")") + 2:].split()[0] == "Z":
            continue
        found.append((int(entry.name), cmdline))
    return found


def ffmpeg_under(data_dir: Path) -> list[tuple[int, str]]:
    """FFmpeg processes working on files of a data directory."""
    return [(pid, cmd) for pid, cmd in _processes()
            if "ffmpeg" in cmd.split(" ", 1)[0] and str(data_dir) in cmd]


def scratch_leftovers(data_dir: Path) -> list[str]:
    root = data_dir / "scratch"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def assert_no_leaks(data_dir: Path) -> None:
    """No FFmpeg on the data directory's files, nothing under <data dir>/scratch (the runner removes
    a task's scratch directory just after it records the final state: allow it a moment)."""
    assert ffmpeg_under(data_dir) == []
    wait_for(lambda: not scratch_leftovers(data_dir), 10, f"an empty scratch dir: {scratch_leftovers(data_dir)}")


def tasks_of(api: ApiClient, job_id: str) -> list[dict[str, Any]]:
    return api.list(f"Jobs('{q(job_id)}')/Tasks")


def outputs_of(api: ApiClient, job_id: str) -> list[dict[str, Any]]:
    return api.list(f"Jobs('{q(job_id)}')/OutputMediaAssets")


def fetch_files(runtime: Any, api: ApiClient, asset: dict[str, Any], dest: Path) -> dict[str, Path]:
    """Every AssetFile of an asset, read from storage into `dest` (its size checked)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for f in api.list(f"Assets('{q(asset['Id'])}')/Files"):
        data = b"".join(runtime.storage.read(asset["StorageAccountName"], container_name(asset["Id"]), f["Name"],
                                             0, int(f["ContentFileSize"]) - 1))
        assert len(data) == int(f["ContentFileSize"]) > 0, f
        (dest / f["Name"]).write_bytes(data)
        out[f["Name"]] = dest / f["Name"]
    return out


def blobs_of(runtime: Any, asset: dict[str, Any]) -> list[str]:
    blobs, _ = runtime.storage.list_blobs(asset["StorageAccountName"], container_name(asset["Id"]))
    return [b.name for b in blobs]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.rstrip("Z"))


def ism_sources(path: Path) -> tuple[list[str], list[str]]:
    """(video srcs, audio srcs) of a server manifest."""
    root = ElementTree.parse(path).getroot()
    ns = "{http://www.w3.org/2001/SMIL20/Language}"
    return ([v.get("src", "") for v in root.iter(f"{ns}video")], [a.get("src", "") for a in root.iter(f"{ns}audio")])


@pytest.fixture
def scheduler(runtime):  # type: ignore[no-untyped-def]
    runtime.start_jobs()
    yield runtime.scheduler
    runtime.stop_jobs()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("encode-clips")


@pytest.fixture(scope="module")
def small_clip(clips: Path) -> Path:
    return make_av(clips / "small.mp4", 3)


# ---- (a) ladders --------------------------------------------------------------------------------------


def _check_ladder(files: dict[str, Path], source: MediaInfo, expected: list[tuple[int, int]],
                  interleaved: bool) -> list[tuple[int, int, int]]:
    """Checks every rung of an output asset; returns (width, height, nominal kbps) per rung."""
    src_kbps = source.video.bitrate / 1000  # type: ignore[union-attr]
    rung_files = sorted((n for n in files if RUNG_NAME.search(n)), key=lambda n: -int(RUNG_NAME.search(n)[3]))
    rungs, keyframes = [], []
    for name in rung_files:
        w, h, kbps = (int(g) for g in RUNG_NAME.search(name).groups())  # type: ignore[union-attr]
        info = probe(files[name], verify=True)
        video = info.video
        assert video is not None and video.codec == "h264", name
        assert (video.width, video.height) == (w, h), name
        assert w <= source.video.width and h <= source.video.height, f"{name} is above the source"  # type: ignore[union-attr]
        assert kbps <= src_kbps, f"{name}: {kbps} kbps is above the source's {src_kbps:.0f}"
        assert video.bitrate is not None and abs(video.bitrate / 1000 / kbps - 1) <= TOLERANCE, \
            f"{name}: measured {video.bitrate / 1000:.0f} kbps for {kbps}"
        assert abs(info.duration - source.duration) <= 0.1 and abs(video.duration - source.duration) <= 0.1, name  # type: ignore[operator]
        if interleaved:
            audio = info.audio
            assert audio is not None and (audio.codec, audio.channels, audio.sample_rate) == ("aac", 2, 48000)
            assert abs(audio.duration - source.duration) <= 0.1  # type: ignore[operator]
        else:
            assert info.audio is None, f"{name}: Adaptive Streaming keeps audio in its own file"
        keyframes.append(keyframe_times(files[name]))
        rungs.append((w, h, kbps))
    assert [(w, h) for w, h, _ in rungs] == expected
    assert [k for _, _, k in rungs] == sorted((k for _, _, k in rungs), reverse=True)
    whole = int(source.duration // 2) + (1 if source.duration % 2 > 0.05 else 0)
    assert all(abs(t - 2 * n) < 0.01 for n, t in enumerate(keyframes[0])) and len(keyframes[0]) == whole, keyframes[0]
    assert all(k == keyframes[0] for k in keyframes), "keyframes differ between rungs"
    return rungs


def _check_ism(files: dict[str, Path], api: ApiClient, asset: dict[str, Any]) -> tuple[list[str], list[str]]:
    isms = [n for n in files if n.endswith(".ism")]
    assert len(isms) == 1, files
    entities = api.list(f"Assets('{q(asset['Id'])}')/Files")
    assert [f["Name"] for f in entities if f["IsPrimary"]] == isms
    videos, audios = ism_sources(files[isms[0]])
    mp4s = {n for n in files if n.endswith(".mp4")}
    with_video = {n for n in mp4s if probe(files[n]).video is not None}
    with_audio = {n for n in mp4s if probe(files[n]).audio is not None}
    assert sorted(videos) == sorted(with_video), "the .ism must list every video track"
    assert audios and set(audios) <= with_audio
    return videos, audios


@pytest.mark.slow
def test_adaptive_streaming_and_mbr_720p_jobs(runtime, api: ApiClient, scheduler, clips: Path,  # type: ignore[no-untyped-def]
                                              tmp_path: Path) -> None:
    source_path = make_av(clips / "hd1080.mp4", 10, "1920x1080")
    source = probe(source_path)
    assert source.audio is not None and source.audio.channels == 2
    asset = upload(runtime.storage, api, source_path, "hd1080.mp4")
    adaptive = submit(api, asset, "Adaptive Streaming", name="adaptive")
    mbr = submit(api, asset, "H264 Multiple Bitrate 720p", name="mbr720")

    # Adaptive Streaming: the content-adaptive ladder, video and audio in separate MP4s
    assert wait_final(api, adaptive["Id"], 240)["State"] == FINISHED, task(api, adaptive["Id"])
    out = outputs_of(api, adaptive["Id"])[0]
    files = fetch_files(runtime, api, out, tmp_path / "adaptive")
    rungs = _check_ladder(files, source, [(w, h) for w, h, _ in ADAPTIVE_1080], interleaved=False)
    for (_w, _h, kbps), (_dw, _dh, documented) in zip(rungs, ADAPTIVE_1080, strict=True):
        assert 0.75 * documented <= kbps <= documented, (kbps, documented)  # 25 fps: a little under 29.97's
    audio_files = [n for n in files if n.endswith(".mp4") and not RUNG_NAME.search(n)]
    assert audio_files == ["hd1080_AAC_128.mp4"], files
    audio = probe(files[audio_files[0]], verify=True)
    assert audio.video is None and audio.audio is not None
    assert (audio.audio.codec, audio.audio.channels, audio.audio.sample_rate) == ("aac", 2, 48000)
    assert abs(audio.audio.bitrate / 1000 / 128 - 1) <= TOLERANCE  # type: ignore[operator]
    assert abs(audio.duration - source.duration) <= 0.1
    videos, audios = _check_ism(files, api, out)
    assert len(videos) == 6 and audios == audio_files
    assert sorted(files) == sorted([*(n for n in files if n.endswith(".mp4")), "hd1080.ism",
                                    "hd1080_metadata.xml"])

    # H264 Multiple Bitrate 720p: the documented six rungs, each interleaved with the stereo AAC track
    assert wait_final(api, mbr["Id"], 240)["State"] == FINISHED, task(api, mbr["Id"])
    out = outputs_of(api, mbr["Id"])[0]
    files = fetch_files(runtime, api, out, tmp_path / "mbr")
    rungs = _check_ladder(files, source, [(w, h) for w, h, _ in MBR_720], interleaved=True)
    assert rungs == MBR_720
    videos, audios = _check_ism(files, api, out)
    assert len(videos) == 6 and len(audios) == 1
    for name in videos:
        audio = probe(files[name]).audio
        assert audio is not None and abs(audio.bitrate / 1000 / 128 - 1) <= TOLERANCE  # type: ignore[operator]
    assert_no_leaks(runtime.settings.data_dir)


# ---- (b) thumbnails -----------------------------------------------------------------------------------


def image_size(path: Path) -> tuple[str, int, int]:
    """(format, width, height) from a PNG's IHDR or a JPEG's SOF marker."""
    data = path.read_bytes()
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    assert data[:2] == b"\xff\xd8", f"{path.name} is neither PNG nor JPEG"
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return "jpg", width, height
        i += 2 + length
    raise AssertionError(f"no SOF marker in {path.name}")


THUMBNAILS = json.dumps({
    "Version": 1.0,
    "Codecs": [
        # 8 s at 25 fps: from 1 s every 2 s for 5 s → 1, 3, 5 s → three images per layer
        {"Type": "JpgImage", "Start": "00:00:01", "Step": "00:00:02", "Range": "00:00:05",
         "JpgLayers": [{"Type": "JpgLayer", "Width": 320, "Height": 180, "Quality": 80},
                       {"Type": "JpgLayer", "Width": "160", "Height": "90", "Quality": 60}]},
        # from 10 % (0.8 s) every 25 % (2 s) for 60 % (4.8 s) → 0.8, 2.8, 4.8 s → three images
        {"Type": "PngImage", "Start": "10%", "Step": "25%", "Range": "60%",
         "PngLayers": [{"Type": "PngLayer", "Width": "50%", "Height": "50%"}]},
        # a single image at frame 100
        {"Type": "PngImage", "Start": "100", "PngLayers": [{"Type": "PngLayer", "Width": 64, "Height": 36}]},
    ],
    "Outputs": [
        {"FileName": "{Basename}_{Width}x{Height}_{Index}{Extension}", "Format": {"Type": "JpgFormat"}},
        {"FileName": "{Basename}_half_{Index}{Extension}", "Format": {"Type": "PngFormat"}},
        {"FileName": "{Basename}_frame100_{Index}{Extension}", "Format": {"Type": "PngFormat"}},
    ],
})


def test_thumbnail_preset_writes_the_asked_images(runtime, api: ApiClient, scheduler, clips: Path,  # type: ignore[no-untyped-def]
                                                   tmp_path: Path) -> None:
    clip = make_av(clips / "thumbs.mp4", 8, "640x360")
    asset = upload(runtime.storage, api, clip, "thumbs.mp4")
    created = submit(api, asset, THUMBNAILS, name="thumbs")
    assert wait_final(api, created["Id"])["State"] == FINISHED, task(api, created["Id"])
    files = fetch_files(runtime, api, outputs_of(api, created["Id"])[0], tmp_path)
    images = {n: image_size(p) for n, p in files.items() if not n.endswith(".xml")}
    by_kind: dict[tuple[str, int, int], list[str]] = {}
    for name, size in images.items():
        by_kind.setdefault(size, []).append(name)
    assert {k: len(v) for k, v in by_kind.items()} == {
        ("jpg", 320, 180): 3, ("jpg", 160, 90): 3, ("png", 320, 180): 3, ("png", 64, 36): 1}, sorted(images)
    assert sorted(by_kind[("jpg", 320, 180)]) == [f"thumbs_320x180_{i:06d}.jpg" for i in (1, 2, 3)]
    assert sorted(by_kind[("png", 320, 180)]) == [f"thumbs_half_{i:06d}.png" for i in (1, 2, 3)]
    assert not [n for n in files if n.endswith((".mp4", ".ism"))]
    assert [n for n in files if n.endswith(".xml")] == ["thumbs_metadata.xml"]
    assert_no_leaks(runtime.settings.data_dir)


# ---- (c) the three submission shapes and a chain ------------------------------------------------------


FAST = "H264 Single Bitrate 720p"  # clamped to the 320x180 source: one small rung


def _post_light(api: ApiClient, asset: dict[str, Any], name: str) -> dict[str, Any]:
    body = {"Name": name, "InputMediaAssets@odata.bind": [key_url("Assets", asset["Id"])],
            "Tasks": [{"Configuration": FAST, "MediaProcessorId": MES, "TaskBody": BODY}]}
    r = api.request("POST", "Jobs", json.dumps(body).encode(), **{"Content-Type": "application/json",
                                                                   "Accept": "application/json"})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _post_atom_batch(api: ApiClient, asset: dict[str, Any], name: str) -> dict[str, Any]:
    """The .NET SDK's shape: a `$batch` changeset of an Atom Job entry and a `$1/Tasks` Atom entry."""
    ns = ('xmlns="http://www.w3.org/2005/Atom" xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices" '
          'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"')
    scheme = 'scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"'
    href = key_url("Assets", asset["Id"])
    job_entry = (f'<?xml version="1.0" encoding="utf-8"?><entry {ns}>'
                 f'<category term="Microsoft.Cloud.Media.Vod.Rest.Data.Models.Job" {scheme}/>'
                 '<link rel="http://schemas.microsoft.com/ado/2007/08/dataservices/related/InputMediaAssets" '
                 f'type="application/atom+xml;type=feed" title="InputMediaAssets" href="{href}"/>'
                 f'<content type="application/xml"><m:properties><d:Name>{name}</d:Name>'
                 '<d:Priority m:type="Edm.Int32">0</d:Priority></m:properties></content></entry>')
    body = ('<?xml version="1.0" encoding="utf-16"?>\n<taskBody>\n  <inputAsset>JobInputAsset(0)</inputAsset>\n'
            '  <outputAsset assetCreationOptions="0" assetFormatOption="0">JobOutputAsset(0)</outputAsset>\n'
            '</taskBody>')
    escaped = body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    task_entry = (f'<?xml version="1.0" encoding="utf-8"?><entry {ns}>'
                  f'<category term="Microsoft.Cloud.Media.Vod.Rest.Data.Models.Task" {scheme}/>'
                  f'<content type="application/xml"><m:properties><d:Configuration>{FAST}</d:Configuration>'
                  f'<d:MediaProcessorId>{MES}</d:MediaProcessorId><d:Name>t1</d:Name>'
                  f'<d:Options m:type="Edm.Int32">0</d:Options><d:TaskBody>{escaped}</d:TaskBody>'
                  '</m:properties></content></entry>')

    def part(url: str, cid: int, entry: str) -> str:
        return ("--changeset_e\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                f"POST {url} HTTP/1.1\r\nContent-ID: {cid}\r\nContent-Type: application/atom+xml;type=entry\r\n"
                f"DataServiceVersion: 3.0\r\n\r\n{entry}\r\n")

    payload = ("--batch_e\r\nContent-Type: multipart/mixed; boundary=changeset_e\r\n\r\n"
               + part(f"{BASE}Jobs", 1, job_entry) + part(f"{BASE}$1/Tasks", 2, task_entry)
               + "--changeset_e--\r\n--batch_e--\r\n")
    r = api.request("POST", "$batch", payload.encode(), **{"Content-Type": "multipart/mixed; boundary=batch_e",
                                                           "Accept": "multipart/mixed"})
    assert r.status_code == 202 and r.text.count("201 Created") == 2, r.text
    return api.list(f"Jobs?$filter=Name eq '{name}'")[0]


def test_verbose_light_and_atom_batch_jobs_all_finish(runtime, api: ApiClient, scheduler,  # type: ignore[no-untyped-def]
                                                      small_clip: Path, tmp_path: Path) -> None:
    asset = upload(runtime.storage, api, small_clip)
    tag = uuid.uuid4().hex[:6]
    jobs = {"verbose": submit(api, asset, FAST, name=f"verbose-{tag}"),
            "light": _post_light(api, asset, f"light-{tag}"),
            "atom": _post_atom_batch(api, asset, f"atom-{tag}")}
    for shape, created in jobs.items():
        done = wait_final(api, created["Id"])
        assert done["State"] == FINISHED, (shape, task(api, created["Id"]))
        files = fetch_files(runtime, api, outputs_of(api, created["Id"])[0], tmp_path / shape)
        assert any(n.endswith(".ism") for n in files) and any(n.endswith(".mp4") for n in files), (shape, files)
        assert probe(next(p for n, p in files.items() if n.endswith(".mp4")), verify=True).video is not None
    assert_no_leaks(runtime.settings.data_dir)


def test_chained_tasks_run_in_order(runtime, api: ApiClient, scheduler, small_clip: Path,  # type: ignore[no-untyped-def]
                                    tmp_path: Path) -> None:
    asset = upload(runtime.storage, api, small_clip)
    chain = [
        {"Name": "video", "MediaProcessorId": MES, "Configuration": FAST,
         "TaskBody": "<taskBody><inputAsset>JobInputAsset(0)</inputAsset>"
                     "<outputAsset>JobOutputAsset(0)</outputAsset></taskBody>"},
        {"Name": "audio", "MediaProcessorId": MES, "Configuration": "AAC Audio",
         "TaskBody": "<taskBody><inputAsset>JobOutputAsset(0)</inputAsset>"
                     "<outputAsset>JobOutputAsset(1)</outputAsset></taskBody>"},
    ]
    r = api.request("POST", "Jobs", json.dumps({
        "Name": "chain", "InputMediaAssets": [{"__metadata": {"uri": key_url("Assets", asset["Id"])}}],
        "Tasks": chain}).encode(), **{"Content-Type": "application/json;odata=verbose", "Accept": "application/json"})
    assert r.status_code == 201, r.text
    job_id = r.json()["Id"]
    done = wait_final(api, job_id)
    tasks = {t["Name"]: t for t in tasks_of(api, job_id)}
    assert done["State"] == FINISHED, {n: (t["State"], t.get("ErrorDetails"), t.get("HistoricalEvents"))
                                       for n, t in tasks.items()}
    first, second = tasks["video"], tasks["audio"]
    assert parse_time(second["StartTime"]) >= parse_time(first["EndTime"]), (first, second)
    outs = outputs_of(api, job_id)
    assert len(outs) == 2
    files = fetch_files(runtime, api, outs[1], tmp_path)
    audio = [p for n, p in files.items() if n.endswith(".mp4")]
    assert len(audio) == 1 and "_AAC_128" in audio[0].name
    info = probe(audio[0], verify=True)
    assert info.video is None and info.audio is not None and abs(info.duration - 3.0) <= 0.1


# ---- (d) cancel and a killed server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_clip(clips: Path) -> Path:
    """Long enough that SLOW_PRESET keeps FFmpeg busy for several seconds on any machine."""
    return make_av(clips / "long.mp4", 120, "640x360")


def _encoding(api: ApiClient, job_id: str, data_dir: Path) -> list[tuple[int, str]]:
    """Wait until the job's task is encoding (FFmpeg running, progress reported); its FFmpeg."""
    def busy() -> list[tuple[int, str]] | None:
        t = task(api, job_id)
        assert t["State"] in (0, 1, 2), t
        running = ffmpeg_under(data_dir)
        return running if t["State"] == 2 and t["Progress"] >= 1 and running else None

    return list(wait_for(busy, 90, "the task to be encoding"))


@pytest.mark.slow
def test_cancel_during_encoding_stops_ffmpeg(runtime, api: ApiClient, scheduler, long_clip: Path) -> None:  # type: ignore[no-untyped-def]
    data_dir = runtime.settings.data_dir
    asset = upload(runtime.storage, api, long_clip, "long.mp4")
    created = submit(api, asset, SLOW_PRESET, name="cancel-me")
    running = _encoding(api, created["Id"], data_dir)
    cancel(api, created["Id"])
    done = wait_final(api, created["Id"], 60)
    t = task(api, created["Id"])
    assert done["State"] == CANCELED and t["State"] == CANCELED, t
    assert t["HistoricalEvents"][-1]["Code"] == "Canceled"
    live = {pid for pid, _ in _processes()}
    assert not [pid for pid, _ in running if pid in live], "FFmpeg outlived the cancel"
    out = outputs_of(api, created["Id"])[0]
    assert api.list(f"Assets('{q(out['Id'])}')/Files") == [] and blobs_of(runtime, out) == []
    assert_no_leaks(data_dir)


# a real `openams serve`, killed and restarted


CLI = ["-c", "from openams.cli import main; main()"]


def _serve_env() -> dict[str, str]:
    from tests.support.servers import STORAGE_VARS

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAMS_") or k.startswith(STORAGE_VARS)}
    env["OPENAMS_LOG_LEVEL"] = "warning"
    return env


class ServeProcess:
    def __init__(self, data_dir: Path) -> None:
        import socket
        import sys

        self.data_dir = data_dir
        self.python = sys.executable
        ports = []
        for _ in range(2):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                ports.append(s.getsockname()[1])
        self.port, self.blob_port = ports
        self.api = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}-serve.log"

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen([self.python, *CLI, "serve", "--data-dir", str(self.data_dir), "--host",
                                          "127.0.0.1", "--port", str(self.port), "--blob-port", str(self.blob_port)],
                                         stdout=fh, stderr=subprocess.STDOUT, env=_serve_env())
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.api}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServeProcess, str, str]]:
    import sys

    data_dir = tmp_path / "data"
    name = f"kill{uuid.uuid4().hex[:10]}"
    out = subprocess.run([sys.executable, *CLI, "account", "create", name, "--json", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, env=_serve_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    key = json.loads(out.stdout.strip().splitlines()[-1])["primaryKey"]
    server = ServeProcess(data_dir)
    server.start()
    try:
        yield server, name, key
    finally:
        server.stop()
        for pid, _ in ffmpeg_under(data_dir):  # never leave an encoder behind, whatever failed
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow
def test_server_killed_mid_encode_then_restarted(served: tuple[ServeProcess, str, str], long_clip: Path,
                                                  tmp_path: Path) -> None:
    from openams.client import AmsClient

    server, account, key = served
    with AmsClient(server.api, account, key) as client:
        asset_id = client.upload(str(long_clip)).asset_id
        job_id = client.submit_job(asset_id, SLOW_PRESET, name="killed")["Id"]

        def encoding() -> list[tuple[int, str]] | None:
            status = client.job_status(job_id)
            running = ffmpeg_under(server.data_dir)
            t = status.tasks[0]
            return running if t["State"] == 2 and t["Progress"] >= 1 and running else None

        running = wait_for(encoding, 90, "the task to be encoding")
        server.kill()
        # FFmpeg dies with the server: nothing keeps encoding into the scratch directory
        wait_for(lambda: not ffmpeg_under(server.data_dir), 10, f"FFmpeg {running} to die with the server")
        server.start()
        status = client.wait_job(job_id, interval=0.5, timeout=180)
        t = status.tasks[0]
        assert status.state in (FINISHED, ERROR), t
        codes = [e["Code"] for e in t["HistoricalEvents"]]
        out = client.job_outputs(job_id)[0]
        files = client.files(out["Id"])
        if status.state == FINISHED:
            assert "Requeued" in codes, codes
            names = [f["Name"] for f in files]
            assert any(n.endswith(".mp4") for n in names) and any(n.endswith(".ism") for n in names), names
            for path in client.download_files(out["Id"], tmp_path / "out"):
                if path.endswith(".mp4"):
                    info = probe(path, verify=True)
                    assert abs(info.duration - 120.0) <= 0.1 and info.video is not None, path
        else:
            assert t["ErrorDetails"] and t["ErrorDetails"][0]["Message"], t
            assert files == []
    assert ffmpeg_under(server.data_dir) == []
    wait_for(lambda: not scratch_leftovers(server.data_dir), 10, "an empty scratch dir")


# ---- (e) bad inputs and bad presets -------------------------------------------------------------------


BLACK_IF_NO_VIDEO = json.dumps({
    "Version": 1.0,
    "Codecs": [
        {"Type": "H264Video", "KeyFrameInterval": "00:00:02", "Condition": "InsertBlackIfNoVideo",
         "H264Layers": [{"Type": "H264Layer", "Bitrate": 400, "Width": 320, "Height": 180},
                        {"Type": "H264Layer", "Bitrate": 200, "Width": 160, "Height": 90}]},
        {"Type": "AACAudio", "Profile": "AACLC", "Channels": 2, "SamplingRate": 48000, "Bitrate": 128},
    ],
    "Outputs": [{"FileName": "{Basename}_{Width}x{Height}_{VideoBitrate}.mp4", "Format": {"Type": "MP4Format"}}],
})
NO_CONDITION = BLACK_IF_NO_VIDEO.replace('"Condition": "InsertBlackIfNoVideo", ', "")


def _text(path: Path) -> Path:
    path.write_text("Meeting notes\n\nThis is a plain text file, renamed.\n" * 20)
    return path


def _truncated(path: Path, faststart: bool) -> Path:
    whole = make_av(path.with_suffix(".whole.mp4"), 4, extra=("-movflags", "+faststart") if faststart else ())
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 5])
    return path


def _playlist(path: Path) -> Path:
    path.write_bytes(b"\xef\xbb\xbf#EXTM3U\r\n#EXT-X-TARGETDURATION:10\r\n#EXTINF:10.0,\r\n/etc/passwd\r\n"
                     b"#EXTINF:10.0,\r\nfile:///etc/passwd\r\n#EXT-X-ENDLIST\r\n")
    return path


BAD_CASES: dict[str, tuple[Any, str, str, tuple[str, ...]]] = {
    # name: (make input, preset, ErrorDetail code, fragments of its message)
    "text file named .mp4": (_text, FAST, "InvalidInput", ("not a media file: input.mp4 ", "text file")),
    "truncated MP4 (faststart)": (lambda p: _truncated(p, True), FAST, "InvalidInput",
                                  ("truncated media file", "declares 4.00 s")),
    "truncated MP4 (moov at the end)": (lambda p: _truncated(p, False), FAST, "InvalidInput",
                                        ("not a media file",)),
    "audio only, video preset without Condition": (
        lambda p: make_av(p, 3, video=False), NO_CONDITION, "MediaError",
        ("has no video stream", "InsertBlackIfNoVideo")),
    "unknown preset name": (lambda p: make_av(p, 2), "H264 Multiple Bitrate 721p", "PresetError",
                            ("unknown preset name 'H264 Multiple Bitrate 721p'", "did you mean",
                             "'H264 Multiple Bitrate 720p'")),
    "malformed XML preset": (
        lambda p: make_av(p, 2),
        '<?xml version="1.0" encoding="utf-16"?><Preset xmlns="https://www.windowsazure.com/media/encoding/'
        'Preset/2014/03" Version="1.0"><Encoding><H264Video><KeyFrameInterval>00:00:02</KeyFrameInterval>'
        "</Encoding></Preset>",
        "PresetError", ("not well-formed XML",)),
    "HLS playlist named .mp4": (_playlist, FAST, "InvalidInput", ("refusing", "playlist")),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_ends_in_error_without_leaks(runtime, api: ApiClient, scheduler, tmp_path: Path,  # type: ignore[no-untyped-def]
                                               case: str) -> None:
    make, preset, code, fragments = BAD_CASES[case]
    path = make(tmp_path / "input.mp4")
    asset = upload(runtime.storage, api, path, "input.mp4")
    created = submit(api, asset, preset, name="bad")
    done = wait_final(api, created["Id"], 60)
    t = task(api, created["Id"])
    assert done["State"] == ERROR and t["State"] == ERROR, t
    assert len(t["ErrorDetails"]) == 1, t
    detail = t["ErrorDetails"][0]
    assert detail["Code"] == code, detail
    for fragment in fragments:
        assert fragment in detail["Message"], detail
    assert "passwd" not in detail["Message"] and "Traceback" not in detail["Message"]
    assert "0__" not in detail["Message"] and "/in/" not in detail["Message"]  # the file as uploaded, no scratch path
    assert t["HistoricalEvents"][-1]["Code"] == "Error"
    out = outputs_of(api, created["Id"])[0]
    assert api.list(f"Assets('{q(out['Id'])}')/Files") == [] and blobs_of(runtime, out) == []
    assert_no_leaks(runtime.settings.data_dir)


def test_audio_only_input_gets_black_video_with_the_condition(runtime, api: ApiClient, scheduler,  # type: ignore[no-untyped-def]
                                                               clips: Path, tmp_path: Path) -> None:
    source = make_av(clips / "audio-only.mp4", 3, video=False)
    asset = upload(runtime.storage, api, source, "audio-only.mp4")
    created = submit(api, asset, BLACK_IF_NO_VIDEO, name="black")
    assert wait_final(api, created["Id"])["State"] == FINISHED, task(api, created["Id"])
    files = fetch_files(runtime, api, outputs_of(api, created["Id"])[0], tmp_path)
    rungs = sorted(n for n in files if n.endswith(".mp4"))
    assert rungs == ["audio-only_160x90_200.mp4", "audio-only_320x180_400.mp4"]
    for name in rungs:
        info = probe(files[name], verify=True)
        assert info.video is not None and info.audio is not None
        assert f"{info.video.width}x{info.video.height}" in name
        assert abs(info.duration - 3.0) <= 0.1
    videos, _audios = ism_sources(files["audio-only.ism"])
    assert sorted(videos) == rungs
    assert job(api, created["Id"])["State"] == FINISHED
    assert_no_leaks(runtime.settings.data_dir)
