"""jobqueue: submit through the SQL API, drain with ``jobqueue.worker``."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

from bench.systems.base import System
from jobqueue import migrate
from jobqueue.client import Client

ORG = "bench"
JOB_TYPE = "bench.noop"


class JobqueueSystem(System):
    name = "jobqueue"

    def install(self) -> None:
        migrate(self.dsn)
        with Client(self.dsn) as client:
            client.create_organization(ORG)
            client.register_job_type(JOB_TYPE, "bench.handlers:jobqueue_noop", max_retries=0)

    def enqueue_one(self, conn: psycopg.Connection, key: int) -> None:
        conn.execute(
            "SELECT id FROM jobqueue.submit_job(job_type => %s, params => %s, organization => %s)",
            (JOB_TYPE, Jsonb({"key": key}), ORG),
        )

    def enqueue_batch(self, conn: psycopg.Connection, keys: list[int]) -> None:
        jobs = [{"job_type": JOB_TYPE, "organization": ORG, "params": {"key": k}} for k in keys]
        conn.execute("SELECT count(*) FROM jobqueue.submit_jobs(jobs => %s)", (Jsonb(jobs),))

    def unfinished(self, conn: psycopg.Connection) -> int:
        row = conn.execute("SELECT count(*) FROM jobqueue.job WHERE finished_at IS NULL").fetchone()
        return int(row[0]) if row else 0

    def add_history(self, conn: psycopg.Connection, count: int) -> None:
        # Finished jobs with their attempts and events, as the engine would have left them.
        conn.execute(
            """
            WITH org AS (SELECT id FROM jobqueue.organization WHERE name = %(org)s),
            jobs AS (
                INSERT INTO jobqueue.job (job_type, organization_id, queue, status, priority,
                    params, attempt, max_retries, timeout, created_at, started_at, finished_at)
                SELECT %(type)s, org.id, 'default', 'completed', 0,
                       jsonb_build_object('history', g), 1, 0, '5 minutes',
                       now() - interval '2 days', now() - interval '2 days',
                       now() - interval '2 days'
                FROM org, generate_series(1, %(n)s) AS g
                RETURNING id, organization_id, finished_at
            ), attempts AS (
                INSERT INTO jobqueue.attempt (job_id, attempt, organization_id, job_type,
                    started_at, finished_at, outcome)
                SELECT id, 1, organization_id, %(type)s, finished_at, finished_at, 'completed'
                FROM jobs
            )
            INSERT INTO jobqueue.event (organization_id, job_id, type, created_at)
            SELECT organization_id, id, 'completed', finished_at FROM jobs
            """,
            {"org": ORG, "type": JOB_TYPE, "n": count},
        )
        conn.execute("VACUUM ANALYZE jobqueue.job")
