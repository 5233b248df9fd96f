"""The ticker of recurring jobs: which ticks of each due schedule to fire, by the database's clock.

A procrastinate periodic task on the ``jobqueue.maintenance`` queue runs :func:`tick` every
second, on whichever worker takes it (several may run at once). One pass, in one
transaction: ``claim_due_schedules`` locks the due schedules (skipping those another pass
holds) and returns the database's ``now()``; :func:`plan` computes each one's ticks from its
cron expression in its time zone with cronsim (Debian cron's rules, DST included); and
``fire_schedule`` submits one job per tick, which the key of ``jobqueue.schedule_tick`` keeps
to one whatever else fires the same tick. A worker's own clock is never read, so clock skew
between workers changes nothing. A pass killed midway rolls back, and the next one fires its
ticks.

Lateness: a tick is *on time* while it is at most the schedule's ``grace`` old; an older one
(workers were down, or busy) was *missed*. ``missed="skip"`` drops missed ticks and goes on
with the next; ``"catch_up"`` runs the latest ``catch_up_limit`` of them, once each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg_pool
from cronsim import CronSim, CronSimError
from procrastinate import job_context
from psycopg.rows import dict_row

from jobqueue import db, schedule_calls

logger = logging.getLogger("jobqueue.schedules")

CLAIM_BATCH = 100
MAX_TICKS = 1000  # fired for one schedule in one pass; the next pass goes on from there
MAX_COUNTED = 10_000  # missed ticks counted for the schedule_missed event
ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Plan:
    """What one pass does for one schedule."""

    ticks: list[datetime]  # to fire, ascending, UTC
    until: datetime  # every tick up to here is handled after this pass
    next_run_at: datetime | None  # None: the expression never matches again
    skipped: int  # missed ticks left out (counted up to MAX_COUNTED)


def _iterate(expression: str, zone: ZoneInfo, start: datetime, reverse: bool) -> Iterator[datetime]:
    """cronsim's ticks from ``start``, as UTC; ends when none is left within 50 years."""
    it = CronSim(expression, start.astimezone(zone), reverse=reverse)
    while True:
        try:
            found = next(it)
        except StopIteration:
            return
        yield found.astimezone(UTC)


def ticks_between(
    expression: str, zone: ZoneInfo, after: datetime, until: datetime, limit: int
) -> list[datetime]:
    """The ticks t with ``after < t <= until``, ascending, at most ``limit``."""
    found: list[datetime] = []
    for tick in _iterate(expression, zone, after, reverse=False):
        if tick > until or len(found) >= limit:
            break
        # cronsim walks a fixed-time expression in local time, so from inside a repeated
        # hour it can answer a moment before the start: such a tick is not after it.
        if tick > after:
            found.append(tick)
    return found


def latest_ticks(
    expression: str, zone: ZoneInfo, after: datetime, until: datetime, count: int
) -> list[datetime]:
    """The latest ``count`` ticks t with ``after < t <= until``, ascending."""
    found: list[datetime] = []
    # Reverse iteration answers ticks before its start: a microsecond later includes until.
    for tick in _iterate(expression, zone, until + ONE_MICROSECOND, reverse=True):
        if tick <= after or len(found) >= count:
            break
        if tick <= until:
            found.append(tick)
    return sorted(found)


def next_tick(expression: str, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first tick after ``after``, or None when there is none within 50 years."""
    for tick in _iterate(expression, zone, after, reverse=False):
        if tick > after:
            return tick
    return None


def plan(
    expression: str,
    timezone: str,
    ticked_until: datetime,
    now: datetime,
    *,
    missed: str = "skip",
    catch_up_limit: int = 1,
    grace: timedelta = timedelta(minutes=1),
) -> Plan:
    """The ticks to fire for a schedule whose ticks up to ``ticked_until`` are handled, at the
    database's ``now``. Raises CronSimError or ZoneInfoNotFoundError for a schedule that
    cannot be computed."""
    zone = ZoneInfo(timezone)
    horizon = now - grace  # a tick at or before it was missed
    ticks = ticks_between(expression, zone, max(ticked_until, horizon), now, MAX_TICKS + 1)
    until = now
    if len(ticks) > MAX_TICKS:
        ticks = ticks[:MAX_TICKS]
        until = ticks[-1]
    caught_up: list[datetime] = []
    skipped = 0
    if ticked_until < horizon:
        missed_count = len(ticks_between(expression, zone, ticked_until, horizon, MAX_COUNTED))
        if missed == "catch_up" and missed_count:
            caught_up = latest_ticks(expression, zone, ticked_until, horizon, catch_up_limit)
        skipped = missed_count - len(caught_up)
    return Plan(caught_up + ticks, until, next_tick(expression, zone, until), skipped)


async def _fire(conn: Any, row: dict[str, Any]) -> int:
    try:
        planned = plan(
            row["expression"],
            row["timezone"],
            row["ticked_until"],
            row["now"],
            missed=row["missed"],
            catch_up_limit=row["catch_up_limit"],
            grace=row["grace"],
        )
        call = schedule_calls.fire_schedule(
            row["id"],
            row["version"],
            planned.ticks,
            planned.until,
            planned.next_run_at,
            skipped=planned.skipped,
        )
    except (CronSimError, ValueError, LookupError) as exc:
        # The database checked the expression and the zone; this worker still could not
        # compute them (a zone its Python lacks, say). The schedule keeps the error.
        logger.warning("schedule %s cannot be computed: %s", row["id"], exc)
        message = f"cannot compute the schedule's ticks: {exc or type(exc).__name__}"
        call = schedule_calls.fire_schedule(
            row["id"], row["version"], [], row["now"], None, error=message
        )
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(call.sql, call.params)
    return call.shape(await cur.fetchall())


async def tick(pool: psycopg_pool.AsyncConnectionPool, batch: int = CLAIM_BATCH) -> int:
    """One pass over the due schedules, ``batch`` per transaction; returns ticks fired."""
    fired = 0
    claim = schedule_calls.claim_due_schedules(batch)
    while True:
        with db.translated():
            async with pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(claim.sql, claim.params)
                rows = await cur.fetchall()
                for row in rows:
                    fired += await _fire(conn, row)
        if len(rows) < batch:
            break
    if fired:
        logger.debug("fired %s tick(s)", fired)
    return fired


async def tick_task(context: job_context.JobContext, timestamp: int) -> int:
    """Periodic: fire the due schedules' ticks."""
    pool = context.app.connector.pool  # type: ignore[attr-defined]
    return await tick(pool)
