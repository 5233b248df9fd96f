"""A real worker claims and records jobs in batches, and loses no outcome when it stops."""

from __future__ import annotations

import signal
from typing import Any

import psycopg

from jobqueue.client import Client
from tests.acceptance.conftest import Workers
from tests.waiting import wait_for


def unfinished(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) FROM jobqueue.job WHERE status <> 'completed'").fetchone()
    return int(row[0]) if row else -1


def test_a_busy_worker_claims_and_records_many_jobs_per_round_trip(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    client.register_job_type("quick", "jobqueue.tasks.demo:echo", max_retries=0)
    client.submit_jobs(
        [{"job_type": "quick", "params": {"n": i}, "organization": org} for i in range(300)]
    )
    workers.start(concurrency=20)

    wait_for(lambda: unfinished(db) == 0, timeout=120, interval=0.2, what="300 jobs to finish")

    row = db.execute(
        "SELECT count(*), count(DISTINCT job_id), count(DISTINCT started_at),"
        " count(DISTINCT finished_at) FROM jobqueue.attempt"
    ).fetchone()
    assert row is not None
    attempts, jobs, claims, finishes = row
    assert attempts == jobs == 300
    # A claim starts its attempts in one statement, and a finish ends its batch in one:
    # attempts of one batch share their transaction's timestamp.
    assert claims <= 300 // 2
    assert finishes < 300
    (vehicles,) = db.execute(
        "SELECT count(*) FROM procrastinate.procrastinate_jobs WHERE task_name = 'jobqueue.run'"
    ).fetchone()  # type: ignore[misc]
    assert vehicles == 0


def test_a_stopping_worker_records_every_outcome_it_holds(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    client.register_job_type("quick", "jobqueue.tasks.demo:echo", max_retries=0)
    client.submit_jobs(
        [{"job_type": "quick", "params": {"n": i}, "organization": org} for i in range(3000)]
    )
    worker = workers.start(concurrency=20, shutdown_grace=10)
    wait_for(
        lambda: unfinished(db) < 2500, timeout=60, interval=0.05, what="the worker to get going"
    )

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0

    # Nothing the worker ran is left open: every attempt it started has its outcome.
    (open_attempts,) = db.execute(
        "SELECT count(*) FROM jobqueue.attempt WHERE outcome IS NULL"
    ).fetchone()  # type: ignore[misc]
    assert open_attempts == 0
    (running,) = db.execute("SELECT count(*) FROM jobqueue.job WHERE status = 'running'").fetchone()  # type: ignore[misc]
    assert running == 0
    (completed,) = db.execute(
        "SELECT count(*) FROM jobqueue.job WHERE status = 'completed'"
    ).fetchone()  # type: ignore[misc]
    assert 0 < completed < 3000
