"""jobqueue itself: ``AsyncClient.submit_job`` / ``submit_jobs`` and ``jobqueue.worker``.

The system is skipped with a "not yet available" note when the engine's modules this adapter
uses (``jobqueue.migrate``, ``jobqueue.client``, ``jobqueue.worker.runner``) cannot be
imported. Jobs belong to one organization, ``bench``, and one job type, ``bench.noop``, with
no retries; the handler is :func:`noop` below.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import marks
from bench.systems.base import Adapter

if TYPE_CHECKING:
    import psycopg

ORGANIZATION = "bench"
# The noisy-neighbour scenario's tenants: "a" is the organization every scenario uses.
TENANTS = {"a": ORGANIZATION, "b": "bench-b"}
JOB_TYPE = "bench.noop"
HANDLER = "bench.systems.jobqueue:noop"
ENGINE_MODULES = ("jobqueue.migrate", "jobqueue.client", "jobqueue.worker.runner")
ACTIVE = "('waiting', 'queued', 'running', 'retrying')"
BASELINE_VARIABLE = "BENCH_JOBQUEUE_BASELINE"
REPO_ROOT = Path(__file__).resolve().parents[2]


async def noop(ctx: Any, k: int) -> None:
    """The job type's handler."""
    marks.job_started(k)


