"""``python -m bench.worker SYSTEM DSN CONCURRENCY [PICKUP_LOG]``: one worker process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys


async def run_jobqueue(dsn: str, concurrency: int) -> None:
    from jobqueue.worker import run_worker_async

    await run_worker_async(dsn, None, concurrency)


async def run_procrastinate(dsn: str, concurrency: int) -> None:
    from bench.systems.procrastinate_system import make_app

    app = make_app(dsn)
    async with app.open_async():
        await app.run_worker_async(concurrency=concurrency)


async def run_pgqueuer(dsn: str, concurrency: int) -> None:
    import psycopg
    from pgqueuer import Job, Queries, QueueManager

    from bench.handlers import record_start

    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    qm = QueueManager(Queries.from_psycopg_connection(conn))

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        record_start(job.payload.decode() if job.payload else None)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, qm.shutdown.set)
    # PgQueuer claims in batches of 10 by default; its cap must be at least twice that.
    await qm.run(batch_size=10, max_concurrent_tasks=max(concurrency, 20))


RUNNERS = {"jobqueue": run_jobqueue, "procrastinate": run_procrastinate, "pgqueuer": run_pgqueuer}


def main() -> None:
    system, dsn, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if len(sys.argv) > 4:
        os.environ["BENCH_PICKUP_LOG"] = sys.argv[4]
    asyncio.run(RUNNERS[system](dsn, concurrency))


if __name__ == "__main__":
    main()
