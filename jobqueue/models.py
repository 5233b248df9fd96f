"""What the engine's SQL functions answer with, as typed records."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Self, cast

from jobqueue.states import AttemptOutcome, JobStatus


class Record:
    """A row of a SQL function's result, by column name."""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        names = _field_names(cast(type, cls))
        if row.keys() == names:
            return cls(**row)
        return cls(**{k: v for k, v in row.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601, durations in seconds."""
        out: dict[str, Any] = {}
        # Shallow: asdict() would deep-copy params and results, recursing twice per level of
        # nesting, and no field holds another record.
        for field in fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, timedelta):
                value = value.total_seconds()
            out[field.name] = value
        return out


@cache
def _field_names(record: type) -> frozenset[str]:
    # Once per record type: a batch of a thousand jobs otherwise reads the dataclass's
    # fields a thousand times, which cost more than the rows' own decoding.
    return frozenset(f.name for f in fields(record))


@dataclass(frozen=True, slots=True)
class Job(Record):
    id: int
    job_type: str
    organization: str
    queue: str
    status: JobStatus
    priority: int
    params: dict[str, Any]
    attempt: int
    max_retries: int
    timeout: timedelta
    run_at: datetime
    next_retry_at: datetime | None
    progress: int | None
    progress_message: str | None
    result: Any
    last_error: str | None
    cancel_requested: bool
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    depends_on: list[int]
    duplicate: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", JobStatus(self.status))


@dataclass(frozen=True, slots=True)
class Attempt(Record):
    attempt: int
    organization: str
    job_type: str
    worker_id: int | None
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    outcome: AttemptOutcome | None
    error: str | None
    traceback: str | None
    late_outcome: dict[str, Any] | None

    def __post_init__(self) -> None:
        if self.outcome is not None:
            object.__setattr__(self, "outcome", AttemptOutcome(self.outcome))


@dataclass(frozen=True, slots=True)
class JobType(Record):
    name: str
    handler: str
    queue: str
    priority: int
    timeout: timedelta
    max_retries: int
    backoff_base: timedelta
    backoff_max: timedelta
    dedup_window: timedelta | None
    rate_limit: int | None
    rate_period: timedelta | None
    enabled: bool
    created_at: datetime
    updated_at: datetime
    execution: str | None = None  # "inline", "process", or None: the worker's choice


@dataclass(frozen=True, slots=True)
class Organization(Record):
    id: int
    organization: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Membership(Record):
    user_name: str
    organization_name: str
    member_role: str
    active: bool


@dataclass(frozen=True, slots=True)
class User(Record):
    id: int
    user_name: str
    is_admin: bool


@dataclass(frozen=True, slots=True)
class NewToken(Record):
    """A freshly created API token; ``secret`` is shown this once and stored only hashed."""

    token_id: int
    user_name: str
    token_name: str
    secret: str
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Token(Record):
    """An API token or browser session as ``list_tokens`` shows it: never its secret."""

    token_id: int
    user_name: str
    token_name: str
    kind: str  # "token" or "session"
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Session(Record):
    """A browser session issued at sign-in; ``secret`` goes into the session cookie."""

    user_name: str
    is_admin: bool
    token_id: int
    secret: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Credential(Record):
    """Who a secret passed to ``check_credentials`` still authenticates as (``ord``: its
    1-based position), and the organization ids it sees (None: every one)."""

    ord: int
    user_name: str
    is_admin: bool
    organizations: list[int] | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Identity(Record):
    """Who an API token belongs to."""

    user_name: str
    is_admin: bool
    token_id: int


@dataclass(frozen=True, slots=True)
class Event(Record):
    id: int
    org_id: int
    org: str
    job: int | None
    type: str
    data: dict[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class FinishResult(Record):
    job_id: int
    attempt: int
    accepted: bool
    status: JobStatus | None


@dataclass(frozen=True, slots=True)
class Schedule(Record):
    """A recurring job: what it submits, when (cron in a time zone), and how it last went."""

    id: int
    name: str
    organization: str
    job_type: str
    params: dict[str, Any]
    priority: int | None
    dedup: bool
    cron: str
    timezone: str
    enabled: bool
    missed: str
    catch_up_limit: int
    grace: timedelta
    next_run_at: datetime | None
    last_tick_at: datetime | None
    last_run_at: datetime | None
    last_job_id: int | None
    last_job_status: str | None
    last_error: str | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class QueuePause(Record):
    """What pause_queue / resume_queue changed: a queue, for everyone or one organization."""

    queue_name: str
    organization_name: str | None
    paused: bool


@dataclass(frozen=True, slots=True)
class QueueSettings(Record):
    """A queue's pause and caps (None: no cap)."""

    queue: str
    paused: bool
    concurrency: int | None
    organization_concurrency: int | None


@dataclass(frozen=True, slots=True)
class OrganizationSettings(Record):
    """One organization's own settings in one queue."""

    queue: str
    organization: str
    paused: bool
    concurrency: int | None
    weight: int


@dataclass(frozen=True, slots=True)
class JobTypeSettings(Record):
    """A job type's running cap (all organizations) and start limit (per organization)."""

    job_type: str
    concurrency: int | None
    start_limit: int | None
    start_period: timedelta | None


@dataclass(frozen=True, slots=True)
class QueueInfo(Record):
    """A queue: its settings, and the running and queued jobs the caller may see."""

    queue: str
    paused: bool
    concurrency: int | None
    organization_concurrency: int | None
    running: int
    queued: int


@dataclass(frozen=True, slots=True)
class OrganizationUsage(Record):
    """One organization in one queue: its pauses, cap, weight and jobs."""

    queue: str
    organization: str
    paused: bool
    queue_paused: bool
    concurrency: int | None
    weight: int
    running: int
    queued: int
