"""Fixtures for the storage conformance suite: one `backend` fixture parametrized over the local,
Azure and S3 backends.

Azure runs against Azurite (installed by `scripts/services.sh` into `.tools/`), S3 against a moto
server (`moto_server`, installed into the venv). Each is started on a free port for the session
and stopped at the end. To test against services you run yourself (or real Azure / S3), set
`OPENAMS_AZURE_CONNECTION_STRING`, or `OPENAMS_S3_ENDPOINT_URL` + `OPENAMS_S3_BUCKET` (+ keys);
the suite then uses them instead of starting its own. A service that cannot be started skips its
tests — or fails them when `OPENAMS_REQUIRE_SERVICES=1`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openams.config import load
from openams.storage import open_backend
from tests.conftest import service_missing
from tests.support.servers import stop_process

ROOT = Path(__file__).resolve().parents[2]
AZURITE_MAIN = ROOT / ".tools" / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
# Azurite's published development account (the same in every Azurite installation)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
BACKENDS = ["local", "azure", "s3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    """Wait until the process accepts TCP connections (its HTTP stack is up once it does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"no answer on port {port} within {timeout}s: {tail}")



def _start(cmd: list[str], port: int, log: Path, what: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_port(port, proc, log)
    except RuntimeError as exc:
        stop_process(proc)
        service_missing(f"{what} did not start: {exc}")
    return proc


@pytest.fixture(scope="session")
def azure_connection_string(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A connection string for an Azure Blob service: the configured one, or a private Azurite."""
    configured = os.environ.get("OPENAMS_AZURE_CONNECTION_STRING", "")
    if configured:
        yield configured
        return
    node = shutil.which("node")
    if node is None or not AZURITE_MAIN.exists():
        what = "node is not on PATH" if node is None else f"Azurite is not installed ({AZURITE_MAIN})"
        service_missing(f"{what}; run scripts/services.sh")
    assert node is not None
    location = tmp_path_factory.mktemp("azurite")
    port = _free_port()
    proc = _start([node, str(AZURITE_MAIN), "--disableTelemetry", "--skipApiVersionCheck", "--silent",
                   "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location)],
                  port, location / "azurite.log", "Azurite")
    try:
        yield (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
               f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};")
    finally:
        stop_process(proc)


@dataclass
class S3Service:
    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str
    region: str


@pytest.fixture(scope="session")
def s3_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Service]:
    """An S3 endpoint and bucket: the configured ones, or a private moto server."""
    configured = os.environ.get("OPENAMS_S3_ENDPOINT_URL", "")
    if configured and os.environ.get("OPENAMS_S3_BUCKET"):
        env = os.environ
        yield S3Service(configured, env["OPENAMS_S3_BUCKET"], env.get("OPENAMS_S3_ACCESS_KEY", ""),
                        env.get("OPENAMS_S3_SECRET_KEY", ""), env.get("OPENAMS_S3_REGION", "us-east-1"))
        return
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists():
        found = shutil.which("moto_server")
        if found is None:
            service_missing("moto_server is not installed (run scripts/services.sh, or "
                            "pip install 'moto[server]')")
        exe = Path(str(found))
    location = tmp_path_factory.mktemp("moto")
    port = _free_port()
    proc = _start([str(exe), "-H", "127.0.0.1", "-p", str(port)], port, location / "moto.log", "moto_server")
    try:
        yield S3Service(f"http://127.0.0.1:{port}", f"openams-test-{uuid.uuid4().hex[:8]}", "testing",
                        "testing", "us-east-1")
    finally:
        stop_process(proc)


def backend_settings(kind: str, data_dir: Path, request: pytest.FixtureRequest) -> Any:
    """Settings selecting backend `kind`, starting the service it needs on first use."""
    if kind == "azure":
        return load(data_dir=data_dir, storage_backend="azure",
                    azure_connection_string=request.getfixturevalue("azure_connection_string"))
    if kind == "s3":
        s3: S3Service = request.getfixturevalue("s3_service")
        return load(data_dir=data_dir, storage_backend="s3", s3_endpoint_url=s3.endpoint_url,
                    s3_bucket=s3.bucket, s3_region=s3.region, s3_access_key=s3.access_key,
                    s3_secret_key=s3.secret_key)
    return load(data_dir=data_dir, storage_backend="local")


@pytest.fixture(params=BACKENDS)
def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """A factory of backend instances over the same storage (a new instance = a restart)."""
    settings = backend_settings(request.param, tmp_path / "data", request)
    return lambda: open_backend(settings)


@pytest.fixture
def backend(make_backend: Callable[[], Any]) -> Any:
    return make_backend()


@pytest.fixture
def names() -> tuple[str, str]:
    """A fresh (storage account, container) pair, so tests sharing a service never meet."""
    return f"t{uuid.uuid4().hex[:10]}", f"c-{uuid.uuid4().hex[:12]}"
