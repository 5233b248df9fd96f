"""queries.sql against real PostgreSQL: get_job, list_jobs (filters, keyset pages, also while
jobs are being inserted) and job_attempts, each through the access rule."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from jobqueue import db, errors
from jobqueue.client import Client
from jobqueue.states import JobStatus
from tests.factories import finish_job, make_job_type, make_org_with_member, run_job, start_job


@pytest.fixture
def setup(client: Client) -> Client:
    make_job_type(client, "echo")
    make_job_type(client, "other")
    make_org_with_member(client, "acme", "alice")
    make_org_with_member(client, "globex", "bob")
    return client


def test_get_job_returns_the_whole_record(setup: Client) -> None:
    first = setup.submit_job("echo", {"n": 1}, organization="acme", priority=3, actor="alice")
    second = setup.submit_job(
        "echo", {"n": 2}, organization="acme", depends_on=[first.id], actor="alice"
    )
    job = setup.get_job(second.id, actor="alice")
    assert (job.id, job.job_type, job.organization, job.queue) == (
        second.id,
        "echo",
        "acme",
        "default",
    )
    assert (job.status, job.params, job.depends_on) == (JobStatus.WAITING, {"n": 2}, [first.id])
    assert (job.attempt, job.cancel_requested, job.created_by) == (0, False, "alice")
    assert setup.get_job(first.id).priority == 3
    assert job.duplicate is False


def test_list_jobs_filters(setup: Client, dsn: str) -> None:
    a1 = setup.submit_job("echo", {"n": 1}, organization="acme")
    a2 = setup.submit_job("other", {"n": 2}, organization="acme")
    g1 = setup.submit_job("echo", {"n": 3}, organization="globex")
    run_job(dsn, a1.id)

    def ids(**kw: object) -> list[int]:
        return [j.id for j in setup.list_jobs(**kw)]  # type: ignore[arg-type]

    assert ids() == [g1.id, a2.id, a1.id]
    assert ids(organization="acme") == [a2.id, a1.id]
    assert ids(status="completed") == [a1.id]
    assert ids(status="queued", organization="acme") == [a2.id]
    assert ids(job_type="echo") == [g1.id, a1.id]
    assert ids(actor="bob") == [g1.id]
    now = setup.get_job(g1.id).created_at
    assert ids(created_after=now + timedelta(seconds=1)) == []
    assert set(ids(created_before=now + timedelta(seconds=1))) == {a1.id, a2.id, g1.id}
    assert ids(created_before=datetime(2000, 1, 1, tzinfo=UTC)) == []
    assert ids(job_type="no such type") == []


def test_keyset_pages_cover_every_job_once(setup: Client) -> None:
    jobs = setup.submit_jobs(
        [{"job_type": "echo", "organization": "acme", "params": {"n": n}} for n in range(23)]
    )
    seen: list[int] = []
    before: int | None = None
    while page := setup.list_jobs(page_size=5, before_id=before):
        seen.extend(j.id for j in page)
        before = page[-1].id
    assert seen == sorted((j.id for j in jobs), reverse=True)


def test_paging_while_jobs_are_inserted_neither_repeats_nor_skips(setup: Client, dsn: str) -> None:
    existing = setup.submit_jobs(
        [{"job_type": "echo", "organization": "acme", "params": {"n": n}} for n in range(200)]
    )
    stop = threading.Event()
    barrier = threading.Barrier(3)

    def insert(tag: str) -> None:
        with Client(dsn) as writer:
            barrier.wait()
            n = 0
            while not stop.is_set() and n < 500:
                writer.submit_job("echo", {tag: n}, organization="acme")
                n += 1

    writers = [threading.Thread(target=insert, args=(t,)) for t in ("x", "y")]
    for writer in writers:
        writer.start()
    barrier.wait()
    try:
        first = setup.list_jobs(page_size=7)
        seen = [j.id for j in first]
        before = first[-1].id
        while page := setup.list_jobs(page_size=7, before_id=before):
            seen.extend(j.id for j in page)
            before = page[-1].id
            time.sleep(0.001)
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=120)
    assert len(seen) == len(set(seen)), "a job was listed twice"
    assert seen == sorted(seen, reverse=True)
    assert {j.id for j in existing} <= set(seen), "a job older than the first page was skipped"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"page_size": 0}, errors.InvalidArgument),
        ({"page_size": 501}, errors.InvalidArgument),
        ({"page_size": None}, errors.InvalidArgument),
        ({"status": "finished"}, errors.InvalidArgument),
        ({"status": "queued'; DROP TABLE jobqueue.job; --"}, errors.InvalidArgument),
        ({"organization": "nowhere"}, errors.OrganizationNotFound),
        ({"organization": "globex", "actor": "alice"}, errors.Forbidden),
        ({"organization": "nowhere", "actor": "alice"}, errors.Forbidden),
    ],
    ids=str,
)
def test_list_jobs_bad_arguments(
    setup: Client, kwargs: dict[str, object], error: type[errors.JobqueueError]
) -> None:
    setup.submit_job("echo", {}, organization="acme")
    with pytest.raises(error):
        setup.list_jobs(**kwargs)  # type: ignore[arg-type]
    assert len(setup.list_jobs()) == 1


def test_job_attempts_is_the_execution_log(setup: Client, dsn: str) -> None:
    job = setup.submit_job("echo", {}, organization="acme", actor="alice")
    first = start_job(dsn, job.id)
    finish_job(dsn, job.id, first, "failed", error="first failure", traceback="tb")
    deadline = time.monotonic() + 60
    while True:
        try:
            second = start_job(dsn, job.id)
            break
        except AssertionError:
            # The retry's vehicle is scheduled for next_retry_at; wait for it to be due.
            assert time.monotonic() < deadline, "the retry never became runnable"
            time.sleep(0.05)
    finish_job(dsn, job.id, second, "completed", result={"ok": 1})
    attempts = setup.job_attempts(job.id, actor="alice")
    assert [(a.attempt, a.outcome, a.error) for a in attempts] == [
        (1, "failed", "first failure"),
        (2, "completed", None),
    ]
    assert attempts[0].traceback == "tb"
    assert all(a.organization == "acme" and a.job_type == "echo" for a in attempts)
    assert all(a.duration_ms is not None and a.duration_ms >= 0 for a in attempts)
    with pytest.raises(errors.JobNotFound):
        setup.job_attempts(job.id, actor="bob")
    with pytest.raises(errors.JobNotFound):
        setup.job_attempts(10**12)


def test_a_running_attempt_is_in_the_log_before_its_row_exists(setup: Client, dsn: str) -> None:
    """A running attempt lives on its job row until it ends; the log shows it all the same,
    and its one row, written at its end, keeps its worker and start."""
    job = setup.submit_job("echo", {}, organization="acme", actor="alice")
    start_job(dsn, job.id)

    (running,) = setup.job_attempts(job.id, actor="alice")
    assert (running.attempt, running.outcome, running.finished_at, running.duration_ms) == (
        1,
        None,
        None,
        None,
    )
    assert running.worker_id is not None and running.started_at is not None
    assert running.organization == "acme" and running.job_type == "echo"
    with db.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM jobqueue.attempt").fetchone() == (0,)

    finish_job(dsn, job.id, 1, "completed")
    (ended,) = setup.job_attempts(job.id, actor="alice")
    assert ended.outcome == "completed" and ended.finished_at is not None
    assert (ended.worker_id, ended.started_at) == (running.worker_id, running.started_at)
    with db.connect(dsn) as conn:
        left = conn.execute(
            "SELECT attempt_worker_id, attempt_vehicle_id, attempt_started_at, attempt_held_at"
            " FROM jobqueue.job WHERE id = %s",
            (job.id,),
        ).fetchone()
    assert left == (None, None, None, None)
