"""A real `openams serve` process for tests that need real HTTP (ffmpeg, players, SDKs).

It uses the suite's kind of database (pass the `db_url` fixture: on PostgreSQL the server gets a
throw-away database of its own on that PostgreSQL server, dropped by `stop()` — not the session's
database itself, whose queued jobs its scheduler would claim, see tests/support/database.py; on
SQLite, the file in the data directory) and the suite's storage backend (STORAGE_VARS pass through).

`ServeProcess` creates an account in a fresh data directory, starts the server on free ports,
waits until it has bound both of them (`servers.start_serve`), and stops it (kill after a grace
period) — the one place tests do this.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.support.database import create_database, drop_database
from tests.support.servers import STORAGE_VARS, start_serve

CLI = [sys.executable, "-c", "from openams.cli import main; main()"]
API_HEADERS = {"x-ms-version": "2.19", "Accept": "application/json", "DataServiceVersion": "3.0",
               "MaxDataServiceVersion": "3.0"}


def serve_env(**extra: str) -> dict[str, str]:
    """The test process's environment without OPENAMS_ settings, except the storage backend and
    the session's server key (see STORAGE_VARS)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAMS_") or k.startswith(STORAGE_VARS)}
    env.update({"OPENAMS_LOG_LEVEL": "warning", "COLUMNS": "200", **extra})
    return env


class ServeProcess:
    def __init__(self, data_dir: Path, *, env: dict[str, str] | None = None, database_url: str = "",
                 own_database: bool = True) -> None:
        self._own_database = ""
        if own_database and database_url.startswith("postgresql"):
            database_url = self._own_database = create_database("openams_serve", database_url)
        self.database_url = database_url
        self.data_dir = data_dir
        self.common = ["--data-dir", str(data_dir), *(["--database-url", database_url] if database_url else [])]
        self.port = self.blob_port = 0  # chosen by start()
        self.api = self.blob = ""
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
        """Start the server on free ports (new ones if another process takes them first)."""
        try:
            if not self.account:
                self.create_account()
            self.proc, self.port, self.blob_port = start_serve([*CLI, "serve", *self.common], self.log, self.env,
                                                               start_new_session=True)
        except BaseException:
            self.stop()  # callers only stop a server that started: do not leave its database behind
            raise
        self.api = f"http://127.0.0.1:{self.port}"
        self.blob = f"http://127.0.0.1:{self.blob_port}"
        return self

    def stop(self) -> None:
        try:
            self._stop_process()
        finally:
            if self._own_database:
                drop_database(self._own_database)
                self._own_database = ""

    def _stop_process(self) -> None:
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
