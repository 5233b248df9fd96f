"""A real worker claims and records jobs in batches, and loses no outcome when it stops."""

from __future__ import annotations

import random
import signal
import time
from datetime import timedelta
from typing import Any

import psycopg

from jobqueue.client import Client
from tests.acceptance.conftest import Workers, executions, job_type
from tests.waiting import wait_for


def unfinished(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) FROM jobqueue.job WHERE status <> 'completed'").fetchone()
    return int(row[0]) if row else -1


def test_a_busy_worker_claims_and_records_many_jobs_per_round_trip(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    client.register_job_type("quick", "jobqueue.tasks.demo:echo", max_retries=0)
    client.submit_jobs(
        [{"job_type": "quick", "params": {"n": i}, "organization": org} for i in range(300)]
    )
    workers.start(concurrency=20)

    wait_for(lambda: unfinished(db) == 0, timeout=120, interval=0.2, what="300 jobs to finish")

    row = db.execute(
        "SELECT count(*), count(DISTINCT job_id), count(DISTINCT started_at),"
        " count(DISTINCT finished_at) FROM jobqueue.attempt"
    ).fetchone()
    assert row is not None
    attempts, jobs, claims, finishes = row
    assert attempts == jobs == 300
    # A claim starts its attempts in one statement, and a finish ends its batch in one:
    # attempts of one batch share their transaction's timestamp.
    assert claims <= 300 // 2
    assert finishes < 300
    (vehicles,) = db.execute(
        "SELECT count(*) FROM procrastinate.procrastinate_jobs WHERE task_name = 'jobqueue.run'"
    ).fetchone()  # type: ignore[misc]
    assert vehicles == 0


def test_outcomes_waiting_behind_a_slow_finish_ride_with_the_next_claims(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    """At concurrency 1, the first job's finish is held up (its row is locked): the jobs
    after it neither wait for it nor pay a round trip each for their own outcomes, each of
    which is recorded by the claim of the next job, in its transaction (the job's `completed`
    event and the next job's `started` event carry the same transaction id)."""
    job_type(client, "nap", "noop", max_retries=0)
    first = client.submit_job("nap", {"ms": 1500}, organization=org).id
    others = [client.submit_job("nap", {"n": n}, organization=org).id for n in range(6)]
    workers.start(concurrency=1)
    wait_for(lambda: client.get_job(first).status == "running", what="the first job to run")
    with db.transaction():
        db.execute("SELECT FROM jobqueue.job WHERE id = %s FOR UPDATE", (first,))
        wait_for(
            lambda: all(client.get_job(i).status == "completed" for i in others[:-1]),
            timeout=30,
            what="the later jobs to complete behind the blocked finish",
        )
        assert client.get_job(first).status == "running"
    wait_for(lambda: unfinished(db) == 0, timeout=30, what="every job to finish")
    rows = db.execute(
        "SELECT job_id, started_at, finished_at FROM jobqueue.attempt WHERE job_id = ANY(%s)"
        " ORDER BY started_at",
        (others,),
    ).fetchall()
    assert [r[0] for r in rows] == others
    transactions = {
        (job_id, kind): xact
        for job_id, kind, xact in db.execute(
            "SELECT job_id, type, xact_id::text FROM jobqueue.event"
            " WHERE job_id = ANY(%s) AND type IN ('started', 'completed')",
            (others,),
        ).fetchall()
    }
    # A claim that takes one of the worker's maintenance tasks instead breaks a pair.
    pairs = [
        transactions[(done, "completed")] == transactions[(started, "started")]
        for done, started in zip(others, others[1:], strict=False)
    ]
    assert pairs.count(False) <= 1, pairs


def test_a_stopping_worker_records_every_outcome_it_holds(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    client.register_job_type("quick", "jobqueue.tasks.demo:echo", max_retries=0)
    client.submit_jobs(
        [{"job_type": "quick", "params": {"n": i}, "organization": org} for i in range(3000)]
    )
    worker = workers.start(concurrency=20, shutdown_grace=10)
    wait_for(
        lambda: unfinished(db) < 2500, timeout=60, interval=0.05, what="the worker to get going"
    )

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0

    # Nothing the worker ran is left open: every attempt it started has its outcome.
    (open_attempts,) = db.execute(
        "SELECT count(*) FROM jobqueue.attempt WHERE outcome IS NULL"
    ).fetchone()  # type: ignore[misc]
    assert open_attempts == 0
    (running,) = db.execute("SELECT count(*) FROM jobqueue.job WHERE status = 'running'").fetchone()  # type: ignore[misc]
    assert running == 0
    (completed,) = db.execute(
        "SELECT count(*) FROM jobqueue.job WHERE status = 'completed'"
    ).fetchone()  # type: ignore[misc]
    assert 0 < completed < 3000


def claim_sizes(db: psycopg.Connection[Any], job_type_name: str) -> list[int]:
    """Attempts per claim: a claim starts its attempts in one statement, so they share their
    transaction's timestamp."""
    rows = db.execute(
        "SELECT count(*) FROM jobqueue.attempt WHERE job_type = %s GROUP BY started_at",
        (job_type_name,),
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


def test_a_slot_held_by_a_long_job_does_not_split_the_other_slots_claims(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    """Claiming at the first freed slot would claim the long job's neighbours one by one, or
    one and the rest: short jobs claimed together end within moments of each other, and the
    worker waits that moment before it claims."""
    hold = job_type(client, "hold", "hold", max_retries=0)
    quick = job_type(client, "quick", "noop", max_retries=0)
    (holder,) = client.submit_jobs([{"job_type": hold, "params": {}, "organization": org}])
    workers.start(concurrency=10)
    wait_for(lambda: executions(db, holder.id, "holding"), timeout=60, what="the long job")

    client.submit_jobs(
        [
            {"job_type": quick, "params": {"ms": i % 3, "n": i}, "organization": org}
            for i in range(450)
        ]
    )
    wait_for(
        lambda: unfinished(db) == 1, timeout=120, interval=0.1, what="the short jobs to finish"
    )

    sizes = claim_sizes(db, quick)
    assert sum(sizes) == 450
    # Nine slots are free around the long job: claims take them together, not in ones.
    small = [size for size in sizes if size < 9 // 2]
    assert len(sizes) <= 450 // 4, sizes
    assert len(small) <= len(sizes) // 5, sizes


def test_a_job_submitted_while_a_claim_is_in_flight_is_not_left_for_the_poll(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    """The NOTIFY of a job inserted while the worker's claim is in flight (too late for that
    claim to see) must still lead to a claim, not wait for the one-second poll."""
    quick = job_type(client, "quick", "noop", max_retries=0)
    workers.start(concurrency=4)
    first = client.submit_job(quick, {"n": -1}, organization=org)
    wait_for(lambda: client.get_job(first.id).status == "completed", what="the worker to start")
    rng = random.Random(3)
    # Pairs: the second job lands while the claim woken by the first is likely in flight,
    # and nothing comes after it to wake the worker again before the poll: the next pair is
    # sent only once both have finished, so a second job whose wake-up was lost waits out the
    # poll (a second) and fails the bound below.
    for i in range(10):
        client.submit_job(quick, {"n": i, "of": "pair"}, organization=org)
        time.sleep(rng.uniform(0, 0.004))
        client.submit_job(quick, {"n": i}, organization=org)
        wait_for(lambda: unfinished(db) == 0, interval=0.01, what=f"pair {i} to finish")
    # The first job waited for the worker to start (over a second on a busy machine); the
    # pairs are what is measured.
    (slowest,) = db.execute(
        "SELECT max(started_at - created_at) FROM jobqueue.job WHERE job_type = %s AND id <> %s",
        (quick, first.id),
    ).fetchone()  # type: ignore[misc]
    assert slowest < timedelta(milliseconds=600)
