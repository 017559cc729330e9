"""Scheduling queued tasks onto workers, and recovering tasks whose worker died.

The scheduler runs inside `openams serve` (in-process runner) and inside `openams worker` (Celery).
Each pass it: renews the leases of the tasks it runs and stops those being canceled; recovers tasks
whose lease ran out (the worker died): re-queued with a historical event, or failed after
`MAX_ATTEMPTS`; and claims queued tasks whose inputs are ready, within each account's reserved
units (`EncodingReservedUnitTypes.CurrentReservedUnits`; 0 means one at a time) and the process's
own worker limit. Claiming is a compare-and-set on the task row, so several processes can share one
database without running a task twice.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from ..db.store import Store
from ..db.tables import ENTITY_TABLES, links, task_leases
from ..entities.assets import container_name
from ..entities.base import Ctx
from ..model import MODEL
from .execute import (
    TaskExecution,
    TaskRef,
    fail_dependents,
    job_of,
    new_worker_id,
    refresh_job_state,
    release_lease,
    renew_lease,
    take_lease,
)
from .states import JobState

log = logging.getLogger("openams.jobs")

MAX_ATTEMPTS = 3
LEASE_SECONDS = 30
TICK_SECONDS = 1.0

TASKS = ENTITY_TABLES["Tasks"]
JOBS = ENTITY_TABLES["Jobs"]


def _now() -> datetime:
    return datetime.now(UTC)


def _es(name: str) -> Any:
    es = MODEL.entity_set(name)
    assert es is not None
    return es


class Scheduler:
    """Claims and supervises tasks. `dispatch(ref, cancel)` runs one (thread pool or Celery)."""

    def __init__(self, rt: Any, max_workers: int, dispatch: Callable[[TaskRef, threading.Event], Future[Any]]
                 | None = None) -> None:
        self.rt = rt
        self.worker = new_worker_id()
        self.max_workers = max(1, max_workers)
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="openams-task") \
            if dispatch is None else None
        self._dispatch = dispatch or self._run_local
        self.running: dict[str, tuple[TaskRef, threading.Event, Future[Any]]] = {}
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="openams-scheduler", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        self.wake.set()
        with self._lock:
            for _ref, cancel, _f in self.running.values():
                cancel.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self._pool:
            self._pool.shutdown(wait=wait, cancel_futures=True)

    def notify_submitted(self, _job_id: str) -> None:
        self.wake.set()

    def notify_canceled(self, _job_id: str) -> None:
        self.wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler pass failed")
            self.wake.wait(TICK_SECONDS)
            self.wake.clear()

    # ---- one pass ------------------------------------------------------------------------------
    def tick(self) -> None:
        self._supervise()
        self._recover()
        self._claim()

    def _ctx(self, conn: Any, account_id: str) -> Ctx | None:
        account = self.rt.accounts.by_id(conn, account_id)
        if account is None:
            return None
        return Ctx(Store(conn, account.id, MODEL), account, self.rt.settings, storage=self.rt.storage)

    def _supervise(self) -> None:
        with self._lock:
            items = list(self.running.items())
        for task_id, (ref, cancel, future) in items:
            if future.done():
                with self._lock:
                    self.running.pop(task_id, None)
                continue
            with self.rt.engine.connect() as conn:
                conn.info["write"] = True
                with conn.begin():
                    ctx = self._ctx(conn, ref.account_id)
                    task = ctx.store.get(_es("Tasks"), task_id) if ctx else None
                    if task is None or task["State"] == int(JobState.CANCELING):
                        cancel.set()
                    if ctx is not None:
                        renew_lease(ctx, task_id, self.worker, LEASE_SECONDS)

    def _recover(self) -> None:
        """Tasks whose worker is gone: Canceling → Canceled; Scheduled/Processing → re-queued or failed."""
        now = _now()
        with self.rt.engine.connect() as conn:
            conn.info["write"] = True
            with conn.begin():
                active = [int(JobState.SCHEDULED), int(JobState.PROCESSING), int(JobState.CANCELING)]
                rows = conn.execute(select(TASKS.c.account_id, TASKS.c.Id, TASKS.c.State,
                                           task_leases.c.expires, task_leases.c.worker, task_leases.c.attempt)
                                    .select_from(TASKS.outerjoin(task_leases, task_leases.c.task_id == TASKS.c.Id))
                                    .where(TASKS.c.State.in_(active))).all()
                for row in rows:
                    if row.Id in self.running:
                        continue
                    if row.worker == self.worker:
                        continue
                    if row.expires is not None and row.expires > now and not _dead_local_worker(row.worker):
                        continue
                    ctx = self._ctx(conn, row.account_id)
                    if ctx is None:
                        continue
                    self._recover_task(ctx, row.Id, row.State, row.attempt or 0)

    def _recover_task(self, ctx: Ctx, task_id: str, state: int, attempt: int) -> None:
        tasks = _es("Tasks")
        task = ctx.store.get(tasks, task_id)
        if task is None:
            return
        history = list(task.get("HistoricalEvents") or [])
        if state == int(JobState.CANCELING):
            changes = {"State": int(JobState.CANCELED), "EndTime": _now()}
            history.append({"Code": "Canceled", "Message": "The worker stopped while canceling; the task is "
                            "canceled.", "TimeStamp": _now()})
        elif attempt >= MAX_ATTEMPTS:
            changes = {"State": int(JobState.ERROR), "EndTime": _now(), "ErrorDetails": [{
                "Code": "WorkerLost", "Message": f"The worker running this task stopped {attempt} times; "
                "giving up. Check the server logs, then resubmit the job."}]}
            history.append({"Code": "Error", "Message": "Failed after the worker was lost repeatedly.",
                            "TimeStamp": _now()})
        else:
            self._clear_outputs(ctx, task_id)
            changes = {"State": int(JobState.QUEUED), "Progress": 0.0, "StartTime": None}
            history.append({"Code": "Requeued", "Message": f"The worker running this task stopped (attempt "
                            f"{attempt}); the task was queued again and its partial output removed.",
                            "TimeStamp": _now()})
        changes["HistoricalEvents"] = history
        ctx.store.update(tasks, task_id, changes)
        if changes["State"] != int(JobState.QUEUED):
            release_lease(ctx, task_id)
        job_id = job_of(ctx, task_id)
        if changes["State"] == int(JobState.ERROR):
            fail_dependents(ctx, job_id)
        refresh_job_state(ctx, job_id)
        log.warning("recovered task %s: %s", task_id, history[-1]["Message"])

    def _clear_outputs(self, ctx: Ctx, task_id: str) -> None:
        storage = self.rt.storage
        for asset_id in ctx.store.link_targets("task_outputs", task_id):
            asset = ctx.store.get(_es("Assets"), asset_id)
            if asset is None:
                continue
            try:
                blobs, _ = storage.list_blobs(asset["StorageAccountName"], container_name(asset_id))
                for b in blobs:
                    storage.delete_blob(asset["StorageAccountName"], container_name(asset_id), b.name)
            except Exception:
                log.warning("could not clear output asset %s", asset_id, exc_info=True)

    def _claim(self) -> None:
        with self._lock:
            free = self.max_workers - len(self.running)
        if free <= 0:
            return
        claimed_refs: list[TaskRef] = []
        with self.rt.engine.connect() as conn:
            conn.info["write"] = True
            with conn.begin():
                candidates = self._candidates(conn)
                for account_id, task_id, version in candidates:
                    if free <= 0:
                        break
                    claimed = conn.execute(update(TASKS).where(
                        TASKS.c.account_id == account_id, TASKS.c.Id == task_id,
                        TASKS.c.State == int(JobState.QUEUED), TASKS.c._version == version,
                    ).values(State=int(JobState.SCHEDULED), _version=TASKS.c._version + 1)).rowcount
                    if claimed != 1:
                        continue
                    ctx = self._ctx(conn, account_id)
                    assert ctx is not None
                    take_lease(ctx, task_id, self.worker, LEASE_SECONDS)
                    refresh_job_state(ctx, job_of(ctx, task_id))
                    free -= 1
                    claimed_refs.append(TaskRef(account_id, task_id))
        # only once the claim is committed: a runner reading the task must see it Scheduled
        for ref in claimed_refs:
            self._started(ref)

    def _candidates(self, conn: Any) -> list[tuple[str, str, int]]:
        """Queued, submitted tasks whose prerequisites finished, in priority order, within units."""
        busy_rows = conn.execute(select(TASKS.c.account_id, TASKS.c.Id).where(TASKS.c.State.in_(
            [int(JobState.SCHEDULED), int(JobState.PROCESSING), int(JobState.CANCELING)]))).all()
        busy: dict[str, int] = {}
        for r in busy_rows:
            busy[r.account_id] = busy.get(r.account_id, 0) + 1
        units_table = ENTITY_TABLES["EncodingReservedUnitTypes"]
        units = {r.account_id: max(1, r.CurrentReservedUnits or 0)
                 for r in conn.execute(select(units_table.c.account_id, units_table.c.CurrentReservedUnits))}
        job_link = links.alias("jl")
        rows = conn.execute(
            select(TASKS.c.account_id, TASKS.c.Id, TASKS.c._version, JOBS.c.Priority, JOBS.c.Created)
            .select_from(TASKS.join(job_link, (job_link.c.relation == "job_tasks") & (job_link.c.target == TASKS.c.Id)
                                    & (job_link.c.account_id == TASKS.c.account_id))
                         .join(JOBS, (JOBS.c.Id == job_link.c.source) & (JOBS.c.account_id == TASKS.c.account_id)))
            .where(TASKS.c.State == int(JobState.QUEUED))
            .order_by(JOBS.c.Priority.desc(), JOBS.c.Created, TASKS.c._rowid)
            .limit(200)).all()
        out: list[tuple[str, str, int]] = []
        for r in rows:
            if busy.get(r.account_id, 0) >= units.get(r.account_id, 1):
                continue
            ctx = self._ctx(conn, r.account_id)
            if ctx is None or not self._ready(ctx, r.Id):
                continue
            busy[r.account_id] = busy.get(r.account_id, 0) + 1
            out.append((r.account_id, r.Id, r._version))
        return out

    @staticmethod
    def _ready(ctx: Ctx, task_id: str) -> bool:
        if not ctx.store.link_targets("task_outputs", task_id):
            return False  # not submitted yet
        from ..entities.jobs import task_dependencies

        deps = task_dependencies(ctx, job_of(ctx, task_id)).get(task_id, set())
        tasks = _es("Tasks")
        for dep in deps:
            t = ctx.store.get(tasks, dep)
            if t is None or t["State"] != int(JobState.FINISHED):
                return False
        return True

    # ---- running -------------------------------------------------------------------------------
    def _started(self, ref: TaskRef) -> None:
        cancel = threading.Event()
        future = self._dispatch(ref, cancel)
        with self._lock:
            self.running[ref.task_id] = (ref, cancel, future)
        future.add_done_callback(lambda _f: self.wake.set())

    def _run_local(self, ref: TaskRef, cancel: threading.Event) -> Future[Any]:
        assert self._pool is not None
        return self._pool.submit(TaskExecution(self.rt, ref, cancel).run)


def _dead_local_worker(worker: str | None) -> bool:
    """A lease held by a process of this host that no longer exists is dead now, not at expiry."""
    if not worker:
        return True
    import socket

    host, _, rest = worker.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid_text) == os.getpid() and False
