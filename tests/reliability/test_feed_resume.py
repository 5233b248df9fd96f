"""Resuming the live feed from its cursor, while transactions commit out of id order.

Writers hold their transactions open for a random while after taking event ids, so lower ids
keep committing after higher ones went out; one of them rolls back now and then. A client
leaves the feed every few events and comes back with the last cursor it got, as a browser's
EventSource does. At the end it must have every committed event exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import threading
import time

import httpx

from jobqueue import db as jobqueue_db
from jobqueue.client import Client
from tests.factories import make_job_type, make_org_with_member, make_token
from tests.integration.test_web_sse import DEADLINE, open_feed
from tests.integration.web_helpers import running_server, settings_for

WRITERS = 6
SUBMITS_PER_WRITER = 40


def write(dsn: str, seed: int, hold: float = 0.04) -> None:
    """Submits one job per transaction, each held open up to ``hold`` seconds after its event
    id is taken; every seventh rolls back."""
    chance = random.Random(seed)
    with jobqueue_db.connect(dsn) as conn:
        client = Client(connection=conn)
        for n in range(SUBMITS_PER_WRITER):
            client.submit_job("echo", {"writer": seed, "n": n}, organization="org-a")
            time.sleep(chance.uniform(0, hold))
            if chance.randrange(7) == 0:
                conn.rollback()
            else:
                conn.commit()


async def test_a_client_resuming_from_its_cursor_gets_every_event_once(
    dsn: str, client: Client
) -> None:
    make_job_type(client, "echo")
    make_org_with_member(client, "org-a", "alice")
    token = make_token(client, "alice").secret
    writers = [
        threading.Thread(target=write, args=(dsn, seed), daemon=True) for seed in range(WRITERS)
    ]
    # One writer holds its transactions open for a tenth of a second: many messages go out
    # while it is in progress below their ids.
    writers.append(threading.Thread(target=write, args=(dsn, WRITERS, 0.2), daemon=True))
    got: list[int] = []
    cursors: list[str] = []
    chance = random.Random(1)
    with running_server(settings_for(dsn)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as http:
            cursor = "0"
            for writer in writers:
                writer.start()

            def committed() -> list[int]:
                with jobqueue_db.connect(dsn) as conn:
                    rows = conn.execute("SELECT id FROM jobqueue.event ORDER BY id").fetchall()
                return [r[0] for r in rows]

            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                done = not any(w.is_alive() for w in writers)
                if done and sorted(set(got)) == committed():
                    break
                async with contextlib.AsyncExitStack() as stack:
                    feed = await open_feed(http, stack, token, last_event_id=cursor)
                    for _ in range(chance.randint(1, 8)):
                        try:
                            event = await asyncio.wait_for(feed.next_event(), 0.5)
                        except TimeoutError:
                            break
                        got.append(event["id"])
                        cursor = event["sse_id"]
                        cursors.append(cursor)
    for writer in writers:
        writer.join()
    expected = committed()
    assert len(expected) > WRITERS * SUBMITS_PER_WRITER // 2
    assert sorted(got) == expected, (
        f"missing {sorted(set(expected) - set(got))[:10]},"
        f" repeated {sorted(i for i in set(got) if got.count(i) > 1)[:10]}"
    )
    # The run did meet the case it is about: cursors that named open transactions (about one
    # in ten of them does; the count varies with the machine's scheduling, so the floor is low).
    assert sum("." in c for c in cursors) >= 5
    # A cursor's id part never moves back.
    parts = [int(c.split(".")[0]) for c in cursors]
    assert parts == sorted(parts)


async def test_a_dashboard_page_starts_its_feed_before_its_data(dsn: str, client: Client) -> None:
    """A page is rendered while a transaction holds a lower event id open; the feed started
    from the page's cursor gets that event when it commits, though a higher id was on record
    (and in the page's data) first."""
    make_job_type(client, "echo")
    make_org_with_member(client, "org-a", "alice")
    token = make_token(client, "alice").secret
    headers = {"Authorization": f"Bearer {token}"}
    with running_server(settings_for(dsn)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as http:
            with jobqueue_db.connect(dsn) as slow:
                early = Client(connection=slow).submit_job("echo", {"n": 0}, organization="org-a")
                async with contextlib.AsyncExitStack() as stack:
                    feed = await open_feed(http, stack, token)
                    quick = client.submit_job("echo", {"n": 1}, organization="org-a")
                    seen = await asyncio.wait_for(feed.next_event(), DEADLINE)
                    assert seen["job"] == quick.id  # the hub has read past the open one
                page = await http.get("/jobs", headers=headers)
                assert page.status_code == 200
                start = re.search(r'data-events-from="([^"]+)"', page.text)
                assert start is not None and start.group(1) != str(seen["id"])
                slow.commit()
            async with contextlib.AsyncExitStack() as stack:
                feed = await open_feed(http, stack, token, last_event_id=start.group(1))
                event = await asyncio.wait_for(feed.next_event(), DEADLINE)
                assert event["job"] == early.id and event["id"] < seen["id"]
