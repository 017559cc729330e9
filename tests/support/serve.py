"""A real `openams serve` process for tests that need real HTTP (ffmpeg, players, SDKs).

It uses the suite's database (pass the `db_url` fixture: a PostgreSQL database of its own when
OPENAMS_TEST_DATABASE_URL selects PostgreSQL, else SQLite in the data directory) and the suite's
storage backend (STORAGE_VARS pass through).

`ServeProcess` creates an account in a fresh data directory, starts the server on free ports,
waits for `/health`, and stops it (kill after a grace period) — the one place tests do this.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import STORAGE_VARS

CLI = [sys.executable, "-c", "from openams.cli import main; main()"]
API_HEADERS = {"x-ms-version": "2.19", "Accept": "application/json", "DataServiceVersion": "3.0",
               "MaxDataServiceVersion": "3.0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_env(**extra: str) -> dict[str, str]:
    """The test process's environment without OPENAMS_ settings, except the storage backend and
    the session's server key (see STORAGE_VARS)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAMS_") or k.startswith(STORAGE_VARS)}
    env.update({"OPENAMS_LOG_LEVEL": "warning", "COLUMNS": "200", **extra})
    return env


class ServeProcess:
    def __init__(self, data_dir: Path, *, env: dict[str, str] | None = None, database_url: str = "") -> None:
        self.data_dir = data_dir
        self.common = ["--data-dir", str(data_dir), *(["--database-url", database_url] if database_url else [])]
        self.port, self.blob_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.blob = f"http://127.0.0.1:{self.blob_port}"
        self.env = serve_env(**(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}-serve.log"
        self.account = ""
        self.key = ""

    def create_account(self, prefix: str = "t") -> tuple[str, str]:
        name = f"{prefix}{uuid.uuid4().hex[:12]}"
        out = subprocess.run([*CLI, "account", "create", name, "--json", *self.common],
                             capture_output=True, text=True, env=self.env, timeout=60)
        assert out.returncode == 0, out.stderr
        key = json.loads(out.stdout.strip().splitlines()[-1])["primaryKey"]
        if not self.account:
            self.account, self.key = name, key
        return name, key

    def start(self) -> ServeProcess:
        if not self.account:
            self.create_account()
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen([*CLI, "serve", *self.common, "--host", "127.0.0.1",
                                          "--port", str(self.port), "--blob-port", str(self.blob_port)],
                                         stdout=fh, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.api}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def client(self) -> Any:
        from openams.client import AmsClient

        return AmsClient(self.api, self.account, self.key)

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run `openams <args>` against this server as its account."""
        return subprocess.run([*CLI, *args, "--server", self.api, "--account", self.account, "--key", self.key],
                              capture_output=True, text=True, env=self.env, timeout=timeout)
