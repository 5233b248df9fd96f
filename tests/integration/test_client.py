"""Client and AsyncClient against real PostgreSQL: happy paths, typed errors, and enqueueing
inside the caller's own transaction (the job exists if and only if the caller commits)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from jobqueue import errors
from jobqueue.client import AsyncClient, Client
from jobqueue.models import Job
from jobqueue.states import JobStatus
from tests.factories import make_job_type, make_org_with_member, make_token, run_job

TRACE_COUNTS = """
SELECT (SELECT count(*) FROM jobqueue.job) AS jobs,
       (SELECT count(*) FROM jobqueue.event) AS events,
       (SELECT count(*) FROM procrastinate.procrastinate_jobs) AS vehicles
"""


def trace_counts(dsn: str) -> tuple[int, int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(TRACE_COUNTS).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


@pytest.fixture
def setup(client: Client) -> Client:
    make_job_type(client, "echo")
    make_org_with_member(client, "acme", "alice")
    make_org_with_member(client, "globex", "bob")
    return client


def test_constructor_takes_exactly_one_source(dsn: str) -> None:
    with pytest.raises(ValueError):
        Client()
    with psycopg.connect(dsn) as conn, pytest.raises(ValueError):
        Client(dsn, connection=conn)


def test_sync_happy_path(setup: Client, dsn: str) -> None:
    client = setup
    job = client.submit_job("echo", {"n": 1}, organization="acme", priority=5, actor="alice")
    assert isinstance(job, Job)
    assert (job.status, job.priority, job.organization, job.duplicate) == (
        JobStatus.QUEUED,
        5,
        "acme",
        False,
    )
    assert job.created_by == "alice"
    again = client.submit_job("echo", {"n": 1}, organization="acme", actor="alice")
    assert (again.id, again.duplicate) == (job.id, True)

    assert client.get_job(job.id, actor="alice").params == {"n": 1}
    assert [j.id for j in client.list_jobs(actor="alice")] == [job.id]

    batch = client.submit_jobs(
        [{"job_type": "echo", "organization": "acme", "params": {"n": n}} for n in range(2, 5)],
        actor="alice",
    )
    assert [j.params["n"] for j in batch] == [2, 3, 4]
    listed = client.list_jobs(actor="alice", page_size=2)
    assert [j.id for j in listed] == sorted((j.id for j in batch), reverse=True)[:2]

    run_job(dsn, job.id)
    done = client.get_job(job.id)
    assert done.status == JobStatus.COMPLETED
    attempts = client.job_attempts(job.id, actor="alice")
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "completed")]

    canceled = client.cancel_job(batch[0].id, actor="alice")
    assert canceled.status == JobStatus.CANCELED
    retried = client.retry_job(batch[0].id, actor="alice")
    assert (retried.status, retried.attempt) == (JobStatus.QUEUED, 0)

    counts = client.metrics(actor="alice", organization="acme")
    assert counts["counts_by_status"]["completed"] == 1
    events = client.events_since(actor="alice", job_id=job.id)
    assert [e.type for e in events][0] == "submitted"
    assert "completed" in [e.type for e in events]


def test_tokens_and_access(setup: Client) -> None:
    client = setup
    token = make_token(client, "carol")
    identity = client.authenticate(token.secret)
    assert identity.user_name == "carol"
    assert client.can_access("alice", "acme") is True
    assert client.can_access("alice", "globex") is False
    with pytest.raises(errors.Unauthenticated):
        client.authenticate("not-a-token")


def test_sync_typed_errors(setup: Client, dsn: str) -> None:
    client = setup
    with pytest.raises(errors.JobNotFound):
        client.get_job(10**9)
    with pytest.raises(errors.UnknownJobType):
        client.submit_job("no_such_type", organization="acme")
    with pytest.raises(errors.OrganizationNotFound):
        client.submit_job("echo", organization="nowhere")
    job = client.submit_job("echo", {}, organization="acme")
    with pytest.raises(errors.JobNotFound):
        client.get_job(job.id, actor="bob")
    run_job(dsn, job.id)
    with pytest.raises(errors.IllegalTransition) as raised:
        client.cancel_job(job.id)
    assert raised.value.detail["from"] == "completed"
    make_job_type(client, "limited", rate_limit=1, rate_period=timedelta(hours=1))
    client.submit_job("limited", {"n": 1}, organization="acme")
    with pytest.raises(errors.RateLimited) as limited:
        client.submit_job("limited", {"n": 2}, organization="acme")
    assert limited.value.detail["retry_after"] > 0
    assert all(isinstance(e, errors.JobqueueError) for e in (raised.value, limited.value))


@pytest.mark.parametrize("ending", ["commit", "rollback"])
def test_enqueue_inside_the_callers_transaction(setup: Client, dsn: str, ending: str) -> None:
    before = trace_counts(dsn)
    # A plain connection, as an application opens it: no jobqueue session settings.
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS orders (id int)")
        conn.commit()
        conn.execute("INSERT INTO orders VALUES (7)")
        job = Client(connection=conn).submit_job("echo", {"order": 7}, organization="acme")
        assert job.status == JobStatus.QUEUED
        # Not visible to anyone else until the caller commits.
        assert trace_counts(dsn) == before
        if ending == "commit":
            conn.commit()
        else:
            conn.rollback()
    if ending == "commit":
        assert setup.get_job(job.id).params == {"order": 7}
        assert trace_counts(dsn) == (before[0] + 1, before[1] + 1, before[2] + 1)
    else:
        with pytest.raises(errors.JobNotFound):
            setup.get_job(job.id)
        assert trace_counts(dsn) == before


def test_error_on_the_callers_connection_leaves_its_transaction_to_the_caller(
    setup: Client, dsn: str
) -> None:
    with psycopg.connect(dsn) as conn:
        with pytest.raises(errors.UnknownJobType):
            Client(connection=conn).submit_job("no_such_type", organization="acme")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.rollback()
        job = Client(connection=conn).submit_job("echo", organization="acme")
        conn.commit()
    assert setup.get_job(job.id).id == job.id


@pytest.fixture
async def aclient(dsn: str, setup: Client) -> AsyncIterator[AsyncClient]:
    client = await AsyncClient.connect(dsn)
    try:
        yield client
    finally:
        await client.close()


async def test_async_happy_path_and_errors(aclient: AsyncClient, dsn: str) -> None:
    job = await aclient.submit_job("echo", {"n": 1}, organization="acme", actor="alice")
    assert (job.status, job.duplicate) == (JobStatus.QUEUED, False)
    again = await aclient.submit_job("echo", {"n": 1}, organization="acme")
    assert (again.id, again.duplicate) == (job.id, True)
    assert (await aclient.get_job(job.id, actor="alice")).id == job.id
    assert [j.id for j in await aclient.list_jobs(organization="acme")] == [job.id]
    canceled = await aclient.cancel_job(job.id, actor="alice")
    assert canceled.status == JobStatus.CANCELED
    metrics: dict[str, Any] = await aclient.metrics(organization="acme")
    assert metrics["counts_by_status"]["canceled"] == 1
    with pytest.raises(errors.JobNotFound):
        await aclient.get_job(job.id, actor="bob")
    with pytest.raises(errors.IllegalTransition):
        await aclient.cancel_job(job.id)
    with pytest.raises(errors.Forbidden):
        await aclient.submit_job("echo", organization="globex", actor="alice")


@pytest.mark.parametrize("ending", ["commit", "rollback"])
async def test_async_enqueue_inside_the_callers_transaction(
    setup: Client, dsn: str, ending: str
) -> None:
    before = trace_counts(dsn)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        job = await AsyncClient(connection=conn).submit_job(
            "echo", {"async": True}, organization="acme"
        )
        assert trace_counts(dsn) == before
        if ending == "commit":
            await conn.commit()
        else:
            await conn.rollback()
    if ending == "commit":
        assert setup.get_job(job.id).params == {"async": True}
        assert trace_counts(dsn) == (before[0] + 1, before[1] + 1, before[2] + 1)
    else:
        assert trace_counts(dsn) == before
