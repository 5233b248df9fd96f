"""The fast paths of submit: submit_jobs reads a batch in one query and falls back to the
element-by-element _parse_submissions only to name an error; submit_job takes a path of its
own for one job without dependencies. Both must answer exactly as the rules say: the same
error (SQLSTATE and message) as the element-by-element reading, nothing written on an error,
one row per input in order, dedup against active jobs and within a batch, one event per new
job, one vehicle per queued job, and one procrastinate NOTIFY per queue and statement."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from jobqueue import db, errors
from jobqueue.client import Client
from tests.conftest import fresh_database
from tests.factories import make_job_type, make_org_with_member, run_job

COUNTS = """
SELECT (SELECT count(*) FROM jobqueue.job), (SELECT count(*) FROM jobqueue.event),
       (SELECT count(*) FROM procrastinate.procrastinate_jobs),
       (SELECT count(*) FROM jobqueue.job_dependency),
       (SELECT coalesce(sum(count), 0) FROM jobqueue.rate_counter)
"""


def counts(dsn: str) -> tuple[Any, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(COUNTS).fetchone()
    assert row is not None
    return tuple(row)


def error_of(dsn: str, sql: str, *params: Any) -> tuple[str | None, str | None]:
    """(SQLSTATE, message) of a statement that must fail."""
    with psycopg.connect(dsn) as conn:
        with pytest.raises(psycopg.Error) as info:
            conn.execute(sql, params)
    return info.value.sqlstate, info.value.diag.message_primary


def prepare(client: Client) -> Client:
    client.create_organization("acme")
    make_job_type(client)
    make_job_type(client, "off", enabled=False)
    make_org_with_member(client, "globex", "mallory")
    return client


@pytest.fixture
def setup(client: Client) -> Client:
    return prepare(client)


@pytest.fixture(scope="module")
def refusing_dsn(server_dsn: str, template_name: str) -> Iterator[str]:
    """One prepared database for the refused submissions of this module. Each case counts the
    rows before and after, so it fails itself if it writes anything; the cases after it then
    find the tables as prepared, as in a database of their own."""
    with fresh_database(server_dsn, template_name) as url:
        with Client(url) as client:
            prepare(client)
        yield url


def good(**kw: Any) -> dict[str, Any]:
    return {"job_type": "echo", "organization": "acme", "params": {"n": 0}, **kw}


BAD_BATCHES: dict[str, tuple[Any, str | None]] = {
    # name: (batch, actor)
    "not an array": ({"job_type": "echo"}, None),
    "null": (None, None),
    "element a number": ([good(), 5], None),
    "element an array": ([good(), [good()]], None),
    "element a string": ([good(), "x"], None),
    "unknown key after a bad type": ([good(job_type="nope"), good(priorty=1)], None),
    "unknown type": ([good(), good(job_type="nope")], None),
    "missing type": ([good(), {"organization": "acme"}], None),
    "disabled type": ([good(job_type="off")], None),
    "unknown organization": ([good(), good(organization="initech")], None),
    "missing organization": ([good(), {"job_type": "echo"}], None),
    "organization of another member": ([good(organization="globex"), good()], "mallory"),
    "params an array": ([good(), good(params=[1])], None),
    "params a string": ([good(params="x")], None),
    "params too large": ([good(), good(params={"x": "a" * 262_200})], None),
    "priority text": ([good(priority="high")], None),
    "priority fraction": ([good(), good(priority=1.5)], None),
    "priority out of range": ([good(priority=5000)], None),
    "priority overflows": ([good(priority=2**40)], None),
    "run_at text": ([good(run_at="tomorrow-ish")], None),
    "run_at far future": ([good(run_at="2999-01-01T00:00:00Z")], None),
    "run_at far past": ([good(run_at="1999-01-01T00:00:00Z")], None),
    "dedup not a boolean": ([good(dedup="maybe")], None),
    "depends_on an object": ([good(depends_on={"a": 1})], None),
    "depends_on text ids": ([good(depends_on=["x"])], None),
    "depends_on too many": ([good(depends_on=list(range(1, 102)))], None),
    "type error after an org error": ([good(organization="initech"), good(job_type="x")], None),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_a_bad_batch_gets_the_element_by_element_error(refusing_dsn: str, case: str) -> None:
    dsn = refusing_dsn
    batch, actor = BAD_BATCHES[case]
    jobs = None if batch is None else Jsonb(batch)
    expected = error_of(
        dsn, "SELECT count(*) FROM jobqueue._parse_submissions(%s, %s)", jobs, actor
    )
    assert expected[0] is not None and expected[0].startswith(("JQ", "22")), expected
    before = counts(dsn)
    got = error_of(dsn, "SELECT * FROM jobqueue.submit_jobs(%s, %s)", jobs, actor)
    assert got == expected
    assert counts(dsn) == before


def test_an_oversized_batch_is_refused_as_before(setup: Client, dsn: str) -> None:
    batch = Jsonb([{"job_type": "echo", "organization": "acme"}] * 50_001)
    before = counts(dsn)
    state, message = error_of(dsn, "SELECT * FROM jobqueue.submit_jobs(%s)", batch)
    assert (state, message) == ("JQV06", "at most 50000 jobs per call, got 50001")
    assert counts(dsn) == before


def test_a_null_dependency_passes_the_reading_and_fails_the_check(setup: Client, dsn: str) -> None:
    # The fast reading refuses it; the element-by-element one accepts it, and the dependency
    # check names it.
    before = counts(dsn)
    state, message = error_of(
        dsn, "SELECT * FROM jobqueue.submit_jobs(%s)", Jsonb([good(), good(depends_on=[None])])
    )
    assert state == "JQV04"
    assert message is not None and message.startswith("jobs[1]: dependency")
    assert counts(dsn) == before


SINGLE_BAD: dict[str, dict[str, Any]] = {
    "unknown type": {"job_type": "nope"},
    "disabled type": {"job_type": "off"},
    "params array": {"params": Jsonb([1])},
    "params a number": {"params": Jsonb(5)},
    "params too large": {"params": Jsonb({"x": "a" * 262_200})},
    "priority": {"priority": 1001},
    "run_at": {"run_at": datetime.now(UTC) + timedelta(days=800)},
    "missing organization": {"organization": None},
    "unknown organization": {"organization": "initech"},
    "forbidden organization": {"actor": "mallory"},
    "missing dependency": {"depends_on": [10**9]},
    "null dependency": {"depends_on": [None]},
}

SINGLE = """SELECT * FROM jobqueue.submit_job(
    job_type => %(job_type)s, params => %(params)s, organization => %(organization)s,
    priority => %(priority)s, run_at => %(run_at)s, depends_on => %(depends_on)s,
    dedup => %(dedup)s, actor => %(actor)s)"""
# submit_job as it always was: a batch of one.
AS_BATCH = """SELECT * FROM jobqueue.submit_jobs(jsonb_build_array(
    jsonb_strip_nulls(jsonb_build_object(
        'job_type', %(job_type)s::text, 'organization', %(organization)s::text,
        'priority', %(priority)s::integer, 'run_at', %(run_at)s::timestamptz,
        'depends_on', to_jsonb(%(depends_on)s::bigint[]), 'dedup', %(dedup)s::boolean))
    || jsonb_build_object('params', coalesce(%(params)s::jsonb, '{}'))), %(actor)s)"""


@pytest.mark.parametrize("case", sorted(SINGLE_BAD))
def test_submit_job_errors_are_the_batch_errors(refusing_dsn: str, case: str) -> None:
    dsn = refusing_dsn
    args = {
        "job_type": "echo",
        "params": Jsonb({}),
        "organization": "acme",
        "priority": None,
        "run_at": None,
        "depends_on": None,
        "dedup": True,
        "actor": None,
        **SINGLE_BAD[case],
    }
    before = counts(dsn)
    with psycopg.connect(dsn) as conn:
        with pytest.raises(psycopg.Error) as single:
            conn.execute(SINGLE, args)
    with psycopg.connect(dsn) as conn:
        with pytest.raises(psycopg.Error) as batch:
            conn.execute(AS_BATCH, args)
    assert single.value.sqlstate is not None and single.value.sqlstate.startswith("JQ")
    # The batch's error, word for word, less the element's index: a single submit has none.
    batch_message = batch.value.diag.message_primary or ""
    assert (
        single.value.sqlstate,
        single.value.diag.message_primary,
        single.value.diag.message_detail,
    ) == (
        batch.value.sqlstate,
        re.sub(r"^jobs\[0\]:? ", "", batch_message),
        batch.value.diag.message_detail,
    )
    assert counts(dsn) == before


def test_submit_job_and_submit_jobs_share_dedup(setup: Client) -> None:
    single = setup.submit_job("echo", {"a": 1, "b": [1, 2]}, organization="acme")
    [batched] = setup.submit_jobs(
        [{"job_type": "echo", "organization": "acme", "params": {"b": [1, 2], "a": 1}}]
    )
    assert batched.duplicate and batched.id == single.id
    [first] = setup.submit_jobs([{"job_type": "echo", "organization": "acme"}])
    again = setup.submit_job("echo", None, organization="acme")  # type: ignore[arg-type]
    assert not first.duplicate and again.duplicate and again.id == first.id


def test_submit_job_returns_the_row_as_stored(setup: Client, dsn: str) -> None:
    run_at = datetime.now(UTC) + timedelta(minutes=5)
    job = setup.submit_job("echo", {"k": 1}, organization="acme", priority=7, run_at=run_at)
    stored = setup.get_job(job.id)
    assert not job.duplicate
    assert job == stored
    assert (job.status, job.priority, job.run_at, job.depends_on) == ("queued", 7, run_at, [])


def test_submit_job_dedup_window_and_rate_limit(client: Client, dsn: str) -> None:
    client.create_organization("acme")
    make_job_type(
        client, dedup_window=timedelta(hours=1), rate_limit=2, rate_period=timedelta(hours=1)
    )
    first = client.submit_job("echo", {"w": 1}, organization="acme")
    run_job(dsn, first.id)
    folded = client.submit_job("echo", {"w": 1}, organization="acme")
    assert folded.duplicate and folded.id == first.id and folded.status == "completed"
    client.submit_job("echo", {"w": 2}, organization="acme")
    again = client.submit_job("echo", {"w": 2}, organization="acme")  # a duplicate: not counted
    assert again.duplicate
    before = counts(dsn)
    with pytest.raises(errors.RateLimited) as info:
        client.submit_job("echo", {"w": 3}, organization="acme")
    assert info.value.message.startswith('rate limit of 2 per 01:00:00 reached for job type "echo"')
    assert counts(dsn) == before


def test_a_batch_with_duplicates_inside_and_against_active_jobs(setup: Client, dsn: str) -> None:
    active = setup.submit_job("echo", {"n": 1}, organization="acme")
    before = counts(dsn)
    batch = [good(params={"n": n}) for n in (2, 1, 3, 2, 4)] + [good(params={"n": 5}, dedup=False)]
    jobs = setup.submit_jobs(batch)
    assert [j.params["n"] for j in jobs] == [2, 1, 3, 2, 4, 5]
    assert [j.duplicate for j in jobs] == [False, True, False, True, False, False]
    assert jobs[1].id == active.id and jobs[3].id == jobs[0].id
    assert jobs == [dataclasses.replace(setup.get_job(j.id), duplicate=j.duplicate) for j in jobs]
    new_ids = [j.id for j in jobs if not j.duplicate]
    assert new_ids == sorted(new_ids) and len(set(new_ids)) == 4
    after = counts(dsn)
    # Four new jobs: four rows, four 'submitted' events, four vehicles.
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (4, 4, 4)
    with db.connect(dsn) as conn:
        vehicles = conn.execute(
            "SELECT (args ->> 'job_id')::bigint FROM procrastinate.procrastinate_jobs"
            " WHERE task_name = 'jobqueue.run' AND (args ->> 'job_id')::bigint = ANY (%s)",
            (new_ids,),
        ).fetchall()
        events = conn.execute(
            "SELECT job_id FROM jobqueue.event WHERE type = 'submitted' AND job_id = ANY (%s)",
            (new_ids,),
        ).fetchall()
    assert sorted(v[0] for v in vehicles) == new_ids
    assert sorted(e[0] for e in events) == new_ids
    # The same batch again: every element answers with an active job, nothing is written.
    again = setup.submit_jobs(batch[:5])
    assert all(j.duplicate for j in again)
    assert [j.id for j in again] == [j.id for j in jobs[:5]]
    assert counts(dsn) == after


def test_every_key_reads_as_the_element_by_element_reading(setup: Client, dsn: str) -> None:
    dep = setup.submit_job("echo", {"dep": 1}, organization="acme")
    run_at = datetime.now(UTC) + timedelta(hours=2)
    batch = [
        {"job_type": "echo", "organization": "acme"},
        {"job_type": "echo", "organization": "acme", "params": None, "priority": None},
        {
            "job_type": "echo",
            "organization": "acme",
            "params": {"z": [1, {"y": None}], "a": "é"},
            "priority": "-7",
            "run_at": run_at.isoformat(),
            "depends_on": [dep.id, str(dep.id), dep.id],
            "dedup": "false",
        },
        {"job_type": "echo", "organization": "acme", "params": {"q": 1}, "depends_on": None},
    ]
    with db.connect(dsn) as conn:
        reference = conn.execute(
            "SELECT ord, job_type, organization_id, queue, priority, params, run_at, depends_on,"
            " job_hash, max_retries, timeout FROM jobqueue._parse_submissions(%s, NULL)"
            " ORDER BY ord",
            (Jsonb(batch),),
        ).fetchall()
    jobs = setup.submit_jobs(batch)
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)
    with db.connect(dsn) as conn:
        stored = conn.execute(
            "SELECT i.ord, j.job_type, j.organization_id, j.queue, j.priority, j.params,"
            " j.run_at, coalesce((SELECT array_agg(d.depends_on_id ORDER BY d.depends_on_id)"
            " FROM jobqueue.job_dependency AS d WHERE d.job_id = j.id), '{}'), j.job_hash,"
            " j.max_retries, j.timeout"
            " FROM unnest(%s::bigint[]) WITH ORDINALITY AS i (id, ord)"
            " JOIN jobqueue.job AS j ON j.id = i.id ORDER BY i.ord",
            ([j.id for j in jobs],),
        ).fetchall()
    # run_at defaults to now(): the reference ran in its own transaction.
    assert [r[:6] + r[7:] for r in stored] == [r[:6] + r[7:] for r in reference]
    assert stored[2][6] == run_at
    # No params and null params are the same job: the second answers with the first.
    assert [j.duplicate for j in jobs] == [False, True, False, False]
    assert jobs[1].id == jobs[0].id
    # What submit_jobs answers is the rows as stored.
    assert jobs == [dataclasses.replace(setup.get_job(j.id), duplicate=j.duplicate) for j in jobs]
    assert [j.depends_on for j in jobs] == [[], [], [dep.id], []]
    assert [j.status for j in jobs] == ["queued", "queued", "waiting", "queued"]


def test_vehicles_notify_once_per_queue_and_statement(setup: Client, dsn: str) -> None:
    make_job_type(setup, "mail", queue="mail")
    with psycopg.connect(dsn, autocommit=True) as listener:
        for channel in (
            "procrastinate_any_queue_v1",
            "procrastinate_queue_v1#default",
            "procrastinate_queue_v1#mail",
        ):
            listener.execute(f'LISTEN "{channel}"')
        jobs = setup.submit_jobs(
            [good(params={"n": n}) for n in range(50)]
            + [good(job_type="mail", params={"n": n}) for n in range(30)]
            + [good(params={"later": 1}, run_at=(datetime.now(UTC) + timedelta(hours=1)))]
        )
        received = list(listener.notifies(timeout=1.0, stop_after=10))
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for n in received:
        by_channel.setdefault(n.channel, []).append(json.loads(n.payload))
    assert sorted(by_channel) == [
        "procrastinate_any_queue_v1",
        "procrastinate_queue_v1#default",
        "procrastinate_queue_v1#mail",
    ]
    assert len(by_channel["procrastinate_any_queue_v1"]) == 2
    assert len(by_channel["procrastinate_queue_v1#default"]) == 1
    assert len(by_channel["procrastinate_queue_v1#mail"]) == 1
    with db.connect(dsn) as conn:
        for queue in ("default", "mail"):
            [payload] = by_channel[f"procrastinate_queue_v1#{queue}"]
            assert set(payload) == {"type", "job_id"} and payload["type"] == "job_inserted"
            row = conn.execute(
                "SELECT queue_name, (args ->> 'job_id')::bigint"
                " FROM procrastinate.procrastinate_jobs WHERE id = %s",
                (payload["job_id"],),
            ).fetchone()
            assert row is not None and row[0] == queue
            assert row[1] in {j.id for j in jobs}
        assert conn.execute(
            "SELECT count(*) FROM procrastinate.procrastinate_jobs WHERE task_name = 'jobqueue.run'"
        ).fetchone() == (len(jobs),)


def test_other_procrastinate_tasks_still_notify_per_job(setup: Client, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute('LISTEN "procrastinate_queue_v1#builtin"')
        with psycopg.connect(dsn) as conn:
            conn.execute("SET search_path = procrastinate")  # as procrastinate's own calls run
            ids = conn.execute(
                "SELECT procrastinate.procrastinate_defer_jobs_v1(ARRAY["
                " ROW('builtin', 'some.task', 0, NULL, NULL, '{}', NULL),"
                " ROW('builtin', 'some.task', 0, NULL, NULL, '{}', NULL)"
                "]::procrastinate.procrastinate_job_to_defer_v1[])"
            ).fetchone()
        received = list(listener.notifies(timeout=1.0, stop_after=2))
    assert ids is not None
    assert sorted(json.loads(n.payload)["job_id"] for n in received) == sorted(ids[0])
