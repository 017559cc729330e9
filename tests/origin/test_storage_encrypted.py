"""StorageEncrypted assets end to end on a real server (spec §3.11): the client encrypts an MP4
with AES-256-CTR under a StorageEncryption key of its own, uploads the ciphertext through a SAS
locator and describes it (IsEncrypted, EncryptionKeyId, InitializationVector) — exactly the AMS
SDK flow. Then:

- the bytes at rest are the ciphertext (read back through a SAS locator);
- the Jobs API encodes it ("H264 Single Bitrate 720p") and the output decodes;
- without a delivery policy the streaming locator is refused (400, spec §3.8) and none is made;
- with a NoDynamicEncryption policy FFmpeg decodes every frame of HLS and DASH, and progressive
  download (whole and ranged at odd offsets) returns the clear file;
- with a DynamicEnvelopeEncryption policy the origin decrypts storage and re-encrypts AES-128 for
  HLS, and FFmpeg decodes every frame through the key service.

The encryption is done here from the spec's counter layout with `cryptography`, independently of
openams' own module."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from openams.client import WRITE, ClientError
from openams.media.ffmpeg import find_ffmpeg
from tests.origin.conftest import Published, make_clip, publish
from tests.origin.test_streams import decode
from tests.support.client import ApiClient
from tests.support.protection import authorize_key, link_delivery_policy, link_to_asset, make_key
from tests.support.serve import ServeProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("origin-storage-encrypted")]
SECONDS, FPS = 4, 25
ALL_STREAMING = 0x1 | 0x2 | 0x4 | 0x10  # Smooth, DASH, HLS, progressive download


def q(value: str) -> str:
    return quote(value, safe="")


def aes_ctr(key: bytes, iv: int, data: bytes) -> bytes:
    """Counter block = IV (8 bytes big-endian) || block number (8 bytes big-endian) from 0."""
    enc = Cipher(algorithms.AES(key), modes.CTR(iv.to_bytes(8, "big") + bytes(8))).encryptor()
    return enc.update(data) + enc.finalize()


@dataclass
class Encrypted:
    asset_id: str
    key_id: str
    clear: bytes
    cipher: bytes
    name: str = "clip.mp4"


def upload_encrypted(server: ServeProcess, api: ApiClient, clip: Path, work: Path, label: str) -> Encrypted:
    """A StorageEncrypted asset made as the AMS SDK makes one; returns what the test knows of it."""
    with server.client() as client:
        asset = client.create("Assets", {"Name": label, "Options": 1}, "creating the asset")
        key, clear_key = make_key(api, 1)
        link_to_asset(api, server.api, asset["Id"], "ContentKeys", "ContentKeys", key["Id"])
        iv = int.from_bytes(os.urandom(8), "big")
        clear = clip.read_bytes()
        cipher = aes_ctr(clear_key, iv, clear)
        enc_path = work / label / "clip.mp4"
        enc_path.parent.mkdir(parents=True)
        enc_path.write_bytes(cipher)
        policy = client.create_policy(f"upload {label}", WRITE, 60)
        locator = client.create_sas_locator(asset["Id"], policy["Id"])
        blob = f"{locator['BaseUri']}/clip.mp4{locator['ContentAccessComponent']}"
        client.upload_blob(str(enc_path), lambda query: f"{blob}&{query}" if query else blob, len(cipher),
                           "video/mp4")
        client.delete("Locators", locator["Id"], "deleting the upload locator")
        client.create("Files", {
            "Name": "clip.mp4", "ParentAssetId": asset["Id"], "IsPrimary": True, "MimeType": "video/mp4",
            "ContentFileSize": str(len(cipher)), "IsEncrypted": True, "EncryptionScheme": "StorageEncryption",
            "EncryptionVersion": "1.0", "EncryptionKeyId": key["Id"], "InitializationVector": str(iv)},
            "describing the file")
    return Encrypted(asset["Id"], key["Id"], clear, cipher)


@pytest.fixture(scope="module")
def setup(origin_server: ServeProcess, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[ApiClient, dict[str, Encrypted], Path]]:
    work = tmp_path_factory.mktemp("storage-encrypted")
    clip = make_clip(work / "source.mp4", SECONDS, "320x180", gop=2 * FPS)
    with origin_server.client() as client, httpx.Client(base_url=origin_server.api, timeout=60) as http:
        api = ApiClient(http, client.token())
        assets = {label: upload_encrypted(origin_server, api, clip, work, label) for label in ("plain", "envelope")}
        yield api, assets, work


def _frames(streams: dict[int, dict[str, float]], kind: str) -> list[float]:
    return [s["frames"] for s in streams.values() if s["type"] == kind]


def test_stored_bytes_are_the_ciphertext(origin_server: ServeProcess, setup: Any, tmp_path: Path) -> None:
    _api, assets, _work = setup
    enc = assets["plain"]
    assert enc.cipher != enc.clear and b"ftyp" not in enc.cipher[:64]
    with origin_server.client() as client:
        (path,) = client.download_files(enc.asset_id, tmp_path)
        files = client.files(enc.asset_id)
    assert Path(path).read_bytes() == enc.cipher
    assert files[0]["IsEncrypted"] is True and files[0]["EncryptionKeyId"] == enc.key_id


def test_the_encoder_decrypts_its_input(origin_server: ServeProcess, setup: Any, tmp_path: Path) -> None:
    _api, assets, _work = setup
    with origin_server.client() as client:
        job = client.submit_job(assets["plain"].asset_id, "H264 Single Bitrate 720p", "storage-encrypted-sbr")
        status = client.wait_job(job["Id"], interval=0.5, timeout=600)
        assert status.label == "Finished", status.errors
        out = client.job_outputs(job["Id"])[0]
        names = [f["Name"] for f in client.files(out["Id"]) if f["Name"].endswith(".mp4")]
        paths = client.download_files(out["Id"], tmp_path, names)
    assert paths
    for path in paths:
        proc = subprocess.run([find_ffmpeg(), "-nostdin", "-v", "error", "-i", path, "-map", "0:v:0",
                               "-f", "framecrc", "-"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
        assert len([line for line in proc.stdout.splitlines() if line and not line.startswith("#")]) == SECONDS * FPS


def test_streams_need_a_delivery_policy_then_decode_in_the_clear(origin_server: ServeProcess, setup: Any) -> None:
    api, assets, _work = setup
    enc = assets["plain"]
    # no delivery policy yet: the API refuses the streaming locator (spec §3.8) and creates nothing
    with pytest.raises(ClientError) as refused:
        publish(origin_server, "se-blocked", enc.asset_id)
    assert refused.value.status == 400 and "delivery policy" in str(refused.value), refused.value
    with origin_server.client() as client:
        locators = client.api("GET", f"Assets('{q(enc.asset_id)}')/Locators", "locators").json()["value"]
    assert [loc["Type"] for loc in locators] == [], locators
    link_delivery_policy(api, origin_server.api, enc.asset_id, "clear", policy_type=2, protocols=ALL_STREAMING)
    published: Published = publish(origin_server, "se-clear", enc.asset_id)
    for fmt in ("m3u8-aapl", "mpd-time-csf"):
        streams, errors = decode(published.url(fmt))
        assert errors.strip() == "", errors
        assert _frames(streams, "video") == [SECONDS * FPS], streams
        assert _frames(streams, "audio"), streams
    # progressive download: the clear file, whole and in ranges starting inside AES blocks
    whole = httpx.get(published.path + enc.name, timeout=30)
    assert whole.status_code == 200 and whole.content == enc.clear
    size = len(enc.clear)
    for start, end in ((0, 0), (7, 40), (17, 17 + 4096), (size // 2 + 3, size - 1)):
        r = httpx.get(published.path + enc.name, headers={"Range": f"bytes={start}-{end}"}, timeout=30)
        assert r.status_code == 206 and r.content == enc.clear[start:end + 1], (start, end)


def test_dynamic_envelope_encryption_applies_on_top(origin_server: ServeProcess, setup: Any) -> None:
    api, assets, _work = setup
    enc = assets["envelope"]
    key, _clear = make_key(api, 4)
    link_to_asset(api, origin_server.api, enc.asset_id, "ContentKeys", "ContentKeys", key["Id"])
    authorize_key(api, origin_server.api, key["Id"], "open", delivery=2,
                  restrictions=[{"Name": "open", "KeyRestrictionType": 0, "Requirements": None}])
    link_delivery_policy(api, origin_server.api, enc.asset_id, "aes", policy_type=3, protocols=0x4)
    published = publish(origin_server, "se-aes", enc.asset_id)
    playlist = httpx.get(published.url("m3u8-aapl"), timeout=30).text
    media = next(line for line in playlist.splitlines() if line.startswith("QualityLevels(") and "video" in line)
    media_text = httpx.get(published.path + published.manifest + "/" + media, timeout=30).text
    assert "#EXT-X-KEY:METHOD=AES-128" in media_text, media_text
    streams, errors = decode(published.url("m3u8-aapl"))
    assert errors.strip() == "", errors
    assert _frames(streams, "video") == [SECONDS * FPS], streams
    # the policy covers HLS only: DASH and progressive download stay blocked
    assert httpx.get(published.url("mpd-time-csf"), timeout=30).status_code == 403
    assert httpx.get(published.path + enc.name, timeout=30).status_code == 403

