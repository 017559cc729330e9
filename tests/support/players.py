"""Real browser players against real streams: hls.js, dash.js (with its Smooth Streaming plugin) and
shaka-player in headless Chromium.

Why this exists: a streaming origin is only correct when the players people use accept what it
serves — manifests that parse in our own tests can still stall, error or refuse to switch rungs in a
player. The acceptance bar is: each player reaches ``seconds`` of playback with no player error,
and forcing the lowest and then the highest rung changes what is rendered.

How it works: :class:`PlayerHarness` owns one Chromium process (Debian's ``chromium``, started in
its own process group so it can always be killed as a whole), a Playwright connection to it over the
DevTools protocol, and a local HTTP server that serves ``tests/support/player_page`` and the player
libraries from the repository's ``node_modules`` (``scripts/players.sh`` installs both). Each
:meth:`PlayerHarness.play` opens a fresh browser context, runs the scenario in ``harness.js`` and
returns a :class:`PlayResult`. The manifest URL is used as given; it is on another origin than the
page, so the server behind it must send CORS headers (as a production origin must).

Chromium is launched by us, not by Playwright: Playwright's own browser download is not reachable
here, and owning the process makes cleanup deterministic (SIGTERM, then SIGKILL, to the group).
"""

from __future__ import annotations

import atexit
import contextlib
import http.server
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:  # playwright is a test extra; importing this module must work without it
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

Player = Literal["hls.js", "dash.js", "dash.js-mss", "shaka"]
PLAYERS: tuple[Player, ...] = ("hls.js", "dash.js", "dash.js-mss", "shaka")

ROOT = Path(__file__).resolve().parents[2]
PAGE_DIR = Path(__file__).resolve().parent / "player_page"
NODE_MODULES = ROOT / "node_modules"
PLAYER_FILES: dict[str, str] = {
    "hls.js": "hls.js/dist/hls.min.js",
    "dash.js": "dashjs/dist/modern/umd/dash.all.min.js",
    "dash.js-mss": "dashjs/dist/modern/umd/dash.mss.min.js",
    "shaka": "shaka-player/dist/shaka-player.compiled.js",
}
"""One file per player that must exist in node_modules (npm names: hls.js, dashjs, shaka-player —
note the DASH-IF player is ``dashjs``; the npm package called ``dash.js`` is something else)."""

SERVED_PACKAGES = frozenset({"hls.js", "dashjs", "shaka-player"})
"""The only node_modules directories the page server exposes."""

CHROMIUM_ENV = "OPENAMS_CHROMIUM"
"""Environment variable naming the Chromium binary (default: ``chromium`` on PATH)."""

CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    # the network is closed: without these Chromium's own background connections are refused
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
    # keep timers and media running at full speed although nobody looks at the page
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)

KILL_GRACE = 3.0
"""Seconds between SIGTERM and SIGKILL when stopping Chromium."""

MIME_BY_EXT = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".m4v": "video/mp4",
    ".ts": "video/mp2t",
    ".aac": "audio/aac",
    ".vtt": "text/vtt",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".html": "text/html; charset=utf-8",
    ".ism": "application/vnd.ms-sstr+xml",
    ".ismc": "application/vnd.ms-sstr+xml",
}


class HarnessError(RuntimeError):
    """The harness itself (browser, page server) could not be set up — not a player failure."""


# ---- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rung:
    """One quality level as the player listed it (``index`` is the player's own selection key)."""

    index: int
    bandwidth: int
    width: int
    height: int

    def __str__(self) -> str:
        size = f"{self.width}x{self.height}" if self.height else "audio"
        return f"{size}@{self.bandwidth // 1000}k"


@dataclass(frozen=True)
class Switch:
    """A forced rung change: did the rendered picture change to it, how fast, and did it play on."""

    target: Literal["lowest", "highest"]
    rung: Rung
    ok: bool
    matched: bool
    retried: bool
    """The first request was not honoured within half the switch timeout and was repeated."""
    latency: float
    """Wall seconds from forcing the rung to seeing it rendered."""
    at: float
    """Media time at which the rung was seen rendered."""
    advanced: float
    """Media seconds played on after the switch."""
    size: tuple[int, int]
    """videoWidth x videoHeight when the switch was judged."""


