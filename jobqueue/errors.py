"""The engine's errors: one class per SQLSTATE of the README's error table.

SQL raises them (class ``JQ``); :func:`jobqueue.db.translate` turns a psycopg error into the
class below with the same ``sqlstate``; the web layer turns any of them into RFC 9457 problem
JSON with ``http_status``. Machine-readable details (seconds until retry, the illegal
transition) travel in the error's DETAIL as JSON, never parsed out of the message.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar


class JobqueueError(Exception):
    """The job engine refused the request."""

    sqlstate: ClassVar[str] = ""
    http_status: ClassVar[int] = 500
    title: ClassVar[str] = "Engine error"
    # Who raises it: the engine's SQL ("sql"), PostgreSQL itself for the engine ("postgres",
    # translated by jobqueue.db), or the web process ("web").
    raised_by: ClassVar[str] = "sql"

    def __init__(self, message: str | None = None, *, detail: dict[str, Any] | None = None):
        super().__init__(message or (self.__doc__ or "").strip())
        self.detail: dict[str, Any] = detail or {}

    @property
    def message(self) -> str:
        return str(self.args[0])


class UnknownJobType(JobqueueError):
    """No enabled job type of that name."""

    sqlstate, http_status, title = "JQV01", 400, "Unknown job type"


class InvalidParams(JobqueueError):
    """The job's params are not a JSON object."""

    sqlstate, http_status, title = "JQV02", 400, "Invalid params"


class InvalidArgument(JobqueueError):
    """An argument is missing, malformed or out of range."""

    sqlstate, http_status, title = "JQV03", 400, "Invalid argument"


class InvalidDependency(JobqueueError):
    """A dependency does not exist in the job's organization, or has already failed."""

    sqlstate, http_status, title = "JQV04", 400, "Invalid dependency"


class InvalidJobType(JobqueueError):
    """The job type definition is invalid (name, handler path, queue, durations, limits)."""

    sqlstate, http_status, title = "JQV05", 400, "Invalid job type"


class InvalidCron(JobqueueError):
    """The cron expression is not one the engine can compute."""

    sqlstate, http_status, title = "JQV13", 400, "Invalid cron expression"


class UnknownTimeZone(JobqueueError):
    """The time zone is not an IANA name the database knows."""

    sqlstate, http_status, title = "JQV14", 400, "Unknown time zone"


class PayloadTooLarge(JobqueueError):
    """The params, checkpoint or batch exceed their size limit."""

    sqlstate, http_status, title = "JQV06", 413, "Payload too large"


class InvalidLimit(JobqueueError):
    """A concurrency cap, weight or start limit is out of range."""

    sqlstate, http_status, title = "JQV10", 400, "Invalid limit"


class Unauthenticated(JobqueueError):
    """The API token is missing, unknown, revoked or expired."""

    sqlstate, http_status, title = "JQA01", 401, "Unauthenticated"


class Forbidden(JobqueueError):
    """The caller may not act on that organization or resource."""

    sqlstate, http_status, title = "JQA02", 403, "Forbidden"


class RoleNotPermitted(JobqueueError):
    """The caller's database role may not run this function (management needs jobqueue_admin)."""

    sqlstate, http_status, title = "JQA03", 403, "Role not permitted"
    raised_by = "postgres"


class JobNotFound(JobqueueError):
    """No such job, or its organization is not visible to the caller."""

    sqlstate, http_status, title = "JQN01", 404, "Job not found"


class OrganizationNotFound(JobqueueError):
    """No organization of that name."""

    sqlstate, http_status, title = "JQN02", 404, "Organization not found"


class UserNotFound(JobqueueError):
    """No such user, or no such membership."""

    sqlstate, http_status, title = "JQN03", 404, "User not found"


class TokenNotFound(JobqueueError):
    """No such API token visible to the caller."""

    sqlstate, http_status, title = "JQN04", 404, "Token not found"


class ScheduleNotFound(JobqueueError):
    """No schedule of that name in the organization, or the organization is not visible."""

    sqlstate, http_status, title = "JQN06", 404, "Schedule not found"


class QueueNotFound(JobqueueError):
    """No job type, setting or waiting job names that queue."""

    sqlstate, http_status, title = "JQN05", 404, "Queue not found"


class AlreadyExists(JobqueueError):
    """A resource with that name already exists."""

    sqlstate, http_status, title = "JQC01", 409, "Already exists"


class JobStarted(JobqueueError):
    """The job has started or ended; only a job that waits to run can change its priority."""

    sqlstate, http_status, title = "JQC02", 409, "Job started"


class IllegalTransition(JobqueueError):
    """The requested status change is not in the lifecycle's transition table."""

    sqlstate, http_status, title = "JQT01", 409, "Illegal transition"


class StaleAttempt(JobqueueError):
    """The attempt is no longer the job's current one; its outcome was not applied."""

    sqlstate, http_status, title = "JQS01", 409, "Stale attempt"


class RateLimited(JobqueueError):
    """The job type's rate limit for this organization is reached; retry later."""

    sqlstate, http_status, title = "JQR01", 429, "Rate limited"

    @property
    def retry_after(self) -> int:
        return int(self.detail.get("retry_after", 1))


class Throttled(JobqueueError):
    """Too many failed sign-ins from this address, or too many open event feeds; retry later."""

    sqlstate, http_status, title = "JQR02", 429, "Too many requests"
    raised_by = "web"

    @property
    def retry_after(self) -> int:
        return int(self.detail.get("retry_after", 1))


class DatabaseUnavailable(JobqueueError):
    """The database could not be reached."""

    sqlstate, http_status, title = "", 503, "Database unavailable"


BY_SQLSTATE: dict[str, type[JobqueueError]] = {
    cls.sqlstate: cls for cls in JobqueueError.__subclasses__() if cls.sqlstate
}


def from_sqlstate(sqlstate: str, message: str, detail: str | None) -> JobqueueError | None:
    """The engine error for a SQLSTATE of class JQ, or None for any other state."""
    cls = BY_SQLSTATE.get(sqlstate)
    if cls is None:
        return None
    parsed: dict[str, Any] = {}
    if detail:
        try:
            loaded = json.loads(detail)
        except ValueError:
            loaded = {"text": detail}
        parsed = loaded if isinstance(loaded, dict) else {"value": loaded}
    return cls(message, detail=parsed)
