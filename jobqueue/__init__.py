"""jobqueue: a Postgres-native background job engine. The database is the broker."""

from __future__ import annotations

from jobqueue.errors import JobqueueError
from jobqueue.migrate import migrate
from jobqueue.states import JobStatus

__all__ = ["JobStatus", "JobqueueError", "migrate"]
__version__ = "0.1.0"
