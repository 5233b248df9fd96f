"""procrastinate's App and Worker, adjusted to jobqueue: batched claims and finishes,
defaults, thread pool, start-up rescue.

jobqueue.job is the source of truth, so a procrastinate row (a "vehicle") is only a ticket to
run: finished vehicles are deleted at once, and a vehicle that the rescuer already deleted
(its attempt was presumed lost) must not upset the worker when it finally finishes.

procrastinate fetches one job per round trip and finishes it with another. This worker
claims as many vehicles as it has free slots in one call (``jobqueue.fetch_vehicles``, which
starts their attempts set-based) and records outcomes through an :class:`OutcomeBuffer`
(one ``finish_attempts`` for everything that finished meanwhile). Tasks, aborts, heartbeats
and shutdown stay procrastinate's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from procrastinate import App, exceptions, job_context, jobs, retry, utils, worker

from jobqueue import calls
from jobqueue.tasks import maintenance
from jobqueue.worker import bridge, execution, holds
from jobqueue.worker.outcomes import OutcomeBuffer
from jobqueue.worker.processes import ProcessPool
from jobqueue.worker.slots import Slots
from jobqueue.worker.wakeups import WakeOnNotify

logger = logging.getLogger("jobqueue.worker")

APPLICATION_NAME = "jobqueue worker"  # how worker sessions show in pg_stat_activity

# Short intervals: a lost worker is noticed within seconds (stale_after, 10 s by default,
# against a 1 s heartbeat), and a cancel request reaches a running job within a second even
# when its NOTIFY is missed. Retries are scheduled in the future and send no NOTIFY, so the
# fetch poll bounds their lateness.
WORKER_DEFAULTS: dict[str, Any] = {
    "delete_jobs": "always",
    "update_heartbeat_interval": 1.0,
    "abort_job_polling_interval": 1.0,
    "fetch_job_polling_interval": 1.0,
    "shutdown_graceful_timeout": 30.0,
    "stalled_worker_timeout": 60.0,
}


# Vehicles one claim takes at most, however many slots are free.
MAX_CLAIM = 100

# How long a busy worker with slots free waits for its other slots to free before it claims:
# a batch of short jobs' time, a fraction of a claim's round trip under load, and nothing
# next to a job that runs for seconds.
CLAIM_GATHER = 0.005

BRIDGE_TASK = "jobqueue.run"  # the task of every vehicle; worker.sql and lifecycle.sql name it


class JobqueueWorker(WakeOnNotify):
    """A procrastinate worker that claims and finishes jobs in batches, whose sync pool
    matches its concurrency, and which rescues lost attempts and cleans up when it starts.
    Notifications only wake it (:mod:`jobqueue.worker.wakeups`)."""

    _stop_requested = False
    _outcomes: OutcomeBuffer | None = None
    _slots: Slots | None = None
    _bridge_direct: bool | None = None  # whether bridge attempts skip procrastinate's wrapping

    def stop(self) -> None:
        self._stop_requested = True
        super().stop()  # type: ignore[no-untyped-call]
        self._wake_claim_loop()

    def _wake_claim_loop(self) -> None:
        """End the claim loop's wait for slots, so that it sees the stop request."""
        loop, slots = self._loop, self._slots
        if loop is None or slots is None:
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            slots.wake()
        else:
            try:
                loop.call_soon_threadsafe(slots.wake)
            except RuntimeError:
                pass  # the loop is closed: nothing waits any more

    async def run(self) -> None:
        # procrastinate runs sync code on the loop's default executor, capped at cpu+4
        # threads whatever the concurrency; size it to the concurrency instead.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=max(4, self.concurrency), thread_name_prefix="jq")
        )
        try:
            settings = maintenance.settings_from(self.additional_context)
            pool = self.app.connector.pool  # type: ignore[attr-defined]
            await maintenance.rescue(pool, settings)
            await maintenance.cleanup(pool, settings)
        except exceptions.AppNotOpen:
            raise
        except Exception:
            logger.warning("start-up maintenance failed", exc_info=True)
        if self._stop_requested:
            return  # procrastinate's run() would forget a stop that came before it
        # Room for one more batch of outcomes than there are slots: claims pause beyond that.
        self._outcomes = OutcomeBuffer(
            functools.partial(bridge.record_outcome_rows, pool), limit=2 * self.concurrency
        )
        modes = execution.settings_from(self.additional_context)
        processes = ProcessPool(kill_grace=modes.kill_grace)
        self.additional_context = {
            **(self.additional_context or {}),
            bridge.OUTCOMES_KEY: self._outcomes,
            execution.SETTINGS_KEY: modes,
            execution.PROCESSES_KEY: processes,
        }
        self._slots = Slots(self.concurrency)
        # Handlers that a previous worker of this process left running (it stopped after a
        # database error) hold slots until they end: threads stay bounded by the concurrency.
        self._slots.take(holds.holds.adopt(self._slots.give))
        try:
            await super().run()  # type: ignore[no-untyped-call]
        finally:
            # Outcomes of the last attempts, "lost" ones of a shutdown included.
            await self._outcomes.drain()
            await processes.close()

    async def _run_loop(self) -> None:
        await self._describe()
        await super()._run_loop()  # type: ignore[no-untyped-call]

    async def _describe(self) -> None:
        """Tell the dashboard what this worker is (host, pid, queues, concurrency), once."""
        assert self.worker_id is not None
        call = calls.describe_worker(
            self.worker_id, socket.gethostname(), os.getpid(), self.queues, self.concurrency
        )
        try:
            await self.app.connector.execute_query_async(call.sql, **call.params)
        except Exception:  # the page shows less; the worker runs all the same
            logger.warning("could not describe worker %s", self.worker_id, exc_info=True)

    async def _fetch_and_process_jobs(self) -> None:
        """Claim vehicles, as many per round trip as there are free slots, and start them,
        until none is left or a stop is requested."""
        slots, outcomes = self._slots, self._outcomes
        assert slots is not None and outcomes is not None
        batch = min(self.concurrency, MAX_CLAIM)
        while not self._stop_event.is_set():
            # Too many outcomes not yet recorded pause claims, unless the claim can record the
            # waiting ones itself (at concurrency 1: the outcome of the job just ended, while
            # the previous one's finish is still in flight, fills the buffer).
            if not outcomes.room() and not (slots.free and outcomes.waiting()):
                await utils.wait_any(outcomes.has_room(), self._stop_event.wait())
                continue
            if slots.free == 0:
                await slots.wait_for(1)  # a job ends, or stop() wakes it
                continue
            if slots.used and slots.free < batch:
                # Much of a claim's cost to the database is per call, not per vehicle, and
                # jobs claimed together tend to end within moments of each other: claiming
                # at the first freed slot (or at any fixed share of them) would split each
                # batch into smaller claims, for good. A busy worker gives its running jobs
                # CLAIM_GATHER to free the rest; an idle one claims at once.
                await slots.wait_for(batch, CLAIM_GATHER)
                if self._stop_event.is_set():
                    break
            count = min(slots.free, batch)
            slots.take(count)
            # Cleared before the claim, not after: a job inserted while the claim is in flight
            # may be too late for it, and its NOTIFY must then lead to another claim rather
            # than wait for the poll.
            self._new_job_event.clear()
            # Outcomes waiting behind a finish in flight ride with the claim when there are too
            # many to claim without them. Otherwise they wait for their own finish: a claim
            # and a finish on two connections run side by side, one claim that does both
            # takes as long as the two.
            finished = [] if outcomes.room() else outcomes.take()
            try:
                vehicles = await self._claim(count, finished)
            except BaseException:
                slots.give(count)
                outcomes.settle(finished, recorded=False)
                raise
            outcomes.settle(finished, recorded=True)
            slots.give(count - len(vehicles))
            for vehicle in vehicles:
                self._start(vehicle, slots)
            if len(vehicles) < count:
                break  # the queue is empty for now: wait for a notification or the poll

    async def _claim(self, count: int, finished: list[dict[str, Any]]) -> list[jobs.Job]:
        """Claim up to ``count`` vehicles, recording the ``finished`` outcomes in the same
        transaction."""
        assert self.worker_id is not None
        execute = self.app.connector.execute_query_all_async
        call = calls.fetch_vehicles(self.queues, self.worker_id, count)
        if finished:
            both = calls.finish_and_fetch(finished, self.queues, self.worker_id, count)
            try:
                rows = await execute(both.sql, **both.params)
                return [jobs.Job.from_row(row) for row in rows]
            except exceptions.ConnectorException as exc:
                if not isinstance(exc.__cause__, psycopg.errors.DeadlockDetected):
                    raise
                # The transaction held the ended jobs while it locked the claimed ones, and
                # something else (a bulk action) took them in the other order. Nothing was
                # done: one thing at a time, then.
                logger.warning("a claim that recorded outcomes met a deadlock; retrying apart")
                await bridge.record_outcome_rows(self.app.connector.pool, finished)  # type: ignore[attr-defined]
        rows = await execute(call.sql, **call.params)
        return [jobs.Job.from_row(row) for row in rows]

    def _start(self, job: jobs.Job, slots: Slots) -> None:
        """Run a claimed job, in a slot taken for it, as procrastinate would: a JobContext,
        a task."""
        job_id = job.id
        context = job_context.JobContext(
            app=self.app,
            worker_name=self.worker_name,
            worker_queues=self.queues,
            additional_context=dict(self.additional_context or {}),
            job=job,
            abort_reason=lambda: self._job_ids_to_abort.get(job_id) if job_id else None,
            start_timestamp=time.time(),
        )
        runner = self._run_attempt if self._runs_directly(job) else self._process_job
        task = asyncio.create_task(runner(context), name=f"process job {job.task_name}[{job.id}]")
        self._running_jobs[task] = context
        task.add_done_callback(self._release)

    def _start_side_tasks(self) -> list[asyncio.Task[Any]]:
        tasks: list[asyncio.Task[Any]] = super()._start_side_tasks()
        tasks.append(asyncio.create_task(self._report_holds(), name="report_holds"))
        return tasks

    async def _report_holds(self) -> None:
        """Tell the database, with every heartbeat, which attempts' handlers still run past
        their end, so that the rescuer does not hand their jobs out beside them."""
        pool = self.app.connector.pool  # type: ignore[attr-defined]
        while True:
            await asyncio.sleep(self.update_heartbeat_interval)
            try:
                await holds.report(pool)
            except Exception as exc:
                # The heartbeat meets the same outage, and stops the worker if it lasts.
                logger.warning("reporting held attempts failed: %s", exc)

    def _release(self, done: asyncio.Task[Any]) -> None:
        """A started job's task ended: forget it and free its slot."""
        del self._running_jobs[done]
        slots = self._slots
        assert slots is not None
        slots.give()

    def _log_extra(
        self,
        action: str,
        context: job_context.JobContext | None,
        job_result: job_context.JobResult | None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        # procrastinate puts the whole job on every record, params included, and builds it
        # even for records no handler keeps; the job's id and task say enough.
        extra: dict[str, Any] = {
            "action": action,
            "worker": {"name": self.worker_name, "worker_id": self.worker_id},
        }
        if context is not None:
            extra["job"] = {"id": context.job.id, "task_name": context.job.task_name}
        return {**extra, **kwargs}

    def _log_job_outcome(
        self,
        status: jobs.Status,
        context: job_context.JobContext,
        job_result: job_context.JobResult | None,
        job_retry: exceptions.JobRetry | None,
        exc_info: bool | BaseException = False,
    ) -> None:
        # Formatting the line costs more than running a no-op job; skip it when dropped.
        if status == jobs.Status.FAILED or worker.logger.isEnabledFor(logging.INFO):
            super()._log_job_outcome(status, context, job_result, job_retry, exc_info)

    def abort_running_jobs(self) -> None:
        """End the grace period now: running attempts are recorded lost and retry elsewhere."""
        for task, context in list(self._running_jobs.items()):
            self._abort_job(task, context, job_context.AbortReason.SHUTDOWN)

    def _runs_directly(self, job: jobs.Job) -> bool:
        """Whether a claimed job can skip procrastinate's per-job wrapping: an attempt of a
        jobqueue job (the bridge records its outcome and the vehicle's end itself) when no
        procrastinate middleware would have wrapped it."""
        if job.task_name != BRIDGE_TASK or job.task_kwargs.get("attempt") is None:
            return False
        direct = self._bridge_direct
        if direct is None:
            # Tasks and middleware are set up before a worker starts: asked once, not per job.
            task = self.app.tasks.get(BRIDGE_TASK)
            direct = self._bridge_direct = task is not None and not (
                self.worker_middleware or self.task_middleware or task.task_middleware
            )
        return direct

    async def _run_attempt(self, context: job_context.JobContext) -> None:
        """Run a jobqueue attempt through the bridge task itself.

        procrastinate's wrapping (task lookup, logging, retry decision, finish) costs more
        than a no-op job and does nothing here: the task never retries, and the bridge hands
        the outcome over and ends the vehicle with it. Should the bridge fail anyway (cancelled
        before it could record anything), the vehicle is finished as procrastinate would, and
        the attempt is left to the rescuer.
        """
        task = self.app.tasks[BRIDGE_TASK]
        try:
            await task.func(context, **context.job.task_kwargs)
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            status = jobs.Status.ABORTED if cancelled else jobs.Status.FAILED
            logger.warning("attempt of job %s ended abnormally: %r", context.job.id, exc)
            await asyncio.shield(self._persist_job_status(context.job, status, None, context, None))
            if cancelled:
                raise
            return
        # The bridge returned VEHICLE_FINISHED: its outcome went to finish_attempts, which
        # ends the vehicle; only the worker's own bookkeeping is left.
        if context.job.id is not None:
            self._job_ids_to_abort.pop(context.job.id, None)

    async def _persist_job_status(
        self,
        job: jobs.Job,
        status: jobs.Status,
        retry_decision: retry.RetryDecision | None,
        context: job_context.JobContext,
        job_result: job_context.JobResult | None,
    ) -> None:
        if job_result is not None and job_result.result == bridge.VEHICLE_FINISHED:
            # finish_attempts deleted the vehicle with the outcome: nothing left to do.
            if job.id is not None:
                self._job_ids_to_abort.pop(job.id, None)
            return
        try:
            await super()._persist_job_status(job, status, retry_decision, context, job_result)
        except exceptions.ConnectorException as exc:
            # The vehicle is gone when the rescuer closed its attempt while this worker was
            # unreachable; the attempt's outcome already went through finish_attempts.
            reason = str(exc.__cause__ or exc).strip()
            logger.warning("vehicle %s could not be finished: %s", job.id, reason)
            if job.id is not None:
                self._job_ids_to_abort.pop(job.id, None)


class JobqueueApp(App):
    """A procrastinate App whose workers are :class:`JobqueueWorker`."""

    def _worker(self, **kwargs: Any) -> worker.Worker:
        return JobqueueWorker(app=self, **{**WORKER_DEFAULTS, **self.worker_defaults, **kwargs})
