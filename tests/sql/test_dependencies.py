"""dependencies.sql against a real PostgreSQL: dependents released in the transaction that
completes their last dependency, cascaded cancellation, and concurrent completions."""

from __future__ import annotations

import threading

import pytest
from psycopg.types.json import Jsonb

from jobqueue import db, errors
from jobqueue.client import Client
from jobqueue.states import JobStatus
from tests.factories import finish_job, make_job_type, run_job, start_job


@pytest.fixture
def setup(client: Client) -> Client:
    client.create_organization("acme")
    # Dependencies run on their own queue, so fetching one never takes a released dependent.
    make_job_type(client, "dep", queue="deps")
    make_job_type(client, "child", queue="children")
    make_job_type(client, "fragile", queue="deps", max_retries=0)
    return client


def vehicles(dsn: str, job_id: int) -> int:
    with db.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM procrastinate.procrastinate_jobs"
            " WHERE queueing_lock = %s AND status = 'todo'",
            (f"jobqueue:{job_id}",),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_released_in_the_transaction_that_completes_the_last_dependency(
    setup: Client, dsn: str
) -> None:
    first = setup.submit_job("dep", {"n": 1}, organization="acme")
    second = setup.submit_job("dep", {"n": 2}, organization="acme")
    child = setup.submit_job("child", {}, organization="acme", depends_on=[first.id, second.id])
    assert child.status is JobStatus.WAITING and vehicles(dsn, child.id) == 0

    run_job(dsn, first.id)
    assert setup.get_job(child.id).status is JobStatus.WAITING
    assert vehicles(dsn, child.id) == 0

    attempt = start_job(dsn, second.id)
    with db.connect(dsn) as conn:
        with conn.transaction():
            conn.execute(
                "SELECT * FROM jobqueue.finish_attempts(%s)",
                (Jsonb([{"job_id": second.id, "attempt": attempt, "outcome": "completed"}]),),
            )
            inside = Client(connection=conn).get_job(child.id)
            assert inside.status is JobStatus.QUEUED
            # Not yet visible to anyone else: release and completion commit together.
            assert setup.get_job(child.id).status is JobStatus.WAITING
            assert setup.get_job(second.id).status is JobStatus.RUNNING
    assert setup.get_job(child.id).status is JobStatus.QUEUED
    assert vehicles(dsn, child.id) == 1
    with db.connect(dsn) as conn:
        events = conn.execute(
            "SELECT type FROM jobqueue.event WHERE job_id = %s ORDER BY id", (child.id,)
        ).fetchall()
    assert [e[0] for e in events] == ["submitted", "released"]


def test_dependency_already_completed_at_submit_queues_at_once(setup: Client, dsn: str) -> None:
    done = setup.submit_job("dep", {}, organization="acme")
    run_job(dsn, done.id)
    child = setup.submit_job("child", {}, organization="acme", depends_on=[done.id])
    assert child.status is JobStatus.QUEUED and vehicles(dsn, child.id) == 1


@pytest.mark.parametrize("ending", ["dead", "canceled"])
def test_a_failed_dependency_cancels_dependents_transitively(
    setup: Client, dsn: str, ending: str
) -> None:
    root = setup.submit_job("fragile", {}, organization="acme")
    other = setup.submit_job("dep", {"other": 1}, organization="acme")
    child = setup.submit_job("child", {"c": 1}, organization="acme", depends_on=[root.id])
    grandchild = setup.submit_job(
        "child", {"g": 1}, organization="acme", depends_on=[child.id, other.id]
    )
    unrelated = setup.submit_job("child", {"u": 1}, organization="acme", depends_on=[other.id])
    if ending == "dead":
        assert run_job(dsn, root.id, "failed")["status"] == "dead"
    else:
        setup.cancel_job(root.id)

    got_child = setup.get_job(child.id)
    got_grandchild = setup.get_job(grandchild.id)
    assert got_child.status is JobStatus.CANCELED
    assert got_child.last_error == f"dependency {root.id} ended {ending}"
    assert got_grandchild.status is JobStatus.CANCELED
    assert got_grandchild.last_error == f"dependency {child.id} ended canceled"
    assert setup.get_job(unrelated.id).status is JobStatus.WAITING
    assert setup.get_job(other.id).status is JobStatus.QUEUED
    assert vehicles(dsn, child.id) == vehicles(dsn, grandchild.id) == 0


def test_retrying_dependency_keeps_dependents_waiting(setup: Client, dsn: str) -> None:
    dep = setup.submit_job("dep", {}, organization="acme")
    child = setup.submit_job("child", {}, organization="acme", depends_on=[dep.id])
    assert run_job(dsn, dep.id, "failed")["status"] == "retrying"
    assert setup.get_job(child.id).status is JobStatus.WAITING


ROUNDS = 20


