"""Real worker processes share the workers among organizations: a late organization's jobs
start before another's backlog drains, caps hold across processes, a pause holds and a resume
starts the waiting jobs at once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import psycopg

from jobqueue import db as jobqueue_db
from jobqueue.client import Client
from tests.acceptance.conftest import Workers, job_type
from tests.waiting import wait_for

LIVE = "('queued', 'running', 'retrying')"


def left(db: psycopg.Connection[Any], organization: str | None = None) -> int:
    row = db.execute(
        "SELECT count(*) FROM jobqueue.job AS j JOIN jobqueue.organization AS o"
        f" ON o.id = j.organization_id WHERE j.status IN {LIVE}"
        " AND (%s::text IS NULL OR o.name = %s)",
        (organization, organization),
    ).fetchone()
    return int(row[0]) if row else -1


def submit(client: Client, kind: str, organization: str, count: int, **params: Any) -> None:
    client.submit_jobs(
        [
            {"job_type": kind, "organization": organization, "params": {"n": i, **params}}
            for i in range(count)
        ]
    )


def completed(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) FROM jobqueue.job WHERE status = 'completed'").fetchone()
    return int(row[0]) if row else -1


def most_at_once(db: psycopg.Connection[Any]) -> dict[str, int]:
    """The most executions of each organization that overlapped, from the handlers' own log."""
    rows = db.execute("SELECT tag FROM public.test_exec ORDER BY at, id").fetchall()
    now: Counter[str] = Counter()
    most: Counter[str] = Counter()
    for (tag,) in rows:
        edge, organization = tag.split(":", 1)
        now[organization] += 1 if edge == "start" else -1
        most[organization] = max(most[organization], now[organization])
    return dict(most)


def test_a_late_organization_starts_before_a_backlog_drains(
    client: Client, db: psycopg.Connection[Any], workers: Workers
) -> None:
    for name in ("alpha", "bravo"):
        client.create_organization(name)
    kind = job_type(client, "busy", "busy", max_retries=0)
    submit(client, kind, "alpha", 400, seconds=0.02)
    workers.start(concurrency=4)
    wait_for(lambda: left(db, "alpha") < 390, timeout=60, what="alpha's backlog to start")

    submit(client, kind, "bravo", 5, seconds=0.02)
    wait_for(lambda: left(db, "bravo") == 0, timeout=60, what="bravo's jobs to finish")

    # FIFO would have run every one of alpha's 400 first.
    assert left(db, "alpha") > 200
    wait_for(lambda: left(db) == 0, timeout=120, what="alpha's backlog to drain")
    assert completed(db) == 405


def test_caps_hold_across_worker_processes(
    client: Client, dsn: str, db: psycopg.Connection[Any], workers: Workers
) -> None:
    """Three processes with 8 slots each, five organizations capped at 3 running jobs each."""
    organizations = [f"org{i}" for i in range(5)]
    for name in organizations:
        client.create_organization(name)
    kind = job_type(client, "busy", "busy", max_retries=0)
    client.set_queue_limits("default", organization_concurrency=3)
    for name in organizations:
        submit(client, kind, name, 30, seconds=0.05)
    samples: list[Counter[str]] = []
    done = threading.Event()

    def sample() -> None:
        with jobqueue_db.connect(dsn, autocommit=True) as own:
            while not done.is_set():
                rows = own.execute(
                    "SELECT o.name, count(*) FROM jobqueue.job AS j"
                    " JOIN jobqueue.organization AS o ON o.id = j.organization_id"
                    " WHERE j.status = 'running' GROUP BY o.name"
                ).fetchall()
                samples.append(Counter(dict(rows)))
                time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for _ in range(3):
            workers.start(concurrency=8)
        wait_for(lambda: left(db) == 0, timeout=180, interval=0.2, what="150 jobs to finish")
    finally:
        done.set()
        sampler.join()

    assert completed(db) == 150
    busiest = max(max(s.values(), default=0) for s in samples)
    assert len(samples) > 50
    assert busiest == 3  # the cap was reached, and never passed
    assert set(most_at_once(db).values()) == {3}


def test_a_paused_queue_waits_and_a_resume_starts_it_at_once(
    client: Client, db: psycopg.Connection[Any], workers: Workers
) -> None:
    for name in ("alpha", "bravo"):
        client.create_organization(name)
    kind = job_type(client, "busy", "busy", max_retries=0)
    client.pause_queue("default", organization="alpha")
    submit(client, kind, "alpha", 5, seconds=0.01)
    submit(client, kind, "bravo", 5, seconds=0.01)
    workers.start(concurrency=4)
    wait_for(lambda: left(db, "bravo") == 0, timeout=60, what="bravo's jobs to finish")
    time.sleep(0.5)
    assert left(db, "alpha") == 5

    resumed = time.monotonic()
    client.resume_queue("default", organization="alpha")
    wait_for(lambda: left(db, "alpha") == 0, timeout=60, interval=0.02, what="alpha's jobs")
    # The resume woke the worker (NOTIFY) rather than leaving the jobs to its poll; a second
    # is the poll interval, and five 10 ms jobs on four slots take far less.
    assert time.monotonic() - resumed < 1.0
    assert completed(db) == 10
