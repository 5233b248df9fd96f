"""GET /metrics: the engine's numbers in the Prometheus text format.

Scraping needs an admin's API token (``Authorization: Bearer``), since the numbers cover every
organization; with ``JOBQUEUE_METRICS_PUBLIC=1`` (a scraper on a private network) no token is
asked. The SSE subscriber count is this process's.

Counters (``*_total``) and the duration histogram are totals since the database was created:
what the tables hold plus what the retention cleanup rolled up as it deleted rows
(``sql/totals.sql``), so they only go up and no job pays a write for them. Every label set that
ever had a job keeps all its series, at 0 when there is nothing to count.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response

from jobqueue import calls, errors, prom_capacity
from jobqueue.auth import identify
from jobqueue.client import AsyncClient
from jobqueue.event_hub import EventHub
from jobqueue.settings import Settings

LABELS = ["organization", "job_type", "queue"]
LIVE_STATUSES = ("waiting", "queued", "running", "retrying")
DEPTH_STATES = ("runnable", "scheduled", "waiting")
COUNTERS = (
    ("submitted", "jobqueue_jobs_submitted", "Jobs submitted (duplicates not counted)."),
    ("completed", "jobqueue_jobs_completed", "Jobs completed (attempts that completed)."),
    ("failed", "jobqueue_attempts_failed", "Attempts that failed, timed out or were lost."),
    ("retried", "jobqueue_attempts_retried", "Attempts that were retries (attempt 2 and up)."),
)

Rows = list[dict[str, Any]]
# The text format generate_latest writes, under the name every Prometheus version accepts.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _rows(sql: str, actor: str | None) -> calls.Call[Rows]:
    return calls.Call(sql, {"actor": actor}, list)


def job_counts(actor: str | None) -> calls.Call[Rows]:
    """Live jobs by organization, type, queue and status."""
    return _rows("SELECT * FROM jobqueue.job_counts(actor => %(actor)s)", actor)


def metric_totals(actor: str | None) -> calls.Call[Rows]:
    """Monotonic totals by organization, type and queue (sql/totals.sql)."""
    return _rows("SELECT * FROM jobqueue.metric_totals(actor => %(actor)s)", actor)


def queue_depths(actor: str | None) -> calls.Call[Rows]:
    """Jobs waiting to run by organization, queue and state (runnable, scheduled, waiting)."""
    return _rows("SELECT * FROM jobqueue.queue_depths(actor => %(actor)s)", actor)


class Snapshot(Collector):
    """One scrape's numbers as metric families (a collector, so nothing is kept between
    scrapes and a label set never lingers in a process-wide registry)."""

    def __init__(self, totals: Rows, counts: Rows, depths: Rows, subscribers: int):
        self.totals, self.counts, self.depths = totals, counts, depths
        self.subscribers = subscribers

    def _keys(self) -> list[tuple[str, str, str]]:
        keys = {(r["organization"], r["job_type"], r["queue"]) for r in self.totals}
        keys |= {(r["organization"], r["job_type"], r["queue"]) for r in self.counts}
        return sorted(keys)

    def collect(self) -> Iterator[Metric]:
        keys = self._keys()
        totals = {(r["organization"], r["job_type"], r["queue"]): r for r in self.totals}
        for field, name, documentation in COUNTERS:
            counter = CounterMetricFamily(name, documentation, labels=LABELS)
            for key in keys:
                counter.add_metric(list(key), float(totals[key][field]) if key in totals else 0)
            yield counter
        yield self._histogram(keys, totals)

        live = GaugeMetricFamily(
            "jobqueue_jobs", "Live jobs by status.", labels=[*LABELS, "status"]
        )
        counts = {
            (r["organization"], r["job_type"], r["queue"], r["status"]): r["jobs"]
            for r in self.counts
        }
        for key in keys:
            for status in LIVE_STATUSES:
                live.add_metric([*key, status], float(counts.get((*key, status), 0)))
        yield live

        depth = GaugeMetricFamily(
            "jobqueue_queue_depth",
            "Jobs waiting to run: runnable (due now), scheduled (run_at or a retry ahead), "
            "waiting (on dependencies).",
            labels=["organization", "queue", "state"],
        )
        depths = {(r["organization"], r["queue"], r["state"]): r["jobs"] for r in self.depths}
        queues = sorted({(o, q) for o, _, q in keys} | {(o, q) for o, q, _ in depths})
        for organization, queue in queues:
            for state in DEPTH_STATES:
                value = float(depths.get((organization, queue, state), 0))
                depth.add_metric([organization, queue, state], value)
        yield depth

        subscribers = GaugeMetricFamily(
            "jobqueue_sse_subscribers", "Open live-feed connections of this process."
        )
        subscribers.add_metric([], float(self.subscribers))
        yield subscribers

    def _histogram(
        self, keys: Iterable[tuple[str, str, str]], totals: dict[tuple[str, str, str], Any]
    ) -> Metric:
        histogram = HistogramMetricFamily(
            "jobqueue_job_duration_seconds",
            "Run time of completed attempts.",
            labels=LABELS,
        )
        bounds: list[float] = []
        for row in self.totals:
            bounds = list(row["duration_bounds"])
            break
        for key in keys:
            found = totals.get(key)
            counts = list(found["duration_buckets"]) if found else [0] * (len(bounds) + 1)
            labels = [f"{b:g}" for b in bounds] + ["+Inf"]
            cumulative, running = [], 0
            for label, count in zip(labels, counts, strict=True):
                running += int(count)
                cumulative.append((label, float(running)))
            total = float(found["duration_sum"]) if found else 0.0
            histogram.add_metric(list(key), cumulative, total)
        return histogram


def render(totals: Rows, counts: Rows, depths: Rows, subscribers: int) -> bytes:
    """The exposition text for one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(totals, counts, depths, subscribers))
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
    totals = await client.run(metric_totals(actor))
    counts = await client.run(job_counts(actor))
    depths = await client.run(queue_depths(actor))
    body = render(totals, counts, depths, hub.subscriber_count)
    # Pauses, caps and each organization's use of its queues (prom_capacity.py).
    queues = await client.list_queues(actor=actor)
    usage = await client.list_queue_usage(actor=actor)
    body += prom_capacity.render(queues, usage)
    return Response(body, media_type=CONTENT_TYPE)
