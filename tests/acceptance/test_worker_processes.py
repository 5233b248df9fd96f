"""Process mode through real workers: handlers in child processes end every way they end
inline, and their context (progress, checkpoints, cancel flag, logging) works the same."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg

from jobqueue.client import Client
from tests.acceptance.conftest import Workers, executions, job_type, wait_for
from tests.acceptance.test_worker_outcomes import finished

PROCESS = ["--execution", "process", "--kill-grace", "1"]


def test_handlers_in_processes_end_as_they_would_inline(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    """Retries, dead ends, unstorable results, unimportable handlers, wrong params and async
    handlers: the same outcomes as inline, from a worker whose default is process mode."""
    job_type(client, "flaky", "flaky", max_retries=3)
    job_type(client, "give_up", "give_up", max_retries=5)
    job_type(client, "wrong_result", "wrong_result")
    job_type(client, "checkpointed", "checkpointed")
    job_type(client, "count", "count", max_retries=0)
    job_type(client, "async_sleeper", "sleep_async", timeout=timedelta(seconds=1), max_retries=0)
    client.register_job_type("vanished", "tests.acceptance.no_such_module:run", max_retries=0)
    jobs = {
        name: client.submit_job(name, params, organization=org).id
        for name, params in (
            ("flaky", {"failures": 2}),
            ("give_up", {}),
            ("wrong_result", {}),
            ("checkpointed", {}),
            ("count", {"n": 7}),
            ("async_sleeper", {"seconds": 30}),
            ("vanished", {}),
        )
    }
    wrong_params = client.submit_job("count", {"nope": 1}, organization=org).id
    workers.start(concurrency=4, extra=PROCESS)
    done = {name: finished(client, job_id) for name, job_id in jobs.items()}
    assert {name: (j.status, j.result) for name, j in done.items()} == {
        "flaky": ("completed", {"attempt": 3}),
        "give_up": ("dead", None),
        "wrong_result": ("dead", None),
        "checkpointed": ("completed", {"resumed_from": {"step": 1}}),
        "count": ("completed", 7),
        "async_sleeper": ("dead", None),
        "vanished": ("dead", None),
    }
    flaky = client.job_attempts(jobs["flaky"])
    assert [a.outcome for a in flaky] == ["failed", "failed", "completed"]
    assert "planned failure on attempt 1" in (flaky[0].error or "")
    assert "Traceback" in (flaky[0].traceback or "")
    assert [a.outcome for a in client.job_attempts(jobs["give_up"])] == ["failed"]
    assert "NonRetryableError: bad input" in (done["give_up"].last_error or "")
    assert "not JSON-serialisable" in (done["wrong_result"].last_error or "")
    assert "failed to import" in (done["vanished"].last_error or "")
    assert [a.outcome for a in client.job_attempts(jobs["async_sleeper"])] == ["timed_out"]
    # Every run was in a child, never in the worker itself.
    pids = {row.pid for name in ("flaky", "count") for row in executions(db, jobs[name])}
    assert workers.procs[0].pid not in pids
    wrong = finished(client, wrong_params)
    assert wrong.status == "dead" and "nope" in (wrong.last_error or "")


def test_progress_from_a_process_is_throttled_and_its_last_value_written(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    job_type(client, "progress", "progress_burst", execution="process")
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
    assert 1 <= len(percents) <= 20, percents
    assert percents[-1] == 99


def test_a_canceled_handler_in_a_process_sees_the_flag_on_its_way_out_and_logs_through_the_worker(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    """Cancel sets the flag and stops the process: the handler's finally block runs and
    sees ``ctx.is_canceled()``; what it logged came out in the worker's log."""
    job_type(client, "cleans_up", "cleans_up", execution="process")
    job = client.submit_job("cleans_up", {"seconds": 60}, organization=org)
    workers.start(extra=["--kill-grace", "5"])
    wait_for(lambda: executions(db, job.id, "started"), what="the handler to start")
    client.cancel_job(job.id)
    assert finished(client, job.id).status == "canceled"
    assert [a.outcome for a in client.job_attempts(job.id)] == ["canceled"]
    assert [e.tag for e in executions(db, job.id)] == ["started", "canceled=True"]
    wait_for(
        lambda: f"job {job.id} holding for 60s" in workers.output(),
        what="the handler's log record in the worker's log",
    )


def test_async_handlers_in_one_process_share_its_loop_across_jobs(
    client: Client, db: psycopg.Connection[Any], org: str, workers: Workers
) -> None:
    """What a handler keeps across jobs (a connection pool, as ``loops_seen`` does) stays
    bound to a live loop: a child runs every async handler on one loop, as the worker does."""
    job_type(client, "loops", "loops_seen", execution="process")
    jobs = [client.submit_job("loops", {"n": n}, organization=org).id for n in range(4)]
    workers.start(concurrency=1)
    assert [finished(client, job_id).result for job_id in jobs] == [1, 1, 1, 1]
    assert len({row.pid for job_id in jobs for row in executions(db, job_id)}) == 1
