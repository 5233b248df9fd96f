"""What a job run no longer writes (migration 0005), and what stays true without it: a job's
organization and type cannot go while it exists, cleanup takes a job's attempts with it, a
claim leaves the vehicle row as it was but for its status and worker, and a completed job
keeps its dedup hash only when its type has a dedup window."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from jobqueue import calls, db
from jobqueue.client import Client
from tests.factories import make_job_type


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with db.connect(dsn, autocommit=True) as connection:
        connection.row_factory = dict_row  # type: ignore[assignment]
        yield connection


@pytest.fixture
def setup(client: Client) -> Client:
    client.create_organization("acme")
    client.create_organization("empty")
    make_job_type(client)
    make_job_type(client, "unused")
    return client


def test_an_organization_with_jobs_cannot_be_deleted(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    setup.submit_job("echo", {}, organization="acme")

    with pytest.raises(psycopg.errors.ForeignKeyViolation, match='"acme" still has jobs'):
        conn.execute("DELETE FROM jobqueue.organization WHERE name = 'acme'")

    conn.execute("DELETE FROM jobqueue.organization WHERE name = 'empty'")
    names = {r["name"] for r in conn.execute("SELECT name FROM jobqueue.organization")}
    assert names == {"acme"}


def test_a_job_type_with_jobs_cannot_be_deleted_or_renamed(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    setup.submit_job("echo", {}, organization="acme")

    with pytest.raises(psycopg.errors.ForeignKeyViolation, match='"echo" still has jobs'):
        conn.execute("DELETE FROM jobqueue.job_type WHERE name = 'echo'")
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match='"echo" still has jobs'):
        conn.execute("UPDATE jobqueue.job_type SET name = 'renamed' WHERE name = 'echo'")

    # Other changes to a used type, and any change to an unused one, go through.
    conn.execute("UPDATE jobqueue.job_type SET priority = 3 WHERE name = 'echo'")
    conn.execute("UPDATE jobqueue.job_type SET name = 'renamed' WHERE name = 'unused'")
    conn.execute("DELETE FROM jobqueue.job_type WHERE name = 'renamed'")
    names = {r["name"] for r in conn.execute("SELECT name FROM jobqueue.job_type")}
    assert names == {"echo"}


def test_cleanup_deletes_the_attempts_of_the_jobs_it_deletes(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    jobs = [setup.submit_job("echo", {"n": n}, organization="acme").id for n in range(3)]
    worker = conn.execute("SELECT procrastinate.procrastinate_register_worker_v1() AS id")
    worker_id = worker.fetchone()["id"]  # type: ignore[index]
    claim = calls.fetch_vehicles(None, worker_id, 10)
    claimed = conn.execute(claim.sql, claim.params).fetchall()
    assert sorted(v["args"]["job_id"] for v in claimed) == jobs
    finish = calls.finish_attempts(
        [{"job_id": j, "attempt": 1, "outcome": "completed"} for j in jobs]
    )
    conn.execute(finish.sql, finish.params).fetchall()
    conn.execute(
        "UPDATE jobqueue.job SET finished_at = now() - interval '3 days' WHERE id = ANY (%s)",
        (jobs[:2],),
    )

    conn.execute("SELECT jobqueue.cleanup_batch(interval '1 day', 100)")

    left = conn.execute("SELECT job_id FROM jobqueue.attempt ORDER BY job_id").fetchall()
    assert [a["job_id"] for a in left] == jobs[2:]
    orphans = conn.execute(
        "SELECT count(*) AS n FROM jobqueue.attempt AS a"
        " WHERE NOT EXISTS (SELECT FROM jobqueue.job AS j WHERE j.id = a.job_id)"
    ).fetchone()
    assert orphans is not None and orphans["n"] == 0


def test_a_claim_returns_the_ride_but_stores_only_status_and_worker(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    job = setup.submit_job("echo", {"n": 1}, organization="acme")
    before = conn.execute(
        "SELECT id, args FROM procrastinate.procrastinate_jobs WHERE args ->> 'job_id' = %s",
        (str(job.id),),
    ).fetchone()
    assert before is not None
    worker = conn.execute("SELECT procrastinate.procrastinate_register_worker_v1() AS id")
    worker_id = worker.fetchone()["id"]  # type: ignore[index]

    claim = calls.fetch_vehicles(None, worker_id, 1)
    (vehicle,) = conn.execute(claim.sql, claim.params).fetchall()

    # Params ride as JSON text: the worker decodes each job's on its own (bridge.py).
    assert vehicle["args"]["attempt"] == 1 and json.loads(vehicle["args"]["params"]) == {"n": 1}
    stored = conn.execute(
        "SELECT args, status, worker_id FROM procrastinate.procrastinate_jobs WHERE id = %s",
        (before["id"],),
    ).fetchone()
    assert stored == {"args": before["args"], "status": "doing", "worker_id": worker_id}
    # The fetch trigger did not start a second attempt on top of the claim's.
    attempts = conn.execute(
        "SELECT attempt, outcome FROM jobqueue.job_attempts(%s)", (job.id,)
    ).fetchall()
    assert attempts == [{"attempt": 1, "outcome": None}]


def test_deleting_a_periodic_jobs_vehicle_unlinks_its_defer(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    vehicle = conn.execute(
        "INSERT INTO procrastinate.procrastinate_jobs (queue_name, task_name, args)"
        " VALUES ('jobqueue.maintenance', 'some.periodic', '{}') RETURNING id"
    ).fetchone()
    assert vehicle is not None
    conn.execute(
        "INSERT INTO procrastinate.procrastinate_periodic_defers"
        " (task_name, periodic_id, defer_timestamp, job_id) VALUES ('some.periodic', '', 1, %s)",
        (vehicle["id"],),
    )

    conn.execute("DELETE FROM procrastinate.procrastinate_jobs WHERE id = %s", (vehicle["id"],))

    defer = conn.execute(
        "SELECT job_id FROM procrastinate.procrastinate_periodic_defers"
        " WHERE task_name = 'some.periodic'"
    ).fetchone()
    assert defer == {"job_id": None}


def test_only_windowed_types_keep_the_hash_of_completed_jobs(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    make_job_type(setup, "windowed", dedup_window=timedelta(hours=1))
    plain = setup.submit_job("echo", {"n": 1}, organization="acme")
    windowed = setup.submit_job("windowed", {"n": 1}, organization="acme")
    worker = conn.execute("SELECT procrastinate.procrastinate_register_worker_v1() AS id")
    worker_id = worker.fetchone()["id"]  # type: ignore[index]
    claim = calls.fetch_vehicles(None, worker_id, 10)
    assert len(conn.execute(claim.sql, claim.params).fetchall()) == 2
    finish = calls.finish_attempts(
        [{"job_id": j.id, "attempt": 1, "outcome": "completed"} for j in (plain, windowed)]
    )
    conn.execute(finish.sql, finish.params).fetchall()

    hashes = {
        r["id"]: r["job_hash"]
        for r in conn.execute("SELECT id, job_hash FROM jobqueue.job WHERE status = 'completed'")
    }
    assert hashes[plain.id] is None and hashes[windowed.id] is not None
    assert setup.submit_job("windowed", {"n": 1}, organization="acme").id == windowed.id
    # A window given to the type later does not reach back to jobs completed without one.
    make_job_type(setup, "echo", dedup_window=timedelta(hours=1))
    again = setup.submit_job("echo", {"n": 1}, organization="acme")
    assert not again.duplicate and again.id != plain.id
