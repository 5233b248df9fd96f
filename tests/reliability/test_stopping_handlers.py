"""Handlers that ignore their deadline and cancel requests: stopped for real in process mode,
waited out inline, and in no mode two runs of one job at once.

The handlers (``handlers.ignores_cancel``) block in a busy loop, in ``time.sleep`` or in a
socket read, never looking at ``ctx.is_canceled()``, and log the start and end of every run
from inside (a SIGKILL leaves no end row; the attempt's ``finished_at``, recorded once the
process is gone, stands in for it). Real worker processes, a real web process for cancels.
"""

from __future__ import annotations

import signal
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from jobqueue.client import Client
from jobqueue.handlers import register_job_type
from tests.reliability.attempt_log import overlapping_attempts
from tests.reliability.conftest import Workers, wait_for
from tests.reliability.test_web_faults import WebProcess

HANDLER = "tests.reliability.handlers:ignores_cancel"
KINDS = ("busy", "sleep", "socket")
TIMEOUT = timedelta(seconds=1)
KILL_GRACE = 1.0
# What a loaded machine may add between the worker's decision and the database's clock.
SLACK = timedelta(seconds=3)


def register(client: Client, execution: str | None, timeout: timedelta = TIMEOUT) -> None:
    for kind in (*KINDS, "stubborn"):
        register_job_type(
            client,
            kind,
            HANDLER,
            timeout=timeout,
            max_retries=1,
            backoff_base=timedelta(milliseconds=10),
            backoff_max=timedelta(milliseconds=50),
            execution=execution,
        )


