"""GET /metrics: valid exposition (promtool), counters that survive cleanup, histograms,
queue depth by state, and series that stay at 0 instead of vanishing (issue 14)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobqueue.client import Client
from tests.factories import run_job
from tests.integration.web_helpers import World, asgi_client, bearer, build_world, settings_for


@pytest.fixture
def world(client: Client) -> World:
    return build_world(client)


def promtool_check(text: str) -> None:
    """`promtool check metrics`: the format and Prometheus's naming rules, strictly."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install -y prometheus (.ci/run does)"
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


async def scrape(dsn: str, token: str) -> str:
    async with asgi_client(settings_for(dsn)) as http:
        response = await http.get("/metrics", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    promtool_check(response.text)
    return response.text


A = {"organization": "org-a", "job_type": "echo", "queue": "default"}


async def test_counters_histogram_and_depth_survive_cleanup(
    client: Client, world: World, dsn: str
) -> None:
    empty = await scrape(dsn, world.admin)
    assert "jobqueue_jobs_submitted_total" not in samples(empty).__repr__()
    assert value(empty, "jobqueue_sse_subscribers") == 0

    done = [client.submit_job("echo", {"n": n}, organization="org-a") for n in range(3)]
    for job in done:
        run_job(dsn, job.id)
    failed = client.submit_job("echo", {"n": "f"}, organization="org-a")
    run_job(dsn, failed.id, "failed")  # retries left: retrying, due now
    run_job(dsn, failed.id, "completed")  # its second attempt is a retry
    client.submit_job("echo", {"n": "later"}, organization="org-a",
                      run_at=datetime.now(UTC) + timedelta(hours=1))  # fmt: skip
    client.submit_job("echo", {"n": "now"}, organization="org-a")

    text = await scrape(dsn, world.admin)
    assert value(text, "jobqueue_jobs_submitted_total", **A) == 6
    assert value(text, "jobqueue_jobs_completed_total", **A) == 4
    assert value(text, "jobqueue_attempts_failed_total", **A) == 1
    assert value(text, "jobqueue_attempts_retried_total", **A) == 1
    assert value(text, "jobqueue_job_duration_seconds_count", **A) == 4
    assert value(text, "jobqueue_job_duration_seconds_bucket", **A, le="+Inf") == 4
    depth = {"organization": "org-a", "queue": "default"}
    assert value(text, "jobqueue_queue_depth", **depth, state="runnable") == 1
    assert value(text, "jobqueue_queue_depth", **depth, state="scheduled") == 1
    assert value(text, "jobqueue_queue_depth", **depth, state="waiting") == 0
    assert value(text, "jobqueue_jobs", **A, status="running") == 0
    # Another organization's rows are not made up: bob's org has had no job.
    assert (
        "jobqueue_jobs_submitted_total",
        tuple(sorted({**A, "organization": "org-b"}.items())),
    ) not in samples(text)  # noqa: E501

    # Everything ends and the cleanup deletes it all: the totals stay, the gauges go to 0.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT jobqueue.cancel_jobs()")
        conn.execute("UPDATE jobqueue.job SET finished_at = now() - interval '1 hour'")
        conn.execute("SELECT jobqueue.cleanup_batch(retention => '1 second', batch => 2)")
        half = await scrape(dsn, world.admin)
        while conn.execute("SELECT jobqueue.cleanup_batch('1 second', 2)").fetchone() != (0,):
            pass
        assert conn.execute("SELECT count(*) FROM jobqueue.job").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM jobqueue.attempt").fetchone() == (0,)
    after = await scrape(dsn, world.admin)
    totals = (
        "jobqueue_jobs_submitted_total",
        "jobqueue_jobs_completed_total",
        "jobqueue_attempts_failed_total",
        "jobqueue_attempts_retried_total",
        "jobqueue_job_duration_seconds_count",
        "jobqueue_job_duration_seconds_sum",
    )
    for name in totals:
        assert value(half, name, **A) == value(text, name, **A) == value(after, name, **A), name
    for le in ("0.005", "1", "60", "+Inf"):
        assert value(after, "jobqueue_job_duration_seconds_bucket", **A, le=le) == value(
            text, "jobqueue_job_duration_seconds_bucket", **A, le=le
        )
    for state in ("runnable", "scheduled", "waiting"):
        assert value(after, "jobqueue_queue_depth", **depth, state=state) == 0
    assert value(after, "jobqueue_jobs", **A, status="queued") == 0


async def test_a_member_cannot_scrape_and_organizations_are_not_mixed(
    client: Client, world: World, dsn: str
) -> None:
    client.submit_job("echo", {}, organization="org-b")
    async with asgi_client(settings_for(dsn)) as http:
        assert (await http.get("/metrics", headers=bearer(world.alice))).status_code == 403
    text = await scrape(dsn, world.admin)
    assert value(text, "jobqueue_jobs_submitted_total", **{**A, "organization": "org-b"}) == 1


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(0, 1), (0.005, 1), (0.0051, 2), (1, 8), (1.5, 9), (3600, 18), (3600.5, 19), (1e9, 19)],
)
def test_duration_buckets_are_upper_bounds_inclusive(dsn: str, seconds: float, bucket: int) -> None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT jobqueue._duration_bucket(%s), jobqueue._duration_bounds()", (seconds,)
        ).fetchone()
    assert row is not None and row[0] == bucket, (row, seconds)
