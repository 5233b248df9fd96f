"""Scenario ``noisy``: a noisy neighbour. Organization A's backlog, then B's trickle.

One worker process. First B alone, on an idle queue: ``noisy_jobs`` jobs submitted one every
``noisy_gap`` seconds, each without waiting for the others (B's idle pick-up latency). Then,
in a fresh database, A's ``noisy_backlog`` jobs are enqueued (in batches) while the worker
waits behind its gate; the worker is released and B submits the same trickle as A's backlog
drains. Reported: B's pick-up latency (from the return of its submit to its handler's first
line, p50 and p99) against its idle figures, and A's drain rate (A's jobs from the first
handler start to the last). A system without tenants (every peer) files B's jobs in the same
queue as A's, behind A's backlog, which is what a FIFO queue does to a late organization.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.context import Bench, Database, System
from bench.marks import read_marks
from bench.procs import Workers, run_client
from bench.scenarios.common import MEASUREMENT_ERRORS, POLL_INTERVAL, failed, rounds, say
from bench.stats import percentile

NAME = "noisy"
#: B's keys start here, so a handler's mark says whose job it ran.
B_FIRST_KEY = 10_000_000


def _latencies(submitted: list[list[int]], marks: dict[int, int]) -> list[float]:
    return [(marks[key] - after) / 1e6 for key, _before, after in submitted if key in marks]


async def _trickle(bench: Bench, system: System, db: Database, marks: Any, wait: float) -> Any:
    sizes = bench.sizes
    return await run_client(
        system.adapter,
        "trickle",
        bench.workdir,
        sizes.client_timeout + wait,
        dsn=db.dsn,
        count=sizes.noisy_jobs,
        gap=sizes.noisy_gap,
        marks=marks,
        timeout=wait,
        tenant="b",
        first_key=B_FIRST_KEY,
    )


async def _idle(bench: Bench, system: System) -> list[float]:
    async with bench.database(system, "noisy_idle") as db:
        marks = bench.workdir / f"marks-{db.name}.txt"
        async with Workers(
            system.adapter, db.dsn, 1, bench.concurrency, bench.workdir, marks, "all"
        ) as workers:
            await workers.go()
            out = await _trickle(bench, system, db, marks, 60.0)
    started = {m.key: m.ns for m in read_marks(marks)}
    return _latencies(out["submitted"], started)


async def _noisy(bench: Bench, system: System) -> dict[str, Any]:
    sizes = bench.sizes
    adapter = system.adapter
    async with bench.database(system, "noisy") as db:
        marks = bench.workdir / f"marks-{db.name}.txt"
        workers = Workers(adapter, db.dsn, 1, bench.concurrency, bench.workdir, marks, "all")
        async with await bench.observer(db) as observer:
            starting = asyncio.ensure_future(workers.start())
            trickle: asyncio.Future[Any] | None = None
            timed_out = True
            try:
                await run_client(
                    adapter,
                    "fill",
                    bench.workdir,
                    sizes.client_timeout,
                    dsn=db.dsn,
                    count=sizes.noisy_backlog,
                    batch=sizes.batch_size,
                    tenant="a",
                )
                await starting
                await workers.go()
                trickle = asyncio.ensure_future(
                    _trickle(bench, system, db, marks, sizes.drain_timeout)
                )
                total = sizes.noisy_backlog + sizes.noisy_jobs
                deadline = time.monotonic() + sizes.drain_timeout
                while time.monotonic() < deadline:
                    if trickle.done() and await adapter.unfinished(observer, total) == 0:
                        timed_out = False
                        break
                    workers.check_alive()
                    await asyncio.sleep(POLL_INTERVAL)
                out = await trickle
            finally:
                await asyncio.wait([starting])
                if not starting.cancelled():
                    starting.exception()
                if trickle is not None and not trickle.done():
                    trickle.cancel()
                await workers.stop()
    started = read_marks(marks)
    a_starts = sorted(m.ns for m in started if m.key < B_FIRST_KEY)
    b_last = max((m.ns for m in started if m.key >= B_FIRST_KEY), default=0)
    b_latencies = _latencies(out["submitted"], {m.key: m.ns for m in started})
    a_seconds = (a_starts[-1] - a_starts[0]) / 1e9 if len(a_starts) > 1 else None
    return {
        "samples_ms": [round(s, 3) for s in b_latencies],
        "missed": len(out["submitted"]) - len(b_latencies),
        "a_jobs": len(a_starts),
        "a_seconds": a_seconds,
        "a_per_second": len(a_starts) / a_seconds if a_seconds else None,
        # How much of A's backlog was left when B's last job started: a FIFO queue leaves none.
        "a_left_at_b_end": sum(1 for ns in a_starts if ns > b_last),
        "timed_out": timed_out,
    }


async def run(bench: Bench, systems: list[System]) -> None:
    for rep, system in rounds(systems, bench.sizes.repetitions_slow):
        try:
            idle = await _idle(bench, system)
            result = await _noisy(bench, system)
        except MEASUREMENT_ERRORS as exc:
            failed(system, NAME, exc)
            continue
        result = {"round": rep, "idle_samples_ms": [round(s, 3) for s in idle], **result}
        system.record(NAME, result)
        b = result["samples_ms"]
        note = " (timed out)" if result["timed_out"] else ""
        say(
            f"{system.name:<14} noisy          B p50 {percentile(b, 50) or 0:8.2f} ms"
            f"  p99 {percentile(b, 99) or 0:8.2f} ms (idle {percentile(idle, 99) or 0:.2f})"
            f"  A {result['a_per_second'] or 0:,.0f} jobs/s{note}"
        )
