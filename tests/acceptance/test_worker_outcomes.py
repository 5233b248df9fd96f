"""What real workers record for each way a handler can end."""

from __future__ import annotations

import signal
import sys
import uuid
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jobqueue.client import Client
from tests.acceptance.conftest import Workers, executions, job_type, wait_for

TERMINAL = {"completed", "dead", "canceled"}


def finished(client: Client, job_id: int, timeout: float = 30.0) -> Any:
    return wait_for(
        lambda: (j := client.get_job(job_id)).status in TERMINAL and j,
        timeout=timeout,
        what=f"job {job_id} to finish",
    )


def test_retry_then_success(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "flaky", "flaky", max_retries=3)
    job = client.submit_job("flaky", {"failures": 2}, organization=org)
    workers.start()
    done = finished(client, job.id)
    assert done.status == "completed"
    assert done.result == {"attempt": 3}
    attempts = client.job_attempts(job.id)
    assert [a.outcome for a in attempts] == ["failed", "failed", "completed"]
    assert "planned failure on attempt 1" in (attempts[0].error or "")
    assert "Traceback" in (attempts[0].traceback or "")
    assert [e.attempt for e in executions(db, job.id)] == [1, 2, 3]


def test_retries_exhausted_go_dead_with_every_attempt_logged(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "doomed", "always_fail", max_retries=2)
    job = client.submit_job("doomed", {}, organization=org)
    workers.start()
    done = finished(client, job.id)
    assert done.status == "dead"
    attempts = client.job_attempts(job.id)
    assert [(a.attempt, a.outcome) for a in attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
    ]
    assert all("always fails" in (a.error or "") for a in attempts)
    assert len(executions(db, job.id)) == 3


def test_non_retryable_error_goes_dead_after_one_attempt(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "give_up", "give_up", max_retries=5)
    job = client.submit_job("give_up", {}, organization=org)
    workers.start()
    done = finished(client, job.id)
    assert done.status == "dead"
    assert [a.outcome for a in client.job_attempts(job.id)] == ["failed"]
    assert "NonRetryableError: bad input" in (done.last_error or "")
    assert len(executions(db, job.id)) == 1


