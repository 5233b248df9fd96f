"""GET /metrics: the engine's numbers in the Prometheus text format.

Scraping needs an admin's API token (``Authorization: Bearer``), since the numbers cover every
organization; with ``JOBQUEUE_METRICS_PUBLIC=1`` (a scraper on a private network) no token is
asked. The SSE subscriber count is this process's.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from jobqueue import calls, errors, prom_capacity
from jobqueue.auth import identify
from jobqueue.client import AsyncClient
from jobqueue.settings import Settings
from jobqueue.sse import EventHub


def job_counts(actor: str | None) -> calls.Call[list[dict[str, Any]]]:
    """Jobs by organization, type, queue and status."""
    return calls.Call(
        "SELECT * FROM jobqueue.job_counts(actor => %(actor)s)", {"actor": actor}, list
    )


def render(counts: list[dict[str, Any]], document: dict[str, Any], subscribers: int) -> bytes:
    """The exposition text for one scrape."""
    registry = CollectorRegistry()
    labels = ["organization", "job_type", "queue", "status"]
    jobs = Gauge("jobqueue_jobs", "Jobs on record.", labels, registry=registry)
    depth = Gauge(
        "jobqueue_queue_depth",
        "Jobs waiting to run (queued or retrying).",
        ["organization", "queue"],
        registry=registry,
    )
    depths: dict[tuple[str, str], int] = {}
    for row in counts:
        jobs.labels(*(row[name] for name in labels)).set(row["jobs"])
        if row["status"] in ("queued", "retrying"):
            key = (row["organization"], row["queue"])
            depths[key] = depths.get(key, 0) + int(row["jobs"])
    for (organization, queue), value in depths.items():
        depth.labels(organization, queue).set(value)

    durations = Gauge(
        "jobqueue_attempt_duration_seconds",
        "Duration of completed attempts in the last 24 hours, by quantile.",
        ["quantile"],
        registry=registry,
    )
    processing = document.get("processing_time_ms") or {}
    for quantile, field in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")):
        if processing.get(field) is not None:
            durations.labels(quantile).set(float(processing[field]) / 1000)
    attempts = Gauge(
        "jobqueue_attempts_recent",
        "Attempts finished in the last 24 hours.",
        ["job_type"],
        registry=registry,
    )
    failures = Gauge(
        "jobqueue_attempt_failures_recent",
        "Attempts that did not complete, in the last 24 hours.",
        ["job_type"],
        registry=registry,
    )
    for row in document.get("failure_rate_by_type") or []:
        attempts.labels(row["job_type"]).set(row["attempts"])
        failures.labels(row["job_type"]).set(row["failed"])
    Gauge(
        "jobqueue_sse_subscribers", "Open live-feed connections of this process.", registry=registry
    ).set(subscribers)
    return generate_latest(registry)


async def metrics(request: Request) -> Response:
    settings: Settings = request.state.settings
    actor: str | None = None  # public scrape: the whole engine, as the trusted service
    if not settings.metrics_public:
        identity = await identify(request)
        if not identity.is_admin:
            raise errors.Forbidden("/metrics needs an admin token (or JOBQUEUE_METRICS_PUBLIC=1)")
        actor = identity.user_name
    client: AsyncClient = request.state.client
    hub: EventHub = request.state.hub
    counts = await client.run(job_counts(actor))
    document = await client.metrics(actor=actor)
    body = render(counts, document, hub.subscriber_count)
    # Pauses, caps and each organization's use of its queues (prom_capacity.py).
    queues = await client.list_queues(actor=actor)
    usage = await client.list_queue_usage(actor=actor)
    body += prom_capacity.render(queues, usage)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
