"""lifecycle.sql against a real PostgreSQL: every legal transition through the real calls,
every illegal one refused by the trigger, cancel racing a worker's fetch, and retry backoff."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from itertools import product
from typing import Any

import pytest
from psycopg.rows import dict_row

from jobqueue import db, errors
from jobqueue.client import Client
from jobqueue.states import TERMINAL, TRANSITIONS, JobStatus
from tests.conftest import fresh_database
from tests.factories import finish_job, make_job_type, run_job, start_job

ILLEGAL = [(a, b) for a, b in product(JobStatus, JobStatus) if a != b and (a, b) not in TRANSITIONS]


@pytest.fixture
def setup(client: Client) -> Client:
    client.create_organization("acme")
    make_job_type(client)
    # Dependencies run on a queue of their own, so fetching them never takes another job.
    make_job_type(client, "dep", queue="deps")
    return client


def start_when_due(dsn: str, job_id: int) -> int:
    """Start a retrying job once its vehicle's scheduled time has come."""
    deadline = time.monotonic() + 60
    while True:
        with db.connect(dsn) as conn:
            due = conn.execute(
                "SELECT next_retry_at <= now() FROM jobqueue.job WHERE id = %s", (job_id,)
            ).fetchone()
        if due == (True,):
            return start_job(dsn, job_id)
        assert time.monotonic() < deadline, "the retry never came due"
        time.sleep(0.05)


def job_in(client: Client, dsn: str, status: JobStatus, organization: str = "acme") -> int:
    """A fresh job brought to the status through the engine's own calls."""
    if status is JobStatus.WAITING:
        dep = client.submit_job("dep", {"for": "waiting"}, organization=organization)
        return client.submit_job("echo", {}, organization=organization, depends_on=[dep.id]).id
    job = client.submit_job("echo", {}, organization=organization)
    if status is JobStatus.QUEUED:
        return job.id
    if status is JobStatus.CANCELED:
        client.cancel_job(job.id)
        return job.id
    attempt = start_job(dsn, job.id)
    if status is JobStatus.RUNNING:
        return job.id
    outcome = {
        JobStatus.RETRYING: {"outcome": "failed"},
        JobStatus.COMPLETED: {"outcome": "completed", "result": {"ok": True}},
        JobStatus.DEAD: {"outcome": "failed", "retryable": False},
    }[status]
    assert finish_job(dsn, job.id, attempt, **outcome)["status"] == status
    return job.id


def move(client: Client, dsn: str, job_id: int, to: JobStatus) -> None:
    """Drive the job to `to` the way the engine does it."""
    current = client.get_job(job_id).status
    if to is JobStatus.CANCELED:
        client.cancel_job(job_id)
        if current is JobStatus.RUNNING:
            job = client.get_job(job_id)
            assert job.status is JobStatus.RUNNING and job.cancel_requested
            finish_job(dsn, job_id, job.attempt, "canceled")
    elif current is JobStatus.WAITING:
        (dep,) = client.get_job(job_id).depends_on
        run_job(dsn, dep)
    elif to is JobStatus.QUEUED:
        client.retry_job(job_id)
    elif current is JobStatus.RETRYING:
        start_when_due(dsn, job_id)
    elif to is JobStatus.RUNNING:
        start_job(dsn, job_id)
    else:
        attempt = client.get_job(job_id).attempt
        fields: dict[str, Any] = {
            JobStatus.COMPLETED: {"outcome": "completed"},
            JobStatus.RETRYING: {"outcome": "failed"},
            JobStatus.DEAD: {"outcome": "failed", "retryable": False},
        }[to]
        finish_job(dsn, job_id, attempt, **fields)


def events_of(dsn: str, job_id: int) -> list[str]:
    with db.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT type FROM jobqueue.event WHERE job_id = %s ORDER BY id", (job_id,)
        ).fetchall()
    return [r[0] for r in rows]


def test_python_transitions_match_the_table(dsn: str) -> None:
    with db.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT from_status::text, to_status::text, event FROM jobqueue.job_transition"
        ).fetchall()
    assert {(JobStatus(a), JobStatus(b)): e for a, b, e in rows} == TRANSITIONS


