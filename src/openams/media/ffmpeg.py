"""Locate the FFmpeg binary and run it as a well-behaved subprocess.

``run()`` is the only place that spawns FFmpeg. It always adds ``-nostdin -hide_banner -nostats
-progress pipe:1``, reads the progress stream to report a percentage, and owns the process for
its whole life: the process runs in its own session (process group), is killed as a group on
cancel or timeout (SIGTERM, then SIGKILL after a grace period), and is always reaped before
``run()`` returns or raises — no FFmpeg is ever left behind.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .errors import EncodeCanceledError, EncodeTimeoutError, FFmpegError, FFmpegNotFoundError

ENV_VAR = "OPENAMS_FFMPEG"
"""Environment variable naming the FFmpeg binary to use (overrides the bundled one)."""

KILL_GRACE = 0.5
"""Seconds between SIGTERM and SIGKILL when stopping FFmpeg."""

STDERR_TAIL_LINES = 40

ProgressCallback = Callable[[float], None]


def find_ffmpeg(configured: str | os.PathLike[str] | None = None) -> str:
    """Return the path of the FFmpeg binary to use.

    Order: ``configured`` (from the settings), ``$OPENAMS_FFMPEG``, the binary shipped by the
    ``imageio-ffmpeg`` wheel, then ``ffmpeg`` on ``PATH``.
    """
    for candidate in (configured, os.environ.get(ENV_VAR)):
        if candidate:
            path = _resolve_executable(str(candidate))
            if path is None:
                raise FFmpegNotFoundError(f"FFmpeg binary not found or not executable: {candidate}")
            return path
    try:
        import imageio_ffmpeg

        path = imageio_ffmpeg.get_ffmpeg_exe()
        if path and os.access(path, os.X_OK):
            return path
    except Exception:  # the wheel is optional; fall through to the system binary
        pass
    path = shutil.which("ffmpeg")
    if path:
        return path
    raise FFmpegNotFoundError(
        f"no FFmpeg binary found: install the imageio-ffmpeg package, put ffmpeg on PATH or set {ENV_VAR}"
    )


def _resolve_executable(candidate: str) -> str | None:
    if os.sep in candidate:
        return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    return shutil.which(candidate)


@dataclass(frozen=True)
class FFmpegInfo:
    path: str
    version: str
    encoders: frozenset[str]
    filters: frozenset[str]

    @property
    def has_libx264(self) -> bool:
        return "libx264" in self.encoders

    @property
    def has_aac(self) -> bool:
        return "aac" in self.encoders

    def missing(self) -> list[str]:
        """Components the encoder needs that this binary lacks (empty when it is usable)."""
        needed_encoders = ("libx264", "aac", "mjpeg", "png", "bmp")
        needed_filters = (
            "split",
            "asplit",
            "scale",
            "pad",
            "fps",
            "select",
            "thumbnail",
            "concat",
            "color",
            "anullsrc",
            "aresample",
            "aformat",
            "setsar",
            "sidedata",
            "bwdif",
            "transpose",
            "atrim",
            "trim",
        )
        return [f"encoder {e}" for e in needed_encoders if e not in self.encoders] + [
            f"filter {f}" for f in needed_filters if f not in self.filters
        ]


@functools.lru_cache(maxsize=8)
def _info_cached(path: str) -> FFmpegInfo:
    def capture(*args: str) -> str:
        try:
            done = subprocess.run(
                [path, "-hide_banner", *args],
                capture_output=True,
                text=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
                errors="replace",
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FFmpegNotFoundError(f"cannot run FFmpeg at {path}: {exc}") from exc
        return done.stdout

    first = capture("-version").splitlines()
    match = re.match(r"ffmpeg version (\S+)", first[0]) if first else None
    version = match.group(1) if match else "unknown"
    return FFmpegInfo(
        path=path,
        version=version,
        encoders=frozenset(_listing(capture("-encoders"))),
        filters=frozenset(_listing(capture("-filters"))),
    )


def _listing(text: str) -> list[str]:
    """Names from ``-encoders`` / ``-filters`` output: lines of flags followed by a name."""
    names = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(" ---") and re.fullmatch(r"[A-Z.|]{2,6}", parts[0]):
            names.append(parts[1])
    return names


def ffmpeg_info(path: str | None = None) -> FFmpegInfo:
    """Version and capabilities of an FFmpeg binary (cached per path)."""
    return _info_cached(path or find_ffmpeg())


@dataclass
class RunResult:
    returncode: int
    elapsed: float
    stderr_tail: str
    progress: dict[str, str] = field(default_factory=dict)
    """The last ``-progress`` block FFmpeg reported (``frame``, ``out_time_us``, ``speed``…)."""


def run(
    args: Sequence[str],
    progress_cb: ProgressCallback | None = None,
    cancel_event: threading.Event | None = None,
    timeout: float | None = None,
    *,
    duration: float | None = None,
    ffmpeg: str | None = None,
    loglevel: str = "warning",
    on_start: Callable[[int], None] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Run FFmpeg with ``args`` (everything after the binary) and wait for it.

    ``progress_cb(percent)`` receives 0 to 100, computed from ``out_time_us`` against ``duration``
    (seconds of output expected); without a duration only 100 is reported at the end.
    Setting ``cancel_event`` kills FFmpeg within about a second and raises
    EncodeCanceledError; exceeding ``timeout`` seconds raises EncodeTimeoutError; a non-zero
    exit raises FFmpegError carrying the tail of FFmpeg's diagnostics.
    """
    binary = ffmpeg or find_ffmpeg()
    cmd = [
        binary,
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-loglevel",
        loglevel,
        "-progress",
        "pipe:1",
        *[str(a) for a in args],
    ]
    if cancel_event is not None and cancel_event.is_set():
        raise EncodeCanceledError("encode canceled before FFmpeg started")
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            cwd=cwd,
            close_fds=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
    except OSError as exc:
        raise FFmpegNotFoundError(f"cannot start FFmpeg ({binary}): {exc}") from exc
    if on_start is not None:
        on_start(proc.pid)

    stderr_lines: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    last_block: dict[str, str] = {}
    state = {"percent": -1.0}

    def report(percent: float) -> None:
        percent = max(0.0, min(100.0, percent))
        if progress_cb is not None and percent > state["percent"]:
            state["percent"] = percent
            with contextlib.suppress(Exception):  # a faulty callback must not break the encode
                progress_cb(percent)

    def read_progress() -> None:
        assert proc.stdout is not None
        block: dict[str, str] = {}
        for raw in proc.stdout:
            key, _, value = raw.decode("utf-8", "replace").strip().partition("=")
            block[key] = value
            if key == "progress":
                last_block.clear()
                last_block.update(block)
                block = {}
                if value == "end":
                    report(100.0)
                elif duration:
                    us = _out_time_us(last_block)
                    if us is not None:
                        report(us / 1e6 / duration * 100.0)

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            stderr_lines.append(raw.decode("utf-8", "replace").rstrip())

    readers = [
        threading.Thread(target=read_progress, daemon=True, name="ffmpeg-progress"),
        threading.Thread(target=read_stderr, daemon=True, name="ffmpeg-stderr"),
    ]
    for thread in readers:
        thread.start()

    outcome = "done"
    try:
        while True:
            try:
                proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            if cancel_event is not None and cancel_event.is_set():
                outcome = "canceled"
                break
            if timeout is not None and time.monotonic() - started > timeout:
                outcome = "timeout"
                break
    except BaseException:
        outcome = "interrupted"
        raise
    finally:
        if proc.poll() is None:
            _kill_group(proc)
        for thread in readers:
            thread.join(timeout=2.0)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    elapsed = time.monotonic() - started
    tail = "\n".join(stderr_lines)
    if outcome == "canceled":
        raise EncodeCanceledError("encode canceled; FFmpeg was stopped")
    if outcome == "timeout":
        raise EncodeTimeoutError(
            f"FFmpeg exceeded the time limit of {timeout:g} s and was stopped", proc.returncode, tail
        )
    if proc.returncode != 0:
        raise FFmpegError(_failure_message(proc.returncode, tail), proc.returncode, tail)
    report(100.0)
    return RunResult(proc.returncode, elapsed, tail, dict(last_block))


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """On Linux, a function for the child (between fork and exec) asking the kernel to SIGKILL
    FFmpeg when the thread that started it dies: FFmpeg runs in its own session and ignores
    SIGPIPE, so a server or worker killed with SIGKILL would otherwise leave it encoding on into
    a scratch directory that a retry of the task reuses."""
    prctl = _prctl()
    if prctl is None:
        return None

    def child() -> None:
        prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return child


@functools.lru_cache(maxsize=1)
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def _out_time_us(block: dict[str, str]) -> int | None:
    for key in ("out_time_us", "out_time_ms"):  # out_time_ms is in microseconds too (historic)
        value = block.get(key, "")
        if value.lstrip("-").isdigit():
            return int(value)
    return None


def _failure_message(returncode: int, tail: str) -> str:
    if returncode < 0:
        reason = f"FFmpeg was killed by signal {-returncode}"
    else:
        reason = f"FFmpeg failed with exit code {returncode}"
    last = [line for line in tail.splitlines() if line.strip()]
    return f"{reason}: {last[-1]}" if last else reason


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it after the grace period, and reap the leader."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5.0)):
        try:
            if pgid is not None:
                os.killpg(pgid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    if pgid is not None:  # members of the group that outlived the leader
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
