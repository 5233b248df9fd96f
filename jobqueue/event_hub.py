"""The event hub: one LISTEN connection per web process, fanned out to SSE subscribers.

Flow of one event. A state change writes its event, with an id of its own, into the
``jobqueue.event_batch`` row of its statement and organization; the writer sends
``NOTIFY jobqueue_events`` with an empty payload at commit. The :class:`EventHub` task of this
process holds the only LISTEN connection (autocommit). A notification only wakes it: any login
that can connect may LISTEN and NOTIFY on any channel, so nothing is read from a payload. Woken,
the hub reads the committed rows it has not published yet with ``jobqueue.event_feed`` on that
same connection, and puts the ones each :class:`Subscription` may see into its bounded queue, as
one :class:`Batch` per read; :mod:`jobqueue.sse` turns them into messages.

Exactly once, in commit order or not. Event ids are taken at insert and become visible at
commit, so a lower id can appear after a higher one has been read. The hub keeps the highest
id it has read and, from each read's snapshot, the transactions still in progress with an id
below which all of their events lie; ``event_feed`` returns the rows after the high-water mark
plus those of watched transactions that have finished since. "In progress" is the snapshot's
list plus the transaction ids past its xmax (``_invisible_transactions``). Every committed row
is published once, and no forged or missing id can move the mark. Transactions already in
progress when the hub starts are watched from ``STARTUP_MARGIN`` ids below its starting point.

Visibility. A subscription starts with the organization ids ``list_organizations(actor)``
answers. The hub re-checks every open subscription's credential in one query
(``check_credentials``) whenever ``NOTIFY jobqueue_access`` says a token was revoked, a session
ended or a membership removed, and every ``sse_refresh_seconds``: a feed whose credential no
longer authenticates, or whose caller now sees fewer organizations, ends at once (the client
reconnects, or is refused); a feed ends at its credential's expiry too.

Limits. ``sse_max_streams`` open feeds per process and ``sse_max_per_user`` per user; over
either, ``429`` (``Throttled``). Each queue holds at most ``sse_buffer`` events; when it is full
the hub marks that subscription overflowed and its feed ends, so the client reconnects with its
last cursor and catches up from the table. When the LISTEN connection drops, the hub
reconnects with backoff and reads on from where it was. On shutdown the lifespan cancels the
hub's tasks, which closes the LISTEN connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from jobqueue import calls, db, errors
from jobqueue.client import AsyncClient
from jobqueue.feed_cursor import Cursor, Pending

CHANNEL = "jobqueue_events"
ACCESS_CHANNEL = "jobqueue_access"
# Names the LISTEN connection in pg_stat_activity.
APPLICATION_NAME = "jobqueue-web-events"
FEED_PAGE = 1000
# Transactions in progress when the hub starts may hold ids below its starting point; their
# events are looked for this far below it: a thousand event rows (each takes 1,024 ids).
STARTUP_MARGIN = 1000 * 1024
# Reads on a quiet connection: a watched transaction that ends without writing an event
# sends no notification, and a dead connection shows up here.
IDLE_READ_SECONDS = 5.0
# The least time between two reads (or two credential checks): a flood of notifications
# costs at most this many queries a second.
MIN_READ_GAP = 0.005
MIN_CHECK_GAP = 0.1
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """The events of one hub read that a subscriber may see, in the order read (the late ones,
    then the new ones, each run in id order), each with the transaction that wrote it; and the
    transactions in progress at that read, each with an id below all of its events."""

    events: list[tuple[dict[str, Any], int | None]]
    watching: Pending = field(default_factory=dict)
    complete: bool = True  # False: the read was one page, more events follow at once


@dataclass(eq=False)
class Subscription:
    """One SSE client: what it may see, what it asked for, and its bounded buffer."""

    actor: str
    org_ids: frozenset[int] | None  # None: every organization (an admin)
    job_id: int | None
    org_id: int | None
    queue: asyncio.Queue[Batch | None]
    buffer: int = 1000  # events held at most; past it, the feed ends and the client resumes
    held: int = 0
    token: str = ""  # the credential it was opened with, re-checked by the hub
    expires_at: datetime | None = None
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, event: dict[str, Any]) -> bool:
        org = event.get("org_id")
        if self.org_ids is not None and org not in self.org_ids:
            return False
        if self.org_id is not None and org != self.org_id:
            return False
        return self.job_id is None or event.get("job") == self.job_id

    def offer(self, batch: Batch) -> None:
        if self.overflowed.is_set() or self.ended.is_set():
            return
        mine = [(event, xact) for event, xact in batch.events if self.wants(event)]
        if not mine:
            return
        if self.held + len(mine) > self.buffer:
            self.overflowed.set()
            self.queue.put_nowait(None)  # wakes the generator
            return
        self.held += len(mine)
        self.queue.put_nowait(Batch(mine, batch.watching, batch.complete))

    async def next_batch(self, timeout: float | None) -> Batch | None:
        """The next batch (None: the feed ends), or TimeoutError."""
        batch = await asyncio.wait_for(self.queue.get(), timeout)
        if batch is not None:
            self.held -= len(batch.events)
        return batch

    def end(self) -> None:
        """End the feed: its caller's credential or access changed."""
        self.ended.set()
        self.queue.put_nowait(None)  # wakes the generator


