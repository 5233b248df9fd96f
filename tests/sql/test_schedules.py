"""schedules.sql and cron.sql against a real PostgreSQL: the schedule API, the checks a psql
caller meets, one job per tick under concurrent passes, the missed-tick policies, and
isolation between organizations."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from cronsim import CronSim, CronSimError

from jobqueue import db, errors
from jobqueue.client import Client
from jobqueue.tasks import schedules
from tests.conftest import fresh_database
from tests.factories import make_job_type, make_org_with_member, run_job


@pytest.fixture
def owner(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with db.connect(dsn, autocommit=True) as conn:
        yield conn


def prepare(client: Client) -> str:
    make_job_type(client)
    make_org_with_member(client, "acme", "alice")
    make_org_with_member(client, "globex", "bob")
    return "acme"


@pytest.fixture
def acme(client: Client) -> str:
    return prepare(client)


@pytest.fixture(scope="module")
def refusing_dsn(server_dsn: str, template_name: str) -> Iterator[str]:
    """One prepared database for the refused schedules of this module. Each case checks that
    no schedule (and no event) is there after its refusal, so it fails itself if it writes
    one; the cases after it find the tables as prepared, as in a database of their own."""
    with fresh_database(server_dsn, template_name) as url:
        with Client(url) as client:
            prepare(client)
        yield url


@pytest.fixture(scope="module")
def refusing(refusing_dsn: str) -> Iterator[Client]:
    with Client(refusing_dsn) as client:
        yield client


@pytest.fixture(scope="module")
def refusing_owner(refusing_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with db.connect(refusing_dsn, autocommit=True) as conn:
        yield conn


def tick_pass(dsn: str) -> int:
    """One ticker pass, as a worker runs it."""

    async def run() -> int:
        pool = await db.make_async_pool(dsn, min_size=1, max_size=2)
        try:
            return await schedules.tick(pool)
        finally:
            await pool.close()

    return asyncio.run(run())


def ticks(owner: psycopg.Connection[Any], name: str = "every") -> list[tuple[Any, ...]]:
    return owner.execute(
        "SELECT k.tick_at, k.job_id, k.outcome FROM jobqueue.schedule_tick AS k"
        " JOIN jobqueue.schedule AS s ON s.id = k.schedule_id WHERE s.name = %s"
        " ORDER BY k.tick_at",
        (name,),
    ).fetchall()


def set_back(owner: psycopg.Connection[Any], name: str, by: timedelta) -> datetime:
    """As if the workers had been down: the schedule's ticks handled only up to ``by`` ago."""
    row = owner.execute(
        "UPDATE jobqueue.schedule SET ticked_until = now() - %s, next_run_at = NULL"
        " WHERE name = %s RETURNING ticked_until",
        (by, name),
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def test_create_list_update_enable_delete(client: Client, acme: str, owner: Any) -> None:
    made = client.create_schedule(
        "nightly",
        "echo",
        "30 2 * * *",
        {"full": True},
        organization=acme,
        timezone="Europe/Paris",
        actor="alice",
    )
    assert (made.name, made.organization, made.cron, made.timezone) == (
        "nightly",
        "acme",
        "30 2 * * *",
        "Europe/Paris",
    )
    assert made.enabled and made.next_run_at is None and made.created_by == "alice"
    assert [s.name for s in client.list_schedules(actor="alice")] == ["nightly"]
    changed = client.update_schedule("nightly", organization=acme, cron="@daily", actor="alice")
    assert changed.cron == "@daily" and changed.params == {"full": True}
    assert not client.set_schedule_enabled("nightly", False, organization=acme).enabled
    gone = client.delete_schedule("nightly", organization=acme, actor="alice")
    assert gone.name == "nightly" and client.list_schedules() == []
    types = [r[0] for r in owner.execute("SELECT type FROM jobqueue.event ORDER BY id")]
    assert types == [
        "schedule_created",
        "schedule_updated",
        "schedule_disabled",
        "schedule_deleted",
    ]


@pytest.mark.parametrize(
    ("cron", "timezone", "error"),
    [
        ("61 * * * *", "UTC", errors.InvalidCron),
        ("* * * *", "UTC", errors.InvalidCron),
        ("0 0 30 2 *", "UTC", errors.InvalidCron),
        ("*/0 * * * *", "UTC", errors.InvalidCron),
        ("5-1 * * * *", "UTC", errors.InvalidCron),
        ("0 0 L * *", "UTC", errors.InvalidCron),
        ("@reboot", "UTC", errors.InvalidCron),
        ("; DROP TABLE jobqueue.job", "UTC", errors.InvalidCron),
        ("0 * * * *", "Mars/Olympus", errors.UnknownTimeZone),
        ("0 * * * *", "", errors.UnknownTimeZone),
    ],
)
def test_a_bad_expression_or_zone_from_psql_is_refused_and_writes_nothing(
    refusing_dsn: str, refusing_owner: Any, cron: str, timezone: str, error: type
) -> None:
    """A plain psql session: the database itself refuses, with the documented SQLSTATE."""
    dsn, owner = refusing_dsn, refusing_owner
    with psycopg.connect(dsn, autocommit=True) as psql:
        with pytest.raises(psycopg.Error) as info:
            psql.execute(
                "SELECT * FROM jobqueue.create_schedule(name => 'x', job_type => 'echo',"
                " cron => %s, organization => 'acme', timezone => %s)",
                (cron, timezone),
            )
    assert info.value.sqlstate == error.sqlstate
    assert owner.execute("SELECT count(*) FROM jobqueue.schedule").fetchone() == (0,)
    assert owner.execute("SELECT count(*) FROM jobqueue.event").fetchone() == (0,)


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"job_type": "nope"}, errors.UnknownJobType),
        ({"name": "bad name"}, errors.InvalidArgument),
        ({"missed": "sometimes"}, errors.InvalidArgument),
        ({"catch_up_limit": 0}, errors.InvalidArgument),
        ({"grace": timedelta(0)}, errors.InvalidArgument),
        ({"priority": 5000}, errors.InvalidArgument),
        ({"organization": "initech"}, errors.OrganizationNotFound),
        # The submit paths' depth limit: a tick's job could not be submitted.
        ({"params": _nested(101)}, errors.InvalidArgument),
        ({"params": ["not", "an", "object"]}, errors.InvalidParams),
    ],
)
def test_bad_settings_are_refused(refusing: Client, settings: dict[str, Any], error: type) -> None:
    args: dict[str, Any] = {"name": "s", "job_type": "echo", "cron": "@hourly"}
    args |= {"organization": "acme"} | settings
    with pytest.raises(error):
        refusing.create_schedule(**args)
    assert refusing.list_schedules() == []


