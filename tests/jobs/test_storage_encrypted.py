"""Encoding a StorageEncrypted input (spec §3.11) with the in-process runner: the task decrypts the
AES-256-CTR ciphertext while copying it to scratch, so the encode works and its outputs are
clear media; a file whose key or IV is gone ends the task in Error saying which and why.

The ciphertext is made here, client-side, from the spec's counter layout with `cryptography`
(not with openams' own module), and written straight into the asset's container."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from openams.db.store import Store
from openams.entities.assets import container_name
from openams.media.ffmpeg import find_ffmpeg
from openams.model import MODEL
from openams.storage.base import ContentSettings
from tests.jobs.support import make_clip, submit, task, wait_final
from tests.support.client import ApiClient, key_url
from tests.support.protection import JSON, make_key

PRESET = "H264 Single Bitrate 720p"
FINISHED, ERROR = 3, 4


def q(key: str) -> str:
    return quote(key, safe="")


def aes_ctr(key: bytes, iv: int, data: bytes) -> bytes:
    """AMS storage encryption from the client's side: counter block = IV (8 bytes BE) || block
    number (8 bytes BE) from 0 — which is `cryptography`'s CTR with that initial block."""
    enc = Cipher(algorithms.AES(key), modes.CTR(iv.to_bytes(8, "big") + bytes(8))).encryptor()
    return enc.update(data) + enc.finalize()


@pytest.fixture
def scheduler(runtime):  # type: ignore[no-untyped-def]
    runtime.start_jobs()
    yield runtime.scheduler
    runtime.stop_jobs()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("enc-clip") / "clip.mp4", 2)


def encrypted_input(runtime: Any, api: ApiClient, clip: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(asset, key, file): a StorageEncrypted asset holding the clip as ciphertext."""
    asset = api.create("Assets", "Asset", {"Name": "encrypted-src", "Options": 1})
    key, clear_key = make_key(api, 1)
    r = api.request("POST", f"Assets('{q(asset['Id'])}')/$links/ContentKeys",
                    json.dumps({"uri": key_url("ContentKeys", key["Id"])}).encode(), **JSON)
    assert r.status_code == 204, r.text
    iv = int.from_bytes(os.urandom(8), "big")
    cipher = aes_ctr(clear_key, iv, clip.read_bytes())
    with runtime.storage.spool() as spool:
        spool.write(cipher)
        runtime.storage.put_blob(asset["StorageAccountName"], container_name(asset["Id"]), "clip.mp4", spool,
                                 ContentSettings(content_type="video/mp4"), {})
    f = api.create("Files", "AssetFile", {
        "Name": "clip.mp4", "ParentAssetId": asset["Id"], "IsPrimary": True, "ContentFileSize": str(len(cipher)),
        "MimeType": "video/mp4", "IsEncrypted": True, "EncryptionScheme": "StorageEncryption",
        "EncryptionVersion": "1.0", "EncryptionKeyId": key["Id"], "InitializationVector": str(iv)})
    return asset, key, f


def decodes(path: Path) -> bool:
    proc = subprocess.run([find_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode == 0 and not proc.stderr.strip()


def test_a_storage_encrypted_input_encodes_to_clear_outputs(runtime, api: ApiClient, scheduler,  # type: ignore[no-untyped-def]
                                                            clip: Path, tmp_path: Path) -> None:
    asset, _key, _f = encrypted_input(runtime, api, clip)
    stored = b"".join(runtime.storage.read(asset["StorageAccountName"], container_name(asset["Id"]), "clip.mp4",
                                           0, clip.stat().st_size - 1))
    assert stored != clip.read_bytes() and b"ftyp" not in stored[:64]  # ciphertext at rest
    done = wait_final(api, submit(api, asset, PRESET, name="enc")["Id"])
    assert done["State"] == FINISHED, task(api, done["Id"])
    out = api.list(f"Jobs('{q(done['Id'])}')/OutputMediaAssets")[0]
    files = api.list(f"Assets('{q(out['Id'])}')/Files")
    mp4s = [f for f in files if f["Name"].endswith(".mp4")]
    assert mp4s and all(f["IsEncrypted"] is False for f in files), files
    for f in mp4s:
        data = b"".join(runtime.storage.read(out["StorageAccountName"], container_name(out["Id"]), f["Name"],
                                             0, int(f["ContentFileSize"]) - 1))
        assert data[4:8] == b"ftyp"
        (tmp_path / f["Name"]).write_bytes(data)
        assert decodes(tmp_path / f["Name"])


def test_an_input_whose_key_is_gone_ends_in_error(runtime, api: ApiClient, scheduler,  # type: ignore[no-untyped-def]
                                                  clip: Path) -> None:
    asset, key, _f = encrypted_input(runtime, api, clip)
    # unlinking the asset's only link to its key deletes the key (as AMS documents)
    assert api.delete(f"Assets('{q(asset['Id'])}')/$links/ContentKeys('{q(key['Id'])}')").status_code == 204
    done = wait_final(api, submit(api, asset, PRESET, name="no-key")["Id"])
    t = task(api, done["Id"])
    assert done["State"] == ERROR and t["ErrorDetails"][0]["Code"] == "StorageKeyMissing", t
    message = t["ErrorDetails"][0]["Message"]
    assert "clip.mp4" in message and "no StorageEncryption content key linked" in message, message


def test_an_input_without_its_iv_ends_in_error(runtime, api: ApiClient, scheduler, account,  # type: ignore[no-untyped-def]
                                               clip: Path) -> None:
    asset, _key, f = encrypted_input(runtime, api, clip)
    # the API refuses to drop the IV of an encrypted file; a row written before that rule can lack it
    with runtime.engine.begin() as conn:
        files = MODEL.entity_set("Files")
        assert files is not None
        Store(conn, account.id, MODEL).update(files, f["Id"], {"InitializationVector": None})
    done = wait_final(api, submit(api, asset, PRESET, name="no-iv")["Id"])
    t = task(api, done["Id"])
    assert done["State"] == ERROR and t["ErrorDetails"][0]["Code"] == "StorageEncryptionInvalid", t
    assert "InitializationVector" in t["ErrorDetails"][0]["Message"]
