"""The adapter interface: what a job system provides to be measured.

An adapter has three sides, and each runs in a process of its own:

* the harness side runs in the ``python -m bench`` process. It answers questions about the
  system's state with SQL on an observer connection (how many jobs are unfinished, how many
  failed) and writes finished-job history for the history scenario;
* the client side runs in a short-lived ``python -m bench.client`` process. It installs the
  schema and enqueues jobs through the system's own API;
* the worker side runs in ``python -m bench.worker`` processes. It runs the system's worker
  with a no-op handler until the process receives SIGTERM.

The client and worker sides run under ``interpreter()``, which need not be the harness's own
Python. A module that defines an adapter imports the system's packages only inside methods,
so the harness can list and skip systems that are not installed.

Every handler calls :func:`bench.marks.job_started` with the job's key first thing: that is how
the harness learns when a handler started (pick-up latency, start of a drain).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import psycopg


class Adapter:
    """One job system under test. Subclass it and override what the system needs."""

    #: Short name used on the command line (``--systems``) and in result files.
    name: ClassVar[str] = ""
    #: Name shown in tables and plots.
    label: ClassVar[str] = ""
    #: Distributions whose versions go into the result file.
    packages: ClassVar[tuple[str, ...]] = ()
    #: False for a system whose jobs live outside PostgreSQL: its database costs, history and
    #: pressure results are reported as not applicable.
    uses_postgres: ClassVar[bool] = True

    # ---- harness side ------------------------------------------------------------------------

    def unavailable(self) -> str | None:
        """Why this system cannot be measured here, or None when it can."""
        return None

    def interpreter(self) -> str:
        """The Python executable that runs the client and worker sides."""
        return sys.executable

    def environment(self) -> dict[str, str]:
        """Extra environment variables for client and worker processes."""
        return {}

    async def reset(self) -> None:
        """Clear state kept outside PostgreSQL before a measurement (a broker, a backend)."""

    async def unfinished(self, conn: psycopg.AsyncConnection, enqueued: int) -> int:
        """How many of the ``enqueued`` jobs are not finished yet (queued or running).

        ``conn`` is an autocommit connection to the measurement's database. The harness calls
        this every few milliseconds during a drain, so it must be cheap even with a million
        finished jobs in the tables (use an index that covers only unfinished jobs).
        """
        raise NotImplementedError

    async def failed(self, conn: psycopg.AsyncConnection) -> int:
        """How many jobs ended in failure (called once after a drain)."""
        raise NotImplementedError

    async def add_history(self, conn: psycopg.AsyncConnection, count: int) -> None:
        """Write ``count`` finished jobs the way the system leaves them after running them.

        Plain SQL on ``conn`` (autocommit); the harness runs VACUUM ANALYZE afterwards.
        """
        raise NotImplementedError

    async def history_reads(self, conn: psycopg.AsyncConnection) -> dict[str, float] | None:
        """Milliseconds of the system's own read queries at history size (the first page of
        its job list, its metrics), or None when it has none to time."""
        return None

    # ---- client side -------------------------------------------------------------------------

    async def install(self, dsn: str) -> None:
        """Install the system's schema into the empty database at ``dsn``."""
        raise NotImplementedError

    async def open_client(self, dsn: str) -> None:
        """Connect for enqueueing. Called once before any ``enqueue_*`` call."""
        raise NotImplementedError

    async def enqueue_one(self, key: int) -> None:
        """Enqueue one no-op job with argument ``key``, in a transaction of its own."""
        raise NotImplementedError

    async def enqueue_batch(self, keys: Sequence[int]) -> None:
        """Enqueue one job per key with a single call of the system's batch API."""
        raise NotImplementedError

    async def enqueue_one_as(self, key: int, tenant: str) -> None:
        """Enqueue one job of ``tenant`` (the noisy-neighbour scenario's "a" or "b").

        A system that knows tenants (jobqueue's organizations) files the job under it; the
        default ignores the tenant, and the job joins the one queue like any other.
        """
        await self.enqueue_one(key)

    async def enqueue_batch_as(self, keys: Sequence[int], tenant: str) -> None:
        """Enqueue one job of ``tenant`` per key with one batch call (see enqueue_one_as)."""
        await self.enqueue_batch(keys)

    async def close_client(self) -> None:
        """Release what ``open_client`` acquired."""

    # ---- worker side -------------------------------------------------------------------------

    def run_worker(self, dsn: str, concurrency: int, ready: Callable[[], None]) -> None:
        """Run one worker process's worth of the system until SIGTERM, then return.

        Build everything that can be built before running jobs (imports, app, pool), then call
        ``ready()``: it blocks until the harness starts all workers of a measurement at once.
        After it returns, start processing. ``concurrency`` is the number of jobs the process
        may run at the same time. The handler is a no-op that calls
        ``bench.marks.job_started(key)``.
        """
        raise NotImplementedError