def test_a_taken_name_and_a_missing_schedule(client: Client, acme: str) -> None:
    client.create_schedule("s", "echo", "@hourly", organization=acme)
    with pytest.raises(errors.AlreadyExists):
        client.create_schedule("s", "echo", "@daily", organization=acme)
    # The same name in another organization is another schedule.
    client.create_schedule("s", "echo", "@daily", organization="globex")
    for call in (client.delete_schedule, client.run_schedule):
        with pytest.raises(errors.ScheduleNotFound):
            call("ghost", organization=acme)
    with pytest.raises(errors.ScheduleNotFound):
        client.update_schedule("ghost", organization=acme, cron="@daily")


# Expressions the SQL check and cronsim both take, and ones both refuse: one grammar.
AGREED = [
    "* * * * *",
    "*/15 9-17 * * MON-FRI",
    "0 0 1 jan,jul *",
    "5/20 * * * *",
    "0 12 * * 7",
    "1-59/2 0 1-31/3 * sun",
    "0 0 29 2 *",
    "0 0 31 1,3 *",
    "*/5 * * * * *",
    "0 0 31 2 1",
]
REFUSED = [
    "60 * * * *",
    "* 24 * * *",
    "* * 0 * *",
    "* * * 13 *",
    "* * * * 8",
    "1-2-3 * * * *",
    "*/x * * * *",
    "0 0 30 2 *",
    "* * * * * * *",
    "*,, * * * *",
]


def test_the_database_takes_what_cronsim_computes(owner: Any) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for expression in AGREED:
        fields = owner.execute("SELECT jobqueue._cron_expression(%s)", (expression,)).fetchone()
        assert fields is not None
        next(CronSim(fields[0], start))
    for expression in REFUSED:
        with pytest.raises(psycopg.Error) as info:
            owner.execute("SELECT jobqueue._cron_expression(%s)", (expression,))
        assert info.value.sqlstate == "JQV13", expression
        with pytest.raises((CronSimError, StopIteration)):
            next(CronSim(expression.upper(), start))


def test_nicknames_are_their_five_fields(owner: Any) -> None:
    rows = owner.execute(
        "SELECT x, jobqueue._cron_expression(x) FROM unnest(ARRAY['@yearly', '@annually',"
        " '@monthly', '@weekly', '@daily', '@midnight', '@HOURLY']) AS x"
    ).fetchall()
    assert dict(rows) == {
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
        "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@HOURLY": "0 * * * *",
    }


