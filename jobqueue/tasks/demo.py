"""Demo handlers a new user can submit at once, and their job types.

``register_demo_types(client)`` registers them (``jobqueue up`` does so): ``demo.echo``,
``demo.sleep``, ``demo.flaky`` and ``demo.fail``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from jobqueue import models
from jobqueue.client import Client
from jobqueue.context import JobContext, NonRetryableError
from jobqueue.handlers import register_job_type


def echo(ctx: JobContext, **params: Any) -> dict[str, Any]:
    """Return the params unchanged."""
    return params


async def sleep(ctx: JobContext, seconds: float = 5, steps: int = 10) -> dict[str, Any]:
    """Sleep for ``seconds`` in ``steps``, reporting progress; stops early when canceled."""
    steps = max(1, int(steps))
    for step in range(steps):
        await asyncio.sleep(float(seconds) / steps)
        ctx.report_progress(int(100 * (step + 1) / steps), f"step {step + 1} of {steps}")
    return {"slept": seconds}


def flaky(ctx: JobContext, failures: int = 2) -> dict[str, Any]:
    """Fail the first ``failures`` attempts, then succeed."""
    if ctx.attempt <= int(failures):
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose ({failures} to go)")
    return {"succeeded_on_attempt": ctx.attempt}


def fail(ctx: JobContext, message: str = "this job always fails", retry: bool = True) -> None:
    """Always fail; with ``retry=false`` the job goes straight to dead."""
    if not retry:
        raise NonRetryableError(message)
    raise RuntimeError(message)


DEMO_TYPES: dict[str, dict[str, Any]] = {
    "demo.echo": {"handler": "jobqueue.tasks.demo:echo"},
    "demo.sleep": {"handler": "jobqueue.tasks.demo:sleep", "timeout": timedelta(minutes=10)},
    "demo.flaky": {
        "handler": "jobqueue.tasks.demo:flaky",
        "max_retries": 3,
        "backoff_base": timedelta(seconds=1),
        "backoff_max": timedelta(seconds=5),
    },
    "demo.fail": {
        "handler": "jobqueue.tasks.demo:fail",
        "max_retries": 2,
        "backoff_base": timedelta(seconds=1),
        "backoff_max": timedelta(seconds=5),
    },
}


def register_demo_types(client: Client, *, queue: str = "default") -> list[models.JobType]:
    """Register (or update) the demo job types on ``queue``."""
    registered = []
    for name, settings in DEMO_TYPES.items():
        settings = dict(settings)
        handler = settings.pop("handler")
        registered.append(register_job_type(client, name, handler, queue=queue, **settings))
    return registered
