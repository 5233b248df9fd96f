"""The job lifecycle as Python sees it; the database's enum and transition table rule."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    DEAD = "dead"
    CANCELED = "canceled"


class AttemptOutcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"
    LOST = "lost"


TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.DEAD, JobStatus.CANCELED}
)
ACTIVE: frozenset[JobStatus] = frozenset(JobStatus) - TERMINAL

# Mirrors jobqueue.job_transition (a test compares the two): (from, to) -> event.
TRANSITIONS: dict[tuple[JobStatus, JobStatus], str] = {
    (JobStatus.WAITING, JobStatus.QUEUED): "released",
    (JobStatus.WAITING, JobStatus.CANCELED): "canceled",
    (JobStatus.QUEUED, JobStatus.RUNNING): "started",
    (JobStatus.QUEUED, JobStatus.CANCELED): "canceled",
    (JobStatus.RUNNING, JobStatus.COMPLETED): "completed",
    (JobStatus.RUNNING, JobStatus.RETRYING): "retry_scheduled",
    (JobStatus.RUNNING, JobStatus.DEAD): "dead",
    (JobStatus.RUNNING, JobStatus.CANCELED): "canceled",
    (JobStatus.RETRYING, JobStatus.RUNNING): "started",
    (JobStatus.RETRYING, JobStatus.CANCELED): "canceled",
    (JobStatus.DEAD, JobStatus.QUEUED): "retried",
    (JobStatus.CANCELED, JobStatus.QUEUED): "retried",
}
