"""Running encoding tasks on Celery workers (`openams worker`) instead of inside `openams serve`.

The database stays the queue and the truth; the broker only carries "run this claimed task" messages.

Server side (`job_runner = "celery"`): `CeleryScheduler` is the ordinary `Scheduler` (claims with
compare-and-set, per-account reserved units, lease recovery) whose `dispatch` publishes
`openams.run_task(account_id, task_id, scheduler=<its lease id>)` to the queue `celery_queue` (default
`openams.tasks`) instead of starting a thread — right after the claim commits, never inside the claim's
transaction (no broker round-trip holds a database lock). While the broker is unreachable the scheduler
claims nothing new and retries the claimed tasks' messages every few seconds. A claimed task keeps the
scheduler's lease (renewed every pass) while its message waits in the broker. The Future that `dispatch`
returns is resolved from the *database*, not from a Celery result backend (none is needed): each
scheduler pass looks at every task it has in flight and completes its Future once the task is final, back
in Queued, or held by a worker whose lease ran out or whose process is gone — then the scheduler's normal
recovery re-queues (or fails) it. A message that was never picked up (a worker killed while holding it
unstarted) is published again after 2, 4, 8 … minutes; duplicates are harmless (below).
`max_concurrent_tasks` is the number of tasks the server keeps in flight on the workers — set it to the
workers' total concurrency.

Worker side (`run_task`): the worker takes the task over with a compare-and-set on its lease (only from
the scheduler that sent the message, only while the task is Scheduled), so a duplicate or stale message —
a redelivery after a worker died, a re-publish, a message of a task canceled while it waited — is dropped
without touching anything. It then runs the same `TaskExecution` as the in-process runner, in a scratch
directory of its own, while a keeper thread polls the task every second (Canceling → sets the cancel
event, which stops FFmpeg within about a second) and renews the lease every 10 s. If the lease is lost
(the worker stalled long enough to be declared dead and the task went elsewhere), the run stops and
writes nothing. Messages are acknowledged late with a prefetch of one, so a worker only holds the
messages it is running.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from ..db.tables import ENTITY_TABLES, task_leases
from .execute import TaskCanceled, TaskExecution, TaskRef, new_worker_id, release_lease
from .runner import LEASE_SECONDS, Scheduler, _dead_local_worker
from .states import FINAL, JobState

log = logging.getLogger("openams.jobs")

TASK_NAME = "openams.run_task"
POLL_SECONDS = 1.0
"""How often a worker looks for a cancel of the task it runs."""
RENEW_SECONDS = 10.0
"""How often a worker renews its lease (leases last `LEASE_SECONDS`)."""
TAKEOVER_WAIT_SECONDS = 15.0
"""How long a worker holding a message for a Queued task waits for it to be claimed (a redelivered message
can arrive while the scheduler is re-queuing and re-claiming the task)."""
RESEND_FIRST_SECONDS = 120.0
RESEND_MAX_SECONDS = 1800.0
BROKER_RETRY_SECONDS = 5.0
POOLS = ("solo", "prefork", "threads")

TASKS = ENTITY_TABLES["Tasks"]


def _now() -> datetime:
    return datetime.now(UTC)


# ---- the Celery application -----------------------------------------------------------------------


def make_app(settings: Any) -> Any:
    """A Celery app for the broker in `settings`, with `openams.run_task` registered."""
    from celery import Celery

    app = Celery("openams", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=settings.celery_queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,  # a worker holds only what it runs (with the prefetch of one)
        task_reject_on_worker_lost=False,  # a lost task is recovered through its lease, not redelivered
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5,
                                   "interval_max": 1},
    )
    app.task(name=TASK_NAME, ignore_result=True)(run_task)
    return app


_default_app: Any = None


def __getattr__(name: str) -> Any:
    """`celery -A openams.jobs.celery_worker worker` finds an app configured from OPENAMS_* settings."""
    global _default_app
    if name in ("app", "celery"):
        if _default_app is None:
            _default_app = make_app(_worker_settings())
        return _default_app
    raise AttributeError(name)


# ---- worker side -----------------------------------------------------------------------------------

_WORKER_SETTINGS: Any = None
_RUNTIME: tuple[int, Any] | None = None
_RUNTIME_LOCK = threading.Lock()


def _worker_settings() -> Any:
    if _WORKER_SETTINGS is not None:
        return _WORKER_SETTINGS
    from ..config import load

    return replace(load(), create_dev_account=False)


def worker_runtime() -> Any:
    """The Runtime of this worker process (built once per process; a forked pool child builds its own)."""
    global _RUNTIME
    with _RUNTIME_LOCK:
        if _RUNTIME is None or _RUNTIME[0] != os.getpid():
            from ..runtime import Runtime

            _RUNTIME = (os.getpid(), Runtime(_worker_settings()))
        return _RUNTIME[1]


def run_task(account_id: str, task_id: str, scheduler: str | None = None) -> str:
    """Celery task: run one claimed task to its end. Returns what happened (for logs)."""
    rt = worker_runtime()
    ref = TaskRef(account_id, task_id)
    me = new_worker_id()
    if not _take_over(rt, ref, scheduler, me):
        return "dropped"
    cancel = threading.Event()
    execution = _WorkerExecution(rt, ref, cancel, me)
    keeper = _LeaseKeeper(rt, ref, me, cancel, execution)
    keeper.start()
    try:
        execution.run()
    finally:
        keeper.stop()
    return "lease lost" if execution.stale else "done"


def _take_over(rt: Any, ref: TaskRef, scheduler: str | None, me: str) -> bool:
    """Move the task's lease from the scheduler that sent the message to this worker (compare-and-set)."""
    deadline = time.monotonic() + TAKEOVER_WAIT_SECONDS
    while True:
        with rt.engine.connect() as conn:
            conn.info["write"] = True
            with conn.begin():
                task = conn.execute(select(TASKS.c.State).where(TASKS.c.account_id == ref.account_id,
                                                                TASKS.c.Id == ref.task_id)).first()
                lease = conn.execute(select(task_leases.c.worker, task_leases.c.expires)
                                     .where(task_leases.c.task_id == ref.task_id)).first()
                if task is None:
                    log.info("task %s no longer exists; message dropped", ref.task_id)
                    return False
                if task.State == int(JobState.SCHEDULED) and lease is not None:
                    owner_ok = lease.worker == scheduler if scheduler else lease.expires <= _now()
                    if owner_ok:
                        taken = conn.execute(task_leases.update().where(
                            task_leases.c.task_id == ref.task_id, task_leases.c.worker == lease.worker,
                        ).values(worker=me, expires=_now() + timedelta(seconds=LEASE_SECONDS))).rowcount
                        if taken == 1:
                            return True
                if task.State != int(JobState.QUEUED):
                    log.info("task %s is %s and leased to %s; message dropped", ref.task_id,
                             JobState(task.State).label, lease.worker if lease else "nobody")
                    return False
        # Queued: a redelivered message can arrive while the task is being re-queued and claimed again
        if time.monotonic() >= deadline:
            log.info("task %s was not claimed for this message within %gs; dropped", ref.task_id,
                     TAKEOVER_WAIT_SECONDS)
            return False
        time.sleep(0.25)