@pytest.fixture(scope="module")
def shared_dsn(server_dsn: str, template_name: str) -> Iterator[str]:
    """One database for the transition cases, each in a corner of its own (see ``corner``)."""
    with fresh_database(server_dsn, template_name) as url:
        yield url


@pytest.fixture(scope="module")
def shared_client(shared_dsn: str) -> Iterator[Client]:
    with Client(shared_dsn) as client:
        yield client


@pytest.fixture
def corner(shared_client: Client) -> str:
    """An organization, and queues for the job types, that no other case uses: no earlier
    job is a duplicate of this case's jobs (dedup is per organization), and the vehicle a
    fetch takes first in the job's queue is this case's (start_job checks it), so the case
    runs as in a database of its own."""
    tag = uuid.uuid4().hex[:12]
    shared_client.create_organization(f"org-{tag}")
    make_job_type(shared_client, queue=f"q-{tag}")
    make_job_type(shared_client, "dep", queue=f"deps-{tag}")
    return f"org-{tag}"


@pytest.mark.parametrize(("source", "target"), sorted(TRANSITIONS), ids=str)
def test_legal_transition(
    shared_client: Client, shared_dsn: str, corner: str, source: JobStatus, target: JobStatus
) -> None:
    setup, dsn = shared_client, shared_dsn
    job_id = job_in(setup, dsn, source, corner)
    assert setup.get_job(job_id).status is source
    before = events_of(dsn, job_id)
    move(setup, dsn, job_id, target)
    job = setup.get_job(job_id)
    assert job.status is target
    after = events_of(dsn, job_id)[len(before) :]
    assert TRANSITIONS[(source, target)] in after
    assert (job.finished_at is not None) == (target in TERMINAL)
    with db.connect(dsn) as conn:
        vehicles = conn.execute(
            "SELECT count(*) FROM procrastinate.procrastinate_jobs"
            " WHERE queueing_lock = %s AND status = 'todo'",
            (f"jobqueue:{job_id}",),
        ).fetchone()
    # A vehicle waits exactly while the job is queued or retrying.
    assert vehicles == ((1,) if target in (JobStatus.QUEUED, JobStatus.RETRYING) else (0,))


@pytest.mark.parametrize(("source", "target"), ILLEGAL, ids=str)
def test_illegal_transition_is_refused(
    shared_client: Client, shared_dsn: str, corner: str, source: JobStatus, target: JobStatus
) -> None:
    setup, dsn = shared_client, shared_dsn
    job_id = job_in(setup, dsn, source, corner)
    with db.connect(dsn) as conn, pytest.raises(errors.IllegalTransition) as info:
        with db.translated():
            # Keep the row's CHECK constraints satisfied, so only the lifecycle can object.
            conn.execute(
                "UPDATE jobqueue.job SET status = %(to)s::jobqueue.job_status,"
                " finished_at = CASE WHEN %(terminal)s THEN coalesce(finished_at, now()) END,"
                " next_retry_at = CASE WHEN %(to)s = 'retrying' THEN now() END"
                " WHERE id = %(id)s",
                {"to": target.value, "terminal": target in TERMINAL, "id": job_id},
            )
    assert info.value.detail == {"job_id": job_id, "from": source.value, "to": target.value}
    assert setup.get_job(job_id).status is source


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.DEAD, JobStatus.CANCELED])
def test_cancel_of_an_ended_job_is_refused(setup: Client, dsn: str, status: JobStatus) -> None:
    job_id = job_in(setup, dsn, status)
    with pytest.raises(errors.IllegalTransition) as info:
        setup.cancel_job(job_id)
    assert info.value.detail["from"] == status.value
    assert setup.get_job(job_id).status is status


@pytest.mark.parametrize(
    "status", [JobStatus.WAITING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED]
)
def test_retry_of_a_live_or_completed_job_is_refused(
    setup: Client, dsn: str, status: JobStatus
) -> None:
    job_id = job_in(setup, dsn, status)
    with pytest.raises(errors.IllegalTransition) as info:
        setup.retry_job(job_id)
    assert info.value.detail == {"job_id": job_id, "from": status.value, "to": "queued"}


