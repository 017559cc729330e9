"""The AMS job and task state machine, in one place.

Jobs and tasks share the JobState numbers (the SDK reads task states as JobState). A job's state is
derived from its tasks: any Error → Error; all Finished → Finished; Canceling while a cancel is in
progress; Canceled once no task is running after a cancel.
"""

from __future__ import annotations

from enum import IntEnum


class JobState(IntEnum):
    QUEUED = 0
    SCHEDULED = 1
    PROCESSING = 2
    FINISHED = 3
    ERROR = 4
    CANCELED = 5
    CANCELING = 6

    @property
    def label(self) -> str:
        """The AMS name (`Queued`, `Processing`…), as notifications spell it."""
        return self.name.capitalize()


FINAL = frozenset({JobState.FINISHED, JobState.ERROR, JobState.CANCELED})
ACTIVE = frozenset({JobState.QUEUED, JobState.SCHEDULED, JobState.PROCESSING, JobState.CANCELING})

# allowed task transitions
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.SCHEDULED, JobState.PROCESSING, JobState.CANCELED, JobState.ERROR}),
    JobState.SCHEDULED: frozenset({JobState.PROCESSING, JobState.QUEUED, JobState.CANCELED, JobState.ERROR}),
    JobState.PROCESSING: frozenset({JobState.FINISHED, JobState.ERROR, JobState.CANCELING, JobState.QUEUED}),
    JobState.CANCELING: frozenset({JobState.CANCELED, JobState.ERROR, JobState.FINISHED}),
    JobState.FINISHED: frozenset(),
    JobState.ERROR: frozenset(),
    JobState.CANCELED: frozenset(),
}


def can_move(old: int, new: int) -> bool:
    return JobState(new) in TRANSITIONS[JobState(old)]


def job_state(task_states: list[int], canceling: bool = False) -> JobState:
    """Aggregate task states into the job's state."""
    states = [JobState(s) for s in task_states]
    if not states:
        return JobState.QUEUED
    if any(s == JobState.ERROR for s in states) and all(s in FINAL for s in states):
        return JobState.ERROR
    if canceling or any(s == JobState.CANCELING for s in states):
        return JobState.CANCELED if all(s in FINAL for s in states) else JobState.CANCELING
    if any(s == JobState.CANCELED for s in states) and all(s in FINAL for s in states):
        return JobState.CANCELED
    if all(s == JobState.FINISHED for s in states):
        return JobState.FINISHED
    if any(s == JobState.ERROR for s in states):
        return JobState.PROCESSING if any(s == JobState.PROCESSING for s in states) else JobState.ERROR
    if any(s in (JobState.PROCESSING, JobState.FINISHED) for s in states):
        return JobState.PROCESSING
    if any(s == JobState.SCHEDULED for s in states):
        return JobState.SCHEDULED
    return JobState.QUEUED
