"""procrastinate's App and Worker, adjusted to jobqueue: defaults, thread pool, start-up rescue.

jobqueue.job is the source of truth, so a procrastinate row (a "vehicle") is only a ticket to
run: finished vehicles are deleted at once, and a vehicle that the rescuer already deleted
(its attempt was presumed lost) must not upset the worker when it finally finishes.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from procrastinate import App, exceptions, job_context, jobs, retry, worker

from jobqueue.tasks import maintenance
from jobqueue.worker import bridge

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


class JobqueueWorker(worker.Worker):
    """A procrastinate worker whose sync pool matches its concurrency and which rescues
    lost attempts and cleans up when it starts."""

    _stop_requested = False

    def stop(self) -> None:
        self._stop_requested = True
        super().stop()  # type: ignore[no-untyped-call]

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
        await super().run()  # type: ignore[no-untyped-call]

    def abort_running_jobs(self) -> None:
        """End the grace period now: running attempts are recorded lost and retry elsewhere."""
        for task, context in list(self._running_jobs.items()):
            self._abort_job(task, context, job_context.AbortReason.SHUTDOWN)

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