def test_a_pass_plans_a_zoned_schedule_by_the_database_clock(
    client: Client, acme: str, dsn: str, owner: Any
) -> None:
    client.create_schedule("nine", "echo", "0 9 * * *", organization=acme, timezone="Asia/Tokyo")
    tick_pass(dsn)
    (next_run, now) = owner.execute(
        "SELECT next_run_at, now() FROM jobqueue.schedule WHERE name = 'nine'"
    ).fetchone()
    assert next_run.astimezone(UTC).hour == 0  # 09:00 in Tokyo (UTC+9, no DST)
    assert now < next_run <= now + timedelta(days=1)
    # The first plan after a change is evented, so a live view shows the next run; later
    # passes with nothing due say nothing.
    tick_pass(dsn)
    planned = [e for e in client.events_since(actor="alice") if e.type == "schedule_planned"]
    assert len(planned) == 1
    assert planned[0].org == acme and planned[0].job is None
    assert datetime.fromisoformat(planned[0].data["next_run_at"]) == next_run
    assert planned[0].data["schedule"] == "nine"


def test_concurrent_passes_fire_each_tick_once(
    client: Client, acme: str, dsn: str, owner: Any
) -> None:
    """Eight passes at once over a schedule with two minutes of due ticks: one job each."""
    client.create_schedule(
        "every",
        "echo",
        "* * * * * *",
        organization=acme,
        dedup=False,
        grace=timedelta(minutes=5),
    )
    set_back(owner, "every", timedelta(minutes=2))
    barrier = threading.Barrier(8)
    fired: list[int] = []

    def racer() -> None:
        barrier.wait()
        fired.append(tick_pass(dsn))

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = ticks(owner)
    assert 120 <= len(rows) == sum(fired)
    jobs = owner.execute("SELECT count(*), count(DISTINCT params) FROM jobqueue.job").fetchone()
    assert jobs == (len(rows), 1)
    assert len({job for _, job, _ in rows}) == len(rows)
    seconds = [t.timestamp() for t, _, _ in rows]
    assert seconds == [seconds[0] + i for i in range(len(seconds))]  # no gap, no repeat


def test_the_key_refuses_a_tick_fired_twice_from_two_transactions(
    client: Client, acme: str, dsn: str, owner: Any
) -> None:
    """Two sessions fire the same ticks, the second with a plan made before the first
    committed: each tick gets one job."""
    made = client.create_schedule("every", "echo", "* * * * * *", organization=acme, dedup=False)
    set_back(owner, "every", timedelta(seconds=30))
    due = owner.execute(
        "SELECT array_agg(t) FROM generate_series(date_trunc('second', now()) - interval '20 s',"
        " date_trunc('second', now()) - interval '10 s', interval '1 s') AS t"
    ).fetchone()[0]
    call = "SELECT jobqueue.fire_schedule(%s, 1, %s, now(), NULL)"
    with db.connect(dsn, autocommit=True) as a, db.connect(dsn, autocommit=True) as b:
        assert a.execute(call, (made.id, due)).fetchone() == (11,)
        # As a late session would: the schedule's ticks handled up to an older point.
        owner.execute("UPDATE jobqueue.schedule SET ticked_until = now() - interval '1 hour'")
        assert b.execute(call, (made.id, due)).fetchone() == (0,)
    assert len(ticks(owner)) == 11
    assert owner.execute("SELECT count(*) FROM jobqueue.job").fetchone() == (11,)


def test_skip_drops_the_ticks_missed_while_workers_were_down(
    client: Client, acme: str, dsn: str, owner: Any
) -> None:
    client.create_schedule("every", "echo", "* * * * *", organization=acme, dedup=False)
    set_back(owner, "every", timedelta(hours=1))
    assert tick_pass(dsn) == 1  # the minute within the grace
    (tick_at, _, outcome), *_ = ticks(owner)
    (now,) = owner.execute("SELECT now()").fetchone()
    assert now - tick_at < timedelta(minutes=1) and outcome == "submitted"
    missed = owner.execute(
        "SELECT data FROM jobqueue.event WHERE type = 'schedule_missed'"
    ).fetchone()
    assert missed is not None and missed[0]["skipped"] in (58, 59)
    assert tick_pass(dsn) == 0  # the next pass has nothing left to do


