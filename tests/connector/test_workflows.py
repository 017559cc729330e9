"""The Connector workflows end to end on a real `openams serve`, driven with plain httpx as a
Connector client would (base URL `http://host:port/connector`), FFmpeg as the player:

* clear: create → PUT the file to UploadUri → MarkComplete → poll Status → PlaybackEndpoint for
  every type (FFmpeg decodes the HLS URL) → Thumbnails are JPEGs anyone with the URL can fetch →
  Delete stops streaming;
* AES128: the HLS playlist's key needs the AuthorizationToken (FFmpeg decodes with `?token=`,
  is refused without);
* InputStorageEncryption AES256: the client encrypts with AES-256-CTR from the returned key and IV
  (written here with `cryptography`, independently of openams), the stored bytes are that
  ciphertext, the encode finishes and the stream decodes;
* a file that is not media ends in the Failed status with a reason;
* another account sees none of it.

All videos are submitted by one module fixture so their encodes overlap.
"""

from __future__ import annotations

import base64
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from openams.media.ffmpeg import find_ffmpeg
from tests.connector.conftest import Connector, put_upload, token_for
from tests.jobs.support import make_clip
from tests.support.serve import ServeProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("connector")]

SECONDS = 5
API = {"x-ms-version": "2.19", "Accept": "application/json", "Content-Type": "application/json"}


@dataclass
class Run:
    video: dict[str, Any]
    status: dict[str, Any]
    source: bytes
    uploaded: bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, db_url: str) -> Iterator[ServeProcess]:
    srv = ServeProcess(tmp_path_factory.mktemp("connector") / "data", database_url=db_url).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server: ServeProcess) -> Iterator[Connector]:
    with httpx.Client(base_url=server.api, timeout=60) as http:
        yield Connector(http, token_for(http, server.account, server.key))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", SECONDS).read_bytes()


def ctr_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """What a Connector client does with InputStorageEncryption AES256: AES-256-CTR, no padding,
    the IV as the initial counter block."""
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _submit(client: Connector, name: str, data: bytes, **modes: str) -> tuple[dict[str, Any], bytes]:
    video = client.create(name, **modes)
    body = data
    if modes.get("InputStorageEncryptionMode") == "AES256":
        key = base64.b64decode(video["InputStorageEncryptionSymmetricKey"])
        iv = base64.b64decode(video["InputStorageEncryptionIv"])
        body = ctr_encrypt(key, iv, data)
    r = put_upload(None, video["UploadUri"], body)
    assert r.status_code == 201, r.text
    r = client.post(f"Videos/{video['Id']}/MarkComplete")
    assert r.status_code == 200, r.text
    return video, body


