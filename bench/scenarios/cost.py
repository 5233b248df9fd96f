"""Scenario ``cost``: what one job costs the database, per job.

Three windows, each closed after every connection of the system has gone (so per-table
counters are flushed): enqueueing ``cost_jobs`` jobs one per transaction; processing them
with one worker process (its start-up and shut-down included); and, in another fresh
database, enqueueing as many in batches. Each window reports rows written
(inserted + updated + deleted), WAL bytes and round trips, divided by the number of jobs.
"""

from __future__ import annotations

import asyncio
import time

from bench import observe
from bench.context import Bench, Database, System
from bench.procs import Workers
from bench.scenarios.common import (
    MEASUREMENT_ERRORS,
    POLL_INTERVAL,
    enqueue,
    failed,
    rounds,
    say,
)

NAME = "cost"


async def _process(bench: Bench, system: System, db: Database, jobs: int) -> bool:
    """Run one worker until the queue is empty (bounded by the drain timeout)."""
    marks = bench.workdir / f"marks-{db.name}.txt"
    async with await bench.observer(db) as observer:
        async with Workers(
            system.adapter, db.dsn, 1, bench.concurrency, bench.workdir, marks, "first"
        ) as workers:
            await workers.go()
            deadline = time.monotonic() + bench.sizes.drain_timeout
            while time.monotonic() < deadline:
                if await system.adapter.unfinished(observer, jobs) == 0:
                    return True
                workers.check_alive()
                await asyncio.sleep(POLL_INTERVAL * 4)
    return False


async def _window_enqueue(
    bench: Bench, system: System, db: Database, mode: str, jobs: int
) -> observe.Cost:
    async with await bench.server.admin() as admin, await bench.observer(db) as observer:
        before = await bench.snapshot(admin, observer, db)
        await enqueue(bench, system, db, mode, jobs)
        await observe.wait_idle(admin, db.name, (observer.info.backend_pid,))
        after = await bench.snapshot(admin, observer, db)
    return observe.cost(before, after, jobs)


async def _measure(bench: Bench, system: System) -> dict[str, object]:
    jobs = bench.sizes.cost_jobs
    async with bench.database(system, "cost_single") as db:
        single = await _window_enqueue(bench, system, db, "single", jobs)
        async with await bench.server.admin() as admin, await bench.observer(db) as observer:
            before = await bench.snapshot(admin, observer, db)
            completed = await _process(bench, system, db, jobs)
            await observe.wait_idle(admin, db.name, (observer.info.backend_pid,))
            after = await bench.snapshot(admin, observer, db)
        processing = observe.cost(before, after, jobs)
    async with bench.database(system, "cost_batch") as db:
        batch = await _window_enqueue(bench, system, db, "batch", jobs)
    total = observe.Cost(
        *(
            a + b
            for a, b in zip(single.__dict__.values(), processing.__dict__.values(), strict=True)
        )
    )
    return {
        "jobs": jobs,
        "drained": completed,
        "enqueue_single": single.as_dict(),
        "enqueue_batch": batch.as_dict(),
        "processing": processing.as_dict(),
        "single_and_processing": total.as_dict(),
    }


async def run(bench: Bench, systems: list[System]) -> None:
    for system in systems:
        if not system.adapter.uses_postgres:
            say(f"{system.name:<14} cost: not applicable (jobs are not kept in PostgreSQL)")
    eligible = [s for s in systems if s.adapter.uses_postgres]
    for rep, system in rounds(eligible, bench.sizes.repetitions_slow):
        try:
            result = await _measure(bench, system)
        except MEASUREMENT_ERRORS as exc:
            failed(system, NAME, exc)
            continue
        system.record(NAME, {"round": rep, **result})
        per = result["single_and_processing"]
        assert isinstance(per, dict)
        say(
            f"{system.name:<14} cost per job   rows {per['rows']:.1f}"
            f"  WAL {per['wal_bytes']:,.0f} B  round trips {per['round_trips']:.2f}"
        )
