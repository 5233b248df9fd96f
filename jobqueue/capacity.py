"""The calls of the capacity controls (``jobqueue/sql/capacity.sql``), for both clients.

Pauses, caps, weights and start limits decide how organizations share the workers; the fair
claim and the counts behind exact caps live in ``claim.sql``. Like :mod:`jobqueue.calls`, each
function only builds the call: one SQL function with named arguments.
"""

from __future__ import annotations

from datetime import timedelta

from jobqueue import models
from jobqueue.calls import Call, _many, _one


def pause_queue(
    queue: str, *, organization: str | None = None, actor: str | None = None
) -> Call[models.QueuePause]:
    """No job of the queue (of that organization, if named) starts until resumed; running
    ones finish."""
    return Call(
        "SELECT * FROM jobqueue.pause_queue(queue => %(queue)s,"
        " organization => %(organization)s, actor => %(actor)s)",
        locals(),
        _one(models.QueuePause),
    )


def resume_queue(
    queue: str, *, organization: str | None = None, actor: str | None = None
) -> Call[models.QueuePause]:
    """Undo :func:`pause_queue`; the queue's waiting jobs start at once."""
    return Call(
        "SELECT * FROM jobqueue.resume_queue(queue => %(queue)s,"
        " organization => %(organization)s, actor => %(actor)s)",
        locals(),
        _one(models.QueuePause),
    )


def set_queue_limits(
    queue: str,
    *,
    concurrency: int | None = None,
    organization_concurrency: int | None = None,
    actor: str | None = None,
) -> Call[models.QueueSettings]:
    """Running jobs of the queue, and of each organization in it unless overridden (None: no
    cap); replaces the queue's caps."""
    return Call(
        "SELECT * FROM jobqueue.set_queue_limits(queue => %(queue)s,"
        " concurrency => %(concurrency)s::integer,"
        " organization_concurrency => %(organization_concurrency)s::integer,"
        " actor => %(actor)s)",
        locals(),
        _one(models.QueueSettings),
    )


def set_organization_limits(
    queue: str,
    organization: str,
    *,
    concurrency: int | None = None,
    weight: int = 1,
    actor: str | None = None,
) -> Call[models.OrganizationSettings]:
    """One organization's cap in the queue (None: the queue's default) and its weight in the
    round robin."""
    return Call(
        "SELECT * FROM jobqueue.set_organization_limits(queue => %(queue)s,"
        " organization => %(organization)s, concurrency => %(concurrency)s::integer,"
        " weight => %(weight)s::integer, actor => %(actor)s)",
        locals(),
        _one(models.OrganizationSettings),
    )


def set_job_type_limits(
    name: str,
    *,
    concurrency: int | None = None,
    start_limit: int | None = None,
    start_period: timedelta | None = None,
    actor: str | None = None,
) -> Call[models.JobTypeSettings]:
    """Running jobs of the type, all organizations, and starts per organization and period."""
    return Call(
        "SELECT * FROM jobqueue.set_job_type_limits(name => %(name)s,"
        " concurrency => %(concurrency)s::integer, start_limit => %(start_limit)s::integer,"
        " start_period => %(start_period)s::interval, actor => %(actor)s)",
        locals(),
        _one(models.JobTypeSettings),
    )


def set_job_priority(job_id: int, priority: int, *, actor: str | None = None) -> Call[models.Job]:
    """Change the priority of a job that has not started (JobStarted once it has)."""
    return Call(
        "SELECT * FROM jobqueue.set_job_priority(job_id => %(job_id)s::bigint,"
        " priority => %(priority)s::integer, actor => %(actor)s)",
        locals(),
        _one(models.Job),
    )


def list_queues(*, actor: str | None = None) -> Call[list[models.QueueInfo]]:
    """Every queue, with its settings and the running and queued jobs the actor may see."""
    return Call(
        "SELECT * FROM jobqueue.list_queues(actor => %(actor)s)", locals(), _many(models.QueueInfo)
    )


def list_queue_usage(
    *, actor: str | None = None, queue: str | None = None, organization: str | None = None
) -> Call[list[models.OrganizationUsage]]:
    """Each organization the actor may see in each queue: pauses, cap, weight, jobs."""
    return Call(
        "SELECT * FROM jobqueue.list_queue_usage(actor => %(actor)s, queue => %(queue)s,"
        " organization => %(organization)s)",
        locals(),
        _many(models.OrganizationUsage),
    )


def list_job_type_limits(*, actor: str | None = None) -> Call[list[models.JobTypeSettings]]:
    """Every job type's running cap and start limit."""
    return Call(
        "SELECT * FROM jobqueue.list_job_type_limits(actor => %(actor)s)",
        locals(),
        _many(models.JobTypeSettings),
    )
