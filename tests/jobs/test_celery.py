"""Celery scale-out against real brokers (Redis and RabbitMQ): a server-side scheduler with
job_runner=celery and two real `openams worker` processes sharing the database and the data directory.

Reserved units bound concurrency across workers; cancel reaches FFmpeg on a worker; a worker killed
with SIGKILL mid-encode leaves nothing stuck (the task is re-queued and finished by the other worker).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from starlette.testclient import TestClient

from openams.config import load
from openams.entities.defaults import ensure_account_defaults
from openams.rest.app import RestApp
from openams.runtime import Runtime
from tests.conftest import service_missing
from tests.jobs.support import (
    SLOW_PRESET,
    Receiver,
    cancel,
    make_clip,
    q,
    submit,
    task,
    upload,
    wait_final,
    wait_for,
)
from tests.support.client import ApiClient
from tests.support.database import private_database
from tests.support.servers import STORAGE_VARS

pytestmark = pytest.mark.slow

BROKERS = {
    "redis": os.environ.get("OPENAMS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("OPENAMS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}
CLI = [sys.executable, "-c", "from openams.cli import main; main()"]
FAST_PRESET = "H264 Single Bitrate 720p"


def _reachable(url: str) -> str | None:
    parsed = urlparse(url)
    port = parsed.port or (6379 if parsed.scheme.startswith("redis") else 5672)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", port), timeout=2):
            return None
    except OSError as exc:
        return f"{parsed.scheme} broker at {parsed.hostname}:{port} is not reachable: {exc}"


def _purge(url: str, queue: str) -> None:
    from kombu import Connection

    with Connection(url, connect_timeout=5) as conn:
        channel = conn.channel()
        try:
            channel.queue_purge(queue)
        except Exception:  # the queue does not exist yet
            pass
        if url.startswith("amqp"):
            try:
                channel.queue_delete(queue)
            except Exception:
                pass


@dataclass
class Cluster:
    rt: Runtime
    http: TestClient
    data_dir: Path
    config: Path
    logs: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    concurrency: int = 1

    def start_worker(self, n: int) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAMS_") or k.startswith(STORAGE_VARS)}
        env["OPENAMS_LOG_LEVEL"] = "info"
        log = self.logs / f"worker{n}-{int(time.time() * 1000)}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen([*CLI, "worker", "--config", str(self.config), "--concurrency",
                                     str(self.concurrency)],
                                    stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        proc.log = log  # type: ignore[attr-defined]
        wait_for(lambda: proc.poll() is not None or b" ready." in log.read_bytes(), 60,
                 f"worker {n} to be ready")
        assert proc.poll() is None, log.read_text()
        return proc

    def ensure_workers(self) -> None:
        for n, proc in enumerate(self.workers):
            if proc.poll() is not None:
                self.workers[n] = self.start_worker(n)

    def worker_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("worker*.log")))

    def api(self) -> ApiClient:
        name = f"cel{uuid.uuid4().hex[:12]}"
        with self.rt.engine.connect() as conn:
            conn.info["write"] = True
            with conn.begin():
                account = self.rt.accounts.create(conn, name)
                ensure_account_defaults(conn, account)
        api = ApiClient.for_account(self.http, account, "light")
        api.account = account  # type: ignore[attr-defined]
        return api


@pytest.fixture(scope="module", params=sorted(BROKERS))
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    broker = BROKERS[request.param]
    problem = _reachable(broker)
    if problem:
        service_missing(problem)
    with private_database("openams_celery") as database_url:
        yield from _cluster(request.param, broker, database_url, tmp_path_factory)


def _cluster(name: str, broker: str, database_url: str, tmp_path_factory: pytest.TempPathFactory,
             workers: int = 2, concurrency: int = 1) -> Iterator[Cluster]:
    queue = f"openams.test.{uuid.uuid4().hex[:10]}"  # private: other test runs may share the broker
    _purge(broker, queue)
    data_dir = tmp_path_factory.mktemp(f"celery-{name}")
    logs = tmp_path_factory.mktemp("worker-logs")
    config = data_dir.parent / f"{data_dir.name}.toml"
    lines = ["[openams]", f'data_dir = "{data_dir}"', f'broker_url = "{broker}"', f'celery_queue = "{queue}"',
             "create_dev_account = false"]
    if database_url:
        lines.append(f'database_url = "{database_url}"')
    config.write_text("\n".join(lines) + "\n")
    rt = Runtime(load(config, public_url="http://openams.test", job_runner="celery", max_concurrent_tasks=2))
    rt.prepare()
    rt.ready = True
    http = TestClient(RestApp(rt), base_url="http://openams.test", raise_server_exceptions=True)
    c = Cluster(rt, http, data_dir, config, logs, concurrency=concurrency)
    try:
        c.workers = [c.start_worker(n) for n in range(workers)]
        rt.start_jobs()
        yield c
    finally:
        rt.stop_jobs()
        for proc in c.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in c.workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _kill_ffmpeg_under(data_dir)
        _purge(broker, queue)
        rt.engine.dispose()


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "short.mp4", 12, "640x360")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "long.mp4", 30, "640x360")


# ---- helpers -----------------------------------------------------------------------------------------


def _units(api: ApiClient, units: int) -> None:
    row = api.list("EncodingReservedUnitTypes")[0]
    r = api.request("MERGE", f"EncodingReservedUnitTypes(guid'{row['AccountId']}')",
                    f'{{"CurrentReservedUnits": {units}}}'.encode(), **{"Content-Type": "application/json"})
    assert r.status_code == 204, r.text
    assert api.list("EncodingReservedUnitTypes")[0]["CurrentReservedUnits"] == units


def _interval(t: dict[str, Any]) -> tuple[datetime, datetime]:
    def parse(v: str) -> datetime:
        return datetime.fromisoformat(v.rstrip("Z"))

    return parse(t["StartTime"]), parse(t["EndTime"])


def _processes() -> list[tuple[int, int, str, str]]:
    """(pid, ppid, comm, cmdline) of every process we can see."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            continue  # a zombie is already dead
        out.append((int(entry.name), int(fields[1]), comm, cmdline))
    return out


