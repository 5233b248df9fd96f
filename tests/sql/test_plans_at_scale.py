"""The hot statements keep their index plans against a large history.

A claim, a finish and ``list_jobs`` run against ~200,000 finished jobs (each with its attempt
row and its events, as a worker leaves them) and a few hundred runnable ones. auto_explain
logs the plan of every statement they run, the ones inside the functions and their triggers
included, with the rows each scan really read: no statement may read a big table whole, nor
go through more than a couple of thousand of its rows. Each call runs more than five times, so
PL/pgSQL's switch to a cached generic plan is covered too. Twice a plan regression was
caught only by the bench; this catches it in the suite.

The same cycle, submits and a small organization's list also run on a backlog whose
statistics were taken while the queue was empty, as a worker's session meets it before
autovacuum catches up: the fair claim's plan once walked every waiting vehicle there, for each
claim of the worker's session.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from jobqueue import calls, db
from jobqueue.client import Client
from tests.conftest import fresh_database
from tests.factories import make_job_type

HISTORY = int(os.environ.get("JOBQUEUE_PLAN_HISTORY", "200000"))
ORGANIZATIONS = ("acme", "globex", "initech")
# initech has history only: listing its jobs must not walk through everyone else's.
BUSY = ("acme", "globex")
RUNNABLE_PER_ORGANIZATION = 150
# PL/pgSQL may switch a statement to a generic plan from its sixth execution.
RUNS = 7
# A statement of the hot path reads a few rows per job it touches, never a slice of history.
MAX_ROWS_READ = 2_000
# jobqueue's job, attempt and event_batch, procrastinate's procrastinate_jobs (a plan names
# a table without its schema unless it is verbose).
BIG_TABLES = {"job", "attempt", "event_batch", "procrastinate_jobs"}

HISTORY_SQL = """
WITH jobs AS (
    INSERT INTO jobqueue.job (job_type, organization_id, queue, status, priority, params,
                              attempt, max_retries, timeout, created_at, started_at, finished_at)
    SELECT 'echo', o.id, 'default',
           (CASE WHEN g %% 97 = 0 THEN 'dead' WHEN g %% 89 = 0 THEN 'canceled'
                 ELSE 'completed' END)::jobqueue.job_status,
           0, jsonb_build_object('k', g), 1, 0, '5 minutes',
           now() - interval '30 days' + g * interval '10 seconds',
           now() - interval '30 days' + g * interval '10 seconds',
           now() - interval '30 days' + g * interval '10 seconds' + interval '1 second'
    FROM generate_series(1, %(n)s) AS g
    -- Skewed as tenants are: initech's few jobs are the oldest, acme has nine in ten.
    JOIN jobqueue.organization AS o
      ON o.name = CASE WHEN g <= 300 THEN 'initech' WHEN g %% 10 = 0 THEN 'globex'
                       ELSE 'acme' END
    RETURNING id, organization_id, status, started_at, finished_at
), attempts AS (
    INSERT INTO jobqueue.attempt (job_id, attempt, organization_id, job_type, started_at,
                                  finished_at, outcome)
    SELECT id, 1, organization_id, 'echo', started_at, finished_at,
           (CASE status WHEN 'dead' THEN 'failed' ELSE status::text END)::jobqueue.attempt_outcome
    FROM jobs
)
-- A worker's finish of ten jobs writes one events row per organization.
INSERT INTO jobqueue.event_batch (first_id, organization_id, created_at, job_ids, types, data)
SELECT nextval('jobqueue.event_batch_seq') * 1024, organization_id, min(finished_at),
       array_agg(id ORDER BY id), array_agg(status::text ORDER BY id),
       array_agg(NULL::jsonb ORDER BY id)
