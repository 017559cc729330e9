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
ORIGIN_LOCATOR = 2
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


# ---- jobs (used by `openams encode` and bench/encode.py) ---------------------------------------------

MES_PROCESSOR_ID = "nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56"
"""Media Encoder Standard."""
JOB_STATES = {0: "Queued", 1: "Scheduled", 2: "Processing", 3: "Finished", 4: "Error", 5: "Canceled",
              6: "Canceling"}
FINAL_JOB_STATES = frozenset({3, 4, 5})
DOWNLOAD_CHUNK = MIB


def task_body(inputs: int = 1, output_name: str | None = None) -> str:
    """A TaskBody reading JobInputAsset(0..inputs-1) and writing JobOutputAsset(0)."""
    attr = f' assetName="{escape(output_name, {chr(34): "&quot;"})}"' if output_name else ""
    return ("<?xml version=\"1.0\" encoding=\"utf-8\"?><taskBody>"
            + "".join(f"<inputAsset>JobInputAsset({i})</inputAsset>" for i in range(inputs))
            + f"<outputAsset{attr}>JobOutputAsset(0)</outputAsset></taskBody>")


@dataclass
class JobStatus:
    """One poll of a job: the job entity and its tasks (JSON light dictionaries)."""

    job: dict[str, Any]
    tasks: list[dict[str, Any]]

    @property
    def state(self) -> int:
        return int(self.job["State"])

    @property
    def label(self) -> str:
        return JOB_STATES.get(self.state, str(self.state))

    @property
    def final(self) -> bool:
        return self.state in FINAL_JOB_STATES

    @property
    def progress(self) -> float:
        """Mean Task.Progress (0-100); finished tasks count as 100."""
        if not self.tasks:
            return 0.0
        return sum(100.0 if int(t["State"]) == 3 else float(t.get("Progress") or 0.0)
                   for t in self.tasks) / len(self.tasks)

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Every ErrorDetail of every task ({"Code", "Message"})."""
        return [e for t in self.tasks for e in (t.get("ErrorDetails") or [])]


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

    def create_origin_locator(self, asset_id: str, policy_id: str) -> dict[str, Any]:
        body = {"AccessPolicyId": policy_id, "AssetId": asset_id, "Type": ORIGIN_LOCATOR}
        return self.create("Locators", body, "creating the streaming locator")

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
        return self.upload_files([path], asset_name, progress, on_start, block_size, workers)

    def upload_files(self, paths: list[str], asset_name: str | None = None, progress: Progress | None = None,
                     on_start: Callable[[int, str], None] | None = None, block_size: int = BLOCK_SIZE,
                     workers: int = WORKERS) -> UploadResult:
        """Upload local files into one new asset (e.g. a set of MP4 renditions); returns its id once
        the AssetFiles exist. On failure the unfinished asset is deleted."""
        from .entities.file_infos import mime_type

        if not paths:
            raise ClientError("no files to upload.")
        sizes: list[int] = []
        for path in paths:
            try:
                sizes.append(os.stat(path).st_size)
            except OSError as exc:
                raise ClientError(f"cannot read {path}: {exc.strerror}") from None
            if not os.path.isfile(path):
                raise ClientError(f"{path} is not a regular file.")
            if not os.access(path, os.R_OK):
                raise ClientError(f"cannot read {path}: permission denied.")
        blobs = [blob_name_for(os.path.basename(p)) for p in paths]
        if len(set(blobs)) != len(blobs):
            raise ClientError("two of the files have the same name; an asset's file names must be unique.")
        started = time.monotonic()
        self.token()
        asset = self.create_asset(asset_name or os.path.basename(paths[0]))
        asset_id = asset["Id"]
        policy: dict[str, Any] | None = None
        locator: dict[str, Any] | None = None
        ok = False
        warnings: list[str] = []
        try:
            policy = self.create_policy(f"Upload-{uuid.uuid4()}", WRITE)
            locator = self.create_sas_locator(asset_id, policy["Id"])
            base, sas = locator["BaseUri"], locator["ContentAccessComponent"]
            for path, blob, size in zip(paths, blobs, sizes, strict=True):
                blob_base = f"{base}/{quote(blob)}{sas}"

                def blob_url(query: str, blob_base: str = blob_base) -> str:
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
        return UploadResult(asset_id, blobs[0], sum(sizes), time.monotonic() - started, warnings)

    # ---- jobs (used by `openams encode` and bench/encode.py) ----------------------------------------
    def _call(self, method: str, path: str, what: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """`api()`, getting a new token once if the old one expired during a long wait."""
        try:
            return self.api(method, path, what, body)
        except ClientError as exc:
            if exc.status != 401:
                raise
            self._token = None
            return self.api(method, path, what, body)

    def submit_job(self, asset_ids: str | list[str], configuration: str, name: str | None = None,
                   processor_id: str = MES_PROCESSOR_ID, output_name: str | None = None,
                   priority: int = 0) -> dict[str, Any]:
        """POST one job with one task (JSON light deep insert) reading the assets in order."""
        ids = [asset_ids] if isinstance(asset_ids, str) else list(asset_ids)
        body: dict[str, Any] = {
            "Name": name or f"encode-{uuid.uuid4().hex[:8]}",
            "Priority": priority,
            "InputMediaAssets@odata.bind": [f"{self.server}/api/Assets('{quote(a, safe='')}')" for a in ids],
            "Tasks": [{"Name": "encode", "Configuration": configuration, "MediaProcessorId": processor_id,
                       "TaskBody": task_body(len(ids), output_name)}],
        }
        return dict(self._call("POST", "Jobs", "submitting the job", body).json())

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"Jobs('{quote(job_id, safe='')}')", "reading the job").json())

    def job_tasks(self, job_id: str) -> list[dict[str, Any]]:
        r = self._call("GET", f"Jobs('{quote(job_id, safe='')}')/Tasks", "reading the job's tasks")
        return list(r.json()["value"])

    def job_status(self, job_id: str) -> JobStatus:
        return JobStatus(self.job(job_id), self.job_tasks(job_id))

    def job_outputs(self, job_id: str) -> list[dict[str, Any]]:
        r = self._call("GET", f"Jobs('{quote(job_id, safe='')}')/OutputMediaAssets", "reading the output assets")
        return list(r.json()["value"])

    def cancel_job(self, job_id: str) -> None:
        self._call("GET", f"CancelJob?jobid='{quote(job_id, safe='')}'", "canceling the job")

    def wait_job(self, job_id: str, on_update: Callable[[JobStatus], None] | None = None, interval: float = 1.0,
                 timeout: float | None = None) -> JobStatus:
        """Poll until the job reaches Finished, Error or Canceled; `on_update` sees every poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.job_status(job_id)
            if on_update is not None:
                on_update(status)
            if status.final:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise ClientError(f"job {job_id} is still {status.label} after {timeout:g}s.")
            time.sleep(interval)

    def download_files(self, asset_id: str, dest_dir: str | os.PathLike[str],
                       names: list[str] | None = None) -> list[str]:
        """Download an asset's files (all, or `names`) into `dest_dir` through a temporary read SAS
        locator; returns the local paths. The locator and its policy are deleted afterwards."""
        wanted = names if names is not None else [f["Name"] for f in self.files(asset_id)]
        os.makedirs(dest_dir, exist_ok=True)
        policy = self.create_policy(f"Download-{uuid.uuid4()}", READ, 60.0)
        paths: list[str] = []
        try:
            locator = self.create_sas_locator(asset_id, policy["Id"])
            try:
                for name in wanted:
                    path = os.path.join(dest_dir, os.path.basename(name))
                    url = f"{locator['BaseUri']}/{quote(name)}{locator['ContentAccessComponent']}"
                    self._download(url, path, f"downloading {name}")
                    paths.append(path)
            finally:
                self.delete("Locators", locator["Id"], "deleting the download locator")
        finally:
            self.delete("AccessPolicies", policy["Id"], "deleting the download policy")
        return paths

    def _download(self, url: str, path: str, what: str) -> None:
        tmp = f"{path}.part"
        try:
            with self.http.stream("GET", url, headers={"x-ms-version": BLOB_VERSION}) as r:
                if r.status_code >= 400:
                    r.read()
                    _check(r, what)
                with open(tmp, "wb") as fh:
                    for chunk in r.iter_bytes(DOWNLOAD_CHUNK):
                        fh.write(chunk)
            os.replace(tmp, path)
        except httpx.HTTPError as exc:
            raise ClientError(f"{what}: {exc}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