@dataclass
class PlayResult:
    """What one player did with one manifest. ``ok`` is the acceptance verdict; ``str()`` explains."""

    player: Player
    url: str
    version: str | None = None
    current_time: float = 0.0
    """``video.currentTime`` at the end of the scenario."""
    max_time: float = 0.0
    """The highest currentTime reached (the switch phase may seek back on a short VOD)."""
    played: float = 0.0
    """Media seconds actually advanced while playing (seeks excluded)."""
    duration: float | None = None
    rungs: list[Rung] = field(default_factory=list)
    """All rungs the player listed, ascending bandwidth."""
    played_rungs: list[Rung] = field(default_factory=list)
    """Rungs actually presented (by rendered frame height, or by the player's report if heights
    do not identify rungs)."""
    rendered_sizes: list[tuple[int, int]] = field(default_factory=list)
    switches: list[Switch] = field(default_factory=list)
    dropped_frames: int = 0
    total_frames: int = 0
    """From ``getVideoPlaybackQuality()``: many drops mean a starved machine, not a bad stream."""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    phase: str = ""
    timed_out: bool = False
    elapsed: float = 0.0
    seconds: float = 8.0
    switch_requested: bool = True

    @property
    def ok(self) -> bool:
        """Reached ``seconds`` with no error, and (if asked) both forced switches rendered and played on."""
        if self.errors or self.timed_out or self.max_time < self.seconds or self.played < self.seconds - 1:
            return False
        if self.switch_requested:
            return len(self.switches) == 2 and all(s.ok for s in self.switches)
        return True

    def __str__(self) -> str:
        lines = [
            f"{self.player} {self.version or '?'} on {self.url}: {'OK' if self.ok else 'FAILED'} "
            f"({self.phase}; {self.elapsed:.1f}s wall{', TIMED OUT' if self.timed_out else ''})",
            f"  reached t={self.max_time:.2f}s (now {self.current_time:.2f}s, played {self.played:.2f}s, "
            f"duration {self.duration}) — wanted {self.seconds}s; "
            f"dropped {self.dropped_frames}/{self.total_frames} frames",
            f"  rungs: {', '.join(map(str, self.rungs)) or 'none'}",
            f"  played rungs: {', '.join(map(str, self.played_rungs)) or 'none'}; "
            f"rendered sizes: {', '.join(f'{w}x{h}' for w, h in self.rendered_sizes) or 'none'}",
        ]
        for s in self.switches:
            lines.append(
                f"  switch to {s.target} {s.rung}: {'ok' if s.ok else 'FAILED'} (rendered={s.matched}, "
                f"{s.latency:.2f}s{', asked twice' if s.retried else ''}, at t={s.at:.2f}, "
                f"played on {s.advanced:.2f}s, size {s.size[0]}x{s.size[1]})"
            )
        lines += [f"  error: {e}" for e in self.errors]
        lines += [f"  warning: {w}" for w in self.warnings[:20]]
        if not self.ok:
            lines += ["  page log:", *(f"    {entry}" for entry in self.log[-40:])]
        return "\n".join(lines)


# ---- requirements -------------------------------------------------------------------------------


def chromium_path() -> str | None:
    """The Chromium binary to drive: ``$OPENAMS_CHROMIUM``, else the first of chromium/chromium-browser
    on PATH. (Debian's ``chromium`` decodes H.264 and AAC, which the streams need.)"""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return shutil.which(configured) or (configured if os.access(configured, os.X_OK) else None)
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_requirements(players: tuple[Player, ...] = PLAYERS) -> str | None:
    """Why the harness cannot run here (for a skip message), or None when everything is present."""
    problems = []
    if chromium_path() is None:
        problems.append("Chromium not found (apt-get install chromium, or set OPENAMS_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the Python package playwright is not installed")
    absent = sorted({PLAYER_FILES[p] for p in players if not (NODE_MODULES / PLAYER_FILES[p]).is_file()})
    if absent:
        problems.append(f"player libraries missing from {NODE_MODULES}: {', '.join(absent)}")
    if not problems:
        return None
    return "; ".join(problems) + " — run scripts/players.sh"