def _ffmpeg_under(data_dir: Path, parents: set[int] | None = None) -> list[tuple[int, int, str, str]]:
    found = []
    for pid, ppid, comm, cmdline in _processes():
        if "ffmpeg" not in comm and "ffmpeg" not in cmdline.split(" ", 1)[0]:
            continue
        if str(data_dir) in cmdline or (parents is not None and ppid in parents):
            found.append((pid, ppid, comm, cmdline))
    return found


def _kill_ffmpeg_under(data_dir: Path) -> None:
    for pid, *_ in _ffmpeg_under(data_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _lease_worker(rt: Runtime, task_id: str) -> str | None:
    from sqlalchemy import select

    from openams.db.tables import task_leases

    with rt.engine.connect() as conn, conn.begin():
        return conn.execute(select(task_leases.c.worker).where(task_leases.c.task_id == task_id)).scalar()


def _encoding(api: ApiClient, job_id: str) -> dict[str, Any]:
    """Wait until the job's task is encoding (past the probe, FFmpeg running) and return it."""
    def encoding() -> dict[str, Any] | None:
        t = task(api, job_id)
        return t if t["State"] == 2 and t["Progress"] >= 5 else None

    return dict(wait_for(encoding, 90, "the task to be encoding"))


# ---- tests -------------------------------------------------------------------------------------------


def test_two_reserved_units_run_two_jobs_at_once(cluster: Cluster, short_clip: Path, receiver: Receiver) -> None:
    cluster.ensure_workers()
    api = cluster.api()
    _units(api, 2)
    asset = upload(cluster.rt.storage, api, short_clip)
    hook = api.create("NotificationEndPoints", "NotificationEndPoint", {
        "Name": "hook", "EndPointType": 3, "EndPointAddress": f"{receiver.base}/celery"})
    subscription = [{"NotificationEndPointId": hook["Id"], "TargetJobState": 2}]
    jobs = [submit(api, asset, FAST_PRESET, name=f"par{n}", subscriptions=subscription) for n in range(2)]
    for job in jobs:
        assert wait_final(api, job["Id"])["State"] == 3, task(api, job["Id"])
    (a_start, a_end), (b_start, b_end) = (_interval(task(api, j["Id"])) for j in jobs)
    assert a_start < b_end and b_start < a_end, "the two tasks did not overlap"
    out = api.list(f"Jobs('{q(jobs[0]['Id'])}')/OutputMediaAssets")[0]
    names = {f["Name"] for f in api.list(f"Assets('{q(out['Id'])}')/Files")}
    assert any(n.endswith(".mp4") for n in names) and any(n.endswith(".ism") for n in names)
    # Scheduled is announced by the server, Processing and Finished by the workers
    hits = wait_for(lambda: (lambda h: h if len(h) >= 6 else None)(receiver.at("/celery")), 30, "6 webhooks")
    seen = {(h.message["Properties"]["JobId"], h.message["Properties"]["OldState"],
             h.message["Properties"]["NewState"]) for h in hits}
    assert seen == {(j["Id"], old, new) for j in jobs for old, new in
                    (("Queued", "Scheduled"), ("Scheduled", "Processing"), ("Processing", "Finished"))}


def test_one_reserved_unit_runs_jobs_one_after_the_other(cluster: Cluster, short_clip: Path) -> None:
    cluster.ensure_workers()
    api = cluster.api()
    _units(api, 1)
    asset = upload(cluster.rt.storage, api, short_clip)
    jobs = [submit(api, asset, FAST_PRESET, name=f"seq{n}") for n in range(2)]
    for job in jobs:
        assert wait_final(api, job["Id"])["State"] == 3, task(api, job["Id"])
    intervals = sorted(_interval(task(api, j["Id"])) for j in jobs)
    assert intervals[0][1] <= intervals[1][0], f"the tasks overlapped: {intervals}"


def test_a_stale_message_is_dropped(cluster: Cluster, short_clip: Path) -> None:
    """A duplicate of a task's message (redelivery, re-publish) never runs the task again."""
    from openams.jobs.celery_worker import TASK_NAME

    cluster.ensure_workers()
    api = cluster.api()
    job = submit(api, upload(cluster.rt.storage, api, short_clip), FAST_PRESET)
    assert wait_final(api, job["Id"])["State"] == 3
    before = task(api, job["Id"])
    sched = cluster.rt.scheduler
    sched.app.send_task(TASK_NAME, args=[api.account.id, before["Id"]],  # type: ignore[attr-defined]
                        kwargs={"scheduler": sched.worker}, queue=cluster.rt.settings.celery_queue)
    wait_for(lambda: f"task {before['Id']} is Finished" in cluster.worker_logs(), 30, "the worker to drop it")
    after = task(api, job["Id"])
    assert after["HistoricalEvents"] == before["HistoricalEvents"] and after["EndTime"] == before["EndTime"]


def test_cancel_reaches_ffmpeg_on_a_worker(cluster: Cluster, long_clip: Path) -> None:
    cluster.ensure_workers()
    api = cluster.api()
    job = submit(api, upload(cluster.rt.storage, api, long_clip), SLOW_PRESET)
    _encoding(api, job["Id"])
    workers = {p.pid for p in cluster.workers}
    assert _ffmpeg_under(cluster.data_dir, workers), "no FFmpeg was running on a worker"
    cancel(api, job["Id"])
    done = wait_final(api, job["Id"], timeout=60)
    t = task(api, job["Id"])
    assert done["State"] == 5 and t["State"] == 5, t
    assert [e["Code"] for e in t["HistoricalEvents"]][-2:] == ["Canceling", "Canceled"]
    assert _ffmpeg_under(cluster.data_dir, workers) == []
    out = api.list(f"Jobs('{q(job['Id'])}')/OutputMediaAssets")[0]
    assert api.list(f"Assets('{q(out['Id'])}')/Files") == []


def test_a_worker_killed_mid_encode_leaves_nothing_stuck(cluster: Cluster, long_clip: Path) -> None:
    cluster.ensure_workers()
    api = cluster.api()
    job = submit(api, upload(cluster.rt.storage, api, long_clip), SLOW_PRESET)
    running = _encoding(api, job["Id"])
    holder = _lease_worker(cluster.rt, running["Id"])
    assert holder is not None
    pid = int(holder.split(":")[1])
    victim = next((p for p in cluster.workers if p.pid == pid), None)
    assert victim is not None, f"lease held by {holder}, not by one of the workers"
    os.kill(pid, signal.SIGKILL)
    victim.wait(timeout=10)
    try:
        done = wait_final(api, job["Id"], timeout=240)
        t = task(api, job["Id"])
        codes = [e["Code"] for e in t["HistoricalEvents"]]
        assert "Requeued" in codes, codes
        if done["State"] == 4:  # allowed, but only with an explanation
            assert t["ErrorDetails"] and t["ErrorDetails"][0]["Message"], t
        else:
            assert done["State"] == 3, t
            assert codes[-1] == "Finished" and t["Progress"] == 100.0
            out = api.list(f"Jobs('{q(job['Id'])}')/OutputMediaAssets")[0]
            names = [f["Name"] for f in api.list(f"Assets('{q(out['Id'])}')/Files")]
            assert sum(n.endswith(".mp4") for n in names) == 1, names
        assert _lease_worker(cluster.rt, running["Id"]) is None
    finally:
        _kill_ffmpeg_under(cluster.data_dir)  # the FFmpeg the killed worker left behind
        cluster.ensure_workers()


def test_one_prefork_worker_runs_two_tasks_at_once(tmp_path_factory: pytest.TempPathFactory,
                                                    short_clip: Path) -> None:
    broker = BROKERS["redis"]
    problem = _reachable(broker)
    if problem:
        service_missing(problem)
    with private_database("openams_celery") as database_url:
        clusters = _cluster("prefork", broker, database_url, tmp_path_factory, workers=1, concurrency=2)
        cluster = next(clusters)
        try:
            api = cluster.api()
            _units(api, 2)
            asset = upload(cluster.rt.storage, api, short_clip)
            jobs = [submit(api, asset, FAST_PRESET, name=f"pre{n}") for n in range(2)]
            for job in jobs:
                assert wait_final(api, job["Id"])["State"] == 3, task(api, job["Id"])
            (a_start, a_end), (b_start, b_end) = (_interval(task(api, j["Id"])) for j in jobs)
            assert a_start < b_end and b_start < a_end, "the two tasks did not overlap"
            assert "(prefork)" in cluster.worker_logs()
        finally:
            clusters.close()


def test_worker_command_rejects_a_bad_pool(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAMS_") or k.startswith(STORAGE_VARS)}
    out = subprocess.run([*CLI, "worker", "--data-dir", str(tmp_path), "--concurrency", "2",
                          "--pool", "solo"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and "solo pool runs one task at a time" in out.stderr, out
