"""events.sql against real PostgreSQL: one event per change, NOTIFY at commit with the
documented payload, and events_since replay that a reader can page through without gaps."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest

from jobqueue import db, errors
from jobqueue.client import Client
from jobqueue.models import Event
from tests.factories import finish_job, make_job_type, make_org_with_member, start_job


@pytest.fixture
def setup(client: Client) -> Client:
    make_job_type(client)
    make_org_with_member(client, "acme", "alice")
    make_org_with_member(client, "globex", "bob")
    return client


def test_each_change_writes_one_event_in_order(setup: Client, dsn: str) -> None:
    job = setup.submit_job("echo", {"n": 1}, organization="acme")
    attempt = start_job(dsn, job.id)
    with db.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT jobqueue.report_progress(%s, %s, 50, 'half')", (job.id, attempt))
    finish_job(dsn, job.id, attempt, "completed", result={"ok": True})
    events = setup.events_since(job_id=job.id)
    assert [e.type for e in events] == ["submitted", "started", "progress", "completed"]
    assert [e.data["status"] for e in events] == ["queued", "running", "running", "completed"]
    assert events[2].data["percent"] == 50
    assert all(e.org == "acme" and e.job == job.id for e in events)
    assert [e.id for e in events] == sorted(e.id for e in events)


def test_duplicate_submit_writes_no_event(setup: Client) -> None:
    setup.submit_job("echo", {"n": 1}, organization="acme")
    before = setup.events_since()
    assert setup.submit_job("echo", {"n": 1}, organization="acme").duplicate
    assert setup.events_since() == before


def test_notify_is_sent_at_commit_with_the_documented_payload(setup: Client, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN jobqueue_events")
        with db.connect(dsn) as writer:
            job = Client(connection=writer).submit_job("echo", {"n": 2}, organization="acme")
            assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
            writer.commit()
        received = list(listener.notifies(timeout=30, stop_after=1))
    assert len(received) == 1
    payload = json.loads(received[0].payload)
    assert set(payload) == {"id", "org_id", "org", "job", "type", "data", "at"}
    assert (payload["org"], payload["job"], payload["type"]) == ("acme", job.id, "submitted")
    assert payload["data"]["status"] == "queued"
    assert payload["id"] == setup.events_since(job_id=job.id)[0].id


def test_events_since_pages_and_filters(setup: Client) -> None:
    acme = [setup.submit_job("echo", {"n": n}, organization="acme") for n in range(5)]
    globex = setup.submit_job("echo", {"n": 0}, organization="globex")
    seen: list[int] = []
    after = 0
    while page := setup.events_since(after_id=after, max_rows=2):
        assert len(page) <= 2
        seen.extend(e.job for e in page if e.job is not None)
        after = page[-1].id
    assert seen == [j.id for j in acme] + [globex.id]
    assert [e.job for e in setup.events_since(organization="globex")] == [globex.id]
    assert [e.job for e in setup.events_since(actor="alice")] == [j.id for j in acme]
    assert [e.job for e in setup.events_since(job_id=acme[3].id)] == [acme[3].id]


@pytest.mark.parametrize("max_rows", [0, -1, 10001])
def test_bad_max_rows_is_refused(setup: Client, max_rows: int) -> None:
    with pytest.raises(errors.InvalidArgument):
        setup.events_since(max_rows=max_rows)


def test_foreign_organization_is_refused(setup: Client) -> None:
    with pytest.raises(errors.Forbidden):
        setup.events_since(actor="alice", organization="globex")
    with pytest.raises(errors.OrganizationNotFound):
        setup.events_since(organization="nowhere")


def poll_settled(client: Client, after_id: int, expected: int) -> list[Event]:
    """Settled events wait for every older write transaction on the server to end, including
    other databases' (a shared test server), so poll with a generous deadline."""
    deadline = time.monotonic() + 60
    while True:
        events = client.events_since(after_id=after_id, max_rows=10000, settled=True)
        if len(events) >= expected or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def test_a_reader_never_skips_an_event_committed_after_a_higher_id(setup: Client, dsn: str) -> None:
    """Ids are taken at insert, commits land in any order: a settled replay cursor must not
    pass an id whose transaction may still commit."""
    rounds = 10
    for n in range(rounds):
        slow = db.connect(dsn)
        try:
            # The slow transaction takes the lower event id and commits last.
            Client(connection=slow).submit_job("echo", {"slow": n}, organization="acme")
            fast_done = threading.Event()

            def fast(n: int = n, done: threading.Event = fast_done) -> None:
                with Client(dsn) as other:
                    other.submit_job("echo", {"fast": n}, organization="acme")
                done.set()

            thread = threading.Thread(target=fast)
            thread.start()
            thread.join(timeout=60)
            assert fast_done.is_set()
            seen = setup.events_since(max_rows=10000, settled=True)
            cursor = max((e.id for e in seen), default=0)
            slow.commit()
        finally:
            slow.close()
        everything = setup.events_since(max_rows=10000)
        late = poll_settled(setup, cursor, len(everything) - len(seen))
        replayed = seen + late
        assert [e.id for e in replayed] == [e.id for e in everything], f"round {n}: gap"


def test_settled_reader_misses_nothing_under_concurrent_writers(setup: Client, dsn: str) -> None:
    writers, per_writer = 6, 40
    barrier = threading.Barrier(writers + 1)
    failures: list[BaseException] = []

    def write(tag: int) -> None:
        try:
            with Client(dsn) as writer:
                barrier.wait()
                for n in range(per_writer):
                    writer.submit_job("echo", {"w": tag, "n": n}, organization="acme")
        except BaseException as exc:  # re-raised through the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(tag,)) for tag in range(writers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    collected: list[int] = []
    cursor = 0
    deadline = time.monotonic() + 120
    while len(collected) < writers * per_writer and time.monotonic() < deadline:
        page = setup.events_since(after_id=cursor, max_rows=50, settled=True)
        collected.extend(e.id for e in page)
        if page:
            cursor = page[-1].id
        else:
            time.sleep(0.02)
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    everything = [e.id for e in setup.events_since(max_rows=10000)]
    assert len(everything) == writers * per_writer
    assert collected == everything, "the settled reader skipped or repeated an event"
