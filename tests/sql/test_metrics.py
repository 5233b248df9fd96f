"""metrics.sql against real PostgreSQL: counts, queue depth, processing time, failure rates and
throughput of exactly the organizations the actor may see; bad windows refused."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobqueue import errors
from jobqueue.client import Client
from tests.factories import make_job_type, make_org_with_member, run_job


@pytest.fixture
def world(client: Client, dsn: str) -> Client:
    """acme: 2 queued (priorities 5 and 0), 1 waiting, 1 completed, 1 dead; globex: 3 queued."""
    make_job_type(client, "echo")
    make_job_type(client, "fragile", max_retries=0)
    make_org_with_member(client, "acme", "alice")
    make_org_with_member(client, "globex", "bob")
    client.create_user("root", admin=True)
    done = client.submit_job("echo", {"done": 1}, organization="acme")
    run_job(dsn, done.id)
    dead = client.submit_job("fragile", {"dead": 1}, organization="acme")
    run_job(dsn, dead.id, "failed")
    high = client.submit_job("echo", {"q": 1}, organization="acme", priority=5)
    client.submit_job("echo", {"q": 2}, organization="acme")
    client.submit_job("echo", {"w": 1}, organization="acme", depends_on=[high.id])
    for n in range(3):
        client.submit_job("echo", {"g": n}, organization="globex", priority=1)
    return client


def counts(metrics: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in metrics["counts_by_status"].items() if v}


def test_an_organizations_metrics(world: Client) -> None:
    m = world.metrics(actor="alice", organization="acme")
    assert counts(m) == {"queued": 2, "waiting": 1, "completed": 1, "dead": 1}
    assert set(m["counts_by_status"]) == {
        "waiting",
        "queued",
        "running",
        "retrying",
        "completed",
        "dead",
        "canceled",
    }
    assert m["queue_depth_by_priority"] == [
        {"priority": 5, "depth": 1},
        {"priority": 0, "depth": 1},
    ]
    assert m["processing_time_ms"]["count"] == 1
    time_ms = m["processing_time_ms"]
    assert 0 <= time_ms["p50"] <= time_ms["p95"] <= time_ms["p99"]
    assert m["failure_rate_by_type"] == [
        {"job_type": "echo", "attempts": 1, "failed": 0, "rate": 0},
        {"job_type": "fragile", "attempts": 1, "failed": 1, "rate": 1},
    ]
    assert sum(b["completed"] for b in m["throughput"]) == 1
    assert sum(b["failed"] for b in m["throughput"]) == 1
    assert m["organization"] == "acme"


def test_without_organization_each_actor_counts_what_it_sees(world: Client) -> None:
    assert counts(world.metrics(actor="bob")) == {"queued": 3}
    assert counts(world.metrics(actor="root")) == {
        "queued": 5,
        "waiting": 1,
        "completed": 1,
        "dead": 1,
    }
    assert counts(world.metrics()) == counts(world.metrics(actor="root"))
    assert counts(world.metrics(actor="nobody")) == {}


def test_inactive_member_counts_nothing(world: Client) -> None:
    world.remove_member("alice", "acme")
    assert counts(world.metrics(actor="alice")) == {}
    with pytest.raises(errors.Forbidden):
        world.metrics(actor="alice", organization="acme")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"organization": "globex", "actor": "alice"}, errors.Forbidden),
        ({"organization": "nowhere"}, errors.OrganizationNotFound),
        ({"since": datetime.now(UTC) + timedelta(hours=1)}, errors.InvalidArgument),
        ({"since": datetime.now(UTC) - timedelta(days=91)}, errors.InvalidArgument),
    ],
    ids=str,
)
def test_bad_arguments(
    world: Client, kwargs: dict[str, Any], error: type[errors.JobqueueError]
) -> None:
    with pytest.raises(error):
        world.metrics(**kwargs)


def test_window_excludes_older_finished_jobs(world: Client) -> None:
    m = world.metrics(organization="acme", since=datetime.now(UTC) - timedelta(seconds=1))
    # Live jobs always count; finished ones only inside the window (here: possibly none).
    assert m["counts_by_status"]["queued"] == 2
    later = world.metrics(organization="acme", since=datetime.now(UTC))
    assert later["processing_time_ms"]["count"] == 0
    assert later["counts_by_status"]["completed"] == 0


def test_metrics_are_consistent_while_jobs_are_submitted(world: Client, dsn: str) -> None:
    """Each call reads one snapshot: queued counts only grow, and match the depth total."""
    barrier = threading.Barrier(2)

    def submit() -> None:
        with Client(dsn) as writer:
            barrier.wait()
            for n in range(100):
                writer.submit_job("echo", {"later": n}, organization="globex")

    thread = threading.Thread(target=submit)
    thread.start()
    barrier.wait()
    previous = 0
    try:
        for _ in range(30):
            m = world.metrics(organization="globex")
            queued = m["counts_by_status"]["queued"]
            assert queued >= previous
            assert queued == sum(d["depth"] for d in m["queue_depth_by_priority"])
            previous = queued
    finally:
        thread.join(timeout=120)
    assert world.metrics(organization="globex")["counts_by_status"]["queued"] == 103
