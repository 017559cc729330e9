"""A small synchronous client for openams's public APIs, used by `openams upload`.

It does what a client app does, over HTTP only: get a token, create an asset, an access policy and a
SAS locator, upload the file as blocks through the blob service (parallel, constant memory: each
worker reads its block from the file when it sends it), commit the block list, call
CreateFileInfos, then delete the locator and the policy.

Every failure surfaces as `ClientError` with a message fit for a person (the server's own message
for 4xx/5xx replies), so callers can print it without a traceback.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import httpx

MIB = 1024 * 1024
BLOCK_SIZE = 4 * MIB
MAX_BLOCKS = 50_000
WORKERS = 4
BLOB_VERSION = "2021-08-06"
API_HEADERS = {"x-ms-version": "2.19", "Accept": "application/json", "DataServiceVersion": "3.0",
               "MaxDataServiceVersion": "3.0"}
READ, WRITE, DELETE, LIST = 1, 2, 4, 8
SAS_LOCATOR = 1
RETRIES = 3

Progress = Callable[[int], None]
"""Called with the number of bytes just sent."""


class ClientError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def _server_message(r: httpx.Response) -> str:
    """The error text the server put in an OData (JSON/Atom), OAuth or blob (XML) error body."""
    text = r.text
    try:
        data = r.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("odata.error") or data.get("error")
        if isinstance(err, dict):
            msg = err.get("message")
            if isinstance(msg, dict):
                return str(msg.get("value") or "")
            if msg:
                return str(msg)
        if "error_description" in data:
            return str(data["error_description"])
        if isinstance(err, str):
            return err
    m = re.search(r"<(?:m:)?[Mm]essage[^>]*>(.*?)</(?:m:)?[Mm]essage>", text, re.S)
    if m:
        return m.group(1).split("\nRequestId:")[0].strip()
    return text.strip()[:500] or r.reason_phrase


def _check(r: httpx.Response, what: str) -> httpx.Response:
    if r.status_code >= 400:
        raise ClientError(f"{what} failed ({r.status_code}): {_server_message(r)}", r.status_code)
    return r


def blob_name_for(filename: str) -> str:
    """A blob/AssetFile name the AMS file-name rules accept, made from a local file name.

    Characters that break media URLs become `_`, and only the last `.` (the extension) is kept.
    """
    from .entities.files import FORBIDDEN, MAX_NAME

    name = "".join("_" if c in FORBIDDEN or c == "\\" or ord(c) < 32 else c for c in filename)
    stem, dot, ext = name.rpartition(".")
    if dot and stem:
        name = stem.replace(".", "_") + "." + ext
    name = name.strip() or "file"
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: MAX_NAME - len(ext) - 1] + "." + ext) if dot and len(ext) < 20 else name[:MAX_NAME]
    return name


@dataclass
class UploadResult:
    asset_id: str
    blob_name: str
    size: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    """Clean-up steps that failed after the upload itself succeeded."""


class AmsClient:
    """The Operations API (JSON light) and the blob service, as one account sees them."""

    def __init__(self, server: str, account: str, key: str, timeout: float = 60.0) -> None:
        self.server = server.rstrip("/")
        self.account, self.key = account, key
        self.http = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0),
                                 limits=httpx.Limits(max_connections=WORKERS * 2))
        self._token: str | None = None

    def __enter__(self) -> AmsClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # ---- transport -----------------------------------------------------------------------------
    def _send(self, method: str, url: str, what: str, **kw: Any) -> httpx.Response:
        try:
            return self.http.request(method, url, **kw)
        except httpx.ConnectError as exc:
            host = httpx.URL(url)
            raise ClientError(f"cannot reach the server at {host.scheme}://{host.netloc.decode()} ({exc}); "
                              f"is `openams serve` running?") from None
        except httpx.TimeoutException:
            raise ClientError(f"{what}: the server did not answer in time.") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"{what}: {exc}") from None

    def token(self) -> str:
        if self._token is None:
            r = self._send("POST", f"{self.server}/v2/OAuth2-13", "getting a token",
                           data={"grant_type": "client_credentials", "client_id": self.account,
                                 "client_secret": self.key, "scope": "urn:WindowsAzureMediaServices"})
            if r.status_code in (400, 401):
                raise ClientError(f"the server refused account '{self.account}' ({r.status_code}): "
                                  f"{_server_message(r)}", r.status_code)
            _check(r, "getting a token")
            self._token = str(r.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, what: str, body: dict[str, Any] | None = None) -> httpx.Response:
        headers = {**API_HEADERS, "Authorization": f"Bearer {self.token()}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        r = self._send(method, f"{self.server}/api/{path}", what, headers=headers, json=body)
        return _check(r, what)

    # ---- entities ------------------------------------------------------------------------------
    def create(self, set_name: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        return dict(self.api("POST", set_name, what, body).json())

    def delete(self, set_name: str, key: str, what: str) -> None:
        self.api("DELETE", f"{set_name}('{quote(key, safe='')}')", what)

    def create_asset(self, name: str) -> dict[str, Any]:
        return self.create("Assets", {"Name": name, "Options": 0}, "creating the asset")

    def create_policy(self, name: str, permissions: int, minutes: float = 720.0) -> dict[str, Any]:
        return self.create("AccessPolicies", {"Name": name, "DurationInMinutes": minutes,
                                              "Permissions": permissions}, "creating the access policy")

    def create_sas_locator(self, asset_id: str, policy_id: str) -> dict[str, Any]:
        body = {"AccessPolicyId": policy_id, "AssetId": asset_id, "Type": SAS_LOCATOR}
        return self.create("Locators", body, "creating the SAS locator")

    def create_file_infos(self, asset_id: str) -> None:
        self.api("GET", f"CreateFileInfos?assetid='{quote(asset_id, safe='')}'", "CreateFileInfos")

    def files(self, asset_id: str) -> list[dict[str, Any]]:
        r = self.api("GET", f"Assets('{quote(asset_id, safe='')}')/Files", "listing the asset's files")
        return list(r.json()["value"])

    # ---- blobs ---------------------------------------------------------------------------------
    def _blob(self, method: str, url: str, what: str, content: bytes = b"",
              headers: dict[str, str] | None = None) -> httpx.Response:
        """One blob request, retried on connection failures and 5xx (blocks are idempotent)."""
        h = {"x-ms-version": BLOB_VERSION, **(headers or {})}
        for attempt in range(RETRIES):
            try:
                r = self.http.request(method, url, content=content, headers=h)
            except httpx.ConnectError as exc:
                if attempt == RETRIES - 1:
                    raise ClientError(f"{what}: cannot reach the blob service ({exc}).") from None
            except httpx.HTTPError as exc:
                if attempt == RETRIES - 1:
                    raise ClientError(f"{what}: {exc}") from None
            else:
                if r.status_code < 500 or attempt == RETRIES - 1:
                    return _check(r, what)
            time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def upload_blob(self, path: str, blob_url: Callable[[str], str], size: int, content_type: str,
                    progress: Progress | None = None, block_size: int = BLOCK_SIZE, workers: int = WORKERS,
                    cancelled: threading.Event | None = None) -> None:
        """Upload `path` (of `size` bytes) to the URL `blob_url(query)` builds.

        Small files go in one Put Blob; larger ones as blocks sent by `workers` threads, each
        reading its block from the file at its offset (so memory stays at workers * block_size),
        then one Put Block List in order.
        """
        done = progress or (lambda n: None)
        headers = {"x-ms-blob-content-type": content_type}
        if size <= block_size:
            with open(path, "rb") as fh:
                data = fh.read()
            self._blob("PUT", blob_url(""), "uploading the file", data,
                       {**headers, "x-ms-blob-type": "BlockBlob"})
            done(len(data))
            return
        if size > block_size * MAX_BLOCKS:  # a blob holds at most 50,000 blocks: use bigger ones
            block_size = -(-size // MAX_BLOCKS // MIB) * MIB
        count = (size + block_size - 1) // block_size
        ids = [base64.b64encode(f"openams-{i:08d}".encode()).decode() for i in range(count)]
        next_index = iter(range(count))
        lock = threading.Lock()
        stop = cancelled or threading.Event()
        errors: list[BaseException] = []
        fd = os.open(path, os.O_RDONLY)

        def worker() -> None:
            while not stop.is_set():
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                offset = i * block_size
                length = min(block_size, size - offset)
                try:
                    data = os.pread(fd, length, offset)
                    if len(data) != length:
                        raise ClientError("the file changed size while it was being uploaded.")
                    self._blob("PUT", blob_url(f"comp=block&blockid={quote(ids[i], safe='')}"),
                               f"uploading block {i + 1} of {count}", data)
                    done(length)
                except BaseException as exc:
                    errors.append(exc)
                    stop.set()
                    return

        digest = hashlib.md5(usedforsecurity=False)

        def hasher() -> None:
            """The whole-file MD5, read in order while the blocks go out of order: Azure keeps no
            MD5 for a block-list blob unless the client sends one (x-ms-blob-content-md5)."""
            offset = 0
            while offset < size and not stop.is_set():
                chunk = os.pread(fd, min(MIB * 4, size - offset), offset)
                if not chunk:
                    break
                digest.update(chunk)
                offset += len(chunk)

        threads = [threading.Thread(target=worker, name=f"upload-{n}", daemon=True)
                   for n in range(min(workers, count))]
        threads.append(threading.Thread(target=hasher, name="upload-md5", daemon=True))
        try:
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except BaseException:
            stop.set()
            for t in threads:  # let blocks in flight finish before the file is closed under them
                t.join(10)
            raise
        finally:
            if not any(t.is_alive() for t in threads):
                os.close(fd)
        if errors:
            raise errors[0]
        if stop.is_set() and cancelled is not None:
            raise ClientError("the upload was cancelled.")
        body = '<?xml version="1.0" encoding="utf-8"?><BlockList>' + \
            "".join(f"<Latest>{escape(b)}</Latest>" for b in ids) + "</BlockList>"
        md5 = base64.b64encode(digest.digest()).decode("ascii")
        self._blob("PUT", blob_url("comp=blocklist"), "committing the block list", body.encode(),
                   {**headers, "Content-Type": "application/xml", "x-ms-blob-content-md5": md5})

    # ---- the whole flow ------------------------------------------------------------------------
    def upload(self, path: str, asset_name: str | None = None, progress: Progress | None = None,
               on_start: Callable[[int, str], None] | None = None, block_size: int = BLOCK_SIZE,
               workers: int = WORKERS) -> UploadResult:
        """Upload one local file into a new asset; returns its id once the AssetFile exists."""
        from .entities.file_infos import mime_type

        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise ClientError(f"cannot read {path}: {exc.strerror}") from None
        if not os.path.isfile(path):
            raise ClientError(f"{path} is not a regular file.")
        if not os.access(path, os.R_OK):
            raise ClientError(f"cannot read {path}: permission denied.")
        blob = blob_name_for(os.path.basename(path))
        started = time.monotonic()
        self.token()
        asset = self.create_asset(asset_name or os.path.basename(path))
        asset_id = asset["Id"]
        policy: dict[str, Any] | None = None
        locator: dict[str, Any] | None = None
        ok = False
        warnings: list[str] = []
        try:
            policy = self.create_policy(f"Upload-{uuid.uuid4()}", WRITE)
            locator = self.create_sas_locator(asset_id, policy["Id"])
            base, sas = locator["BaseUri"], locator["ContentAccessComponent"]
            blob_base = f"{base}/{quote(blob)}{sas}"

            def blob_url(query: str) -> str:
                return f"{blob_base}&{query}" if query else blob_base

            if on_start:
                on_start(size, blob)
            self.upload_blob(path, blob_url, size, mime_type(blob), progress, block_size, workers)
            self.create_file_infos(asset_id)
            ok = True
        finally:
            cleanup: list[tuple[str, str, str]] = []
            if locator is not None:
                cleanup.append(("Locators", locator["Id"], "deleting the upload locator"))
            if policy is not None:
                cleanup.append(("AccessPolicies", policy["Id"], "deleting the upload policy"))
            if not ok:
                cleanup.append(("Assets", asset_id, "deleting the unfinished asset"))
            for set_name, key, what in cleanup:
                try:
                    self.delete(set_name, key, what)
                except ClientError as exc:
                    warnings.append(exc.message)
        return UploadResult(asset_id, blob, size, time.monotonic() - started, warnings)
