"""Scenario ``pressure``: drain while another session holds a REPEATABLE READ snapshot open.

The open snapshot keeps VACUUM and page pruning from removing the tuples the queue leaves
dead, as a long report or a forgotten transaction would. Each round drains ``pressure_jobs``
jobs with one worker process twice, each in a fresh database: first plainly, then under the
open snapshot, so the two run back to back under the same conditions. Dead tuples are read
after the workers stopped (the snapshot still open).
"""

from __future__ import annotations

import psycopg

from bench.context import Bench, System
from bench.scenarios.common import MEASUREMENT_ERRORS, Drain, drain, failed, rounds, say

NAME = "pressure"


async def _plain(bench: Bench, system: System) -> Drain:
    async with bench.database(system, "pressure_plain") as db:
        return await drain(bench, system, db, 1, bench.sizes.pressure_jobs, fill=True)


async def _pressured(bench: Bench, system: System) -> Drain:
    async with bench.database(system, "pressure") as db:
        holder = await bench.observer(db)
        async with holder:
            await holder.set_autocommit(False)
            await holder.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
            await holder.execute("SELECT txid_current()")
            outcome = await drain(
                bench,
                system,
                db,
                1,
                bench.sizes.pressure_jobs,
                fill=True,
                keep=(holder.info.backend_pid,),
            )
            await holder.rollback()
    return outcome


async def run(bench: Bench, systems: list[System]) -> None:
    for system in systems:
        if not system.adapter.uses_postgres:
            say(f"{system.name:<14} pressure: not applicable (jobs are not kept in PostgreSQL)")
    eligible = [s for s in systems if s.adapter.uses_postgres]
    for rep, system in rounds(eligible, bench.sizes.repetitions_slow):
        try:
            plain = await _plain(bench, system)
            pressured = await _pressured(bench, system)
        except MEASUREMENT_ERRORS as exc:
            failed(system, NAME, exc)
            continue
        ratio = (
            pressured.per_second / plain.per_second
            if pressured.per_second and plain.per_second
            else None
        )
        system.record(
            NAME,
            {
                "round": rep,
                "plain": plain.as_dict(),
                "pressured": pressured.as_dict(),
                "ratio": ratio,
            },
        )
        say(
            f"{system.name:<14} pressure       {pressured.per_second or 0:>10,.0f} jobs/s"
            f" (plain {plain.per_second or 0:,.0f})  dead tuples {pressured.dead_tuples or 0:,}"
            f" (plain {plain.dead_tuples or 0:,})"
        )
