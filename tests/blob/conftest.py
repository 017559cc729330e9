"""Fixtures for the blob service tests: a real `openams serve` subprocess (the storage SDKs need
real HTTP), an Operations API client that makes assets, access policies and SAS locators, the
legacy 2.1.0 storage SDK in its own venv, and Azurite as the reference blob service.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import service_missing
from tests.support.database import private_database
from tests.support.servers import free_port, start_serve, stop_process

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
LEGACY_VENV = TOOLS / "legacy-venv"
LEGACY_SDK = "azure-storage-blob==2.1.0"
AZURITE_MAIN = TOOLS / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
# Azurite's published development account (the same for every Azurite installation).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

API_HEADERS = {"x-ms-version": "2.19", "Accept": "application/json", "Content-Type": "application/json",
               "DataServiceVersion": "3.0", "MaxDataServiceVersion": "3.0"}

READ, WRITE, DELETE, LIST = 1, 2, 4, 8


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s:\n{log.read_text()[-4000:]}")



@dataclass
class Server:
    """A running `openams serve` and one of its accounts."""

    api_base: str
    blob_base: str
    account: str
    key: str
    secondary_key: str
    data_dir: Path
    log: Path
    cli: list[str] = field(default_factory=list)
    """The `openams` command."""
    cli_options: list[str] = field(default_factory=list)
    """The options that reach this server's data directory and database."""
    env: dict[str, str] = field(default_factory=dict)
    _token: str = ""

    @property
    def account_url(self) -> str:
        """The storage account URL the v12 SDK takes (path-style: /<account>)."""
        return f"{self.blob_base}/{self.account}"

    def token(self) -> str:
        if not self._token:
            r = httpx.post(f"{self.api_base}/v2/OAuth2-13",
                           data={"grant_type": "client_credentials", "client_id": self.account,
                                 "client_secret": self.key, "scope": "urn:WindowsAzureMediaServices"})
            assert r.status_code == 200, r.text
            self._token = r.json()["access_token"]
        return self._token

    def new_account(self, prefix: str = "blob") -> Server:
        """Another account on the same server (made with `openams account create`, as an operator would)."""
        name = f"{prefix}{uuid.uuid4().hex[:12]}"
        out = subprocess.run([*self.cli, "account", "create", name, "--json", *self.cli_options],
                             capture_output=True, text=True, env=self.env, timeout=120)
        assert out.returncode == 0, out.stderr
        keys = json.loads(out.stdout.strip().splitlines()[-1])
        return Server(self.api_base, self.blob_base, name, keys["primaryKey"], keys["secondaryKey"],
                      self.data_dir, self.log, self.cli, self.cli_options, self.env)


