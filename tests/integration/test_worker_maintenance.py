"""The workers' periodic maintenance, called directly on a real database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import psycopg_pool
import pytest

from jobqueue import calls, db, errors
from jobqueue.client import Client
from jobqueue.tasks import maintenance
from jobqueue.tasks.maintenance import MaintenanceSettings
from tests.factories import make_job_type


@pytest.fixture
async def pool(dsn: str) -> Any:
    async with psycopg_pool.AsyncConnectionPool(
        dsn, min_size=1, max_size=2, kwargs=db.connection_kwargs(), open=False
    ) as opened:
        yield opened


def _vehicle(conn: psycopg.Connection[Any], status: str, worker_id: int | None) -> int:
    row = conn.execute(
        "INSERT INTO procrastinate.procrastinate_jobs (queue_name, task_name, args, status,"
        " worker_id) VALUES ('default', 'other.task', '{}', %s, %s) RETURNING id",
        (status, worker_id),
    ).fetchone()
    assert row is not None
    return int(row[0])


async def test_cleanup_works_in_batches_and_keeps_what_is_within_retention(
    client: Client, dsn: str, pool: psycopg_pool.AsyncConnectionPool, monkeypatch: Any
) -> None:
    make_job_type(client)
    client.create_organization("acme")
    jobs = [client.submit_job("echo", {"n": i}, organization="acme") for i in range(7)]
    with db.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE jobqueue.job SET status = 'canceled', finished_at = now() - interval '3 days',"
            " cancel_requested = false WHERE id = ANY(%s)",
            ([j.id for j in jobs[:5]],),
        )
        conn.execute(
            "UPDATE jobqueue.event_batch SET created_at = now() - interval '3 days'"
            " WHERE job_ids && %s::bigint[]",
            ([j.id for j in jobs[:5]],),
        )
    monkeypatch.setattr(maintenance, "CLEANUP_BATCH", 2)
    deleted = await maintenance.cleanup(pool, MaintenanceSettings(retention=timedelta(days=1)))
    assert deleted >= 5
    remaining = {j.id for j in client.list_jobs(organization="acme")}
    assert remaining == {j.id for j in jobs[5:]}


async def test_cleanup_removes_orphaned_vehicles_only(
    dsn: str, pool: psycopg_pool.AsyncConnectionPool
) -> None:
    with db.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT procrastinate_register_worker_v1()").fetchone()
        assert row is not None
        live_worker = int(row[0])
        live = _vehicle(conn, "doing", live_worker)
        waiting = _vehicle(conn, "todo", None)
        orphan = _vehicle(conn, "doing", None)
        await maintenance.cleanup(pool, MaintenanceSettings())
        left = {r[0] for r in conn.execute("SELECT id FROM procrastinate.procrastinate_jobs")}
    assert left == {live, waiting}
    assert orphan not in left


async def test_rescue_closes_attempts_of_silent_workers(
    client: Client, dsn: str, pool: psycopg_pool.AsyncConnectionPool
) -> None:
    make_job_type(client, max_retries=1)
    client.create_organization("acme")
    job = client.submit_job("echo", {}, organization="acme")
    with db.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT procrastinate_register_worker_v1()").fetchone()
        assert row is not None
        worker_id = int(row[0])
        fetched = conn.execute(
            "SELECT id FROM procrastinate_fetch_job_v2(%s, %s)", (["default"], worker_id)
        ).fetchone()
        assert fetched is not None and fetched[0] is not None
        conn.execute(
            "UPDATE procrastinate.procrastinate_workers SET last_heartbeat = now() - interval"
            " '1 minute' WHERE id = %s",
            (worker_id,),
        )
        conn.execute(
            "UPDATE jobqueue.job SET attempt_started_at = now() - interval '1 minute'"
            " WHERE id = %s",
            (job.id,),
        )
    closed = await maintenance.rescue(pool, MaintenanceSettings(stale_after=timedelta(seconds=5)))
    assert closed == 1
    assert client.get_job(job.id).status == "retrying"
    assert [a.outcome for a in client.job_attempts(job.id)] == ["lost"]


def _started_attempt(client: Client, dsn: str, *, heartbeat_age: str) -> tuple[int, int]:
    """A job whose first attempt started a minute ago on a worker last heard of
    ``heartbeat_age`` ago; returns (job id, worker id)."""
    job = client.submit_job("echo", {"age": heartbeat_age}, organization="acme")
    with db.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT procrastinate_register_worker_v1()").fetchone()
        assert row is not None
        worker_id = int(row[0])
        fetched = conn.execute(
            "SELECT id FROM procrastinate_fetch_job_v2(%s, %s)", (["default"], worker_id)
        ).fetchone()
        assert fetched is not None and fetched[0] is not None
        conn.execute(
            "UPDATE procrastinate.procrastinate_workers SET last_heartbeat = now() - %s::interval"
            " WHERE id = %s",
            (heartbeat_age, worker_id),
        )
        conn.execute(
            "UPDATE jobqueue.job SET attempt_started_at = now() - interval '1 minute'"
            " WHERE id = %s",
            (job.id,),
        )
    return job.id, worker_id


def _hold(dsn: str, job_id: int, age: str = "0 seconds") -> int:
    call = calls.hold_attempts([(job_id, 1)])
    with db.connect(dsn, autocommit=True) as conn:
        held = conn.execute(call.sql, call.params).fetchone()
        conn.execute(
            "UPDATE jobqueue.job SET attempt_held_at = attempt_held_at - %s::interval"
            " WHERE id = %s",
            (age, job_id),
        )
    assert held is not None
    return int(held[0])


async def test_rescue_leaves_a_held_attempt_open_until_its_reports_stop(
    client: Client, dsn: str, pool: psycopg_pool.AsyncConnectionPool
) -> None:
    """A handler that outlives its attempt's end keeps the attempt open while its worker
    reports it (hold_attempts), whether that worker is alive (past the timeout) or gone
    (stopped with the handler running); once the reports stop, it is rescued as before."""
    make_job_type(client, max_retries=1, timeout=timedelta(seconds=1))
    client.create_organization("acme")
    overrun, _ = _started_attempt(client, dsn, heartbeat_age="0 seconds")
    orphan, _ = _started_attempt(client, dsn, heartbeat_age="1 minute")
    settings = MaintenanceSettings(stale_after=timedelta(seconds=5), timeout_grace=timedelta(0))
    assert _hold(dsn, overrun) == 1
    assert _hold(dsn, orphan) == 1
    assert await maintenance.rescue(pool, settings) == 0
    assert {client.get_job(overrun).status, client.get_job(orphan).status} == {"running"}

    _hold(dsn, overrun, age="6 seconds")
    _hold(dsn, orphan, age="6 seconds")
    assert await maintenance.rescue(pool, settings) == 2
    assert [a.outcome for a in client.job_attempts(overrun)] == ["timed_out"]
    assert [a.outcome for a in client.job_attempts(orphan)] == ["lost"]
    # A closed attempt is held no more.
    assert _hold(dsn, overrun) == 0


def test_hold_attempts_refuses_mismatched_arrays(dsn: str) -> None:
    with db.connect(dsn, autocommit=True) as conn:
        for job_ids, attempts in (([1, 2], [1]), (None, [1]), ([1], None)):
            with pytest.raises(errors.InvalidArgument), db.translated():
                conn.execute(
                    "SELECT jobqueue.hold_attempts(%s::bigint[], %s::integer[])",
                    (job_ids, attempts),
                )
