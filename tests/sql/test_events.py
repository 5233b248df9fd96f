"""events.sql against real PostgreSQL: one event per change, an empty NOTIFY at commit, and
events_since replay that a reader can page through without gaps."""

from __future__ import annotations

import psycopg
import pytest

from jobqueue import db, errors
from jobqueue.client import Client
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


def test_notify_is_an_empty_wake_up_sent_once_at_commit(setup: Client, dsn: str) -> None:
    """The channel carries no organization's data (any login may LISTEN): one empty
    notification per transaction, however many statements wrote events in it."""
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN jobqueue_events")
        with db.connect(dsn) as writer:
            client = Client(connection=writer)
            first = client.submit_job("echo", {"n": 2}, organization="acme")
            client.submit_jobs(
                [{"job_type": "echo", "organization": "acme", "params": {"n": n}} for n in (3, 4)]
            )
            client.cancel_job(first.id)
            assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
            writer.commit()
        received = list(listener.notifies(timeout=30, stop_after=1))
        received += list(listener.notifies(timeout=0.5))
    assert [(n.channel, n.payload) for n in received] == [("jobqueue_events", "")]
    assert len(setup.events_since()) == 4


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


def test_a_statement_s_events_share_rows_and_keep_their_own_ids(setup: Client, dsn: str) -> None:
    """One event_batch row per statement and organization, at most 1,024 events to a row; the
    events keep distinct ids in submit order, and paging cuts through a row without a gap."""
    acme = setup.submit_jobs(
        [{"job_type": "echo", "organization": "acme", "params": {"n": n}} for n in range(1500)]
        + [{"job_type": "echo", "organization": "globex", "params": {"n": n}} for n in range(3)]
    )
    with db.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT organization_id, cardinality(types) FROM jobqueue.event_batch ORDER BY first_id"
        ).fetchall()
    assert sorted(n for _, n in rows) == [3, 476, 1024]
    assert len({org for org, _ in rows}) == 2

    events = setup.events_since(organization="acme", max_rows=10000)
    assert [e.job for e in events] == [j.id for j in acme[:1500]]
    assert len({e.id for e in events}) == 1500
    seen: list[int] = []
    after = 0
    while page := setup.events_since(after_id=after, max_rows=333):
        seen.extend(e.id for e in page)
        after = page[-1].id
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 1503
    assert [e.job for e in setup.events_since(job_id=acme[1400].id)] == [acme[1400].id]
    with db.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT jobqueue.latest_event_id()").fetchone() == (max(seen),)
        feed = conn.execute(
            "SELECT events FROM jobqueue.event_feed(after_id => %s, max_rows => 100)",
            (seen[1099],),
        ).fetchone()
    assert feed is not None
    assert [e["id"] for e in feed[0]] == seen[1100:1200]
