"""What the benchmarks share: starting a real `openams serve` for them and stopping it again.

`start_openams` (or the `openams_server` context manager) runs `openams serve` with this Python on
free loopback ports, a data directory under the benchmark's work directory and an environment
without the developer's `OPENAMS_*` settings (warnings-only logging, no development account), waits
for `GET /health` = 200 on the API port (and, when asked, for any answer on the blob port), creates
an account with `openams account create --json` and hands back where it listens and the account's
name and key. The server runs in its own session, so Ctrl-C reaches only the benchmark, which stops
it (SIGTERM, then SIGKILL of its process group — FFmpeg children included — if it lingers).

The benchmarks are scripts (`.venv/bin/python bench/<name>.py`): Python puts `bench/` first on
`sys.path`, so they import this module as `_common`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"
SERVE_CMD = [sys.executable, "-c", "from openams.cli import main; main()"]
"""`openams` with this interpreter (the venv's), whatever `openams` is on PATH."""
TOKEN_SCOPE = "urn:WindowsAzureMediaServices"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without OPENAMS_ settings, so a developer's shell cannot change
    what is measured; warnings only (logging costs nothing under load), no development account;
    then `extra` (e.g. OPENAMS_ORIGIN_CACHE_MB)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAMS_")}
    env.update(OPENAMS_LOG_LEVEL="warning", OPENAMS_CREATE_DEV_ACCOUNT="0")
    env.update(extra)
    return env


class Process:
    """A child in its own session (Ctrl-C reaches only us; we stop it and whatever it started),
    output to a log file."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.log_path = name, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if not self._log.closed:
            self._log.close()

    def wait_http(self, port: int, path: str, timeout: float = 90.0, any_status: bool = False) -> None:
        """Until `GET http://HOST:port/path` answers 200 (any status with `any_status`); raises
        RuntimeError with the end of the log if the process exits or the time runs out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{HOST}:{port}{path}", timeout=2).status_code == 200 or any_status:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {path} within {timeout:.0f} s:\n{self.tail()}")


@dataclass
class OpenAms:
    """A running `openams serve` and the account made on it."""

    process: Process
    port: int
    blob_port: int
    data_dir: Path
    account: str
    key: str
    """The account's primary key ("" when no account was created)."""

    @property
    def api(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def blob(self) -> str:
        return f"http://{HOST}:{self.blob_port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def token(self) -> str:
        """An ACS access token for the account (`POST /v2/OAuth2-13`, client credentials)."""
        r = httpx.post(f"{self.api}/v2/OAuth2-13", timeout=30,
                       data={"grant_type": "client_credentials", "client_id": self.account,
                             "client_secret": self.key, "scope": TOKEN_SCOPE})
        if r.status_code != 200:
            raise RuntimeError(f"token request answered {r.status_code}: {r.text[:300]}")
        return str(r.json()["access_token"])


def create_account(data_dir: Path, name: str, env: dict[str, str], database_url: str | None = None) -> str:
    """`openams account create NAME --json` on a data directory (and database); the primary key."""
    db_args = ["--database-url", database_url] if database_url else []
    out = subprocess.run([*SERVE_CMD, "account", "create", name, "--json", "--data-dir", str(data_dir), *db_args],
                         capture_output=True, text=True, env=env, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"openams account create failed ({out.returncode}): {out.stderr.strip()}")
    return str(json.loads(out.stdout.strip().splitlines()[-1])["primaryKey"])


def start_openams(stack: contextlib.ExitStack, workdir: Path, *, name: str = "openams serve",
                  data_dir: Path | None = None, account: str | None = None, create: bool = True,
                  database_url: str | None = None, env: dict[str, str] | None = None,
                  cmd: list[str] | None = None, log_name: str = "openams.log", wait_blob: bool = False,
                  timeout: float = 90.0) -> OpenAms:
    """`openams serve` on free ports; stopped when `stack` closes.

    data_dir: default `workdir/openams-data`; account: its name (default `bench<random>`), created
    once the server answers unless `create` is False (another server on the same data directory
    made it: pass its name); env: default `clean_env()`; cmd: the `openams` command line before
    `serve` (default SERVE_CMD); wait_blob: also wait until the blob port answers."""
    data_dir = data_dir or workdir / "openams-data"
    env = env if env is not None else clean_env()
    account = account or f"bench{uuid.uuid4().hex[:10]}"
    port, blob_port = free_port(), free_port()
    db_args = ["--database-url", database_url] if database_url else []
    proc = Process(name, [*(cmd or SERVE_CMD), "serve", "--data-dir", str(data_dir), "--host", HOST,
                          "--port", str(port), "--blob-port", str(blob_port), *db_args], workdir / log_name, env)
    stack.callback(proc.stop)
    proc.wait_http(port, "/health", timeout)
    if wait_blob:
        proc.wait_http(blob_port, "/health", timeout, any_status=True)
    key = create_account(data_dir, account, env, database_url) if create else ""
    return OpenAms(proc, port, blob_port, data_dir, account, key)


@contextlib.contextmanager
def openams_server(workdir: Path, **options: object) -> Iterator[OpenAms]:
    """`start_openams` as a context manager (the same keyword options)."""
    with contextlib.ExitStack() as stack:
        yield start_openams(stack, workdir, **options)  # type: ignore[arg-type]
