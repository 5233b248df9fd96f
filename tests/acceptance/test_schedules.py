"""Recurring jobs on real workers: three worker processes tick one schedule, one of them is
killed with SIGKILL, and every tick still has exactly one job."""

from __future__ import annotations

import signal
from datetime import timedelta
from typing import Any

import psycopg

from jobqueue.client import Client
from tests.acceptance.conftest import Workers, job_type, wait_for


def scalar(db: psycopg.Connection[Any], sql: str, *params: Any) -> Any:
    row = db.execute(sql, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def test_three_workers_fire_one_job_per_tick_and_lose_none_to_a_sigkill(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "count", "count")
    procs = [workers.start(concurrency=4) for _ in range(3)]
    wait_for(
        lambda: scalar(db, "SELECT count(*) FROM procrastinate.procrastinate_workers") == 3,
        what="three workers to register",
    )
    # Every second, a job of its own per tick (no dedup), so a tick that fired twice, or
    # not at all, shows in the count of jobs.
    client.create_schedule(
        "every-second",
        "count",
        "* * * * * *",
        organization=org,
        dedup=False,
        grace=timedelta(minutes=5),
    )
    count_ticks = "SELECT count(*) FROM jobqueue.schedule_tick WHERE tick_at > %s"
    created = scalar(db, "SELECT created_at FROM jobqueue.schedule")
    wait_for(lambda: scalar(db, count_ticks, created) >= 5, what="five ticks")

    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    killed_at = scalar(db, "SELECT now()")
    wait_for(lambda: scalar(db, count_ticks, killed_at) >= 5, what="five ticks after the kill")
    client.set_schedule_enabled("every-second", False, organization=org)
    wait_for(
        lambda: scalar(db, "SELECT count(*) FROM jobqueue.job WHERE status <> 'completed'") == 0,
        timeout=120,
        what="every tick's job to complete",
    )

    rows = db.execute(
        "SELECT tick_at, job_id, outcome FROM jobqueue.schedule_tick ORDER BY tick_at"
    ).fetchall()
    seconds = [int(t.timestamp()) for t, _, _ in rows]
    assert len(rows) >= 10
    assert seconds == list(range(seconds[0], seconds[0] + len(rows))), "a tick is missing"
    assert {outcome for _, _, outcome in rows} == {"submitted"}
    job_ids = [job for _, job, _ in rows]
    assert len(set(job_ids)) == len(rows), "a tick has two jobs"
    assert scalar(db, "SELECT count(*) FROM jobqueue.job") == len(rows), "a job has no tick"
    assert scalar(db, "SELECT count(DISTINCT job_id) FROM public.test_exec") == len(rows)
