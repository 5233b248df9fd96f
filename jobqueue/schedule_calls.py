"""The calls of the schedule API (``jobqueue/sql/schedules.sql``), for both clients.

Like :mod:`jobqueue.calls`: each function builds one call of one SQL function with named
arguments; :class:`jobqueue.client.Client` and ``AsyncClient`` run them. Settings left as
``None`` in :func:`update_schedule` keep their value.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from jobqueue import models
from jobqueue.calls import Call, _many, _one


def create_schedule(
    name: str,
    job_type: str,
    cron: str,
    params: dict[str, Any] | None = None,
    *,
    organization: str,
    timezone: str = "UTC",
    enabled: bool = True,
    priority: int | None = None,
    dedup: bool = True,
    missed: str = "skip",
    catch_up_limit: int = 1,
    grace: timedelta = timedelta(minutes=1),
    actor: str | None = None,
) -> Call[models.Schedule]:
    """A recurring job: ``job_type`` with ``params`` at every tick of ``cron`` read in
    ``timezone``. Ticks found later than ``grace`` were missed: ``missed="skip"`` drops them,
    ``"catch_up"`` runs the latest ``catch_up_limit`` of them."""
    return Call(
        "SELECT * FROM jobqueue.create_schedule(name => %(name)s, job_type => %(job_type)s,"
        " cron => %(cron)s, params => %(params)s, organization => %(organization)s,"
        " timezone => %(timezone)s, enabled => %(enabled)s,"
        " priority => %(priority)s::integer, dedup => %(dedup)s, missed => %(missed)s,"
        " catch_up_limit => %(catch_up_limit)s::integer, grace => %(grace)s,"
        " actor => %(actor)s)",
        {**locals(), "params": Jsonb(params if params is not None else {})},
        _one(models.Schedule),
    )


def update_schedule(
    name: str,
    *,
    organization: str,
    job_type: str | None = None,
    cron: str | None = None,
    params: dict[str, Any] | None = None,
    timezone: str | None = None,
    enabled: bool | None = None,
    priority: int | None = None,
    dedup: bool | None = None,
    missed: str | None = None,
    catch_up_limit: int | None = None,
    grace: timedelta | None = None,
    actor: str | None = None,
) -> Call[models.Schedule]:
    """Change a schedule; ``None`` keeps a setting. A new cron or time zone counts its ticks
    from now."""
    return Call(
        "SELECT * FROM jobqueue.update_schedule(name => %(name)s,"
        " organization => %(organization)s, job_type => %(job_type)s, cron => %(cron)s,"
        " params => %(params)s, timezone => %(timezone)s, enabled => %(enabled)s,"
        " priority => %(priority)s::integer, dedup => %(dedup)s, missed => %(missed)s,"
        " catch_up_limit => %(catch_up_limit)s::integer, grace => %(grace)s,"
        " actor => %(actor)s)",
        {**locals(), "params": None if params is None else Jsonb(params)},
        _one(models.Schedule),
    )


def set_schedule_enabled(
    name: str, enabled: bool, *, organization: str, actor: str | None = None
) -> Call[models.Schedule]:
    """Pause or resume a schedule; the ticks it had while disabled are not run later."""
    return Call(
        "SELECT * FROM jobqueue.set_schedule_enabled(name => %(name)s,"
        " organization => %(organization)s, enabled => %(enabled)s, actor => %(actor)s)",
        locals(),
        _one(models.Schedule),
    )


def delete_schedule(
    name: str, *, organization: str, actor: str | None = None
) -> Call[models.Schedule]:
    """Remove a schedule (its jobs stay); returns it as it was."""
    return Call(
        "SELECT * FROM jobqueue.delete_schedule(name => %(name)s,"
        " organization => %(organization)s, actor => %(actor)s)",
        locals(),
        _one(models.Schedule),
    )


def list_schedules(
    *, actor: str | None = None, organization: str | None = None
) -> Call[list[models.Schedule]]:
    """The schedules the actor may see, by organization and name."""
    return Call(
        "SELECT * FROM jobqueue.list_schedules(actor => %(actor)s,"
        " organization => %(organization)s)",
        locals(),
        _many(models.Schedule),
    )


def run_schedule(name: str, *, organization: str, actor: str | None = None) -> Call[models.Job]:
    """Submit the schedule's job now, outside its ticks (an active duplicate comes back with
    ``duplicate`` set when the schedule dedups)."""
    return Call(
        "SELECT * FROM jobqueue.run_schedule(name => %(name)s,"
        " organization => %(organization)s, actor => %(actor)s)",
        locals(),
        _one(models.Job),
    )


def claim_due_schedules(max_count: int = 100) -> Call[list[dict[str, Any]]]:
    """Worker side: the due schedules, locked for the caller's transaction, with the
    database's clock in ``now``."""
    return Call(
        "SELECT * FROM jobqueue.claim_due_schedules(max_count => %(max_count)s::integer)",
        locals(),
        list,
    )


def fire_schedule(
    schedule_id: int,
    version: int,
    ticks: list[datetime],
    until: datetime,
    next_run_at: datetime | None,
    *,
    skipped: int = 0,
    error: str | None = None,
) -> Call[int]:
    """Worker side: one job per tick not fired before; every tick up to ``until`` is then
    handled. ``next_run_at`` None means never."""
    return Call(
        "SELECT jobqueue.fire_schedule(schedule_id => %(schedule_id)s::bigint,"
        " version => %(version)s::integer, ticks => %(ticks)s::timestamptz[],"
        " until => %(until)s, next_run_at => coalesce(%(next_run_at)s::timestamptz, 'infinity'),"
        " skipped => %(skipped)s::integer, error => %(error)s) AS fired",
        locals(),
        lambda rows: int(rows[0]["fired"]),
    )
