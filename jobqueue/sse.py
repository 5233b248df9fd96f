"""The live event feed: one LISTEN connection per process, fanned out to SSE subscribers.

Flow of one event. A state change writes a ``jobqueue.event`` row; its trigger sends
``NOTIFY jobqueue_events`` at commit. The :class:`EventHub` task of this process holds the
only LISTEN connection (autocommit, ``async for n in conn.notifies()``), parses each payload
and puts it into the bounded queue of every :class:`Subscription` whose organizations include
the event's. A subscriber's generator (:func:`stream_events`, run by sse-starlette's
``EventSourceResponse``) reads its queue and yields one message per event: ``id:`` the event
row id, ``event:`` its type, ``data:`` the JSON.

Visibility. A subscription starts with the organization ids ``list_organizations(actor)``
answers. Every ``sse_refresh_seconds`` it authenticates its token again (a revoked token ends
the feed) and re-reads them (a removed member stops receiving); an event of any other
organization is never put into its queue. An admin sees every organization (``None``).

Resuming. With ``Last-Event-ID`` (header, or ``last_event_id`` query parameter for clients
that cannot set it), the subscription is registered with the hub *first*, then the missed
events are read with ``events_since`` and sent; live events with an id at or below the last
one sent are dropped, so nothing is lost between the replay and the live feed and nothing
is sent twice.

Slow clients and shutdown. Each queue holds at most ``sse_buffer`` events; when it is full
the hub marks that subscription overflowed and the generator ends the response, so the
client reconnects with its last id and catches up from the table. When the LISTEN connection
drops, the hub reconnects with backoff and reads the rows written meanwhile from the table
(``events_since`` after the last id it saw), so subscribers miss nothing. Cancellation: when
a client disconnects, sse-starlette cancels the generator task; its ``finally`` removes the
subscription from the hub. On shutdown the lifespan cancels the hub task, which closes the
LISTEN connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from jobqueue import db, errors
from jobqueue.api import BIGINT_MAX, decimal, query_filter
from jobqueue.auth import identify, request_token
from jobqueue.client import AsyncClient
from jobqueue.models import Event
from jobqueue.settings import Settings

CHANNEL = "jobqueue_events"
# Names the LISTEN connection in pg_stat_activity.
APPLICATION_NAME = "jobqueue-web-events"
REPLAY_PAGE = 1000
# Event ids are taken at insert and become visible at commit, so after an outage the hub
# re-reads this many ids below the highest it saw, for events that committed late; the ids it
# already published (the last RECENT_IDS of them are remembered) are not sent twice.
CATCH_UP_MARGIN = 1000
RECENT_IDS = 20000
log = logging.getLogger(__name__)


@dataclass(eq=False)
class Subscription:
    """One SSE client: what it may see, what it asked for, and its bounded buffer."""

    actor: str
    org_ids: frozenset[int] | None  # None: every organization (an admin)
    job_id: int | None
    org_id: int | None
    queue: asyncio.Queue[dict[str, Any]]
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, event: dict[str, Any]) -> bool:
        org = event.get("org_id")
        if self.org_ids is not None and org not in self.org_ids:
            return False
        if self.org_id is not None and org != self.org_id:
            return False
        return self.job_id is None or event.get("job") == self.job_id

    def offer(self, event: dict[str, Any]) -> None:
        if self.overflowed.is_set() or not self.wants(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed.set()


class EventHub:
    """Holds the process's LISTEN connection and fans notifications out in memory."""

    def __init__(self, dsn: str, client: AsyncClient, *, backoff_max: float = 5.0):
        self._dsn = dsn
        self._client = client
        self._backoff_max = backoff_max
        self._subscribers: set[Subscription] = set()
        self._last_id = 0
        # Ids published by a catch-up whose notification may still arrive.
        self._floor = 0  # events at or below this id were on record before the hub started
        self._recent: set[int] = set()
        self._recent_order: collections.deque[int] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def add(self, subscription: Subscription) -> None:
        self._subscribers.add(subscription)

    def remove(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish(self, event: dict[str, Any]) -> None:
        """Deliver one event to every subscriber that may see it.

        Notifications come in commit order, which is not always id order (two transactions
        may commit in the other order than they took their ids), so no id is dropped for
        being lower than one already seen.
        """
        event_id = event.get("id")
        if not isinstance(event_id, int):
            return
        if event_id in self._recent:
            return
        self._recent.add(event_id)
        self._recent_order.append(event_id)
        if len(self._recent_order) > RECENT_IDS:
            self._recent.discard(self._recent_order.popleft())
        self._last_id = max(self._last_id, event_id)
        for subscription in list(self._subscribers):
            subscription.offer(event)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="jobqueue-event-hub")
        # Requests may start before the first LISTEN is up; wait for it so that a
        # subscriber registered now gets every later event.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), timeout=10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while True:
            try:
                async with await db.connect_async(
                    self._dsn, autocommit=True, application_name=APPLICATION_NAME
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if first:
                        # Start after the rows already on record: a drop before the first
                        # event then replays only what was written while down.
                        cur = await conn.execute("SELECT jobqueue.latest_event_id()")
                        row = await cur.fetchone()
                        self._last_id = max(self._last_id, int(row[0]) if row else 0)
                        self._floor = self._last_id
                        first = False
                    else:
                        await self._catch_up()
                    self.listening.set()
                    delay = 0.1
                    async for notify in conn.notifies():
                        self._on_payload(notify.payload)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError, errors.DatabaseUnavailable) as exc:
                # The catch-up goes through the client, which reports an outage as
                # DatabaseUnavailable; either way the hub must reconnect, not end.
                self.listening.clear()
                log.warning("event hub: LISTEN connection lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_max)

    async def _catch_up(self) -> None:
        """Publish the rows written while the LISTEN connection was down."""
        after = max(self._floor, self._last_id - CATCH_UP_MARGIN)
        while True:
            missed = await self._client.events_since(after_id=after, max_rows=REPLAY_PAGE)
            for event in missed:
                self.publish(event_to_dict(event))
                after = event.id
            if len(missed) < REPLAY_PAGE:
                return

    def _on_payload(self, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            log.warning("event hub: ignoring a malformed notification")
            return
        if isinstance(event, dict):
            self.publish(event)


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


def message(event: dict[str, Any]) -> dict[str, Any]:
    """The SSE message of one event (sse-starlette frames it)."""
    return {"id": str(event["id"]), "event": event["type"], "data": json.dumps(event)}


async def visible_org_ids(client: AsyncClient, actor: str, is_admin: bool) -> frozenset[int] | None:
    if is_admin:
        return None
    return frozenset(o.id for o in await client.list_organizations(actor=actor))


async def stream_events(
    hub: EventHub,
    client: AsyncClient,
    subscription: Subscription,
    *,
    token: str,
    last_event_id: int | None,
    organization: str | None,
    refresh_seconds: float,
) -> AsyncIterator[dict[str, Any]]:
    """Replay from ``last_event_id`` (if any), then the live feed, until the client leaves."""
    hub.add(subscription)
    try:
        # Tells the client (and tests) that no later event can be missed from here on.
        yield {"comment": "subscribed"}
        # Live events are dropped if the replay already sent them, or if they are at or below
        # the client's own cursor; a lower id that commits after the replay read still goes out.
        replayed: set[int] = set()
        replayed_until = 0
        if last_event_id is not None:
            replayed_until = last_event_id
            while True:
                missed = await client.events_since(
                    actor=subscription.actor,
                    after_id=replayed_until,
                    organization=organization,
                    job_id=subscription.job_id,
                    max_rows=REPLAY_PAGE,
                )
                for event in missed:
                    replayed_until = event.id
                    replayed.add(event.id)
                    yield message(event_to_dict(event))
                if len(missed) < REPLAY_PAGE:
                    break
        refresh_at = time.monotonic() + refresh_seconds
        while not subscription.overflowed.is_set():
            timeout = max(0.0, refresh_at - time.monotonic())
            try:
                live = await asyncio.wait_for(subscription.queue.get(), timeout=timeout)
            except TimeoutError:
                try:
                    identity = await client.authenticate(token)
                except errors.Unauthenticated:
                    return  # the token was revoked: the feed ends with it
                subscription.org_ids = await visible_org_ids(
                    client, identity.user_name, identity.is_admin
                )
                refresh_at = time.monotonic() + refresh_seconds
                continue
            # A refresh may have narrowed visibility after the event was queued.
            if live["id"] in replayed or not subscription.wants(live):
                continue
            if last_event_id is not None and live["id"] <= last_event_id:
                continue
            yield message(live)
    finally:
        hub.remove(subscription)


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
    subscription = Subscription(
        actor=identity.user_name,
        org_ids=org_ids,
        job_id=job_id,
        org_id=org_id,
        queue=asyncio.Queue(maxsize=settings.sse_buffer),
    )
    return EventSourceResponse(
        stream_events(
            hub,
            client,
            subscription,
            token=request_token(request)[0] or "",
            last_event_id=last_event_id,
            organization=organization,
            refresh_seconds=settings.sse_refresh_seconds,
        ),
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
