"""Every call of the engine's public SQL API, written once for both clients.

Each function here builds a :class:`Call`: the SQL text (one call of one jobqueue function with
named arguments), its parameters, and how to shape the rows. :class:`jobqueue.client.Client`
runs calls synchronously and :class:`jobqueue.client.AsyncClient` asynchronously; neither holds
a rule of the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from psycopg.types.json import Jsonb

from jobqueue import models

T = TypeVar("T")
Rows = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    sql: str
    params: dict[str, Any]
    shape: Callable[[Rows], T]


def _one(record: type[models.Record]) -> Callable[[Rows], Any]:
    return lambda rows: record.from_row(rows[0])


def _many(record: type[models.Record]) -> Callable[[Rows], Any]:
    return lambda rows: [record.from_row(r) for r in rows]


def _scalar(rows: Rows) -> Any:
    return next(iter(rows[0].values()))


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def register_job_type(
    name: str,
    handler: str,
    *,
    queue: str = "default",
    priority: int = 0,
    max_retries: int = 3,
    timeout: timedelta = timedelta(minutes=5),
    backoff_base: timedelta = timedelta(seconds=1),
    backoff_max: timedelta = timedelta(minutes=10),
    dedup_window: timedelta | None = None,
    rate_limit: int | None = None,
    rate_period: timedelta | None = None,
    enabled: bool = True,
    execution: str | None = None,
    actor: str | None = None,
) -> Call[models.JobType]:
    """Create or update a job type (the handler path is not imported here; see
    :func:`jobqueue.handlers.register_job_type` for the validating form). ``execution`` is
    ``"inline"``, ``"process"`` or None (the worker's ``--execution`` decides)."""
    return Call(
        "SELECT * FROM jobqueue.register_job_type(name => %(name)s, handler => %(handler)s,"
        " queue => %(queue)s, priority => %(priority)s::integer,"
        " max_retries => %(max_retries)s::integer,"
        " timeout => %(timeout)s, backoff_base => %(backoff_base)s,"
        " backoff_max => %(backoff_max)s, dedup_window => %(dedup_window)s,"
        " rate_limit => %(rate_limit)s::integer, rate_period => %(rate_period)s,"
        " enabled => %(enabled)s, execution => %(execution)s, actor => %(actor)s)",
        locals(),
        _one(models.JobType),
    )


def set_job_type_enabled(
    name: str, enabled: bool, *, actor: str | None = None
) -> Call[models.JobType]:
    """Enable or disable a job type; a disabled type refuses new submits."""
    return Call(
        "SELECT * FROM jobqueue.set_job_type_enabled(name => %(name)s, enabled => %(enabled)s,"
        " actor => %(actor)s)",
        locals(),
        _one(models.JobType),
    )


def list_job_types(*, actor: str | None = None) -> Call[list[models.JobType]]:
    """Every job type, by name."""
    return Call(
        "SELECT * FROM jobqueue.list_job_types(actor => %(actor)s)", locals(), _many(models.JobType)
    )


def submit_job(
    job_type: str,
    params: dict[str, Any] | None = None,
    *,
    organization: str,
    priority: int | None = None,
    run_at: datetime | None = None,
    depends_on: Sequence[int] | None = None,
    dedup: bool = True,
    queue: str | None = None,
    max_retries: int | None = None,
    timeout: timedelta | None = None,
    actor: str | None = None,
) -> Call[models.Job]:
    """Submit one job; an active job with the same type, organization and params is returned
    instead, with ``duplicate`` set. ``queue``, ``max_retries`` and ``timeout`` override the
    type's for this job."""
    return Call(
        "SELECT * FROM jobqueue.submit_job(job_type => %(job_type)s, params => %(params)s,"
        " organization => %(organization)s, priority => %(priority)s::integer,"
        " run_at => %(run_at)s,"
        " depends_on => %(depends_on)s::bigint[], dedup => %(dedup)s, queue => %(queue)s,"
        " max_retries => %(max_retries)s::integer, timeout => %(timeout)s::interval,"
        " actor => %(actor)s)",
        {
            **locals(),
            "params": Jsonb(params if params is not None else {}),
            "depends_on": list(depends_on) if depends_on is not None else None,
        },
        _one(models.Job),
    )


def submit_jobs(
    jobs: Sequence[dict[str, Any]], *, actor: str | None = None
) -> Call[list[models.Job]]:
    """Submit many jobs in one statement; one result per input, in order. Each item has the
    keys of :func:`submit_job` (``job_type``, ``params``, ``organization``, ...); a
    ``timeout`` is a timedelta or seconds."""
    # Anything but a mapping goes to the database as it is, which names the bad element.
    encoded = [
        {k: _json_value(v) for k, v in job.items()} if isinstance(job, dict) else job
        for job in jobs
    ]
    return Call(
        "SELECT * FROM jobqueue.submit_jobs(jobs => %(jobs)s, actor => %(actor)s)",
        {"jobs": Jsonb(encoded), "actor": actor},
        _many(models.Job),
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def cancel_job(job_id: int, *, actor: str | None = None) -> Call[models.Job]:
    """Cancel a job: at once unless it runs; a running job gets a cancel request."""
    return Call(
        "SELECT * FROM jobqueue.cancel_job(job_id => %(job_id)s::bigint, actor => %(actor)s)",
        locals(),
        _one(models.Job),
    )


def retry_job(job_id: int, *, actor: str | None = None) -> Call[models.Job]:
    """Queue a dead or canceled job again, with a fresh retry budget."""
    return Call(
        "SELECT * FROM jobqueue.retry_job(job_id => %(job_id)s::bigint, actor => %(actor)s)",
        locals(),
        _one(models.Job),
    )


def get_job(job_id: int, *, actor: str | None = None) -> Call[models.Job]:
    """One job, if the actor may see it (JobNotFound otherwise)."""
    return Call(
        "SELECT * FROM jobqueue.get_job(job_id => %(job_id)s::bigint, actor => %(actor)s)",
        locals(),
        _one(models.Job),
    )


def list_jobs(
    *,
    actor: str | None = None,
    organization: str | None = None,
    status: str | None = None,
    job_type: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    before_id: int | None = None,
    page_size: int = 50,
) -> Call[list[models.Job]]:
    """Jobs newest first; pass the last id of a page as ``before_id`` for the next one."""
    return Call(
        "SELECT * FROM jobqueue.list_jobs(actor => %(actor)s, organization => %(organization)s,"
        " status => %(status)s, job_type => %(job_type)s, created_after => %(created_after)s,"
        " created_before => %(created_before)s, before_id => %(before_id)s::bigint,"
        " page_size => %(page_size)s::integer)",
        locals(),
        _many(models.Job),
    )


def job_attempts(job_id: int, *, actor: str | None = None) -> Call[list[models.Attempt]]:
    """The execution log of one job, first attempt first."""
    return Call(
        "SELECT * FROM jobqueue.job_attempts(job_id => %(job_id)s::bigint, actor => %(actor)s)",
        locals(),
        _many(models.Attempt),
    )


def metrics(
    *, actor: str | None = None, organization: str | None = None, since: datetime | None = None
) -> Call[dict[str, Any]]:
    """Counts by status, queue depth by priority, processing time and failure rates."""
    return Call(
        "SELECT jobqueue.metrics(actor => %(actor)s, organization => %(organization)s,"
        " since => %(since)s)",
        locals(),
        _scalar,
    )


def events_since(
    *,
    actor: str | None = None,
    after_id: int = 0,
    organization: str | None = None,
    job_id: int | None = None,
    max_rows: int = 1000,
    until_id: int | None = None,
    transactions: Sequence[int] | None = None,
    transactions_after: Sequence[int] | None = None,
) -> Call[list[models.Event]]:
    """Events after an id, oldest first, of the organizations the actor may see; up to
    ``until_id``, and only those ``transactions[i]`` wrote after ``transactions_after[i]``,
    when given."""
    return Call(
        "SELECT * FROM jobqueue.events_since(actor => %(actor)s,"
        " after_id => %(after_id)s::bigint, organization => %(organization)s,"
        " job_id => %(job_id)s::bigint, max_rows => %(max_rows)s::integer,"
        " until_id => %(until_id)s::bigint, transactions => %(transactions)s::bigint[],"
        " transactions_after => %(transactions_after)s::bigint[])",
        {
            "actor": actor,
            "after_id": after_id,
            "organization": organization,
            "job_id": job_id,
            "max_rows": max_rows,
            "until_id": until_id,
            "transactions": None if transactions is None else list(transactions),
            "transactions_after": None if transactions_after is None else list(transactions_after),
        },
        _many(models.Event),
    )


def transactions_in_progress() -> Call[list[int]]:
    """The ids of the transactions the current snapshot cannot see yet (in a REPEATABLE READ
    transaction, the transaction's snapshot): the event feed's resume reads them."""
    return Call(
        "SELECT jobqueue.transactions_in_progress() AS xacts",
        {},
        lambda rows: [int(x) for x in rows[0]["xacts"]],
    )


def event_feed(
    after_id: int,
    watching: Sequence[int] = (),
    watching_from: Sequence[int] = (),
    *,
    max_rows: int = 1000,
) -> Call[dict[str, Any]]:
    """Every organization's events after ``after_id``, plus the late ones of the watched
    transactions that have finished; the web process's event hub reads this (see events.sql)."""
    return Call(
        "SELECT * FROM jobqueue.event_feed(after_id => %(after_id)s::bigint,"
        " watching => %(watching)s::bigint[], watching_from => %(watching_from)s::bigint[],"
        " max_rows => %(max_rows)s::integer)",
        {
            "after_id": after_id,
            "watching": list(watching),
            "watching_from": list(watching_from),
            "max_rows": max_rows,
        },
        lambda rows: rows[0],
    )


def latest_event_id() -> Call[int]:
    """The newest event's id (0 when there is none): where a page's live feed starts."""
    return Call("SELECT jobqueue.latest_event_id() AS id", {}, _scalar)


def migration_status() -> Call[list[int]]:
    """The numbers of the migrations applied (0: procrastinate's schema)."""
    return Call("SELECT jobqueue.migration_status() AS applied", {}, lambda r: r[0]["applied"])


def create_organization(name: str, *, actor: str | None = None) -> Call[models.Organization]:
    """A new organization."""
    return Call(
        "SELECT * FROM jobqueue.create_organization(name => %(name)s, actor => %(actor)s)",
        locals(),
        _one(models.Organization),
    )


def list_organizations(*, actor: str | None = None) -> Call[list[models.Organization]]:
    """The organizations the actor may see."""
    return Call(
        "SELECT * FROM jobqueue.list_organizations(actor => %(actor)s)",
        locals(),
        _many(models.Organization),
    )


def create_user(
    user_id: str, *, admin: bool = False, actor: str | None = None
) -> Call[models.User]:
    """A user (or an existing one), optionally a global admin."""
    return Call(
        "SELECT * FROM jobqueue.create_user(user_id => %(user_id)s, admin => %(admin)s,"
        " actor => %(actor)s)",
        locals(),
        _one(models.User),
    )


def add_member(
    user_id: str, organization: str, *, role: str = "member", actor: str | None = None
) -> Call[models.Membership]:
    """Make a user an active member (or admin) of an organization."""
    return Call(
        "SELECT * FROM jobqueue.add_member(user_id => %(user_id)s,"
        " organization => %(organization)s, role => %(role)s, actor => %(actor)s)",
        locals(),
        _one(models.Membership),
    )


def remove_member(
    user_id: str, organization: str, *, actor: str | None = None
) -> Call[models.Membership]:
    """Deactivate a membership; it stays on record."""
    return Call(
        "SELECT * FROM jobqueue.remove_member(user_id => %(user_id)s,"
        " organization => %(organization)s, actor => %(actor)s)",
        locals(),
        _one(models.Membership),
    )


def create_token(
    user_id: str,
    name: str = "default",
    *,
    expires_in: timedelta | None = None,
    actor: str | None = None,
) -> Call[models.NewToken]:
    """A new API token; its secret is returned this once. ``expires_in`` None: never expires."""
    return Call(
        "SELECT * FROM jobqueue.create_token(user_id => %(user_id)s, name => %(name)s,"
        " expires_in => %(expires_in)s::interval, actor => %(actor)s)",
        locals(),
        _one(models.NewToken),
    )


def list_tokens(
    user_id: str | None = None, *, actor: str | None = None
) -> Call[list[models.Token]]:
    """A user's tokens and sessions (the actor's own by default; a service's: everyone's)."""
    return Call(
        "SELECT * FROM jobqueue.list_tokens(user_id => %(user_id)s, actor => %(actor)s)",
        locals(),
        _many(models.Token),
    )


def create_session(token: str, lifetime: timedelta | None = None) -> Call[models.Session]:
    """Sign in: a browser session for a valid API token (Unauthenticated otherwise)."""
    return Call(
        "SELECT * FROM jobqueue.create_session(token => %(token)s,"
        " lifetime => coalesce(%(lifetime)s::interval, interval '12 hours'))",
        locals(),
        _one(models.Session),
    )


def end_session(secret: str) -> Call[bool]:
    """Sign out: the session stops authenticating; True when one ended."""
    return Call("SELECT jobqueue.end_session(secret => %(secret)s)", locals(), _scalar)


def check_credentials(tokens: Sequence[str]) -> Call[list[models.Credential]]:
    """Which of these secrets still authenticate, as whom, seeing which organizations."""
    return Call(
        "SELECT * FROM jobqueue.check_credentials(tokens => %(tokens)s::text[])",
        {"tokens": list(tokens)},
        _many(models.Credential),
    )


def revoke_token(token_id: int, *, actor: str | None = None) -> Call[dict[str, Any]]:
    """Revoke an API token; later requests with it are refused."""
    return Call(
        "SELECT * FROM jobqueue.revoke_token(token_id => %(token_id)s::bigint, actor => %(actor)s)",
        locals(),
        lambda rows: rows[0],
    )


def authenticate(token: str) -> Call[models.Identity]:
    """The user an API token belongs to (Unauthenticated if unknown or revoked)."""
    return Call(
        "SELECT * FROM jobqueue.authenticate(token => %(token)s)", locals(), _one(models.Identity)
    )


def can_access(user_id: str, organization: str) -> Call[bool]:
    """Whether the user may see and act on the organization's jobs."""
    return Call(
        "SELECT jobqueue.can_access(user_id => %(user_id)s, organization => %(organization)s)",
        locals(),
        _scalar,
    )


def describe_worker(
    worker_id: int, host: str, pid: int, queues: Iterable[str] | None, concurrency: int
) -> Call[None]:
    """Record what a worker process is (once, when it starts), for the workers page."""
    return Call(
        "SELECT jobqueue.describe_worker(worker_id => %(worker_id)s::bigint, host => %(host)s,"
        " pid => %(pid)s, queues => %(queues)s::text[], concurrency => %(concurrency)s)",
        {
            "worker_id": worker_id,
            "host": host[:255] or "unknown",
            "pid": pid,
            "queues": None if queues is None else list(queues),
            "concurrency": concurrency,
        },
        lambda rows: None,
    )


def fetch_vehicles(
    queues: Iterable[str] | None, worker_id: int, max_count: int
) -> Call[list[dict[str, Any]]]:
    """Claim up to ``max_count`` vehicles for a worker, their attempts started; rows of
    ``procrastinate_jobs`` (what procrastinate's fetch returns, for a batch)."""
    return Call(
        "SELECT * FROM jobqueue.fetch_vehicles(queues => %(queues)s::varchar[],"
        " worker_id => %(worker_id)s::bigint, max_count => %(max_count)s::integer)",
        {
            "queues": None if queues is None else list(queues),
            "worker_id": worker_id,
            "max_count": max_count,
        },
        list,
    )


def finish_attempts(outcomes: Sequence[dict[str, Any]]) -> Call[list[models.FinishResult]]:
    """Record many attempt outcomes at once; fenced-off ones come back ``accepted=False``."""
    return Call(
        "SELECT * FROM jobqueue.finish_attempts(outcomes => %(outcomes)s)",
        {"outcomes": Jsonb(list(outcomes))},
        _many(models.FinishResult),
    )


def finish_and_fetch(
    outcomes: Sequence[dict[str, Any]],
    queues: Iterable[str] | None,
    worker_id: int,
    max_count: int,
) -> Call[list[dict[str, Any]]]:
    """Record outcomes, then claim up to ``max_count`` vehicles, in one transaction."""
    return Call(
        "SELECT * FROM jobqueue.finish_and_fetch(outcomes => %(outcomes)s,"
        " queues => %(queues)s::varchar[], worker_id => %(worker_id)s::bigint,"
        " max_count => %(max_count)s::integer)",
        {
            "outcomes": Jsonb(list(outcomes)),
            "queues": None if queues is None else list(queues),
            "worker_id": worker_id,
            "max_count": max_count,
        },
        list,
    )


def report_progress(
    job_id: int, attempt: int, percent: int, message: str | None = None
) -> Call[bool]:
    """Record progress of the current attempt; answers whether a cancel was requested."""
    return Call(
        "SELECT jobqueue.report_progress(job_id => %(job_id)s::bigint,"
        " attempt => %(attempt)s::integer,"
        " percent => %(percent)s::integer, message => %(message)s)",
        locals(),
        _scalar,
    )


def save_checkpoint(job_id: int, attempt: int, checkpoint: Any) -> Call[None]:
    """Keep handler state that survives a retry."""
    return Call(
        "SELECT jobqueue.save_checkpoint(job_id => %(job_id)s::bigint,"
        " attempt => %(attempt)s::integer,"
        " checkpoint => %(checkpoint)s)",
        {"job_id": job_id, "attempt": attempt, "checkpoint": Jsonb(checkpoint)},
        lambda rows: None,
    )


def job_checkpoint(job_id: int) -> Call[Any]:
    """The last checkpoint saved for a job, or None."""
    return Call("SELECT jobqueue.job_checkpoint(job_id => %(job_id)s::bigint)", locals(), _scalar)


def hold_attempts(held: Sequence[tuple[int, int]]) -> Call[int]:
    """Report (job id, attempt) pairs whose handlers still run past their end, so the rescuer
    leaves their attempts open; returns how many were still open."""
    return Call(
        "SELECT jobqueue.hold_attempts(job_ids => %(job_ids)s::bigint[],"
        " attempts => %(attempts)s::integer[])",
        {"job_ids": [job_id for job_id, _ in held], "attempts": [n for _, n in held]},
        _scalar,
    )


def rescue_attempts(
    *,
    stale_after: timedelta = timedelta(seconds=10),
    timeout_grace: timedelta = timedelta(seconds=30),
    batch: int = 500,
) -> Call[int]:
    """Close one batch of attempts whose worker vanished or that overran their timeout."""
    return Call(
        "SELECT jobqueue.rescue_attempts(stale_after => %(stale_after)s,"
        " timeout_grace => %(timeout_grace)s, batch => %(batch)s::integer)",
        locals(),
        _scalar,
    )


def cleanup_batch(*, retention: timedelta = timedelta(days=7), batch: int = 1000) -> Call[int]:
    """Delete one batch of terminal jobs past retention; returns rows deleted."""
    return Call(
        "SELECT jobqueue.cleanup_batch(retention => %(retention)s, batch => %(batch)s::integer)",
        locals(),
        _scalar,
    )
