"""The live feed on a real uvicorn: scoping, resuming by id, many subscribers on one LISTEN."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest

from jobqueue.client import Client
from tests.integration.web_helpers import World, bearer, build_world, running_server, settings_for

DEADLINE = 60.0


@pytest.fixture
def world(client: Client) -> World:
    return build_world(client)


@dataclass
class Feed:
    """One open SSE response, read message by message."""

    lines: AsyncIterator[str]
    events: list[dict[str, Any]] = field(default_factory=list)

    async def next_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {}
        async for line in self.lines:
            if line == "":
                if message:
                    return message
                continue
            name, _, value = line.partition(":")
            message[name or "comment"] = value.removeprefix(" ")
        raise AssertionError("the feed ended")

    async def until_subscribed(self) -> None:
        while (await self.next_message()).get("comment") != "subscribed":
            pass

    async def next_event(self) -> dict[str, Any]:
        while True:
            message = await self.next_message()
            if "data" in message:
                event = {**json.loads(message["data"]), "sse_id": message["id"]}
                assert event["type"] == message["event"]
                self.events.append(event)
                return event


async def open_feed(http: httpx.AsyncClient, stack: Any, token: str, **params: str) -> Feed:
    headers = bearer(token)
    if "last_event_id" in params:
        headers["Last-Event-ID"] = params.pop("last_event_id")
    response = await stack.enter_async_context(
        http.stream("GET", "/api/events", headers=headers, params=params)
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    feed = Feed(response.aiter_lines())
    await asyncio.wait_for(feed.until_subscribed(), DEADLINE)
    return feed


def submit(client: Client, organization: str, n: int) -> int:
    return client.submit_job("echo", {"n": n}, organization=organization).id


def connections(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            # Not autovacuum's workers, which come and go in any database.
            " AND backend_type = 'client backend'"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_subscribers_get_only_their_organizations_events(
    dsn: str, world: World, client: Client
) -> None:
    import contextlib

    with running_server(settings_for(dsn)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as http:
            async with contextlib.AsyncExitStack() as stack:
                alice = await open_feed(http, stack, world.alice)
                bob = await open_feed(http, stack, world.bob)
                foreign = submit(client, "org-b", 1)
                mine = submit(client, "org-a", 2)
                event = await asyncio.wait_for(alice.next_event(), DEADLINE)
                # org-b's event was committed first; had it leaked, it would come first.
                assert (event["org"], event["job"]) == ("org-a", mine)
                assert event["sse_id"].split(".")[0] == str(event["id"])
                theirs = await asyncio.wait_for(bob.next_event(), DEADLINE)
                assert (theirs["org"], theirs["job"]) == ("org-b", foreign)
                # A job filter narrows further.
                only = await open_feed(http, stack, world.alice, job_id=str(mine))
                submit(client, "org-a", 3)
                client.cancel_job(mine)
                filtered = await asyncio.wait_for(only.next_event(), DEADLINE)
                assert filtered["job"] == mine and filtered["data"]["status"] == "canceled"
                refused = await http.get(
                    "/api/events", headers=bearer(world.alice), params={"organization": "org-b"}
                )
                assert refused.status_code == 403


async def test_reconnect_with_last_event_id_gets_exactly_the_missed_events(
    dsn: str, world: World, client: Client
) -> None:
    import contextlib

    with running_server(settings_for(dsn)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as http:
            async with contextlib.AsyncExitStack() as stack:
                feed = await open_feed(http, stack, world.alice)
                submit(client, "org-a", 1)
                seen = await asyncio.wait_for(feed.next_event(), DEADLINE)
            # Disconnected: these happen while nobody listens.
            missed_jobs = [submit(client, "org-a", n) for n in range(2, 5)]
            submit(client, "org-b", 99)
            async with contextlib.AsyncExitStack() as stack:
                feed = await open_feed(http, stack, world.alice, last_event_id=str(seen["id"]))
                live_job = submit(client, "org-a", 5)
                got = [await asyncio.wait_for(feed.next_event(), DEADLINE) for _ in range(4)]
    assert [e["job"] for e in got] == [*missed_jobs, live_job]
    ids = [e["id"] for e in got]
    assert ids == sorted(set(ids)) and ids[0] > seen["id"]
    assert all(e["org"] == "org-a" for e in got)


async def test_two_hundred_subscribers_share_one_listen_connection(
    dsn: str, world: World, client: Client
) -> None:
    import contextlib

    subscribers = 200
    limits = httpx.Limits(max_connections=subscribers + 10)
    settings = settings_for(dsn, sse_max_per_user=subscribers)
    with running_server(settings) as url:
        before = connections(dsn)
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE, limits=limits) as http:
            async with contextlib.AsyncExitStack() as stack:
                feeds = await asyncio.gather(
                    *(open_feed(http, stack, world.alice) for _ in range(subscribers))
                )
                during = connections(dsn)
                job_id = submit(client, "org-a", 1)
                events = await asyncio.wait_for(
                    asyncio.gather(*(f.next_event() for f in feeds)), DEADLINE
                )
                scrape = await http.get("/metrics", headers=bearer(world.admin))
                assert f"jobqueue_sse_subscribers {float(subscribers)}" in scrape.text
        assert {(e["job"], e["type"]) for e in events} == {(job_id, events[0]["type"])}
        assert during == before


async def test_feed_survives_the_listen_connection_dropping(
    dsn: str, world: World, client: Client
) -> None:
    import contextlib

    from jobqueue.event_hub import APPLICATION_NAME

    with running_server(settings_for(dsn, listen_backoff_max_seconds=0.5)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as http:
            async with contextlib.AsyncExitStack() as stack:
                feed = await open_feed(http, stack, world.alice)
                first = submit(client, "org-a", 1)
                assert (await asyncio.wait_for(feed.next_event(), DEADLINE))["job"] == first
                with psycopg.connect(dsn, autocommit=True) as conn:
                    killed = conn.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND application_name = %s",
                        (APPLICATION_NAME,),
                    ).fetchone()
                assert killed == (1,)
                # Written while the hub is down or reconnecting: delivered from the table or
                # from a notification, once each.
                during = [submit(client, "org-a", n) for n in range(2, 5)]
                got = [await asyncio.wait_for(feed.next_event(), DEADLINE) for _ in range(3)]
                assert [e["job"] for e in got] == during
                after = submit(client, "org-a", 5)
                assert (await asyncio.wait_for(feed.next_event(), DEADLINE))["job"] == after


async def test_a_full_buffer_disconnects_only_that_subscriber(dsn: str, world: World) -> None:
    from jobqueue.client import AsyncClient
    from jobqueue.event_hub import Batch, EventHub, Subscription
    from jobqueue.sse import stream_events

    def subscription(size: int) -> Subscription:
        return Subscription(
            actor="alice",
            org_ids=frozenset({1}),
            job_id=None,
            org_id=None,
            queue=asyncio.Queue(),
            buffer=size,
        )

    def event(n: int, org_id: int) -> tuple[dict[str, Any], int]:
        return {"id": n, "org_id": org_id, "org": f"org-{org_id}", "job": n, "type": "t"}, n

    async with await AsyncClient.connect(dsn, min_size=1, max_size=1) as aclient:
        hub = EventHub(dsn, aclient)
        slow, fast = subscription(3), subscription(100)
        slow_stream = stream_events(hub, aclient, slow, resume=None, organization=None)
        assert await anext(slow_stream) == {"comment": "subscribed"}
        hub.add(fast)
        hub.publish(Batch([event(n, 1) for n in (1, 2)]))
        hub.publish(Batch([event(n, 1) for n in (3, 4, 5)] + [event(6, 2)]))
        assert slow.overflowed.is_set() and not fast.overflowed.is_set()
        got = [fast.queue.get_nowait() for _ in range(2)]
        assert [[e["id"] for e, _ in b.events] for b in got if b] == [[1, 2], [3, 4, 5]]
        assert fast.queue.empty()  # org-b's event never reached an org-a subscriber
        # The overflowed stream ends (the client resumes by cursor) and leaves the hub.
        assert [m async for m in slow_stream] == []
        hub.remove(fast)
        assert hub.subscriber_count == 0


async def test_a_revoked_token_ends_its_feed(dsn: str, world: World, client: Client) -> None:
    """At once: the revocation's notification makes the hub check every open feed (the
    periodic check is an hour away here)."""
    import contextlib

    with running_server(settings_for(dsn, sse_refresh_seconds=3600)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as http:
            async with contextlib.AsyncExitStack() as stack:
                feed = await open_feed(http, stack, world.alice)
                client.revoke_token(world.alice_token_id)
                with pytest.raises(AssertionError, match="the feed ended"):
                    await asyncio.wait_for(feed.next_event(), DEADLINE)


async def test_a_removed_member_s_feed_ends_and_reopens_without_that_organization(
    dsn: str, world: World, client: Client
) -> None:
    import contextlib

    from tests.factories import make_org_with_member

    make_org_with_member(client, "org-c", "alice")
    with running_server(settings_for(dsn, sse_refresh_seconds=3600)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as http:
            async with contextlib.AsyncExitStack() as stack:
                feed = await open_feed(http, stack, world.alice)
                client.remove_member("alice", "org-a")
                # Ends at once; an org-a event written now cannot reach it.
                submit(client, "org-a", 1)
                with pytest.raises(AssertionError, match="the feed ended"):
                    while True:
                        event = await asyncio.wait_for(feed.next_event(), DEADLINE)
                        assert event["org"] != "org-a" or event["job"] != 1
            async with contextlib.AsyncExitStack() as stack:
                feed = await open_feed(http, stack, world.alice)
                submit(client, "org-a", 3)
                last = submit(client, "org-c", 4)
                assert (await asyncio.wait_for(feed.next_event(), DEADLINE))["job"] == last
