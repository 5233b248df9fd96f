"""The live event feed over HTTP: Server-Sent Events from the process's :mod:`event hub
<jobqueue.event_hub>`, resumable from a cursor.

A subscriber's generator (:func:`stream_events`, run by sse-starlette's
``EventSourceResponse``) reads its subscription's queue and yields one message per event:
``id:`` the client's resume cursor after it (:mod:`jobqueue.feed_cursor`), ``event:`` its
type, ``data:`` the JSON, which carries the event's own ``id``.

Resuming. With ``Last-Event-ID`` (header, or ``last_event_id`` query parameter for clients
that cannot set it), the subscription is registered with the hub *first*; then, in one snapshot,
the events the cursor names as pending (written at or below its id by transactions that were
in progress when it was sent) and the events after its id are read and sent, ``sse_replay_max``
at most after the id per request (the response then ends, and the client resumes from the last
cursor it got). A live event the client has (by the cursor, or sent by the replay) is dropped,
so nothing is lost between the replay and the live feed and nothing is sent twice. Each
message's cursor names the transactions in progress at the hub's read that brought it (at the
replay's snapshot, for a replayed one) and those whose events later in the same read are not
sent yet; its id part never moves back, also when a lower id commits after a higher one.

Cancellation: when a client disconnects, sse-starlette cancels the generator task; the
response's ``finally`` removes the subscription from the hub.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from jobqueue import errors
from jobqueue.api import BIGINT_MAX, decimal, query_filter
from jobqueue.auth import identify, request_token
from jobqueue.client import AsyncClient
from jobqueue.event_hub import EventHub, Subscription
from jobqueue.feed_cursor import Cursor, Pending
from jobqueue.models import Event
from jobqueue.settings import Settings

REPLAY_PAGE = 1000


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


def message(event: dict[str, Any], cursor: Cursor) -> dict[str, Any]:
    """The SSE message of one event (sse-starlette frames it), with the client's resume
    cursor as its id."""
    return {"id": str(cursor), "event": event["type"], "data": json.dumps(event)}


def _seconds_left(expires_at: datetime | None) -> float | None:
    if expires_at is None:
        return None
    return max(0.0, (expires_at - datetime.now(UTC)).total_seconds())


async def stream_events(
    hub: EventHub,
    client: AsyncClient,
    subscription: Subscription,
    *,
    resume: Cursor | None,
    organization: str | None,
    replay_max: int = 10_000,
) -> AsyncIterator[dict[str, Any]]:
    """Replay from the ``resume`` cursor (if any), then the live feed, until the client
    leaves, its buffer overflows, or its access ends. Each message's id is the cursor after
    it (:mod:`jobqueue.feed_cursor`)."""
    hub.add(subscription)  # admitted by the handler already; a no-op then
    # What the hub knew at registration: a transaction running at the replay's snapshot was
    # either in progress at the hub's last read or started after it.
    hub_after, hub_watching = hub.horizon()
    try:
        # Tells the client (and tests) that no later event can be missed from here on.
        yield {"comment": "subscribed"}
        replayed: set[int] = set()
        last = resume.last if resume is not None else 0
        pending: Pending = {}
        complete = True  # whether the previous batch ended its hub read
        if resume is not None:
            replay = await _replay(client, subscription, resume, organization, replay_max)
            pending = {
                xact: _lowest(hub_watching.get(xact, hub_after), resume, xact)
                for xact in replay.running
            }
            for event in replay.late:
                replayed.add(event.id)
                yield message(event_to_dict(event), replay.cursor_after_late(event.id))
            for event in replay.new:
                replayed.add(event.id)
                last = event.id
                yield message(event_to_dict(event), Cursor.at(last, pending))
            if replay.cut:
                return  # the client resumes from the last cursor it got
        while not subscription.overflowed.is_set() and not subscription.ended.is_set():
            try:
                batch = await subscription.next_batch(_seconds_left(subscription.expires_at))
            except TimeoutError:
                return  # its credential expired
            if batch is None:
                return
            # A check may have narrowed visibility after the batch was queued.
            due = [
                (event, xact)
                for event, xact in batch.events
                if event["id"] not in replayed
                and subscription.wants(event)
                and not (resume is not None and resume.has(event["id"], xact))
            ]
            # Pending while this batch goes out: the transactions running at its read, and
            # those whose events in it are not sent yet (from below the first of them). A
            # transaction pending before that is in neither has ended, and every event of it
            # that this client lacked came in an earlier batch (or, after a batch that was one
            # page of a longer read, may come in this one or the next: kept until then).
            carried = pending if not complete else {}
            pending = {x: min(low, pending.get(x, low)) for x, low in batch.watching.items()}
            pending = {**carried, **pending}
            for event, xact in reversed(due):
                if xact is not None:
                    pending[xact] = min(event["id"] - 1, pending.get(xact, event["id"]))
            to_send = collections.Counter(xact for _, xact in due)
            complete = batch.complete
            for event, xact in due:
                to_send[xact] -= 1
                if xact is not None and xact not in batch.watching:
                    if to_send[xact] or not complete:
                        pending[xact] = event["id"]  # its later events are above
                    else:
                        pending.pop(xact, None)
                last = max(event["id"], last)
                yield message(event, Cursor.at(last, pending))
    finally:
        hub.remove(subscription)


def _lowest(low: int, resume: Cursor, xact: int) -> int:
    """``low``, or lower where the resume cursor still waits for ``xact``'s events."""
    if resume.every_above is not None:
        return min(low, resume.every_above)
    return min(low, resume.pending.get(xact, low))


