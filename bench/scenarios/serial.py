"""Scenario ``serial``: one worker process at concurrency 1 drains a queue of no-op jobs.

One job at a time: every claim and every finish is a batch of one, and the round trips of
each job lie on the path to the next, where ``drain`` (at the run's ``--concurrency``) lets
a system spread them over many jobs. The queue is filled while the worker starts behind its
gate; a fresh database for every measurement, systems taking turns.
"""

from __future__ import annotations

from bench.context import Bench, System
from bench.scenarios.common import MEASUREMENT_ERRORS, drain, failed, rounds, say

NAME = "serial"


async def run(bench: Bench, systems: list[System]) -> None:
    jobs = bench.sizes.serial_jobs
    for rep, system in rounds(systems, bench.sizes.repetitions):
        try:
            async with bench.database(system, "serial") as db:
                outcome = await drain(bench, system, db, 1, jobs, fill=True, concurrency=1)
        except MEASUREMENT_ERRORS as exc:
            failed(system, NAME, exc)
            continue
        system.record(NAME, {**outcome.as_dict(), "round": rep})
        note = " (timed out)" if outcome.timed_out else ""
        say(f"{system.name:<14} serial         {outcome.per_second or 0:>10,.0f} jobs/s{note}")
