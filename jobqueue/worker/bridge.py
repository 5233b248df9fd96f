"""The bridge: the one procrastinate task that runs every jobqueue job.

The claim (``fetch_vehicles`` in worker.sql) has already started the attempt and put
everything needed on the vehicle's args (attempt number, handler path, params, organization,
timeout, checkpoint), so running a job needs no query of its own. Params and checkpoint ride
as JSON text and are decoded here, one job at a time: a value Python cannot read (nested past
the interpreter's recursion limit, an integer of thousands of digits) fails its own attempt,
not the claim of every job that came with it. Outcomes go to the worker's
outcome buffer, which records them with :func:`record_outcomes` in batches; retries are
scheduled by the engine's SQL, never by procrastinate (the task has ``retry=False``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import traceback
from collections.abc import Sequence
from typing import Any

import psycopg_pool
from procrastinate import job_context
from psycopg.rows import dict_row

from jobqueue import calls, db, errors, models
from jobqueue.context import JobContext, NonRetryableError
from jobqueue.handlers import HandlerError, load_handler
from jobqueue.worker import deadlines, stopping, threads
from jobqueue.worker import execution as execution_
from jobqueue.worker import processes as processes_
from jobqueue.worker.connector import loads

logger = logging.getLogger("jobqueue.worker")

# How long recording an outcome keeps trying through a dropped connection before leaving the
# attempt to the rescuer (which closes it after the job's timeout plus grace).
FINISH_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)

# What the bridge task returns once its outcome is handed to finish_attempts (which deletes
# the vehicle with it), so the worker skips procrastinate's own finish of it.
VEHICLE_FINISHED = "jobqueue:vehicle-finished"

# Where a JobqueueWorker puts its OutcomeBuffer in the job context's additional_context.
OUTCOMES_KEY = "jobqueue.outcomes"


async def execute(pool: psycopg_pool.AsyncConnectionPool, call: calls.Call[Any]) -> Any:
    """Run one call of :mod:`jobqueue.calls` on the worker's pool."""
    return call.shape(await _fetch_rows(pool, call))


async def _fetch_rows(
    pool: psycopg_pool.AsyncConnectionPool, call: calls.Call[Any]
) -> list[dict[str, Any]]:
    with db.translated():
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(call.sql, call.params)
            return await cur.fetchall()


async def record_outcomes(
    pool: psycopg_pool.AsyncConnectionPool, outcomes: Sequence[dict[str, Any]]
) -> list[models.FinishResult]:
    """Record attempt outcomes in one round trip; fenced-off ones are logged, not raised.

    Every outcome a worker produces is recorded this way, by :func:`record_outcome_rows`
    when its :class:`~jobqueue.worker.outcomes.OutcomeBuffer` batches them.
    """
    # Built field by field: Record.from_row looks up the dataclass's fields for every row,
    # which costs more per job than the rest of recording it.
    return [
        models.FinishResult(
            job_id=row["job_id"],
            attempt=row["attempt"],
            accepted=row["accepted"],
            status=row["status"],
        )
        for row in await record_outcome_rows(pool, outcomes)
    ]


