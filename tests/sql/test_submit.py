"""submit.sql against a real PostgreSQL: dedup and rate limits under concurrency, the dedup
window, validation that writes nothing, transactional enqueue, and a 10,000-job batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from jobqueue import db, errors
from jobqueue.client import Client
from jobqueue.models import Job
from tests.conftest import fresh_database
from tests.factories import make_job_type, make_org_with_member, run_job

COUNTED_TABLES = ("jobqueue.job", "jobqueue.event", "procrastinate.procrastinate_jobs")


def row_counts(dsn: str) -> dict[str, int]:
    with db.connect(dsn) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in COUNTED_TABLES
        }


def run_concurrently(dsn: str, n: int, submit: Callable[[Client, int], Job]) -> list[Any]:
    """n threads, each on its own connection, released together by a barrier."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def body(i: int) -> None:
        with db.connect(dsn, autocommit=True) as conn:
            client = Client(connection=conn)
            barrier.wait(timeout=60)
            try:
                results[i] = submit(client, i)
            except errors.JobqueueError as exc:
                results[i] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return results


def test_concurrent_identical_submits_make_one_job(client: Client, dsn: str) -> None:
    client.create_organization("acme")
    make_job_type(client)
    results = run_concurrently(
        dsn, 20, lambda c, _: c.submit_job("echo", {"same": True}, organization="acme")
    )
    assert all(isinstance(r, Job) for r in results), results
    assert len({r.id for r in results}) == 1
    assert sorted(r.duplicate for r in results) == [False] + [True] * 19
    assert row_counts(dsn)["jobqueue.job"] == 1
    assert row_counts(dsn)["procrastinate.procrastinate_jobs"] == 1


def test_rate_limit_is_exact_under_concurrency(client: Client, dsn: str) -> None:
    client.create_organization("acme")
    make_job_type(client, rate_limit=5, rate_period=timedelta(hours=1))
    results = run_concurrently(
        dsn, 20, lambda c, i: c.submit_job("echo", {"n": i}, organization="acme")
    )
    accepted = [r for r in results if isinstance(r, Job)]
    refused = [r for r in results if isinstance(r, errors.RateLimited)]
    assert len(accepted) == 5 and len(refused) == 15, results
    assert all(not r.duplicate for r in accepted)
    assert all(1 <= r.detail["retry_after"] <= 3600 for r in refused)
    assert row_counts(dsn)["jobqueue.job"] == 5


def test_rate_limit_is_per_organization(client: Client) -> None:
    client.create_organization("acme")
    client.create_organization("globex")
    make_job_type(client, rate_limit=1, rate_period=timedelta(hours=1))
    client.submit_job("echo", {"n": 1}, organization="acme")
    client.submit_job("echo", {"n": 1}, organization="globex")
    with pytest.raises(errors.RateLimited):
        client.submit_job("echo", {"n": 2}, organization="acme")


def test_dedup_window(client: Client, dsn: str) -> None:
    client.create_organization("acme")
    make_job_type(client, dedup_window=timedelta(hours=1))
    make_job_type(client, "nowindow")
    first = client.submit_job("echo", {"k": 1}, organization="acme")
    run_job(dsn, first.id)
    assert client.get_job(first.id).status == "completed"

    again = client.submit_job("echo", {"k": 1}, organization="acme")
    assert again.duplicate and again.id == first.id and again.status == "completed"
    fresh = client.submit_job("echo", {"k": 1}, organization="acme", dedup=False)
    assert not fresh.duplicate and fresh.id != first.id

    # Move the completion out of the window: the same params make a new job.
    with db.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE jobqueue.job SET finished_at = now() - interval '2 hours' WHERE id = %s",
            (first.id,),
        )
    client.cancel_job(fresh.id)
    later = client.submit_job("echo", {"k": 1}, organization="acme")
    assert not later.duplicate and later.id not in (first.id, fresh.id)

    # Without a window, a completed job never absorbs a new submit.
    client.cancel_job(later.id)
    other = client.submit_job("nowindow", {"k": 1}, organization="acme")
    run_job(dsn, other.id)
    assert not client.submit_job("nowindow", {"k": 1}, organization="acme").duplicate


def test_dead_or_canceled_job_does_not_absorb_submits(client: Client) -> None:
    client.create_organization("acme")
    make_job_type(client, dedup_window=timedelta(hours=1))
    first = client.submit_job("echo", {"k": 1}, organization="acme")
    client.cancel_job(first.id)
    second = client.submit_job("echo", {"k": 1}, organization="acme")
    assert not second.duplicate and second.id != first.id


