"""Real workers under load and faults: exactly-once, pauses, kills, stops, lost connections."""

from __future__ import annotations

import signal
from datetime import timedelta
from typing import Any

import psycopg

from jobqueue.client import Client
from tests.acceptance.conftest import Workers, executions, job_type, wait_for

TERMINAL = {"completed", "dead", "canceled"}


def finished(client: Client, job_id: int, timeout: float = 60.0) -> Any:
    return wait_for(
        lambda: (j := client.get_job(job_id)).status in TERMINAL and j,
        timeout=timeout,
        what=f"job {job_id} to finish",
    )


def test_thousand_jobs_across_three_workers_each_complete_exactly_once(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "count", "count")
    for _ in range(3):
        workers.start(concurrency=8)

    def registered() -> int:
        row = db.execute("SELECT count(*) FROM procrastinate.procrastinate_workers").fetchone()
        return int(row[0]) if row else 0

    wait_for(lambda: registered() == 3, what="three workers to register")
    jobs = client.submit_jobs(
        [{"job_type": "count", "params": {"n": i}, "organization": org} for i in range(1000)]
    )
    assert len({j.id for j in jobs}) == 1000

    def all_completed() -> bool:
        (left,) = db.execute(
            "SELECT count(*) FROM jobqueue.job WHERE status <> 'completed'"
        ).fetchone()  # type: ignore[misc]
        return left == 0

    wait_for(all_completed, timeout=120, interval=0.5, what="1,000 jobs to complete")
    rows = db.execute(
        "SELECT job_id, count(*), count(DISTINCT pid) FROM public.test_exec GROUP BY job_id"
    ).fetchall()
    assert len(rows) == 1000
    assert {count for _, count, _ in rows} == {1}
    (pids,) = db.execute("SELECT count(DISTINCT pid) FROM public.test_exec").fetchone()  # type: ignore[misc]
    assert pids == 3  # the work really was shared
    (attempts,) = db.execute("SELECT count(*) FROM jobqueue.attempt").fetchone()  # type: ignore[misc]
    assert attempts == 1000
    # Finished vehicles are deleted at once: procrastinate's table holds no job history.
    (vehicles,) = db.execute(
        "SELECT count(*) FROM procrastinate.procrastinate_jobs WHERE task_name = 'jobqueue.run'"
    ).fetchone()  # type: ignore[misc]
    assert vehicles == 0


def test_paused_worker_cannot_overwrite_the_rescued_jobs_outcome(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "slow", "slow_first_attempt", max_retries=3)
    job = client.submit_job("slow", {"seconds": 3}, organization=org)
    paused = workers.start(stale_after=2)
    wait_for(lambda: executions(db, job.id, "started"), what="attempt 1 to start")
    paused.send_signal(signal.SIGSTOP)
    workers.start(stale_after=2)
    done = finished(client, job.id)
    assert done.status == "completed" and done.result == {"attempt": 2}
    paused.send_signal(signal.SIGCONT)

    def late_outcome() -> Any:
        return client.job_attempts(job.id)[0].late_outcome

    late = wait_for(late_outcome, what="the paused worker's late outcome")
    assert late["outcome"] == "completed"
    first, second = client.job_attempts(job.id)
    assert first.outcome == "lost" and second.outcome == "completed"
    after = client.get_job(job.id)
    assert (after.status, after.attempt, after.result) == ("completed", 2, {"attempt": 2})
    assert paused.poll() is None  # the resumed worker carries on


def test_killed_worker_job_completes_on_another_worker(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "slow", "slow_first_attempt", max_retries=3)
    job = client.submit_job("slow", {"seconds": 60}, organization=org)
    doomed = workers.start(stale_after=2)
    wait_for(lambda: executions(db, job.id, "started"), what="attempt 1 to start")
    doomed.kill()
    doomed.wait()
    survivor = workers.start(stale_after=2)
    done = finished(client, job.id)
    assert done.status == "completed" and done.result == {"attempt": 2}
    first, second = client.job_attempts(job.id)
    assert first.outcome == "lost" and "stopped heartbeating" in (first.error or "")
    assert second.outcome == "completed"
    (finished_by,) = {e.pid for e in executions(db, job.id, "finished")}
    assert finished_by == survivor.pid


