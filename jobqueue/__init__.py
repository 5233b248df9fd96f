"""jobqueue: a Postgres-native background job engine. The database is the broker."""

from __future__ import annotations

from jobqueue.context import JobContext, NonRetryableError
from jobqueue.errors import JobqueueError
from jobqueue.handlers import register_job_type
from jobqueue.migrate import migrate
from jobqueue.states import JobStatus

__all__ = [
    "JobContext",
    "JobStatus",
    "JobqueueError",
    "NonRetryableError",
    "migrate",
    "register_job_type",
]
__version__ = "0.1.0"
