"""Running one task: inputs out of storage, the processor in a scratch directory, outputs back in.

The same function runs under the in-process runner and under Celery workers. The database holds the
truth: every state change is its own short transaction through the entity layer's store, and a
task ends in exactly one final state — Finished, Error (with ErrorDetails a person can act on) or
Canceled. A failed or canceled task leaves no half-written output behind.

Storage-encrypted inputs (asset Options 1, files uploaded as AES-256-CTR ciphertext, spec §3.11)
are decrypted while they are copied into scratch, chunk by chunk, with the asset's
StorageEncryption content key and each file's InitializationVector: FFmpeg only ever sees clear
media, and no whole file is held in memory. Outputs are written in clear (see `_publish`).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..db.store import Store
from ..entities.assets import container_name
from ..entities.base import Ctx
from ..entities.files import is_storage_encrypted, same_key_id
from ..model import MODEL
from ..model.catalogue import DEFAULT_MEDIA_PROCESSOR_ID
from ..packaging.storage_crypto import CtrStream, StorageCryptoError, parse_iv
from .states import FINAL, JobState, job_state

log = logging.getLogger("openams.jobs")

CHUNK = 1024 * 1024
MES_ID = DEFAULT_MEDIA_PROCESSOR_ID


class TaskFailed(Exception):
    """A task failure with the ErrorDetail code and message to record."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class TaskCanceled(Exception):
    pass


@dataclass
class TaskRef:
    account_id: str
    task_id: str


@dataclass(frozen=True)
class InputKey:
    """An input asset's StorageEncryption key as the task needs it: the clear key, or why there is
    none (said only if an encrypted file is actually read). Never logged: `repr` hides the key."""

    key_id: str | None = None
    key: bytes = dataclasses.field(default=b"", repr=False)
    problem: str = ""


def _now() -> datetime:
    return datetime.now(UTC)


def _es(name: str) -> Any:
    es = MODEL.entity_set(name)
    assert es is not None
    return es