async def record_outcome_rows(
    pool: psycopg_pool.AsyncConnectionPool, outcomes: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """:func:`record_outcomes`, answering with finish_attempts' rows as they come: the
    worker's buffer reads none of them, and a FinishResult per job would only cost CPU."""
    call = calls.finish_attempts(outcomes)
    for delay in FINISH_RETRY_DELAYS:
        try:
            rows = await _fetch_rows(pool, call)
            break
        except (errors.DatabaseUnavailable, psycopg_pool.PoolTimeout) as exc:
            logger.warning("recording outcomes failed (%s); retrying in %ss", exc, delay)
            await asyncio.sleep(delay)
    else:
        # Still failing: the rescuer closes these attempts once their timeout has passed.
        rows = await _fetch_rows(pool, call)
    for row in rows:
        if not row["accepted"]:
            logger.warning(
                "attempt %s of job %s is no longer current; its outcome was kept on the "
                "attempt row only",
                row["attempt"],
                row["job_id"],
            )
    return rows


def _outcome(
    ctx_ids: tuple[int, int],
    outcome: str,
    *,
    result: Any = None,
    error: str | None = None,
    tb: str | None = None,
    retryable: bool = True,
) -> dict[str, Any]:
    job_id, attempt = ctx_ids
    return {
        "job_id": job_id,
        "attempt": attempt,
        "outcome": outcome,
        "result": result,
        "error": _storable(error),
        "traceback": _storable(tb),
        "retryable": retryable,
    }


def _storable(text: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL, and an unstorable error would leave the attempt open.
    return None if text is None else text.replace("\x00", "\\0")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _run_in_thread(
    loop: asyncio.AbstractEventLoop, handler: Any, ctx: JobContext, params: dict[str, Any]
) -> asyncio.Future[Any]:
    """Run a sync handler on a thread of its own and expose it as a loop future.

    A thread no other running handler has (see :mod:`jobqueue.worker.threads`): a handler
    abandoned at its deadline (or on cancel) may keep running, and it must not hold a slot
    that the next job waits for.
    """
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)

    def target() -> None:
        value, error = None, None
        try:
            value = handler(ctx, **params)
        except BaseException as exc:
            error = exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:
            pass  # the worker's loop is gone: this attempt was abandoned long ago

    threads.threads.run(target, f"job-{ctx.job_id}")
    return future


def _is_async(fn: Any) -> bool:
    kind = _kinds.get(fn)
    if kind is None:
        kind = _kinds[fn] = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - an instance with an async __call__
        )
    return kind


# Whether each handler is async, by handler: inspect's answer costs more than a no-op job.
# Handlers are few and cached by jobqueue.handlers for the process's life anyway.
_kinds: dict[Any, bool] = {}


async def _settle_by(
    loop: asyncio.AbstractEventLoop, running: asyncio.Future[Any], deadline: float
) -> bool:
    """Wait until ``running`` is done (True) or ``deadline`` (loop time) has passed (False).

    ``asyncio.wait`` would do, but it builds sets, a waiter, a timer and callbacks through
    layers that cost more than a short job; this is one future and one callback, and a
    timer shared with the attempts that share the deadline. Cancelling the caller leaves
    ``running`` alone, as ``asyncio.wait`` does.
    """
    if running.done():
        return True
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timers = deadlines.on(loop)
    key = timers.add(deadline, wake)
    running.add_done_callback(wake)
    try:
        await waiter
    finally:
        timers.discard(key, wake)
        running.remove_done_callback(wake)
    return running.done()


class Undecodable(Exception):
    """A job's params or checkpoint could not be read as JSON."""


def _decoded(value: Any, what: str) -> Any:
    """``value`` as the claim sent it (JSON text), decoded; Undecodable if Python cannot."""
    if not isinstance(value, str):
        return value  # already decoded (a vehicle started by an older claim)
    try:
        return loads(value)
    except RecursionError:
        raise Undecodable(f"the job's {what} are nested too deeply to decode") from None
    except ValueError as exc:
        raise Undecodable(f"the job's {what} cannot be decoded: {exc}") from None


async def run_attempt(
    context: job_context.JobContext,
    *,
    job_id: int,
    attempt: int,
    handler: str,
    params: dict[str, Any] | str,
    organization: str,
    timeout: float,
    job_type: str,
    checkpoint: Any = None,
    execution: str | None = None,
) -> str | None:
    """Run one attempt of a job and record its outcome; returns VEHICLE_FINISHED once the
    outcome (and with it the vehicle's deletion) is handed over.

    ``execution`` is the job type's mode; None runs it in the worker's default. Either way
    the attempt ends only once its handler is gone (see :mod:`jobqueue.worker.stopping`).
    """
    pool: psycopg_pool.AsyncConnectionPool = context.app.connector.pool  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    ids = (job_id, attempt)
    try:
        params = _decoded(params, "params")
        checkpoint = _decoded(checkpoint, "checkpoint")
        if not isinstance(params, dict):
            raise Undecodable("the job's params are not a JSON object")
    except Undecodable as exc:
        # Retrying would not help: the same value comes back with every claim.
        logger.error("job %s attempt %s: %s", job_id, attempt, exc)
        unreadable = _outcome(ids, "failed", error=str(exc), retryable=False)
        if not _hand_over(context, unreadable):
            await record_outcomes(pool, [unreadable])
        return VEHICLE_FINISHED

    async def execute_named(name: str, *args: Any) -> Any:
        return await execute(pool, getattr(calls, name)(*args))

    ctx = JobContext(
        job_id=job_id,
        attempt=attempt,
        job_type=job_type,
        organization=organization,
        params=params,
        checkpoint=checkpoint,
        timeout=timeout,
        loop=loop,
        execute=execute_named,
    )
    outcome: dict[str, Any] | None
    if (execution or _default_mode(context)) == execution_.PROCESS:
        outcome = await _run_in_process(context, ctx, ids, handler, params, deadline)
    else:
        outcome = await _run_inline(context, ctx, ids, handler, params, deadline)
    if outcome is None:
        # Orphaned: the worker stopped while the handler ran on. The attempt stays open, held,
        # and the rescuer closes it once this process (and the handler with it) is gone.
        return VEHICLE_FINISHED
    if ctx._progress_unwritten():
        await ctx._flush_progress()
    if not _hand_over(context, outcome):
        await record_outcomes(pool, [outcome])
    return VEHICLE_FINISHED