def test_a_sync_handler_in_process_mode_is_killed_at_its_deadline_and_frees_its_slot(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(
        client,
        "sleeper",
        "sleep_sync",
        timeout=timedelta(seconds=1),
        max_retries=0,
        execution="process",
    )
    job_type(client, "echo", "record")
    slow = client.submit_job("sleeper", {"seconds": 30}, organization=org)
    workers.start(concurrency=1, extra=["--kill-grace", "1"])
    done = finished(client, slow.id, timeout=20)
    assert done.status == "dead"
    (attempt,) = client.job_attempts(slow.id)
    assert attempt.outcome == "timed_out"
    # Recorded once the process is gone, at the deadline plus the kill, not when the 30 s
    # sleep would have ended (generous bound on a busy box).
    assert attempt.finished_at - attempt.started_at < timedelta(seconds=10)
    # The only slot is free again, and the handler never woke: it was killed.
    quick = client.submit_job("echo", {"tag": "after"}, organization=org)
    assert finished(client, quick.id, timeout=20).status == "completed"
    assert executions(db, slow.id, "woke") == []


def test_a_sync_handler_inline_past_its_deadline_keeps_its_slot_until_it_ends(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    """A thread cannot be killed: the attempt is recorded timed_out once the handler has
    returned, and its slot (the only one) serves the next job only then."""
    job_type(client, "sleeper", "sleep_sync", timeout=timedelta(seconds=1), max_retries=0)
    job_type(client, "echo", "record")
    slow = client.submit_job("sleeper", {"seconds": 3}, organization=org)
    workers.start(concurrency=1)
    wait_for(lambda: client.get_job(slow.id).status == "running", what="the sleeper to start")
    quick = client.submit_job("echo", {"tag": "after"}, organization=org)
    assert finished(client, slow.id, timeout=30).status == "dead"
    assert finished(client, quick.id, timeout=30).status == "completed"
    (attempt,) = client.job_attempts(slow.id)
    assert attempt.outcome == "timed_out"
    woke_at, echo_ran_at = (
        db.execute(
            "SELECT at FROM public.test_exec WHERE job_id = %s ORDER BY id", (job_id,)
        ).fetchone()[0]  # type: ignore[index]
        for job_id in (slow.id, quick.id)
    )
    assert attempt.finished_at >= woke_at
    assert echo_ran_at > woke_at


def test_async_handler_is_cancelled_at_its_deadline(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "async_sleeper", "sleep_async", timeout=timedelta(seconds=1), max_retries=1)
    job = client.submit_job("async_sleeper", {"seconds": 30}, organization=org)
    workers.start()
    done = finished(client, job.id, timeout=30)
    assert done.status == "dead"
    attempts = client.job_attempts(job.id)
    assert [a.outcome for a in attempts] == ["timed_out", "timed_out"]  # timeouts retry
    assert all(a.finished_at - a.started_at < timedelta(seconds=10) for a in attempts)
    wait_for(lambda: len(executions(db, job.id, "cancelled")) == 2, what="handler cancellation")


def test_attempts_claimed_together_keep_their_deadline_when_their_neighbours_end_early(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    """Attempts with one timeout, claimed in one batch, share a loop timer: the ones that end
    first must not take it away from the ones still running."""
    job_type(client, "async_sleeper", "sleep_async", timeout=timedelta(seconds=1), max_retries=0)
    jobs = client.submit_jobs(
        [
            {"job_type": "async_sleeper", "params": {"seconds": s}, "organization": org}
            for s in (0.1, 0.2, 0.3, 0.4, 30, 31, 32, 33)
        ]
    )
    # A slot for each of the worker's three maintenance tasks besides the jobs': a tick
    # claimed with them must not push a job into a later claim.
    workers.start(concurrency=11)
    done = [finished(client, job.id, timeout=30) for job in jobs]
    assert [j.status for j in done] == ["completed"] * 4 + ["dead"] * 4
    started = {a.started_at for job in jobs for a in client.job_attempts(job.id)}
    assert len(started) == 1  # one claim
    for job in jobs[4:]:
        (attempt,) = client.job_attempts(job.id)
        assert attempt.outcome == "timed_out"
        assert attempt.finished_at - attempt.started_at < timedelta(seconds=10)
        wait_for(
            lambda job_id=job.id: executions(db, job_id, "cancelled"),
            what="handler cancellation",
        )


def test_sync_handlers_reuse_threads_but_not_their_context(
    client: Client, org: str, workers: Workers
) -> None:
    job_type(client, "report", "thread_report", max_retries=0)
    jobs = client.submit_jobs(
        [{"job_type": "report", "params": {"n": i}, "organization": org} for i in range(60)]
    )
    workers.start(concurrency=3)
    results = [finished(client, job.id).result for job in jobs]
    assert all(r["leaked"] is None for r in results)
    assert [r["name"] for r in results] == [f"job-{job.id}" for job in jobs]
    # A thread per job would give 60 thread ids; idle threads take the next handler.
    assert len({r["tid"] for r in results}) <= 20


MIDDLEWARE_WORKER = """
import asyncio, os, sys
from jobqueue.worker import app
from jobqueue.worker.runner import run_worker_async

async def note(call_next, context, worker):
    with open(sys.argv[1], "a") as seen:
        seen.write(f"{context.job.task_kwargs['job_id']}\\n")
    return await call_next()

app.worker_defaults["worker_middleware"] = [note]
asyncio.run(run_worker_async(os.environ["JOBQUEUE_DSN"], None, 4, stale_after=2.0))
"""


def test_procrastinate_middleware_still_wraps_every_attempt(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers, tmp_path: Any
) -> None:
    """With middleware configured, attempts go through procrastinate's own job processing
    instead of the worker's direct path, and still end as they would."""
    job_type(client, "quick", "noop", max_retries=0)
    job_type(client, "report", "thread_report", max_retries=0)
    job_type(client, "async_sleeper", "sleep_async", timeout=timedelta(seconds=1), max_retries=0)
    jobs = client.submit_jobs(
        [{"job_type": "quick", "params": {"n": i}, "organization": org} for i in range(20)]
        + [{"job_type": "report", "params": {"n": i}, "organization": org} for i in range(5)]
        + [{"job_type": "async_sleeper", "params": {"seconds": 30}, "organization": org}]
    )
    seen = tmp_path / "seen.txt"
    workers.spawn([sys.executable, "-c", MIDDLEWARE_WORKER, str(seen)])
    done = [finished(client, job.id) for job in jobs]
    assert [j.status for j in done] == ["completed"] * 25 + ["dead"]
    assert [a.outcome for a in client.job_attempts(jobs[-1].id)] == ["timed_out"]
    assert sorted(int(line) for line in seen.read_text().split()) == sorted(j.id for j in jobs)
    (vehicles,) = db.execute(
        "SELECT count(*) FROM procrastinate.procrastinate_jobs WHERE task_name = 'jobqueue.run'"
    ).fetchone()  # type: ignore[misc]
    assert vehicles == 0


def test_cancel_of_a_running_sync_job_is_seen_by_the_handler(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "cooperative", "wait_for_cancel")
    job = client.submit_job("cooperative", {}, organization=org)
    workers.start()
    wait_for(lambda: executions(db, job.id, "started"), what="handler start")
    client.cancel_job(job.id)
    done = finished(client, job.id)
    assert done.status == "canceled"
    assert [a.outcome for a in client.job_attempts(job.id)] == ["canceled"]
    wait_for(lambda: executions(db, job.id, "saw_cancel"), what="handler to see the cancel")


def test_cancel_of_a_running_async_job_cancels_the_handler(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "async_sleeper", "sleep_async")
    job = client.submit_job("async_sleeper", {"seconds": 60}, organization=org)
    workers.start()
    wait_for(lambda: client.get_job(job.id).status == "running", what="job to run")
    client.cancel_job(job.id)
    assert finished(client, job.id).status == "canceled"
    assert [a.outcome for a in client.job_attempts(job.id)] == ["canceled"]
    wait_for(lambda: executions(db, job.id, "cancelled"), what="handler cancellation")


def test_progress_reports_land_and_are_throttled(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "progress", "progress_burst")
    job = client.submit_job("progress", {"reports": 20000}, organization=org)
    workers.start()
    assert finished(client, job.id).status == "completed"
    percents = [
        row[0]
        for row in db.execute(
            "SELECT (data->>'percent')::int FROM jobqueue.event"
            " WHERE job_id = %s AND type = 'progress' ORDER BY id",
            (job.id,),
        )
    ]
    assert 1 <= len(percents) <= 20, percents  # 20,001 reports, a handful of writes
    assert percents[-1] == 99  # the last value reported is always written


def test_checkpoint_survives_a_retry(client: Client, org: str, workers: Workers) -> None:
    job_type(client, "checkpointed", "checkpointed")
    job = client.submit_job("checkpointed", {}, organization=org)
    workers.start()
    done = finished(client, job.id)
    assert done.status == "completed"
    assert done.result == {"resumed_from": {"step": 1}}


def test_unserialisable_result_fails_the_job(client: Client, org: str, workers: Workers) -> None:
    job_type(client, "wrong_result", "wrong_result")
    job = client.submit_job("wrong_result", {}, organization=org)
    workers.start()
    done = finished(client, job.id)
    assert done.status == "dead"
    assert "not JSON-serialisable" in (done.last_error or "")


def test_handler_that_fails_to_import_fails_the_attempt_not_the_worker(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    # Registered without validation (the raw client), as a type whose module later vanished.
    client.register_job_type("vanished", "tests.acceptance.no_such_module:run", max_retries=0)
    job_type(client, "echo", "record")
    broken = client.submit_job("vanished", {}, organization=org)
    proc = workers.start(concurrency=1)
    done = finished(client, broken.id)
    assert done.status == "dead"
    assert "no_such_module" in (done.last_error or "")
    assert "failed to import" in (done.last_error or "")
    ok = client.submit_job("echo", {}, organization=org)
    assert finished(client, ok.id).status == "completed"
    assert proc.poll() is None


def test_dependencies_run_in_order_through_workers(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "step", "record")
    first = client.submit_job("step", {"tag": "first"}, organization=org)
    second = client.submit_job("step", {"tag": "second"}, organization=org, depends_on=[first.id])
    third = client.submit_job(
        "step", {"tag": "third"}, organization=org, depends_on=[first.id, second.id]
    )
    workers.start(concurrency=4)
    workers.start(concurrency=4)
    assert finished(client, third.id).status == "completed"
    order = [
        row[0] for row in db.execute("SELECT tag FROM public.test_exec ORDER BY at, id").fetchall()
    ]
    assert order == ["first", "second", "third"]
    jobs = {j.id: j for j in (client.get_job(i) for i in (first.id, second.id, third.id))}
    assert jobs[first.id].finished_at <= jobs[second.id].started_at
    assert jobs[second.id].finished_at <= jobs[third.id].started_at


def test_procrastinate_cli_runs_jobqueue_jobs(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "flaky", "flaky", queue="emails", max_retries=2)
    job = client.submit_job("flaky", {"failures": 1}, organization=org)
    proc = workers.spawn(
        [
            sys.executable,
            "-m",
            "procrastinate",
            "--app=jobqueue.worker.app",
            "worker",
            "--queues=emails,jobqueue.maintenance",
            "--concurrency=2",
        ],
        env={"JOBQUEUE_STALE_AFTER": "2"},
    )
    done = finished(client, job.id)
    assert (done.status, done.result) == ("completed", {"attempt": 2})
    assert [e.attempt for e in executions(db, job.id)] == [1, 2]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_params_the_handler_does_not_take_fail_the_attempt(
    client: Client, org: str, workers: Workers
) -> None:
    job_type(client, "strict_sync", "flaky", max_retries=0)
    job_type(client, "strict_async", "async_no_params", max_retries=0)
    sync_job = client.submit_job("strict_sync", {"bogus": 1}, organization=org)
    async_job = client.submit_job("strict_async", {"bogus": 1}, organization=org)
    workers.start()
    for job in (sync_job, async_job):
        done = finished(client, job.id)
        assert done.status == "dead"
        assert "unexpected keyword argument 'bogus'" in (done.last_error or "")


def test_outcomes_postgresql_cannot_store_verbatim_still_end_the_attempt(
    client: Client, org: str, workers: Workers
) -> None:
    job_type(client, "unstorable", "unstorable", max_retries=0)
    jobs = {
        what: client.submit_job("unstorable", {"what": what}, organization=org)
        for what in ("nan", "nul_result", "nul_error")
    }
    workers.start()
    errors = {what: finished(client, job.id).last_error or "" for what, job in jobs.items()}
    assert all(client.get_job(job.id).status == "dead" for job in jobs.values())
    assert "not JSON-serialisable" in errors["nan"]
    assert "NUL character" in errors["nul_result"]
    assert errors["nul_error"] == "RuntimeError: bad\\0byte"


def test_a_worker_needs_only_the_jobqueue_worker_role(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers, dsn: str
) -> None:
    role = f"jq_worker_{uuid.uuid4().hex[:8]}"
    db.execute(f'CREATE ROLE "{role}" LOGIN IN ROLE jobqueue_worker')
    try:
        # Only the test handlers' own log table needs more than the role gives.
        db.execute(f'GRANT INSERT ON public.test_exec TO "{role}"')
        db.execute(f'GRANT USAGE ON SEQUENCE public.test_exec_id_seq TO "{role}"')
        params = conninfo_to_dict(dsn)
        params["user"] = role
        params.pop("password", None)
        workers.dsn = make_conninfo(**params)
        job_type(client, "flaky", "flaky", max_retries=2)
        job = client.submit_job("flaky", {"failures": 1}, organization=org)
        proc = workers.start()
        done = finished(client, job.id)
        assert (done.status, done.result) == ("completed", {"attempt": 2})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        workers.stop_all()
        db.execute(f'DROP OWNED BY "{role}"')
        db.execute(f'DROP ROLE "{role}"')


def test_a_vehicle_for_a_job_no_longer_runnable_is_dropped(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "echo", "record", queue="nobody")
    job = client.submit_job("echo", {}, organization=org)
    client.cancel_job(job.id)
    # A stray vehicle (as if it raced the cancel) on a queue the worker serves.
    db.execute(
        "SELECT procrastinate.procrastinate_defer_jobs_v1(ARRAY[ROW('default', 'jobqueue.run',"
        " 0, NULL, NULL, jsonb_build_object('job_id', %s::bigint), NULL)"
        "::procrastinate.procrastinate_job_to_defer_v1])",
        (job.id,),
    )
    workers.start(queues="default")

    def vehicles() -> int:
        row = db.execute(
            "SELECT count(*) FROM procrastinate.procrastinate_jobs WHERE task_name = 'jobqueue.run'"
        ).fetchone()
        return int(row[0]) if row else -1

    wait_for(lambda: vehicles() == 0, what="the stray vehicle to be dropped")
    assert client.get_job(job.id).status == "canceled"
    assert client.job_attempts(job.id) == []
    assert executions(db, job.id) == []