class TaskExecution:
    """Everything needed to run one claimed task."""

    def __init__(self, rt: Any, ref: TaskRef, cancel: threading.Event) -> None:
        self.rt = rt
        self.ref = ref
        self.cancel = cancel
        self.scratch = rt.settings.data_dir / "scratch" / ref.task_id.rsplit(":", 1)[-1]
        self._last_progress = 0.0

    # ---- database helpers ----------------------------------------------------------------------
    def tx(self, fn: Callable[[Ctx], Any]) -> Any:
        with self.rt.engine.connect() as conn:
            conn.info["write"] = True
            with conn.begin():
                account = self.rt.accounts.by_id(conn, self.ref.account_id)
                if account is None:
                    raise TaskFailed("AccountDeleted", "The account was deleted while the task ran.")
                ctx = Ctx(Store(conn, account.id, MODEL), account, self.rt.settings, storage=self.rt.storage)
                return fn(ctx)

    def _event(self, task: dict[str, Any], code: str, message: str) -> list[dict[str, Any]]:
        return [*(task.get("HistoricalEvents") or []), {"Code": code, "Message": message, "TimeStamp": _now()}]

    def set_task(self, ctx: Ctx, changes: dict[str, Any], event: tuple[str, str] | None = None) -> dict[str, Any]:
        tasks = _es("Tasks")
        task = ctx.store.get(tasks, self.ref.task_id)
        if task is None:
            raise TaskCanceled()
        if event:
            changes = {**changes, "HistoricalEvents": self._event(task, *event)}
        ctx.store.update(tasks, self.ref.task_id, changes)
        task.update(changes)
        refresh_job_state(ctx, job_of(ctx, self.ref.task_id))
        return task

    # ---- the run -------------------------------------------------------------------------------
    def run(self) -> None:
        started = time.monotonic()
        shutil.rmtree(self.scratch, ignore_errors=True)  # what an attempt in a killed process left behind
        try:
            task, inputs, outputs = self.tx(self._start)
            self._check_cancel()
            if task["MediaProcessorId"].lower() != MES_ID.lower():
                raise TaskFailed("UnsupportedMediaProcessor", f"Media processor {task['MediaProcessorId']} cannot "
                                 "run here; use Media Encoder Standard.")
            result_files = self._process(task, inputs)
            self._check_cancel()
            self._publish(outputs, result_files)
            self.tx(lambda ctx: self._finish(ctx, started, result_files))
        except TaskCanceled:
            self.tx(lambda ctx: self._end(ctx, JobState.CANCELED, started, None, "Canceled",
                                          "The task was canceled."))
        except TaskFailed as exc:
            log.info("task %s failed: %s %s", self.ref.task_id, exc.code, exc.message)
            failed = exc
            self.tx(lambda ctx: self._end(ctx, JobState.ERROR, started, failed, "Error", failed.message))
        except Exception as exc:  # a bug or an environment failure: still end in Error, say what happened
            log.exception("task %s crashed", self.ref.task_id)
            failure = TaskFailed("ProcessorCrash", f"The processor failed unexpectedly: {type(exc).__name__}: {exc}")
            self.tx(lambda ctx: self._end(ctx, JobState.ERROR, started, failure, "Error", failure.message))
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise TaskCanceled()

    def _start(self, ctx: Ctx) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        current = ctx.store.get(_es("Tasks"), self.ref.task_id)
        if current is None or current["State"] != int(JobState.SCHEDULED):
            raise TaskCanceled()  # canceled (or taken over) between the claim and the start
        task = self.set_task(ctx, {"State": int(JobState.PROCESSING), "StartTime": _now(), "Progress": 0.0},
                             ("Processing", "The processor started."))
        assets = _es("Assets")
        inputs = [ctx.store.get(assets, a) for a in ctx.store.link_targets("task_inputs", self.ref.task_id)]
        outputs = [ctx.store.get(assets, a) for a in ctx.store.link_targets("task_outputs", self.ref.task_id)]
        if any(a is None for a in inputs):
            raise TaskFailed("InputAssetMissing", "An input asset of the task was deleted before it ran.")
        if any(a is None for a in outputs):
            raise TaskFailed("OutputAssetMissing", "An output asset of the task was deleted before it ran.")
        for a in inputs:
            files = ctx.store.query(_es("Files"), [ctx.store.table(_es("Files")).c.ParentAssetId == a["Id"]], top=None)
            a["__files"] = files
            a["__storage_key"] = _input_key(ctx, a, files)
        return task, inputs, outputs  # type: ignore[return-value]

    def _process(self, task: dict[str, Any], inputs: list[dict[str, Any]]) -> list[Path]:
        from ..media.encode import encode as media_encode_fn
        from ..media.errors import (
            FFmpegError,
            FFmpegNotFoundError,
            MediaError,
            NotMediaError,
            PresetError,
            UnsafeInputError,
        )

        configuration = (task.get("Configuration") or "").strip()
        if not configuration:
            raise TaskFailed("PresetMissing", "Task.Configuration is empty; name a preset such as "
                             "'Adaptive Streaming' or give a JSON/XML preset.")
        in_dir = self.scratch / "in"
        out_dir = self.scratch / "out"
        in_dir.mkdir(parents=True, exist_ok=True)
        local_inputs = [self._fetch(asset, in_dir, n) for n, asset in enumerate(inputs)]
        self._check_cancel()
        try:
            result = media_encode_fn(configuration, local_inputs, out_dir, self._progress, self.cancel,
                                         basename=local_inputs[0].stem)
        except PresetError as exc:
            raise TaskFailed("PresetError", f"The preset is not valid: {'; '.join(exc.problems)}") from None
        except (UnsafeInputError, NotMediaError) as exc:
            raise TaskFailed("InvalidInput", str(exc)) from None
        except FFmpegNotFoundError as exc:
            raise TaskFailed("ProcessorUnavailable", str(exc)) from None
        except FFmpegError as exc:
            if self.cancel.is_set():
                raise TaskCanceled() from None
            tail = getattr(exc, "stderr_tail", "")
            if "No space left" in tail:
                raise TaskFailed("OutOfDisk", "The server ran out of disk space while encoding.") from None
            raise TaskFailed("EncoderError", f"{exc}{(': ' + tail.strip().splitlines()[-1]) if tail.strip() else ''}") \
                from None
        except MediaError as exc:
            if self.cancel.is_set():
                raise TaskCanceled() from None
            raise TaskFailed("MediaError", str(exc)) from None
        except OSError as exc:
            if exc.errno == 28:
                raise TaskFailed("OutOfDisk", "The server ran out of disk space while encoding.") from None
            raise
        self._perf = result.perf
        return list(result.files)

    def _fetch(self, asset: dict[str, Any], in_dir: Path, n: int) -> Path:
        files = asset["__files"]
        if not files:
            raise TaskFailed("InputAssetEmpty", f"Input asset '{asset['Name'] or asset['Id']}' has no files.")
        primary = [f for f in files if f.get("IsPrimary")]
        chosen = primary[0] if primary else (files[0] if len(files) == 1 else None)
        if chosen is None:
            media = [f for f in files if f["Name"].lower().endswith((".mp4", ".mov", ".mkv", ".ts", ".m4v", ".wmv",
                                                                       ".avi", ".mxf", ".webm", ".m4a", ".wav"))]
            if not media:
                raise TaskFailed("NoPrimaryFile", f"Input asset '{asset['Name'] or asset['Id']}' has several files "
                                 "and none is primary; set IsPrimary on one.")
            chosen = max(media, key=lambda f: f.get("ContentFileSize") or 0)
        storage = self.rt.storage
        if chosen["Name"].lower().endswith(".ism"):
            chosen = self._manifest_source(asset, files, chosen)
        # one directory per input, the file under its own name: error messages quote it as uploaded
        target = in_dir / str(n) / Path(chosen["Name"]).name
        target.parent.mkdir(exist_ok=True)
        props = storage.properties(asset["StorageAccountName"], container_name(asset["Id"]), chosen["Name"])
        if props is None:
            raise TaskFailed("InputFileMissing", f"File '{chosen['Name']}' of the input asset was not uploaded "
                             "(no blob with that name).")
        decrypt = self._decryptor(asset, chosen)
        with open(target, "wb") as fh:
            if props.size:
                for chunk in storage.read(asset["StorageAccountName"], container_name(asset["Id"]), chosen["Name"],
                                          0, props.size - 1):
                    fh.write(decrypt.update(chunk) if decrypt is not None else chunk)
                    self._check_cancel()
        return target

    def _decryptor(self, asset: dict[str, Any], file: dict[str, Any]) -> CtrStream | None:
        """A decryptor from offset 0 for a storage-encrypted input file, None for a clear one;
        TaskFailed (with what to fix) when the key or the IV is missing or unusable."""
        if not is_storage_encrypted(file, asset.get("Options")):
            return None
        what = f"File '{file['Name']}' of input asset '{asset['Name'] or asset['Id']}'"
        found: InputKey = asset.get("__storage_key") or InputKey(problem="the asset's StorageEncryption key was not "
                                                                          "loaded")
        if not found.key:
            raise TaskFailed("StorageKeyMissing", f"{what} is storage-encrypted and cannot be decrypted: "
                             f"{found.problem}")
        if file.get("EncryptionKeyId") and not same_key_id(file["EncryptionKeyId"], found.key_id):
            raise TaskFailed("StorageKeyMismatch", f"{what} was encrypted with key '{file['EncryptionKeyId']}', but "
                             f"the asset's StorageEncryption key is '{found.key_id}'.")
        iv = file.get("InitializationVector")
        if iv in (None, ""):
            raise TaskFailed("StorageEncryptionInvalid", f"{what} is storage-encrypted but has no "
                             "InitializationVector; set it (the decimal 64-bit IV used to encrypt it).")
        try:
            return CtrStream(found.key, parse_iv(str(iv)))
        except StorageCryptoError as exc:
            raise TaskFailed("StorageEncryptionInvalid", f"{what} cannot be decrypted: {exc}") from None

    def _manifest_source(self, asset: dict[str, Any], files: list[dict[str, Any]], ism: dict[str, Any]
                         ) -> dict[str, Any]:
        """An encoded asset as input (a chained task): its primary file is the server manifest, which
        is not media. Encode from the first file the manifest lists (the highest-bitrate video), else
        from the largest MP4 of the asset."""
        import re

        by_name = {f["Name"]: f for f in files}
        storage = self.rt.storage
        account, container = asset["StorageAccountName"], container_name(asset["Id"])
        props = storage.properties(account, container, ism["Name"])
        text = ""
        if props is not None and 0 < props.size <= CHUNK:
            raw = b"".join(storage.read(account, container, ism["Name"], 0, props.size - 1))
            decrypt = self._decryptor(asset, ism)
            text = (decrypt.update(raw) if decrypt is not None else raw).decode("utf-8", "replace")
        for src in re.findall(r"<(?:video|audio)\b[^>]*?\bsrc=\"([^\"]+)\"", text):
            if src in by_name:
                return by_name[src]
        mp4s = [f for f in files if f["Name"].lower().endswith(".mp4")]
        if not mp4s:
            raise TaskFailed("NoPrimaryFile", f"Input asset '{asset['Name'] or asset['Id']}' has a manifest "
                             f"({ism['Name']}) as its primary file but no MP4 to encode from.")
        return max(mp4s, key=lambda f: int(f.get("ContentFileSize") or 0))

    def _progress(self, percent: float) -> None:
        now = time.monotonic()
        if now - self._last_progress < 1.0 and percent < 100:
            return
        self._last_progress = now
        try:
            state = self.tx(lambda ctx: self._save_progress(ctx, percent))
        except Exception:  # progress is best effort; the final state is not
            log.debug("progress update failed", exc_info=True)
            return
        if state == int(JobState.CANCELING):
            self.cancel.set()

    def _save_progress(self, ctx: Ctx, percent: float) -> int:
        tasks = _es("Tasks")
        task = ctx.store.get(tasks, self.ref.task_id)
        if task is None:
            return int(JobState.CANCELING)
        ctx.store.update(tasks, self.ref.task_id, {"Progress": round(min(percent, 99.9), 1)})
        return int(task["State"])

    def _publish(self, outputs: list[dict[str, Any]], files: list[Path]) -> None:
        """Copy results into the first output asset's container (all-or-nothing).

        Always in clear, with AssetFiles saying IsEncrypted false — also when the output asset was
        created StorageEncrypted (`assetCreationOptions="StorageEncrypted"`): encrypting at rest
        would need a new StorageEncryption key made by the service, and the asset's Options still
        make the origin require a delivery policy before it streams the output."""
        if not outputs:
            return
        asset = outputs[0]
        storage = self.rt.storage
        account, container = asset["StorageAccountName"], container_name(asset["Id"])
        from ..storage.base import ContentSettings

        written: list[str] = []
        try:
            for path in files:
                self._check_cancel()
                with storage.spool() as spool, open(path, "rb") as src:
                    while chunk := src.read(CHUNK):
                        spool.write(chunk)
                    storage.put_blob(account, container, path.name, spool,
                                     ContentSettings(content_type=_mime(path.name)), {})
                written.append(path.name)
        except BaseException:
            for name in written:
                try:
                    storage.delete_blob(account, container, name)
                except Exception:  # best effort cleanup
                    log.warning("could not remove partial output %s", name)
            raise
        self._output_asset = asset

    def _finish(self, ctx: Ctx, started: float, files: list[Path]) -> None:
        from ..entities.file_infos import create_file_infos

        asset = getattr(self, "_output_asset", None)
        if asset is not None:
            create_file_infos(ctx, {"assetid": asset["Id"]})
            ism = [p.name for p in files if p.name.endswith(".ism")]
            if ism:
                f = _es("Files")
                for row in ctx.store.query(f, [ctx.store.table(f).c.ParentAssetId == asset["Id"]], top=None):
                    ctx.store.update(f, row["Id"], {"IsPrimary": row["Name"] == ism[0]})
        self.set_task(ctx, {"State": int(JobState.FINISHED), "Progress": 100.0, "EndTime": _now(),
                            "RunningDuration": round(time.monotonic() - started, 3),
                            "PerfMessage": getattr(self, "_perf", None)},
                      ("Finished", "The task finished."))
        release_lease(ctx, self.ref.task_id)

    def _end(self, ctx: Ctx, state: JobState, started: float, failure: TaskFailed | None, code: str,
             message: str) -> None:
        changes: dict[str, Any] = {"State": int(state), "EndTime": _now(),
                                   "RunningDuration": round(time.monotonic() - started, 3)}
        if failure is not None:
            changes["ErrorDetails"] = [{"Code": failure.code, "Message": failure.message}]
        self.set_task(ctx, changes, (code, message))
        release_lease(ctx, self.ref.task_id)
        if state == JobState.ERROR:
            fail_dependents(ctx, job_of(ctx, self.ref.task_id))


