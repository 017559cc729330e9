"""Encoding overhead: one 4-rung H.264 ladder through openams vs the same FFmpeg command run directly.

Generates a clip (testsrc2 + a stereo 440 Hz tone, H.264/AAC; default 20 s of 1920x1080 at 25 fps),
starts a real `openams serve` (free ports, temporary data directory, jobs in-process), uploads the
clip with the `openams upload` client (AmsClient), then alternates, `--reps` times each:

* **openams**: POST a job with one Media Encoder Standard task and a custom JSON preset (1280x720,
  960x540, 640x360, 480x270 H.264 layers, AAC 128 kbps stereo, 2 s closed GOPs) and poll
  `Jobs('<id>')` every 0.5 s until Finished. The time compared is the job's `EndTime - Created`
  (server clock: from the job's creation to its final state — scheduling, storage fetch, probe,
  FFmpeg, manifest, publishing the outputs, every state update), so the polling interval does not
  add to it; the client-side wall time (POST to the first poll that sees Finished) and the task's
  `RunningDuration` are printed next to it;
* **ffmpeg**: the exact FFmpeg command openams runs for this preset and clip, taken from the media
  library's plan (`openams.media.build_plan`, plus the flags `openams.media.ffmpeg.run` adds), run
  directly with the same binary (`openams.media.find_ffmpeg()`) on the local clip.

Prints per-repetition wall times, then the medians, the ratio openams / ffmpeg (goal: at most 1.05)
and the realtime factor (clip seconds / encode seconds). The figure to compare between runs is the
ratio; the header shows the load average before and after — a load above the core count means other
work shared the machine.

    .venv/bin/python bench/encode.py [--seconds 20] [--size 1920x1080] [--reps 3]

Exits 1 if a job did not finish or FFmpeg failed, 130 on Ctrl-C; everything it started is stopped
and its temporary directory removed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from _common import log, openams_server

from openams.client import AmsClient, ClientError
from openams.media import build_plan, ffmpeg_info, find_ffmpeg, load_preset, probe

POLL = 0.5
LADDER = [(1280, 720, 3000), (960, 540, 2000), (640, 360, 1100), (480, 270, 700)]
PRESET = json.dumps({
    "Version": 1.0,
    "Codecs": [
        {"Type": "H264Video", "KeyFrameInterval": "00:00:02", "SceneChangeDetection": False,
         "H264Layers": [{"Type": "H264Layer", "Profile": "Auto", "Level": "auto", "Bitrate": kbps,
                         "MaxBitrate": kbps, "BufferWindow": "00:00:05", "Width": w, "Height": h, "BFrames": 3,
                         "ReferenceFrames": 3, "AdaptiveBFrame": True, "EntropyMode": "Cabac", "FrameRate": "0/1"}
                        for w, h, kbps in LADDER]},
        {"Type": "AACAudio", "Profile": "AACLC", "Channels": 2, "SamplingRate": 48000, "Bitrate": 128},
    ],
    "Outputs": [{"FileName": "{Basename}_{Width}x{Height}_{VideoBitrate}.mp4", "Format": {"Type": "MP4Format"}}],
})


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---- setup ------------------------------------------------------------------------------------------


def make_clip(path: Path, seconds: float, size: str, ffmpeg: str) -> None:
    subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}", "-ac", "2",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart", str(path)], check=True)


# ---- the two contenders -------------------------------------------------------------------------------


@dataclass
class Runs:
    openams: list[float] = field(default_factory=list)
    client: list[float] = field(default_factory=list)
    ffmpeg: list[float] = field(default_factory=list)
    task_seconds: list[float] = field(default_factory=list)
    perf: str = ""


def run_openams(client: AmsClient, asset_id: str, rep: int) -> tuple[float, float, float, str]:
    """(job EndTime - Created, client wall time, Task.RunningDuration, PerfMessage) of one job."""
    started = time.monotonic()
    job = client.submit_job(asset_id, PRESET, name=f"bench-{rep}")
    while True:
        current = client.job(job["Id"])
        if int(current["State"]) in (3, 4, 5):
            break
        time.sleep(POLL)
    wall = time.monotonic() - started
    task = client.job_tasks(job["Id"])[0]
    if int(current["State"]) != 3:
        raise RuntimeError(f"job ended in state {current['State']}: {task.get('ErrorDetails')}")
    server = (_when(current["EndTime"]) - _when(current["Created"])).total_seconds()
    for asset in client.job_outputs(job["Id"]):  # keep the disk small between repetitions
        client.delete("Assets", asset["Id"], "deleting the output asset")
    return server, wall, float(task.get("RunningDuration") or 0.0), str(task.get("PerfMessage") or "")


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.rstrip("Z"))


def ffmpeg_command(clip: Path, out_dir: Path, ffmpeg: str) -> list[str]:
    """What `openams.media.ffmpeg.run` executes for this preset and clip (outputs in `out_dir`)."""
    plan = build_plan(load_preset(PRESET), [probe(clip)], out_dir, basename=clip.name)
    assert len(plan.commands) == 1
    return [ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "warning", "-progress", "pipe:1",
            *plan.commands[0]]


def run_ffmpeg(command: list[str], out_dir: Path) -> float:
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    started = time.monotonic()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall


# ---- main -------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> tuple[Runs, list[str], str]:
    ffmpeg = find_ffmpeg()
    base = Path(tempfile.mkdtemp(prefix="openams-bench-encode-", dir=args.dir))
    try:
        clip = base / "clip.mp4"
        log(f"generating a {args.seconds:g} s {args.size} clip …")
        make_clip(clip, args.seconds, args.size, ffmpeg)
        command = ffmpeg_command(clip, base / "direct", ffmpeg)
        runs = Runs()
        with openams_server(base) as server, AmsClient(server.api, server.account, server.key) as client:
            asset_id = client.upload(str(clip)).asset_id
            log("warm-up: one openams job (not counted) …")
            run_openams(client, asset_id, 0)
            for rep in range(1, args.reps + 1):
                order = ("openams", "ffmpeg") if rep % 2 else ("ffmpeg", "openams")
                for who in order:
                    if who == "openams":
                        server_seconds, wall, task_seconds, perf = run_openams(client, asset_id, rep)
                        runs.openams.append(server_seconds)
                        runs.client.append(wall)
                        runs.task_seconds.append(task_seconds)
                        runs.perf = perf
                    else:
                        runs.ffmpeg.append(run_ffmpeg(command, base / "direct"))
                log(f"rep {rep}: openams {runs.openams[-1]:.2f} s, ffmpeg {runs.ffmpeg[-1]:.2f} s")
        return runs, command, ffmpeg
    finally:
        shutil.rmtree(base, ignore_errors=True)


def report(args: argparse.Namespace, runs: Runs, command: list[str], ffmpeg: str, load_before: str) -> None:
    info = ffmpeg_info(ffmpeg)
    print(f"encode overhead — {args.seconds:g} s {args.size} 25 fps clip → 4 H.264 rungs "
          f"({', '.join(f'{w}x{h}@{k}k' for w, h, k in LADDER)}) + AAC 128k, 2 s GOPs; {args.reps} reps alternating")
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, FFmpeg {info.version} "
          f"({ffmpeg}); load average before {load_before}, after {load()}")
    print("ffmpeg side: the exact command from openams.media.build_plan (what openams runs), run directly:")
    shown = " ".join(command[1:])
    if not args.show_command and len(shown) > 300:
        shown = shown[:300] + f" … ({len(command) - 1} arguments; --show-command prints them all)"
    print(f"  ffmpeg {shown}")
    print()
    header = f"{'rep':>3} {'openams s':>10} {'client s':>9} {'task s':>8} {'ffmpeg s':>9} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    rows = zip(runs.openams, runs.client, runs.task_seconds, runs.ffmpeg, strict=True)
    for n, (a, c, t, f) in enumerate(rows, 1):
        print(f"{n:>3} {a:>10.2f} {c:>9.2f} {t:>8.2f} {f:>9.2f} {a / f:>7.3f}")
    med_a, med_f = statistics.median(runs.openams), statistics.median(runs.ffmpeg)
    med_c, med_t = statistics.median(runs.client), statistics.median(runs.task_seconds)
    print("-" * len(header))
    print(f"{'med':>3} {med_a:>10.2f} {med_c:>9.2f} {med_t:>8.2f} {med_f:>9.2f} {med_a / med_f:>7.3f}")
    print()
    print(f"ratio openams / ffmpeg (medians): {med_a / med_f:.3f}  (goal <= 1.05; best pair "
          f"{min(a / f for a, f in zip(runs.openams, runs.ffmpeg, strict=True)):.3f}; client-side wall "
          f"{med_c / med_f:.3f})")
    print(f"realtime factor: openams {args.seconds / med_a:.2f}x, ffmpeg {args.seconds / med_f:.2f}x "
          f"(clip seconds / encode seconds)")
    print(f"openams s = Job.EndTime - Job.Created (server clock); client s = POST Jobs → first poll seeing "
          f"Finished ({POLL:g} s polls); task s = Task.RunningDuration")
    if runs.perf:
        print(f"last PerfMessage: {runs.perf}")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: clean up as on Ctrl-C


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0, help="clip length in seconds (default 20)")
    p.add_argument("--size", default="1920x1080", help="clip picture size (default 1920x1080)")
    p.add_argument("--reps", type=int, default=3, help="measured repetitions of each side (default 3)")
    p.add_argument("--show-command", action="store_true", help="print the whole FFmpeg command")
    p.add_argument("--dir", default=None, help="where the temporary files go (default: the system temp dir)")
    args = p.parse_args()
    if args.reps < 1 or args.seconds <= 0:
        p.error("--reps and --seconds must be positive")
    signal.signal(signal.SIGTERM, _interrupt)
    before = load()
    try:
        runs, command, ffmpeg = run(args)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
    except (RuntimeError, ClientError, subprocess.CalledProcessError) as exc:
        log(f"error: {exc}")
        sys.exit(1)
    report(args, runs, command, ffmpeg, before)


if __name__ == "__main__":
    main()
