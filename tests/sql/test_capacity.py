"""The capacity controls (capacity.sql): who may use them, what they record, what they refuse,
a queued job's priority, and a job's own queue, retries and timeout at submit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from jobqueue import db, errors
from jobqueue.client import Client
from tests.factories import make_job_type, make_org_with_member, run_job, start_job


@pytest.fixture
def setup(client: Client) -> Client:
    make_job_type(client, max_retries=0)
    make_org_with_member(client, "alpha", "ada", role="admin")
    make_org_with_member(client, "alpha", "amy")
    make_org_with_member(client, "bravo", "bob", role="admin")
    return client


def events(dsn: str, kind: str) -> list[dict[str, Any]]:
    with db.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT o.name, e.job_id, e.data FROM jobqueue.event AS e"
            " JOIN jobqueue.organization AS o ON o.id = e.organization_id"
            " WHERE e.type = %s ORDER BY e.id",
            (kind,),
        ).fetchall()
    return [{"organization": r[0], "job_id": r[1], "data": r[2]} for r in rows]


def test_an_organization_admin_pauses_and_resumes_only_its_own_organization(
    setup: Client, dsn: str
) -> None:
    paused = setup.pause_queue("default", organization="alpha", actor="ada")
    assert (paused.queue_name, paused.organization_name, paused.paused) == (
        "default",
        "alpha",
        True,
    )
    with pytest.raises(errors.Forbidden):
        setup.pause_queue("default", organization="bravo", actor="ada")
    with pytest.raises(errors.Forbidden):
        setup.resume_queue("default", organization="alpha", actor="amy")  # a plain member
    with pytest.raises(errors.Forbidden):
        setup.pause_queue("default", actor="ada")  # every organization: admins only
    usage = {(u.queue, u.organization): u for u in setup.list_queue_usage()}
    assert usage[("default", "alpha")].paused and not usage[("default", "alpha")].queue_paused

    setup.resume_queue("default", organization="alpha", actor="ada")
    assert [e["data"]["queue"] for e in events(dsn, "queue_paused")] == ["default"]
    assert [(e["organization"], e["job_id"]) for e in events(dsn, "queue_resumed")] == [
        ("alpha", None)
    ]


def test_a_global_pause_is_announced_to_every_organization(setup: Client, dsn: str) -> None:
    setup.pause_queue("default")
    setup.pause_queue("default")  # again: no change, no event

    assert sorted(e["organization"] for e in events(dsn, "queue_paused")) == ["alpha", "bravo"]
    assert next(q for q in setup.list_queues() if q.queue == "default").paused


def test_limits_are_for_admins_and_checked(setup: Client, dsn: str) -> None:
    with pytest.raises(errors.Forbidden):
        setup.set_queue_limits("default", concurrency=5, actor="ada")
    with pytest.raises(errors.Forbidden):
        setup.set_organization_limits("default", "alpha", concurrency=50, actor="ada")
    with pytest.raises(errors.Forbidden):
        setup.set_job_type_limits("echo", concurrency=1, actor="ada")
    with pytest.raises(errors.InvalidLimit):
        setup.set_queue_limits("default", concurrency=-1)
    with pytest.raises(errors.InvalidLimit):
        setup.set_organization_limits("default", "alpha", weight=0)
    with pytest.raises(errors.InvalidLimit):
        setup.set_job_type_limits("echo", start_limit=5)  # no period
    with pytest.raises(errors.QueueNotFound):
        setup.set_queue_limits("defualt", concurrency=1)
    with pytest.raises(errors.UnknownJobType):
        setup.set_job_type_limits("nope", concurrency=1)
    with pytest.raises(errors.OrganizationNotFound):
        setup.set_organization_limits("default", "charlie", concurrency=1)
    assert events(dsn, "limits_changed") == []

    queue = setup.set_queue_limits("default", concurrency=10, organization_concurrency=3)
    assert (queue.concurrency, queue.organization_concurrency) == (10, 3)
    org = setup.set_organization_limits("default", "bravo", concurrency=5, weight=2)
    assert (org.organization, org.concurrency, org.weight) == ("bravo", 5, 2)
    kind = setup.set_job_type_limits("echo", start_limit=5, start_period=timedelta(minutes=1))
    assert (kind.start_limit, kind.start_period) == (5, timedelta(minutes=1))
    assert [t.job_type for t in setup.list_job_type_limits(actor="amy")] == ["echo"]

    setup.submit_job("echo", {"a": 1}, organization="alpha")
    usage = {u.organization: u for u in setup.list_queue_usage(queue="default")}
    assert (usage["alpha"].concurrency, usage["alpha"].weight, usage["alpha"].queued) == (3, 1, 1)
    assert (usage["bravo"].concurrency, usage["bravo"].weight) == (5, 2)
    # The queue's settings reach every organization's feed; bravo's own, bravo's only.
    changes = events(dsn, "limits_changed")
    assert sorted(e["organization"] for e in changes) == ["alpha", "alpha", "bravo"] + ["bravo"] * 2


def test_readers_show_only_the_actor_s_organizations(setup: Client) -> None:
    setup.submit_job("echo", {"a": 1}, organization="alpha")
    setup.submit_job("echo", {"b": 1}, organization="bravo")
    setup.submit_job("echo", {"b": 2}, organization="bravo")

    assert {u.organization for u in setup.list_queue_usage(actor="amy")} == {"alpha"}
    default = next(q for q in setup.list_queues(actor="amy") if q.queue == "default")
    assert default.queued == 1
    assert next(q for q in setup.list_queues() if q.queue == "default").queued == 3
    with pytest.raises(errors.Forbidden):
        setup.list_queue_usage(organization="bravo", actor="amy")


def test_a_queued_job_s_priority_changes_and_is_recorded(setup: Client, dsn: str) -> None:
    first = setup.submit_job("echo", {"n": 1}, organization="alpha")
    second = setup.submit_job("echo", {"n": 2}, organization="alpha")

    changed = setup.set_job_priority(second.id, 50, actor="amy")

    assert changed.priority == 50 and changed.status == "queued"
    # Its vehicle moved up with it: the next fetch takes it first.
    assert start_job(dsn, second.id) == 1
    assert events(dsn, "priority_changed") == [
        {
            "organization": "alpha",
            "job_id": second.id,
            "data": {"status": "queued", "from": 0, "to": 50, "by": "amy"},
        }
    ]
    with pytest.raises(errors.JobStarted):
        setup.set_job_priority(second.id, 1)
    with pytest.raises(errors.JobNotFound):
        setup.set_job_priority(first.id, 10, actor="bob")
    with pytest.raises(errors.InvalidArgument):
        setup.set_job_priority(first.id, 5000)
    assert setup.get_job(first.id).priority == 0


def test_a_job_names_its_own_queue_retries_and_timeout(setup: Client, dsn: str) -> None:
    job = setup.submit_job(
        "echo",
        {"own": 1},
        organization="alpha",
        queue="urgent",
        max_retries=0,
        timeout=timedelta(seconds=7),
    )
    assert (job.queue, job.max_retries, job.timeout) == ("urgent", 0, timedelta(seconds=7))
    batch = setup.submit_jobs(
        [
            {"job_type": "echo", "organization": "bravo", "params": {"own": 2}, "timeout": 90},
            {"job_type": "echo", "organization": "bravo", "params": {"own": 3}},
        ]
    )
    assert [b.timeout for b in batch] == [timedelta(seconds=90), timedelta(minutes=5)]
    with db.connect(dsn) as conn:
        vehicle = conn.execute(
            "SELECT queue_name FROM procrastinate.procrastinate_jobs WHERE args->>'job_id' = %s",
            (str(job.id),),
        ).fetchone()
    assert vehicle == ("urgent",)
    # The job's own settings ride to the worker, and its retries are its own.
    run_job(dsn, job.id, "failed")
    assert setup.get_job(job.id).status == "dead"


@pytest.mark.parametrize(
    "override",
    [{"queue": "no spaces"}, {"max_retries": 101}, {"timeout": 0}, {"timeout": "8 days"}],
)
def test_a_bad_override_is_refused_and_writes_nothing(
    setup: Client, override: dict[str, Any]
) -> None:
    with pytest.raises(errors.InvalidArgument):
        setup.submit_jobs(
            [
                {"job_type": "echo", "organization": "alpha", "params": {"ok": 1}},
                {"job_type": "echo", "organization": "alpha", "params": {"bad": 1}, **override},
            ]
        )
    assert setup.list_jobs() == []