@dataclass
class Replay:
    """What a resume sends before the live feed, read in one snapshot."""

    resume: Cursor
    late: list[Event]  # at or below the cursor's id, of the transactions it names
    new: list[Event]  # after the cursor's id
    running: frozenset[int]  # the transactions in progress in that snapshot
    cut: bool  # replay_max reached: the response ends after the replay

    def cursor_after_late(self, event_id: int) -> Cursor:
        """The cursor once the late events up to ``event_id`` are sent: the named
        transactions that had finished have nothing left at or below it."""
        if self.resume.every_above is not None:
            return self.resume  # which transactions they were is not known: all again
        return Cursor.at(
            self.resume.last,
            {
                xact: low if xact in self.running else max(low, event_id)
                for xact, low in self.resume.pending.items()
            },
        )


async def _replay(
    client: AsyncClient,
    subscription: Subscription,
    resume: Cursor,
    organization: str | None,
    replay_max: int,
) -> Replay:
    """The events a client at ``resume`` has not got: those its cursor names as pending
    (all of them, however many), then the ones after it (``replay_max`` at most)."""

    async def pages(view: AsyncClient, after: int, limit: int | None, **scope: Any) -> list[Event]:
        events: list[Event] = []
        while limit is None or len(events) < limit:
            size = REPLAY_PAGE if limit is None else min(REPLAY_PAGE, limit - len(events))
            page = await view.events_since(
                actor=subscription.actor,
                after_id=after,
                organization=organization,
                job_id=subscription.job_id,
                max_rows=size,
                **scope,
            )
            events.extend(page)
            if len(page) < size:
                break
            after = page[-1].id
        return events

    late: list[Event] = []
    async with client.snapshot() as view:
        if resume.every_above is not None:
            late = await pages(view, resume.every_above, None, until_id=resume.last)
        elif resume.pending:
            xacts = sorted(resume.pending)
            late = await pages(
                view,
                min(resume.pending.values()),
                None,
                until_id=resume.last,
                transactions=xacts,
                transactions_after=[resume.pending[x] for x in xacts],
            )
        new = await pages(view, resume.last, replay_max)
        running = await view.transactions_in_progress()
    return Replay(resume, late, new, frozenset(running), len(new) >= replay_max)


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
    resume = _resume_cursor(request)
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
        queue=asyncio.Queue(),
        buffer=settings.sse_buffer,
        token=token,
        expires_at=credentials[0].expires_at if credentials else None,
    )
    hub.admit(subscription)
    return FeedResponse(
        stream_events(
            hub,
            client,
            subscription,
            resume=resume,
            organization=organization,
            replay_max=settings.sse_replay_max,
        ),
        release=lambda: hub.remove(subscription),
        ping=settings.sse_ping_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _resume_cursor(request: Request) -> Cursor | None:
    """Where the client resumes: the Last-Event-ID header, or the last_event_id query
    parameter for clients that cannot set it."""
    header = request.headers.get("last-event-id")
    if header:
        return Cursor.parse(header, "Last-Event-ID")
    raw = request.query_params.get("last_event_id")
    return Cursor.parse(raw, "last_event_id") if raw else None


def _optional_id(raw: str | None, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    value = decimal(raw)
    if value is None or not 1 <= value <= BIGINT_MAX:
        raise errors.InvalidArgument(f"'{name}' must be an integer from 1 to {BIGINT_MAX}")
    return value