def _input_key(ctx: Ctx, asset: dict[str, Any], files: list[dict[str, Any]]) -> InputKey | None:
    """The StorageEncryption key of an input asset with storage-encrypted files (None when no file
    is encrypted). Unwrapped here, in the task's start transaction; a problem is kept as a message
    so that only reading an encrypted file fails the task."""
    from ..entities import content_keys
    from ..errors import ApiError

    if not any(is_storage_encrypted(f, asset.get("Options")) for f in files):
        return None
    keys_es = _es("ContentKeys")
    linked = [ctx.store.get(keys_es, k) for k in ctx.store.link_targets(content_keys.LINK, asset["Id"])]
    storage = next((k for k in linked if k is not None and k.get("ContentKeyType") == content_keys.STORAGE), None)
    if storage is None:
        return InputKey(problem="the asset has no StorageEncryption content key linked "
                                "(Assets('id')/$links/ContentKeys).")
    try:
        key = content_keys.clear_key(ctx.store, ctx.account, storage["Id"], settings=ctx.settings)
    except ApiError as exc:
        return InputKey(storage["Id"], problem=exc.message)
    return InputKey(storage["Id"], key)


def _mime(name: str) -> str:
    import mimetypes

    if name.endswith(".ism"):
        return "application/octet-stream"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def job_of(ctx: Ctx, task_id: str) -> str:
    sources = ctx.store.link_sources("job_tasks", task_id)
    return sources[0] if sources else ""