def runs(owner: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every run a handler logged, with its attempt row: when the attempt started and was
    recorded ended, when the handler started, and when it ended (None if killed)."""
    cur = owner.cursor(row_factory=dict_row)
    return cur.execute(
        """
        SELECT j.job_type, a.job_id, a.attempt, a.outcome::text AS outcome,
               a.started_at, a.finished_at, s.at AS handler_started, e.at AS handler_ended,
               s.handler_threads
        FROM jobqueue.attempt AS a
        JOIN jobqueue.job AS j ON j.id = a.job_id
        LEFT JOIN public.attempt_log AS s
          ON s.job_id = a.job_id AND s.attempt = a.attempt AND s.phase = 'started'
        LEFT JOIN public.attempt_log AS e
          ON e.job_id = a.job_id AND e.attempt = a.attempt AND e.phase = 'ended'
        ORDER BY a.job_id, a.attempt
        """
    ).fetchall()


def all_ended(client: Client, ids: list[int]) -> bool:
    return all(client.get_job(i).status in ("completed", "dead", "canceled") for i in ids)


class ThreadCount(threading.Thread):
    """Samples a process's thread count (``/proc/<pid>/status``) until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[int] = []
        self.done = threading.Event()

    def read(self) -> int | None:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        return next(int(line.split()[1]) for line in status.splitlines() if line[:8] == "Threads:")

    def run(self) -> None:
        while not self.done.wait(0.05):
            count = self.read()
            if count is not None:
                self.samples.append(count)


@pytest.mark.parametrize("mode", ["inline", "process"])
def test_handlers_past_their_deadline_never_overlap_their_retries(
    client: Client, owner: psycopg.Connection[Any], workers: Workers, mode: str
) -> None:
    """A 1 s timeout and a retry left. Process mode: every run ends within the kill grace
    after its deadline, SIGTERM ending the three kinds and SIGKILL the one that swallows it.
    Inline: each run goes on to its own end (3 s), its attempt is recorded only then, and
    the retry starts after it. In both, the worker's threads stay bounded although every
    handler overstays: an abandoned thread keeps its slot until it ends."""
    concurrency = 3
    client.create_organization("acme")
    if mode == "process":
        # The job types leave the choice to the worker, which runs handlers in processes.
        register(client, None)
        kinds, seconds = (*KINDS, "stubborn"), 60.0
        extra = ["--execution", "process", "--kill-grace", str(KILL_GRACE)]
    else:
        register(client, "inline")
        kinds, seconds = KINDS + KINDS, 3.0
        extra = []
    worker = workers.start(concurrency=concurrency, stale_after=2, extra=extra)
    threads = ThreadCount(worker.pid)
    wait_for(
        lambda: owner.execute(
            "SELECT count(*) FROM procrastinate.procrastinate_workers"
        ).fetchone()[0],  # type: ignore[index]
        what="the worker to register",
    )
    baseline = wait_for(threads.read, what="the worker's thread count")
    threads.start()
    ids = [
        client.submit_job(kind, {"how": kind, "seconds": seconds, "n": n}, organization="acme").id
        for n, kind in enumerate(kinds)
    ]
    try:
        wait_for(lambda: all_ended(client, ids), timeout=120, interval=0.5, what="every job")
    finally:
        threads.done.set()
        threads.join()

    assert {client.get_job(i).status for i in ids} == {"dead"}
    logged = runs(owner)
    assert [(r["job_id"], r["attempt"]) for r in logged] == [(i, n) for i in ids for n in (1, 2)]
    assert {r["outcome"] for r in logged} == {"timed_out"}
    assert all(r["handler_started"] is not None for r in logged), "a run never started"
    assert overlapping_attempts(owner) == []
    for r in logged:
        if mode == "process":
            deadline = r["started_at"] + TIMEOUT
            end = r["handler_ended"] or r["finished_at"]
            assert end <= deadline + timedelta(seconds=KILL_GRACE) + SLACK, r
            if r["job_type"] == "stubborn":
                # SIGTERM was swallowed: no end of its own, killed after the grace.
                assert r["handler_ended"] is None, r
                assert r["finished_at"] - r["started_at"] >= TIMEOUT + timedelta(
                    seconds=KILL_GRACE
                ), r
            else:
                assert r["handler_ended"] is not None, r  # SIGTERM stopped it in its tracks
            assert r["finished_at"] >= end, r
        else:
            # The handler ran to its own end, and only then was the attempt recorded.
            assert r["handler_ended"] is not None, r
            assert r["finished_at"] >= r["handler_ended"], r
            # Sync handlers' threads in the worker: those running, plus idle ones about to
            # be reused; never the pile that abandoned threads would make.
            assert r["handler_threads"] <= 2 * concurrency, r
    # Everything else in the worker is a fixed set: its loop, the default executor.
    assert threads.samples and max(threads.samples) <= baseline + 2 * concurrency + max(
        4, concurrency
    ), (baseline, max(threads.samples))


@pytest.mark.parametrize("mode", ["inline", "process"])
def test_a_running_job_canceled_over_http_cannot_run_again_before_its_handler_ends(
    client: Client,
    dsn: str,
    owner: psycopg.Connection[Any],
    workers: Workers,
    tmp_path: Path,
    mode: str,
) -> None:
    """Cancel each running handler through the API, then retry it through the API at once
    and until accepted: the retry is refused (409) while the canceled handler still runs,
    so the second run never starts beside the first. Process mode ends the first run within
    the kill grace after the cancel request; inline lets it run to its own end (5 s)."""
    client.create_organization("acme")
    client.create_user("root", admin=True)
    token = client.create_token("root", "cancel").secret
    register(client, mode, timeout=timedelta(seconds=60))
    seconds = 60.0 if mode == "process" else 5.0
    ids = [
        client.submit_job(
            kind, {"how": kind, "seconds": seconds, "later_seconds": 0.2}, organization="acme"
        ).id
        for kind in KINDS
    ]
    web = WebProcess(dsn, tmp_path)
    try:
        web.start()
        workers.start(concurrency=len(KINDS), stale_after=2, extra=["--kill-grace", "1"])
        wait_for(
            lambda: len(owner.execute("SELECT 1 FROM public.attempt_log").fetchall()) >= len(KINDS),
            what="every handler to start",
        )
        refused = 0
        with httpx.Client(
            base_url=web.base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http:
            for job_id in ids:
                answer = http.post(f"/api/jobs/{job_id}/cancel")
                assert answer.status_code == 200, answer.text
                assert answer.json()["cancel_requested"] is True

            def retried(job_id: int) -> bool:
                nonlocal refused
                answer = http.post(f"/api/jobs/{job_id}/retry")
                if answer.status_code == 409:
                    refused += 1
                    return False
                assert answer.status_code == 200, answer.text
                return True

            for job_id in ids:
                wait_for(lambda j=job_id: retried(j), timeout=60, what=f"job {job_id} retried")
        wait_for(lambda: all_ended(client, ids), timeout=60, interval=0.5, what="every job")
    finally:
        web.stop_all()

    if mode == "inline":
        # The first retries came while the canceled handlers still ran (process mode may
        # have killed them before the first retry was even sent).
        assert refused > 0
    assert [client.get_job(i).status for i in ids] == ["completed"] * len(KINDS)
    logged = runs(owner)
    assert [(r["job_id"], r["attempt"], r["outcome"]) for r in logged] == [
        (i, n, outcome) for i in ids for n, outcome in ((1, "canceled"), (2, "completed"))
    ]
    assert overlapping_attempts(owner) == []
    events = {
        (row[0], row[1]): row[2]
        for row in owner.execute(
            "SELECT job_id, type, created_at FROM jobqueue.event"
            " WHERE type IN ('cancel_requested', 'retried')"
        ).fetchall()
    }
    for r in logged:
        if r["attempt"] != 1:
            continue
        # Every first run logged its own end: SIGTERM's, or its natural one inline.
        assert r["handler_ended"] is not None, r
        assert r["finished_at"] >= r["handler_ended"], r
        assert events[(r["job_id"], "retried")] >= r["handler_ended"], r
        if mode == "process":
            canceled_at = events[(r["job_id"], "cancel_requested")]
            assert r["handler_ended"] <= canceled_at + timedelta(seconds=1) + SLACK, r


@pytest.mark.parametrize("end", ["sigkill", "sigterm"])
def test_a_worker_gone_with_a_handler_overstaying_has_the_attempt_rescued_after_it(
    client: Client, owner: psycopg.Connection[Any], workers: Workers, end: str
) -> None:
    """An inline handler past its deadline holds its attempt open. Its worker killed
    (SIGKILL), or stopped with the handler still running (SIGTERM, grace over): the handler
    dies with the process, the holds stop, and another worker's rescuer closes the attempt
    within seconds; the retry starts only after the first worker's process is gone."""
    client.create_organization("acme")
    register(client, "inline")
    job_id = client.submit_job(
        "sleep", {"how": "sleep", "seconds": 60, "later_seconds": 0.2}, organization="acme"
    ).id
    first = workers.start(concurrency=1, stale_after=2, shutdown_grace=1)
    wait_for(
        lambda: (
            owner.execute(
                "SELECT attempt_held_at IS NOT NULL FROM jobqueue.job WHERE id = %s", (job_id,)
            ).fetchone()
            == (True,)
        ),
        timeout=30,
        what="the overstaying attempt to be held",
    )
    first.send_signal(signal.SIGKILL if end == "sigkill" else signal.SIGTERM)
    first.wait(timeout=60)
    gone_at = owner.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    assert client.get_job(job_id).status == "running"  # held open past the worker's end
    workers.start(concurrency=1, stale_after=2)
    wait_for(
        lambda: client.get_job(job_id).status == "completed",
        timeout=60,
        what="the job to be rescued and run again",
    )
    first_run, second_run = runs(owner)
    assert (first_run["outcome"], second_run["outcome"]) == ("lost", "completed")
    assert first_run["handler_ended"] is None  # it died with its process
    assert second_run["handler_started"] > gone_at
    assert overlapping_attempts(owner) == []


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_a_killed_workers_child_process_ends_with_it_before_the_job_runs_again(
    client: Client, owner: psycopg.Connection[Any], workers: Workers
) -> None:
    """Process mode: SIGKILL the worker while its child runs a handler. The child finds its
    pipe closed and exits at once, and the rescued job runs again only after that."""
    client.create_organization("acme")
    register(client, None, timeout=timedelta(seconds=60))
    job_id = client.submit_job(
        "busy", {"how": "busy", "seconds": 60, "later_seconds": 0.2}, organization="acme"
    ).id
    first = workers.start(concurrency=1, stale_after=2, extra=["--execution", "process"])
    started = wait_for(
        lambda: owner.execute(
            "SELECT pid FROM public.attempt_log WHERE job_id = %s AND phase = 'started'",
            (job_id,),
        ).fetchone(),
        what="the handler to start in its child",
    )
    child = int(started[0])
    assert child != first.pid
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    wait_for(lambda: not alive(child), timeout=30, what="the child to end with its worker")
    gone_at = owner.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    workers.start(concurrency=1, stale_after=2, extra=["--execution", "process"])
    wait_for(
        lambda: client.get_job(job_id).status == "completed",
        timeout=60,
        what="the job to be rescued and run again",
    )
    first_run, second_run = runs(owner)
    assert (first_run["outcome"], second_run["outcome"]) == ("lost", "completed")
    assert first_run["handler_ended"] is None  # killed with no word: the pipe closed
    assert second_run["handler_started"] > gone_at
    assert overlapping_attempts(owner) == []
