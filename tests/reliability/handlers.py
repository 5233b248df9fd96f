"""Handlers run by real worker subprocesses in the reliability suite.

Each attempt writes a ``started`` row before its work and an ``ended`` row after it into
``public.attempt_log`` of the test database (JOBQUEUE_DSN), so tests can check that no job
ever had two attempts running at once and that every job really ran.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import threading
import time

import psycopg
import psycopg_pool

from jobqueue.context import JobContext

ATTEMPT_LOG_TABLE = """
CREATE TABLE IF NOT EXISTS public.attempt_log (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    phase text NOT NULL CHECK (phase IN ('started', 'ended')),
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    handler_threads integer  -- sync handlers' threads alive in the worker at the start
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


def _log_sync(ctx: JobContext, phase: str, handler_threads: int | None = None) -> None:
    with psycopg.connect(os.environ["JOBQUEUE_DSN"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.attempt_log (job_id, attempt, phase, pid, handler_threads)"
            " VALUES (%s, %s, %s, %s, %s)",
            (ctx.job_id, ctx.attempt, phase, os.getpid(), handler_threads),
        )


def _block(how: str, seconds: float) -> None:
    """Hold the thread for ``seconds`` without a look at the cancel flag."""
    if how == "busy":
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
    elif how == "sleep":
        time.sleep(seconds)
    elif how == "socket":
        # A read on a socket nobody writes to, which gives up after ``seconds``.
        ours, theirs = socket.socketpair()
        with ours, theirs:
            ours.settimeout(seconds)
            try:
                ours.recv(1)
            except TimeoutError:
                pass
    elif how == "stubborn":
        # Swallows whatever is raised in it, process mode's SIGTERM included: only SIGKILL
        # (or the time running out) ends it.
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                while time.monotonic() < end:
                    pass
            except BaseException:  # noqa: S110 - ignoring the stop is the point
                pass
    else:
        raise ValueError(how)


def ignores_cancel(
    ctx: JobContext,
    how: str = "sleep",
    seconds: float = 3.0,
    later_seconds: float | None = None,
    n: int = 0,
) -> str:
    """Log the start, block for ``seconds`` (``later_seconds`` from the second attempt on)
    in one of the ways ``how`` names (busy loop, time.sleep, socket read, or a busy loop that
    swallows exceptions), never looking at ``ctx.is_canceled()``, and log the end however the
    handler ends: by itself, or through the SIGTERM of process mode. SIGKILL leaves no end row.
    ``n`` only tells jobs of the same kind apart.
    """
    if later_seconds is not None and ctx.attempt > 1:
        seconds = later_seconds
    handler_threads = sum(1 for t in threading.enumerate() if t.name.startswith("job-"))
    _log_sync(ctx, "started", handler_threads)
    try:
        _block(how, seconds)
    finally:
        _log_sync(ctx, "ended")
    return how
