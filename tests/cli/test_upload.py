"""`openams upload` against a real `openams serve`: the file arrives intact through the public API,
becomes one primary AssetFile, and the temporary locator and policy are gone afterwards; failures
are one clear line and exit code 1."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support.servers import STORAGE_VARS, free_port, start_serve

CLI = [sys.executable, "-c", "from openams.cli import main; main()"]
API_HEADERS = {"x-ms-version": "2.19", "Accept": "application/json", "DataServiceVersion": "3.0",
               "MaxDataServiceVersion": "3.0"}


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAMS_") or k.startswith(STORAGE_VARS)}
    env["OPENAMS_LOG_LEVEL"] = "warning"
    env["COLUMNS"] = "200"
    return env


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=clean_env(), timeout=timeout)


@dataclass
class Server:
    api: str
    blob: str
    account: str
    key: str
    data_dir: Path

    def headers(self) -> dict[str, str]:
        r = httpx.post(f"{self.api}/v2/OAuth2-13", data={
            "grant_type": "client_credentials", "client_id": self.account, "client_secret": self.key,
            "scope": "urn:WindowsAzureMediaServices"})
        assert r.status_code == 200, r.text
        return {**API_HEADERS, "Authorization": f"Bearer {r.json()['access_token']}"}

    def get(self, path: str) -> Any:
        r = httpx.get(f"{self.api}/api/{path}", headers=self.headers())
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, set_name: str, body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(f"{self.api}/api/{set_name}", json=body, headers=self.headers())
        assert r.status_code == 201, r.text
        return dict(r.json())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("upload-server")
    name = f"up{uuid.uuid4().hex[:12]}"
    out = run_cli("account", "create", name, "--json", "--data-dir", str(data_dir))
    assert out.returncode == 0, out.stderr
    key = json.loads(out.stdout.strip().splitlines()[-1])["primaryKey"]
    proc, port, blob_port = start_serve([*CLI, "serve", "--data-dir", str(data_dir)], data_dir / "serve.log",
                                        clean_env())
    try:
        yield Server(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{blob_port}", name, key, data_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def download(server: Server, asset_id: str, blob: str) -> bytes:
    policy = server.post("AccessPolicies", {"Name": "read", "DurationInMinutes": 30, "Permissions": 1})
    loc = server.post("Locators", {"AccessPolicyId": policy["Id"], "AssetId": asset_id, "Type": 1})
    r = httpx.get(f"{loc['BaseUri']}/{quote(blob)}{loc['ContentAccessComponent']}", timeout=60)
    assert r.status_code == 200, r.text
    return r.content


def test_upload_12_mib_then_download_the_same_bytes(server: Server, tmp_path: Path) -> None:
    data = os.urandom(12 * 1024 * 1024 + 12345)  # three full 4 MiB blocks and a short one
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    # no --key: the key is read from the server's data directory, as `openams account keys` does
    out = run_cli("upload", str(path), "--server", server.api, "--account", server.account,
                  "--data-dir", str(server.data_dir), "--asset", "My clip")
    assert out.returncode == 0, out.stderr
    asset_id = out.stdout.strip()
    assert asset_id.startswith("nb:cid:UUID:") and "\n" not in asset_id
    assert "clip.mp4" in out.stderr and "MB/s" in out.stderr
    q = quote(asset_id, safe="")
    asset = server.get(f"Assets('{q}')")
    assert asset["Name"] == "My clip"
    files = server.get(f"Assets('{q}')/Files")["value"]
    assert len(files) == 1
    f = files[0]
    assert f["Name"] == "clip.mp4" and f["IsPrimary"] is True and f["MimeType"] == "video/mp4"
    assert int(f["ContentFileSize"]) == len(data)
    assert f["ContentChecksum"] == hashlib.md5(data).hexdigest()
    # the upload locator and policy were deleted
    assert server.get(f"Assets('{q}')/Locators")["value"] == []
    assert not [p for p in server.get("AccessPolicies")["value"] if p["Name"].startswith("Upload-")]
    got = download(server, asset_id, "clip.mp4")
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


def test_small_file_with_an_awkward_name_and_explicit_key(server: Server, tmp_path: Path) -> None:
    data = b"small file body"
    path = tmp_path / "my clip (final).v2.mp4"
    path.write_bytes(data)
    out = run_cli("upload", str(path), "--server", server.api, "--account", server.account,
                  "--key", server.key)
    assert out.returncode == 0, out.stderr
    asset_id = out.stdout.strip()
    q = quote(asset_id, safe="")
    assert server.get(f"Assets('{q}')")["Name"] == "my clip (final).v2.mp4"
    files = server.get(f"Assets('{q}')/Files")["value"]
    assert [(f["Name"], f["IsPrimary"], f["ContentFileSize"]) for f in files] == \
        [("my clip _final__v2.mp4", True, str(len(data)))]
    assert download(server, asset_id, "my clip _final__v2.mp4") == data


def test_empty_file(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    out = run_cli("upload", str(path), "--server", server.api, "--account", server.account,
                  "--key", server.key)
    assert out.returncode == 0, out.stderr
    files = server.get(f"Assets('{quote(out.stdout.strip(), safe='')}')/Files")["value"]
    assert [(f["Name"], f["ContentFileSize"]) for f in files] == [("empty.mp4", "0")]


def _assert_clean_failure(out: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert out.stdout == ""
    assert "Traceback" not in out.stderr
    text = " ".join(out.stderr.split())
    for fragment in fragments:
        assert fragment in text, out.stderr


def test_missing_file(tmp_path: Path) -> None:
    out = run_cli("upload", str(tmp_path / "nope.mp4"), "--key", "x")
    _assert_clean_failure(out, "error:", "no such file")
    out = run_cli("upload", str(tmp_path), "--key", "x")
    _assert_clean_failure(out, "not a regular file")


def test_server_down(tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    path.write_bytes(b"x")
    out = run_cli("upload", str(path), "--server", f"http://127.0.0.1:{free_port()}", "--key", "x")
    _assert_clean_failure(out, "cannot reach the server")


def test_wrong_key_shows_the_servers_message(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    path.write_bytes(b"x")
    out = run_cli("upload", str(path), "--server", server.api, "--account", server.account,
                  "--key", "d3Jvbmc=")
    _assert_clean_failure(out, "401", "Unknown client id or wrong secret")


def test_unknown_account_in_the_local_data_dir(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    path.write_bytes(b"x")
    out = run_cli("upload", str(path), "--server", server.api, "--account", "nosuchaccount",
                  "--data-dir", str(server.data_dir))
    _assert_clean_failure(out, "nosuchaccount")
    out = run_cli("upload", str(path), "--server", server.api, "--account", "nosuchaccount",
                  "--data-dir", str(tmp_path / "no-data-here"))
    _assert_clean_failure(out, "pass --key")
    assert not (tmp_path / "no-data-here").exists()


def test_api_error_message_reaches_the_user(server: Server, tmp_path: Path) -> None:
    """A 4xx from the Operations API is reported with the server's own text (here: an asset name
    longer than the 512 characters AMS allows, if the server enforces it)."""
    path = tmp_path / "a.mp4"
    path.write_bytes(b"x")
    out = run_cli("upload", str(path), "--server", server.api, "--account", server.account,
                  "--key", server.key, "--asset", "n" * 5000)
    if out.returncode == 0:
        pytest.skip("the server accepts long asset names")
    _assert_clean_failure(out, "creating the asset failed (400)")
