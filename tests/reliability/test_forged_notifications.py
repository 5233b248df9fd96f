"""Notifications carry nothing and decide nothing.

PostgreSQL checks no privilege on LISTEN and NOTIFY: any login that can connect to the
database may listen on, and send anything on, any channel. So:

- a worker reads no payload: a forged ``abort_job_requested`` naming a running job of another
  organization, or a payload that is not even JSON, only wakes it; whether to abort is read
  from the database;
- the event channel's notifications are empty: a listener learns nothing of any organization,
  and the web process reads the events from the table, so a forged event, a forged huge id or a
  payload without fields reaches no subscriber and ends no feed;
- the web process still publishes every committed event exactly once when transactions commit
  in another order than they took their event ids, and a client resuming from the cursor it
  kept misses none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from jobqueue import db as jobqueue_db
from jobqueue.client import Client
from jobqueue.models import Job
from tests.factories import make_job_type, make_org_with_member, make_token
from tests.integration.test_web_sse import DEADLINE, Feed, open_feed
from tests.integration.web_helpers import running_server, settings_for
from tests.reliability.conftest import Workers, wait_for
from tests.reliability.logins import connect, login

FORGED_ABORTS = 300  # vehicle ids 1..300 are sprayed: the running job's is among them
GARBAGE = ["", "not json", "{}", "[]", "null", '{"type": null}', '{"type": "abort_job_requested"}']


@pytest.fixture
def outsider(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A login with no role of the engine at all: it can only connect (as every login can
    unless CONNECT is revoked from PUBLIC)."""
    with login(dsn, "outsider") as (_, url), connect(url) as conn:
        yield conn


def spray(conn: psycopg.Connection[Any], channels: list[str], payloads: list[str]) -> None:
    for channel in channels:
        for payload in payloads:
            conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def worker_ids(client: Client, dsn: str) -> list[int]:
    with jobqueue_db.connect(dsn) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT id FROM procrastinate.procrastinate_workers ORDER BY id"
            ).fetchall()
        ]


def test_forged_abort_notifications_cancel_nothing_and_stop_no_worker(
    dsn: str, client: Client, workers: Workers, outsider: psycopg.Connection[Any]
) -> None:
    make_job_type(client, "sleep", handler="jobqueue.tasks.demo:sleep")
    make_org_with_member(client, "bravo", "bob")
    workers.start(concurrency=2)
    job = client.submit_job("sleep", {"seconds": 3, "steps": 3}, organization="bravo")
    wait_for(lambda: client.get_job(job.id).status == "running", what="the job to start")
    before = worker_ids(client, dsn)
    assert len(before) == 1
    forged = [
        json.dumps({"type": "abort_job_requested", "job_id": n})
        for n in range(1, FORGED_ABORTS + 1)
    ]
    channels = ["procrastinate_any_queue_v1", "procrastinate_queue_v1#default"]
    spray(outsider, channels, forged + GARBAGE)

    final = wait_for(
        lambda: (j := client.get_job(job.id)).status in ("completed", "dead", "canceled") and j,
        what="the job to end",
    )
    assert final.status == "completed", final.last_error
    assert [a.outcome for a in client.job_attempts(job.id)] == ["completed"]
    # The same worker throughout: no listener failed, no restart.
    assert worker_ids(client, dsn) == before
    # A real cancel still reaches a running job.
    other = client.submit_job("sleep", {"seconds": 60, "steps": 60}, organization="bravo")
    wait_for(lambda: client.get_job(other.id).status == "running", what="the job to start")
    client.cancel_job(other.id)
    wait_for(lambda: client.get_job(other.id).status == "canceled", what="the cancel")


@pytest.fixture
def world(client: Client) -> dict[str, Any]:
    make_job_type(client, "echo")
    make_org_with_member(client, "org-a", "alice")
    make_org_with_member(client, "org-b", "bob")
    return {"alice": make_token(client, "alice").secret}


def test_a_listener_learns_nothing_of_any_organization(
    dsn: str, client: Client, world: dict[str, Any], outsider: psycopg.Connection[Any]
) -> None:
    outsider.execute("LISTEN jobqueue_events")
    job = client.submit_job("echo", {"secret": "s3cr3t-params"}, organization="org-b")
    client.cancel_job(job.id)
    heard = list(outsider.notifies(timeout=2, stop_after=10))
    assert heard, "the channel still wakes listeners"
    assert all(n.payload == "" for n in heard), [n.payload for n in heard]


