"""Migration 0014 on a database that has open attempt rows: their facts move onto their
jobs, the open rows go, and ended attempts stay as they were."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from jobqueue import db
from jobqueue.migrate import _apply_procrastinate, _procrastinate_sql, available_migrations
from tests.conftest import database_dsn

AT_END = 14


@pytest.fixture
def before_0014(server_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A database migrated up to 0013, tables only (no engine functions or triggers)."""
    name = f"jobqueue_mig_{uuid.uuid4().hex[:12]}"
    with db.connect(server_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with db.connect(database_dsn(server_dsn, name), autocommit=True) as conn:
            with conn.transaction():
                _apply_procrastinate(conn, _procrastinate_sql())
            conn.row_factory = dict_row  # type: ignore[assignment]
            for migration in available_migrations():
                if migration.number < AT_END:
                    conn.execute(migration.sql)
            yield conn
    finally:
        with db.connect(server_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_open_attempts_move_onto_their_jobs(before_0014: psycopg.Connection[Any]) -> None:
    conn = before_0014
    conn.execute(
        """
        INSERT INTO jobqueue.organization (name) VALUES ('acme');
        INSERT INTO jobqueue.job_type (name, handler) VALUES ('echo', 'jobqueue.tasks.demo:echo');
        INSERT INTO jobqueue.job (job_type, organization_id, queue, status, priority, attempt,
                                  max_retries, timeout, started_at, finished_at, next_retry_at)
        SELECT 'echo', o.id, 'default', s.status::jobqueue.job_status, 0, s.attempt, 3,
               '5 minutes', now() - interval '1 hour',
               CASE WHEN s.status = 'completed' THEN now() END,
               CASE WHEN s.status = 'retrying' THEN now() END
        FROM jobqueue.organization AS o,
             (VALUES (1, 'running', 2), (2, 'completed', 1), (3, 'retrying', 1),
                     (4, 'running', 1)) AS s (n, status, attempt)
        ORDER BY s.n;
        """
    )
    running, completed, retrying, bare = (
        r["id"] for r in conn.execute("SELECT id FROM jobqueue.job ORDER BY id").fetchall()
    )
    conn.execute(
        """
        INSERT INTO jobqueue.attempt (job_id, attempt, organization_id, job_type, worker_id,
                                      started_at, finished_at, outcome, procrastinate_job_id,
                                      held_at)
        SELECT j.id, a.attempt, j.organization_id, j.job_type, a.worker_id, a.started_at,
               a.finished_at, a.outcome::jobqueue.attempt_outcome, a.vehicle, a.held_at
        FROM (VALUES
            (%(running)s, 1, 7, now() - interval '50 minutes', now() - interval '40 minutes',
             'failed', 70, NULL::timestamptz),
            (%(running)s, 2, 8, now() - interval '10 minutes', NULL, NULL, 80,
             now() - interval '1 minute'),
            (%(completed)s, 1, 8, now() - interval '30 minutes', now() - interval '20 minutes',
             'completed', 81, NULL),
            -- open, but its job is not running it: nothing could ever close it
            (%(retrying)s, 1, 9, now() - interval '30 minutes', NULL, NULL, 90, NULL)
        ) AS a (job_id, attempt, worker_id, started_at, finished_at, outcome, vehicle, held_at)
        JOIN jobqueue.job AS j ON j.id = a.job_id
        """,
        {"running": running, "completed": completed, "retrying": retrying},
    )
    (migration,) = [m for m in available_migrations() if m.number == AT_END]

    conn.execute(migration.sql)

    job = conn.execute(
        "SELECT attempt_worker_id, attempt_vehicle_id, attempt_started_at, attempt_held_at"
        " FROM jobqueue.job WHERE id = %s",
        (running,),
    ).fetchone()
    assert job is not None
    assert (job["attempt_worker_id"], job["attempt_vehicle_id"]) == (8, 80)
    assert job["attempt_started_at"] is not None and job["attempt_held_at"] is not None
    rows = conn.execute(
        "SELECT job_id, attempt, outcome::text AS outcome, worker_id FROM jobqueue.attempt"
        " ORDER BY job_id, attempt"
    ).fetchall()
    assert [(r["job_id"], r["attempt"], r["outcome"]) for r in rows] == [
        (running, 1, "failed"),
        (completed, 1, "completed"),
        (retrying, 1, "lost"),
    ]
    # A running job that had no open row can still be rescued: it has a start.
    others = conn.execute(
        "SELECT id, attempt_started_at IS NOT NULL AS started FROM jobqueue.job"
        " WHERE id <> %s ORDER BY id",
        (running,),
    ).fetchall()
    assert [(r["id"], r["started"]) for r in others] == [
        (completed, False),
        (retrying, False),
        (bare, True),
    ]
    with pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute(
            "INSERT INTO jobqueue.attempt (job_id, attempt, organization_id, job_type)"
            " SELECT id, 9, organization_id, job_type FROM jobqueue.job WHERE id = %s",
            (running,),
        )