def guess_mime(url: str) -> str | None:
    """The manifest MIME type for shaka-player, which otherwise guesses from the file extension and
    falls back to a HEAD request — neither works for AMS-style ``.../Manifest(format=...)`` URLs."""
    path = unquote(urlsplit(url).path).lower()
    if "format=m3u8" in path or path.endswith(".m3u8"):
        return "application/x-mpegurl"
    if "format=mpd" in path or path.endswith(".mpd"):
        return "application/dash+xml"
    if path.endswith(("/manifest", ".ism", ".ismc")):
        return "application/vnd.ms-sstr+xml"
    return None


# ---- a static HTTP server with CORS -------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from a set of mounts, with CORS on every answer (players fetch cross-origin)."""

    mounts: Mapping[str, Path] = {}
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_BY_EXT}

    def translate_path(self, path: str) -> str:
        rel = unquote(urlsplit(path).path).lstrip("/")
        for prefix, base in sorted(self.mounts.items(), key=lambda kv: -len(kv[0])):
            if prefix and not (rel == prefix or rel.startswith(prefix + "/")):
                continue
            target = (base / rel[len(prefix) :].lstrip("/")).resolve()
            if target == base or base in target.parents:
                return str(target)
            break
        return str(Path(tempfile.gettempdir()) / "openams-player-harness-nonexistent")

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers", "Content-Length, Content-Range")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "*")
        self.send_header("Access-Control-Max-Age", "600")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        # players abort requests when they switch rungs; a reset connection is not worth a traceback
        with contextlib.suppress(ConnectionError):
            super().handle()


class StaticServer:
    """Serve directories over HTTP on 127.0.0.1 (free port) from a daemon thread, with CORS.

    ``mounts`` maps a URL prefix ("" for the root) to a directory. Used for the test page and, by
    tests, to serve streams made without openams. Use as a context manager; ``url`` is the base.
    """

    def __init__(self, mounts: Mapping[str, Path] | Path) -> None:
        if isinstance(mounts, Path):
            mounts = {"": mounts}
        resolved = {prefix.strip("/"): Path(d).resolve() for prefix, d in mounts.items()}
        handler = type("MountedHandler", (_Handler,), {"mounts": resolved})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="static-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> StaticServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()


# ---- the Chromium process -----------------------------------------------------------------------