class _Stale(TaskCanceled):
    """This worker no longer owns the task (lease lost, or canceled while its message waited)."""


class _WorkerExecution(TaskExecution):
    """TaskExecution that only writes while this worker holds the task's lease."""

    def __init__(self, rt: Any, ref: TaskRef, cancel: threading.Event, worker: str) -> None:
        super().__init__(rt, ref, cancel)
        self.worker = worker
        self.stale = False
        # a scratch directory per attempt: an FFmpeg orphaned by a killed worker cannot collide with it
        self.scratch = self.scratch.with_name(f"{self.scratch.name}-{uuid.uuid4().hex[:8]}")

    def _owns(self, ctx: Any) -> bool:
        owner = ctx.store.conn.execute(select(task_leases.c.worker)
                                       .where(task_leases.c.task_id == self.ref.task_id)).scalar()
        return bool(owner == self.worker)

    def _start(self, ctx: Any) -> Any:
        task = ctx.store.get(ctx.entity_set("Tasks"), self.ref.task_id)
        if task is None or task["State"] != int(JobState.SCHEDULED) or not self._owns(ctx):
            self.stale = True
            raise _Stale()
        return super()._start(ctx)

    def _check_cancel(self) -> None:
        if self.stale:
            raise _Stale()
        super()._check_cancel()

    def _publish(self, outputs: list[dict[str, Any]], files: list[Any]) -> None:
        if not self.tx(self._owns):
            self.stale = True
            raise _Stale()
        super()._publish(outputs, files)

    def _finish(self, ctx: Any, started: float, files: list[Any]) -> None:
        if not self._owns(ctx):
            self.stale = True
            raise _Stale()
        super()._finish(ctx, started, files)

    def _end(self, ctx: Any, state: JobState, started: float, failure: Any, code: str, message: str) -> None:
        owns = self._owns(ctx)
        if self.stale or not owns:
            self.stale = True
            if owns:  # canceled while its message waited: the cancel already ended the task
                release_lease(ctx, self.ref.task_id)
            log.info("task %s: not run or not finished by this worker (canceled while waiting, or its lease "
                     "was lost); nothing written", self.ref.task_id)
            return
        super()._end(ctx, state, started, failure, code, message)