def test_cancel_twice_while_running_is_one_request(setup: Client, dsn: str) -> None:
    job_id = job_in(setup, dsn, JobStatus.RUNNING)
    setup.cancel_job(job_id)
    setup.cancel_job(job_id)
    assert events_of(dsn, job_id).count("cancel_requested") == 1


def test_failure_after_cancel_request_ends_canceled(setup: Client, dsn: str) -> None:
    job_id = job_in(setup, dsn, JobStatus.RUNNING)
    setup.cancel_job(job_id)
    row = finish_job(dsn, job_id, setup.get_job(job_id).attempt, "failed")
    assert row["accepted"] and row["status"] == "canceled"


def test_retry_gives_fresh_attempts(setup: Client, dsn: str) -> None:
    make_job_type(setup, "once", max_retries=0)
    job = setup.submit_job("once", {}, organization="acme")
    assert run_job(dsn, job.id, "failed")["status"] == "dead"
    setup.retry_job(job.id)
    assert run_job(dsn, job.id, "failed")["status"] == "dead"
    attempts = setup.job_attempts(job.id)
    assert [a.attempt for a in attempts] == [1, 2]


def test_missing_job_is_not_found(setup: Client) -> None:
    for call in (setup.cancel_job, setup.retry_job, setup.get_job):
        with pytest.raises(errors.JobNotFound):
            call(10**9)


CANCEL_START_ROUNDS = 30


def test_cancel_racing_start_has_one_consistent_outcome(setup: Client, dsn: str) -> None:
    outcomes: dict[str, int] = {"canceled": 0, "running": 0}
    failures: list[BaseException] = []
    with db.connect(dsn, autocommit=True) as conn:
        worker_id = conn.execute(
            "SELECT procrastinate.procrastinate_register_worker_v1()"
        ).fetchone()[0]  # type: ignore[index]
    for round_number in range(CANCEL_START_ROUNDS):
        job_id = setup.submit_job("echo", {"round": round_number}, organization="acme").id
        barrier = threading.Barrier(2)

        def cancel(job_id: int = job_id, barrier: threading.Barrier = barrier) -> None:
            try:
                with db.connect(dsn, autocommit=True) as conn:
                    barrier.wait(timeout=30)
                    Client(connection=conn).cancel_job(job_id)
            except BaseException as exc:
                failures.append(exc)

        def fetch(barrier: threading.Barrier = barrier) -> None:
            try:
                with db.connect(dsn, autocommit=True) as conn:
                    barrier.wait(timeout=30)
                    conn.execute(
                        "SELECT * FROM procrastinate.procrastinate_fetch_job_v2("
                        "ARRAY['default']::varchar[], %s)",
                        (worker_id,),
                    )
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=cancel), threading.Thread(target=fetch)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not failures, failures

        job = setup.get_job(job_id)
        with db.connect(dsn) as conn:
            conn.row_factory = dict_row  # type: ignore[assignment]
            attempts = conn.execute(
                "SELECT count(*) AS n FROM jobqueue.job_attempts(%s)", (job_id,)
            ).fetchone()
            vehicles = conn.execute(
                "SELECT status, args FROM procrastinate.procrastinate_jobs"
                " WHERE args ->> 'job_id' = %s",
                (str(job_id),),
            ).fetchall()
        if job.status is JobStatus.CANCELED:
            outcomes["canceled"] += 1
            assert attempts == {"n": 0} and job.attempt == 0
            # The vehicle is gone, or was fetched and told the job is no longer runnable.
            assert all(v["args"].get("attempt", "absent") is None for v in vehicles), vehicles
            assert all(v["status"] == "doing" for v in vehicles), vehicles
        else:
            outcomes["running"] += 1
            assert job.status is JobStatus.RUNNING and job.cancel_requested
            assert attempts == {"n": 1} and job.attempt == 1
            assert [v["args"]["attempt"] for v in vehicles] == [1]
            finish_job(dsn, job_id, 1, "canceled")
            assert setup.get_job(job_id).status is JobStatus.CANCELED
    print(f"\ncancel vs start over {CANCEL_START_ROUNDS} rounds: {outcomes}")


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 20, 40])
def test_backoff_stays_within_bounds(dsn: str, attempt: int) -> None:
    base, cap = timedelta(seconds=1), timedelta(minutes=10)
    d = min(cap, base * 2 ** (attempt - 1))
    with db.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT jobqueue._backoff(%s, %s, %s) FROM generate_series(1, 500)",
            (base, cap, attempt),
        ).fetchall()
    delays = [r[0] for r in rows]
    assert all(d / 2 <= x <= d for x in delays), (min(delays), max(delays), d)
    assert len(set(delays)) > 1, "no jitter"


