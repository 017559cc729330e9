"""Locating FFmpeg, running it, progress, failure, cancel and timeout without leftovers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from openams.media import ffmpeg as ff
from openams.media.errors import EncodeCanceledError, EncodeTimeoutError, FFmpegError, FFmpegNotFoundError
from openams.media.probe import MediaInfo, StreamInfo
from tests.media.conftest import pid_alive, processes_in_group

# An endless, real-time paced encode: runs until it is stopped.
ENDLESS = [
    "-re",
    "-f",
    "lavfi",
    "-i",
    "testsrc2=s=160x90:r=10",
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-f",
    "null",
    "-",
]


def test_binary_and_capabilities() -> None:
    path = ff.find_ffmpeg()
    info = ff.ffmpeg_info(path)
    assert info.has_libx264 and info.has_aac
    assert info.version and info.version != "unknown"
    assert info.missing() == []


def test_configured_binary_wins_and_bad_paths_fail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = ff.find_ffmpeg()
    monkeypatch.setenv(ff.ENV_VAR, real)
    assert ff.find_ffmpeg() == real
    monkeypatch.setenv(ff.ENV_VAR, str(tmp_path / "no-ffmpeg"))
    with pytest.raises(FFmpegNotFoundError, match="no-ffmpeg"):
        ff.find_ffmpeg()
    assert ff.find_ffmpeg(real) == real  # an explicit setting beats the environment


def test_run_reports_progress_to_100() -> None:
    seen: list[float] = []
    result = ff.run(
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=160x90:r=25:d=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-f",
            "null",
            "-",
        ],
        seen.append,
        duration=2.0,
    )
    assert result.returncode == 0
    assert seen and seen[-1] == 100.0 and seen == sorted(seen)
    assert result.progress.get("progress") == "end"


def test_failure_carries_the_stderr_tail(tmp_path: Path) -> None:
    with pytest.raises(FFmpegError) as info:
        ff.run(["-f", "mov", "-i", "file:" + str(tmp_path / "missing.mp4"), "-f", "null", "-"])
    assert info.value.returncode not in (0, None)
    assert "No such file or directory" in info.value.stderr_tail
    assert "No such file or directory" in str(info.value)


def test_cancel_kills_ffmpeg_within_a_second_and_leaves_nothing() -> None:
    cancel = threading.Event()
    pids: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            ff.run(ENDLESS, cancel_event=cancel, on_start=pids.append)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    deadline = time.monotonic() + 10
    while not pids and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pids, "FFmpeg did not start"
    time.sleep(0.5)
    assert pid_alive(pids[0])
    started = time.monotonic()
    cancel.set()
    thread.join(timeout=5)
    stopped_after = time.monotonic() - started
    assert not thread.is_alive()
    assert stopped_after < 5.0, f"cancel took {stopped_after:.2f} s (the promise is: within 5 s)"
    assert len(errors) == 1 and isinstance(errors[0], EncodeCanceledError)
    assert not pid_alive(pids[0])
    assert processes_in_group(pids[0]) == []


def test_timeout_kills_ffmpeg() -> None:
    pids: list[int] = []
    with pytest.raises(EncodeTimeoutError, match="time limit"):
        ff.run(ENDLESS, timeout=0.5, on_start=pids.append)
    assert pids and not pid_alive(pids[0]) and processes_in_group(pids[0]) == []


def test_cancel_before_start_does_not_spawn() -> None:
    cancel = threading.Event()
    cancel.set()
    pids: list[int] = []
    with pytest.raises(EncodeCanceledError):
        ff.run(ENDLESS, cancel_event=cancel, on_start=pids.append)
    assert pids == []


def test_forced_demuxer_never_follows_a_disguised_playlist(tmp_path: Path, av_320: Path, open_watch) -> None:
    """Even if a playlist got past the probe, the command line forces the probed demuxer (mov) and
    the file protocol, so FFmpeg fails instead of opening what the playlist lists."""
    from openams.media.plan import _input_args, _Segment
    from openams.media.presets import Source

    canary = tmp_path / "secret.mp4"
    canary.write_bytes(av_320.read_bytes())
    evil = tmp_path / "upload.mp4"
    evil.write_text(f"#EXTM3U\n#EXTINF:10,\n{canary}\n#EXTINF:10,\nfile://{canary}\n#EXT-X-ENDLIST\n")
    info = MediaInfo(
        evil,
        "mov,mp4,m4a,3gp,3g2,mj2",
        "QuickTime / MOV",
        3.0,
        0.0,
        evil.stat().st_size,
        None,
        (StreamInfo(index=0, kind="video", codec="h264", width=320, height=180),),
    )
    args = _input_args(_Segment(info, Source(), 0.0, 3.0, info.video, None))
    assert args[:4] == ["-protocol_whitelist", "file", "-f", "mov"] and args[-1] == "file:" + str(evil)
    watch = open_watch(canary)
    with pytest.raises(FFmpegError):
        ff.run([*args, "-f", "null", "-"])
    assert watch.events() == b""