FROM jobs
GROUP BY organization_id, id / 30
"""


@pytest.fixture(scope="module")
def history_dsn(server_dsn: str, template_name: str) -> Iterator[str]:
    """A database with HISTORY finished jobs and a few hundred runnable ones, analyzed."""
    with fresh_database(server_dsn, template_name) as url:
        with Client(url) as client:
            for organization in ORGANIZATIONS:
                client.create_organization(organization)
            make_job_type(client, max_retries=3)
            with db.connect(url, autocommit=True) as conn:
                conn.execute(HISTORY_SQL, {"n": HISTORY})
            client.submit_jobs(
                [
                    {"job_type": "echo", "organization": organization, "params": {"i": i}}
                    for i in range(RUNNABLE_PER_ORGANIZATION)
                    for organization in BUSY
                ]
            )
        with db.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        yield url


class PlanLog:
    """The plans auto_explain reports to this connection, as JSON documents."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.plans: list[dict[str, Any]] = []
        conn.add_notice_handler(self._on_notice)
        conn.execute("LOAD 'auto_explain'")
        for setting, value in (
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.log_nested_statements", "on"),
            ("auto_explain.log_format", "json"),
            # Actual row counts (not timings): what each scan really read.
            ("auto_explain.log_analyze", "on"),
            ("auto_explain.log_timing", "off"),
            ("auto_explain.log_level", "log"),
            ("client_min_messages", "log"),
        ):
            conn.execute("SELECT set_config(%s, %s, false)", (setting, value))

    def _on_notice(self, diagnostic: psycopg.errors.Diagnostic) -> None:
        message = diagnostic.message_primary or ""
        _, marker, document = message.partition("plan:")
        if marker:
            self.plans.append(json.loads(document))

    def heavy_reads(self) -> list[str]:
        """Each read of a big table that is whole, or that goes through many of its rows, with
        the statement whose plan reads it."""
        found = []
        for plan in self.plans:
            for node in _nodes(plan["Plan"]):
                table = node.get("Relation Name")
                if table not in BIG_TABLES or "Scan" not in node["Node Type"]:
                    continue
                read = node.get("Actual Loops", 1) * (
                    node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
                )
                if node["Node Type"] == "Seq Scan" or read > MAX_ROWS_READ:
                    found.append(
                        f"{node['Node Type']} of {table}, {read} rows, in: "
                        + plan["Query Text"].strip()[:300]
                    )
        return found


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


@pytest.fixture
def conn(history_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with db.connect(history_dsn, autocommit=True) as connection:
        connection.row_factory = dict_row  # type: ignore[assignment]
        yield connection


def completed(vehicles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"job_id": v["args"]["job_id"], "attempt": v["args"]["attempt"], "outcome": "completed"}
        for v in vehicles
    ]


def run(conn: psycopg.Connection[Any], call: calls.Call[Any]) -> list[dict[str, Any]]:
    return conn.execute(call.sql, call.params).fetchall()


def test_the_history_is_in_place(conn: psycopg.Connection[Any]) -> None:
    counts = conn.execute(
        "SELECT count(*) FILTER (WHERE finished_at IS NOT NULL) AS finished,"
        " count(*) FILTER (WHERE status = 'queued') AS queued FROM jobqueue.job"
    ).fetchone()
    assert counts == {
        "finished": HISTORY,
        "queued": RUNNABLE_PER_ORGANIZATION * len(BUSY),
    }


def worker_cycle(conn: psycopg.Connection[Any]) -> PlanLog:
    """Claim and finish as a worker does, RUNS times each way; the plans of every statement."""
    worker = conn.execute("SELECT procrastinate.procrastinate_register_worker_v1() AS id")
    worker_id = worker.fetchone()["id"]  # type: ignore[index]
    plans = PlanLog(conn)
    finished = 0
    for round_ in range(RUNS):
        vehicles = run(conn, calls.fetch_vehicles(None, worker_id, 10))
        assert len(vehicles) == 10
        outcome = "completed" if round_ % 2 else "failed"
        results = run(
            conn,
            calls.finish_attempts(
                [
                    {
                        "job_id": v["args"]["job_id"],
                        "attempt": v["args"]["attempt"],
                        "outcome": outcome,
                        "error": None if outcome == "completed" else "boom",
                    }
                    for v in vehicles
                ]
            ),
        )
        assert all(r["accepted"] for r in results)
        finished += len(results)
    # The worker's cycle: the finished batch recorded and the next claimed in one call.
    vehicles = run(conn, calls.finish_and_fetch([], None, worker_id, 5))
    for _ in range(RUNS):
        vehicles = run(conn, calls.finish_and_fetch(completed(vehicles), None, worker_id, 5))
        assert len(vehicles) == 5
    run(conn, calls.finish_attempts(completed(vehicles)))

    assert finished == 10 * RUNS
    assert len(plans.plans) > 10 * RUNS, "auto_explain reported no plans"
    return plans


def test_claims_and_finishes_keep_index_plans(conn: psycopg.Connection[Any]) -> None:
    heavy = worker_cycle(conn).heavy_reads()
    assert not heavy, "\n".join(heavy)


