"""Scenario ``history``: enqueue and drain again with many finished jobs in the tables.

For each system a history database is built once (all systems at the same time, before any
measurement): the schema, ``history_jobs`` finished jobs written the way the system leaves
them (``Adapter.add_history``), then VACUUM ANALYZE. Every round copies it, enqueues one
per transaction and in batches, drains with one process, and times the system's own read
queries (``Adapter.history_reads``: jobqueue's ``list_jobs`` first page and ``metrics``).
"""

from __future__ import annotations

import asyncio
import time

from bench.context import Bench, Database, System
from bench.scenarios.common import MEASUREMENT_ERRORS, drain, enqueue, failed, rounds, say

NAME = "history"


async def _build(bench: Bench, system: System) -> str:
    name = bench.database_name(system, "history_template")
    started = time.monotonic()
    await bench.server.create_database(name, system.template)
    async with await bench.observer(Database(name, bench.server.dsn_for(name))) as conn:
        await system.adapter.add_history(conn, bench.sizes.history_jobs)
        await conn.execute("VACUUM ANALYZE")
    say(
        f"{system.name:<14} history of {bench.sizes.history_jobs:,} finished jobs written"
        f" in {time.monotonic() - started:.1f}s"
    )
    return name


async def run(bench: Bench, systems: list[System]) -> None:
    sizes = bench.sizes
    eligible = [s for s in systems if s.adapter.uses_postgres]
    for system in systems:
        if not system.adapter.uses_postgres:
            say(f"{system.name:<14} history: not applicable (jobs are not kept in PostgreSQL)")
    templates: dict[str, str] = {}
    try:
        # The systems' histories are written side by side; this is set-up, not measured.
        built = await asyncio.gather(
            *(_build(bench, system) for system in eligible), return_exceptions=True
        )
        for system, made in zip(eligible, built, strict=True):
            if isinstance(made, str):
                templates[system.name] = made
            elif isinstance(made, MEASUREMENT_ERRORS + (NotImplementedError,)):
                failed(system, NAME, made)
            else:
                raise made
        for rep, system in rounds(
            [s for s in eligible if s.name in templates], sizes.repetitions_slow
        ):
            try:
                async with bench.database(
                    system, "history", template=templates[system.name], file_copy=True
                ) as db:
                    single = await enqueue(bench, system, db, "single", sizes.history_single)
                    batch = await enqueue(
                        bench,
                        system,
                        db,
                        "batch",
                        sizes.history_batch,
                        first_key=sizes.history_single,
                    )
                    outcome = await drain(
                        bench,
                        system,
                        db,
                        1,
                        sizes.history_single + sizes.history_batch,
                        timeout=sizes.history_drain_timeout,
                    )
                    async with await bench.observer(db) as conn:
                        reads = await system.adapter.history_reads(conn)
            except MEASUREMENT_ERRORS as exc:
                failed(system, NAME, exc)
                continue
            system.record(
                NAME,
                {
                    "round": rep,
                    "history_jobs": sizes.history_jobs,
                    "enqueue_single_per_second": single["per_second"],
                    "enqueue_batch_per_second": batch["per_second"],
                    "drain": outcome.as_dict(),
                    "reads_ms": reads,
                },
            )
            say(
                f"{system.name:<14} history        single {single['per_second']:,.0f}/s"
                f"  batch {batch['per_second']:,.0f}/s  drain {outcome.per_second or 0:,.0f}/s"
                + (" (cut short)" if outcome.timed_out else "")
                + "".join(f"  {k.removesuffix('_ms')} {v:.1f} ms" for k, v in (reads or {}).items())
            )
    finally:
        for name in templates.values():
            await bench.server.drop_database(name)
