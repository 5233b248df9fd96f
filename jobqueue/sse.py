"""The live event feed: one LISTEN connection per process, fanned out to SSE subscribers.

Flow of one event. A state change writes its event, with an id of its own, into the
``jobqueue.event_batch`` row of its statement and organization; the writer sends
``NOTIFY jobqueue_events`` with an empty payload at commit. The :class:`EventHub` task of this
process holds the only LISTEN connection (autocommit). A notification only wakes it: any login
that can connect may LISTEN and NOTIFY on any channel, so nothing is read from a payload. Woken,
the hub reads the committed rows it has not published yet with ``jobqueue.event_feed`` on that
same connection, and puts each into the bounded queue of every :class:`Subscription` whose
organizations include the event's. A subscriber's generator (:func:`stream_events`, run by
sse-starlette's ``EventSourceResponse``) reads its queue and yields one message per event:
``id:`` the event row id, ``event:`` its type, ``data:`` the JSON.

Exactly once, in commit order or not. Event ids are taken at insert and become visible at
commit, so a lower id can appear after a higher one has been read. The hub keeps the highest
id it has read and, from each read's snapshot, the transactions still in progress with an id
below which all of their events lie; ``event_feed`` returns the rows after the high-water mark
plus those of watched transactions that have finished since. Every committed row is published
once, and no forged or missing id can move the mark. Transactions already in progress when the
hub starts are watched from ``STARTUP_MARGIN`` ids below its starting point.

Visibility. A subscription starts with the organization ids ``list_organizations(actor)``
answers. The hub re-checks every open subscription's credential in one query
(``check_credentials``) whenever ``NOTIFY jobqueue_access`` says a token was revoked, a session
ended or a membership removed, and every ``sse_refresh_seconds``: a feed whose credential no
longer authenticates, or whose caller now sees fewer organizations, ends at once (the client
reconnects, or is refused); a feed ends at its credential's expiry too.

Resuming. With ``Last-Event-ID`` (header, or ``last_event_id`` query parameter for clients
that cannot set it), the subscription is registered with the hub *first*, then the missed
events are read with ``events_since`` and sent, ``sse_replay_max`` at most per request (the
response then ends, and the client resumes from the last id it got); live events with an id at
or below the last one sent are dropped, so nothing is lost between the replay and the live feed
and nothing is sent twice. A live event whose id is below one already sent on the stream (it
committed later) goes out without ``id:``, so the client's Last-Event-ID never moves back.

Limits. ``sse_max_streams`` open feeds per process and ``sse_max_per_user`` per user; over
either, ``429`` (``Throttled``). Each queue holds at most ``sse_buffer`` events; when it is full
the hub marks that subscription overflowed and the generator ends the response, so the client
reconnects with its last id and catches up from the table. When the LISTEN connection drops,
the hub reconnects with backoff and reads on from where it was. Cancellation: when a client
disconnects, sse-starlette cancels the generator task; the response's ``finally`` removes the
subscription from the hub. On shutdown the lifespan cancels the hub's tasks, which closes the
LISTEN connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from jobqueue import calls, db, errors
from jobqueue.api import BIGINT_MAX, decimal, query_filter
from jobqueue.auth import identify, request_token
from jobqueue.client import AsyncClient
from jobqueue.models import Event
from jobqueue.settings import Settings

CHANNEL = "jobqueue_events"
ACCESS_CHANNEL = "jobqueue_access"
# Names the LISTEN connection in pg_stat_activity.
APPLICATION_NAME = "jobqueue-web-events"
REPLAY_PAGE = 1000
FEED_PAGE = 1000
# Transactions in progress when the hub starts may hold ids below its starting point; their
# events are looked for this far below it.
STARTUP_MARGIN = 1000
# Reads on a quiet connection: a watched transaction that ends without writing an event
# sends no notification, and a dead connection shows up here.
IDLE_READ_SECONDS = 5.0
# The least time between two reads (or two credential checks): a flood of notifications
# costs at most this many queries a second.
MIN_READ_GAP = 0.005
MIN_CHECK_GAP = 0.1
log = logging.getLogger(__name__)


@dataclass(eq=False)
class Subscription:
    """One SSE client: what it may see, what it asked for, and its bounded buffer."""

    actor: str
    org_ids: frozenset[int] | None  # None: every organization (an admin)
    job_id: int | None
    org_id: int | None
    queue: asyncio.Queue[dict[str, Any] | None]
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

    def offer(self, event: dict[str, Any]) -> None:
        if self.overflowed.is_set() or self.ended.is_set() or not self.wants(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed.set()

    def end(self) -> None:
        """End the feed: its caller's credential or access changed."""
        self.ended.set()
        try:
            self.queue.put_nowait(None)  # wakes the generator
        except asyncio.QueueFull:
            self.overflowed.set()


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

    def publish(self, event: dict[str, Any]) -> None:
        """Deliver one event (a row read from the table) to every subscriber that may see it."""
        for subscription in list(self._subscribers):
            subscription.offer(event)

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
            for event in events[:late] + new:
                self.publish(event)
            if len(new) < FEED_PAGE and not late_full:
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


