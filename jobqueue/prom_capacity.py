"""The capacity part of GET /metrics: each queue's pause and caps, and what each organization
runs and keeps waiting there against its cap.

Gauges, in the Prometheus text format appended to :mod:`jobqueue.prom`'s:

* ``jobqueue_queue_paused{queue}`` 1 when the queue is paused for everyone;
* ``jobqueue_queue_concurrency_limit{queue}``, ``jobqueue_queue_organization_concurrency_limit
  {queue}``: the queue's caps (absent: no cap);
* ``jobqueue_queue_running{queue}``, ``jobqueue_queue_queued{queue}``;
* ``jobqueue_organization_running{queue, organization}``, ``jobqueue_organization_queued``,
  ``jobqueue_organization_concurrency_limit`` (its cap, own or the queue's; absent: none),
  ``jobqueue_organization_weight`` and ``jobqueue_organization_paused`` (its own pause).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from jobqueue import models


def render(queues: list[models.QueueInfo], usage: list[models.OrganizationUsage]) -> bytes:
    """The exposition text of these queues and organizations."""
    registry = CollectorRegistry()

    def gauge(name: str, help_: str, labels: list[str]) -> Gauge:
        return Gauge(name, help_, labels, registry=registry)

    paused = gauge("jobqueue_queue_paused", "1 when the queue is paused for everyone.", ["queue"])
    limit = gauge("jobqueue_queue_concurrency_limit", "Cap on the queue's running jobs.", ["queue"])
    default = gauge(
        "jobqueue_queue_organization_concurrency_limit",
        "Cap on each organization's running jobs in the queue, unless overridden.",
        ["queue"],
    )
    running = gauge("jobqueue_queue_running", "Running jobs of the queue.", ["queue"])
    queued = gauge("jobqueue_queue_queued", "Queued or retrying jobs of the queue.", ["queue"])
    for q in queues:
        paused.labels(q.queue).set(int(q.paused))
        running.labels(q.queue).set(q.running)
        queued.labels(q.queue).set(q.queued)
        if q.concurrency is not None:
            limit.labels(q.queue).set(q.concurrency)
        if q.organization_concurrency is not None:
            default.labels(q.queue).set(q.organization_concurrency)

    pair = ["queue", "organization"]
    org_running = gauge(
        "jobqueue_organization_running", "Running jobs of the organization in the queue.", pair
    )
    org_queued = gauge(
        "jobqueue_organization_queued", "Queued or retrying jobs of the organization.", pair
    )
    org_limit = gauge(
        "jobqueue_organization_concurrency_limit",
        "Cap on the organization's running jobs in the queue (its own or the queue's).",
        pair,
    )
    org_weight = gauge("jobqueue_organization_weight", "Its share in the round robin.", pair)
    org_paused = gauge(
        "jobqueue_organization_paused", "1 when the queue is paused for the organization.", pair
    )
    for u in usage:
        org_running.labels(u.queue, u.organization).set(u.running)
        org_queued.labels(u.queue, u.organization).set(u.queued)
        org_weight.labels(u.queue, u.organization).set(u.weight)
        org_paused.labels(u.queue, u.organization).set(int(u.paused))
        if u.concurrency is not None:
            org_limit.labels(u.queue, u.organization).set(u.concurrency)
    return generate_latest(registry)
