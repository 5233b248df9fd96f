"""What the scenarios share: rounds that alternate systems, filling a queue, timing a drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from bench import observe
from bench.context import Bench, Database, System
from bench.marks import read_marks
from bench.procs import ProcessError, Workers, run_client

#: Seconds between two "how many jobs are left" queries while a drain runs.
POLL_INTERVAL = 0.005


def rounds(systems: list[System], repetitions: int) -> Iterator[tuple[int, System]]:
    """(round, system) pairs; each round starts with the next system, so none always goes first."""
    for rep in range(repetitions):
        shift = rep % len(systems) if systems else 0
        for system in systems[shift:] + systems[:shift]:
            yield rep, system


def say(text: str) -> None:
    print(f"  {text}", flush=True)


def failed(system: System, scenario: str, exc: Exception) -> None:
    """Record a measurement that could not be made, and go on with the next one."""
    message = f"{scenario}: {exc}"
    system.errors.append(message)
    say(f"{system.name} {scenario} FAILED: {str(exc).splitlines()[0] if str(exc) else exc!r}")


MEASUREMENT_ERRORS = (ProcessError, OSError, TimeoutError, psycopg.Error)


async def enqueue(
    bench: Bench, system: System, db: Database, mode: str, count: int, first_key: int = 0
) -> dict[str, Any]:
    """Enqueue ``count`` jobs through the client; the result has ``seconds`` and ``per_second``."""
    result = await run_client(
        system.adapter,
        "enqueue",
        bench.workdir,
        bench.sizes.client_timeout,
        dsn=db.dsn,
        mode=mode,
        count=count,
        batch=bench.sizes.batch_size,
        first_key=first_key,
    )
    seconds = float(result["seconds"])
    return {"mode": mode, "jobs": count, "seconds": seconds, "per_second": count / seconds}


@dataclass
class Drain:
    """How a drain went."""

    processes: int
    jobs: int
    finished: int
    seconds: float | None
    timed_out: bool
    failed: int
    start_skew_ms: float | None
    dead_tuples: int | None

    @property
    def per_second(self) -> float | None:
        if self.seconds is None or self.seconds <= 0:
            return None
        return self.finished / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "per_second": self.per_second}


async def drain(
    bench: Bench,
    system: System,
    db: Database,
    processes: int,
    enqueued: int,
    *,
    fill: bool = False,
    keep: tuple[int, ...] = (),
    timeout: float | None = None,
    concurrency: int | None = None,
) -> Drain:
    """Release ``processes`` workers at once on a queue of ``enqueued`` jobs; time until all finish.

    With ``fill``, the jobs are enqueued (in batches) first, while the workers start up behind
    their gate. The clock starts when the first handler starts (worker start-up is not counted)
    and stops at the first poll that finds no unfinished job. After the workers stopped, dead
    tuples are read (connections in ``keep`` may stay open). A drain still running after
    ``timeout`` seconds (default: the sizes' ``drain_timeout``) is cut short. Each worker
    runs ``concurrency`` jobs at once (default: the run's ``--concurrency``).
    """
    adapter = system.adapter
    marks = bench.workdir / f"marks-{db.name}.txt"
    end_ns: int | None = None
    polled_ns = time.monotonic_ns()
    left = enqueued
    workers = Workers(
        adapter, db.dsn, processes, concurrency or bench.concurrency, bench.workdir, marks, "first"
    )
    async with await bench.server.admin() as admin, await bench.observer(db) as observer:
        starting = asyncio.ensure_future(workers.start())
        try:
            if fill:
                await enqueue(bench, system, db, "batch", enqueued)
            await starting
            await workers.go()
            deadline = time.monotonic() + (timeout or bench.sizes.drain_timeout)
            while time.monotonic() < deadline:
                polled_ns = time.monotonic_ns()
                left = await adapter.unfinished(observer, enqueued)
                if left == 0:
                    end_ns = polled_ns
                    break
                workers.check_alive()
                await asyncio.sleep(POLL_INTERVAL)
        finally:
            await asyncio.wait([starting])
            if not starting.cancelled():
                starting.exception()  # retrieved; raised above when it mattered
            await workers.stop()
        failures = await adapter.failed(observer)
        dead = None
        if adapter.uses_postgres:
            await observe.wait_idle(admin, db.name, (*keep, observer.info.backend_pid))
            dead = (await bench.snapshot(admin, observer, db)).dead
    starts = [m.ns for m in read_marks(marks)]
    seconds = skew = None
    if starts:
        first = min(starts)
        skew = (max(starts) - first) / 1e6
        seconds = ((end_ns if end_ns is not None else polled_ns) - first) / 1e9
    return Drain(
        processes=processes,
        jobs=enqueued,
        finished=enqueued - left,
        seconds=seconds,
        timed_out=end_ns is None,
        failed=failures,
        start_skew_ms=skew,
        dead_tuples=dead,
    )