def refresh_job_state(ctx: Ctx, job_id: str) -> None:
    """Derive the job's state, StartTime, EndTime and RunningDuration from its tasks."""
    if not job_id:
        return
    from ..entities.jobs import job_tasks

    jobs = _es("Jobs")
    job = ctx.store.get(jobs, job_id)
    if job is None:
        return
    tasks = job_tasks(ctx, job_id)
    new = job_state([t["State"] for t in tasks], canceling=job["State"] == int(JobState.CANCELING))
    changes: dict[str, Any] = {}
    if new != job["State"]:
        changes["State"] = int(new)
    starts = [t["StartTime"] for t in tasks if t.get("StartTime")]
    if starts and job.get("StartTime") is None:
        changes["StartTime"] = min(starts)
    if new in FINAL and job.get("EndTime") is None:
        changes["EndTime"] = _now()
        first = job.get("StartTime") or (min(starts) if starts else None)
        if first is not None:
            changes["RunningDuration"] = round((changes["EndTime"] - first).total_seconds(), 3)
    if changes:
        changes["LastModified"] = _now()
        ctx.store.update(jobs, job_id, changes)
        if "State" in changes:
            from .notify import job_state_changed

            job_state_changed(ctx, job, job["State"], changes["State"])


def fail_dependents(ctx: Ctx, job_id: str) -> None:
    """Tasks waiting on a failed task's output can never run: end them in Error, saying why."""
    from ..entities.jobs import job_tasks, task_dependencies

    deps = task_dependencies(ctx, job_id)
    states = {t["Id"]: t for t in job_tasks(ctx, job_id)}
    changed = True
    while changed:
        changed = False
        for tid, needs in deps.items():
            t = states[tid]
            if t["State"] in (int(JobState.QUEUED), int(JobState.SCHEDULED)) and any(
                    states[n]["State"] in (int(JobState.ERROR), int(JobState.CANCELED)) for n in needs):
                changes = {"State": int(JobState.ERROR), "EndTime": _now(), "ErrorDetails": [{
                    "Code": "DependencyFailed", "Message": "A task whose output this task reads did not finish."}]}
                ctx.store.update(_es("Tasks"), tid, changes)
                t.update(changes)
                changed = True
    refresh_job_state(ctx, job_id)