def event_to_dict(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "org_id": event.org_id,
        "org": event.org,
        "job": event.job,
        "type": event.type,
        "data": event.data,
        "at": event.at.isoformat(),
    }


def message(event: dict[str, Any], *, with_id: bool = True) -> dict[str, Any]:
    """The SSE message of one event (sse-starlette frames it); without ``id:``, the client's
    Last-Event-ID stays what it was."""
    return {
        "id": str(event["id"]) if with_id else None,
        "event": event["type"],
        "data": json.dumps(event),
    }


def _seconds_left(expires_at: datetime | None) -> float | None:
    if expires_at is None:
        return None
    return max(0.0, (expires_at - datetime.now(UTC)).total_seconds())


async def stream_events(
    hub: EventHub,
    client: AsyncClient,
    subscription: Subscription,
    *,
    last_event_id: int | None,
    organization: str | None,
    replay_max: int = 10_000,
) -> AsyncIterator[dict[str, Any]]:
    """Replay from ``last_event_id`` (if any), then the live feed, until the client leaves,
    its buffer overflows, or its access ends."""
    hub.add(subscription)  # admitted by the handler already; a no-op then
    try:
        # Tells the client (and tests) that no later event can be missed from here on.
        yield {"comment": "subscribed"}
        # Live events are dropped if the replay already sent them, or if they are at or below
        # the client's own cursor; a lower id that commits after the replay read still goes out.
        replayed: set[int] = set()
        # The highest id sent, where the replay reads on from. An event that commits after a
        # higher one went out carries no id: the client's Last-Event-ID only moves forward, and
        # a reconnect does not send again what followed it (its id is in its data all the same).
        cursor = last_event_id
        if cursor is not None:
            while True:
                page = min(REPLAY_PAGE, replay_max - len(replayed))
                missed = await client.events_since(
                    actor=subscription.actor,
                    after_id=cursor,
                    organization=organization,
                    job_id=subscription.job_id,
                    max_rows=page,
                )
                for event in missed:
                    cursor = event.id
                    replayed.add(event.id)
                    yield message(event_to_dict(event))
                if len(replayed) >= replay_max:
                    return  # the client resumes from the last id it got
                if len(missed) < page:
                    break
        while not subscription.overflowed.is_set() and not subscription.ended.is_set():
            try:
                live = await asyncio.wait_for(
                    subscription.queue.get(), _seconds_left(subscription.expires_at)
                )
            except TimeoutError:
                return  # its credential expired
            if live is None:
                return
            # A check may have narrowed visibility after the event was queued.
            if live["id"] in replayed or not subscription.wants(live):
                continue
            if last_event_id is not None and live["id"] <= last_event_id:
                continue
            late = cursor is not None and live["id"] < cursor
            if not late:
                cursor = live["id"]
            yield message(live, with_id=not late)
    finally:
        hub.remove(subscription)


class FeedResponse(EventSourceResponse):
    """An event stream that gives its subscription's place back however the response ends,
    even when the client leaves before the stream's first message."""

    def __init__(self, content: Any, *, release: Callable[[], None], **kwargs: Any):
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def events(request: Request) -> Response:
    """GET /api/events: the SSE feed of the caller's organizations."""
    identity = await identify(request)
    client: AsyncClient = request.state.client
    settings: Settings = request.state.settings
    hub: EventHub = request.state.hub
    query = request.query_params
    job_id = _optional_id(query.get("job_id"), "job_id")
    last_event_id = _optional_id(
        request.headers.get("last-event-id") or query.get("last_event_id"), "Last-Event-ID", 0
    )
    organization = query_filter(request, "organization")
    if job_id is not None:
        # A job the caller may not see is a 404 here too, exactly as on every job endpoint.
        await client.get_job(job_id, actor=identity.user_name)
    visible = await client.list_organizations(actor=identity.user_name)
    org_ids = None if identity.is_admin else frozenset(o.id for o in visible)
    org_id = None
    if organization is not None:
        org_id = next((o.id for o in visible if o.organization == organization), None)
        if org_id is None:
            # Not visible: the SQL says why (no such organization, or not a member).
            await client.events_since(
                actor=identity.user_name, organization=organization, max_rows=1
            )
            raise errors.Forbidden(f"organization {organization!r} is not accessible")
    token = request_token(request)[0] or ""
    credentials = await client.check_credentials([token])
    subscription = Subscription(
        actor=identity.user_name,
        org_ids=org_ids,
        job_id=job_id,
        org_id=org_id,
        queue=asyncio.Queue(maxsize=settings.sse_buffer),
        token=token,
        expires_at=credentials[0].expires_at if credentials else None,
    )
    hub.admit(subscription)
    return FeedResponse(
        stream_events(
            hub,
            client,
            subscription,
            last_event_id=last_event_id,
            organization=organization,
            replay_max=settings.sse_replay_max,
        ),
        release=lambda: hub.remove(subscription),
        ping=settings.sse_ping_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _optional_id(raw: str | None, name: str, low: int = 1) -> int | None:
    if raw is None or raw == "":
        return None
    value = decimal(raw)
    if value is None or not low <= value <= BIGINT_MAX:
        raise errors.InvalidArgument(f"'{name}' must be an integer from {low} to {BIGINT_MAX}")
    return value
