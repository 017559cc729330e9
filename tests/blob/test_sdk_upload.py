"""Uploads and downloads through a SAS Locator's URL, exactly as client applications make them:
azure-storage-blob 12 (Put Blob, and parallel out-of-order Put Block + Put Block List), the legacy
2.1.0 SDK in its own venv, and a bare curl PUT without x-ms-version. Every download is compared
byte for byte (hash) and ranged reads must return the right bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import httpx
import pytest
from azure.storage.blob import BlobClient, ContainerClient

from tests.blob.conftest import READ, WRITE, Ams, Locator, Server

MiB = 1024 * 1024
BIG = 200 * MiB


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def read_range(path: Path, start: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(length)


class Calls:
    """Records (method, comp, blockid) of every request the SDK made, in completion order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, int]] = []

    def hook(self, response: Any) -> None:
        req = response.http_response.request
        q = parse_qs(urlparse(req.url).query)
        self.seen.append((req.method, q.get("comp", [""])[0], q.get("blockid", [""])[0],
                          response.http_response.status_code))


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    with open(path, "wb") as fh:
        for _ in range(BIG // (8 * MiB)):
            fh.write(os.urandom(8 * MiB))
    return path


def check_ranges(blob: BlobClient, source: Path | bytes, ranges: list[tuple[int, int]]) -> None:
    for start, length in ranges:
        want = source[start:start + length] if isinstance(source, bytes) else read_range(source, start, length)
        got = blob.download_blob(offset=start, length=length).readall()
        assert got == want, f"range {start}+{length}"


# ---- azure-storage-blob 12 ----------------------------------------------------------------------

def test_v12_put_blob_1kib(ams: Ams, asset: dict[str, Any]) -> None:
    loc = ams.locator(asset, WRITE | READ)
    calls = Calls()
    container = ContainerClient.from_container_url(loc.container_url, raw_response_hook=calls.hook)
    assert container.account_name == ams.server.account and container.container_name == loc.container
    data = os.urandom(1024)
    container.upload_blob("small file.bin", data)
    assert calls.seen == [("PUT", "", "", 201)], "a 1 KiB upload is a single Put Blob"
    blob = container.get_blob_client("small file.bin")
    got = blob.download_blob().readall()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    props = blob.get_blob_properties()
    assert props.size == 1024 and props.blob_type == "BlockBlob"
    assert props.content_settings.content_md5 == hashlib.md5(data).digest()
    check_ranges(blob, data, [(0, 1), (0, 1024), (100, 200), (1023, 1), (512, 5000)])
    # the same blob through a Locator that only reads, as a download client gets it
    reader = ams.locator(asset, READ)
    got = BlobClient.from_blob_url(reader.blob_url("small file.bin")).download_blob().readall()
    assert got == data


@pytest.mark.slow
def test_v12_200mib_parallel_blocks(ams: Ams, asset: dict[str, Any], big_file: Path) -> None:
    loc = ams.locator(asset, WRITE | READ)
    calls = Calls()
    container = ContainerClient.from_container_url(loc.container_url, raw_response_hook=calls.hook,
                                                   max_single_put_size=MiB, max_block_size=4 * MiB,
                                                   max_single_get_size=8 * MiB, max_chunk_get_size=4 * MiB)
    with open(big_file, "rb") as fh:
        container.upload_blob("movies/big.mp4", fh, length=BIG, max_concurrency=6)
    blocks = [c for c in calls.seen if c[1] == "block"]
    assert len(blocks) == BIG // (4 * MiB) and all(c[3] == 201 for c in blocks)
    assert [c for c in calls.seen if c[1] == "blocklist"] == [("PUT", "blocklist", "", 201)]
    assert not [c for c in calls.seen if c[0] == "PUT" and c[1] == ""], "no Put Blob for a block upload"
    blob = container.get_blob_client("movies/big.mp4")
    committed, uncommitted = blob.get_block_list("all")
    assert len(committed) == len(blocks) and uncommitted == []
    assert sum(b.size for b in committed) == BIG
    # download in parallel into a file and compare hashes
    out = big_file.with_name("download-v12.bin")
    with open(out, "wb") as fh:
        blob.download_blob(max_concurrency=4).readinto(fh)
    assert sha256_file(out) == sha256_file(big_file)
    out.unlink()
    block = 4 * MiB
    check_ranges(blob, big_file, [(0, 10), (block - 5, 10), (17 * block + 3, block + 7), (BIG - 100, 100),
                                  (BIG // 2, 3 * MiB)])


def test_v12_out_of_order_blocks_reassemble_in_list_order(rw_locator: Locator) -> None:
    """Blocks staged in any order (as parallel uploads arrive) are committed in block-list order."""
    from azure.storage.blob import BlobBlock

    blob = BlobClient.from_blob_url(rw_locator.blob_url("ordered.bin"))
    parts = [os.urandom(1000 + i) for i in range(8)]
    ids = [base64.b64encode(f"{i:06d}".encode()).decode() for i in range(8)]
    for i in (5, 2, 7, 0, 3, 1, 6, 4):
        blob.stage_block(ids[i], parts[i])
    blob.commit_block_list([BlobBlock(i) for i in ids])
    assert blob.download_blob().readall() == b"".join(parts)


def test_listing_pages_with_a_delimiter(rw_locator: Locator) -> None:
    """Every blob and every prefix exactly once, however the pages fall."""
    container = ContainerClient.from_container_url(rw_locator.container_url)
    names = ["a.txt", "b/1.txt", "b/2.txt", "c.txt", "d/only.txt", "e.txt", "f/x/1.txt", "f/y.txt", "g.txt"]
    for n in names:
        container.upload_blob(n, b"z")
    want = ["a.txt", "b/", "c.txt", "d/", "e.txt", "f/", "g.txt"]
    for size in (1, 2, 3, 4, 7, 100):
        pages = [[b.name for b in page] for page in container.walk_blobs(results_per_page=size).by_page()]
        # (the SDK puts a page's prefixes before its blobs)
        assert [n for page in pages for n in sorted(page)] == want, (size, pages)
        assert all(len(page) <= size for page in pages)
    nested = [[b.name for b in p] for p in container.walk_blobs("f/", results_per_page=1).by_page()]
    assert nested == [["f/x/"], ["f/y.txt"]]
    flat = [[b.name for b in p] for p in container.list_blobs(results_per_page=4).by_page()]
    assert [n for page in flat for n in page] == names and [len(p) for p in flat] == [4, 4, 1]


def test_wire_headers_clients_rely_on(rw_locator: Locator) -> None:
    """The response headers observed from the real service (spec: clients.md §1.11)."""
    blob = f"{rw_locator.base_uri}/hdr.bin"
    sas = rw_locator.sas.lstrip("?")
    block_id = base64.b64encode(b"block-1").decode()
    with httpx.Client(timeout=30) as http:
        r = http.put(f"{blob}?comp=block&blockid={quote(block_id, safe='')}&{sas}", content=b"x" * 100)
        assert r.status_code == 201
        put_block = {"x-ms-request-id", "x-ms-version", "x-ms-request-server-encrypted", "date"}
        assert put_block <= r.headers.keys()
        body = f"<?xml version='1.0' encoding='utf-8'?><BlockList><Latest>{block_id}</Latest></BlockList>"
        r = http.put(f"{blob}?comp=blocklist&{sas}", content=body.encode())
        assert r.status_code == 201
        assert {"etag", "last-modified", "content-md5", "x-ms-request-id", "x-ms-version", "date"} <= \
            r.headers.keys()
        r = http.put(f"{blob}?{sas}", content=b"y" * 100, headers={"x-ms-blob-type": "BlockBlob"})
        assert r.status_code == 201
        assert {"etag", "last-modified", "content-md5", "x-ms-request-server-encrypted"} <= r.headers.keys()
        r = http.get(f"{blob}?{sas}", headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == b"y" * 10
        assert {"content-range", "content-length", "etag", "last-modified", "x-ms-blob-type",
                "x-ms-creation-time", "accept-ranges"} <= r.headers.keys()
        assert r.headers["content-range"] == "bytes 10-19/100" and r.headers["x-ms-blob-type"] == "BlockBlob"


# ---- the legacy SDK (azure-storage-blob 2.1.0) ----------------------------------------------------

LEGACY_SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    from azure.storage.blob import BlockBlobService
    args = json.loads(sys.argv[1])
    svc = BlockBlobService(account_name=args["account"], sas_token=args["sas"].lstrip("?"),
                           custom_domain=args["endpoint"])
    svc.MAX_SINGLE_PUT_SIZE = 1024 * 1024
    svc.MAX_BLOCK_SIZE = 4 * 1024 * 1024
    out = {}
    small = bytes(range(256)) * 4
    r = svc.create_blob_from_bytes(args["container"], "legacy-small.bin", small)
    out["small_etag"] = r.etag
    out["small_last_modified"] = r.last_modified.isoformat()
    back = svc.get_blob_to_bytes(args["container"], "legacy-small.bin").content
    out["small"] = hashlib.sha256(back).hexdigest()
    out["small_range"] = svc.get_blob_to_bytes(args["container"], "legacy-small.bin", start_range=10,
                                               end_range=19).content.hex()
    svc.create_blob_from_path(args["container"], "legacy-big.bin", args["big"], max_connections=4)
    blocks = svc.get_block_list(args["container"], "legacy-big.bin", block_list_type="all")
    out["committed"] = len(blocks.committed_blocks)
    out["uncommitted"] = len(blocks.uncommitted_blocks)
    svc.get_blob_to_path(args["container"], "legacy-big.bin", args["download"], max_connections=4)
    ranges = []
    for start, end in args["ranges"]:
        ranges.append(svc.get_blob_to_bytes(args["container"], "legacy-big.bin", start_range=start,
                                            end_range=end).content.hex())
    out["ranges"] = ranges
    out["names"] = sorted(b.name for b in svc.list_blobs(args["container"]))
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_legacy_sdk_upload(ams: Ams, asset: dict[str, Any], openams_server: Server, legacy_python: Path,
                           big_file: Path, tmp_path: Path) -> None:
    loc = ams.locator(asset, READ | WRITE | 8)
    script = tmp_path / "legacy.py"
    script.write_text(LEGACY_SCRIPT)
    download = tmp_path / "legacy-download.bin"
    ranges = [(0, 9), (4 * MiB - 3, 4 * MiB + 3), (BIG - 16, BIG - 1)]
    args = {"account": openams_server.account, "sas": loc.sas, "endpoint": openams_server.account_url,
            "container": loc.container, "big": str(big_file), "download": str(download), "ranges": ranges}
    run = subprocess.run([str(legacy_python), str(script), json.dumps(args)], capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    small = bytes(range(256)) * 4
    assert out["small"] == hashlib.sha256(small).hexdigest()
    assert out["small_etag"] and out["small_last_modified"]
    assert bytes.fromhex(out["small_range"]) == small[10:20]
    assert out["committed"] == BIG // (4 * MiB) and out["uncommitted"] == 0
    assert sha256_file(download) == sha256_file(big_file)
    for (start, end), got in zip(ranges, out["ranges"], strict=True):
        assert bytes.fromhex(got) == read_range(big_file, start, end - start + 1)
    assert out["names"] == ["legacy-big.bin", "legacy-small.bin"]


# ---- a hand-written client: curl, no x-ms-version, no Authorization ------------------------------

def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", "--max-time", "120", *args], capture_output=True, timeout=180)


def test_curl_put_without_version(ams: Ams, asset: dict[str, Any], tmp_path: Path) -> None:
    loc = ams.locator(asset, READ | WRITE)
    data = os.urandom(3 * MiB + 17)
    src = tmp_path / "clip.mp4"
    src.write_bytes(data)
    url = loc.blob_url("clip.mp4")
    put = curl("-X", "PUT", "-H", "x-ms-blob-type: BlockBlob", "-H", "Content-Type: video/mp4",
               "--data-binary", f"@{src}", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}", url)
    assert put.returncode == 0, put.stderr
    text = put.stdout.decode()
    assert text.endswith("201"), text
    headers = {line.split(":", 1)[0].lower() for line in text.splitlines() if ":" in line}
    assert {"etag", "last-modified", "content-md5", "x-ms-request-id", "x-ms-version"} <= headers
    dst = tmp_path / "back.mp4"
    get = curl("-o", str(dst), "-w", "%{http_code}", url)
    assert get.stdout == b"200" and sha256_file(dst) == hashlib.sha256(data).hexdigest()
    part = curl("-r", "1000-1999", "-w", "\n%{http_code}", url)
    body, _, code = part.stdout.rpartition(b"\n")
    assert code == b"206" and body == data[1000:2000]
    # curl's own upload mode (-T) sends no Content-Type at all
    put2 = curl("-T", str(src), "-H", "x-ms-blob-type: BlockBlob", "-o", "/dev/null", "-w", "%{http_code}",
                loc.blob_url("clip2.mp4"))
    assert put2.stdout == b"201", put2.stderr
    props = BlobClient.from_blob_url(loc.blob_url("clip2.mp4")).get_blob_properties()
    assert props.size == len(data)


# ---- Shared Key (the account key), as some clients list and download --------------------------------

def test_v12_shared_key_list_and_download(ams: Ams, asset: dict[str, Any], openams_server: Server) -> None:
    from azure.storage.blob import BlobServiceClient

    loc = ams.locator(asset, WRITE)
    data = os.urandom(5000)
    BlobClient.from_blob_url(loc.blob_url("dir/name with space+ü.bin")).upload_blob(data)
    for key in (openams_server.key, openams_server.secondary_key):
        svc = BlobServiceClient(openams_server.account_url,
                                credential={"account_name": openams_server.account, "account_key": key})
        container = svc.get_container_client(loc.container)
        assert [b.name for b in container.list_blobs()] == ["dir/name with space+ü.bin"]
        blob = container.get_blob_client("dir/name with space+ü.bin")
        assert blob.download_blob().readall() == data
        assert blob.download_blob(offset=10, length=20).readall() == data[10:30]
    svc = BlobServiceClient(openams_server.account_url,
                            credential={"account_name": openams_server.account,
                                        "account_key": base64.b64encode(b"x" * 32).decode()})
    with pytest.raises(Exception) as err:
        list(svc.get_container_client(loc.container).list_blobs())
    assert getattr(err.value, "error_code", None) == "AuthenticationFailed"


LEGACY_SHARED_KEY = textwrap.dedent("""
    import json, sys
    from azure.storage.blob import BlockBlobService
    args = json.loads(sys.argv[1])
    svc = BlockBlobService(account_name=args["account"], account_key=args["key"],
                           custom_domain=args["endpoint"])
    out = {"names": [b.name for b in svc.list_blobs(args["container"])]}
    out["data"] = svc.get_blob_to_bytes(args["container"], args["name"]).content.hex()
    out["size"] = svc.get_blob_properties(args["container"], args["name"]).properties.content_length
    svc.create_blob_from_bytes(args["container"], "by-legacy.bin", b"legacy")
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_legacy_sdk_shared_key(ams: Ams, asset: dict[str, Any], openams_server: Server, legacy_python: Path,
                               tmp_path: Path) -> None:
    loc = ams.locator(asset, WRITE | READ)
    data = os.urandom(3000)
    BlobClient.from_blob_url(loc.blob_url("a b.bin")).upload_blob(data)
    script = tmp_path / "legacy_sk.py"
    script.write_text(LEGACY_SHARED_KEY)
    args = {"account": openams_server.account, "key": openams_server.key,
            "endpoint": openams_server.account_url, "container": loc.container, "name": "a b.bin"}
    run = subprocess.run([str(legacy_python), str(script), json.dumps(args)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out == {"names": ["a b.bin"], "data": data.hex(), "size": 3000}
    assert BlobClient.from_blob_url(loc.blob_url("by-legacy.bin")).download_blob().readall() == b"legacy"
