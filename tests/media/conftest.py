"""Media fixtures, generated at test time with the FFmpeg binary (testsrc2 + sine), kept tiny."""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from openams.media.ffmpeg import find_ffmpeg


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [find_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        timeout=120,
    )


def make_media(
    path: Path,
    *,
    size: str = "320x180",
    duration: float = 3.0,
    fps: int = 30,
    video: bool = True,
    audio: bool = True,
    channels: int = 2,
    faststart: bool = True,
    extra: tuple[str, ...] = (),
) -> Path:
    """An H.264/AAC MP4 (or M4A) with a moving test pattern and a tone."""
    args: list[str] = []
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc2=s={size}:r={fps}:d={duration}"]
    if audio:
        layout = "mono" if channels == 1 else "stereo"
        args += ["-f", "lavfi", "-i", f"sine=f=440:r=48000:d={duration}"]
        args += ["-af", f"aformat=channel_layouts={layout}"]
    if video:
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps), "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "96k"]
    if faststart:
        args += ["-movflags", "+faststart"]
    _ffmpeg(*args, *extra, str(path))
    return path


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media-fixtures")


@pytest.fixture(scope="session")
def av_640(media_dir: Path) -> Path:
    """640x360, 30 fps, 4 s, stereo AAC."""
    return make_media(media_dir / "clip640.mp4", size="640x360", duration=4.0)


@pytest.fixture(scope="session")
def av_320(media_dir: Path) -> Path:
    """320x180, 30 fps, 3 s, stereo AAC."""
    return make_media(media_dir / "clip320.mp4", size="320x180", duration=3.0)


@pytest.fixture(scope="session")
def audio_only(media_dir: Path) -> Path:
    return make_media(media_dir / "tone.m4a", video=False, duration=3.0)


@pytest.fixture(scope="session")
def video_only(media_dir: Path) -> Path:
    """320x240 (4:3), 25 fps, 2 s, no audio."""
    return make_media(media_dir / "silent.mp4", size="320x240", fps=25, duration=2.0, audio=False)


@pytest.fixture(scope="session")
def av_1080(media_dir: Path) -> Path:
    """1920x1080, 30000/1001 fps, 10 s: only for tests marked slow."""
    path = media_dir / "hd1080.mp4"
    if not path.exists():
        _ffmpeg(
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=1920x1080:r=30000/1001:d=10",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:r=48000:d=10",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "8M",
            "-c:a",
            "aac",
            "-ac",
            "2",
            "-movflags",
            "+faststart",
            str(path),
        )
    return path


# ------------------------------------------------------------------------------------------------
# "was this file ever opened?" — inotify through libc, no extra packages

IN_ACCESS = 0x001
IN_OPEN = 0x020


class OpenWatch:
    """Records whether anyone opens or reads a file while the watch is active."""

    def __init__(self, path: Path) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(path), IN_OPEN | IN_ACCESS)
        if wd < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch failed for {path}")

    def events(self) -> bytes:
        try:
            return os.read(self.fd, 65536)
        except BlockingIOError:
            return b""

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def open_watch() -> Callable[[Path], OpenWatch]:
    watches: list[OpenWatch] = []

    def start(path: Path) -> OpenWatch:
        watch = OpenWatch(path)
        watches.append(watch)
        return watch

    yield start
    for watch in watches:
        watch.close()


def processes_in_group(pgid: int) -> list[int]:
    """PIDs whose process group is ``pgid`` (read from /proc, no psutil)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not "alive": it has exited and only waits to be reaped
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
        return stat[stat.rfind(")") + 2 :].split()[0] != "Z"
    except OSError:
        return False