class Chromium:
    """A headless Chromium in its own process group with a fresh profile, reachable over CDP.

    ``close()`` (also at interpreter exit, should a test session die) kills the whole group and
    removes the profile, so no browser or renderer outlives the test session.
    """

    def __init__(self, executable: str | None = None, extra_args: tuple[str, ...] = ()) -> None:
        exe = executable or chromium_path()
        if not exe:
            raise HarnessError("Chromium not found (apt-get install chromium, or set OPENAMS_CHROMIUM)")
        self.executable = exe
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.pgid: int | None = None
        """Process group of the last started browser (kept after close, for leak checks)."""
        self.profile: Path | None = None
        self.port: int | None = None

    def start(self, timeout: float = 30.0) -> str:
        """Start the browser; returns the CDP endpoint (``http://127.0.0.1:PORT``)."""
        self.profile = Path(tempfile.mkdtemp(prefix="openams-chromium-"))
        log = open(self.profile / "chromium.log", "wb")  # noqa: SIM115 - the process keeps it
        args = [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", *self.extra_args, "about:blank"]
        try:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        self.pgid = self.proc.pid
        atexit.register(self.close)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                tail = self.log_tail()
                self.close()
                raise HarnessError(f"Chromium exited with {code} at start:\n{tail}")
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = port_file.read_text().splitlines()
                if text and text[0].strip():
                    self.port = int(text[0])
                    return f"http://127.0.0.1:{self.port}"
            time.sleep(0.05)
        tail = self.log_tail()
        self.close()
        raise HarnessError(f"Chromium did not open its DevTools port within {timeout}s:\n{tail}")

    def log_tail(self, lines: int = 30) -> str:
        if not self.profile:
            return ""
        try:
            text = (self.profile / "chromium.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Kill the process group (TERM, then KILL after a grace period), reap, remove the profile."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _kill_group(proc, KILL_GRACE)
        atexit.unregister(self.close)
        profile, self.profile = self.profile, None
        if profile is not None:
            shutil.rmtree(profile, ignore_errors=True)


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Stop a process started with ``start_new_session=True`` and everything in its group.

    TERM first so Chromium can shut down cleanly, KILL for whatever is left of the group (renderers,
    zygotes, a leader that ignored TERM), then wait until no live member remains.
    """
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    deadline = time.monotonic() + 10
    while live_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def live_group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies (Linux /proc; empty elsewhere).

    Zombies are left out on purpose: Chromium's helpers are reparented to init when the browser
    dies, and init reaps them in its own time — they hold no resources.
    """
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if len(fields) >= 3 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


# ---- the harness --------------------------------------------------------------------------------


class _SharedPlaywright:
    """One Playwright driver per process, shared by every open harness.

    Playwright's sync API refuses to start a second instance while one is running in the same
    thread, and a session may well hold a module-wide harness while a test opens its own.
    """

    def __init__(self) -> None:
        self._instance: Playwright | None = None
        self._users = 0

    def acquire(self) -> Playwright:
        if self._instance is None:
            from playwright.sync_api import sync_playwright

            self._instance = sync_playwright().start()
        self._users += 1
        return self._instance

    def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._instance is not None:
            instance, self._instance = self._instance, None
            with contextlib.suppress(Exception):
                instance.stop()


_PLAYWRIGHT = _SharedPlaywright()


class PlayerHarness:
    """Chromium + Playwright (over CDP) + the page server. Reuse one for many :meth:`play` calls.

    Not thread-safe (Playwright's sync API is bound to the thread that started it); several
    harnesses may be open at once in one thread.
    """

    def __init__(self, executable: str | None = None) -> None:
        self.chromium = Chromium(executable)
        mounts = {"": PAGE_DIR} | {f"node_modules/{pkg}": NODE_MODULES / pkg for pkg in SERVED_PACKAGES}
        self.pages = StaticServer(mounts)
        self._pw: Playwright | None = None
        self._browser: Browser | None = None
        self._endpoint = ""

    def __enter__(self) -> PlayerHarness:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.pages.__enter__()
        self._pw = _PLAYWRIGHT.acquire()
        self._connect()

    def _connect(self) -> None:
        assert self._pw is not None
        self._endpoint = self.chromium.start()
        self._browser = self._pw.chromium.connect_over_cdp(self._endpoint, timeout=30_000)

    def restart_browser(self) -> None:
        """Throw the browser away (after a hang) and start a fresh one."""
        if self._browser is not None:
            with contextlib.suppress(Exception):
                self._browser.close()
            self._browser = None
        self.chromium.close()
        self._connect()

    def close(self) -> None:
        if self._browser is not None:
            with contextlib.suppress(Exception):
                self._browser.close()
            self._browser = None
        self.chromium.close()
        if self._pw is not None:
            _PLAYWRIGHT.release()
            self._pw = None
        self.pages.close()

    @property
    def browser_version(self) -> str:
        return self._browser.version if self._browser is not None else ""

    def play(
        self,
        manifest_url: str,
        player: Player,
        *,
        seconds: float = 8,
        switch: bool = True,
        switch_seconds: float = 2,
        switch_timeout: float = 15,
        timeout: float = 60,
        mime_type: str | None = None,
    ) -> PlayResult:
        """Play ``manifest_url`` muted with ``player`` until currentTime >= ``seconds``; then (if
        ``switch``) force the lowest rung, check the rendered height changes to it and play on
        ``switch_seconds``, then the same for the highest rung. See :class:`PlayJob`."""
        job = PlayJob(manifest_url, player, seconds=seconds, switch=switch, switch_seconds=switch_seconds,
                      switch_timeout=switch_timeout, timeout=timeout, mime_type=mime_type)
        return self.play_many([job], concurrency=1)[0]

    def play_many(self, jobs: Sequence[PlayJob], *, concurrency: int = 3) -> list[PlayResult]:
        """Run several scenarios at once, each in its own browser context (results in job order).

        Why: each scenario is bound to real time (8 s of media plus two switches), so a player x
        format matrix run one by one takes minutes; the tiny test streams decode side by side fine.
        """
        for job in jobs:
            if job.player not in PLAYERS:
                raise ValueError(f"unknown player {job.player!r}; one of {PLAYERS}")
        if self._browser is None or not self.chromium.alive():
            self.restart_browser()
        results: list[PlayResult | None] = [None] * len(jobs)
        pending = list(enumerate(jobs))
        running: list[tuple[int, _Run]] = []
        hung = False
        try:
            while pending or running:
                while pending and len(running) < max(1, concurrency):
                    index, job = pending.pop(0)
                    running.append((index, self._start(job)))
                for entry in list(running):
                    index, run = entry
                    if run.poll():
                        results[index] = run.finish()
                        hung = hung or run.hung
                        running.remove(entry)
                if running:
                    time.sleep(0.25)
        finally:
            for _index, run in running:  # only after an exception: do not leave contexts behind
                run.close()
            if hung:
                self.restart_browser()
        return [r for r in results if r is not None]

    def _start(self, job: PlayJob) -> _Run:
        assert self._browser is not None
        run = _Run(job, self._browser.new_context(viewport={"width": 800, "height": 600}))
        try:
            run.begin(f"{self.pages.url}/index.html")
        except Exception as exc:
            run.errors.append(f"could not start the page: {exc}")
            run.failed_to_start = True
        return run


@dataclass(frozen=True)
class PlayJob:
    """One scenario for :meth:`PlayerHarness.play_many`.

    Play ``manifest_url`` muted with ``player`` until currentTime >= ``seconds``; then (if
    ``switch``) force the lowest rung, wait up to ``switch_timeout`` for the rendered height to
    change to it, play on ``switch_seconds``; the same for the highest rung. A short VOD is sought
    back near its start before the switches so both have room. ``timeout`` bounds the whole
    scenario (wall seconds); on expiry the partial result comes back with ``timed_out`` set.
    ``mime_type`` is for shaka (guessed from the URL when None). ``key_token`` (hls.js) is sent as
    ``Authorization: Bearer`` on key requests (URLs containing ``/keydelivery``), as AMS players do.
    """

    manifest_url: str
    player: Player
    seconds: float = 8
    switch: bool = True
    switch_seconds: float = 2
    switch_timeout: float = 15
    timeout: float = 60
    mime_type: str | None = None
    key_token: str = ""


class _Run:
    """One scenario in flight: its browser context and page, and what the browser reported."""

    def __init__(self, job: PlayJob, context: BrowserContext) -> None:
        self.job = job
        self.context = context
        self.started = time.monotonic()
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.snap: dict[str, Any] | None = None
        self.max_time = 0.0
        self.timed_out = False
        self.hung = False
        self.failed_to_start = False
        self.page: Page | None = None

    def begin(self, page_url: str) -> None:
        self.page = self.context.new_page()
        _collect(self.page, self.errors, self.warnings)
        self.page.goto(page_url, wait_until="load", timeout=30_000)
        job = self.job
        options = {
            "player": job.player,
            "src": job.manifest_url,
            "mime": job.mime_type or guess_mime(job.manifest_url),
            "seconds": job.seconds,
            "switch": job.switch,
            "switchSeconds": job.switch_seconds,
            "switchTimeout": job.switch_timeout,
            "keyToken": job.key_token,
            # the page gives up a little earlier than we do, so it can still say where it was
            "timeout": max(0.5, job.timeout - min(3.0, job.timeout * 0.2)),
        }
        self.page.evaluate("opts => { window.harness.run(opts); }", options)

    def poll(self) -> bool:
        """Take a snapshot; True once the scenario is over (done, timed out, hung or never started)."""
        if self.failed_to_start or self.page is None:
            return True
        snap = _snapshot(self.page)
        if snap is None:
            self.timed_out = self.hung = True
            self.errors.append("the page stopped answering; the browser will be restarted")
            return True
        self.snap = snap
        self.max_time = max(self.max_time, float(snap.get("currentTime") or 0))
        if snap.get("done"):
            return True
        if time.monotonic() - self.started >= self.job.timeout:
            self.timed_out = True
            self.errors.append(f"timed out after {self.job.timeout}s in phase: {snap.get('phase')}")
            return True
        return False

    def finish(self) -> PlayResult:
        job = self.job
        result = PlayResult(player=job.player, url=job.manifest_url, seconds=job.seconds, switch_requested=job.switch)
        if self.snap is not None:
            _fill(result, self.snap)
        result.max_time = max(self.max_time, result.max_time, result.current_time)
        result.timed_out = self.timed_out or bool(self.snap and self.snap.get("timedOut"))
        self.close()
        result.errors += self.errors
        result.warnings += self.warnings
        result.elapsed = time.monotonic() - self.started
        return result

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.context.close()


def _collect(page: Page, errors: list[str], warnings: list[str]) -> None:
    """Browser-side failures the page script cannot see: console errors, failed and refused requests."""

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            where = msg.location.get("url", "") if isinstance(msg.location, dict) else ""
            errors.append(f"console: {msg.text}" + (f" ({where})" if where else ""))

    def on_failed(req: Any) -> None:
        failure = req.failure or ""
        entry = f"request failed: {req.method} {req.url}: {failure}"
        # players abort in-flight requests on purpose when they switch rungs or seek
        (warnings if "ERR_ABORTED" in failure else errors).append(entry)

    def on_response(resp: Any) -> None:
        if resp.status >= 400:
            errors.append(f"HTTP {resp.status} for {resp.request.method} {resp.url}")

    page.on("console", on_console)
    page.on("requestfailed", on_failed)
    page.on("response", on_response)


def _snapshot(page: Page) -> dict[str, Any] | None:
    """The page's state, or None when the page does not answer within a few seconds (hung)."""
    try:
        handle = page.wait_for_function("() => window.harness && window.harness.snapshot()", timeout=10_000)
        value = handle.json_value()
        return value if isinstance(value, dict) else None
    except Exception:
        return None


def _rung(raw: Mapping[str, Any]) -> Rung:
    return Rung(
        index=int(raw.get("index", -1)),
        bandwidth=int(raw.get("bandwidth") or 0),
        width=int(raw.get("width") or 0),
        height=int(raw.get("height") or 0),
    )


def _fill(result: PlayResult, snap: Mapping[str, Any]) -> None:
    result.version = snap.get("version")
    result.phase = str(snap.get("phase", ""))
    result.current_time = float(snap.get("currentTime") or 0)
    result.max_time = float(snap.get("maxTime") or 0)
    result.played = float(snap.get("played") or 0)
    duration = snap.get("duration")
    result.duration = float(duration) if duration is not None else None
    result.rungs = [_rung(r) for r in snap.get("rungs", [])]
    result.dropped_frames = int(snap.get("droppedFrames") or 0)
    result.total_frames = int(snap.get("totalFrames") or 0)
    sizes = []
    for entry in snap.get("renderedSizes", []):
        w, _, h = str(entry).partition("x")
        sizes.append((int(w), int(h)))
    result.rendered_sizes = sizes
    played: list[Rung] = []
    heights = [r.height for r in result.rungs]
    for _w, h in sizes:  # a rendered frame height names a rung when exactly one rung has it
        if heights.count(h) == 1:
            rung = result.rungs[heights.index(h)]
            if rung not in played:
                played.append(rung)
    by_index = {r.index: r for r in result.rungs}
    for idx in snap.get("reported", []):  # the player's word counts only where heights cannot tell
        rung = by_index.get(idx)
        if rung is not None and heights.count(rung.height) != 1 and rung not in played:
            played.append(rung)
    result.played_rungs = played
    result.switches = [
        Switch(
            target=s["target"],
            rung=_rung(s["rung"]),
            ok=bool(s["ok"]),
            matched=bool(s["matched"]),
            retried=bool(s.get("retried", False)),
            latency=float(s["latency"]),
            at=float(s["at"]),
            advanced=float(s["advanced"]),
            size=(int(s["size"][0]), int(s["size"][1])),
        )
        for s in snap.get("switches", [])
    ]
    result.errors = [str(e) for e in snap.get("errors", [])]
    result.warnings = [str(w) for w in snap.get("warnings", [])]
    result.log = [str(entry) for entry in snap.get("log", [])]


@contextlib.contextmanager
def player_harness() -> Iterator[PlayerHarness]:
    """A started :class:`PlayerHarness`, closed (browser killed) on exit."""
    with PlayerHarness() as harness:
        yield harness


def play(
    manifest_url: str,
    player: Player,
    *,
    seconds: float = 8,
    switch: bool = True,
    timeout: float = 60,
    mime_type: str | None = None,
) -> PlayResult:
    """One-shot :meth:`PlayerHarness.play` with its own browser (prefer a shared harness in tests)."""
    with player_harness() as harness:
        return harness.play(manifest_url, player, seconds=seconds, switch=switch, timeout=timeout, mime_type=mime_type)

