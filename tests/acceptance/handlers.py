"""Handlers for the acceptance tests, imported by real worker subprocesses.

They write what they did to the ``test_exec`` table of the test database (JOBQUEUE_DSN), so
tests can count executions and see what a handler observed.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
from typing import Any

import psycopg
import psycopg_pool

from jobqueue.context import JobContext, NonRetryableError

EXEC_TABLE = """
CREATE TABLE IF NOT EXISTS public.test_exec (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    tag text NOT NULL,
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

_pool: psycopg_pool.AsyncConnectionPool | None = None


def _dsn() -> str:
    return os.environ["JOBQUEUE_DSN"]


def _record(ctx: JobContext, tag: str) -> None:
    with psycopg.connect(_dsn(), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.test_exec (job_id, attempt, tag, pid) VALUES (%s, %s, %s, %s)",
            (ctx.job_id, ctx.attempt, tag, os.getpid()),
        )


async def _record_async(ctx: JobContext, tag: str) -> None:
    global _pool
    if _pool is None:
        _pool = psycopg_pool.AsyncConnectionPool(
            _dsn(), min_size=1, max_size=4, kwargs={"autocommit": True}, open=False
        )
        await _pool.open()
    async with _pool.connection() as conn:
        await conn.execute(
            "INSERT INTO public.test_exec (job_id, attempt, tag, pid) VALUES (%s, %s, %s, %s)",
            (ctx.job_id, ctx.attempt, tag, os.getpid()),
        )


async def count(ctx: JobContext, n: int = 0) -> int:
    """Record one execution."""
    await _record_async(ctx, "ran")
    return n


def record(ctx: JobContext, tag: str = "ran") -> str:
    """Record one execution (sync)."""
    _record(ctx, tag)
    return tag


async def slow_first_attempt(ctx: JobContext, seconds: float = 3.0) -> dict[str, Any]:
    """Sleep on the first attempt only, then record which attempt finished."""
    await _record_async(ctx, "started")
    if ctx.attempt == 1:
        await asyncio.sleep(seconds)
    await _record_async(ctx, "finished")
    return {"attempt": ctx.attempt}


def flaky(ctx: JobContext, failures: int = 1) -> dict[str, Any]:
    """Fail the first ``failures`` attempts."""
    _record(ctx, "ran")
    if ctx.attempt <= failures:
        raise RuntimeError(f"planned failure on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


def always_fail(ctx: JobContext) -> None:
    _record(ctx, "ran")
    raise RuntimeError("always fails")


def give_up(ctx: JobContext) -> None:
    _record(ctx, "ran")
    raise NonRetryableError("bad input: nothing to retry")


def sleep_sync(ctx: JobContext, seconds: float = 30.0) -> None:
    """Blocks its thread without looking at the cancel flag."""
    time.sleep(seconds)
    _record(ctx, "woke")


async def sleep_async(ctx: JobContext, seconds: float = 30.0) -> None:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        await _record_async(ctx, "cancelled")
        raise


def wait_for_cancel(ctx: JobContext, seconds: float = 60.0) -> str:
    """Polls is_canceled() like a cooperative sync handler, and says when it saw it."""
    _record(ctx, "started")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx.is_canceled():
            _record(ctx, "saw_cancel")
            return "stopped"
        time.sleep(0.05)
    return "never canceled"


def cleans_up(ctx: JobContext, seconds: float = 60.0) -> None:
    """Logs through its context, sleeps, and on the way out (whatever ends it) records
    whether it was told to stop."""
    _record(ctx, "started")
    ctx.logger.warning("job %s holding for %ss", ctx.job_id, seconds)
    try:
        time.sleep(seconds)
    finally:
        _record(ctx, f"canceled={ctx.is_canceled()}")


_loops: list[asyncio.AbstractEventLoop] = []


async def loops_seen(ctx: JobContext, n: int = 0) -> int:
    """How many event loops this process has run async handlers on so far."""
    loop = asyncio.get_running_loop()
    if loop not in _loops:
        _loops.append(loop)
    await _record_async(ctx, "ran")
    return len(_loops)


def progress_burst(ctx: JobContext, reports: int = 20000) -> str:
    """Reports progress in a tight loop; the last value reported is 99."""
    for i in range(reports):
        ctx.report_progress(min(99, i * 100 // reports))
    ctx.report_progress(99, "almost")
    time.sleep(1.5)
    return "done"


def checkpointed(ctx: JobContext) -> dict[str, Any]:
    """Saves a checkpoint, fails once, and resumes from it."""
    saved = ctx.load_checkpoint()
    if saved is None:
        ctx.checkpoint({"step": 1})
        raise RuntimeError("fail after checkpoint")
    return {"resumed_from": saved}


def wrong_result(ctx: JobContext) -> object:
    return object()


async def async_no_params(ctx: JobContext) -> str:
    return "never called with params"


def unstorable(ctx: JobContext, what: str) -> Any:
    """Ends in ways PostgreSQL cannot store verbatim."""
    if what == "nan":
        return {"value": float("nan")}
    if what == "nul_result":
        return {"value": "a\x00b"}
    raise RuntimeError("bad\x00byte")


async def noop(ctx: JobContext, ms: float = 0, **params: Any) -> None:
    """Returns after ``ms`` milliseconds; at once, without a single await, by default."""
    if ms:
        await asyncio.sleep(ms / 1000)


async def hold(ctx: JobContext, seconds: float = 60.0) -> None:
    """Holds its slot until canceled or ``seconds`` have passed."""
    await _record_async(ctx, "holding")
    await asyncio.sleep(seconds)


_last_job: contextvars.ContextVar[int | None] = contextvars.ContextVar("last_job", default=None)


def thread_report(ctx: JobContext, **params: Any) -> dict[str, Any]:
    """Says which thread ran it, and what an earlier job on that thread left in a context
    variable (nothing, if each job gets a fresh context)."""
    leaked = _last_job.get()
    _last_job.set(ctx.job_id)
    return {
        "tid": threading.get_native_id(),
        "name": threading.current_thread().name,
        "leaked": leaked,
    }


async def busy(ctx: JobContext, seconds: float = 0.1, n: int = 0) -> None:
    """Record the start, run for a while, record the end, tagged with the organization."""
    await _record_async(ctx, f"start:{ctx.organization}")
    await asyncio.sleep(seconds)
    await _record_async(ctx, f"end:{ctx.organization}")
