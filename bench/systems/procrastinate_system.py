"""Raw procrastinate 3.10: its own defer and worker, with its defaults."""

from __future__ import annotations

import procrastinate
import psycopg
from procrastinate import schema

from bench.systems.base import System


def make_app(dsn: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop(key: int | None = None) -> None:
        from bench.handlers import record_start

        record_start(key)

    return app


class ProcrastinateSystem(System):
    name = "procrastinate"

    def install(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(schema.SchemaManager.get_schema())  # type: ignore[arg-type]

    def enqueue_one(self, conn: psycopg.Connection, key: int) -> None:
        conn.execute(
            "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('default', 'noop', 0, NULL, NULL,"
            " jsonb_build_object('key', %s::int), NULL)::procrastinate_job_to_defer_v1])",
            (key,),
        )

    def enqueue_batch(self, conn: psycopg.Connection, keys: list[int]) -> None:
        # The statement procrastinate's batch_defer runs: one array of jobs.
        conn.execute(
            "SELECT procrastinate_defer_jobs_v1(array_agg(ROW('default', 'noop', 0, NULL, NULL,"
            " jsonb_build_object('key', k), NULL)::procrastinate_job_to_defer_v1))"
            " FROM unnest(%s::int[]) AS k",
            (keys,),
        )

    def unfinished(self, conn: psycopg.Connection) -> int:
        row = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        ).fetchone()
        return int(row[0]) if row else 0

    def add_history(self, conn: psycopg.Connection, count: int) -> None:
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts)"
            " SELECT 'default', 'noop', jsonb_build_object('history', g), 'succeeded', 1"
            " FROM generate_series(1, %s) AS g",
            (count,),
        )
        conn.execute("VACUUM ANALYZE procrastinate_jobs")
