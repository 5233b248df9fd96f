"""fetch_vehicles and finish_attempts in batches, against a real PostgreSQL: procrastinate's
choice of vehicles, attempts started and ended set-based, many claimers at once, fencing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from jobqueue import calls, db, errors
from jobqueue.client import Client
from tests.factories import make_job_type


@pytest.fixture
def setup(client: Client) -> Client:
    client.create_organization("acme")
    make_job_type(client, max_retries=2)
    make_job_type(client, "other", queue="elsewhere")
    return client


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with db.connect(dsn, autocommit=True) as connection:
        connection.row_factory = dict_row  # type: ignore[assignment]
        yield connection


def register_worker(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT procrastinate.procrastinate_register_worker_v1() AS id").fetchone()
    assert row is not None
    return int(row["id"])


def claim(
    conn: psycopg.Connection[Any], worker_id: int, count: int, queues: list[str] | None = None
) -> list[dict[str, Any]]:
    call = calls.fetch_vehicles(queues, worker_id, count)
    return conn.execute(call.sql, call.params).fetchall()


def finish(conn: psycopg.Connection[Any], outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    call = calls.finish_attempts(outcomes)
    return conn.execute(call.sql, call.params).fetchall()


def submit(client: Client, count: int, **fields: Any) -> list[int]:
    """``count`` new jobs (their params differ from every other call's, so none is a duplicate)."""
    tag = repr(sorted(fields.items()))
    jobs = [
        {"job_type": "echo", "organization": "acme", "params": {"n": i, "tag": tag}, **fields}
        for i in range(count)
    ]
    return [job.id for job in client.submit_jobs(jobs)]


def test_a_claim_takes_the_highest_priorities_and_starts_their_attempts(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    low = submit(setup, 3, priority=1)
    high = submit(setup, 2, priority=5)
    worker = register_worker(conn)

    vehicles = claim(conn, worker, 3)

    claimed = [v["args"]["job_id"] for v in vehicles]
    assert set(claimed) == {*high, low[0]}
    for vehicle in vehicles:
        assert vehicle["status"] == "doing" and vehicle["worker_id"] == worker
        assert vehicle["args"]["attempt"] == 1
        assert vehicle["args"]["handler"] == "jobqueue.tasks.demo:echo"
        assert vehicle["args"]["organization"] == "acme"
    jobs = conn.execute(
        "SELECT id, status, attempt FROM jobqueue.job WHERE id = ANY (%s) ORDER BY id",
        (claimed,),
    ).fetchall()
    assert [(j["status"], j["attempt"]) for j in jobs] == [("running", 1)] * 3
    # The running attempts live on their jobs; their rows are written when they end.
    attempts = conn.execute(
        "SELECT id AS job_id, attempt_worker_id AS worker_id,"
        " attempt_vehicle_id AS procrastinate_job_id FROM jobqueue.job"
        " WHERE attempt_started_at IS NOT NULL ORDER BY id"
    ).fetchall()
    assert {(a["job_id"], a["worker_id"]) for a in attempts} == {(j, worker) for j in claimed}
    assert {a["procrastinate_job_id"] for a in attempts} == {v["id"] for v in vehicles}
    assert conn.execute("SELECT count(*) AS n FROM jobqueue.attempt").fetchone() == {"n": 0}
    started = conn.execute(
        "SELECT job_id FROM jobqueue.event WHERE type = 'started' ORDER BY job_id"
    ).fetchall()
    assert [e["job_id"] for e in started] == sorted(claimed)


def test_a_claim_leaves_other_queues_and_future_jobs(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    later = setup.submit_job(
        "echo", {"later": True}, organization="acme", run_at=datetime.now(UTC) + timedelta(hours=1)
    )
    elsewhere = setup.submit_job("other", {}, organization="acme")
    now = setup.submit_job("echo", {"now": True}, organization="acme")
    worker = register_worker(conn)

    vehicles = claim(conn, worker, 10, queues=["default"])

    assert [v["args"]["job_id"] for v in vehicles] == [now.id]
    assert setup.get_job(later.id).status == "queued"
    assert setup.get_job(elsewhere.id).status == "queued"
    assert [v["args"]["job_id"] for v in claim(conn, worker, 10, queues=["elsewhere"])] == [
        elsewhere.id
    ]


def test_many_claimers_at_once_never_share_a_vehicle(
    setup: Client, dsn: str, conn: psycopg.Connection[Any]
) -> None:
    ids = submit(setup, 300)
    claimed: list[int] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def claimer() -> None:
        try:
            with db.connect(dsn, autocommit=True) as own:
                own.row_factory = dict_row  # type: ignore[assignment]
                worker = register_worker(own)
                start.wait()
                while vehicles := claim(own, worker, 7):
                    with lock:
                        claimed.extend(v["args"]["job_id"] for v in vehicles)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert not failures
    assert sorted(claimed) == sorted(ids)
    one_attempt_each = conn.execute(
        "SELECT count(*) AS n, count(*) FILTER (WHERE status = 'running' AND attempt = 1"
        " AND attempt_started_at IS NOT NULL) AS jobs FROM jobqueue.job"
    ).fetchone()
    assert one_attempt_each == {"n": 300, "jobs": 300}


def test_a_job_canceled_under_its_claim_comes_back_without_an_attempt(
    setup: Client, dsn: str, conn: psycopg.Connection[Any]
) -> None:
    job = setup.submit_job("echo", {}, organization="acme")
    worker = register_worker(conn)
    with db.connect(dsn) as holder:
        # A worker's claim holds the vehicle while the cancel commits: the cancel skips it.
        holder.execute(
            "SELECT id FROM procrastinate.procrastinate_jobs WHERE args ->> 'job_id' = %s"
            " FOR UPDATE",
            (str(job.id),),
        )
        setup.cancel_job(job.id)
    vehicles = claim(conn, worker, 5)

    assert [(v["args"]["job_id"], v["args"]["attempt"]) for v in vehicles] == [(job.id, None)]
    assert setup.get_job(job.id).status == "canceled"
    assert conn.execute("SELECT count(*) AS n FROM jobqueue.attempt").fetchone() == {"n": 0}


def test_other_tasks_are_claimed_as_procrastinate_would(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "SELECT procrastinate.procrastinate_defer_jobs_v1(ARRAY[ROW('default', 'some.task', 0,"
        " NULL, NULL, %s, NULL)::procrastinate.procrastinate_job_to_defer_v1])",
        (Jsonb({"x": 1}),),
    )
    worker = register_worker(conn)

    vehicles = claim(conn, worker, 5)

    assert [(v["task_name"], v["args"], v["status"]) for v in vehicles] == [
        ("some.task", {"x": 1}, "doing")
    ]


def test_a_claim_takes_one_job_per_procrastinate_lock(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "SELECT procrastinate.procrastinate_defer_jobs_v1(ARRAY["
        " ROW('default', 'locked.task', 0, 'L', NULL, '{\"n\": 1}', NULL),"
        " ROW('default', 'locked.task', 0, 'L', NULL, '{\"n\": 2}', NULL),"
        " ROW('default', 'free.task', 0, NULL, NULL, '{}', NULL)"
        "]::procrastinate.procrastinate_job_to_defer_v1[])"
    )
    worker = register_worker(conn)

    first = claim(conn, worker, 10)
    while_first_runs = claim(conn, worker, 10)

    assert sorted((v["task_name"], v["args"].get("n")) for v in first) == [
        ("free.task", None),
        ("locked.task", 1),
    ]
    assert while_first_runs == []


@pytest.mark.parametrize("count", [0, -1, 1001, None])
def test_a_claim_of_a_bad_size_is_refused(
    setup: Client, conn: psycopg.Connection[Any], count: int | None
) -> None:
    submit(setup, 2)
    worker = register_worker(conn)
    with pytest.raises(errors.InvalidArgument), db.translated():
        conn.execute(
            "SELECT * FROM jobqueue.fetch_vehicles(NULL, %s, %s)", (worker, count)
        ).fetchall()
    queued = conn.execute(
        "SELECT count(*) AS n FROM jobqueue.job WHERE status = 'queued'"
    ).fetchone()
    assert queued == {"n": 2}


def test_a_batch_of_outcomes_ends_each_job_as_its_own_outcome_says(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    ids = submit(setup, 4)
    worker = register_worker(conn)
    claim(conn, worker, 4)
    done, failed, fatal, canceled = ids

    results = finish(
        conn,
        [
            {"job_id": done, "attempt": 1, "outcome": "completed", "result": {"ok": True}},
            {"job_id": failed, "attempt": 1, "outcome": "failed", "error": "boom"},
            {"job_id": fatal, "attempt": 1, "outcome": "failed", "retryable": False},
            {"job_id": canceled, "attempt": 1, "outcome": "canceled"},
            {"job_id": done, "attempt": 1, "outcome": "failed", "error": "late twin"},
        ],
    )

    assert [(r["job_id"], r["accepted"], r["status"]) for r in results] == [
        (done, True, "completed"),
        (failed, True, "retrying"),
        (fatal, True, "dead"),
        (canceled, True, "canceled"),
        (done, False, None),
    ]
    assert setup.get_job(done).result == {"ok": True}
    assert setup.get_job(failed).last_error == "boom"
    twin = conn.execute(
        "SELECT outcome, late_outcome FROM jobqueue.attempt WHERE job_id = %s", (done,)
    ).fetchone()
    assert twin is not None and twin["outcome"] == "completed"
    assert twin["late_outcome"]["error"] == "late twin"
    # The finished attempts' vehicles are gone; the retry has a new one, waiting.
    vehicles = conn.execute(
        "SELECT args ->> 'job_id' AS job, status FROM procrastinate.procrastinate_jobs"
    ).fetchall()
    assert vehicles == [{"job": str(failed), "status": "todo"}]


def test_an_outcome_without_a_kind_refuses_the_whole_batch(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    ids = submit(setup, 2)
    worker = register_worker(conn)
    claim(conn, worker, 2)
    with pytest.raises(errors.InvalidArgument), db.translated():
        finish(
            conn,
            [
                {"job_id": ids[0], "attempt": 1, "outcome": "completed"},
                {"job_id": ids[1], "attempt": 1},
            ],
        )
    running = conn.execute(
        "SELECT count(*) AS n FROM jobqueue.job WHERE status = 'running'"
    ).fetchone()
    assert running == {"n": 2}


def test_the_ride_says_where_the_handler_runs(setup: Client, conn: psycopg.Connection[Any]) -> None:
    """A claim, and procrastinate's own fetch through the trigger, give the bridge the job
    type's execution mode, NULL when the type leaves it to the worker."""
    make_job_type(setup, "killable", execution="process")
    chosen = setup.submit_job("killable", {}, organization="acme").id
    default = setup.submit_job("echo", {}, organization="acme").id
    worker = register_worker(conn)
    rides = {v["args"]["job_id"]: v["args"] for v in claim(conn, worker, 2)}
    assert rides[chosen]["execution"] == "process"
    assert rides[default]["execution"] is None
    fetched = setup.submit_job("killable", {"fetched": True}, organization="acme").id
    vehicle = conn.execute(
        "SELECT args FROM procrastinate.procrastinate_fetch_job_v2(NULL, %s)", (worker,)
    ).fetchone()
    assert vehicle is not None
    assert (vehicle["args"]["job_id"], vehicle["args"]["execution"]) == (fetched, "process")


def test_a_job_its_dependency_released_during_a_claim_starts_after_that_end(
    setup: Client, dsn: str, conn: psycopg.Connection[Any]
) -> None:
    """A claim whose transaction began before a dependency ended, and that chose the job the
    end released, records the job's start after that end (not at its transaction's start)."""
    first = setup.submit_job("echo", {"first": True}, organization="acme").id
    filler = setup.submit_job("echo", {"filler": True}, organization="acme").id
    then = setup.submit_job("echo", {"then": True}, organization="acme", depends_on=[first]).id
    # A cap makes the claim take its scope's lock after it has seen acme's runnable jobs; the
    # test holds that lock, so the claim waits there while the dependency ends.
    setup.set_queue_limits("default", organization_concurrency=10)
    worker = register_worker(conn)
    assert [v["args"]["job_id"] for v in claim(conn, worker, 1)] == [first]
    claimed: list[int] = []
    with db.connect(dsn) as blocker:
        blocker.execute(
            "SELECT pg_advisory_xact_lock(jobqueue._scope_key('queue_org', 'default', o.id))"
            " FROM jobqueue.organization AS o WHERE o.name = 'acme'"
        )

        def claim_behind_the_lock() -> None:
            with db.connect(dsn, autocommit=True) as other:
                other.row_factory = dict_row  # type: ignore[assignment]
                claimed.extend(v["args"]["job_id"] for v in claim(other, worker, 5))

        claimer = threading.Thread(target=claim_behind_the_lock)
        claimer.start()
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        while not conn.execute(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND NOT granted)"
            " AS waiting"
        ).fetchone()["waiting"]:  # type: ignore[index]
            assert datetime.now(UTC) < deadline, "the claim never waited for the scope's lock"
        ended = finish(conn, [{"job_id": first, "attempt": 1, "outcome": "completed"}])
        assert [r["accepted"] for r in ended] == [True]
        blocker.commit()
    claimer.join(30)

    assert sorted(claimed) == sorted([filler, then])
    ended, started = setup.get_job(first).finished_at, setup.get_job(then).started_at
    assert ended is not None and started is not None
    assert ended <= started


def test_finish_and_fetch_records_outcomes_then_claims_in_one_transaction(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    """The claim sees what the finish did (a dependent it released is claimed in the same
    call), and a fenced-off outcome is kept on its attempt and named in a warning."""
    first = setup.submit_job("echo", {"first": True}, organization="acme").id
    then = setup.submit_job("echo", {"then": True}, organization="acme", depends_on=[first]).id
    stale = setup.submit_job("echo", {"stale": True}, organization="acme").id
    worker = register_worker(conn)
    assert {v["args"]["job_id"] for v in claim(conn, worker, 2)} == {first, stale}
    warnings: list[str] = []
    conn.add_notice_handler(lambda notice: warnings.append(notice.message_primary or ""))
    call = calls.finish_and_fetch(
        [
            {"job_id": first, "attempt": 1, "outcome": "completed"},
            {"job_id": stale, "attempt": 7, "outcome": "completed"},
        ],
        None,
        worker,
        5,
    )
    vehicles = conn.execute(call.sql, call.params).fetchall()
    assert [(v["args"]["job_id"], v["args"]["attempt"]) for v in vehicles] == [(then, 1)]
    assert setup.get_job(first).status == "completed"
    assert setup.get_job(stale).status == "running"
    assert warnings == [
        f"attempt 7 of job {stale} no longer current; the outcome was kept on the attempt row only"
    ]