def test_catch_up_runs_the_latest_missed_ticks_once(
    client: Client, acme: str, dsn: str, owner: Any
) -> None:
    client.create_schedule(
        "every",
        "echo",
        "* * * * *",
        organization=acme,
        dedup=False,
        missed="catch_up",
        catch_up_limit=3,
    )
    set_back(owner, "every", timedelta(hours=1))
    assert tick_pass(dsn) == 4  # three missed minutes, then the one within the grace
    at = [t for t, _, _ in ticks(owner)]
    assert [b - a for a, b in zip(at, at[1:], strict=False)] == [timedelta(minutes=1)] * 3
    assert tick_pass(dsn) == 0


def test_a_ticks_job_is_a_normal_job_and_a_refused_tick_is_recorded(
    client: Client, acme: str, dsn: str, owner: Any
) -> None:
    make_job_type(client, "limited", rate_limit=1, rate_period=timedelta(hours=1))
    client.create_schedule(
        "every",
        "limited",
        "* * * * * *",
        organization=acme,
        dedup=False,
        grace=timedelta(minutes=5),
    )
    set_back(owner, "every", timedelta(seconds=5))
    tick_pass(dsn)
    outcomes = [o for _, _, o in ticks(owner)]
    assert outcomes[0] == "submitted" and set(outcomes[1:]) == {"failed"}
    (error,) = owner.execute("SELECT last_error FROM jobqueue.schedule").fetchone()
    assert "rate limit" in error
    assert owner.execute("SELECT count(*) FROM jobqueue.job").fetchone() == (1,)


def test_dedup_answers_a_tick_with_the_active_job(
    client: Client, acme: str, dsn: str, owner: Any
) -> None:
    client.create_schedule("every", "echo", "* * * * * *", organization=acme)
    set_back(owner, "every", timedelta(seconds=4))
    tick_pass(dsn)
    rows = ticks(owner)
    assert [o for _, _, o in rows] == ["submitted"] + ["duplicate"] * (len(rows) - 1)
    assert len({j for _, j, _ in rows}) == 1


def test_run_now_and_the_last_job_status(client: Client, acme: str, dsn: str) -> None:
    client.create_schedule("s", "echo", "@yearly", {"a": 1}, organization=acme)
    job = client.run_schedule("s", organization=acme, actor="alice")
    assert job.params == {"a": 1} and job.job_type == "echo" and not job.duplicate
    assert client.run_schedule("s", organization=acme).duplicate
    run_job(dsn, job.id)
    (listed,) = client.list_schedules(organization=acme)
    assert listed.last_job_id == job.id and listed.last_job_status == "completed"
    assert listed.last_run_at is not None and listed.last_tick_at is None


def test_a_disabled_schedule_does_not_tick_and_resumes_from_now(
    client: Client, acme: str, dsn: str, owner: Any
) -> None:
    client.create_schedule("every", "echo", "* * * * * *", organization=acme, dedup=False)
    client.set_schedule_enabled("every", False, organization=acme)
    set_back(owner, "every", timedelta(seconds=10))
    assert tick_pass(dsn) == 0
    client.set_schedule_enabled("every", True, organization=acme)
    tick_pass(dsn)
    (since,) = owner.execute("SELECT updated_at FROM jobqueue.schedule").fetchone()
    assert all(t > since for t, _, _ in ticks(owner))


def test_another_organization_cannot_see_or_change_a_schedule(
    client: Client, acme: str, owner: Any
) -> None:
    client.create_schedule("nightly", "echo", "@daily", organization=acme)
    before = owner.execute("SELECT s::text FROM jobqueue.schedule AS s").fetchall()
    assert client.list_schedules(actor="bob") == []
    with pytest.raises(errors.Forbidden):
        client.list_schedules(actor="bob", organization=acme)
    for call in (client.delete_schedule, client.run_schedule):
        with pytest.raises(errors.Forbidden):
            call("nightly", organization=acme, actor="bob")
    with pytest.raises(errors.Forbidden):
        client.update_schedule("nightly", organization=acme, cron="* * * * *", actor="bob")
    with pytest.raises(errors.Forbidden):
        client.set_schedule_enabled("nightly", False, organization=acme, actor="bob")
    with pytest.raises(errors.Forbidden):
        client.create_schedule("mine", "echo", "@daily", organization=acme, actor="bob")
    assert all(e.org != "acme" for e in client.events_since(actor="bob"))
    assert owner.execute("SELECT s::text FROM jobqueue.schedule AS s").fetchall() == before
    assert owner.execute("SELECT count(*) FROM jobqueue.job").fetchone() == (0,)
