"""A manual retry never runs a job ahead of its dependencies: retry_job refuses (JQV04) and
retry_jobs skips a dead or canceled job whose dependencies have not all completed."""

from __future__ import annotations

import psycopg
import pytest

from jobqueue import errors
from jobqueue.client import Client
from jobqueue.states import JobStatus
from tests.factories import make_job_type, run_job

TRACE = """
SELECT (SELECT count(*) FROM jobqueue.event WHERE job_id = %(id)s),
       (SELECT count(*) FROM procrastinate.procrastinate_jobs
        WHERE queueing_lock = 'jobqueue:' || %(id)s)
"""


def trace(dsn: str, job_id: int) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(TRACE, {"id": job_id}).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.fixture
def setup(client: Client) -> Client:
    make_job_type(client, "echo")
    make_job_type(client, "fragile", max_retries=0)
    client.create_organization("acme")
    return client


def test_retry_of_a_dependent_whose_dependency_is_pending_is_refused(
    setup: Client, dsn: str
) -> None:
    first = setup.submit_job("echo", {"first": 1}, organization="acme")
    second = setup.submit_job("echo", {"second": 1}, organization="acme", depends_on=[first.id])
    assert setup.cancel_job(second.id).status == JobStatus.CANCELED
    before = trace(dsn, second.id)
    with pytest.raises(errors.InvalidDependency) as refused:
        setup.retry_job(second.id)
    assert refused.value.detail == {"job_id": second.id, "depends_on": first.id, "status": "queued"}
    assert setup.get_job(second.id).status == JobStatus.CANCELED
    assert trace(dsn, second.id) == before == (2, 0)


def test_dependents_of_a_failed_job_are_retried_after_it_completes(setup: Client, dsn: str) -> None:
    first = setup.submit_job("fragile", {"first": 1}, organization="acme")
    second = setup.submit_job("echo", {"second": 1}, organization="acme", depends_on=[first.id])
    run_job(dsn, first.id, "failed")
    assert setup.get_job(second.id).status == JobStatus.CANCELED
    with pytest.raises(errors.InvalidDependency):
        setup.retry_job(second.id)
    assert setup.retry_job(first.id).status == JobStatus.QUEUED
    with pytest.raises(errors.InvalidDependency):
        setup.retry_job(second.id)
    run_job(dsn, first.id)
    retried = setup.retry_job(second.id)
    assert retried.status == JobStatus.QUEUED
    assert trace(dsn, second.id)[1] == 1, "the retried job has its vehicle"


def test_bulk_retry_skips_jobs_whose_dependencies_have_not_completed(
    setup: Client, dsn: str
) -> None:
    first = setup.submit_job("fragile", {"first": 1}, organization="acme")
    second = setup.submit_job("echo", {"second": 1}, organization="acme", depends_on=[first.id])
    lone = setup.submit_job("echo", {"lone": 1}, organization="acme")
    setup.cancel_job(lone.id)
    run_job(dsn, first.id, "failed")
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT jobqueue.retry_jobs(organization => 'acme')").fetchone()
    assert row is not None and row[0] == 2
    statuses = {j.id: j.status for j in setup.list_jobs()}
    assert statuses == {
        first.id: JobStatus.QUEUED,
        second.id: JobStatus.CANCELED,
        lone.id: JobStatus.QUEUED,
    }