# ---- leases ------------------------------------------------------------------------------------


def take_lease(ctx: Ctx, task_id: str, worker: str, seconds: int) -> int:
    from sqlalchemy import select

    from ..db.tables import task_leases

    row = ctx.store.conn.execute(select(task_leases).where(task_leases.c.task_id == task_id)).first()
    attempt = (row.attempt + 1) if row else 1
    if row:
        ctx.store.conn.execute(task_leases.delete().where(task_leases.c.task_id == task_id))
    from datetime import timedelta

    ctx.store.conn.execute(task_leases.insert().values(task_id=task_id, account_id=ctx.account.id, worker=worker,
                                                       expires=_now() + timedelta(seconds=seconds), attempt=attempt))
    return attempt


def renew_lease(ctx: Ctx, task_id: str, worker: str, seconds: int) -> None:
    from datetime import timedelta

    from ..db.tables import task_leases

    ctx.store.conn.execute(task_leases.update().where(task_leases.c.task_id == task_id,
                                                      task_leases.c.worker == worker)
                           .values(expires=_now() + timedelta(seconds=seconds)))


def release_lease(ctx: Ctx, task_id: str) -> None:
    from ..db.tables import task_leases

    ctx.store.conn.execute(task_leases.delete().where(task_leases.c.task_id == task_id))


def new_worker_id() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