def _wait(client: Connector, video_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = client.get(f"Videos/{video_id}/Status")
        assert r.status_code == 200, r.text
        status = r.json()
        if status["StatusCode"] != 1:
            return status
        time.sleep(0.5)
    raise AssertionError(f"video {video_id} still processing after {timeout}s: {status}")


@pytest.fixture(scope="module")
def runs(client: Connector, clip: bytes) -> dict[str, Run]:
    submitted = {
        "clear": _submit(client, "clear clip.mp4", clip),
        "aes128": _submit(client, "protected.mp4", clip, ContentProtectionMode="AES128"),
        "aes256": _submit(client, "encrypted.mp4", clip, InputStorageEncryptionMode="AES256"),
        "garbage": _submit(client, "notes.mp4", b"this is a shopping list, not a video\n" * 100),
    }
    return {label: Run(video, _wait(client, video["Id"]), clip, body)
            for label, (video, body) in submitted.items()}


def decode(url: str) -> tuple[int, dict[str, int], str]:
    """(exit code, frames per stream type, FFmpeg's errors) of decoding every stream of `url`."""
    proc = subprocess.run([find_ffmpeg(), "-nostdin", "-v", "error", "-i", url, "-map", "0", "-f", "framecrc", "-"],
                          capture_output=True, text=True, timeout=300)
    kinds = dict(re.findall(r"^#media_type (\d+): (\w+)$", proc.stdout, re.M))
    frames: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        if line and not line.startswith("#"):
            kind = kinds.get(line.split(",", 1)[0].strip(), "?")
            frames[kind] = frames.get(kind, 0) + 1
    return proc.returncode, frames, proc.stderr


def _playback(client: Connector, video_id: str, kind: str) -> str:
    r = client.get(f"Videos/{video_id}/PlaybackEndpoint", endpointType=kind)
    assert r.status_code == 200, r.text
    assert r.json()["Type"] == kind
    return str(r.json()["PlaybackUrl"])


def _plays(url: str) -> None:
    code, frames, errors = decode(url)
    assert code == 0 and errors.strip() == "", errors
    assert frames.get("video", 0) >= SECONDS * 25 - 2 and frames.get("audio", 0) > 0, frames


# ---- the clear workflow -----------------------------------------------------------------------------


def test_clear_video_streams_in_every_format(client: Connector, runs: dict[str, Run]) -> None:
    run = runs["clear"]
    assert run.status == {"StatusCode": 2, "Status": "Completed", "Message": "Video is ready."}
    video = client.get(f"Videos/{run.video['Id']}").json()
    assert video["UploadUri"] is None and video["Duration"] == SECONDS
    urls = {kind: _playback(client, video["Id"], kind) for kind in ("Streaming", "HLS", "DASH", "Progressive")}
    assert urls["Streaming"].endswith(".ism/manifest")
    assert urls["HLS"].endswith(".ism/manifest(format=m3u8-aapl)")
    assert urls["DASH"].endswith(".ism/manifest(format=mpd-time-csf)")
    assert urls["Progressive"].endswith(".mp4")
    assert len({u.split("/")[3] for u in urls.values()}) == 1  # one streaming locator
    _plays(urls["HLS"])
    smooth = httpx.get(urls["Streaming"], timeout=30)
    assert smooth.status_code == 200 and "<SmoothStreamingMedia" in smooth.text
    dash = httpx.get(urls["DASH"], timeout=30)
    assert dash.status_code == 200 and "<MPD" in dash.text
    mp4 = httpx.get(urls["Progressive"], headers={"Range": "bytes=0-15"}, timeout=30)
    assert mp4.status_code == 206 and mp4.content[4:8] == b"ftyp"
    # asking again reuses the locator
    assert _playback(client, video["Id"], "HLS") == urls["HLS"]


def test_thumbnails_are_jpegs_behind_time_limited_urls(client: Connector, runs: dict[str, Run]) -> None:
    vid = runs["clear"].video["Id"]
    r = client.get(f"Videos/{vid}/Thumbnails")
    assert r.status_code == 200, r.text
    thumbs = r.json()
    assert len(thumbs) >= 1
    for n, thumb in enumerate(thumbs):
        assert thumb["VideoId"] == vid and thumb["Index"] == n and thumb["Kind"] == "Poster"
        assert thumb["Height"] == 180 and thumb["Time"] == 0
        assert "se=" in thumb["Url"] and "sig=" in thumb["Url"]  # a SAS: it expires
        image = httpx.get(thumb["Url"], timeout=30)
        assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff", image.text[:200]
    assert client.get(f"Videos/{vid}/Thumbnails").json() == thumbs  # the same URL while it is valid


# ---- AES128 --------------------------------------------------------------------------------------------


def test_aes128_video_plays_only_with_its_authorization_token(client: Connector, runs: dict[str, Run]) -> None:
    run = runs["aes128"]
    assert run.status["StatusCode"] == 2, run.status
    vid, kid = run.video["Id"], run.video["ContentProtectionKeyId"]
    hls = _playback(client, vid, "HLS")
    code, frames, errors = decode(hls)
    assert code != 0 or frames.get("video", 0) == 0, (frames, errors)  # no token: no key
    r = client.get(f"Videos/{vid}/AuthorizationToken", KeyId=kid)
    assert r.status_code == 200, r.text
    token = r.json()["value"].removeprefix("Bearer=")
    _plays(f"{hls}?token={quote(token, safe='')}")
    # only HLS is encrypted: the other types are refused, never served in the clear
    assert client.get(f"Videos/{vid}/PlaybackEndpoint", endpointType="Progressive").status_code == 400
    for kind in ("Streaming", "DASH"):
        r = client.get(f"Videos/{vid}/PlaybackEndpoint", endpointType=kind)
        assert r.status_code == 501 and "HLS" in r.json()["message"], r.text


# ---- InputStorageEncryption AES256 --------------------------------------------------------------------


def test_client_encrypted_upload_is_stored_encrypted_and_encodes(client: Connector, server: ServeProcess,
                                                                   runs: dict[str, Run]) -> None:
    run = runs["aes256"]
    assert run.status["StatusCode"] == 2, run.status
    assert run.uploaded != run.source and len(run.uploaded) == len(run.source)
    # read the stored input back through the Operations API: it is the ciphertext the client sent
    headers = {**API, "Authorization": f"Bearer {client.token}"}
    http = client.http
    asset = http.get(f"/api/Assets?$filter=AlternateId eq 'connector-video:{run.video['Id']}'",
                     headers=headers).json()["value"][0]
    policy = http.post("/api/AccessPolicies", headers=headers,
                       json={"Name": "read back", "DurationInMinutes": 30, "Permissions": 1}).json()
    locator = http.post("/api/Locators", headers=headers,
                        json={"AccessPolicyId": policy["Id"], "AssetId": asset["Id"], "Type": 1}).json()
    stored = httpx.get(f"{locator['BaseUri']}/{run.video['OriginalFileName']}{locator['ContentAccessComponent']}",
                       timeout=30)
    assert stored.status_code == 200 and stored.content == run.uploaded
    assert client.get(f"Videos/{run.video['Id']}").json()["Duration"] == SECONDS
    _plays(_playback(client, run.video["Id"], "HLS"))


# ---- a file that is not media ----------------------------------------------------------------------


def test_a_file_that_is_not_media_fails_with_a_reason(client: Connector, runs: dict[str, Run]) -> None:
    run = runs["garbage"]
    assert run.status["StatusCode"] == 3 and run.status["Status"] == "Failed", run.status
    message = run.status["Message"]
    assert message.startswith("Encoding failed: not a media file") and "Delete the video" in message
    assert f" {run.video['OriginalFileName']} " in message and "0__" not in message  # the file as the user knows it
    r = client.get(f"Videos/{run.video['Id']}/PlaybackEndpoint", endpointType="HLS")
    assert r.status_code == 403 and r.json()["code"] == "VideoFailed"
    assert client.get(f"Videos/{run.video['Id']}/Thumbnails").json() == []
    assert client.delete(f"Videos/{run.video['Id']}").status_code == 204


# ---- isolation and delete ---------------------------------------------------------------------------


def test_other_accounts_and_deleted_videos(client: Connector, server: ServeProcess, runs: dict[str, Run]) -> None:
    name, key = server.create_account("other")
    vid = runs["clear"].video["Id"]
    hls = _playback(client, vid, "HLS")
    with httpx.Client(base_url=server.api, timeout=60) as http:
        other = Connector(http, token_for(http, name, key))
        for path in (f"Videos/{vid}", f"Videos/{vid}/Status", f"Videos/{vid}/Thumbnails",
                     f"Videos/{vid}/PlaybackEndpoint?endpointType=HLS"):
            assert other.get(path).status_code == 404
        assert other.delete(f"Videos/{vid}").status_code == 404
    thumb = client.get(f"Videos/{vid}/Thumbnails").json()[0]["Url"]
    assert client.delete(f"Videos/{vid}").status_code == 204
    assert client.get(f"Videos/{vid}").status_code == 404
    assert httpx.get(hls, timeout=30).status_code == 404  # the streaming locator went with it
    assert httpx.get(thumb, timeout=30).status_code in (403, 404)
