"""The blob service survives `kill -9` in the middle of an upload.

A real `openams serve` gets a committed blob and some staged blocks, then is killed while a large
Put Block body is still arriving. Restarted on the same data directory it must still list the
staged blocks as uncommitted (and commit them), must not know the half-sent block, must show no
half-written blob, and must serve the committed blob byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.servers import STORAGE_VARS, stop_process

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("OPENAMS_STORAGE_BACKEND", "local") != "local",
                       reason="crash recovery is checked on the local backend's own files (Azure and S3 keep "
                              "staged blocks server-side)"),
]

CLI = [sys.executable, "-c", "from openams.cli import main; main()"]
API_HEADERS = {"x-ms-version": "2.19", "Accept": "application/json", "DataServiceVersion": "3.0",
               "MaxDataServiceVersion": "3.0"}
BLOB_HEADERS = {"x-ms-version": "2021-08-06"}
MIB = 1024 * 1024
BIG_BLOCK = 64 * MIB
SENT_BEFORE_KILL = 12 * MIB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAMS_") or k.startswith(STORAGE_VARS)}
    env["OPENAMS_LOG_LEVEL"] = "warning"
    return env


def block_id(n: int) -> str:
    return base64.b64encode(f"blk-{n:04d}".encode()).decode()


def start_server(data_dir: Path, port: int, blob_port: int) -> subprocess.Popen[bytes]:
    log = data_dir / "serve.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen([*CLI, "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1",
                                 "--port", str(port), "--blob-port", str(blob_port)],
                                stdout=fh, stderr=subprocess.STDOUT, env=clean_env())
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"openams serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200 and \
                    httpx.get(f"http://127.0.0.1:{blob_port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"openams serve did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)



@dataclass
class Scenario:
    data_dir: Path
    blob_url: Any
    """name, query → URL of a blob through the write/read/list SAS locator."""
    container_url: str
    done_data: bytes
    staged: list[bytes]
    proc: subprocess.Popen[bytes] | None = None
    killed_spool_size: int = 0


def _slow_put_block(url: str, total: int, send: int, stop: threading.Event, sent: list[int]) -> None:
    """PUT a block declaring `total` bytes, send only `send` of them, slowly, then hang on."""
    parts = urlsplit(url)
    body_chunk = os.urandom(256 * 1024)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        head = (f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"x-ms-version: {BLOB_HEADERS['x-ms-version']}\r\nContent-Length: {total}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n")
        sock.sendall(head.encode("latin-1"))
        try:
            while sent[0] < send and not stop.is_set():
                sock.sendall(body_chunk)
                sent[0] += len(body_chunk)
                time.sleep(0.005)
            stop.wait(60)
        except OSError:
            pass  # the server died under us: that is the point


def _staging_parts(data_dir: Path) -> list[Path]:
    staging = data_dir / "blobs" / ".staging"
    return [p for p in staging.glob("*.part") if p.is_file()] if staging.exists() else []


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    data_dir = tmp_path_factory.mktemp("crash")
    name = f"crash{uuid.uuid4().hex[:10]}"
    out = subprocess.run([*CLI, "account", "create", name, "--json", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, env=clean_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    key = json.loads(out.stdout.strip().splitlines()[-1])["primaryKey"]
    port, blob_port = free_port(), free_port()
    api = f"http://127.0.0.1:{port}"
    proc = start_server(data_dir, port, blob_port)
    sc: Scenario | None = None
    try:
        r = httpx.post(f"{api}/v2/OAuth2-13", data={"grant_type": "client_credentials", "client_id": name,
                                                    "client_secret": key,
                                                    "scope": "urn:WindowsAzureMediaServices"})
        headers = {**API_HEADERS, "Authorization": f"Bearer {r.json()['access_token']}"}

        def create(set_name: str, body: dict[str, Any]) -> dict[str, Any]:
            r = httpx.post(f"{api}/api/{set_name}", json=body, headers=headers)
            assert r.status_code == 201, r.text
            return dict(r.json())

        asset = create("Assets", {"Name": "crash"})
        policy = create("AccessPolicies", {"Name": "rwdl", "DurationInMinutes": 120, "Permissions": 15})
        loc = create("Locators", {"AccessPolicyId": policy["Id"], "AssetId": asset["Id"], "Type": 1})
        base, sas = loc["BaseUri"], loc["ContentAccessComponent"]

        def blob_url(blob: str, query: str = "") -> str:
            return f"{base}/{blob}{sas}" + (f"&{query}" if query else "")

        # a blob committed in full before the crash
        done = [os.urandom(3 * MIB), os.urandom(MIB + 7)]
        for i, data in enumerate(done):
            r = httpx.put(blob_url("done.bin", f"comp=block&blockid={block_id(i)}"), content=data,
                          headers=BLOB_HEADERS)
            assert r.status_code == 201, r.text
        xml = "<BlockList>" + "".join(f"<Latest>{block_id(i)}</Latest>" for i in range(len(done)))
        xml += "</BlockList>"
        r = httpx.put(blob_url("done.bin", "comp=blocklist"), content=xml, headers=BLOB_HEADERS)
        assert r.status_code == 201, r.text
        # staged, not yet committed blocks of another blob
        staged = [os.urandom(MIB), os.urandom(2 * MIB), os.urandom(MIB // 2)]
        for i, data in enumerate(staged):
            r = httpx.put(blob_url("pending.bin", f"comp=block&blockid={block_id(i)}"), content=data,
                          headers=BLOB_HEADERS)
            assert r.status_code == 201, r.text
        sc = Scenario(data_dir, blob_url, base + sas, b"".join(done), staged)

        # a large block whose body is only partly sent when the server is killed
        stop, sent = threading.Event(), [0]
        big_url = blob_url("pending.bin", f"comp=block&blockid={block_id(3)}")
        t = threading.Thread(target=_slow_put_block, args=(big_url, BIG_BLOCK, SENT_BEFORE_KILL, stop, sent),
                             daemon=True)
        t.start()
        deadline = time.monotonic() + 30
        while True:  # wait until the server is demonstrably mid-body: part of it spooled to disk
            parts = _staging_parts(data_dir)
            size = max((p.stat().st_size for p in parts), default=0)
            if size >= 4 * MIB or (sent[0] >= SENT_BEFORE_KILL and size > 0):
                break
            assert time.monotonic() < deadline, f"the body never reached the spool (sent {sent[0]})"
            time.sleep(0.01)
        assert sent[0] < BIG_BLOCK
        sc.killed_spool_size = size
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        stop.set()
        t.join(10)

        proc = start_server(data_dir, port, blob_port)
        sc.proc = proc
        yield sc
    finally:
        stop_process(proc)


def _block_list(sc: Scenario, blob: str, kind: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    r = httpx.get(sc.blob_url(blob, f"comp=blocklist&blocklisttype={kind}"), headers=BLOB_HEADERS)
    assert r.status_code == 200, r.text

    def section(tag: str) -> list[tuple[str, int]]:
        m = re.search(f"<{tag}>(.*?)</{tag}>", r.text, re.S)
        if not m:
            return []
        return [(n, int(s)) for n, s in re.findall(r"<Name>(.*?)</Name>\s*<Size>(\d+)</Size>", m.group(1))]
    return section("CommittedBlocks"), section("UncommittedBlocks")


def _listing(sc: Scenario) -> list[tuple[str, int]]:
    r = httpx.get(sc.container_url + "&restype=container&comp=list", headers=BLOB_HEADERS)
    assert r.status_code == 200, r.text
    return [(n, int(s)) for n, s in re.findall(r"<Name>(.*?)</Name>.*?<Content-Length>(\d+)</Content-Length>",
                                                r.text, re.S)]


def test_staged_blocks_survive_the_crash_and_can_be_committed(scenario: Scenario) -> None:
    sc = scenario
    assert sc.killed_spool_size > 0  # the kill really happened mid-body

    # the committed blob is intact, byte for byte
    r = httpx.get(sc.blob_url("done.bin"), headers=BLOB_HEADERS, timeout=60)
    assert r.status_code == 200, r.text
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(sc.done_data).hexdigest()
    committed, _ = _block_list(sc, "done.bin", "committed")
    assert [s for _, s in committed] == [3 * MIB, MIB + 7]

    # no half-written blob: only the committed one is listed
    assert _listing(sc) == [("done.bin", len(sc.done_data))]
    r = httpx.head(sc.blob_url("pending.bin"), headers=BLOB_HEADERS)
    assert r.status_code == 404

    # the staged blocks are still there, uncommitted; the half-sent block is not among them
    committed, uncommitted = _block_list(sc, "pending.bin", "uncommitted")
    assert committed == []
    assert sorted(uncommitted) == sorted((block_id(i), len(d)) for i, d in enumerate(sc.staged))
    assert block_id(3) not in [n for n, _ in uncommitted]

    # and they can be committed (the client re-sends the interrupted block first)
    last = os.urandom(MIB + 1)
    r = httpx.put(sc.blob_url("pending.bin", f"comp=block&blockid={block_id(3)}"), content=last,
                  headers=BLOB_HEADERS)
    assert r.status_code == 201, r.text
    xml = "<BlockList>" + "".join(f"<Uncommitted>{block_id(i)}</Uncommitted>" for i in range(4))
    xml += "</BlockList>"
    r = httpx.put(sc.blob_url("pending.bin", "comp=blocklist"), content=xml, headers=BLOB_HEADERS)
    assert r.status_code == 201, r.text
    expected = b"".join(sc.staged) + last
    r = httpx.get(sc.blob_url("pending.bin"), headers=BLOB_HEADERS, timeout=60)
    assert r.status_code == 200 and hashlib.sha256(r.content).digest() == hashlib.sha256(expected).digest()
    assert _listing(sc) == [("done.bin", len(sc.done_data)), ("pending.bin", len(expected))]


def test_restart_removes_the_half_received_spool(scenario: Scenario) -> None:
    assert _staging_parts(scenario.data_dir) == []