class _LeaseKeeper:
    """While a task runs: cancel it when the database says Canceling; renew the lease; notice its loss."""

    def __init__(self, rt: Any, ref: TaskRef, worker: str, cancel: threading.Event,
                 execution: _WorkerExecution) -> None:
        self.rt, self.ref, self.worker, self.cancel, self.execution = rt, ref, worker, cancel, execution
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="openams-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        last_renew = time.monotonic()
        while not self._stop.wait(POLL_SECONDS):
            try:
                self._check()
                if time.monotonic() - last_renew >= RENEW_SECONDS:
                    last_renew = time.monotonic()
                    self._renew()
            except Exception:  # a database hiccup: try again next round; the lease has 30 s of slack
                log.warning("lease keeper for task %s: database error", self.ref.task_id, exc_info=True)

    def _check(self) -> None:
        with self.rt.engine.connect() as conn, conn.begin():
            state = conn.execute(select(TASKS.c.State).where(TASKS.c.account_id == self.ref.account_id,
                                                             TASKS.c.Id == self.ref.task_id)).scalar()
        if state is None or state == int(JobState.CANCELING):
            self.cancel.set()

    def _renew(self) -> None:
        with self.rt.engine.connect() as conn:
            conn.info["write"] = True
            with conn.begin():
                renewed = conn.execute(task_leases.update().where(
                    task_leases.c.task_id == self.ref.task_id, task_leases.c.worker == self.worker,
                ).values(expires=_now() + timedelta(seconds=LEASE_SECONDS))).rowcount
        if renewed != 1 and not self._stop.is_set():
            log.warning("task %s: lease lost (the task was recovered elsewhere); stopping", self.ref.task_id)
            self.execution.stale = True
            self.cancel.set()


class WorkerSetupError(Exception):
    """The worker cannot start (its database cannot be reached or migrated)."""


def worker_main(settings: Any, concurrency: int = 1, pool: str | None = None) -> None:
    """Run a Celery worker for openams tasks in this process (blocks until it is shut down)."""
    global _WORKER_SETTINGS
    from ..db.engine import make_engine, migrate

    concurrency = max(1, int(concurrency))
    pool = pool or ("solo" if concurrency == 1 else "prefork")
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)}, not {pool!r}")
    if pool == "solo" and concurrency > 1:
        raise ValueError("the solo pool runs one task at a time; use --pool prefork or threads for more")
    _WORKER_SETTINGS = replace(settings, create_dev_account=False)
    try:  # fail fast on a database that cannot be reached
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.db_url)
        try:
            migrate(engine)
        finally:
            engine.dispose()  # pool children must not inherit open connections
    except Exception as exc:
        raise WorkerSetupError(f"cannot open the database {settings.db_url.split('@')[-1]}: {exc}") from exc
    app = make_app(_WORKER_SETTINGS)
    argv = ["worker", f"--pool={pool}", f"--concurrency={concurrency}",
            f"--loglevel={settings.log_level.upper()}", f"--hostname=openams-{os.getpid()}@%h",
            "--without-gossip", "--without-mingle", f"--queues={settings.celery_queue}"]
    app.worker_main(argv)


# ---- server side -----------------------------------------------------------------------------------


@dataclass
class _InFlight:
    ref: TaskRef
    future: Future[Any]
    sent: float
    """When the task was claimed."""
    resend_after: float
    """When to publish it again if no worker has taken it (infinity: not published yet)."""
    resend_delay: float = RESEND_FIRST_SECONDS