def _bad_inputs(client: Client, dsn: str) -> list[tuple[str, Callable[[], object], type]]:
    client.create_organization("acme")
    client.create_organization("globex")
    make_job_type(client)
    make_job_type(client, "off", enabled=False)
    acme_job = client.submit_job("echo", {"base": 1}, organization="acme")
    globex_job = client.submit_job("echo", {"base": 1}, organization="globex")
    dead = client.submit_job("echo", {"dead": 1}, organization="acme")
    client.cancel_job(dead.id)
    make_org_with_member(client, "globex", "mallory")

    def raw(sql: str, *params: object) -> Callable[[], object]:
        def call() -> object:
            with db.connect(dsn) as conn, db.translated():
                return conn.execute(sql, params).fetchall()

        return call

    return [
        (
            "unknown type",
            lambda: client.submit_job("nope", {}, organization="acme"),
            errors.UnknownJobType,
        ),
        (
            "disabled type",
            lambda: client.submit_job("off", {}, organization="acme"),
            errors.UnknownJobType,
        ),
        (
            "params array",
            raw("SELECT jobqueue.submit_job('echo', '[1]', 'acme')"),
            errors.InvalidParams,
        ),
        (
            "params string",
            raw("SELECT jobqueue.submit_job('echo', '\"x\"', 'acme')"),
            errors.InvalidParams,
        ),
        (
            "params too large",
            lambda: client.submit_job("echo", {"x": "a" * 262_200}, organization="acme"),
            errors.PayloadTooLarge,
        ),
        (
            "priority too high",
            lambda: client.submit_job("echo", {}, organization="acme", priority=100_000),
            errors.InvalidArgument,
        ),
        (
            "priority not a number",
            lambda: client.submit_jobs(
                [{"job_type": "echo", "organization": "acme", "priority": "high"}]
            ),
            errors.InvalidArgument,
        ),
        (
            "run_at text",
            lambda: client.submit_jobs(
                [{"job_type": "echo", "organization": "acme", "run_at": "tomorrow-ish"}]
            ),
            errors.InvalidArgument,
        ),
        (
            "run_at far future",
            lambda: client.submit_job(
                "echo", {}, organization="acme", run_at=datetime.now(UTC) + timedelta(days=800)
            ),
            errors.InvalidArgument,
        ),
        (
            "depends_on object",
            lambda: client.submit_jobs(
                [{"job_type": "echo", "organization": "acme", "depends_on": {"a": 1}}]
            ),
            errors.InvalidArgument,
        ),
        (
            "depends_on text ids",
            lambda: client.submit_jobs(
                [{"job_type": "echo", "organization": "acme", "depends_on": ["x"]}]
            ),
            errors.InvalidArgument,
        ),
        (
            "missing dependency",
            lambda: client.submit_job("echo", {}, organization="acme", depends_on=[10**9]),
            errors.InvalidDependency,
        ),
        (
            "foreign dependency",
            lambda: client.submit_job("echo", {}, organization="acme", depends_on=[globex_job.id]),
            errors.InvalidDependency,
        ),
        (
            "dead dependency",
            lambda: client.submit_job(
                "echo", {"d": 2}, organization="acme", depends_on=[acme_job.id, dead.id]
            ),
            errors.InvalidDependency,
        ),
        (
            "unknown organization",
            lambda: client.submit_job("echo", {}, organization="initech"),
            errors.OrganizationNotFound,
        ),
        (
            "missing organization",
            raw("SELECT jobqueue.submit_job('echo', '{}')"),
            errors.InvalidArgument,
        ),
        (
            "organization of another member",
            lambda: client.submit_job("echo", {}, organization="acme", actor="mallory"),
            errors.Forbidden,
        ),
        ("jobs not an array", raw("SELECT jobqueue.submit_jobs('{}')"), errors.InvalidArgument),
        (
            "job element not an object",
            raw("SELECT jobqueue.submit_jobs('[1]')"),
            errors.InvalidArgument,
        ),
        (
            "second element bad",
            lambda: client.submit_jobs(
                [
                    {"job_type": "echo", "organization": "acme", "params": {"ok": 1}},
                    {"job_type": "echo", "organization": "acme", "params": [1]},
                ]
            ),
            errors.InvalidParams,
        ),
    ]


BAD_INPUT_NAMES = [
    "unknown type",
    "disabled type",
    "params array",
    "params string",
    "params too large",
    "priority too high",
    "priority not a number",
    "run_at text",
    "run_at far future",
    "depends_on object",
    "depends_on text ids",
    "missing dependency",
    "foreign dependency",
    "dead dependency",
    "unknown organization",
    "missing organization",
    "organization of another member",
    "jobs not an array",
    "job element not an object",
    "second element bad",
]


