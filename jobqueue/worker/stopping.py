"""The end of an attempt whose handler outlives it: wait it out, or kill it.

At its deadline, on a cancel request or when its worker stops, an attempt's outcome is
decided (``timed_out``, ``canceled``, ``lost``) and the handler is asked to stop. The
outcome is recorded, and the slot freed, only once the handler is really gone, so that a
retry never runs beside it:

- **inline** (a thread, or a task on the event loop): nothing can stop it from outside, so
  the bridge waits for it to end, holding the attempt (:mod:`jobqueue.worker.holds`). A
  worker that stops meanwhile cannot wait: it leaves the attempt open and held (an orphan),
  and the rescuer closes it once this process, and the handler with it, is gone.
- **process**: the child gets SIGTERM, then SIGKILL after the kill grace.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg_pool
from procrastinate import job_context

from jobqueue.worker import holds as holds_
from jobqueue.worker.holds import holds
from jobqueue.worker.processes import Child

logger = logging.getLogger("jobqueue.worker")

# Seconds a stopping worker gives an inline handler it asked to stop before leaving it to run
# on as an orphan: enough for one that checks ctx.is_canceled() or awaits.
SHUTDOWN_SETTLE = 1.0

Ids = tuple[int, int]


def _retrieve(done: asyncio.Future[Any]) -> None:
    """Mark a finished handler's exception as seen: it no longer counts, and asyncio would
    log it as never retrieved."""
    if not done.cancelled():
        done.exception()


def _uncancel() -> None:
    """This task caught a cancellation it will not honour yet; forget it, so that later
    timeouts in the task behave."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def outlive(
    context: job_context.JobContext,
    pool: psycopg_pool.AsyncConnectionPool,
    ids: Ids,
    running: asyncio.Future[Any],
    outcome: dict[str, Any],
) -> dict[str, Any] | None:
    """Wait until an inline handler asked to stop is gone, holding its attempt meanwhile;
    returns ``outcome``, or None if the worker stopped first (the attempt is then an
    orphan, left open and held)."""
    if running.done():
        _retrieve(running)
        return outcome
    holds.add(ids)
    try:
        while not running.done():
            if context.abort_reason() == job_context.AbortReason.SHUTDOWN:
                try:
                    await asyncio.wait({running}, timeout=SHUTDOWN_SETTLE)
                except asyncio.CancelledError:
                    _uncancel()  # a second stop request: no more waiting
                if running.done():
                    break
                await _orphan(pool, ids, running)
                return None
            try:
                await asyncio.wait({running})
            except asyncio.CancelledError:
                # A cancel request after the deadline, or the worker stopping: the handler
                # still runs, and the loop looks at why.
                _uncancel()
    finally:
        if ids in holds and running.done():
            holds.discard(ids)
    _retrieve(running)
    return outcome


async def _orphan(
    pool: psycopg_pool.AsyncConnectionPool, ids: Ids, running: asyncio.Future[Any]
) -> None:
    holds.orphan(ids)

    def gone(done: asyncio.Future[Any]) -> None:
        _retrieve(done)
        holds.discard(ids)

    running.add_done_callback(gone)
    logger.warning(
        "attempt %s of job %s: its handler still runs as the worker stops; the attempt stays"
        " open until it ends or this process exits",
        ids[1],
        ids[0],
    )
    # Before the worker unregisters: a worker row gone with no fresh hold would let the
    # rescuer hand the job out at once, beside the handler still running here.
    try:
        await holds_.report(pool)
    except Exception as exc:
        logger.warning("could not report attempt %s of job %s held: %s", ids[1], ids[0], exc)


async def kill(ids: Ids, child: Child, grace: float) -> None:
    """Kill a child's handler (SIGTERM, then SIGKILL after ``grace``), holding its attempt
    meanwhile; returns once the process is gone, whatever cancels the caller."""
    holds.add(ids)
    try:
        killing = asyncio.ensure_future(child.kill(grace))
        while not killing.done():
            try:
                await asyncio.shield(killing)
            except asyncio.CancelledError:
                _uncancel()  # bounded: the kill ends within the grace and the reaping
    finally:
        holds.discard(ids)
