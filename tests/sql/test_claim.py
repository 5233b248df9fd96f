"""The claim's choice when organizations share a queue (claim.sql), against a real PostgreSQL:
round robin within a priority, weights, caps that hold under concurrent claimers, start
limits, and the wake-up when a capped slot frees."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from jobqueue import calls, db
from jobqueue.client import Client
from tests.factories import make_job_type


@pytest.fixture
def setup(client: Client) -> Client:
    for name in ("alpha", "bravo", "charlie"):
        client.create_organization(name)
    make_job_type(client, max_retries=0)
    make_job_type(client, "slow", queue="default", max_retries=0)
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
    conn: psycopg.Connection[Any], worker: int, count: int, queues: list[str] | None = None
) -> list[dict[str, Any]]:
    call = calls.fetch_vehicles(queues, worker, count)
    return [v for v in conn.execute(call.sql, call.params).fetchall() if v["args"]["attempt"]]


def finish(conn: psycopg.Connection[Any], vehicles: list[dict[str, Any]]) -> None:
    outcomes = [
        {"job_id": v["args"]["job_id"], "attempt": v["args"]["attempt"], "outcome": "completed"}
        for v in vehicles
    ]
    call = calls.finish_attempts(outcomes)
    conn.execute(call.sql, call.params)


def submit(
    client: Client, organization: str, count: int, job_type: str = "echo", **fields: Any
) -> list[int]:
    """``count`` new jobs of one organization (params unlike any other call's)."""
    tag = repr((job_type, sorted(fields.items())))
    jobs = [
        {
            "job_type": job_type,
            "organization": organization,
            "params": {"n": i, "tag": tag},
            **fields,
        }
        for i in range(count)
    ]
    return [job.id for job in client.submit_jobs(jobs)]


def orgs(vehicles: list[dict[str, Any]]) -> list[str]:
    return [v["args"]["organization"] for v in vehicles]


def running(conn: psycopg.Connection[Any]) -> Counter[str]:
    rows = conn.execute(
        "SELECT o.name, count(*) AS n FROM jobqueue.job AS j"
        " JOIN jobqueue.organization AS o ON o.id = j.organization_id"
        " WHERE j.status = 'running' GROUP BY o.name"
    ).fetchall()
    return Counter({r["name"]: int(r["n"]) for r in rows})


def test_organizations_take_turns_within_a_priority(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    backlog = submit(setup, "alpha", 50)
    late = submit(setup, "bravo", 3)
    worker = register_worker(conn)

    first = claim(conn, worker, 6)

    # FIFO would give six of alpha's backlog; the fair claim alternates.
    assert Counter(orgs(first)) == {"alpha": 3, "bravo": 3}
    assert {v["args"]["job_id"] for v in first} == {*backlog[:3], *late}
    # Each organization's own jobs still start oldest first.
    alpha = [v["args"]["job_id"] for v in first if v["args"]["organization"] == "alpha"]
    assert alpha == sorted(alpha)


def test_an_organization_alone_gets_the_whole_claim_in_fifo_order(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    jobs = submit(setup, "alpha", 20)
    worker = register_worker(conn)

    vehicles = claim(conn, worker, 10)

    assert [v["args"]["job_id"] for v in vehicles] == jobs[:10]


def test_the_round_robin_remembers_who_was_served(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    """Claims of one job each still alternate: the service each had is kept between claims."""
    submit(setup, "alpha", 20)
    submit(setup, "bravo", 20)
    worker = register_worker(conn)

    taken = [orgs(claim(conn, worker, 1))[0] for _ in range(10)]

    assert Counter(taken) == {"alpha": 5, "bravo": 5}
    assert all(a != b for a, b in zip(taken, taken[1:], strict=False))


def test_priority_wins_across_levels(setup: Client, conn: psycopg.Connection[Any]) -> None:
    submit(setup, "alpha", 10)
    urgent = submit(setup, "bravo", 2, priority=5)
    worker = register_worker(conn)

    vehicles = claim(conn, worker, 3)

    assert [v["args"]["job_id"] for v in vehicles][:2] == urgent
    assert orgs(vehicles)[2] == "alpha"


def test_weights_share_the_queue_in_proportion(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    setup.set_organization_limits("default", "alpha", weight=3)
    submit(setup, "alpha", 60)
    submit(setup, "bravo", 60)
    worker = register_worker(conn)

    taken: Counter[str] = Counter()
    for _ in range(10):
        batch = claim(conn, worker, 4)
        taken.update(orgs(batch))
        finish(conn, batch)

    assert taken == {"alpha": 30, "bravo": 10}


def test_a_cap_per_organization_holds_and_a_freed_slot_is_taken(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    setup.set_queue_limits("default", organization_concurrency=3)
    submit(setup, "alpha", 20)
    submit(setup, "bravo", 2)
    worker = register_worker(conn)

    first = claim(conn, worker, 10)
    assert Counter(orgs(first)) == {"alpha": 3, "bravo": 2}
    assert claim(conn, worker, 10) == []

    finish(conn, [v for v in first if v["args"]["organization"] == "alpha"][:1])
    again = claim(conn, worker, 10)
    assert orgs(again) == ["alpha"]
    assert running(conn) == {"alpha": 3, "bravo": 2}


def test_an_organization_override_beats_the_queue_default(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    setup.set_queue_limits("default", organization_concurrency=1)
    setup.set_organization_limits("default", "bravo", concurrency=4)
    submit(setup, "alpha", 10)
    submit(setup, "bravo", 10)
    worker = register_worker(conn)

    assert Counter(orgs(claim(conn, worker, 10))) == {"alpha": 1, "bravo": 4}


def test_queue_and_type_caps_count_every_organization(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    setup.set_queue_limits("default", concurrency=5)
    setup.set_job_type_limits("slow", concurrency=1)
    submit(setup, "alpha", 10)
    submit(setup, "bravo", 10, job_type="slow")
    worker = register_worker(conn)

    vehicles = claim(conn, worker, 10)

    assert len(vehicles) == 5
    assert Counter(v["args"]["job_type"] for v in vehicles) == {"echo": 4, "slow": 1}


def test_a_start_limit_counts_starts_per_organization_and_window(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    setup.set_job_type_limits("echo", start_limit=4, start_period=timedelta(hours=1))
    submit(setup, "alpha", 10)
    submit(setup, "bravo", 10)
    worker = register_worker(conn)

    first = claim(conn, worker, 20)
    finish(conn, first)
    # Ended jobs do not give their starts back: the window still holds them.
    assert Counter(orgs(first)) == {"alpha": 4, "bravo": 4}
    assert claim(conn, worker, 20) == []


def test_a_cap_set_while_jobs_run_counts_them(setup: Client, conn: psycopg.Connection[Any]) -> None:
    submit(setup, "alpha", 10)
    worker = register_worker(conn)
    started = claim(conn, worker, 4)

    setup.set_queue_limits("default", organization_concurrency=5)

    assert orgs(claim(conn, worker, 10)) == ["alpha"]
    finish(conn, started)
    assert len(claim(conn, worker, 10)) == 4
    usage = conn.execute("SELECT running FROM jobqueue.queue_usage").fetchall()
    assert usage == [{"running": 5}]


def test_paused_jobs_wait_and_running_ones_finish(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    submit(setup, "alpha", 4)
    submit(setup, "bravo", 4)
    worker = register_worker(conn)
    started = claim(conn, worker, 2)

    setup.pause_queue("default", organization="alpha")
    assert set(orgs(claim(conn, worker, 10))) == {"bravo"}
    finish(conn, started)  # running ones finish
    assert claim(conn, worker, 10) == []

    setup.pause_queue("default")
    setup.resume_queue("default", organization="alpha")
    assert claim(conn, worker, 10) == []
    setup.resume_queue("default")
    assert set(orgs(claim(conn, worker, 10))) == {"alpha"}


def test_procrastinate_s_own_fetch_honours_pauses_and_caps(
    setup: Client, conn: psycopg.Connection[Any]
) -> None:
    submit(setup, "alpha", 3)
    setup.set_queue_limits("default", organization_concurrency=1)
    worker = register_worker(conn)

    def fetch() -> dict[str, Any] | None:
        row = conn.execute(
            "SELECT * FROM procrastinate.procrastinate_fetch_job_v2(%s::varchar[], %s)",
            (["default"], worker),
        ).fetchone()
        return row if row and row["id"] is not None else None

    first = fetch()
    assert first is not None and first["args"]["attempt"] == 1
    assert fetch() is None  # the cap of one is taken
    assert running(conn) == {"alpha": 1}


def test_a_freed_slot_under_a_full_cap_wakes_the_queue(
    setup: Client, conn: psycopg.Connection[Any], dsn: str
) -> None:
    setup.set_queue_limits("default", organization_concurrency=1)
    submit(setup, "alpha", 3)
    worker = register_worker(conn)
    started = claim(conn, worker, 5)
    with db.connect(dsn, autocommit=True) as listener:
        listener.execute('LISTEN "procrastinate_queue_v1#default"')
        finish(conn, started)
        notes = list(listener.notifies(timeout=2, stop_after=1))
    assert notes and '"job_inserted"' in notes[0].payload


def test_concurrent_claimers_never_pass_a_cap(
    setup: Client, dsn: str, conn: psycopg.Connection[Any]
) -> None:
    """Eight sessions claim and finish at once; sampled running counts stay within the caps."""
    setup.set_queue_limits("default", organization_concurrency=2)
    for org in ("alpha", "bravo", "charlie"):
        submit(setup, org, 40)
    over: list[Counter[str]] = []
    stop = threading.Event()

    def work() -> None:
        with db.connect(dsn, autocommit=True) as own:
            own.row_factory = dict_row  # type: ignore[assignment]
            worker = register_worker(own)
            while not stop.is_set():
                batch = claim(own, worker, 3)
                if not batch:
                    if not own.execute(
                        "SELECT 1 FROM jobqueue.job WHERE status IN ('queued', 'running') LIMIT 1"
                    ).fetchone():
                        return
                    continue
                finish(own, batch)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        counts = running(conn)
        if any(n > 2 for n in counts.values()):
            over.append(counts)
        if len(over) > 3:
            stop.set()
    for t in threads:
        t.join()

    assert over == []
    done = conn.execute("SELECT count(*) AS n FROM jobqueue.job WHERE status = 'completed'")
    assert done.fetchone() == {"n": 120}


@pytest.mark.parametrize("queues", [None, ["default", "other"]])
def test_organizations_in_different_queues_also_take_turns(
    setup: Client, conn: psycopg.Connection[Any], queues: list[str] | None
) -> None:
    make_job_type(setup, "elsewhere", queue="other", max_retries=0)
    submit(setup, "alpha", 20)
    submit(setup, "bravo", 2, job_type="elsewhere")
    worker = register_worker(conn)

    assert Counter(orgs(claim(conn, worker, 4, queues))) == {"alpha": 2, "bravo": 2}