@pytest.fixture(scope="module")
def refusing_dsn(server_dsn: str, template_name: str) -> Iterator[str]:
    with fresh_database(server_dsn, template_name) as url:
        yield url


@pytest.fixture(scope="module")
def bad_inputs(refusing_dsn: str) -> Iterator[dict[str, tuple[Callable[[], object], type]]]:
    """The bad inputs, prepared once in a database they all share. Each case counts the rows
    before and after its call, so it fails itself if it writes anything; the cases after it
    then find the rows as prepared, as in a database of their own."""
    with Client(refusing_dsn) as client:
        yield {name: (call, expected) for name, call, expected in _bad_inputs(client, refusing_dsn)}


@pytest.mark.parametrize("case", BAD_INPUT_NAMES)
def test_bad_input_raises_its_error_and_writes_nothing(
    bad_inputs: dict[str, tuple[Callable[[], object], type]], refusing_dsn: str, case: str
) -> None:
    cases, dsn = bad_inputs, refusing_dsn
    assert set(cases) == set(BAD_INPUT_NAMES)
    call, expected = cases[case]
    before = row_counts(dsn)
    with pytest.raises(expected) as info:
        call()
    assert info.value.message
    assert row_counts(dsn) == before


@pytest.mark.parametrize(
    "text",
    [
        "'; DROP TABLE jobqueue.job; --",
        "Robert'); DELETE FROM jobqueue.job WHERE ('1'='1",
        "$$; SELECT pg_sleep(10); $$",
        "\\x00 \" ' ` {{}} %s %(x)s",
    ],
)
def test_injection_looking_strings_are_plain_data(client: Client, dsn: str, text: str) -> None:
    client.create_organization("acme")
    make_job_type(client)
    with pytest.raises(errors.InvalidArgument):
        client.create_organization(text)
    job = client.submit_job("echo", {text: text, "nested": [text]}, organization="acme")
    got = client.get_job(job.id)
    assert got.params == {text: text, "nested": [text]}
    with pytest.raises(errors.UnknownJobType):
        client.submit_job(text, {}, organization="acme")
    with pytest.raises((errors.OrganizationNotFound, errors.InvalidArgument)):
        client.submit_job("echo", {}, organization=text)
    with pytest.raises(errors.JobqueueError):
        client.submit_job("echo", {}, organization="acme", actor=text)
    assert row_counts(dsn)["jobqueue.job"] == 1
    assert [o.organization for o in client.list_organizations()] == ["acme"]


def test_submit_in_rolled_back_transaction_leaves_no_trace(client: Client, dsn: str) -> None:
    client.create_organization("acme")
    make_job_type(client)
    before = row_counts(dsn)
    with db.connect(dsn) as conn:
        with pytest.raises(RuntimeError, match="caller failed"):
            with conn.transaction():
                job = Client(connection=conn).submit_job("echo", {"tx": 1}, organization="acme")
                assert job.status == "queued"
                raise RuntimeError("caller failed")
    assert row_counts(dsn) == before
    with db.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM jobqueue.attempt").fetchone() == (0,)


def test_submit_in_committed_transaction_exists(client: Client, dsn: str) -> None:
    client.create_organization("acme")
    make_job_type(client)
    with db.connect(dsn) as conn:
        with conn.transaction():
            job = Client(connection=conn).submit_job("echo", {"tx": 2}, organization="acme")
    assert client.get_job(job.id).status == "queued"
    assert row_counts(dsn) == {
        "jobqueue.job": 1,
        "jobqueue.event": 1,
        "procrastinate.procrastinate_jobs": 1,
    }


def test_scheduled_and_waiting_jobs(client: Client, dsn: str) -> None:
    client.create_organization("acme")
    make_job_type(client)
    later = datetime.now(UTC) + timedelta(hours=1)
    scheduled = client.submit_job("echo", {"s": 1}, organization="acme", run_at=later)
    assert scheduled.status == "queued"
    dependent = client.submit_job("echo", {"w": 1}, organization="acme", depends_on=[scheduled.id])
    assert dependent.status == "waiting" and dependent.depends_on == [scheduled.id]
    with db.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT args ->> 'job_id', scheduled_at FROM procrastinate.procrastinate_jobs"
        ).fetchall()
    assert len(rows) == 1
    assert rows[0][0] == str(scheduled.id) and rows[0][1] is not None
    assert abs((rows[0][1] - later).total_seconds()) < 1


