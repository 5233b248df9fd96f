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
