"""The dashboard's set-based bulk actions and workers view (bulk.sql), on the real engine."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from jobqueue import db, errors
from jobqueue.client import Client
from jobqueue.dashboard import cancel_jobs_call, list_workers_call, retry_jobs_call
from tests.factories import make_job_type, make_org_with_member


@pytest.fixture
def orgs(client: Client) -> Client:
    make_job_type(client, "echo")
    make_job_type(client, "other", "jobqueue.tasks.demo:echo")
    make_org_with_member(client, "a", "alice")
    make_org_with_member(client, "b", "bob")
    return client


def _statuses(client: Client, organization: str) -> list[str]:
    return sorted(j.status.value for j in client.list_jobs(organization=organization))


def test_cancel_jobs_cancels_only_what_matches_and_what_the_actor_may_see(
    orgs: Client, dsn: str
) -> None:
    for n in range(5):
        orgs.submit_job("echo", {"n": n}, organization="a")
        orgs.submit_job("echo", {"n": n}, organization="b")
    orgs.submit_job("other", {}, organization="a")
    result = orgs.run(cancel_jobs_call(actor="alice", job_type="echo"))
    assert result == {"canceled": 5, "cancel_requested": 0}
    assert _statuses(orgs, "a") == ["canceled"] * 5 + ["queued"]
    assert _statuses(orgs, "b") == ["queued"] * 5
    with pytest.raises(errors.Forbidden):
        orgs.run(cancel_jobs_call(actor="alice", organization="b"))
    assert _statuses(orgs, "b") == ["queued"] * 5
    # Each change went through the lifecycle: one 'canceled' event per job, vehicles dropped.
    with psycopg.connect(dsn) as conn:
        events = conn.execute(
            "SELECT count(*) FROM jobqueue.event WHERE type = 'canceled'"
        ).fetchone()
        vehicles = conn.execute(
            "SELECT count(*) FROM procrastinate.procrastinate_jobs WHERE status = 'todo'"
        ).fetchone()
    assert events == (5,) and vehicles == (6,)


def test_retry_jobs_requeues_dead_and_canceled(orgs: Client) -> None:
    jobs = [orgs.submit_job("echo", {"n": n}, organization="a") for n in range(4)]
    orgs.run(cancel_jobs_call(actor=None, organization="a"))
    assert orgs.run(retry_jobs_call(actor="bob")) == 0
    assert orgs.run(retry_jobs_call(actor="alice", status="canceled")) == 4
    assert {orgs.get_job(j.id).status.value for j in jobs} == {"queued"}
    assert orgs.run(retry_jobs_call(actor="alice")) == 0


def test_bad_filters_change_nothing(orgs: Client) -> None:
    orgs.submit_job("echo", {}, organization="a")
    with pytest.raises(errors.InvalidArgument):
        orgs.run(cancel_jobs_call(actor=None, status="finished"))
    with pytest.raises(errors.InvalidArgument):
        orgs.run(retry_jobs_call(actor=None, status="nope"))
    assert _statuses(orgs, "a") == ["queued"]


def test_concurrent_bulk_cancels_cancel_each_job_once(orgs: Client, dsn: str) -> None:
    orgs.submit_jobs(
        [{"job_type": "echo", "params": {"n": n}, "organization": "a"} for n in range(300)]
    )

    def cancel(_: int) -> int:
        with Client(dsn) as own:
            return int(own.run(cancel_jobs_call(actor="alice"))["canceled"])

    with ThreadPoolExecutor(8) as pool:
        total = sum(pool.map(cancel, range(8)))
    assert total == 300
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM jobqueue.event WHERE type = 'canceled'")
        assert row.fetchone() == (300,)


def test_concurrent_bulk_retries_retry_each_job_once(orgs: Client, dsn: str) -> None:
    orgs.submit_jobs(
        [{"job_type": "echo", "params": {"n": n}, "organization": "a"} for n in range(300)]
    )
    assert orgs.run(cancel_jobs_call(actor=None))["canceled"] == 300

    def retry(_: int) -> int:
        with Client(dsn) as own:
            return int(own.run(retry_jobs_call(actor="alice")))

    with ThreadPoolExecutor(8) as pool:
        total = sum(pool.map(retry, range(8)))
    assert total == 300
    assert set(_statuses(orgs, "a")) == {"queued"}
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM jobqueue.event WHERE type = 'retried'")
        assert row.fetchone() == (300,)


def test_list_workers_is_scoped_for_members(orgs: Client, dsn: str) -> None:
    job_a = orgs.submit_job("echo", {"n": 1}, organization="a")
    job_b = orgs.submit_job("echo", {"n": 2}, organization="b")
    with db.connect(dsn, autocommit=True) as conn:
        worker_id = conn.execute(
            "INSERT INTO procrastinate.procrastinate_workers DEFAULT VALUES RETURNING id"
        ).fetchone()[0]
        idle = conn.execute(
            "INSERT INTO procrastinate.procrastinate_workers DEFAULT VALUES RETURNING id"
        ).fetchone()[0]
        for job in (job_a, job_b):
            conn.execute(
                "UPDATE procrastinate.procrastinate_jobs SET status = 'doing', worker_id = %s"
                " WHERE queueing_lock = %s",
                (worker_id, f"jobqueue:{job.id}"),
            )
    admin_view = orgs.run(list_workers_call(actor=None))
    assert [w["worker_id"] for w in admin_view] == [worker_id, idle]
    assert sorted(j["job_id"] for j in admin_view[0]["running"]) == [job_a.id, job_b.id]
    alice_view = orgs.run(list_workers_call(actor="alice"))
    assert [w["worker_id"] for w in alice_view] == [worker_id]
    assert [j["organization"] for j in alice_view[0]["running"]] == ["a"]


def test_a_worker_describes_itself_for_the_workers_page(orgs: Client, dsn: str) -> None:
    """Issue 14: the workers page shows host, pid, queues and concurrency."""
    import socket
    import subprocess
    import sys

    from tests.integration.cli_helpers import cli_env
    from tests.waiting import wait_for

    worker = subprocess.Popen(
        [sys.executable, "-m", "jobqueue.worker", "--queues", "default,mail",
         "--concurrency", "3", "--shutdown-grace", "1"],
        env=cli_env(dsn),
    )  # fmt: skip
    try:
        described = wait_for(
            lambda: [w for w in orgs.run(list_workers_call(actor=None)) if w["pid"]],
            what="the worker describing itself",
        )
        assert len(described) == 1
        row = described[0]
        assert row["pid"] == worker.pid and row["host"] == socket.gethostname()
        assert row["concurrency"] == 3
        assert row["queues"] == ["default", "mail", "jobqueue.maintenance"]
        assert row["started_at"] is not None
    finally:
        worker.terminate()
        assert worker.wait(60) == 0
    # The description goes with its worker.
    assert orgs.run(list_workers_call(actor=None)) == []
    with pytest.raises(errors.InvalidArgument), db.translated():
        with db.connect(dsn) as conn:
            conn.execute("SELECT jobqueue.describe_worker(1, '', 1, NULL, 1)")
