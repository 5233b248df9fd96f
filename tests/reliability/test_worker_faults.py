"""Workers killed at random points under load: every job completes, never two attempts at once."""

from __future__ import annotations

import random
import signal
import time
from datetime import timedelta
from typing import Any

import psycopg

from jobqueue.client import Client
from jobqueue.handlers import register_job_type
from tests.reliability.attempt_log import jobs_without_a_logged_completion, overlapping_attempts
from tests.reliability.conftest import Workers, scalar, wait_for
from tests.reliability.lifecycle_check import lifecycle_violations


def register_tracked(client: Client) -> None:
    register_job_type(
        client,
        "tracked",
        "tests.reliability.handlers:tracked",
        max_retries=25,
        timeout=timedelta(seconds=30),
        backoff_base=timedelta(milliseconds=10),
        backoff_max=timedelta(milliseconds=200),
    )


def submit_load(client: Client, jobs: int, organization: str = "acme") -> list[int]:
    ids: list[int] = []
    for start in range(0, jobs, 5000):
        batch = [
            {"job_type": "tracked", "params": {"max_ms": 20, "n": n}, "organization": organization}
            for n in range(start, min(jobs, start + 5000))
        ]
        ids += [j.id for j in client.submit_jobs(batch)]
    return ids


def left_to_complete(owner: psycopg.Connection[Any]) -> int:
    dead = scalar(owner, "SELECT count(*) FROM jobqueue.job WHERE status IN ('dead', 'canceled')")
    assert dead == 0, "a job ended without completing"
    return int(scalar(owner, "SELECT count(*) FROM jobqueue.job WHERE status <> 'completed'"))


def test_sigkilled_workers_lose_no_job_and_never_overlap_attempts(
    client: Client, owner: psycopg.Connection[Any], workers: Workers, full: bool
) -> None:
    jobs, kills = (10_000, 20) if full else (3000, 6)
    register_tracked(client)
    client.create_organization("acme")
    for _ in range(3):
        workers.start(concurrency=8, stale_after=2)
    ids = submit_load(client, jobs)
    assert len(set(ids)) == jobs
    rng = random.Random(6)
    killed = 0
    deadline = time.monotonic() + (900 if full else 180)
    while killed < kills and left_to_complete(owner) > jobs // 10:
        assert time.monotonic() < deadline, "the load stopped progressing"
        time.sleep(rng.uniform(0.3, 1.5))
        running = int(scalar(owner, "SELECT count(*) FROM jobqueue.job WHERE status = 'running'"))
        if running == 0:
            continue  # kill mid-attempt, not between them
        victim = rng.choice(workers.alive())
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        killed += 1
        workers.start(concurrency=8, stale_after=2)
    assert killed > 0
    wait_for(
        lambda: left_to_complete(owner) == 0,
        timeout=900 if full else 240,
        interval=1.0,
        what=f"all {jobs} jobs to complete",
    )
    assert overlapping_attempts(owner) == []
    assert jobs_without_a_logged_completion(owner) == []
    assert lifecycle_violations(owner, ids) == []
    # The kills really interrupted attempts, and the rescuer recovered them.
    lost = scalar(owner, "SELECT count(*) FROM jobqueue.attempt WHERE outcome <> 'completed'")
    assert lost > 0
