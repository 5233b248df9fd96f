"""PgQueuer: its batch enqueue and its batch-claiming worker (batch size 10, its default)."""

from __future__ import annotations

import asyncio

import psycopg

from bench.systems.base import System


class PgQueuerSystem(System):
    name = "pgqueuer"

    def __init__(self, dsn: str):
        super().__init__(dsn)
        # PgQueuer's enqueue API is async; one loop and one connection serve the whole run,
        # as they would in an application.
        self._loop = asyncio.new_event_loop()
        self._queries: object | None = None

    def _enqueuer(self) -> object:
        from pgqueuer import Queries

        if self._queries is None:
            conn = self._loop.run_until_complete(
                psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
            )
            self._queries = Queries.from_psycopg_connection(conn)
        return self._queries

    def install(self) -> None:
        from pgqueuer import Queries

        async def install() -> None:
            conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
            try:
                await Queries.from_psycopg_connection(conn).install()
            finally:
                await conn.close()

        asyncio.run(install())

    def enqueue_one(self, conn: psycopg.Connection, key: int) -> None:
        self.enqueue_batch(conn, [key])

    def enqueue_batch(self, conn: psycopg.Connection, keys: list[int]) -> None:
        queries = self._enqueuer()
        self._loop.run_until_complete(
            queries.enqueue(  # type: ignore[attr-defined]
                ["noop"] * len(keys), [str(k).encode() for k in keys], [0] * len(keys)
            )
        )

    def unfinished(self, conn: psycopg.Connection) -> int:
        row = conn.execute("SELECT count(*) FROM pgqueuer").fetchone()
        return int(row[0]) if row else 0

    def add_history(self, conn: psycopg.Connection, count: int) -> None:
        conn.execute(
            "INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint)"
            " SELECT g, 'successful', 0, 'noop' FROM generate_series(1, %s) AS g",
            (count,),
        )
        conn.execute("VACUUM ANALYZE pgqueuer_log")
