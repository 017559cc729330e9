"""Blob service throughput: upload and download MB/s of one large file through openams, next to
Azurite (the reference Azure Blob emulator) and a plain file copy on the same disk.

Everything runs on one disk (one temporary directory): the source file, a copy of it made with
`shutil.copyfile` + fsync (the physical bound: one read and one durable write of every byte), a
real `openams serve` (free ports, fresh data directory) and Azurite. Uploads use the
azure-storage-blob SDK the way AMS clients do — block blobs through a SAS URL from a write Locator,
4 MiB blocks, 4 parallel connections — and downloads fetch the whole blob with the same SDK into a
file. The CLI's own uploader (`openams upload`, httpx, same block size and parallelism) is measured
too. While openams receives the upload, its resident memory (VmRSS from /proc/<pid>/status, every
100 ms) is sampled; the peak growth over the idle server is printed (goal: < 100 MiB for 2 GiB).

    .venv/bin/python bench/blob.py [--size 512] [--workers 4] [--block 4] [--dir /tmp] [--no-azurite]

Azurite comes from .tools/node_modules (`npm install --prefix .tools azurite@3.35.0`). Exits 1 if a
transfer failed or a downloaded file differs from the source, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from _common import free_port, log
from _common import openams_server as common_openams_server

ROOT = Path(__file__).resolve().parents[1]
AZURITE_MAIN = ROOT / ".tools" / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (the same in every Azurite installation).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
API_HEADERS = {"x-ms-version": "2.19", "Accept": "application/json", "DataServiceVersion": "3.0",
               "MaxDataServiceVersion": "3.0"}
MIB = 1024 * 1024
BLOB = "bench.mp4"


def wait_http(url: str, proc: subprocess.Popen[bytes], logfile: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = logfile.read_text()[-3000:]
            raise RuntimeError(f"{url}: process exited with {proc.returncode}:\n{tail}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s:\n{logfile.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


# ---- measurement helpers ---------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in a thread; reports the peak growth."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.baseline = rss_kib(pid)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.peak = max(self.peak, rss_kib(self.pid))
        except FileNotFoundError:
            pass

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / 1024

    @property
    def peak_mib(self) -> float:
        return self.peak / 1024


@dataclass
class Row:
    name: str
    mbps: float
    seconds: float
    note: str = ""


@dataclass
class Results:
    size: int
    rows: list[Row] = field(default_factory=list)
    memory: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, name: str, seconds: float, note: str = "") -> None:
        row = Row(name, self.size / seconds / 1e6, seconds, note)
        self.rows.append(row)
        log(f"  {name}: {row.mbps:,.0f} MB/s ({seconds:.2f} s)")

    def get(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def make_source(path: Path, size: int) -> str:
    """A file of `size` bytes of random data (not compressible, no sparse tricks); returns its sha256."""
    h = hashlib.sha256()
    chunk = 8 * MIB
    with open(path, "wb") as fh:
        left = size
        while left:
            data = os.urandom(min(chunk, left))
            fh.write(data)
            h.update(data)
            left -= len(data)
        fh.flush()
        os.fsync(fh.fileno())
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def copy_baseline(src: Path, dst: Path) -> float:
    def run() -> None:
        shutil.copyfile(src, dst)
        with open(dst, "rb+") as fh:
            os.fsync(fh.fileno())

    seconds = timed(run)
    dst.unlink()
    return seconds


# ---- openams ----------------------------------------------------------------------------------------


@dataclass
class OpenAms:
    """The API calls this benchmark makes on the server `_common.openams_server` started."""

    pid: int
    api: str
    account: str
    key: str
    data_dir: Path
    _token: str = ""

    def headers(self) -> dict[str, str]:
        if not self._token:
            r = httpx.post(f"{self.api}/v2/OAuth2-13", data={
                "grant_type": "client_credentials", "client_id": self.account, "client_secret": self.key,
                "scope": "urn:WindowsAzureMediaServices"})
            r.raise_for_status()
            self._token = r.json()["access_token"]
        return {**API_HEADERS, "Authorization": f"Bearer {self._token}"}

    def create(self, set_name: str, body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(f"{self.api}/api/{set_name}", json=body, headers=self.headers(), timeout=60)
        if r.status_code != 201:
            raise RuntimeError(f"POST {set_name}: {r.status_code} {r.text}")
        return dict(r.json())

    def sas_container(self, permissions: int) -> tuple[str, str]:
        """A new asset and a SAS locator on it: (BaseUri, ContentAccessComponent)."""
        asset = self.create("Assets", {"Name": "bench"})
        policy = self.create("AccessPolicies", {"Name": "bench", "DurationInMinutes": 600,
                                                "Permissions": permissions})
        loc = self.create("Locators", {"AccessPolicyId": policy["Id"], "AssetId": asset["Id"], "Type": 1})
        return loc["BaseUri"], loc["ContentAccessComponent"]


@contextmanager
def openams_server(base: Path) -> Iterator[OpenAms]:
    data_dir = base / "openams-data"
    try:
        with common_openams_server(base, data_dir=data_dir, wait_blob=True, timeout=60.0) as server:
            yield OpenAms(server.pid, server.api, server.account, server.key, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# ---- Azurite ----------------------------------------------------------------------------------------


@contextmanager
def azurite_server(base: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    node = shutil.which("node")
    if node is None or not AZURITE_MAIN.exists():
        raise FileNotFoundError(f"Azurite is not installed ({AZURITE_MAIN}); run "
                                "`npm install --prefix .tools azurite@3.35.0`")
    location = base / "azurite"
    location.mkdir()
    port = free_port()
    logfile = base / "azurite.log"
    with open(logfile, "wb") as fh:
        proc = subprocess.Popen([node, str(AZURITE_MAIN), "--disableTelemetry", "--skipApiVersionCheck",
                                 "--loose", "--silent", "--blobHost", "127.0.0.1", "--blobPort", str(port),
                                 "--location", str(location)], stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc, logfile)
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}", proc
    finally:
        stop(proc)
        shutil.rmtree(location, ignore_errors=True)


# ---- transfers with the azure-storage-blob SDK ------------------------------------------------------


def sdk_client(url: str, credential: Any, block: int) -> Any:
    from azure.storage.blob import BlobClient

    return BlobClient.from_blob_url(url, credential=credential, max_block_size=block,
                                    max_single_put_size=block, max_chunk_get_size=block,
                                    max_single_get_size=block, connection_timeout=30, read_timeout=300)


def sdk_upload(client: Any, src: Path, size: int, workers: int) -> None:
    with open(src, "rb") as fh:
        client.upload_blob(fh, length=size, overwrite=True, max_concurrency=workers)


def sdk_download(client: Any, dst: Path, workers: int) -> None:
    with open(dst, "wb") as fh:
        client.download_blob(max_concurrency=workers).readinto(fh)


def verify(res: Results, what: str, path: Path, want: str) -> None:
    got = sha256_file(path)
    path.unlink()
    if got != want:
        res.failures.append(f"{what}: the downloaded file differs from the source")


# ---- the run ----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Results:
    size = args.size * MIB
    block = args.block * MIB
    res = Results(size)
    base = Path(tempfile.mkdtemp(prefix="openams-bench-blob-", dir=args.dir))
    try:
        src = base / "source.bin"
        log(f"writing a {args.size} MiB source file in {base} …")
        digest = make_source(src, size)

        log("plain file copy (shutil.copyfile + fsync) …")
        res.add("file copy", copy_baseline(src, base / "copy.bin"), "physical bound")

        log("openams (azure-storage-blob SDK via SAS) …")
        with openams_server(base) as ams:
            container, sas = ams.sas_container(1 | 2 | 8)
            client = sdk_client(f"{container}/{BLOB}{sas}", None, block)
            idle = rss_kib(ams.pid) / 1024
            with RssSampler(ams.pid) as up_mem:
                seconds = timed(lambda: sdk_upload(client, src, size, args.workers))
            res.add("openams upload", seconds, "SDK, SAS locator")
            with RssSampler(ams.pid) as down_mem:
                seconds = timed(lambda: sdk_download(client, base / "down.bin", args.workers))
            res.add("openams download", seconds, "SDK, ranged GETs")
            verify(res, "openams download", base / "down.bin", digest)
            res.memory.append(f"openams server RSS: idle {idle:.0f} MiB; peak growth during upload "
                              f"{up_mem.growth_mib:.1f} MiB (peak {up_mem.peak_mib:.0f} MiB), "
                              f"during download {down_mem.growth_mib:.1f} MiB")
            if up_mem.growth_mib >= 100:
                res.memory.append(f"  WARNING: upload RSS growth {up_mem.growth_mib:.1f} MiB is over the "
                                  "100 MiB goal")

            log("openams (the `openams upload` client: httpx, blocks read from the file) …")
            from openams.client import AmsClient

            container, sas = ams.sas_container(2)
            blob_base = f"{container}/{quote(BLOB)}{sas}"
            commit: list[float] = []
            with AmsClient(ams.api, ams.account, ams.key) as cli, RssSampler(ams.pid) as cli_mem:
                send = cli._blob

                def timed_blob(method: str, url: str, *a: Any, **kw: Any) -> Any:
                    t0 = time.perf_counter()
                    try:
                        return send(method, url, *a, **kw)
                    finally:
                        if "comp=blocklist" in url:
                            commit.append(time.perf_counter() - t0)

                cli._blob = timed_blob  # type: ignore[method-assign]
                seconds = timed(lambda: cli.upload_blob(
                    str(src), lambda q: f"{blob_base}&{q}" if q else blob_base, size, "video/mp4",
                    block_size=block, workers=args.workers))
            note = f"httpx; Put Block List took {commit[0]:.2f} s of it" if commit else "httpx"
            res.add("openams upload (CLI client)", seconds, note)
            res.memory.append(f"openams server RSS growth during the CLI-client upload: "
                              f"{cli_mem.growth_mib:.1f} MiB")

        if not args.no_azurite:
            log("Azurite (same SDK, account key) …")
            try:
                with azurite_server(base) as (account_url, proc):
                    from azure.storage.blob import BlobServiceClient

                    svc = BlobServiceClient(account_url, credential={"account_name": AZURITE_ACCOUNT,
                                                                     "account_key": AZURITE_KEY})
                    svc.create_container("bench")
                    cred = {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
                    client = sdk_client(f"{account_url}/bench/{BLOB}", cred, block)
                    with RssSampler(proc.pid) as az_mem:
                        seconds = timed(lambda: sdk_upload(client, src, size, args.workers))
                    res.add("Azurite upload", seconds, "SDK, shared key")
                    seconds = timed(lambda: sdk_download(client, base / "down.bin", args.workers))
                    res.add("Azurite download", seconds, "SDK, ranged GETs")
                    verify(res, "Azurite download", base / "down.bin", digest)
                    res.memory.append(f"Azurite RSS growth during upload: {az_mem.growth_mib:.1f} MiB "
                                      "(for reference)")
            except FileNotFoundError as exc:
                log(f"  skipped: {exc}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return res


def report(args: argparse.Namespace, res: Results) -> None:
    copy = res.get("file copy")
    print(f"blob throughput — {args.size} MiB file, {args.block} MiB blocks, {args.workers} parallel "
          f"connections; {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print()
    header = f"{'transfer':<30} {'MB/s':>8} {'seconds':>8} {'vs copy':>8} {'vs Azurite':>11}  note"
    print(header)
    print("-" * len(header))
    for row in res.rows:
        vs_copy = f"{row.mbps / copy.mbps:.2f}x" if copy else "-"
        kind = "upload" if "upload" in row.name else "download" if "download" in row.name else ""
        az = res.get(f"Azurite {kind}") if kind and not row.name.startswith("Azurite") else None
        vs_az = f"{row.mbps / az.mbps:.2f}x" if az else "-"
        print(f"{row.name:<30} {row.mbps:>8,.0f} {row.seconds:>8.2f} {vs_copy:>8} {vs_az:>11}  {row.note}")
    print()
    for line in res.memory:
        print(line)
    for line in res.failures:
        print(f"FAILED: {line}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512, help="file size in MiB (default 512)")
    p.add_argument("--workers", type=int, default=4, help="parallel connections (default 4)")
    p.add_argument("--block", type=int, default=4, help="block / chunk size in MiB (default 4)")
    p.add_argument("--dir", default=None, help="where the temporary files go (default: the system temp dir)")
    p.add_argument("--no-azurite", action="store_true", help="skip the Azurite comparison")
    args = p.parse_args()
    try:
        res = run(args)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
    report(args, res)
    sys.exit(1 if res.failures else 0)


if __name__ == "__main__":
    main()