def _default_mode(context: job_context.JobContext) -> str:
    settings = context.additional_context.get(execution_.SETTINGS_KEY)
    return settings.default if settings is not None else execution_.INLINE


async def _run_inline(
    context: job_context.JobContext,
    ctx: JobContext,
    ids: tuple[int, int],
    handler: str,
    params: dict[str, Any],
    deadline: float,
) -> dict[str, Any] | None:
    """A sync handler on a thread, an async one on the loop; None if orphaned."""
    loop = asyncio.get_running_loop()
    try:
        fn = load_handler(handler)
    except HandlerError as exc:
        ctx.logger.error("%s", exc)
        return _outcome(ids, "failed", error=str(exc))

    async def call_async() -> Any:
        # Called inside the task, so a call that fails at once (wrong params) fails the
        # attempt like any other error.
        return await fn(ctx, **params)

    running: asyncio.Future[Any]
    is_async = _is_async(fn)
    if is_async:
        running = loop.create_task(call_async())
    else:
        running = _run_in_thread(loop, fn, ctx, params)

    try:
        if is_async:
            # The loop runs callbacks in order, so the handler's first step comes before this
            # task's next one: a handler that ends within it, as short ones do, is settled
            # without the waiter, timer and callbacks of _settle_by.
            await asyncio.sleep(0)
        done = running.done() or await _settle_by(loop, running, deadline)
    except asyncio.CancelledError:
        # procrastinate cancels the bridge when the job is aborted: a cancel request from the
        # engine, or the worker stopping after its grace period.
        stop = _stopped(context, ctx, ids)
    else:
        if done:
            return _settled(ctx, ids, running)
        stop = _timed_out(ctx, ids)
    ctx._cancel()
    if is_async:
        running.cancel()  # a thread cannot be cancelled; its future says when it ends
    return await stopping.outlive(context, _pool_of(context), ids, running, stop)


async def _run_in_process(
    context: job_context.JobContext,
    ctx: JobContext,
    ids: tuple[int, int],
    handler: str,
    params: dict[str, Any],
    deadline: float,
) -> dict[str, Any]:
    """The handler in a child process, killed at the deadline or on cancel."""
    loop = asyncio.get_running_loop()
    processes = _processes(context)
    try:
        child = await processes.acquire()
    except asyncio.CancelledError:
        return _stopped(context, ctx, ids)  # nothing ran yet
    except Exception as exc:
        ctx.logger.error("could not start a process for the handler: %s", _describe(exc))
        return _outcome(ids, "failed", error=f"could not start a process: {_describe(exc)}")
    ended = child.submit(ctx, handler, params, ctx.load_checkpoint())
    try:
        done = await _settle_by(loop, ended, deadline)
    except asyncio.CancelledError:
        stop = _stopped(context, ctx, ids)
    else:
        if done:
            processes.release(child)
            return _ending(ctx, ids, ended.result())
        stop = _timed_out(ctx, ids)
    ctx._cancel()  # tells the child's handler, which gets SIGTERM at once after
    await stopping.kill(ids, child, processes.kill_grace)
    return stop