def test_concurrent_completion_of_the_last_two_dependencies_releases(
    setup: Client, dsn: str
) -> None:
    """Two transactions each complete one of a job's two dependencies at the same moment;
    whichever commits second must see the other's completion and release the job."""
    for round_number in range(ROUNDS):
        deps = [
            setup.submit_job("dep", {"r": round_number, "i": i}, organization="acme")
            for i in range(2)
        ]
        child = setup.submit_job(
            "child", {"r": round_number}, organization="acme", depends_on=[d.id for d in deps]
        )
        attempts = [start_job(dsn, d.id) for d in deps]
        barrier = threading.Barrier(2)
        failures: list[BaseException] = []

        def complete(
            job_id: int,
            attempt: int,
            barrier: threading.Barrier = barrier,
            failures: list[BaseException] = failures,
        ) -> None:
            try:
                barrier.wait(timeout=30)
                finish_job(dsn, job_id, attempt)
            except BaseException as exc:
                failures.append(exc)

        threads = [
            threading.Thread(target=complete, args=(d.id, a))
            for d, a in zip(deps, attempts, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not failures, failures
        assert [setup.get_job(d.id).status for d in deps] == [JobStatus.COMPLETED] * 2
        assert setup.get_job(child.id).status is JobStatus.QUEUED, f"round {round_number}"
        assert vehicles(dsn, child.id) == 1


@pytest.mark.parametrize("outcome", ["completed", "dead"])
def test_submit_racing_the_end_of_its_dependency(setup: Client, dsn: str, outcome: str) -> None:
    """A dependent submitted while its dependency ends must never be left waiting on a job
    that has already ended: it is queued (completed), or canceled or refused (dead)."""
    for round_number in range(ROUNDS):
        dep = setup.submit_job("fragile", {"r": round_number}, organization="acme")
        attempt = start_job(dsn, dep.id)
        barrier = threading.Barrier(2)
        results: list[object] = []

        def end(
            barrier: threading.Barrier = barrier,
            dep_id: int = dep.id,
            attempt: int = attempt,
            results: list[object] = results,
        ) -> None:
            try:
                barrier.wait(timeout=30)
                finish_job(
                    dsn, dep_id, attempt, "completed" if outcome == "completed" else "failed"
                )
            except BaseException as exc:
                results.append(exc)

        def submit(
            barrier: threading.Barrier = barrier,
            dep_id: int = dep.id,
            results: list[object] = results,
            round_number: int = round_number,
        ) -> None:
            try:
                with db.connect(dsn, autocommit=True) as conn:
                    barrier.wait(timeout=30)
                    results.append(
                        Client(connection=conn).submit_job(
                            "child", {"r": round_number}, organization="acme", depends_on=[dep_id]
                        )
                    )
            except BaseException as exc:
                results.append(exc)

        threads = [threading.Thread(target=end), threading.Thread(target=submit)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(results) == 1, results
        assert setup.get_job(dep.id).status == outcome
        (result,) = results
        if isinstance(result, errors.InvalidDependency):
            assert outcome == "dead"
            continue
        assert not isinstance(result, BaseException), result
        child = setup.get_job(result.id)  # type: ignore[attr-defined]
        expected = JobStatus.QUEUED if outcome == "completed" else JobStatus.CANCELED
        assert child.status is expected, f"round {round_number}: {child.status}"


def test_cancel_racing_the_release_of_a_dependent(setup: Client, dsn: str) -> None:
    for round_number in range(ROUNDS):
        dep = setup.submit_job("dep", {"cr": round_number}, organization="acme")
        child = setup.submit_job(
            "child", {"cr": round_number}, organization="acme", depends_on=[dep.id]
        )
        attempt = start_job(dsn, dep.id)
        barrier = threading.Barrier(2)
        failures: list[BaseException] = []

        def body(
            call: object,
            barrier: threading.Barrier = barrier,
            failures: list[BaseException] = failures,
        ) -> None:
            try:
                barrier.wait(timeout=30)
                call()  # type: ignore[operator]
            except BaseException as exc:
                failures.append(exc)

        def cancel(child_id: int = child.id) -> None:
            with db.connect(dsn, autocommit=True) as conn:
                Client(connection=conn).cancel_job(child_id)

        def complete(dep_id: int = dep.id, attempt: int = attempt) -> None:
            finish_job(dsn, dep_id, attempt)

        threads = [threading.Thread(target=body, args=(c,)) for c in (cancel, complete)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not failures, failures
        assert setup.get_job(child.id).status is JobStatus.CANCELED, f"round {round_number}"
        assert vehicles(dsn, child.id) == 0


def test_workers_finishing_batches_with_crossing_dependents_do_not_deadlock(
    setup: Client, dsn: str
) -> None:
    """Worker 1 finishes a1, a2 and worker 2 b1, b2 at once, where one dependent waits on a1
    and b2 and another on a2 and b1: both workers lock both dependents, which must happen in
    one order."""
    for round_number in range(10):
        a1, a2, b1, b2 = (
            setup.submit_job("dep", {"x": round_number, "i": i}, organization="acme")
            for i in range(4)
        )
        crossing = [
            setup.submit_job(
                "child", {"x": round_number, "c": c}, organization="acme", depends_on=deps
            )
            for c, deps in enumerate([[a1.id, b2.id], [a2.id, b1.id]])
        ]
        attempts = {j.id: start_job(dsn, j.id) for j in (a1, a2, b1, b2)}
        barrier = threading.Barrier(2)
        failures: list[BaseException] = []

        def finish_batch(
            ids: list[int],
            barrier: threading.Barrier = barrier,
            failures: list[BaseException] = failures,
            attempts: dict[int, int] = attempts,
        ) -> None:
            outcomes = [{"job_id": i, "attempt": attempts[i], "outcome": "completed"} for i in ids]
            try:
                with db.connect(dsn, autocommit=True) as conn:
                    barrier.wait(timeout=30)
                    conn.execute("SELECT * FROM jobqueue.finish_attempts(%s)", (Jsonb(outcomes),))
            except BaseException as exc:
                failures.append(exc)

        threads = [
            threading.Thread(target=finish_batch, args=([a1.id, a2.id],)),
            threading.Thread(target=finish_batch, args=([b1.id, b2.id],)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not failures, failures
        assert [setup.get_job(c.id).status for c in crossing] == [JobStatus.QUEUED] * 2
