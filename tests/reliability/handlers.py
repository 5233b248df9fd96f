"""Handlers run by real worker subprocesses in the reliability suite.

Each attempt writes a ``started`` row before its work and an ``ended`` row after it into
``public.attempt_log`` of the test database (JOBQUEUE_DSN), so tests can check that no job
ever had two attempts running at once and that every job really ran.
"""

from __future__ import annotations

import asyncio
import os
import random

import psycopg_pool

from jobqueue.context import JobContext

ATTEMPT_LOG_TABLE = """
CREATE TABLE IF NOT EXISTS public.attempt_log (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    phase text NOT NULL CHECK (phase IN ('started', 'ended')),
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

_pool: psycopg_pool.AsyncConnectionPool | None = None


async def _log(ctx: JobContext, phase: str) -> None:
    global _pool
    if _pool is None:
        # Reconnects by itself after a database restart: the pool checks connections.
        _pool = psycopg_pool.AsyncConnectionPool(
            os.environ["JOBQUEUE_DSN"],
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True},
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            open=False,
        )
        await _pool.open()
    async with _pool.connection() as conn:
        await conn.execute(
            "INSERT INTO public.attempt_log (job_id, attempt, phase, pid) VALUES (%s, %s, %s, %s)",
            (ctx.job_id, ctx.attempt, phase, os.getpid()),
        )


async def tracked(ctx: JobContext, max_ms: int = 20, n: int = 0) -> int:
    """Log the attempt's start, work for a random while, log its end."""
    await _log(ctx, "started")
    await asyncio.sleep(random.uniform(0, max_ms) / 1000)
    await _log(ctx, "ended")
    return ctx.attempt
