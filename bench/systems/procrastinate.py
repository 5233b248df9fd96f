"""procrastinate 3.10, used as it comes: ``batch_defer_async`` and ``run_worker_async``.

The task is an ``async def`` no-op. Workers keep procrastinate's defaults (NOTIFY plus 5 s
polling, finished jobs kept), except the connection pool: ``concurrency + 1`` connections,
as procrastinate's documentation recommends for short jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bench import marks
from bench.systems.base import Adapter

if TYPE_CHECKING:
    import procrastinate
    import psycopg

TASK = "bench_noop"


def _app(dsn: str, pool_size: int) -> tuple[procrastinate.App, Any]:
    import procrastinate

    connector = procrastinate.PsycopgConnector(conninfo=dsn, min_size=pool_size, max_size=pool_size)
    app = procrastinate.App(connector=connector)

    @app.task(name=TASK)
    async def noop(k: int) -> None:
        marks.job_started(k)

    return app, noop


class ProcrastinateAdapter(Adapter):
    name = "procrastinate"
    label = "procrastinate"
    packages = ("procrastinate", "psycopg", "psycopg-pool")

    def __init__(self) -> None:
        self._client: tuple[procrastinate.App, Any] | None = None

    def unavailable(self) -> str | None:
        try:
            import procrastinate  # noqa: F401
        except ImportError:
            return "procrastinate is not installed"
        return None

    async def unfinished(self, conn: psycopg.AsyncConnection, enqueued: int) -> int:
        # Matches the predicate of procrastinate_jobs_id_lock_idx_v1, so the count stays on
        # that small partial index however many finished jobs the table holds.
        cur = await conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = ANY (ARRAY["
            "'todo'::procrastinate_job_status, 'doing'::procrastinate_job_status])"
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def failed(self, conn: psycopg.AsyncConnection) -> int:
        cur = await conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('failed', 'aborted')"
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def add_history(self, conn: psycopg.AsyncConnection, count: int) -> None:
        # A finished job keeps its row (delete_jobs="never") and three event rows; its
        # worker_id went NULL when its worker unregistered.
        await conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, priority, args, status,"
            " attempts) SELECT 'default', %s, 0, jsonb_build_object('k', -g), 'succeeded', 1"
            " FROM generate_series(1, %s) AS g",
            (TASK, count),
        )
        await conn.execute(
            "INSERT INTO procrastinate_events (job_id, type, at)"
            " SELECT j.id, e.type::procrastinate_job_event_type, now()"
            " FROM procrastinate_jobs AS j"
            " CROSS JOIN (VALUES (1, 'deferred'), (2, 'started'), (3, 'succeeded')) AS e(n, type)"
            " WHERE j.status = 'succeeded' ORDER BY j.id, e.n"
        )

    async def install(self, dsn: str) -> None:
        app, _ = _app(dsn, 1)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    async def open_client(self, dsn: str) -> None:
        app, task = _app(dsn, 2)
        await app.open_async()
        self._client = (app, task)

    async def enqueue_one(self, key: int) -> None:
        assert self._client is not None
        await self._client[1].defer_async(k=key)

    async def enqueue_batch(self, keys: Sequence[int]) -> None:
        assert self._client is not None
        await self._client[1].batch_defer_async(*({"k": k} for k in keys))

    async def close_client(self) -> None:
        if self._client is not None:
            await self._client[0].close_async()
            self._client = None

    def run_worker(self, dsn: str, concurrency: int, ready: Callable[[], None]) -> None:
        asyncio.run(self._work(dsn, concurrency, ready))

    async def _work(self, dsn: str, concurrency: int, ready: Callable[[], None]) -> None:
        app, _ = _app(dsn, concurrency + 1)
        async with app.open_async():
            ready()
            # procrastinate's own SIGTERM handler stops the worker gracefully.
            await app.run_worker_async(concurrency=concurrency, install_signal_handlers=True)