class CeleryScheduler(Scheduler):
    """The scheduler of `openams serve` when tasks run on Celery workers (see the module notes)."""

    def __init__(self, rt: Any) -> None:
        super().__init__(rt, rt.settings.max_concurrent_tasks, dispatch=self._send)
        self.app = make_app(rt.settings)
        self._flight: dict[str, _InFlight] = {}
        self._unpublished: list[str] = []
        self._broker_retry_at = 0.0
        self._broker_down = False

    def stop(self, wait: bool = True) -> None:
        super().stop(wait)
        for item in list(self._flight.values()):
            if not item.future.done():
                item.future.set_result("scheduler stopped")
        self._flight.clear()
        self.app.close()

    def _send(self, ref: TaskRef, _cancel: threading.Event) -> Future[Any]:
        """Called once the claim has committed: note the task; `_claim` publishes it right after."""
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        self._flight[ref.task_id] = _InFlight(ref, future, time.monotonic(), float("inf"))
        self._unpublished.append(ref.task_id)
        return future

    def _claim(self) -> None:
        if time.monotonic() >= self._broker_retry_at:  # claim nothing new while the broker is down
            before = len(self._unpublished)
            try:
                super()._claim()
            except BaseException:  # the claim rolled back: nothing of it may be published
                for task_id in self._unpublished[before:]:
                    item = self._flight.pop(task_id, None)
                    if item is not None and not item.future.done():
                        item.future.set_result("claim rolled back")
                del self._unpublished[before:]
                raise
        self._publish_pending()

    def _publish_pending(self) -> None:
        while self._unpublished:
            if time.monotonic() < self._broker_retry_at:
                return
            item = self._flight.get(self._unpublished[0])
            if item is None or item.future.done():
                self._unpublished.pop(0)
                continue
            try:
                self._publish(item.ref)
            except Exception as exc:  # keep the claim (its lease is renewed); try again shortly
                self._broker_retry_at = time.monotonic() + BROKER_RETRY_SECONDS
                if not self._broker_down:
                    self._broker_down = True
                    log.error("cannot publish tasks to the broker %s (%s: %s); retrying every %gs",
                              self.rt.settings.broker_url.split("@")[-1], type(exc).__name__, exc,
                              BROKER_RETRY_SECONDS)
                return
            if self._broker_down:
                self._broker_down = False
                log.warning("the broker %s is reachable again", self.rt.settings.broker_url.split("@")[-1])
            self._unpublished.pop(0)
            item.resend_after = time.monotonic() + item.resend_delay
            item.resend_delay = min(RESEND_MAX_SECONDS, item.resend_delay * 2)

    def _publish(self, ref: TaskRef) -> None:
        self.app.send_task(TASK_NAME, args=[ref.account_id, ref.task_id], kwargs={"scheduler": self.worker},
                           queue=self.rt.settings.celery_queue)

    def _supervise(self) -> None:
        """Resolve the Futures of tasks that ended or whose worker is gone; renew leases of waiting ones."""
        with self._lock:
            items = list(self.running.items())
        if not items:
            return
        now = _now()
        with self.rt.engine.connect() as conn:
            conn.info["write"] = True
            with conn.begin():
                for _task_id, (ref, _cancel, future) in items:
                    if future.done():
                        continue
                    outcome = self._look(conn, ref, now)
                    if outcome is not None:
                        future.set_result(outcome)
        for task_id, (_ref, _cancel, future) in items:
            if future.done():
                with self._lock:
                    self.running.pop(task_id, None)
                self._flight.pop(task_id, None)

    def _look(self, conn: Any, ref: TaskRef, now: datetime) -> str | None:
        """What became of an in-flight task: an outcome ends its Future, None keeps it in flight."""
        state = conn.execute(select(TASKS.c.State).where(TASKS.c.account_id == ref.account_id,
                                                         TASKS.c.Id == ref.task_id)).scalar()
        lease = conn.execute(select(task_leases.c.worker, task_leases.c.expires)
                             .where(task_leases.c.task_id == ref.task_id)).first()
        if state is None or JobState(state) in FINAL:
            if lease is not None and lease.worker == self.worker:  # ended while its message waited
                conn.execute(task_leases.delete().where(task_leases.c.task_id == ref.task_id,
                                                        task_leases.c.worker == self.worker))
            return "ended"
        if state == int(JobState.QUEUED):
            return "re-queued"
        if lease is None:
            return "lease gone"
        if lease.worker == self.worker:
            # still waiting in the broker: keep the claim alive, publish again if it seems lost
            conn.execute(update(task_leases).where(task_leases.c.task_id == ref.task_id,
                                                   task_leases.c.worker == self.worker)
                         .values(expires=now + timedelta(seconds=LEASE_SECONDS)))
            self._maybe_resend(ref)
            return None
        if lease.expires <= now or _dead_local_worker(lease.worker):
            return "worker lost"
        return None

    def _maybe_resend(self, ref: TaskRef) -> None:
        """Publish a waiting task again (after 2, 4, 8 … minutes): its message may be lost; duplicates are
        dropped by the workers. Publishing happens after this pass's transaction, in `_claim`."""
        item = self._flight.get(ref.task_id)
        if item is None or time.monotonic() < item.resend_after or ref.task_id in self._unpublished:
            return
        waited = time.monotonic() - item.sent
        item.resend_after = float("inf")
        log.warning("task %s has waited %.0fs for a worker; publishing it again", ref.task_id, waited)
        self._unpublished.append(ref.task_id)