async def test_forged_events_reach_no_subscriber_and_end_no_feed(
    dsn: str, client: Client, world: dict[str, Any], outsider: psycopg.Connection[Any]
) -> None:
    org_a = next(o.id for o in client.list_organizations() if o.organization == "org-a")
    forged = [
        {
            "id": 10**12,
            "org_id": org_a,
            "org": "org-a",
            "job": 1,
            "type": "completed",
            "data": {"status": "completed"},
            "at": "2030-01-01T00:00:00+00:00",
        },
        {"id": 2**63 - 1, "org_id": org_a, "org": "org-a", "job": 1, "type": "forged"},
        {"org_id": org_a},  # no id, no type
        {"id": 5, "org_id": org_a},  # no type
    ]
    with running_server(settings_for(dsn)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as http:
            async with contextlib.AsyncExitStack() as stack:
                feed = await open_feed(http, stack, world["alice"])
                spray(outsider, ["jobqueue_events"], [json.dumps(f) for f in forged] + GARBAGE)
                real = client.submit_job("echo", {"n": 1}, organization="org-a")
                event = await asyncio.wait_for(feed.next_event(), DEADLINE)
                assert (event["job"], event["type"]) == (real.id, "submitted")
                last_id = event["id"]
                # The feed is still open: the next real event arrives on it.
                client.cancel_job(real.id)
                event = await asyncio.wait_for(feed.next_event(), DEADLINE)
                assert (event["job"], event["type"]) == (real.id, "canceled")
                last_id = event["id"]
            # A client resuming from the last id it saw is not blinded by a forged huge id.
            async with contextlib.AsyncExitStack() as stack:
                later = client.submit_job("echo", {"n": 2}, organization="org-a")
                feed = await open_feed(http, stack, world["alice"], last_event_id=str(last_id))
                event = await asyncio.wait_for(feed.next_event(), DEADLINE)
                assert (event["job"], event["type"]) == (later.id, "submitted")


async def commit_out_of_order(
    client: Client, slow: psycopg.Connection[Any], feed: Feed
) -> tuple[Job, list[dict[str, Any]]]:
    """A job submitted on ``slow``, whose transaction stays open, then three that commit at
    once and reach the feed first: the open one's job, and the three events the feed got."""
    early = Client(connection=slow).submit_job("echo", {"n": "early"}, organization="org-a")
    quick = [client.submit_job("echo", {"n": n}, organization="org-a").id for n in range(3)]
    seen = [await asyncio.wait_for(feed.next_event(), DEADLINE) for _ in quick]
    assert [e["job"] for e in seen] == quick
    return early, seen


def cursor_id(sse_id: str) -> int:
    """The event id part of a resume cursor."""
    return int(sse_id.split(".")[0])


async def test_events_committed_out_of_id_order_are_each_published_once(
    dsn: str, client: Client, world: dict[str, Any]
) -> None:
    """A transaction takes its event id and stays open while a later one commits; then it
    commits too. The feed gets both, once each, whichever id is lower; the late one's cursor
    does not move back, and a reconnect from the last cursor sends nothing again."""
    with running_server(settings_for(dsn)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as http:
            async with contextlib.AsyncExitStack() as stack:
                feed: Feed = await open_feed(http, stack, world["alice"])
                with jobqueue_db.connect(dsn) as slow:
                    early, seen = await commit_out_of_order(client, slow, feed)
                    slow.commit()
                late = await asyncio.wait_for(feed.next_event(), DEADLINE)
                assert late["job"] == early.id and late["id"] < seen[0]["id"]
                assert [cursor_id(e["sse_id"]) for e in seen] == [e["id"] for e in seen]
                assert cursor_id(late["sse_id"]) == seen[-1]["id"]
            # A reconnect from the last cursor sends nothing again: the next event is a new one.
            async with contextlib.AsyncExitStack() as stack:
                feed = await open_feed(http, stack, world["alice"], last_event_id=late["sse_id"])
                newer = client.submit_job("echo", {"n": "newer"}, organization="org-a")
                resumed = await asyncio.wait_for(feed.next_event(), DEADLINE)
                assert resumed["job"] == newer.id
                assert cursor_id(resumed["sse_id"]) == resumed["id"]


async def test_a_lower_id_committed_while_the_client_was_away_comes_on_resume(
    dsn: str, client: Client, world: dict[str, Any]
) -> None:
    """The client sees higher ids and leaves; a transaction holding a lower id commits while
    it is away. Resuming from the cursor it kept, it gets that event, then new ones, each once.
    (A resume by the plain id alone would skip it: the cursor names the open transaction.)"""
    with running_server(settings_for(dsn)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as http:
            with jobqueue_db.connect(dsn) as slow:
                async with contextlib.AsyncExitStack() as stack:
                    feed: Feed = await open_feed(http, stack, world["alice"])
                    early, seen = await commit_out_of_order(client, slow, feed)
                kept = seen[-1]["sse_id"]
                assert cursor_id(kept) == seen[-1]["id"] and kept != str(seen[-1]["id"])
                slow.commit()
            async with contextlib.AsyncExitStack() as stack:
                feed = await open_feed(http, stack, world["alice"], last_event_id=kept)
                newer = client.submit_job("echo", {"n": "newer"}, organization="org-a")
                got = [await asyncio.wait_for(feed.next_event(), DEADLINE) for _ in range(2)]
                assert [e["job"] for e in got] == [early.id, newer.id]
                assert got[0]["id"] < seen[0]["id"]
                # The late event's cursor keeps the id part it resumed from.
                assert cursor_id(got[0]["sse_id"]) == seen[-1]["id"]
                assert cursor_id(got[1]["sse_id"]) == got[1]["id"]
            # From a plain id (a client that keeps ids from the data) the lower one is skipped,
            # as "after this id" says: nothing older than that id comes again.
            async with contextlib.AsyncExitStack() as stack:
                feed = await open_feed(
                    http, stack, world["alice"], last_event_id=str(seen[-1]["id"])
                )
                latest = client.submit_job("echo", {"n": "latest"}, organization="org-a")
                after = [await asyncio.wait_for(feed.next_event(), DEADLINE) for _ in range(2)]
                assert [e["job"] for e in after] == [newer.id, latest.id]


def test_the_feed_read_returns_every_row_once_under_interleaved_commits(
    dsn: str, client: Client, world: dict[str, Any]
) -> None:
    """jobqueue.event_feed, driven as the hub drives it, against many transactions that
    commit and roll back in an order unrelated to their event ids."""
    from jobqueue import calls

    page = 3  # small, so that both parts of a read page
    start = max((e["id"] for e in client.event_feed(0)["events"]), default=0)
    published: list[int] = []
    after = start
    watching: dict[int, int] = {}

    def read() -> None:
        """What the hub does on a wake-up (EventHub._read)."""
        nonlocal after
        while True:
            prior = after
            row = client.run(
                calls.event_feed(prior, list(watching), list(watching.values()), max_rows=page)
            )
            events, late, running = row["events"], row["late_events"], set(row["in_progress"])
            late_full = late == page
            for xid in [x for x in watching if x not in running]:
                if late_full:
                    watching[xid] = max(watching[xid], events[late - 1]["id"])
                else:
                    del watching[xid]
            new = [] if late_full else events[late:]
            if new:
                after = new[-1]["id"]
            for xid in running:
                watching.setdefault(xid, prior)
            published.extend(e["id"] for e in events[:late] + new)
            if len(new) < page and not late_full:
                return

    opened = [jobqueue_db.connect(dsn) for _ in range(6)]
    try:
        for n, conn in enumerate(opened):
            for m in range(2):  # two statements, two events each transaction
                Client(connection=conn).submit_job("echo", {"n": n, "m": m}, organization="org-a")
            read()
        # Commit in reverse, roll one back, reading between each.
        for n, conn in reversed(list(enumerate(opened))):
            if n == 2:
                conn.rollback()
            else:
                conn.commit()
            client.submit_job("echo", {"between": n}, organization="org-b")
            read()
    finally:
        for conn in opened:
            conn.close()
    read()
    with jobqueue_db.connect(dsn) as owner:
        committed = [
            r[0]
            for r in owner.execute(
                "SELECT id FROM jobqueue.event WHERE id > %s ORDER BY id", (start,)
            ).fetchall()
        ]
    assert sorted(published) == committed
    assert len(published) == len(set(published))
