"""Load: many jobs through four worker processes, nothing lost, and no unbounded growth.

Three equal rounds of jobs (34,000 each at full size, 102,000 in all) run through four
workers; after each, retention cleanup runs with a zero retention and the tables are
vacuumed. Every job completes (its completing attempt logged its start and end, no attempts
overlapped), cleanup leaves no job history behind (jobs, attempts, events, vehicles), and the
third round leaves every table and index no bigger than the second: once emptied index pages
are recycled, space is reused instead of grown.
"""

from __future__ import annotations

from typing import Any

import psycopg

from jobqueue import db as jobqueue_db
from jobqueue.client import Client
from tests.reliability.attempt_log import jobs_without_a_logged_completion, overlapping_attempts
from tests.reliability.conftest import Workers, scalar, wait_for
from tests.reliability.test_worker_faults import register_tracked, submit_load

HISTORY_TABLES = ("jobqueue.job", "jobqueue.attempt", "jobqueue.event")


def sizes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Bytes of every jobqueue and procrastinate table and index."""
    return {
        name: int(size)
        for name, size in conn.execute(
            "SELECT c.oid::regclass::text, pg_relation_size(c.oid) FROM pg_class AS c"
            " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('jobqueue', 'procrastinate') AND c.relkind IN ('r', 'i')"
        )
    }


def clean_up(conn: psycopg.Connection[Any]) -> int:
    deleted = 0
    while True:
        n = int(scalar(conn, "SELECT jobqueue.cleanup_batch(retention => '0', batch => 5000)"))
        deleted += n
        if n < 5000:
            break
    tables = conn.execute(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
        " WHERE schemaname IN ('jobqueue', 'procrastinate')"
    ).fetchall()
    # Twice: the first VACUUM deletes emptied index pages, the second puts them in the free
    # space map, so the next round reuses them (what autovacuum does over time).
    for _ in range(2):
        for (table,) in tables:
            conn.execute(f"VACUUM {table}")  # names from the catalog
    return deleted


def run_round(client: Client, owner: psycopg.Connection[Any], jobs: int, full: bool) -> None:
    ids = submit_load(client, jobs)
    assert len(set(ids)) == jobs

    def done() -> bool:
        return scalar(owner, "SELECT count(*) FROM jobqueue.job WHERE status <> 'completed'") == 0

    wait_for(done, timeout=3600 if full else 300, interval=1.0, what=f"{jobs} jobs to complete")
    assert scalar(owner, "SELECT count(*) FROM jobqueue.job WHERE id = ANY(%s)", (ids,)) == jobs
    assert overlapping_attempts(owner) == []
    assert jobs_without_a_logged_completion(owner) == []
    owner.execute("TRUNCATE public.attempt_log")


def test_a_load_through_four_workers_loses_nothing_and_cleanup_bounds_the_tables(
    client: Client, owner: psycopg.Connection[Any], workers: Workers, full: bool
) -> None:
    per_round = 34_000 if full else 1500
    register_tracked(client)
    client.create_organization("acme")
    for _ in range(4):
        workers.start(concurrency=10)
    with jobqueue_db.connect(owner.info.dsn, autocommit=True) as maintenance:
        measured: list[dict[str, int]] = []
        for _ in range(3):
            run_round(client, owner, per_round, full)
            assert clean_up(maintenance) >= per_round
            for table in HISTORY_TABLES:
                assert scalar(maintenance, f"SELECT count(*) FROM {table}") == 0, table
            vehicles = scalar(
                maintenance,
                "SELECT count(*) FROM procrastinate.procrastinate_jobs"
                " WHERE task_name = 'jobqueue.run'",
            )
            assert vehicles == 0
            # Periodic maintenance tasks leave a few rows, never one per job.
            others = scalar(maintenance, "SELECT count(*) FROM procrastinate.procrastinate_jobs")
            assert others < 100
            events = scalar(maintenance, "SELECT count(*) FROM procrastinate.procrastinate_events")
            assert events < 1000
            measured.append(sizes(maintenance))
    _, second, third = measured
    grown = {k: (second.get(k), v) for k, v in third.items() if v > second.get(k, 0) * 1.25 + 65536}
    assert grown == {}
