"""`openams encode` against a real `openams serve` (which runs the jobs in-process): submitting with a
system preset or a JSON/XML preset file, following the job with --wait, errors and Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from openams.client import AmsClient, JobStatus
from tests.cli.test_upload import CLI, clean_env, free_port, run_cli
from tests.jobs.support import SLOW_PRESET, wait_for
from tests.jobs.test_encode_acceptance import ffmpeg_under, make_av, scratch_leftovers
from tests.support.servers import start_serve, stop_process

MES = "nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56"
ONE_LAYER = json.dumps({
    "Version": 1.0,
    "Codecs": [
        {"Type": "H264Video", "KeyFrameInterval": "00:00:02", "Complexity": "Speed",
         "H264Layers": [{"Type": "H264Layer", "Bitrate": 300, "Width": 320, "Height": 180}]},
        {"Type": "AACAudio", "Channels": 2, "SamplingRate": 48000, "Bitrate": 96},
    ],
    "Outputs": [{"FileName": "{Basename}_{Width}x{Height}_{VideoBitrate}.mp4", "Format": {"Type": "MP4Format"}}],
})
XML_PRESET = """<?xml version="1.0" encoding="utf-16"?>
<Preset xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
        Version="1.0" xmlns="https://www.windowsazure.com/media/encoding/Preset/2014/03">
  <Encoding>
    <H264Video>
      <KeyFrameInterval>00:00:02</KeyFrameInterval>
      <H264Layers>
        <H264Layer><Bitrate>250</Bitrate><Width>256</Width><Height>144</Height></H264Layer>
      </H264Layers>
    </H264Video>
    <AACAudio><Channels>2</Channels><SamplingRate>48000</SamplingRate><Bitrate>96</Bitrate></AACAudio>
  </Encoding>
  <Outputs>
    <Output FileName="{Basename}_{Width}x{Height}_{VideoBitrate}.mp4"><MP4Format /></Output>
  </Outputs>
