"""Periodic maintenance run by the workers themselves: rescue lost attempts, clean up.

Both run as procrastinate periodic tasks on the ``jobqueue.maintenance`` queue (every worker
started by ``jobqueue worker`` listens to it), and once whenever a worker starts. Each call
works in bounded batches, one transaction per batch, and the SQL skips rows another worker
holds, so any number of workers may run them at once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg_pool
from procrastinate import job_context

from jobqueue import calls, db

logger = logging.getLogger("jobqueue.maintenance")

MAINTENANCE_QUEUE = "jobqueue.maintenance"
RESCUE_BATCH = 500
CLEANUP_BATCH = 1000
SETTINGS_KEY = "jobqueue_maintenance"


@dataclass(frozen=True)
class MaintenanceSettings:
    """How soon a silent worker's attempts are rescued, and how long finished jobs stay."""

    stale_after: timedelta = timedelta(seconds=10)
    timeout_grace: timedelta = timedelta(seconds=30)
    retention: timedelta = timedelta(days=7)

    @classmethod
    def from_env(cls) -> MaintenanceSettings:
        """Settings from JOBQUEUE_STALE_AFTER and JOBQUEUE_RETENTION (seconds), for workers
        started by the procrastinate CLI."""
        default = cls()
        return cls(
            stale_after=_seconds("JOBQUEUE_STALE_AFTER", default.stale_after),
            retention=_seconds("JOBQUEUE_RETENTION", default.retention),
        )


def _seconds(variable: str, default: timedelta) -> timedelta:
    raw = os.environ.get(variable)
    if not raw:
        return default
    try:
        return timedelta(seconds=float(raw))
    except ValueError as exc:
        raise ValueError(f"{variable} must be a number of seconds, got {raw!r}") from exc


def settings_from(additional_context: dict[str, Any] | None) -> MaintenanceSettings:
    """The settings a worker was started with, else those of the environment."""
    settings = (additional_context or {}).get(SETTINGS_KEY)
    return settings if isinstance(settings, MaintenanceSettings) else MaintenanceSettings.from_env()


async def _call(pool: psycopg_pool.AsyncConnectionPool, call: calls.Call[int]) -> int:
    with db.translated():
        async with pool.connection() as conn:  # one statement, one transaction per batch
            cur = await conn.execute(call.sql, call.params)
            row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def rescue(pool: psycopg_pool.AsyncConnectionPool, settings: MaintenanceSettings) -> int:
    """Close every attempt whose worker stopped heartbeating (or that overran its timeout);
    returns how many."""
    total = 0
    while True:
        closed = await _call(
            pool,
            calls.rescue_attempts(
                stale_after=settings.stale_after,
                timeout_grace=settings.timeout_grace,
                batch=RESCUE_BATCH,
            ),
        )
        total += closed
        if closed < RESCUE_BATCH:
            break
    if total:
        logger.warning("rescued %s lost attempt(s)", total)
    return total


async def cleanup(pool: psycopg_pool.AsyncConnectionPool, settings: MaintenanceSettings) -> int:
    """Delete terminal jobs, events and vehicles past the retention, batch by batch; returns
    rows deleted."""
    total = 0
    while True:
        deleted = await _call(
            pool, calls.cleanup_batch(retention=settings.retention, batch=CLEANUP_BATCH)
        )
        total += deleted
        if deleted < CLEANUP_BATCH:
            break
    if total:
        logger.info("cleanup deleted %s row(s) past retention", total)
    return total


async def rescue_task(context: job_context.JobContext, timestamp: int) -> int:
    """Periodic: rescue lost attempts."""
    pool = context.app.connector.pool  # type: ignore[attr-defined]
    return await rescue(pool, settings_from(context.additional_context))


async def cleanup_task(context: job_context.JobContext, timestamp: int) -> int:
    """Periodic: retention cleanup."""
    pool = context.app.connector.pool  # type: ignore[attr-defined]
    return await cleanup(pool, settings_from(context.additional_context))
