"""Submit, cancel, retry, start and finish racing on the same jobs from many connections.

Each thread has its own connection; a barrier releases them together each round. Refusals
the lifecycle documents (an illegal transition, a stale attempt, a job not found) are
expected; any other error, a deadlock, or a final state that breaks the lifecycle fails.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from jobqueue import db as jobqueue_db
from jobqueue import errors
from jobqueue.client import Client
from tests.factories import make_job_type
from tests.reliability.lifecycle_check import lifecycle_violations

EXPECTED = (
    errors.IllegalTransition,
    errors.AlreadyExists,  # a retry while an identical job is active
    errors.StaleAttempt,
    errors.JobNotFound,
)
OPERATIONS = ("submit", "cancel", "retry", "start", "complete", "fail")


class Racer:
    """One connection acting as both a client and a worker."""

    def __init__(self, dsn: str):
        self.conn = jobqueue_db.connect(dsn, autocommit=True)
        self.client = Client(connection=self.conn)
        row = self.conn.execute(
            "SELECT procrastinate.procrastinate_register_worker_v1()"
        ).fetchone()
        assert row is not None
        self.worker_id = int(row[0])

    def act(self, operation: str, job_id: int) -> None:
        try:
            with jobqueue_db.translated():
                self._act(operation, job_id)
        except EXPECTED:
            pass

    def _act(self, operation: str, job_id: int) -> None:
        if operation == "submit":
            self.client.submit_job("echo", {"n": job_id % 5}, organization="acme")
        elif operation == "cancel":
            self.client.cancel_job(job_id)
        elif operation == "retry":
            self.client.retry_job(job_id)
        elif operation == "start":
            self.conn.execute(
                "SELECT * FROM procrastinate.procrastinate_fetch_job_v2(%s::varchar[], %s)",
                (["default"], self.worker_id),
            )
        else:
            row = self.conn.execute(
                "SELECT attempt FROM jobqueue.job WHERE id = %s", (job_id,)
            ).fetchone()
            attempt = row[0] if row else 0
            outcome = {"completed": "completed", "fail": "failed"}.get(operation, "failed")
            item = {"job_id": job_id, "attempt": attempt, "outcome": outcome, "error": "boom"}
            self.conn.execute("SELECT * FROM jobqueue.finish_attempts(%s)", (Jsonb([item]),))

    def close(self) -> None:
        self.conn.close()


def race(
    dsn: str, threads: int, rounds: int, plan: Callable[[int, int], tuple[str, int]]
) -> list[BaseException]:
    """Run ``plan(thread, round)`` from every thread at once, round after round."""
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def run(index: int) -> None:
        racer = Racer(dsn)
        try:
            for r in range(rounds):
                barrier.wait(timeout=120)
                racer.act(*plan(index, r))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)
            barrier.abort()
        finally:
            racer.close()

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=600)
    return failures


@pytest.fixture
def jobs(client: Client) -> list[int]:
    make_job_type(client, "echo", max_retries=2)
    client.create_organization("acme")
    return [
        j.id
        for j in client.submit_jobs(
            [{"job_type": "echo", "params": {"n": i}, "organization": "acme"} for i in range(5)]
        )
    ]


def all_job_ids(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM jobqueue.job ORDER BY id")]


def test_racing_operations_leave_every_job_consistent(
    dsn: str, jobs: list[int], full: bool
) -> None:
    threads, rounds = (12, 400) if full else (8, 60)
    rng = random.Random(20261128)
    choices = [
        [(rng.choice(OPERATIONS), rng.choice(jobs)) for _ in range(rounds)] for _ in range(threads)
    ]
    # Half the rounds aim every thread at one job, so the same row is fought over.
    for r in range(0, rounds, 2):
        target = rng.choice(jobs)
        for t in range(threads):
            choices[t][r] = (choices[t][r][0], target)
    failures = race(dsn, threads, rounds, lambda t, r: choices[t][r])
    assert failures == []
    with psycopg.connect(dsn) as conn:
        assert lifecycle_violations(conn, all_job_ids(dsn)) == []


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=st.lists(
        st.lists(st.sampled_from(OPERATIONS), min_size=4, max_size=4), min_size=2, max_size=8
    )
)
def test_any_interleaving_of_operations_on_one_job_is_legal(
    dsn: str, client: Client, plan: list[list[str]]
) -> None:
    """Hypothesis picks what four connections do to one fresh job, round by round."""
    names = {t.name for t in client.list_job_types()}
    if "echo" not in names:
        make_job_type(client, "echo", max_retries=1)
        client.create_organization("acme")
    job = client.submit_job("echo", {"fresh": random.random()}, organization="acme")
    failures = race(dsn, 4, len(plan), lambda t, r: (plan[r][t], job.id))
    assert failures == []
    with psycopg.connect(dsn) as conn:
        assert lifecycle_violations(conn, all_job_ids(dsn)) == []


def test_retry_of_a_job_whose_identical_twin_is_active_is_refused(client: Client, dsn: str) -> None:
    """Found by the race above: retry used to hit the dedup index with a raw UniqueViolation."""
    make_job_type(client, "echo")
    client.create_organization("acme")
    first = client.submit_job("echo", {"same": 1}, organization="acme")
    client.cancel_job(first.id)
    twin = client.submit_job("echo", {"same": 1}, organization="acme")
    assert twin.id != first.id
    with pytest.raises(errors.AlreadyExists) as refused:
        client.retry_job(first.id)
    assert refused.value.detail == {"job_id": first.id, "active_job_id": twin.id}
    with psycopg.connect(dsn, autocommit=True) as conn:

        def retry_all() -> int:
            row = conn.execute("SELECT jobqueue.retry_jobs(organization => 'acme')").fetchone()
            assert row is not None
            return int(row[0])

        assert retry_all() == 0
        client.cancel_job(twin.id)
        # Of two ended twins, one comes back: one active job per hash.
        assert retry_all() == 1
    statuses = sorted(client.get_job(j).status for j in (first.id, twin.id))
    assert statuses == ["canceled", "queued"]