</Preset>
"""


class Served:
    def __init__(self, api: str, account: str, key: str, data_dir: Path) -> None:
        self.api, self.account, self.key, self.data_dir = api, account, key, data_dir

    def client(self) -> AmsClient:
        return AmsClient(self.api, self.account, self.key)

    def args(self) -> list[str]:
        return ["--server", self.api, "--account", self.account, "--key", self.key]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("encode-server")
    name = f"enc{uuid.uuid4().hex[:12]}"
    out = run_cli("account", "create", name, "--json", "--data-dir", str(data_dir))
    assert out.returncode == 0, out.stderr
    key = json.loads(out.stdout.strip().splitlines()[-1])["primaryKey"]
    proc, port, _blob_port = start_serve([*CLI, "serve", "--data-dir", str(data_dir)], data_dir / "serve.log",
                                         clean_env())
    try:
        yield Served(f"http://127.0.0.1:{port}", name, key, data_dir)
    finally:
        stop_process(proc, grace=20)


@pytest.fixture(scope="module")
def clip_asset(served: Served, tmp_path_factory: pytest.TempPathFactory) -> str:
    clip = make_av(tmp_path_factory.mktemp("encode-cli") / "clip.mp4", 3)
    with served.client() as client:
        return client.upload(str(clip)).asset_id


def _jobs(served: Served) -> list[dict]:
    with served.client() as client:
        return list(client.api("GET", "Jobs", "listing jobs").json()["value"])


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_submit_prints_the_job_id(served: Served, clip_asset: str) -> None:
    out = run_cli("encode", clip_asset, *served.args())
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    assert job_id.startswith("nb:jid:UUID:") and "\n" not in job_id
    assert "Adaptive Streaming" in out.stderr
    with served.client() as client:
        tasks = client.job_tasks(job_id)
        assert [(t["Configuration"], t["MediaProcessorId"]) for t in tasks] == [("Adaptive Streaming", MES)]
        r = client.api("GET", f"Tasks('{tasks[0]['Id']}')/InputMediaAssets", "inputs")
        assert [a["Id"] for a in r.json()["value"]] == [clip_asset]
        assert client.wait_job(job_id, interval=0.3, timeout=120).label == "Finished"


@pytest.mark.parametrize("kind", ["json", "xml-utf16"])
def test_wait_with_a_preset_file_prints_the_output(served: Served, clip_asset: str, tmp_path: Path,
                                                   kind: str) -> None:
    preset = tmp_path / ("preset.json" if kind == "json" else "preset.xml")
    if kind == "json":
        preset.write_text(ONE_LAYER)
        rung = "clip_320x180_300.mp4"
    else:
        preset.write_bytes(XML_PRESET.encode("utf-16"))  # with a BOM, as the SDK's samples are saved
        rung = "clip_256x144_250.mp4"
    out = run_cli("encode", clip_asset, "--preset", str(preset), "--wait", "--interval", "0.3",
                  "--name", f"cli-{kind}", *served.args())
    assert out.returncode == 0, out.stderr
    lines = _lines(out.stdout)
    job_id, output_id, listed = lines[0], lines[1], lines[2:]
    assert job_id.startswith("nb:jid:UUID:") and output_id.startswith("nb:cid:UUID:")
    assert "Finished" in out.stderr and f"preset file {preset.name}" in out.stderr
    with served.client() as client:
        files = {f["Name"]: int(f["ContentFileSize"]) for f in client.files(output_id)}
        assert client.job(job_id)["Name"] == f"cli-{kind}"
        assert [a["Id"] for a in client.job_outputs(job_id)] == [output_id]
        tasks = client.job_tasks(job_id)
        assert tasks[0]["Configuration"].lstrip().startswith("{" if kind == "json" else "<?xml")
    assert sorted(line.split()[0] for line in listed) == sorted(files)
    assert {line.split()[0]: int(line.split()[1]) for line in listed} == files
    assert rung in files and "clip.ism" in files


def test_a_failed_job_exits_1_with_its_error_details(served: Served, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    with served.client() as client:
        asset_id = client.upload(str(text)).asset_id
    out = run_cli("encode", asset_id, "--preset", "H264 Single Bitrate 720p", "--wait", "--interval", "0.3",
                  *served.args())
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert _lines(out.stdout)[0].startswith("nb:jid:UUID:") and len(_lines(out.stdout)) == 1
    text_err = " ".join(out.stderr.split())
    assert "Error" in text_err and "InvalidInput: not a media file: " in text_err and "text file" in text_err
    assert "Traceback" not in out.stderr


def _default_sigint() -> None:
    """A terminal's Ctrl-C reaches a foreground program; a test run started in the background by a
    non-interactive shell (`cmd &`) ignores SIGINT, and children inherit that — restore it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_while_waiting_cancels_the_job(served: Served, tmp_path: Path) -> None:
    # long enough (~10 s of encoding even at 11x realtime) that Ctrl-C always lands mid-encode
    clip = make_av(tmp_path / "long.mp4", 120, "640x360")
    preset = tmp_path / "slow.json"
    preset.write_text(SLOW_PRESET)
    with served.client() as client:
        asset_id = client.upload(str(clip)).asset_id
        proc = subprocess.Popen([*CLI, "encode", asset_id, "--preset", str(preset), "--wait", "--interval", "0.3",
                                 *served.args()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=clean_env(), preexec_fn=_default_sigint)
        try:
            assert proc.stdout is not None
            job_id = proc.stdout.readline().strip()
            assert job_id.startswith("nb:jid:UUID:"), proc.stderr.read() if proc.stderr else ""

            def encoding() -> bool:
                status = client.job_status(job_id)
                assert not status.final, status.tasks
                t = status.tasks[0]
                return t["State"] == 2 and t["Progress"] >= 5 and bool(ffmpeg_under(served.data_dir))

            wait_for(encoding, 90, "the job to be encoding")
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert proc.returncode == 130, (stdout, stderr)  # 0 would mean the job ended before Ctrl-C
        assert "asking the server to cancel the job" in stderr and "job Canceled" in stderr, stderr
        status: JobStatus = client.job_status(job_id)
        assert status.label == "Canceled" and [t["State"] for t in status.tasks] == [5]
        output = client.job_outputs(job_id)[0]
        assert client.files(output["Id"]) == []
    assert ffmpeg_under(served.data_dir) == []
    wait_for(lambda: not scratch_leftovers(served.data_dir), 10, "an empty scratch dir")


def test_bad_presets_are_refused_before_submitting(served: Served, clip_asset: str, tmp_path: Path) -> None:
    before = len(_jobs(served))
    broken = tmp_path / "broken.json"
    broken.write_text('{"Version": 1.0, "Codecs": [{"Type": "H264Video", "H264Layers": [{"Type": "H264Layer", '
                      '"Width": 641, "Height": 360, "Bitrate": 500}]}], "Outputs": []}')
    notes = tmp_path / "notes.txt"
    notes.write_text("Adaptive Streaming, please")
    cases = [
        (["--preset", "H264 Multiple Bitrate 721p"], ("unknown preset name", "H264 Multiple Bitrate 720p")),
        (["--preset", str(tmp_path / "missing.json")], ("no such preset file",)),
        (["--preset", str(broken)], ("not a valid preset", "641")),
        (["--preset", str(notes)], ("is not a JSON or XML preset",)),
    ]
    for args, fragments in cases:
        out = run_cli("encode", clip_asset, *args, *served.args())
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stdout == "" and "Traceback" not in out.stderr
        text = " ".join(out.stderr.split())
        for fragment in fragments:
            assert fragment in text, (args, out.stderr)
    assert len(_jobs(served)) == before


def test_unknown_asset_and_server_down(served: Served) -> None:
    missing = f"nb:cid:UUID:{uuid.uuid4()}"
    out = run_cli("encode", missing, *served.args())
    assert out.returncode == 1 and out.stdout == "", (out.stdout, out.stderr)
    assert "submitting the job failed" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("encode", missing, "--server", f"http://127.0.0.1:{free_port()}", "--key", "x")
    assert out.returncode == 1 and "cannot reach the server" in out.stderr, out.stderr
