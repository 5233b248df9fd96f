"""Hostile input through the Python client and raw SQL: a documented error, nothing written.

Every case must raise the engine error the README documents for it (a ``JobqueueError`` with
its SQLSTATE), never a driver error, and leave ``jobqueue.job``, ``jobqueue.event`` and
``procrastinate.procrastinate_jobs`` exactly as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from jobqueue import db as jobqueue_db
from jobqueue import errors
from jobqueue.client import Client
from tests.conftest import fresh_database
from tests.factories import make_job_type, make_org_with_member
from tests.reliability.conftest import row_counts, table_fingerprints
from tests.reliability.corpus import (
    INJECTIONS,
    INT8_MAX,
    INVALID_UTF8,
    LONE_SURROGATE,
    LONG_NAME,
    NUL_TEXT,
    OVERSIZED_TEXT,
    deep_json,
)


def seed(client: Client) -> Client:
    make_job_type(client, "echo")
    make_org_with_member(client, "acme", "alice")
    make_org_with_member(client, "other", "bob")
    client.submit_job("echo", {"seed": True}, organization="acme")
    return client


@pytest.fixture
def setup(client: Client) -> Client:
    return seed(client)


@pytest.fixture
def owner(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with jobqueue_db.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def refusing_dsn(server_dsn: str, template_name: str) -> Iterator[str]:
    """One seeded database for all the refused cases of this module. Each case compares every
    table before and after its call, so it fails itself if it writes anything; the cases
    after it then find the tables as the seed left them, as in a database of their own."""
    with fresh_database(server_dsn, template_name) as url:
        with Client(url) as client:
            seed(client)
        yield url


@pytest.fixture(scope="module")
def refusing(refusing_dsn: str) -> Iterator[Client]:
    with Client(refusing_dsn) as client:
        yield client


@pytest.fixture(scope="module")
def refusing_owner(refusing_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with jobqueue_db.connect(refusing_dsn, autocommit=True) as conn:
        yield conn


Case = tuple[Callable[[Client], Any], type[errors.JobqueueError]]

CASES: dict[str, Case] = {
    **{
        f"injection as job type {i}": (
            lambda c, s=s: c.submit_job(s, {}, organization="acme"),
            errors.UnknownJobType,
        )
        for i, s in enumerate(INJECTIONS)
    },
    **{
        f"injection as organization {i}": (
            lambda c, s=s: c.submit_job("echo", {}, organization=s),
            errors.OrganizationNotFound,
        )
        for i, s in enumerate(INJECTIONS)
    },
    **{
        f"injection as actor {i}": (
            lambda c, s=s: c.submit_job("echo", {}, organization="acme", actor=s),
            errors.Forbidden,
        )
        for i, s in enumerate(INJECTIONS)
    },
    **{
        f"injection as status filter {i}": (
            lambda c, s=s: c.list_jobs(organization="acme", status=s),
            errors.InvalidArgument,
        )
        for i, s in enumerate(INJECTIONS)
    },
    **{
        f"injection as handler {i}": (
            lambda c, s=s: c.register_job_type("evil", s),
            errors.InvalidJobType,
        )
        for i, s in enumerate(INJECTIONS)
    },
    "params over 256 KiB": (
        lambda c: c.submit_job("echo", {"x": OVERSIZED_TEXT}, organization="acme"),
        errors.PayloadTooLarge,
    ),
    "many small keys over 256 KiB": (
        lambda c: c.submit_job("echo", {str(i): i for i in range(40_000)}, organization="acme"),
        errors.PayloadTooLarge,
    ),
    "batch over 50,000 jobs": (
        lambda c: c.submit_jobs(
            [{"job_type": "echo", "params": {}, "organization": "acme"}] * 50_001
        ),
        errors.PayloadTooLarge,
    ),
    "NUL escape in JSON params": (
        lambda c: c.submit_job("echo", {"x": NUL_TEXT}, organization="acme"),
        errors.InvalidArgument,
    ),
    "NUL in a JSON key": (
        lambda c: c.submit_job("echo", {"a\x00": 1}, organization="acme"),
        errors.InvalidArgument,
    ),
    "NUL byte in job type": (
        lambda c: c.submit_job("ec\x00ho", {}, organization="acme"),
        errors.InvalidArgument,
    ),
    "NUL byte in organization": (
        lambda c: c.submit_job("echo", {}, organization="ac\x00me"),
        errors.InvalidArgument,
    ),
    "lone surrogate in params": (
        lambda c: c.submit_job("echo", {"x": LONE_SURROGATE}, organization="acme"),
        errors.InvalidArgument,
    ),
    "lone surrogate in organization": (
        lambda c: c.submit_job("echo", {}, organization="acme" + LONE_SURROGATE),
        errors.InvalidArgument,
    ),
    "NaN in params": (
        lambda c: c.submit_job("echo", {"x": float("nan")}, organization="acme"),
        errors.InvalidArgument,
    ),
    "Infinity in params": (
        lambda c: c.submit_job("echo", {"x": float("-inf")}, organization="acme"),
        errors.InvalidArgument,
    ),
    "params an array": (
        lambda c: c.submit_job("echo", [1, 2], organization="acme"),
        errors.InvalidParams,
    ),
    "params a string": (
        lambda c: c.submit_job("echo", "{}", organization="acme"),
        errors.InvalidParams,
    ),
    "priority over int4": (
        lambda c: c.submit_job("echo", {}, organization="acme", priority=2**40),
        errors.InvalidArgument,
    ),
    "priority under int4": (
        lambda c: c.submit_job("echo", {}, organization="acme", priority=-(2**31) - 1),
        errors.InvalidArgument,
    ),
    "priority a string": (
        lambda c: c.submit_job("echo", {}, organization="acme", priority="high"),  # type: ignore[arg-type]
        errors.InvalidArgument,
    ),
    "job id over int8": (lambda c: c.get_job(2**70), errors.InvalidArgument),
    "job id 2**63": (lambda c: c.cancel_job(INT8_MAX + 1), errors.InvalidArgument),
    "job id negative": (lambda c: c.retry_job(-1), errors.JobNotFound),
    "job id max int8": (lambda c: c.cancel_job(INT8_MAX), errors.JobNotFound),
    "dependency not a number": (
        lambda c: c.submit_job("echo", {}, organization="acme", depends_on=["x"]),  # type: ignore[list-item]
        errors.InvalidArgument,
    ),
    "dependency negative": (
        lambda c: c.submit_job("echo", {}, organization="acme", depends_on=[-1]),
        errors.InvalidDependency,
    ),
    "dependency over int8": (
        lambda c: c.submit_job("echo", {}, organization="acme", depends_on=[2**64]),
        errors.InvalidArgument,
    ),
    "page size negative": (
        lambda c: c.list_jobs(organization="acme", page_size=-1),
        errors.InvalidArgument,
    ),
    "page size enormous": (
        lambda c: c.list_jobs(organization="acme", page_size=2**40),
        errors.InvalidArgument,
    ),
    "max retries negative": (
        lambda c: c.register_job_type("neg", "jobqueue.tasks.demo:echo", max_retries=-1),
        errors.InvalidJobType,
    ),
    "progress percent enormous": (
        lambda c: c.report_progress(1, 1, 10**12),
        errors.InvalidArgument,
    ),
    "job type name of 100,000 characters": (
        lambda c: c.register_job_type("x" * 100_000, "jobqueue.tasks.demo:echo"),
        errors.InvalidJobType,
    ),
    "organization of 100,000 characters": (
        lambda c: c.submit_job("echo", {}, organization=LONG_NAME),
        errors.OrganizationNotFound,
    ),
    "another organization's member": (
        lambda c: c.submit_job("echo", {}, organization="other", actor="alice"),
        errors.Forbidden,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_python_client_refuses_with_the_documented_error(
    name: str, refusing: Client, refusing_owner: psycopg.Connection[Any]
) -> None:
    call, expected = CASES[name]
    before = table_fingerprints(refusing_owner)
    with pytest.raises(expected) as caught:
        call(refusing)
    assert type(caught.value).sqlstate == expected.sqlstate
    assert table_fingerprints(refusing_owner) == before
    # The pool's connection is still usable after the refusal.
    assert refusing.get_job(1).status == "queued"


# Raw SQL as the client role, values sent as text the way any driver could send them.
SQL_CASES: dict[str, tuple[str, tuple[Any, ...], type[errors.JobqueueError]]] = {
    "deeply nested JSON text": (
        "SELECT jobqueue.submit_job(job_type => 'echo', params => %s::jsonb,"
        " organization => 'acme')",
        (deep_json(200_000),),
        errors.InvalidArgument,
    ),
    "NUL escape in JSON text": (
        "SELECT jobqueue.submit_job(job_type => 'echo', params => %s::jsonb,"
        " organization => 'acme')",
        ('{"x": "\\u0000"}',),
        errors.InvalidArgument,
    ),
    "truncated JSON text": (
        "SELECT jobqueue.submit_job(job_type => 'echo', params => %s::jsonb,"
        " organization => 'acme')",
        ('{"x": ',),
        errors.InvalidArgument,
    ),
    "invalid UTF-8 bytes": (
        "SELECT jobqueue.submit_job(job_type => convert_from(%s::bytea, 'UTF8'),"
        " params => '{}', organization => 'acme')",
        (INVALID_UTF8,),
        errors.InvalidArgument,
    ),
    "number beyond numeric precision in a batch": (
        "SELECT count(*) FROM jobqueue.submit_jobs(jobs => %s::jsonb)",
        ('[{"job_type": "echo", "organization": "acme", "priority": 1e400}]',),
        errors.InvalidArgument,
    ),
    "batch not an array": (
        "SELECT count(*) FROM jobqueue.submit_jobs(jobs => %s::jsonb)",
        ('{"job_type": "echo"}',),
        errors.InvalidArgument,
    ),
    "batch item with injected type": (
        "SELECT count(*) FROM jobqueue.submit_jobs(jobs => %s::jsonb)",
        ('[{"job_type": "echo\'; DROP TABLE jobqueue.job; --", "organization": "acme"}]',),
        errors.UnknownJobType,
    ),
    "batch item priority a string": (
        "SELECT count(*) FROM jobqueue.submit_jobs(jobs => %s::jsonb)",
        ('[{"job_type": "echo", "organization": "acme", "priority": "high"}]',),
        errors.InvalidArgument,
    ),
    "batch item depends_on not a list": (
        "SELECT count(*) FROM jobqueue.submit_jobs(jobs => %s::jsonb)",
        ('[{"job_type": "echo", "organization": "acme", "depends_on": "1; DROP"}]',),
        errors.InvalidArgument,
    ),
}


@pytest.mark.parametrize("name", sorted(SQL_CASES))
def test_sql_api_refuses_with_the_documented_error(
    name: str, refusing_dsn: str, refusing_owner: psycopg.Connection[Any]
) -> None:
    sql, params, expected = SQL_CASES[name]
    before = row_counts(refusing_owner), table_fingerprints(refusing_owner)
    with jobqueue_db.connect(refusing_dsn, autocommit=True) as conn:
        conn.execute("SET ROLE jobqueue_client")
        with pytest.raises(expected), jobqueue_db.translated():
            conn.execute(sql, params)
    assert (row_counts(refusing_owner), table_fingerprints(refusing_owner)) == before


def test_a_batch_with_one_hostile_item_writes_nothing(
    setup: Client, owner: psycopg.Connection[Any]
) -> None:
    before = row_counts(owner)
    good = {"job_type": "echo", "params": {"n": 1}, "organization": "acme"}
    for bad in (
        {"job_type": "echo", "params": {"x": "\x00"}, "organization": "acme"},
        {"job_type": "echo", "params": {"x": OVERSIZED_TEXT}, "organization": "acme"},
        {"job_type": INJECTIONS[0], "params": {}, "organization": "acme"},
        {"job_type": "echo", "params": {}, "organization": "other"},
    ):
        with pytest.raises(errors.JobqueueError):
            setup.submit_jobs([good] * 100 + [bad] + [good] * 100, actor="alice")
    assert row_counts(owner) == before


def test_injection_strings_are_stored_verbatim_where_text_is_allowed(
    setup: Client, owner: psycopg.Connection[Any]
) -> None:
    """Accepted hostile text is data, never SQL: it round-trips unchanged."""
    for s in INJECTIONS:
        job = setup.submit_job("echo", {"text": s, s: [s]}, organization="acme")
        assert setup.get_job(job.id).params == {"text": s, s: [s]}
    tables = owner.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'jobqueue'"
    ).fetchone()
    assert tables is not None and tables[0] > 5
