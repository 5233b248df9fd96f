"""The procrastinate app that runs jobqueue's jobs, and how to start workers.

``app`` is a procrastinate App with one bridge task, ``jobqueue.run``, which runs whatever
handler the job's type names, plus the periodic maintenance tasks. Start workers with
``jobqueue worker --queues q --concurrency N``, ``python -m jobqueue.worker ...``,
:func:`run_worker` from Python, or procrastinate's own CLI
(``procrastinate --app=jobqueue.worker.app worker --queues q,jobqueue.maintenance``).
"""

from __future__ import annotations

from typing import Any

from procrastinate import job_context

from jobqueue import db
from jobqueue.tasks import maintenance, schedules
from jobqueue.worker import bridge
from jobqueue.worker.base import (
    APPLICATION_NAME,
    BRIDGE_TASK,
    WORKER_DEFAULTS,
    JobqueueApp,
    JobqueueWorker,
)
from jobqueue.worker.connector import JobqueueConnector

app = JobqueueApp(
    # The DSN may come later: run_worker opens the app on a pool of its own.
    connector=JobqueueConnector(
        conninfo=db.dsn_from_env() or "",
        kwargs={**db.connection_kwargs(), "application_name": APPLICATION_NAME},
    ),
    worker_defaults=WORKER_DEFAULTS,  # type: ignore[arg-type]
)


@app.task(name=BRIDGE_TASK, pass_context=True, retry=False)
async def run(
    context: job_context.JobContext, /, job_id: int, attempt: int | None = None, **vehicle: Any
) -> str | None:
    """Run one attempt of a jobqueue job; the claim filled in the vehicle's args."""
    if attempt is None:
        return None  # the job stopped being runnable (canceled) between defer and fetch
    return await bridge.run_attempt(
        context,
        job_id=job_id,
        attempt=attempt,
        handler=vehicle["handler"],
        params=vehicle.get("params") or {},
        organization=vehicle["organization"],
        timeout=float(vehicle["timeout"]),
        job_type=vehicle["job_type"],
        checkpoint=vehicle.get("checkpoint"),
        execution=vehicle.get("execution"),
    )


# Maintenance jumps every queue (priority) and never piles up (one waiting tick at most).
app.periodic(cron="* * * * * */2", periodic_id="rescue")(
    app.task(
        name="jobqueue.rescue",
        pass_context=True,
        queue=maintenance.MAINTENANCE_QUEUE,
        priority=1000,
        queueing_lock="jobqueue.rescue",
    )(maintenance.rescue_task)
)
app.periodic(cron="*/5 * * * *", periodic_id="cleanup")(
    app.task(
        name="jobqueue.cleanup",
        pass_context=True,
        queue=maintenance.MAINTENANCE_QUEUE,
        priority=1000,
        queueing_lock="jobqueue.cleanup",
    )(maintenance.cleanup_task)
)

# Recurring jobs: every second, a pass over the due schedules (tasks/schedules.py).
app.periodic(cron="* * * * * *", periodic_id="schedules")(
    app.task(
        name="jobqueue.schedules",
        pass_context=True,
        queue=maintenance.MAINTENANCE_QUEUE,
        priority=1000,
        queueing_lock="jobqueue.schedules",
    )(schedules.tick_task)
)

from jobqueue.worker.runner import main, run_worker, run_worker_async  # noqa: E402

__all__ = [
    "BRIDGE_TASK",
    "JobqueueApp",
    "JobqueueWorker",
    "app",
    "main",
    "run",
    "run_worker",
    "run_worker_async",
]
