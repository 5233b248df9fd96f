"""Attempts whose handler outlives their end: held open, and reported alive, until it is gone.

A handler that runs inline (a thread, or a task on the event loop) cannot be killed. When it
is still running at its deadline, on a cancel request or when its worker stops, its attempt
stays open until the handler really ends: a retry, or a rescue by another worker, would
otherwise start a second run of the job beside it. While it runs, the worker reports it with
``jobqueue.hold_attempts`` on every heartbeat, and the rescuer leaves a held attempt alone
until the reports stop (``stale_after``): once the worker process dies, so do its handlers,
and the attempt is rescued seconds later. A handler being killed (process mode) is held the
same way for the few seconds the kill may take.

The registry is per process, not per worker: a worker restarted after a database error (same
process) keeps reporting the handlers its predecessor left running, and counts them against
its slots (:meth:`Holds.adopt`), so a stream of hung handlers cannot grow threads without
bound across restarts either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import psycopg_pool

from jobqueue import calls, db

logger = logging.getLogger("jobqueue.worker")

Ids = tuple[int, int]  # (job id, attempt)


@dataclass
class _Held:
    # Whom to tell when an orphan's handler ends: the slots of the worker that counted it.
    adopter: Callable[[], None] | None = None
    orphan: bool = False


class Holds:
    """Attempts held open because their handler still runs; orphans are those whose bridge
    already returned (their worker stopped while the handler ran on)."""

    def __init__(self) -> None:
        self._held: dict[Ids, _Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, ids: object) -> bool:
        return ids in self._held

    def ids(self) -> list[Ids]:
        return list(self._held)

    def add(self, ids: Ids) -> None:
        """Hold an attempt whose handler runs past its end."""
        self._held.setdefault(ids, _Held())

    def orphan(self, ids: Ids) -> None:
        """The attempt's bridge is returning while its handler runs on: the next worker of
        this process counts it (see :meth:`adopt`) until :meth:`discard`."""
        self._held.setdefault(ids, _Held()).orphan = True

    def discard(self, ids: Ids) -> None:
        """The handler is gone."""
        held = self._held.pop(ids, None)
        if held is not None and held.orphan and held.adopter is not None:
            held.adopter()

    def adopt(self, give: Callable[[], None]) -> int:
        """Count the orphans against a starting worker's slots: returns how many slots to
        take, and ``give()`` frees one each time an orphan's handler ends."""
        orphans = [held for held in self._held.values() if held.orphan]
        for held in orphans:
            held.adopter = give
        return len(orphans)


holds = Holds()


async def report(pool: psycopg_pool.AsyncConnectionPool, registry: Holds = holds) -> int:
    """Tell the database that the held attempts' handlers still run; returns how many of
    them are still open."""
    held = registry.ids()
    if not held:
        return 0
    with db.translated():
        async with pool.connection() as conn:
            call = calls.hold_attempts(held)
            cur = await conn.execute(call.sql, call.params)
            row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0