def narrower(old: frozenset[int] | None, new: frozenset[int] | None) -> bool:
    """Whether ``new`` lets its caller see less than ``old`` (None: everything)."""
    if new is None:
        return False
    return old is None or not old <= new


class EventHub:
    """Holds the process's LISTEN connection, reads new events from the table when woken, and
    fans them out in memory; re-checks the open feeds' credentials when access changes."""

    def __init__(
        self,
        dsn: str,
        client: AsyncClient,
        *,
        backoff_max: float = 5.0,
        refresh_seconds: float = 10.0,
        max_streams: int = 1000,
        max_per_user: int = 20,
    ):
        self._dsn = dsn
        self._client = client
        self._backoff_max = backoff_max
        self._refresh_seconds = refresh_seconds
        self._max_streams = max_streams
        self._max_per_user = max_per_user
        self._subscribers: set[Subscription] = set()
        self._after: int | None = None  # the highest event id read
        self._watching: dict[int, int] = {}  # transaction -> an id below all of its events
        self._access_changed = asyncio.Event()
        self._checked_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def admit(self, subscription: Subscription) -> None:
        """Register a new feed, or refuse it (Throttled) over the process's or user's cap."""
        if len(self._subscribers) >= self._max_streams:
            raise errors.Throttled(
                f"this server has {self._max_streams} open event feeds, its limit",
                detail={"retry_after": 5},
            )
        mine = sum(1 for s in self._subscribers if s.actor == subscription.actor)
        if mine >= self._max_per_user:
            raise errors.Throttled(
                f"user {subscription.actor!r} has {mine} open event feeds, the limit",
                detail={"retry_after": 5},
            )
        self._subscribers.add(subscription)

    def add(self, subscription: Subscription) -> None:
        self._subscribers.add(subscription)

    def remove(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish(self, batch: Batch) -> None:
        """Deliver one read's events (rows read from the table) to every subscriber, each
        getting those it may see."""
        for subscription in list(self._subscribers):
            subscription.offer(batch)

    def cursor(self) -> Cursor | None:
        """A resume cursor at the hub's last read (None before its first): a feed resuming from
        it gets every event that read did not publish, and perhaps some it did."""
        if self._after is None:
            return None
        return Cursor.at(self._after, self._watching)

    def horizon(self) -> tuple[int, dict[int, int]]:
        """The highest id read, and the transactions in progress at the last read, each with
        an id below all of its events: a transaction not among them started after that read,
        so all of its events lie above that id."""
        return self._after or 0, dict(self._watching)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="jobqueue-event-hub"),
            asyncio.create_task(self._check_access(), name="jobqueue-event-hub-access"),
        ]
        # Requests may start before the first LISTEN is up; wait for it so that a
        # subscriber registered now gets every later event.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), timeout=10)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                async with await db.connect_async(
                    self._dsn, autocommit=True, application_name=APPLICATION_NAME
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await conn.execute(f"LISTEN {ACCESS_CHANNEL}")
                    if self._after is None:
                        # Start after the rows already on record.
                        cur = await conn.execute("SELECT jobqueue.latest_event_id()")
                        row = await cur.fetchone()
                        self._after = int(row[0]) if row else 0
                        await self._read(conn, first=True)
                    else:
                        # Whatever was written while the connection was down; a feed whose
                        # access changed meanwhile is checked again.
                        self._access_changed.set()
                        await self._read(conn)
                    self.listening.set()
                    delay = 0.1
                    await self._follow(conn)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning("event hub: LISTEN connection lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_max)

    async def _follow(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Wait for wake-ups and read after each; their payloads are never looked at."""
        read_at = 0.0
        while True:
            channels: set[str] = set()
            # Every notification already waiting comes out in this one pass.
            async for notify in conn.notifies(timeout=IDLE_READ_SECONDS, stop_after=1):
                channels.add(notify.channel)
            if ACCESS_CHANNEL in channels:
                # Before reading: notifications come in commit order, so an event committed
                # after a revocation or a removal never reaches a feed it no longer belongs to.
                await self._recheck_now()
            if channels == {ACCESS_CHANNEL}:
                continue
            gap = read_at + MIN_READ_GAP - time.monotonic()
            if gap > 0:
                await asyncio.sleep(gap)
            read_at = time.monotonic()
            await self._read(conn)

    async def _read(self, conn: psycopg.AsyncConnection[Any], *, first: bool = False) -> None:
        """Publish every committed event not published yet (see the module's docstring)."""
        assert self._after is not None
        while True:
            after = self._after
            call = calls.event_feed(
                after, list(self._watching), list(self._watching.values()), max_rows=FEED_PAGE
            )
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(call.sql, call.params)
                row = await cur.fetchone()
            assert row is not None
            events: list[dict[str, Any]] = row["events"]
            late = int(row["late_events"])
            running = set(row["in_progress"])
            late_full = late == FEED_PAGE
            for xid in [x for x in self._watching if x not in running]:
                if late_full:
                    # Finished with more late rows than one page: on from the last one read,
                    # below the same high-water mark (the new rows wait for the next call).
                    self._watching[xid] = max(self._watching[xid], events[late - 1]["id"])
                else:
                    del self._watching[xid]
            new = [] if late_full else events[late:]
            if new:
                self._after = new[-1]["id"]
            low = max(0, after - STARTUP_MARGIN) if first else after
            for xid in running:
                self._watching.setdefault(xid, low)
            published = [(e, e.pop("xact", None)) for e in events[:late] + new]
            complete = len(new) < FEED_PAGE and not late_full
            if published:
                self.publish(Batch(published, dict(self._watching), complete))
            if complete:
                return

    async def _check_access(self) -> None:
        """Re-check every open feed's credential periodically (expiry, missed notifications)
        and after the LISTEN connection was lost."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._access_changed.wait(), self._refresh_seconds)
            self._access_changed.clear()
            await self._recheck_now()

    async def _recheck_now(self) -> None:
        """:meth:`recheck`, at most once per ``MIN_CHECK_GAP`` (a flood of notifications
        costs no more), logging a failure (a database outage) instead of raising it."""
        gap = self._checked_at + MIN_CHECK_GAP - time.monotonic()
        if gap > 0:
            await asyncio.sleep(gap)
        self._checked_at = time.monotonic()
        try:
            await self.recheck()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A database outage: the periodic check tries again.
            log.warning("event hub: checking the feeds' access failed (%s)", exc)

    async def recheck(self) -> None:
        """End every feed whose credential no longer authenticates as its user, or whose user
        now sees fewer organizations; keep the others' organizations and expiry current."""
        subscriptions = list(self._subscribers)
        if not subscriptions:
            return
        tokens = sorted({s.token for s in subscriptions})
        found = {tokens[c.ord - 1]: c for c in await self._client.check_credentials(tokens)}
        for subscription in subscriptions:
            credential = found.get(subscription.token)
            if credential is None or credential.user_name != subscription.actor:
                subscription.end()
                continue
            orgs = None if credential.organizations is None else frozenset(credential.organizations)
            if narrower(subscription.org_ids, orgs):
                subscription.end()
                continue
            subscription.org_ids = orgs
            subscription.expires_at = credential.expires_at
