"""PgQueuer, used as it comes: ``Queries.enqueue`` (lists for a batch) and ``PgQueuer.run``.

PgQueuer runs on asyncpg (``pip install pgqueuer[asyncpg]``), the driver its documentation
uses. (Its psycopg driver waits for notifications while holding the connection, which delays
each dequeue by up to a second.) The worker dequeues in batches of 10, PgQueuer's default.
PgQueuer refuses a ``max_concurrent_tasks`` below twice the batch size, so a worker may hold
``max(concurrency, 20)`` jobs; the no-op handler never holds one for long. Each process uses
one connection for queries and LISTEN, as PgQueuer's own runner does.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from bench import marks
from bench.systems.base import Adapter

if TYPE_CHECKING:
    import asyncpg
    import psycopg
    from pgqueuer.queries import Queries

ENTRYPOINT = "bench_noop"
BATCH_SIZE = 10


class PgQueuerAdapter(Adapter):
    name = "pgqueuer"
    label = "PgQueuer"
    packages = ("pgqueuer", "psycopg")

    def __init__(self) -> None:
        self._conn: asyncpg.Connection | None = None
        self._queries: Queries | None = None

    def unavailable(self) -> str | None:
        try:
            import asyncpg  # noqa: F401
            import pgqueuer  # noqa: F401
        except ImportError:
            return "pgqueuer or asyncpg is not installed (pip install 'pgqueuer[asyncpg]')"
        return None

    async def unfinished(self, conn: psycopg.AsyncConnection, enqueued: int) -> int:
        # A finished job is deleted from the queue table (and logged in pgqueuer_log).
        cur = await conn.execute("SELECT count(*) FROM pgqueuer")
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def failed(self, conn: psycopg.AsyncConnection) -> int:
        cur = await conn.execute(
            "SELECT count(*) FROM pgqueuer_log WHERE status IN ('exception', 'failed')"
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def add_history(self, conn: psycopg.AsyncConnection, count: int) -> None:
        # What PgQueuer keeps of a finished job: its 'queued' and 'successful' log rows,
        # folded into pgqueuer_statistics by the periodic aggregation.
        await conn.execute(
            "INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority, aggregated)"
            " SELECT -g, s.status::pgqueuer_status, %s, 0, true"
            " FROM generate_series(1, %s) AS g"
            " CROSS JOIN (VALUES (1, 'queued'), (2, 'successful')) AS s(n, status)"
            " ORDER BY g, s.n",
            (ENTRYPOINT, count),
        )

    async def _connect(self, dsn: str) -> asyncpg.Connection:
        import asyncpg
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(dsn)
        return await asyncpg.connect(
            host=params.get("host"),
            port=params.get("port"),
            user=params.get("user"),
            password=params.get("password") or None,
            database=params.get("dbname"),
        )

    async def install(self, dsn: str) -> None:
        from pgqueuer.queries import Queries

        conn = await self._connect(dsn)
        try:
            await Queries.from_asyncpg_connection(conn).install()
        finally:
            await conn.close()

    async def open_client(self, dsn: str) -> None:
        from pgqueuer.queries import Queries

        self._conn = await self._connect(dsn)
        self._queries = Queries.from_asyncpg_connection(self._conn)

    async def enqueue_one(self, key: int) -> None:
        assert self._queries is not None
        await self._queries.enqueue(ENTRYPOINT, str(key).encode())

    async def enqueue_batch(self, keys: Sequence[int]) -> None:
        assert self._queries is not None
        await self._queries.enqueue(
            [ENTRYPOINT] * len(keys), [str(k).encode() for k in keys], [0] * len(keys)
        )

    async def close_client(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    def run_worker(self, dsn: str, concurrency: int, ready: Callable[[], None]) -> None:
        asyncio.run(self._work(dsn, concurrency, ready))

    async def _work(self, dsn: str, concurrency: int, ready: Callable[[], None]) -> None:
        from pgqueuer import PgQueuer
        from pgqueuer.models import Job

        conn = await self._connect(dsn)
        pgq = PgQueuer.from_asyncpg_connection(conn)

        # PgQueuer refuses a worker cap below twice its batch: one job at a time is a batch
        # of one and the entrypoint's own limit of one, enforced in its dequeue query.
        serial = concurrency == 1

        @pgq.entrypoint(ENTRYPOINT, concurrency_limit=1 if serial else 0)
        async def noop(job: Job) -> None:
            marks.job_started((job.payload or b"0").decode())

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, pgq.shutdown.set)
        ready()
        try:
            if serial:
                await pgq.run(batch_size=1)
            else:
                await pgq.run(
                    batch_size=BATCH_SIZE, max_concurrent_tasks=max(concurrency, 2 * BATCH_SIZE)
                )
        finally:
            await conn.close()
