"""Celery with Redis as broker and result backend (skipped when no Redis answers).

Jobs live in Redis, not PostgreSQL, so the database costs, history and pressure scenarios do
not apply. A job counts as finished when its result is stored: the worker app has the Redis
result backend, and the harness counts result keys. The client app has no result backend,
since a producer that does not wait for results needs none.

The broker and the backend use their own Redis databases (``BENCH_REDIS_URL``, default
``redis://127.0.0.1:6379``, databases 14 and 15), which the harness empties before every
measurement. Workers use the thread pool (``BENCH_CELERY_POOL=prefork`` for processes), with
mingle, gossip and worker heartbeats off.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bench import marks
from bench.systems.base import Adapter

if TYPE_CHECKING:
    import psycopg

URL_VARIABLE = "BENCH_REDIS_URL"
POOL_VARIABLE = "BENCH_CELERY_POOL"
BROKER_DB = 14
BACKEND_DB = 15
TASK = "bench.noop"
QUEUE = "bench"


def _url(db: int) -> str:
    base = os.environ.get(URL_VARIABLE, "redis://127.0.0.1:6379").rstrip("/")
    return f"{base}/{db}"


def _app(with_backend: bool) -> tuple[Any, Any]:
    from celery import Celery

    app = Celery(
        "bench",
        broker=_url(BROKER_DB),
        backend=_url(BACKEND_DB) if with_backend else None,
    )
    app.conf.update(
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )

    def noop(k: int) -> None:
        marks.job_started(k)

    return app, app.task(name=TASK)(noop)


class CeleryAdapter(Adapter):
    name = "celery"
    label = "Celery+Redis"
    packages = ("celery", "kombu", "redis")
    uses_postgres = False

    def __init__(self) -> None:
        self._task: Any = None

    def unavailable(self) -> str | None:
        try:
            import celery  # noqa: F401
            import redis
        except ImportError:
            return "celery[redis] is not installed"
        try:
            redis.Redis.from_url(_url(BROKER_DB), socket_timeout=1).ping()
        except Exception as exc:
            return f"no Redis reachable at {_url(BROKER_DB)} ({exc.__class__.__name__})"
        return None

    def environment(self) -> dict[str, str]:
        return {URL_VARIABLE: os.environ.get(URL_VARIABLE, "redis://127.0.0.1:6379")}

    async def _redis(self, db: int) -> Any:
        import redis.asyncio

        return redis.asyncio.Redis.from_url(_url(db))

    async def reset(self) -> None:
        for db in (BROKER_DB, BACKEND_DB):
            client = await self._redis(db)
            async with client:
                await client.flushdb()

    async def unfinished(self, conn: psycopg.AsyncConnection, enqueued: int) -> int:
        client = await self._redis(BACKEND_DB)
        async with client:
            stored = int(await client.dbsize())
        return max(enqueued - stored, 0)

    async def failed(self, conn: psycopg.AsyncConnection) -> int:
        import json

        client = await self._redis(BACKEND_DB)
        failures = 0
        async with client:
            async for key in client.scan_iter(match="celery-task-meta-*", count=1000):
                value = await client.get(key)
                if value and json.loads(value).get("status") != "SUCCESS":
                    failures += 1
        return failures

    async def add_history(self, conn: psycopg.AsyncConnection, count: int) -> None:
        raise NotImplementedError("Celery keeps no job history in PostgreSQL")

    async def install(self, dsn: str) -> None:
        """Nothing to install: Redis needs no schema."""

    async def open_client(self, dsn: str) -> None:
        _, self._task = _app(with_backend=False)

    async def enqueue_one(self, key: int) -> None:
        self._task.apply_async(args=(key,))

    async def enqueue_batch(self, keys: Sequence[int]) -> None:
        from celery import group

        group(self._task.s(k) for k in keys).apply_async()

    def run_worker(self, dsn: str, concurrency: int, ready: Callable[[], None]) -> None:
        app, _ = _app(with_backend=True)
        pool = os.environ.get(POOL_VARIABLE, "threads")
        ready()
        app.worker_main(
            [
                "worker",
                f"--pool={pool}",
                f"--concurrency={concurrency}",
                f"--queues={QUEUE}",
                f"--hostname=bench-{os.getpid()}@%h",
                "--loglevel=WARNING",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
            ]
        )
