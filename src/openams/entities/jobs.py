"""Jobs and Tasks: submitting encoding work, output assets, chaining, cancel.

A job is created with its tasks (deep insert, `$batch` with `$1/Tasks`, or from a JobTemplate) and
*submitted* when its transaction is complete: every TaskBody is parsed, inputs and outputs are
resolved, output assets (with containers) are created so they can be read at once, and the tasks
are queued for a runner. Anything wrong refuses the whole submission with a 400 naming the task.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import BadRequest, Conflict, NotFound
from ..jobs.states import ACTIVE, FINAL, JobState
from ..odata.payload import EntityPayload
from .base import Ctx, Rules
from .deferred import defer
from .taskbody import OutputSpec, TaskBodySpec, parse_task_body

MAX_TASKS = 30
FINAL_STATES = {int(s) for s in FINAL}


def job_tasks(ctx: Ctx, job_id: str) -> list[dict[str, Any]]:
    es = ctx.entity_set("Tasks")
    return ctx.store.query(es, join_links=("job_tasks", job_id), top=None)


def _history(task: dict[str, Any], code: str, message: str, when: datetime) -> list[dict[str, Any]]:
    return [*(task.get("HistoricalEvents") or []), {"Code": code, "Message": message, "TimeStamp": when}]


class JobRules(Rules):
    set_name = "Jobs"

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        values["State"] = int(JobState.QUEUED)
        values["RunningDuration"] = 0.0
        for sub in values.get("JobNotificationSubscriptions") or []:
            if not sub.get("TargetJobState"):
                raise BadRequest("JobNotificationSubscription.TargetJobState must not be 0")
            if sub["TargetJobState"] not in (1, 2):
                raise BadRequest("JobNotificationSubscription.TargetJobState must be 1 (FinalStatesOnly) or 2 "
                                 "(AllStates).")
            endpoint = sub.get("NotificationEndPointId")
            if not endpoint or not ctx.store.exists(ctx.entity_set("NotificationEndPoints"), endpoint):
                raise NotFound(f"NotificationEndPoint '{endpoint}' does not exist.")
        template_id = values.get("TemplateId")
        if template_id and not ctx.store.exists(ctx.entity_set("JobTemplates"), template_id):
            raise NotFound(f"JobTemplate '{template_id}' does not exist.")

    def after_create(self, ctx: Ctx, entity: dict[str, Any], payload: EntityPayload) -> None:
        job_id = entity["Id"]
        defer(ctx.store.conn, f"submit-job:{job_id}", lambda: submit_job(ctx, job_id))

    def on_update(self, ctx: Ctx, old: dict[str, Any], changes: dict[str, Any]) -> None:
        extra = sorted(set(changes) - {"Name", "Priority"})
        if extra:
            raise BadRequest(f"Only Name and Priority of a job can change, not {', '.join(extra)}.")

    def on_delete(self, ctx: Ctx, entity: dict[str, Any], params: dict[str, str]) -> None:
        from .service import remove_row

        if entity["State"] in {int(s) for s in ACTIVE}:
            raise BadRequest("The job is still active; cancel it (CancelJob) and wait for Canceled first.")
        tasks = ctx.entity_set("Tasks")
        for task in job_tasks(ctx, entity["Id"]):
            remove_row(ctx, tasks, task["Id"])


class TaskRules(Rules):
    set_name = "Tasks"
    can_update = False
    can_delete = False

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        values["State"] = int(JobState.QUEUED)
        processor = values.get("MediaProcessorId")
        if processor and not ctx.store.exists(ctx.entity_set("MediaProcessors"), processor):
            raise BadRequest(f"Task.MediaProcessorId '{processor}' is not a media processor of this account "
                             "(see /api/MediaProcessors).")

    def after_create(self, ctx: Ctx, entity: dict[str, Any], payload: EntityPayload) -> None:
        if not ctx.store.link_sources("job_tasks", entity["Id"]):
            raise BadRequest("Tasks are created as part of a job: POST them inside the Job (deep insert) or to "
                             "Jobs('<id>')/Tasks in the same $batch changeset.")


def submit_job(ctx: Ctx, job_id: str) -> None:
    """Validate a job with all its tasks and create its output assets; leaves it Queued."""
    from . import service

    jobs = ctx.entity_set("Jobs")
    job = ctx.store.get(jobs, job_id)
    if job is None:
        return
    if ctx.store.link_targets("job_outputs", job_id):
        return  # already submitted
    if job.get("TemplateId") and not job_tasks(ctx, job_id):
        _tasks_from_template(ctx, job)
    tasks = job_tasks(ctx, job_id)
    if not tasks:
        raise BadRequest("A job needs at least one task.")
    if len(tasks) > MAX_TASKS:
        raise BadRequest(f"A job may have at most {MAX_TASKS} tasks, not {len(tasks)}.")
    inputs = ctx.store.link_targets("job_inputs", job_id)
    if not inputs:
        raise BadRequest("A job needs at least one input asset (InputMediaAssets).")
    for asset_id in inputs:
        _check_input(ctx, asset_id)
    specs: list[tuple[dict[str, Any], TaskBodySpec]] = []
    for n, task in enumerate(tasks):
        try:
            specs.append((task, parse_task_body(task["TaskBody"])))
        except BadRequest as exc:
            raise BadRequest(f"Task {n} ({task.get('Name') or task['Id']}): {exc.message}") from None
    producers: dict[int, tuple[int, OutputSpec]] = {}
    for n, (_task, spec) in enumerate(specs):
        for out in spec.outputs:
            if out.ref.index in producers:
                raise BadRequest(f"{out.ref} is produced by more than one task.")
            producers[out.ref.index] = (n, out)
    for k in range(len(producers)):
        if k not in producers:
            raise BadRequest(f"JobOutputAsset({k}) is missing: outputs must be numbered from 0 without gaps.")
    for n, (_task, spec) in enumerate(specs):
        for ref in spec.inputs:
            if ref.kind == "input" and ref.index >= len(inputs):
                raise BadRequest(f"Task {n}: {ref} does not exist; the job has {len(inputs)} input asset(s).")
            if ref.kind == "output" and ref.index not in producers:
                raise BadRequest(f"Task {n}: {ref} is not produced by any task of the job.")
    _check_cycles(specs, producers)
    # create the output assets in JobOutputAsset order
    assets = ctx.entity_set("Assets")
    output_ids: dict[int, str] = {}
    for k in sorted(producers):
        _n, out = producers[k]
        name = out.name or f"{out.ref}_{job.get('Name') or job_id}"
        props: dict[str, Any] = {"Name": name, "Options": out.options, "FormatOption": out.format_option}
        if out.storage_account:
            props["StorageAccountName"] = out.storage_account
        asset = service.create(ctx, assets, EntityPayload(properties=props))
        output_ids[k] = asset["Id"]
        ctx.store.add_link("job_outputs", job_id, asset["Id"])
    for task, spec in specs:
        task_inputs = [inputs[r.index] if r.kind == "input" else output_ids[r.index] for r in spec.inputs]
        for asset_id in task_inputs:
            ctx.store.add_link("task_inputs", task["Id"], asset_id)
        for out in spec.outputs:
            ctx.store.add_link("task_outputs", task["Id"], output_ids[out.ref.index])
            for parent in task_inputs:
                if not ctx.store.has_link("asset_parents", output_ids[out.ref.index], parent):
                    ctx.store.add_link("asset_parents", output_ids[out.ref.index], parent)
        ctx.store.update(ctx.entity_set("Tasks"), task["Id"], {
            "HistoricalEvents": _history(task, "Queued", "The task was submitted and waits for a runner.", ctx.now)})
    if ctx.on_job_submitted is not None:
        ctx.on_job_submitted(job_id)


def _check_input(ctx: Ctx, asset_id: str) -> None:
    files = ctx.entity_set("Files")
    rows = ctx.store.query(files, [ctx.store.table(files).c.ParentAssetId == asset_id], top=None)
    if not rows:
        raise BadRequest(f"Input asset '{asset_id}' has no files; upload a file and create its AssetFile "
                         "(or call CreateFileInfos) before submitting the job.")


def _check_cycles(specs: list[tuple[dict[str, Any], TaskBodySpec]], producers: dict[int, tuple[int, OutputSpec]]
                  ) -> None:
    deps = {n: {producers[r.index][0] for r in spec.inputs if r.kind == "output"} for n, (_t, spec) in
            enumerate(specs)}
    state: dict[int, int] = {}

    def visit(n: int) -> None:
        if state.get(n) == 1:
            raise BadRequest("The job's tasks depend on each other in a cycle.")
        if state.get(n) == 2:
            return
        state[n] = 1
        for d in deps[n]:
            visit(d)
        state[n] = 2

    for n in deps:
        visit(n)


def task_dependencies(ctx: Ctx, job_id: str) -> dict[str, set[str]]:
    """For each task, the tasks whose outputs it reads (they must finish first)."""
    tasks = job_tasks(ctx, job_id)
    produced_by: dict[str, str] = {}
    for t in tasks:
        for asset in ctx.store.link_targets("task_outputs", t["Id"]):
            produced_by[asset] = t["Id"]
    return {t["Id"]: {produced_by[a] for a in ctx.store.link_targets("task_inputs", t["Id"]) if a in produced_by}
            for t in tasks}


def _tasks_from_template(ctx: Ctx, job: dict[str, Any]) -> None:
    from ..odata.atom import parse_xml
    from . import service

    template = ctx.store.get(ctx.entity_set("JobTemplates"), job["TemplateId"])
    assert template is not None
    root = parse_xml(template["JobTemplateBody"].encode("utf-8"), what="JobTemplateBody")
    task_templates = ctx.entity_set("TaskTemplates")
    tasks = ctx.entity_set("Tasks")
    jobs = ctx.entity_set("Jobs")
    nav = jobs.entity_type.navigation("Tasks")
    assert nav is not None
    from xml.etree.ElementTree import tostring

    for body in root:
        tt_id = next((v for k, v in body.attrib.items() if k.lower() == "tasktemplateid"), None)
        tt = ctx.store.get(task_templates, tt_id) if tt_id else None
        if tt is None:
            raise BadRequest(f"JobTemplate body references TaskTemplate '{tt_id}', which does not exist.")
        body.attrib.clear()
        xml = tostring(body, encoding="unicode")
        service.create(ctx, tasks, EntityPayload(properties={
            "Name": tt.get("Name"), "Configuration": tt.get("Configuration"), "TaskBody": xml,
            "MediaProcessorId": tt.get("MediaProcessorId"), "Options": tt.get("Options") or 0,
        }), parent=(jobs, job["Id"], nav))


def cancel_job(ctx: Ctx, params: dict[str, Any]) -> None:
    """CancelJob?jobid='…': queued work is canceled at once; running work moves to Canceling."""
    job_id = params.get("jobid")
    if not job_id:
        raise BadRequest("CancelJob needs jobid='nb:jid:UUID:…'.")
    jobs = ctx.entity_set("Jobs")
    job = ctx.store.get(jobs, job_id)
    if job is None:
        raise NotFound(f"No job with id '{job_id}' exists.")
    if job["State"] in FINAL_STATES | {int(JobState.CANCELING)}:
        raise BadRequest(f"The job is already {JobState(job['State']).label}; it cannot be canceled.")
    tasks = ctx.entity_set("Tasks")
    running = False
    for task in job_tasks(ctx, job_id):
        state = JobState(task["State"])
        if state in FINAL:
            continue
        if state == JobState.PROCESSING:
            running = True
            ctx.store.update(tasks, task["Id"], {"State": int(JobState.CANCELING), "HistoricalEvents": _history(
                task, "Canceling", "Cancel requested; stopping the processor.", ctx.now)})
        else:
            ctx.store.update(tasks, task["Id"], {"State": int(JobState.CANCELED), "EndTime": ctx.now,
                                                 "HistoricalEvents": _history(task, "Canceled",
                                                                              "Canceled before it started.", ctx.now)})
    new_state = JobState.CANCELING if running else JobState.CANCELED
    changes: dict[str, Any] = {"State": int(new_state), "LastModified": ctx.now}
    if new_state == JobState.CANCELED:
        changes["EndTime"] = ctx.now
    ctx.store.update(jobs, job_id, changes)
    from ..jobs.notify import job_state_changed

    job_state_changed(ctx, job, job["State"], new_state)
    if ctx.on_job_canceled is not None:
        ctx.on_job_canceled(job_id)


class JobTemplateRules(Rules):
    set_name = "JobTemplates"
    can_update = False

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        if values.get("TemplateType") == 0:
            raise BadRequest("TemplateType 0 (SystemLevel) is reserved; use 1 (AccountLevel).")

    def after_create(self, ctx: Ctx, entity: dict[str, Any], payload: EntityPayload) -> None:
        defer(ctx.store.conn, f"check-template:{entity['Id']}", lambda: _check_template(ctx, entity["Id"]))

    def on_delete(self, ctx: Ctx, entity: dict[str, Any], params: dict[str, str]) -> None:
        from .service import remove_row

        tts = ctx.entity_set("TaskTemplates")
        for tt_id in ctx.store.link_targets("jobtemplate_tasktemplates", entity["Id"]):
            remove_row(ctx, tts, tt_id)


def _check_template(ctx: Ctx, template_id: str) -> None:
    from ..odata.atom import parse_xml

    template = ctx.store.get(ctx.entity_set("JobTemplates"), template_id)
    assert template is not None
    try:
        root = parse_xml(template["JobTemplateBody"].encode("utf-8"), what="JobTemplateBody")
    except Exception as exc:
        raise BadRequest(f"JobTemplateBody is not valid XML: {getattr(exc, 'message', exc)}") from None
    linked = set(ctx.store.link_targets("jobtemplate_tasktemplates", template_id))
    seen: set[str] = set()
    for body in root:
        tt_id = next((v for k, v in body.attrib.items() if k.lower() == "tasktemplateid"), None)
        if not tt_id:
            raise BadRequest("Every <taskBody> of a JobTemplateBody needs a taskTemplateId attribute.")
        match = next((t for t in linked if t.lower() == tt_id.lower()), None)
        if match is None:
            raise BadRequest(f"JobTemplateBody names TaskTemplate '{tt_id}', which is not part of this template.")
        if match in seen:
            raise Conflict(f"TaskTemplate '{tt_id}' appears twice in the JobTemplateBody.")
        seen.add(match)
    if seen != linked:
        raise BadRequest("Every TaskTemplate of the template must have a <taskBody> in JobTemplateBody.")


class TaskTemplateRules(Rules):
    set_name = "TaskTemplates"
    can_update = False
    can_delete = False

    def after_create(self, ctx: Ctx, entity: dict[str, Any], payload: EntityPayload) -> None:
        if not ctx.store.link_sources("jobtemplate_tasktemplates", entity["Id"]):
            raise BadRequest("TaskTemplates are created as part of a JobTemplate.")


class NotificationEndPointRules(Rules):
    set_name = "NotificationEndPoints"

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        kind = values.get("EndPointType")
        address = values.get("EndPointAddress") or ""
        if kind == 3:
            if not address.startswith(("http://", "https://")):
                raise BadRequest("A WebHook NotificationEndPoint needs an http(s) URL as EndPointAddress.")
        elif kind == 1:
            import re

            if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]", address):
                raise BadRequest("An AzureQueue NotificationEndPoint needs a queue name (3-63 lower-case letters, "
                                 "digits and single hyphens) as EndPointAddress.")
        else:
            raise BadRequest("EndPointType must be 1 (AzureQueue) or 3 (WebHook).")

    def on_delete(self, ctx: Ctx, entity: dict[str, Any], params: dict[str, str]) -> None:
        jobs = ctx.entity_set("Jobs")
        active = [int(s) for s in ACTIVE]
        for job in ctx.store.query(jobs, [ctx.store.table(jobs).c.State.in_(active)], top=None):
            for sub in job.get("JobNotificationSubscriptions") or []:
                if sub.get("NotificationEndPointId") == entity["Id"]:
                    raise Conflict("An active job still notifies this endpoint; wait for it to finish.")

