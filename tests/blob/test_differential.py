"""One azure-storage-blob 12 script, run against Azurite 3.35.0 and against openams: every
operation must answer the same status code (and error code) and the same set of response header
names. The differences we accept are listed in KNOWN (and in the README), each with a
reason; anything else fails.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import (
    BlobBlock,
    BlobSasPermissions,
    BlobServiceClient,
    BlockState,
    ContainerClient,
    ContentSettings,
    generate_blob_sas,
)

from tests.blob.conftest import Azurite, Server

# Transport-level headers that say nothing about the blob protocol.
IGNORED = {"connection", "keep-alive", "transfer-encoding", "server", "date", "content-length"}

# Header-name differences we accept: {operation: {header: reason}}; a header listed for an operation
# may be present on one side only. Every entry is explained in the README.
ERROR_ECHO = "Azure sends x-ms-version and echoes x-ms-client-request-id on error responses too; " \
             "Azurite 3.35 omits both there"
BLOCK_LIST_MD5 = ("Azure keeps no MD5 for a blob committed from a block list unless the client sets "
                  "x-ms-blob-content-md5; Azurite computes one. openams follows Azure (and so never re-reads a "
                  "blob to hash it at commit)")
KNOWN: dict[str, dict[str, str]] = {
    "get block list (uncommitted)": {
        h: "Azure returns ETag/Last-Modified/x-ms-blob-content-length only once the blob has committed "
           "blocks; Azurite makes a zero-length placeholder blob at the first Put Block"
        for h in ("etag", "last-modified", "x-ms-blob-content-length")},
    "get blob (no range, SAS)": {"content-md5": BLOCK_LIST_MD5},
    "get blob properties": {"x-ms-access-tier-change-time": "Azurite sets it at creation; Azure only after "
                                                            "Set Blob Tier, which openams does not offer"},
    **{op: {"x-ms-version": ERROR_ECHO, "x-ms-client-request-id": ERROR_ECHO}
       for op in ("get blob (missing)", "get blob properties (missing)", "delete blob (missing)",
                  "put block list (unknown block)", "get blob (range not satisfiable)")},
}


@dataclass
class Seen:
    op: str
    status: int
    error: str | None
    headers: frozenset[str]
    method: str


class Recorder:
    def __init__(self) -> None:
        self.current = ""
        self.seen: list[Seen] = []

    def hook(self, response: Any) -> None:
        http = response.http_response
        self.record(http.request.method, http.status_code, http.headers)

    def record(self, method: str, status: int, headers: Any) -> None:
        names = frozenset(k.lower() for k in headers if k.lower() not in IGNORED)
        self.seen.append(Seen(self.current, status, headers.get("x-ms-error-code"), names, method))


def run_script(client: BlobServiceClient, key: str, rec: Recorder) -> dict[str, Any]:
    """The blob operations AMS clients use, in one sequence. Returns values to compare too."""
    out: dict[str, Any] = {}
    account = client.account_name or ""
    name = f"diff-{uuid.uuid4().hex[:12]}"

    def op(label: str, fn: Callable[[], Any], expect_error: str | None = None) -> Any:
        rec.current = label
        try:
            result = fn()
        except HttpResponseError as exc:
            if expect_error is None:
                raise
            out[label] = exc.error_code
            return None
        if expect_error is not None:
            raise AssertionError(f"{label}: expected {expect_error}")
        return result

    container: ContainerClient = op("create container", lambda: client.create_container(name))
    small = b"0123456789abcdef" * 64
    blob = container.get_blob_client("dir/small.bin")
    op("put blob", lambda: blob.upload_blob(small, content_settings=ContentSettings(content_type="video/mp4"),
                                            metadata={"origin": "test"}))
    big = container.get_blob_client("dir/sub/blocks.bin")
    parts = [bytes([i]) * (1000 + i) for i in range(3)]
    ids = [base64.b64encode(f"block-{i:04d}".encode()).decode() for i in range(3)]
    for i in (2, 0, 1):  # out of order, as the SDK's parallel uploads arrive
        op("put block", lambda i=i: big.stage_block(ids[i], parts[i]))
    out["uncommitted"] = op("get block list (uncommitted)", lambda: big.get_block_list("uncommitted"))
    out["uncommitted"] = sorted((b.id, b.size) for b in out["uncommitted"][1])
    op("put block list (latest)", lambda: big.commit_block_list([BlobBlock(i) for i in ids]))
    extra_id = base64.b64encode(b"block-0099").decode()
    op("put block", lambda: big.stage_block(extra_id, b"tail"))
    op("put block list (committed+uncommitted)", lambda: big.commit_block_list(
        [BlobBlock(ids[0], BlockState.COMMITTED), BlobBlock(ids[1], BlockState.COMMITTED),
         BlobBlock(extra_id, BlockState.UNCOMMITTED)]))
    committed, uncommitted = op("get block list (all)", lambda: big.get_block_list("all"))
    out["block list"] = ([(b.id, b.size) for b in committed], [(b.id, b.size) for b in uncommitted])
    data = op("get blob", lambda: big.download_blob().readall())
    out["content"] = hashlib.sha256(data).hexdigest()
    # the SDK always asks for a range; a plain GET (a SAS client, a player) gets 200
    expiry = datetime.now(UTC) + timedelta(hours=1)
    sas = generate_blob_sas(account, name, big.blob_name, account_key=key,
                            permission=BlobSasPermissions(read=True), expiry=expiry)
    rec.current = "get blob (no range, SAS)"
    plain = httpx.get(f"{big.url}?{sas}")
    rec.record("GET", plain.status_code, plain.headers)
    out["plain"] = (plain.status_code, hashlib.sha256(plain.content).hexdigest())
    odd = container.get_blob_client("dir/with space ü+x.bin")
    op("put blob", lambda: odd.upload_blob(b"odd name"))
    out["odd name"] = op("get blob", lambda: odd.download_blob().readall())
    out["range"] = op("get blob (range)", lambda: big.download_blob(offset=500, length=1000).readall())
    props = op("get blob properties", lambda: blob.get_blob_properties())
    out["properties"] = (props.size, props.content_settings.content_type, dict(props.metadata),
                         props.blob_type)
    op("set blob metadata", lambda: blob.set_blob_metadata({"a": "1", "b": "two"}))
    out["metadata"] = dict(op("get blob properties", lambda: blob.get_blob_properties()).metadata)
    for n in ("a.txt", "b.txt", "c/d.txt", "c/e.txt", "z.txt"):
        op("put blob", lambda n=n: container.upload_blob(n, b"x"))
    out["list"] = op("list blobs", lambda: [b.name for b in container.list_blobs()])
    out["list prefix"] = op("list blobs (prefix)", lambda: [b.name for b in container.list_blobs("dir/")])
    out["list delimiter"] = op("list blobs (delimiter)", lambda: [b.name for b in container.walk_blobs()])
    pages = container.list_blobs(results_per_page=2).by_page()
    rec.current = "list blobs (maxresults)"
    first = [b.name for b in next(pages)]
    rec.current = "list blobs (marker)"
    second = [b.name for b in next(pages)]
    out["pages"] = (first, second)
    for n in ("c0.txt", "d/only.txt", "e.txt"):
        op("put blob", lambda n=n: container.upload_blob(n, b"y"))
    walk = container.walk_blobs(results_per_page=2).by_page()
    out["delimiter pages"] = []
    while True:
        rec.current = "list blobs (delimiter, paged)"
        try:
            out["delimiter pages"].append([b.name for b in next(walk)])
        except StopIteration:
            break
    op("delete blob", lambda: container.delete_blob("a.txt"))
    op("get blob (missing)", lambda: container.get_blob_client("a.txt").download_blob().readall(),
       expect_error="BlobNotFound")
    op("get blob properties (missing)", lambda: container.get_blob_client("a.txt").get_blob_properties(),
       expect_error="BlobNotFound")
    op("delete blob (missing)", lambda: container.delete_blob("a.txt"), expect_error="BlobNotFound")
    op("put block list (unknown block)", lambda: big.commit_block_list(
        [BlobBlock(base64.b64encode(b"block-7777").decode())]), expect_error="InvalidBlockList")
    op("get blob (range not satisfiable)", lambda: blob.download_blob(offset=5000, length=10).readall(),
       expect_error="InvalidRange")
    out["after errors"] = [b.name for b in container.list_blobs()]
    return out


def _client(url: str, account: str, key: str, rec: Recorder) -> BlobServiceClient:
    return BlobServiceClient(url, credential={"account_name": account, "account_key": key},
                             raw_response_hook=rec.hook, max_single_put_size=4 * 1024 * 1024)


def test_sdk_script_matches_azurite(openams_server: Server, azurite: Azurite) -> None:
    ref_rec, our_rec = Recorder(), Recorder()
    theirs = _client(azurite.account_url, azurite.account, azurite.key, ref_rec)
    ref = run_script(theirs, azurite.key, ref_rec)
    mine = _client(openams_server.account_url, openams_server.account, openams_server.key, our_rec)
    ours = run_script(mine, openams_server.key, our_rec)
    assert ours == ref
    assert [(s.op, s.method) for s in our_rec.seen] == [(s.op, s.method) for s in ref_rec.seen]
    problems = []
    used: set[tuple[str, str]] = set()
    for theirs, mine in zip(ref_rec.seen, our_rec.seen, strict=True):
        if (theirs.status, theirs.error) != (mine.status, mine.error):
            problems.append(f"{mine.op}: status/error {mine.status} {mine.error} vs Azurite {theirs.status} "
                            f"{theirs.error}")
        allowed = KNOWN.get(mine.op, {})
        extra = sorted(mine.headers - theirs.headers - allowed.keys())
        missing = sorted(theirs.headers - mine.headers - allowed.keys())
        if extra or missing:
            problems.append(f"{mine.op} ({mine.method} {mine.status}): openams adds {extra}, lacks {missing}")
        used |= {(mine.op, h) for h in (mine.headers ^ theirs.headers) & allowed.keys()}
    stale = sorted({(op, h) for op, hs in KNOWN.items() for h in hs} - used)
    assert not problems, "\n".join(problems)
    assert not stale, f"these documented differences no longer occur; drop them: {stale}"


def test_known_differences_are_documented() -> None:
    text = (Path(__file__).parents[2] / "README.md").read_text()
    for op, headers in KNOWN.items():
        for header in headers:
            assert f"`{header}`" in text, f"{header} ({op}) is not described in the README"
