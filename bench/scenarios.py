"""The measurements. Each takes a fresh, installed system and returns plain numbers."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bench.systems.base import System

WARM_UP = 3.0  # seconds for a worker process to start, register and listen
DRAIN_LIMIT = 300.0  # a drain that has not finished by then is reported as failed


@contextmanager
def workers(
    system: System, processes: int, concurrency: int, log: Path | None = None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [system.start_worker(concurrency, log) for _ in range(processes)]
    try:
        time.sleep(WARM_UP)
        for proc in procs:
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                raise RuntimeError(f"{system.name} worker exited at start: {err}")
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _stats(conn: psycopg.Connection) -> dict[str, float]:
    row = conn.execute(
        """
        SELECT pg_current_wal_lsn() - '0/0'::pg_lsn,
               (SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)
                FROM pg_stat_user_tables),
               (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
               (SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables)
        """
    ).fetchone()
    assert row is not None
    return {
        "wal": float(row[0]),
        "rows": float(row[1]),
        "commits": float(row[2]),
        "dead": float(row[3]),
    }


def enqueue(system: System, single: int, batched: int, batch_size: int = 1000) -> dict[str, float]:
    with psycopg.connect(system.dsn, autocommit=True) as conn:
        started = time.perf_counter()
        for key in range(single):
            system.enqueue_one(conn, key)
        single_rate = single / (time.perf_counter() - started)
        started = time.perf_counter()
        for first in range(0, batched, batch_size):
            keys = list(range(single + first, single + min(first + batch_size, batched)))
            system.enqueue_batch(conn, keys)
        batch_rate = batched / (time.perf_counter() - started)
    return {"enqueue_single_per_s": single_rate, "enqueue_batch_per_s": batch_rate}


def drain(
    system: System, jobs: int, processes: int, concurrency: int, *, pressure: bool = False
) -> dict[str, float]:
    """Workers idle and listening; ``jobs`` are enqueued in batches of 1,000; the clock runs
    from the first enqueue until the database shows every job finished."""
    with (
        psycopg.connect(system.dsn, autocommit=True) as conn,
        workers(system, processes, concurrency),
    ):
        holder = None
        if pressure:
            # An open REPEATABLE READ snapshot keeps vacuum from removing any dead row.
            holder = psycopg.connect(system.dsn)
            holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            holder.execute("SELECT count(*) FROM pg_class")
        try:
            time.sleep(1.0)
            before = _stats(conn)
            started = time.perf_counter()
            for first in range(0, jobs, 1000):
                system.enqueue_batch(conn, list(range(first, min(first + 1000, jobs))))
            deadline = started + DRAIN_LIMIT
            while system.unfinished(conn) > 0:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{system.name} did not drain {jobs} jobs in time")
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
            time.sleep(1.2)  # table statistics are reported by backends about once a second
            after = _stats(conn)
        finally:
            if holder is not None:
                holder.rollback()
                holder.close()
    return {
        "drain_per_s": jobs / elapsed,
        "wal_bytes_per_job": (after["wal"] - before["wal"]) / jobs,
        "rows_written_per_job": (after["rows"] - before["rows"]) / jobs,
        "commits_per_job": (after["commits"] - before["commits"]) / jobs,
        "dead_tuples": after["dead"],
    }


def pickup_latency(system: System, jobs: int, gap: float = 0.02) -> dict[str, float]:
    """An idle worker; jobs submitted one by one; commit time to handler start."""
    log = Path(tempfile.mkstemp(prefix=f"bench-{system.name}-", suffix=".log")[1])
    committed: dict[int, float] = {}
    with psycopg.connect(system.dsn, autocommit=True) as conn, workers(system, 1, 10, log):
        for key in range(jobs):
            system.enqueue_one(conn, key)
            committed[key] = time.time()
            time.sleep(gap)
        deadline = time.perf_counter() + 30
        while len(log.read_text().splitlines()) < jobs and time.perf_counter() < deadline:
            time.sleep(0.05)
    started = {}
    for line in log.read_text().splitlines():
        key, at = line.split()
        started[int(key)] = float(at)
    log.unlink()
    lags = sorted((started[k] - committed[k]) * 1000 for k in committed if k in started)
    if len(lags) < jobs:
        raise RuntimeError(f"{system.name}: only {len(lags)} of {jobs} jobs started")
    quantiles = statistics.quantiles(lags, n=100)
    return {
        "latency_p50_ms": quantiles[49],
        "latency_p95_ms": quantiles[94],
        "latency_p99_ms": quantiles[98],
    }


def jobqueue_reads(system: System) -> dict[str, float]:
    """First page of list_jobs and metrics for one organization, as the API serves them."""
    out: dict[str, float] = {}
    with psycopg.connect(system.dsn, autocommit=True) as conn:
        for label, sql in (
            ("list_jobs_ms", "SELECT * FROM jobqueue.list_jobs(organization => 'bench')"),
            ("metrics_ms", "SELECT jobqueue.metrics(organization => 'bench')"),
        ):
            conn.execute(sql).fetchall()  # warm the cache, as a dashboard would
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                conn.execute(sql).fetchall()
                timings.append((time.perf_counter() - started) * 1000)
            out[label] = statistics.median(timings)
    return out


def add_history(system: System, count: int) -> None:
    with psycopg.connect(system.dsn, autocommit=True) as conn:
        system.add_history(conn, count)


def median_of(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = {k for run in runs for k in run}
    return {k: statistics.median(run[k] for run in runs if k in run) for k in sorted(keys)}