def test_sigterm_lets_jobs_finish_within_grace_then_retries_the_rest(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "slow", "slow_first_attempt", max_retries=3)
    short = client.submit_job("slow", {"seconds": 1}, organization=org)
    long = client.submit_job("slow", {"seconds": 60}, organization=org)
    stopping = workers.start(concurrency=2, shutdown_grace=3)
    wait_for(
        lambda: executions(db, short.id, "started") and executions(db, long.id, "started"),
        what="both jobs to start",
    )
    stopping.send_signal(signal.SIGTERM)
    assert stopping.wait(timeout=30) == 0
    assert client.get_job(short.id).status == "completed"  # finished within the grace period
    assert client.get_job(long.id).status == "retrying"
    (first,) = client.job_attempts(long.id)
    assert first.outcome == "lost" and "worker stopped" in (first.error or "")
    workers.start()
    done = finished(client, long.id)
    assert done.status == "completed" and done.result == {"attempt": 2}


def test_worker_survives_dropped_connections(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "echo", "record")
    proc = workers.start()
    before = client.submit_job("echo", {"tag": "before"}, organization=org)
    assert finished(client, before.id).status == "completed"
    dbname = db.info.dbname
    killed = db.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = %s AND application_name = 'jobqueue worker'",
        (dbname,),
    ).fetchone()
    assert killed and killed[0] >= 1
    after = client.submit_job("echo", {"tag": "after"}, organization=org)
    assert finished(client, after.id).status == "completed"
    assert proc.poll() is None


def test_cleanup_removes_exactly_what_is_past_retention(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "echo", "record")
    jobs = [client.submit_job("echo", {"tag": str(i)}, organization=org) for i in range(6)]
    worker = workers.start()
    for job in jobs:
        assert finished(client, job.id).status == "completed"
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    old = [j.id for j in jobs[:3]]
    db.execute(
        "UPDATE jobqueue.job SET finished_at = now() - interval '2 hours' WHERE id = ANY(%s)",
        (old,),
    )
    db.execute(
        "UPDATE jobqueue.event_batch SET created_at = now() - interval '2 hours'"
        " WHERE job_ids && %s::bigint[]",
        (old,),
    )
    running_long = client.submit_job("echo", {"tag": "fresh"}, organization=org)
    workers.start(retention=timedelta(hours=1).total_seconds())
    assert finished(client, running_long.id).status == "completed"

    def remaining() -> set[int]:
        return {row[0] for row in db.execute("SELECT id FROM jobqueue.job")}

    wait_for(lambda: not (remaining() & set(old)), what="cleanup of old jobs")
    assert remaining() == {j.id for j in jobs[3:]} | {running_long.id}
    (old_events,) = db.execute(
        "SELECT count(*) FROM jobqueue.event WHERE job_id = ANY(%s)", (old,)
    ).fetchone()  # type: ignore[misc]
    assert old_events == 0


def test_worker_restarts_after_the_database_refuses_connections(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers, server_dsn: str
) -> None:
    job_type(client, "echo", "record")
    proc = workers.start()
    first = client.submit_job("echo", {"tag": "before"}, organization=org)
    assert finished(client, first.id).status == "completed"
    dbname = db.info.dbname
    admin = psycopg.connect(server_dsn, autocommit=True)
    # As good as a server restart for this worker: every session gone, new ones refused.
    admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
    try:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'jobqueue worker'",
            (dbname,),
        )
        wait_for(
            lambda: "restarting in" in workers.output(),
            timeout=30,
            what="the worker to notice the outage",
        )
    finally:
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        admin.close()
    after = client.submit_job("echo", {"tag": "after"}, organization=org)
    assert finished(client, after.id).status == "completed"
    assert proc.poll() is None


def test_second_sigterm_ends_the_grace_period_at_once(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "slow", "slow_first_attempt", max_retries=3)
    job = client.submit_job("slow", {"seconds": 60}, organization=org)
    stopping = workers.start(shutdown_grace=120)
    wait_for(lambda: executions(db, job.id, "started"), what="the job to start")
    stopping.send_signal(signal.SIGTERM)
    wait_for(lambda: "stop requested" in workers.output(), what="the first stop request")
    stopping.send_signal(signal.SIGTERM)
    assert stopping.wait(timeout=30) == 0  # far sooner than the 120 s grace period
    (first,) = client.job_attempts(job.id)
    assert first.outcome == "lost"
    assert client.get_job(job.id).status == "retrying"