@pytest.fixture(scope="session")
def openams_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`openams serve` on free ports with a temporary data directory (and a PostgreSQL database of
    its own when OPENAMS_TEST_DATABASE_URL selects PostgreSQL: not the session's `db_url`, whose
    queued jobs this server's scheduler would otherwise claim — see tests/support/database.py)."""
    with private_database("openams_blob") as db_url:
        yield from _serve(tmp_path_factory, db_url)


def _serve(tmp_path_factory: pytest.TempPathFactory, db_url: str) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("openams-blob")
    found = shutil.which("openams", path=str(Path(sys.executable).parent)) or shutil.which("openams")
    cli = [found] if found else [sys.executable, "-c", "from openams.cli import main; main()"]
    env = {**os.environ, "OPENAMS_CREATE_DEV_ACCOUNT": "0", "OPENAMS_LOG_LEVEL": "warning"}
    for var in ("OPENAMS_CONFIG", "OPENAMS_DATABASE_URL", "OPENAMS_PUBLIC_URL", "OPENAMS_BLOB_PUBLIC_URL"):
        env.pop(var, None)
    common = ["--data-dir", str(data_dir), *(["--database-url", db_url] if db_url else [])]
    log = data_dir / "serve.log"
    # not free_port() + wait for /health: another server may take the port first and answer for us
    proc, port, blob_port = start_serve([*cli, "serve", *common], log, env)
    seed = Server(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{blob_port}", "", "", "", data_dir, log,
                  cli, common, env)
    try:
        yield seed.new_account()
    finally:
        stop_process(proc)


@dataclass
class Locator:
    id: str
    asset_id: str
    base_uri: str
    sas: str
    """The ContentAccessComponent: `?sv=…&sr=c&si=…&sig=…&se=…`."""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def container_url(self) -> str:
        return self.base_uri + self.sas

    @property
    def container(self) -> str:
        return self.base_uri.rstrip("/").rsplit("/", 1)[1]

    def blob_url(self, name: str) -> str:
        return f"{self.base_uri}/{quote(name)}{self.sas}"


class Ams:
    """Just enough of the Operations API (JSON light) to make assets, policies and SAS locators."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = httpx.Client(base_url=f"{server.api_base}/api/", timeout=30.0)

    def _headers(self) -> dict[str, str]:
        return {**API_HEADERS, "Authorization": f"Bearer {self.server.token()}"}

    def create(self, set_name: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(set_name, json=body, headers=self._headers())
        assert r.status_code == 201, r.text
        return r.json()

    def delete(self, set_name: str, key: str) -> None:
        r = self.http.delete(f"{set_name}('{quote(key, safe='')}')", headers=self._headers())
        assert r.status_code == 204, r.text

    def update(self, set_name: str, key: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.request("MERGE", f"{set_name}('{quote(key, safe='')}')", json=body,
                                 headers=self._headers())

    def asset(self, name: str = "blob-test") -> dict[str, Any]:
        return self.create("Assets", {"Name": name, "Options": "0"})

    def policy(self, permissions: int, minutes: float = 60.0) -> dict[str, Any]:
        return self.create("AccessPolicies", {"Name": f"p{permissions}", "DurationInMinutes": minutes,
                                              "Permissions": permissions})

    def locator(self, asset: dict[str, Any], permissions: int, minutes: float = 60.0,
                start: str | None = None) -> Locator:
        policy = self.policy(permissions, minutes)
        body: dict[str, Any] = {"AccessPolicyId": policy["Id"], "AssetId": asset["Id"], "Type": 1}
        if start is not None:
            body["StartTime"] = start
        loc = self.create("Locators", body)
        assert loc["Path"] == loc["BaseUri"] + loc["ContentAccessComponent"]
        return Locator(loc["Id"], asset["Id"], loc["BaseUri"], loc["ContentAccessComponent"], loc)

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="session")
def ams(openams_server: Server) -> Iterator[Ams]:
    client = Ams(openams_server)
    yield client
    client.close()


ALL = READ | WRITE | DELETE | LIST


@pytest.fixture
def asset(ams: Ams) -> dict[str, Any]:
    return ams.asset()


@pytest.fixture
def rw_locator(ams: Ams, asset: dict[str, Any]) -> Locator:
    """A SAS locator on a fresh asset with read, write, delete and list permissions."""
    return ams.locator(asset, ALL)


# ---- the legacy (2.1.0) storage SDK, in its own venv ---------------------------------------------

@pytest.fixture(scope="session")
def legacy_python() -> Path:
    """The python of a venv with azure-storage-blob 2.1.0 (created on first use from PyPI)."""
    py = LEGACY_VENV / "bin" / "python"
    probe = [str(py), "-c", "import azure.storage.blob as b; assert b.__version__ == '2.1.0'"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    TOOLS.mkdir(exist_ok=True)
    with open(TOOLS / "legacy-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers may all get here at once
        if not py.exists() or subprocess.run(probe, capture_output=True).returncode != 0:
            _make_legacy_venv(py, probe)
    return py


def _make_legacy_venv(py: Path, probe: list[str]) -> None:
    try:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(LEGACY_VENV)], check=True, capture_output=True,
                           timeout=300)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", LEGACY_SDK],
                       check=True, capture_output=True, timeout=600)
        subprocess.run(probe, check=True, capture_output=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        service_missing(f"cannot set up the legacy SDK venv ({LEGACY_SDK}) at {LEGACY_VENV}: {exc} "
                        f"{detail.decode(errors='replace')[-2000:]}")


# ---- Azurite, the reference blob service ---------------------------------------------------------

@dataclass
class Azurite:
    blob_base: str
    account: str = AZURITE_ACCOUNT
    key: str = AZURITE_KEY

    @property
    def account_url(self) -> str:
        return f"{self.blob_base}/{self.account}"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    node = shutil.which("node")
    if node is None or not AZURITE_MAIN.exists():
        service_missing(f"Azurite is not installed ({AZURITE_MAIN}); run scripts/services.sh or "
                        "`npm install --prefix .tools azurite@3.35.0`")
    location = tmp_path_factory.mktemp("azurite")
    port = free_port()
    log = location / "azurite.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(node), str(AZURITE_MAIN), "--disableTelemetry", "--skipApiVersionCheck",
                                 "--loose", "--blobHost", "127.0.0.1", "--blobPort", str(port),
                                 "--location", str(location)], stdout=fh, stderr=subprocess.STDOUT)
    try:
        try:
            wait_http(f"http://127.0.0.1:{port}/", proc, log)
        except RuntimeError as exc:
            service_missing(f"Azurite did not start: {exc}")
        yield Azurite(f"http://127.0.0.1:{port}")
    finally:
        stop_process(proc)
