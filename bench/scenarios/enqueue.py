"""Scenario ``enqueue``: jobs/s enqueued one per transaction, and in batches of 1,000.

No worker runs. Each measurement enqueues into a fresh database.
"""

from __future__ import annotations

from bench.context import Bench, System
from bench.scenarios.common import MEASUREMENT_ERRORS, enqueue, failed, rounds, say

NAME = "enqueue"


async def run(bench: Bench, systems: list[System]) -> None:
    sizes = bench.sizes
    for rep, system in rounds(systems, sizes.repetitions):
        for mode, count in (
            ("single", sizes.enqueue_single),
            ("batch", sizes.enqueue_batches * sizes.batch_size),
        ):
            try:
                async with bench.database(system, f"enqueue_{mode}") as db:
                    result = await enqueue(bench, system, db, mode, count)
            except MEASUREMENT_ERRORS as exc:
                failed(system, NAME, exc)
                continue
            result["round"] = rep
            system.record(NAME, result)
            say(f"{system.name:<14} enqueue {mode:<6} {result['per_second']:>10,.0f} jobs/s")