def _processes(context: job_context.JobContext) -> processes_.ProcessPool:
    """The worker's pool of child processes; one per process for a plain procrastinate
    worker running the bridge task."""
    found = context.additional_context.get(execution_.PROCESSES_KEY)
    if found is None:
        global _fallback
        if _fallback is None:
            settings = execution_.settings_from(context.additional_context)
            _fallback = processes_.ProcessPool(kill_grace=settings.kill_grace)
        found = _fallback
    return found


_fallback: processes_.ProcessPool | None = None


def _pool_of(context: job_context.JobContext) -> psycopg_pool.AsyncConnectionPool:
    return context.app.connector.pool  # type: ignore[attr-defined, no-any-return]


def _stopped(
    context: job_context.JobContext, ctx: JobContext, ids: tuple[int, int]
) -> dict[str, Any]:
    """The outcome of an attempt whose bridge procrastinate cancelled."""
    if context.abort_reason() == job_context.AbortReason.USER_REQUEST:
        ctx.logger.info("canceled while running")
        return _outcome(ids, "canceled", error="canceled while running")
    ctx.logger.warning("worker stopped before the job finished")
    return _outcome(ids, "lost", error="worker stopped before the job finished")


def _timed_out(ctx: JobContext, ids: tuple[int, int]) -> dict[str, Any]:
    ctx.logger.warning("timed out after %ss", ctx.timeout)
    return _outcome(ids, "timed_out", error=f"timed out after {ctx.timeout:g}s")


def _ending(ctx: JobContext, ids: tuple[int, int], ending: processes_.Ending) -> dict[str, Any]:
    """The outcome of a handler that ended in its child process."""
    if ending.kind == "returned":
        return _returned(ids, ending.value)
    if ending.kind == "exited":
        ctx.logger.warning("%s", ending.error)
    return _outcome(
        ids, "failed", error=ending.error, tb=ending.traceback, retryable=ending.retryable
    )


def _hand_over(context: job_context.JobContext, outcome: dict[str, Any]) -> bool:
    """Give the outcome to the worker's buffer; False when there is none (a plain
    procrastinate worker running the bridge task), and the caller records it itself.

    Not a coroutine: the buffer is there for every job a JobqueueWorker runs, and a coroutine
    per job only to append to it would cost more than the append."""
    buffer = context.additional_context.get(OUTCOMES_KEY)
    if buffer is None:
        return False
    buffer.add(outcome)
    return True


def _plain(result: Any) -> bool:
    """Whether JSON and jsonb surely take ``result`` as it is, so the trial encoding can be
    skipped: floats may be NaN, strings may hold NUL, and a huge int has too many digits."""
    kind = type(result)
    return result is None or kind is bool or (kind is int and -(2**63) <= result < 2**63)


def _settled(ctx: JobContext, ids: tuple[int, int], running: asyncio.Future[Any]) -> dict[str, Any]:
    """The outcome of a handler that returned or raised."""
    if running.cancelled():
        if ctx.is_canceled():
            return _outcome(ids, "canceled", error="canceled while running")
        return _outcome(ids, "failed", error="the handler was cancelled from within")
    exc = running.exception()
    if exc is None:
        return _returned(ids, running.result())
    tb = "".join(traceback.format_exception(exc))
    if isinstance(exc, asyncio.CancelledError) and ctx.is_canceled():
        return _outcome(ids, "canceled", error="canceled while running", tb=tb)
    retryable = not isinstance(exc, NonRetryableError)
    ctx.logger.warning("failed: %s", _describe(exc))
    return _outcome(ids, "failed", error=_describe(exc), tb=tb, retryable=retryable)


def _returned(ids: tuple[int, int], result: Any) -> dict[str, Any]:
    """The outcome of a handler that returned ``result``."""
    if _plain(result):
        return _outcome(ids, "completed", result=result)
    try:
        encoded = json.dumps(result, allow_nan=False)
    except RecursionError:
        # Refused here: the outcome batch this would join could not be encoded either.
        return _outcome(
            ids, "failed", error="the handler's result is nested too deeply", retryable=False
        )
    except (TypeError, ValueError) as bad:
        return _outcome(
            ids,
            "failed",
            error=f"the handler's result is not JSON-serialisable: {bad}",
            retryable=False,
        )
    if "\\u0000" in encoded:
        return _outcome(
            ids,
            "failed",
            error="the handler's result contains a NUL character, which jsonb cannot store",
            retryable=False,
        )
    return _outcome(ids, "completed", result=result)