def test_submit_jobs_ten_thousand(client: Client, dsn: str) -> None:
    client.create_organization("acme")
    make_job_type(client)
    jobs = [
        {"job_type": "echo", "organization": "acme", "params": {"n": i}, "priority": i % 7}
        for i in range(10_000)
    ]
    started = time.perf_counter()
    results = client.submit_jobs(jobs)
    elapsed = time.perf_counter() - started
    print(f"\nsubmit_jobs: 10,000 jobs in one call took {elapsed:.2f} s")
    assert len(results) == 10_000
    assert [r.params["n"] for r in results] == list(range(10_000))
    assert not any(r.duplicate for r in results)
    assert row_counts(dsn) == {
        "jobqueue.job": 10_000,
        "jobqueue.event": 10_000,
        "procrastinate.procrastinate_jobs": 10_000,
    }


def test_duplicates_within_one_batch_answer_with_the_first(client: Client) -> None:
    client.create_organization("acme")
    make_job_type(client)
    same = {"job_type": "echo", "organization": "acme", "params": {"x": 1}}
    other = {"job_type": "echo", "organization": "acme", "params": {"x": 2}}
    results = client.submit_jobs([same, other, same])
    assert [r.duplicate for r in results] == [False, False, True]
    assert results[0].id == results[2].id != results[1].id


def test_concurrent_submit_connections_are_plain(dsn: str) -> None:
    """Sanity check of the harness: a raw psycopg connection can call the API too."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT jobqueue.create_organization('acme')")
        conn.execute("SELECT jobqueue.register_job_type('echo', 'jobqueue.tasks.demo:echo')")
        row = conn.execute(
            "SELECT status, duplicate FROM jobqueue.submit_job('echo', '{}', 'acme')"
        ).fetchone()
    assert row == ("queued", False)


def test_overlapping_batches_in_opposite_orders_do_not_deadlock(client: Client, dsn: str) -> None:
    client.create_organization("acme")
    make_job_type(client)
    for round_number in range(5):
        items = [
            {"job_type": "echo", "organization": "acme", "params": {"r": round_number, "i": i}}
            for i in range(200)
        ]
        results = run_concurrently(
            dsn, 4, lambda c, n, items=items: c.submit_jobs(items if n % 2 else items[::-1])
        )
        assert not [r for r in results if isinstance(r, BaseException)], results
        id_sets = [sorted(j.id for j in r) for r in results]
        assert all(ids == id_sets[0] for ids in id_sets)
        assert sum(not j.duplicate for r in results for j in r) == 200
    assert row_counts(dsn)["jobqueue.job"] == 1000


def test_duplicates_do_not_count_against_the_rate_limit(client: Client, dsn: str) -> None:
    client.create_organization("acme")
    make_job_type(client, rate_limit=1, rate_period=timedelta(hours=1))
    results = run_concurrently(
        dsn, 20, lambda c, _: c.submit_job("echo", {"same": 1}, organization="acme")
    )
    assert all(isinstance(r, Job) for r in results), results
    assert sorted(r.duplicate for r in results) == [False] + [True] * 19


def test_a_batch_over_the_rate_limit_is_refused_whole(client: Client, dsn: str) -> None:
    client.create_organization("acme")
    make_job_type(client, rate_limit=5, rate_period=timedelta(hours=1))
    client.submit_job("echo", {"first": 1}, organization="acme")
    before = row_counts(dsn)
    with pytest.raises(errors.RateLimited):
        client.submit_jobs(
            [{"job_type": "echo", "organization": "acme", "params": {"n": n}} for n in range(5)]
        )
    assert row_counts(dsn) == before
    # The refused batch took its increments back: four more still fit.
    assert (
        len(
            client.submit_jobs(
                [{"job_type": "echo", "organization": "acme", "params": {"n": n}} for n in range(4)]
            )
        )
        == 4
    )


def test_same_params_in_two_organizations_are_two_jobs(client: Client) -> None:
    client.create_organization("acme")
    client.create_organization("globex")
    make_job_type(client)
    a = client.submit_job("echo", {"x": 1}, organization="acme")
    b = client.submit_job("echo", {"x": 1}, organization="globex")
    assert a.id != b.id and not b.duplicate


def test_a_duplicate_answers_with_the_active_job_not_a_newer_completed_one(
    client: Client, dsn: str
) -> None:
    client.create_organization("acme")
    make_job_type(client, max_retries=0)
    old = client.submit_job("echo", {"k": 1}, organization="acme")
    run_job(dsn, old.id, "failed")
    newer = client.submit_job("echo", {"k": 1}, organization="acme")
    run_job(dsn, newer.id)
    client.retry_job(old.id)
    again = client.submit_job("echo", {"k": 1}, organization="acme")
    assert again.duplicate and again.id == old.id and again.status == "queued"
