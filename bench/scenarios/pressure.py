"""Scenario ``pressure``: drain while another session holds a REPEATABLE READ snapshot open.

The open snapshot keeps VACUUM and page pruning from removing the tuples the queue leaves
dead, as a long report or a forgotten transaction would. One worker process drains
``pressure_jobs`` jobs; the result is compared with the one-process drain of the ``drain``
scenario, and dead tuples are read after the workers stopped, the snapshot still open.
"""

from __future__ import annotations

import psycopg

from bench.context import Bench, System
from bench.scenarios.common import MEASUREMENT_ERRORS, drain, failed, rounds, say

NAME = "pressure"


async def run(bench: Bench, systems: list[System]) -> None:
    sizes = bench.sizes
    for system in systems:
        if not system.adapter.uses_postgres:
            say(f"{system.name:<14} pressure: not applicable (jobs are not kept in PostgreSQL)")
    eligible = [s for s in systems if s.adapter.uses_postgres]
    for rep, system in rounds(eligible, sizes.repetitions_slow):
        try:
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
                        sizes.pressure_jobs,
                        fill=True,
                        keep=(holder.info.backend_pid,),
                    )
                    await holder.rollback()
        except MEASUREMENT_ERRORS as exc:
            failed(system, NAME, exc)
            continue
        system.record(NAME, {"round": rep, **outcome.as_dict()})
        say(
            f"{system.name:<14} pressure       {outcome.per_second or 0:>10,.0f} jobs/s"
            f"  dead tuples {outcome.dead_tuples or 0:,}"
        )
