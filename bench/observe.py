"""What a measurement cost the database: rows written, WAL, round trips, dead tuples.

A snapshot sums ``pg_stat_user_tables`` of the measurement's database, reads the WAL insert
position, and counts statements: from pg_stat_statements (``calls`` of that database, less
the harness's own observer role) when the server has it loaded, else from
``pg_stat_database`` (committed and rolled-back transactions, which includes the harness's
polling). Per-table counters reach the statistics system when a backend exits, so the caller
takes the closing snapshot after :func:`wait_idle`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import psycopg

IDLE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Snapshot:
    inserted: int
    updated: int
    deleted: int
    dead: int
    wal: int
    statements: int


@dataclass(frozen=True)
class Cost:
    """The difference of two snapshots, per job."""

    rows: float
    inserted: float
    updated: float
    deleted: float
    wal_bytes: float
    round_trips: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


async def snapshot(
    admin: psycopg.AsyncConnection,
    observer: psycopg.AsyncConnection,
    database: str,
    observer_role: str | None,
    use_statements: bool,
) -> Snapshot:
    """Counters of ``database`` now (``observer`` is connected to it, ``admin`` elsewhere)."""
    await observer.execute("SELECT pg_stat_clear_snapshot()")
    cur = await observer.execute(
        "SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0),"
        " coalesce(sum(n_tup_del), 0), coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables"
    )
    row = await cur.fetchone()
    assert row is not None
    inserted, updated, deleted, dead = (int(v) for v in row)
    await admin.execute("SELECT pg_stat_clear_snapshot()")
    cur = await admin.execute("SELECT pg_current_wal_insert_lsn()::text")
    lsn = await cur.fetchone()
    assert lsn is not None
    if use_statements:
        cur = await admin.execute(
            "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements AS s"
            " JOIN pg_database AS d ON d.oid = s.dbid"
            " LEFT JOIN pg_roles AS r ON r.oid = s.userid"
            " WHERE d.datname = %s AND r.rolname IS DISTINCT FROM %s",
            (database, observer_role),
        )
    else:
        cur = await admin.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (database,),
        )
    calls = await cur.fetchone()
    statements = int(calls[0]) if calls else 0
    return Snapshot(inserted, updated, deleted, dead, _lsn(str(lsn[0])), statements)


def cost(before: Snapshot, after: Snapshot, jobs: int) -> Cost:
    n = max(jobs, 1)
    inserted = after.inserted - before.inserted
    updated = after.updated - before.updated
    deleted = after.deleted - before.deleted
    return Cost(
        rows=(inserted + updated + deleted) / n,
        inserted=inserted / n,
        updated=updated / n,
        deleted=deleted / n,
        wal_bytes=(after.wal - before.wal) / n,
        round_trips=(after.statements - before.statements) / n,
    )


async def wait_idle(
    admin: psycopg.AsyncConnection, database: str, keep: tuple[int, ...] = ()
) -> bool:
    """Wait until no client backend but ``keep`` is connected to ``database``."""
    deadline = time.monotonic() + IDLE_TIMEOUT
    while time.monotonic() < deadline:
        cur = await admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
            " AND backend_type = 'client backend' AND NOT (pid = ANY(%s))",
            (database, list(keep)),
        )
        row = await cur.fetchone()
        if row and int(row[0]) == 0:
            return True
        await asyncio.sleep(0.02)
    return False
