"""PostgreSQL restarts and killed connections in the middle of a load: nothing committed is lost.

Restarts use a server of the test's own (``own_server``); killed connections use the shared
test server, limited to the test's own database.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobqueue import db as jobqueue_db
from jobqueue import errors
from jobqueue.client import Client
from tests.reliability.attempt_log import jobs_without_a_logged_completion, overlapping_attempts
from tests.reliability.conftest import Workers, scalar, wait_for
from tests.reliability.handlers import ATTEMPT_LOG_TABLE
from tests.reliability.lifecycle_check import lifecycle_violations
from tests.reliability.pgserver import Server, own_server
from tests.reliability.test_worker_faults import register_tracked, submit_load

__all__ = ["own_server"]


class Submitter(threading.Thread):
    """Submits jobs one by one through outages; remembers those whose commit was confirmed."""

    def __init__(self, dsn: str):
        super().__init__(daemon=True)
        self.dsn = dsn
        self.confirmed: list[int] = []
        self.refused = 0
        self.stop = threading.Event()
        self.unexpected: list[BaseException] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                with jobqueue_db.connect(self.dsn, autocommit=True) as conn:
                    c = Client(connection=conn)
                    while not self.stop.is_set():
                        n += 1
                        job = c.submit_job("tracked", {"n": -n}, organization="acme")
                        self.confirmed.append(job.id)
                        time.sleep(0.01)
            except (errors.DatabaseUnavailable, psycopg.OperationalError):
                self.refused += 1
                time.sleep(0.2)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.unexpected.append(exc)
                return


def all_completed(dsn: str, expected: list[int]) -> bool:
    try:
        with psycopg.connect(dsn) as conn:
            assert scalar(conn, "SELECT count(*) FROM jobqueue.job WHERE status = 'dead'") == 0
            left = scalar(conn, "SELECT count(*) FROM jobqueue.job WHERE status <> 'completed'")
            done = scalar(
                conn,
                "SELECT count(*) FROM jobqueue.job WHERE status = 'completed' AND id = ANY(%s)",
                (expected,),
            )
            return left == 0 and done == len(set(expected))
    except psycopg.OperationalError:
        return False


def check_history(dsn: str, ids: list[int]) -> None:
    with psycopg.connect(dsn) as conn:
        assert overlapping_attempts(conn) == []
        assert jobs_without_a_logged_completion(conn) == []
        assert lifecycle_violations(conn, ids) == []


def wait_running(dsn: str) -> None:
    """Until an attempt is running, so the fault lands mid-attempt; or until nothing is left
    to run, since fast workers can drain a phase's jobs between two polls."""

    def some_running_or_drained() -> bool:
        with psycopg.connect(dsn) as conn:
            return bool(
                scalar(
                    conn,
                    "SELECT count(*) FILTER (WHERE status = 'running') > 0"
                    " OR count(*) FILTER (WHERE finished_at IS NULL) = 0 FROM jobqueue.job",
                )
            )

    wait_for(some_running_or_drained, timeout=120, interval=0.02, what="attempts to be running")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarts_lose_no_committed_job(
    mode: str, own_server: Server, tmp_path: Path, full: bool
) -> None:
    jobs, restarts = (20_000, 5) if full else (1500, 2)
    dsn = own_server.database("faults")
    with jobqueue_db.connect(dsn, autocommit=True) as conn:
        conn.execute(ATTEMPT_LOG_TABLE)
    with Client(dsn) as client:
        register_tracked(client)
        client.create_organization("acme")
        ids = submit_load(client, jobs)
    pool = Workers(dsn, tmp_path)
    submitter = Submitter(dsn)
    try:
        for _ in range(3):
            pool.start(concurrency=8, stale_after=3)
        submitter.start()
        for _ in range(restarts):
            wait_running(dsn)
            own_server.restart(mode, down_for=2.0)
            time.sleep(2.0)
        submitter.stop.set()
        submitter.join(timeout=60)
        assert submitter.unexpected == []
        assert submitter.confirmed, "nothing was submitted during the outages"
        expected = ids + submitter.confirmed
        wait_for(
            lambda: all_completed(dsn, expected),
            timeout=900 if full else 240,
            interval=1.0,
            what="every committed job to complete",
        )
        assert all(p.poll() is None for p in pool.procs), "a worker gave up instead of reconnecting"
        check_history(dsn, expected)
    except BaseException:
        print(pool.output())
        raise
    finally:
        submitter.stop.set()
        pool.stop_all()


def test_terminated_worker_connections_lose_no_job(
    client: Client, owner: psycopg.Connection[Any], workers: Workers, full: bool
) -> None:
    jobs, rounds = (10_000, 15) if full else (1500, 4)
    register_tracked(client)
    client.create_organization("acme")
    for _ in range(3):
        workers.start(concurrency=8, stale_after=3)
    ids = submit_load(client, jobs)
    terminated = 0
    dsn = owner.info.dsn
    for _ in range(rounds):
        wait_running(dsn)
        row = owner.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            "   AND backend_type = 'client backend'"
        ).fetchone()
        assert row is not None
        terminated += int(row[0])
        time.sleep(1.0)
    assert terminated > 0
    wait_for(
        lambda: all_completed(dsn, ids),
        timeout=900 if full else 240,
        interval=1.0,
        what="every job to complete",
    )
    assert all(p.poll() is None for p in workers.procs), "a worker gave up instead of reconnecting"
    check_history(dsn, ids)