def test_next_retry_at_after_a_failure_is_within_bounds(setup: Client, dsn: str) -> None:
    base, cap = timedelta(seconds=10), timedelta(seconds=25)
    make_job_type(setup, "slowretry", backoff_base=base, backoff_max=cap, max_retries=5)
    for n in (1, 2, 3):
        job = setup.submit_job("slowretry", {"n": n}, organization="acme")
        for attempt in range(1, n + 1):
            if attempt > 1:
                with db.connect(dsn, autocommit=True) as conn:
                    # Bring the retry due now rather than sleeping through the backoff.
                    conn.execute(
                        "UPDATE procrastinate.procrastinate_jobs SET scheduled_at = now()"
                        " WHERE queueing_lock = %s",
                        (f"jobqueue:{job.id}",),
                    )
            assert start_job(dsn, job.id) == attempt
            assert finish_job(dsn, job.id, attempt, "failed")["status"] == "retrying"
        d = min(cap, base * 2 ** (n - 1))
        with db.connect(dsn) as conn:
            next_retry_at, failed_at, scheduled_at = conn.execute(
                "SELECT j.next_retry_at, a.finished_at, v.scheduled_at"
                " FROM jobqueue.job AS j"
                " JOIN jobqueue.attempt AS a ON a.job_id = j.id AND a.attempt = j.attempt"
                " JOIN procrastinate.procrastinate_jobs AS v"
                "   ON v.queueing_lock = 'jobqueue:' || j.id AND v.status = 'todo'"
                " WHERE j.id = %s",
                (job.id,),
            ).fetchone()  # type: ignore[misc]
        assert d / 2 <= next_retry_at - failed_at <= d
        assert scheduled_at == next_retry_at


def test_completion_after_a_failure_keeps_the_last_error_as_history(
    setup: Client, dsn: str
) -> None:
    job = setup.submit_job("echo", {"flaky": 1}, organization="acme")
    attempt = start_job(dsn, job.id)
    finish_job(dsn, job.id, attempt, "failed", error="first try broke")
    attempt = start_when_due(dsn, job.id)
    assert finish_job(dsn, job.id, attempt, "completed", result={"ok": 1})["status"] == "completed"
    done = setup.get_job(job.id)
    assert done.status is JobStatus.COMPLETED and done.result == {"ok": 1}
    assert done.last_error == "first try broke"
    assert [(a.outcome, a.error) for a in setup.job_attempts(job.id)] == [
        ("failed", "first try broke"),
        ("completed", None),
    ]


def race(first: Callable[[], object], second: Callable[[], object]) -> None:
    """Run two calls at the same moment on their own threads; re-raise what either raised."""
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def body(call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=30)
            call()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=body, args=(c,)) for c in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures


def test_cancel_racing_a_failure_ends_canceled_without_a_waiting_vehicle(
    setup: Client, dsn: str
) -> None:
    for round_number in range(15):
        job = setup.submit_job("echo", {"round": round_number}, organization="acme")
        attempt = start_job(dsn, job.id)

        def cancel(job_id: int = job.id) -> None:
            with db.connect(dsn, autocommit=True) as conn:
                Client(connection=conn).cancel_job(job_id)

        race(
            cancel,
            lambda job_id=job.id, attempt=attempt: finish_job(dsn, job_id, attempt, "failed"),
        )
        assert setup.get_job(job.id).status is JobStatus.CANCELED, f"round {round_number}"
        with db.connect(dsn) as conn:
            waiting = conn.execute(
                "SELECT count(*) FROM procrastinate.procrastinate_jobs"
                " WHERE queueing_lock = %s AND status = 'todo'",
                (f"jobqueue:{job.id}",),
            ).fetchone()
        assert waiting == (0,)