@pytest.mark.parametrize(
    "arguments",
    [
        {"organization": "acme"},
        {"organization": "acme", "status": "completed"},
        {"organization": "acme", "status": "dead"},
        {"organization": "initech", "status": "completed"},
        {"organization": "initech"},
        {"organization": "acme", "status": "queued"},
        {"organization": "acme", "job_type": "echo"},
        {"organization": "globex", "before_id": "the middle"},
        {},
    ],
    ids=[
        "org",
        "org+completed",
        "org+dead",
        "small-org+completed",
        "small-org",
        "org+queued",
        "org+type",
        "org+before",
        "all",
    ],
)
def test_list_jobs_keeps_index_plans(
    conn: psycopg.Connection[Any], arguments: dict[str, Any]
) -> None:
    if arguments.get("before_id"):
        middle = conn.execute("SELECT (min(id) + max(id)) / 2 AS id FROM jobqueue.job")
        arguments["before_id"] = middle.fetchone()["id"]  # type: ignore[index]
    plans = PlanLog(conn)
    for _ in range(RUNS):
        call = calls.list_jobs(page_size=50, **arguments)
        assert run(conn, call), "the page is empty"

    assert plans.plans, "auto_explain reported no plans"
    heavy = plans.heavy_reads()
    assert not heavy, "\n".join(heavy)


# Queue tables change faster than autovacuum analyzes them: a worker's session plans its claim
# once and keeps the plan, often while the statistics still describe a nearly empty queue.
STALE_BACKLOG = 3_000


@pytest.fixture
def stale_dsn(server_dsn: str, template_name: str) -> Iterator[str]:
    """A backlog of one organization, and one job of another, in tables whose statistics were
    taken while they were empty and are kept that way (autovacuum off for them)."""
    with fresh_database(server_dsn, template_name) as url:
        with Client(url) as client:
            for organization in BUSY:
                client.create_organization(organization)
            make_job_type(client, max_retries=3)
            with db.connect(url, autocommit=True) as conn:
                for table in ("jobqueue.job", "procrastinate.procrastinate_jobs"):
                    conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
                    conn.execute(f"ANALYZE {table}")
            for first in range(0, STALE_BACKLOG, 1_000):
                client.submit_jobs(
                    [
                        {"job_type": "echo", "organization": "acme", "params": {"i": i}}
                        for i in range(first, first + 1_000)
                    ]
                )
            client.submit_job("echo", {"i": -1}, organization="globex")
        yield url


def test_claims_and_finishes_keep_index_plans_on_stale_statistics(stale_dsn: str) -> None:
    with db.connect(stale_dsn, autocommit=True) as conn:
        conn.row_factory = dict_row  # type: ignore[assignment]
        heavy = worker_cycle(conn).heavy_reads()
        # The claims were the fair ones: globex's one job started, where FIFO order would
        # have kept it behind acme's backlog.
        globex = conn.execute(
            "SELECT j.attempt > 0 AS started FROM jobqueue.job AS j"
            " JOIN jobqueue.organization AS o ON o.id = j.organization_id"
            " WHERE o.name = 'globex'"
        ).fetchone()
    assert globex == {"started": True}
    assert not heavy, "\n".join(heavy)


def test_submits_keep_index_plans_on_stale_statistics(stale_dsn: str) -> None:
    with db.connect(stale_dsn, autocommit=True) as conn:
        conn.row_factory = dict_row  # type: ignore[assignment]
        plans = PlanLog(conn)
        for i in range(RUNS):
            job = run(conn, calls.submit_job("echo", {"s": i}, organization="acme"))
            assert job, "submit_job answered nothing"
            jobs = run(
                conn,
                calls.submit_jobs(
                    [
                        {"job_type": "echo", "organization": "globex", "params": {"s": i, "b": b}}
                        for b in range(50)
                    ]
                ),
            )
            assert len(jobs) == 50

    assert plans.plans, "auto_explain reported no plans"
    heavy = plans.heavy_reads()
    assert not heavy, "\n".join(heavy)


def test_a_small_organization_s_list_keeps_index_plans_on_stale_statistics(
    stale_dsn: str,
) -> None:
    with db.connect(stale_dsn, autocommit=True) as conn:
        conn.row_factory = dict_row  # type: ignore[assignment]
        plans = PlanLog(conn)
        for _ in range(RUNS):
            for arguments in (
                {"organization": "globex"},
                {"organization": "globex", "status": "queued"},
            ):
                page = run(conn, calls.list_jobs(page_size=50, **arguments))
                assert len(page) == 1

    assert plans.plans, "auto_explain reported no plans"
    heavy = plans.heavy_reads()
    assert not heavy, "\n".join(heavy)
