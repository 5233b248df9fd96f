"""Scenario ``drain``: a queue of no-op jobs, then 1, 2, 4 worker processes; jobs/s to empty it.

Every worker process runs with the same concurrency. The queue is filled (batch enqueue) while
the workers start behind their gate, and they are released together once it is full; a fresh
database for every measurement.
"""

from __future__ import annotations

from bench.context import Bench, System
from bench.scenarios.common import MEASUREMENT_ERRORS, drain, failed, rounds, say

NAME = "drain"


async def run(bench: Bench, systems: list[System]) -> None:
    sizes = bench.sizes
    for rep, system in rounds(systems, sizes.repetitions):
        for processes in sizes.processes:
            try:
                async with bench.database(system, f"drain{processes}") as db:
                    outcome = await drain(bench, system, db, processes, sizes.drain_jobs, fill=True)
            except MEASUREMENT_ERRORS as exc:
                failed(system, NAME, exc)
                continue
            result = {**outcome.as_dict(), "round": rep}
            system.record(NAME, result)
            rate = outcome.per_second
            note = " (timed out)" if outcome.timed_out else ""
            say(f"{system.name:<14} drain x{processes}      {rate or 0:>10,.0f} jobs/s{note}")
