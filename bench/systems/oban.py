"""Oban for Python (PyPI ``oban``), used as it comes: ``enqueue``, ``enqueue_many``, queues.

oban 0.7 requires Python 3.12 or later. When the harness runs on an older Python, the client
and worker sides run under another interpreter: ``BENCH_OBAN_PYTHON`` if set, else the venv
``bench/.venv-oban`` that ``python -m bench.oban_env`` creates. The pool comes from
``Oban.create_pool`` with its defaults; a worker process runs the ``default`` queue with a limit
of ``concurrency``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.systems.base import Adapter

if TYPE_CHECKING:
    import psycopg

INTERPRETER_VARIABLE = "BENCH_OBAN_PYTHON"
VENV = Path(__file__).resolve().parent.parent / ".venv-oban"
WORKER = "bench.systems.oban_jobs.NoopWorker"


def venv_python() -> Path:
    """The interpreter of the venv that ``python -m bench.oban_env`` creates."""
    return VENV / "bin" / "python"


class ObanAdapter(Adapter):
    name = "oban"
    label = "Oban (py)"
    packages = ("oban", "psycopg", "psycopg-pool")

    def __init__(self) -> None:
        self._client: tuple[Any, Any] | None = None
        self._worker: Any = None

    def _interpreter(self) -> str | None:
        configured = os.environ.get(INTERPRETER_VARIABLE)
        if configured:
            return configured
        if sys.version_info >= (3, 12) and importlib.util.find_spec("oban") is not None:
            return sys.executable
        if venv_python().exists():
            return str(venv_python())
        return None

    def unavailable(self) -> str | None:
        if self._interpreter() is None:
            return (
                "oban needs Python >= 3.12 and is not installed for it: run "
                "`python -m bench.oban_env` (creates bench/.venv-oban) or set "
                f"{INTERPRETER_VARIABLE} to a Python that has oban"
            )
        return None

    def interpreter(self) -> str:
        return self._interpreter() or sys.executable

    async def unfinished(self, conn: psycopg.AsyncConnection, enqueued: int) -> int:
        # state leads Oban's main index, so finished rows are never visited.
        cur = await conn.execute(
            "SELECT count(*) FROM oban_jobs"
            " WHERE state IN ('available', 'scheduled', 'executing', 'retryable')"
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def failed(self, conn: psycopg.AsyncConnection) -> int:
        cur = await conn.execute(
            "SELECT count(*) FROM oban_jobs WHERE state IN ('discarded', 'cancelled')"
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def add_history(self, conn: psycopg.AsyncConnection, count: int) -> None:
        # Completed jobs stay in oban_jobs until the pruner removes them (after a day by default).
        await conn.execute(
            "INSERT INTO oban_jobs (state, queue, worker, attempt, args, attempted_by,"
            " inserted_at, scheduled_at, attempted_at, completed_at)"
            " SELECT 'completed', 'default', %s, 1, jsonb_build_object('k', -g),"
            " ARRAY['bench', 'history'], now() - interval '1 hour', now() - interval '1 hour',"
            " now() - interval '1 hour', now() - interval '1 hour'"
            " FROM generate_series(1, %s) AS g",
            (WORKER, count),
        )

    async def install(self, dsn: str) -> None:
        from oban import Oban
        from oban.schema import install

        pool = await Oban.create_pool(dsn)
        try:
            await install(pool)
        finally:
            await pool.close()

    async def open_client(self, dsn: str) -> None:
        from oban import Oban

        from bench.systems.oban_jobs import NoopWorker

        pool = await Oban.create_pool(dsn)
        oban = Oban(pool=pool)
        await oban.start()
        self._client = (pool, oban)
        self._worker = NoopWorker

    async def enqueue_one(self, key: int) -> None:
        assert self._client is not None
        await self._client[1].enqueue(self._worker.new({"k": key}))

    async def enqueue_batch(self, keys: Sequence[int]) -> None:
        assert self._client is not None
        await self._client[1].enqueue_many([self._worker.new({"k": k}) for k in keys])

    async def close_client(self) -> None:
        if self._client is not None:
            pool, oban = self._client
            await oban.stop()
            await pool.close()
            self._client = None

    def run_worker(self, dsn: str, concurrency: int, ready: Callable[[], None]) -> None:
        asyncio.run(self._work(dsn, concurrency, ready))

    async def _work(self, dsn: str, concurrency: int, ready: Callable[[], None]) -> None:
        from oban import Oban

        import bench.systems.oban_jobs  # noqa: F401  (registers the worker class)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        pool = await Oban.create_pool(dsn)
        oban = Oban(pool=pool, queues={"default": concurrency})
        ready()
        await oban.start()
        try:
            await stop.wait()
        finally:
            await oban.stop()
            await pool.close()