class JobqueueAdapter(Adapter):
    name = "jobqueue"
    label = "jobqueue"
    packages = ("jobqueue", "procrastinate", "psycopg")

    def __init__(self) -> None:
        self._client: Any = None

    def unavailable(self) -> str | None:
        for module in ENGINE_MODULES:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                return f"not yet available ({module} cannot be imported: {exc})"
        return None

    async def unfinished(self, conn: psycopg.AsyncConnection, enqueued: int) -> int:
        # Live statuses of the one organization, a range of job_org_status_id_idx: finished
        # jobs are never visited.
        cur = await conn.execute(
            "SELECT count(*) FROM jobqueue.job AS j JOIN jobqueue.organization AS o"
            f" ON o.id = j.organization_id WHERE o.name = ANY (%s) AND j.status IN {ACTIVE}",
            (list(TENANTS.values()),),
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def failed(self, conn: psycopg.AsyncConnection) -> int:
        cur = await conn.execute(
            "SELECT count(*) FROM jobqueue.job WHERE status IN ('dead', 'canceled')"
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def add_history(self, conn: psycopg.AsyncConnection, count: int) -> None:
        # A finished job keeps its row, one attempt row and its 'completed' event; its
        # procrastinate vehicle is gone. The events go in as a worker's finishes write them:
        # one event_batch row per finished batch (of ten here, the bench's concurrency), or
        # one row per event in a baseline from before migration 0013.
        batched = await (
            await conn.execute("SELECT to_regclass('jobqueue.event_batch') IS NOT NULL")
        ).fetchone()
        await conn.execute(
            """
            WITH org AS (SELECT id FROM jobqueue.organization WHERE name = %(org)s),
            jobs AS (
                INSERT INTO jobqueue.job (job_type, organization_id, queue, status, priority,
                    params, attempt, max_retries, timeout, created_at, started_at, finished_at)
                SELECT %(type)s, org.id, 'default', 'completed', 0,
                       jsonb_build_object('k', -g), 1, 0, '5 minutes',
                       now() - interval '2 days', now() - interval '2 days',
                       now() - interval '2 days'
                FROM org, generate_series(1, %(n)s) AS g
                RETURNING id, organization_id, finished_at
            ), attempts AS (
                INSERT INTO jobqueue.attempt (job_id, attempt, organization_id, job_type,
                    started_at, finished_at, outcome)
                SELECT id, 1, organization_id, %(type)s, finished_at, finished_at, 'completed'
                FROM jobs
            )
            """
            + (
                """
                INSERT INTO jobqueue.event_batch (first_id, organization_id, created_at,
                                                  job_ids, types, data)
                SELECT nextval('jobqueue.event_batch_seq') * 1024, organization_id,
                       min(finished_at), array_agg(id ORDER BY id),
                       array_agg('completed'::text ORDER BY id), array_agg(NULL::jsonb ORDER BY id)
                FROM jobs
                GROUP BY organization_id, id / 10
                """
                if batched and batched[0]
                else """
                INSERT INTO jobqueue.event (organization_id, job_id, type, created_at)
                SELECT organization_id, id, 'completed', finished_at FROM jobs
                """
            ),
            {"org": ORGANIZATION, "type": JOB_TYPE, "n": count},
        )

    async def history_reads(self, conn: psycopg.AsyncConnection) -> dict[str, float] | None:
        # Medians of five runs each, after one unmeasured run that warms the caches.
        queries = {
            "list_jobs_ms": (
                "SELECT * FROM jobqueue.list_jobs(organization => %(org)s, page_size => 50)"
            ),
            "metrics_ms": "SELECT jobqueue.metrics(organization => %(org)s)",
        }
        timings: dict[str, float] = {}
        for key, sql in queries.items():
            runs = []
            for attempt in range(6):
                started = time.perf_counter()
                await (await conn.execute(sql, {"org": ORGANIZATION})).fetchall()
                if attempt:
                    runs.append((time.perf_counter() - started) * 1000)
            timings[key] = statistics.median(runs)
        return timings

    async def install(self, dsn: str) -> None:
        from jobqueue.client import AsyncClient
        from jobqueue.migrate import migrate

        await asyncio.to_thread(migrate, dsn)
        client = await AsyncClient.connect(dsn, max_size=1)
        async with client:
            for organization in TENANTS.values():
                await client.create_organization(organization)
            await client.register_job_type(JOB_TYPE, HANDLER, max_retries=0)

    async def open_client(self, dsn: str) -> None:
        from jobqueue.client import AsyncClient

        self._client = await AsyncClient.connect(dsn, min_size=1, max_size=2)

    async def enqueue_one(self, key: int) -> None:
        await self._client.submit_job(JOB_TYPE, {"k": key}, organization=ORGANIZATION)

    async def enqueue_batch(self, keys: Sequence[int]) -> None:
        await self._client.submit_jobs(
            [{"job_type": JOB_TYPE, "organization": ORGANIZATION, "params": {"k": k}} for k in keys]
        )

    async def enqueue_one_as(self, key: int, tenant: str) -> None:
        await self._client.submit_job(JOB_TYPE, {"k": key}, organization=TENANTS[tenant])

    async def enqueue_batch_as(self, keys: Sequence[int], tenant: str) -> None:
        organization = TENANTS[tenant]
        await self._client.submit_jobs(
            [{"job_type": JOB_TYPE, "organization": organization, "params": {"k": k}} for k in keys]
        )

    async def close_client(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def run_worker(self, dsn: str, concurrency: int, ready: Callable[[], None]) -> None:
        from jobqueue.worker.runner import run_worker_async

        ready()
        asyncio.run(run_worker_async(dsn, None, concurrency, install_signal_handlers=True))


class JobqueueBaselineAdapter(JobqueueAdapter):
    """jobqueue as it was at the git revision ``BENCH_JOBQUEUE_BASELINE`` names, measured in
    the same run as the working tree's: a change's cost with the machine's noise held equal.

    The revision's ``jobqueue`` package is extracted once (``git archive``) and put first on
    the client and worker processes' path; the harness and the adapter are the working
    tree's. Skipped when the variable is unset.
    """

    name = "jobqueue-baseline"
    label = "jobqueue (baseline)"

    def __init__(self) -> None:
        super().__init__()
        self._code: Path | None = None

    def unavailable(self) -> str | None:
        revision = os.environ.get(BASELINE_VARIABLE)
        if not revision:
            return f"set {BASELINE_VARIABLE} to a git revision to measure it beside this tree"
        try:
            sha = subprocess.run(
                ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"],
                cwd=REPO_ROOT, capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            code = Path(tempfile.gettempdir()) / f"bench-jobqueue-{sha[:12]}"
            if not (code / "jobqueue" / "__init__.py").exists():
                code.mkdir(parents=True, exist_ok=True)
                archive = subprocess.run(
                    ["git", "archive", sha, "jobqueue"], cwd=REPO_ROOT, capture_output=True,
                    check=True,
                ).stdout  # fmt: skip
                subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            return f"cannot extract {revision}: {exc}"
        self._code = code
        return None

    def environment(self) -> dict[str, str]:
        assert self._code is not None
        # No script directory on the path (the working tree's jobqueue would come first):
        # the revision's package, then the repository for bench itself.
        return {
            "PYTHONPATH": os.pathsep.join([str(self._code), str(REPO_ROOT)]),
            "PYTHONSAFEPATH": "1",
        }
