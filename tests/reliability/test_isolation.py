"""Organization isolation on every SQL path, enumerated from the catalog.

Every public function of schema ``jobqueue`` that takes an ``actor`` must be listed in
``CALLS`` below with a way to aim it at another organization's data; a new function that is
not listed fails :func:`test_every_actor_function_is_covered`, so it cannot skip the check
unnoticed. Each call runs as a role holding ``jobqueue_client`` and ``jobqueue_admin``, as a
user who is an admin of her own organization but has no access to ``bravo``; it must be
refused or return nothing of ``bravo``, and must change no row anywhere. Which role may run
which function is checked here too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from jobqueue import db as jobqueue_db
from jobqueue import errors
from jobqueue.client import Client
from tests.factories import make_job_type, make_org_with_member, make_token, run_job
from tests.reliability.conftest import table_fingerprints

Rows = list[dict[str, Any]]


@dataclass
class Bravo:
    """Ids of the other organization's data that the calls aim at."""

    queued_job: int
    dead_job: int
    ran_job: int
    token_id: int


@dataclass(frozen=True)
class Aim:
    """How to call one function against bravo, and what a safe answer looks like."""

    sql: str
    params: Callable[[Bravo], dict[str, Any]] = lambda b: {}
    refuses: tuple[type[errors.JobqueueError], ...] = ()
    # For calls that answer: no row may carry bravo's name or one of its job ids.
    job_fields: tuple[str, ...] = field(default=())
    # For counters without an organization column: alice's own single job, nothing more.
    own_jobs_only: bool = False


NOT_YOURS = (errors.JobNotFound, errors.Forbidden)


def _job(name: str) -> Aim:
    return Aim(
        f"SELECT * FROM jobqueue.{name}(job_id => %(job)s, actor => %(actor)s)",
        lambda b: {"job": b.queued_job if name == "cancel_job" else b.dead_job},
        refuses=(errors.JobNotFound,),
    )


CALLS: dict[str, Aim] = {
    "get_job": _job("get_job"),
    "cancel_job": _job("cancel_job"),
    "retry_job": _job("retry_job"),
    "job_attempts": Aim(
        "SELECT * FROM jobqueue.job_attempts(job_id => %(job)s, actor => %(actor)s)",
        lambda b: {"job": b.ran_job},
        refuses=(errors.JobNotFound,),
    ),
    "cancel_jobs": Aim(
        "SELECT * FROM jobqueue.cancel_jobs(actor => %(actor)s, organization => 'bravo',"
        " status => NULL, job_type => NULL)",
        refuses=NOT_YOURS,
    ),
    "retry_jobs": Aim(
        "SELECT * FROM jobqueue.retry_jobs(actor => %(actor)s, organization => 'bravo',"
        " status => NULL, job_type => NULL)",
        refuses=NOT_YOURS,
    ),
    "list_jobs": Aim(
        "SELECT * FROM jobqueue.list_jobs(actor => %(actor)s, organization => 'bravo',"
        " status => NULL, job_type => NULL, created_after => NULL, created_before => NULL,"
        " before_id => NULL, page_size => 100)",
        refuses=NOT_YOURS,
    ),
    "events_since": Aim(
        "SELECT * FROM jobqueue.events_since(actor => %(actor)s, after_id => 0,"
        " organization => 'bravo', job_id => NULL, max_rows => 1000)",
        refuses=NOT_YOURS,
    ),
    "metrics": Aim(
        "SELECT jobqueue.metrics(actor => %(actor)s, organization => 'bravo', since => NULL)",
        refuses=NOT_YOURS,
    ),
    "submit_job": Aim(
        "SELECT * FROM jobqueue.submit_job(job_type => 'echo', params => '{}',"
        " organization => 'bravo', priority => NULL, run_at => NULL, depends_on => NULL,"
        " dedup => false, actor => %(actor)s)",
        refuses=NOT_YOURS,
    ),
    "submit_jobs": Aim(
        "SELECT * FROM jobqueue.submit_jobs(jobs => %(jobs)s::jsonb, actor => %(actor)s)",
        lambda b: {"jobs": json.dumps([{"job_type": "echo", "organization": "bravo"}])},
        refuses=NOT_YOURS,
    ),
    "add_member": Aim(
        "SELECT * FROM jobqueue.add_member(user_id => 'alice', organization => 'bravo',"
        " role => 'admin', actor => %(actor)s)",
        refuses=NOT_YOURS,
    ),
    "remove_member": Aim(
        "SELECT * FROM jobqueue.remove_member(user_id => 'bob', organization => 'bravo',"
        " actor => %(actor)s)",
        refuses=NOT_YOURS,
    ),
    "create_token": Aim(
        "SELECT * FROM jobqueue.create_token(user_id => 'bob', name => 'stolen',"
        " actor => %(actor)s)",
        refuses=NOT_YOURS,
    ),
    "list_tokens": Aim(
        "SELECT * FROM jobqueue.list_tokens(user_id => 'bob', actor => %(actor)s)",
        refuses=(errors.Forbidden,),
    ),
    "revoke_token": Aim(
        "SELECT * FROM jobqueue.revoke_token(token_id => %(token)s, actor => %(actor)s)",
        lambda b: {"token": b.token_id},
        refuses=(errors.TokenNotFound, errors.Forbidden),
    ),
    "create_user": Aim(
        "SELECT * FROM jobqueue.create_user(user_id => 'mallory', admin => true,"
        " actor => %(actor)s)",
        refuses=(errors.Forbidden,),
    ),
    "create_organization": Aim(
        "SELECT * FROM jobqueue.create_organization(name => 'charlie', actor => %(actor)s)",
        refuses=(errors.Forbidden,),
    ),
    "register_job_type": Aim(
        "SELECT * FROM jobqueue.register_job_type(name => 'echo',"
        " handler => 'evil.module:run', queue => 'default', priority => 0, max_retries => 0,"
        " timeout => '1 second', backoff_base => '1 second', backoff_max => '1 second',"
        " dedup_window => NULL, rate_limit => NULL, rate_period => NULL, enabled => true,"
        " actor => %(actor)s)",
        refuses=(errors.Forbidden,),
    ),
    "set_job_type_enabled": Aim(
        "SELECT * FROM jobqueue.set_job_type_enabled(name => 'echo', enabled => false,"
        " actor => %(actor)s)",
        refuses=(errors.Forbidden,),
    ),
    "pause_queue": Aim(
        "SELECT * FROM jobqueue.pause_queue(queue => 'default', organization => 'bravo',"
        " actor => %(actor)s)",
        refuses=NOT_YOURS,
    ),
    "resume_queue": Aim(
        "SELECT * FROM jobqueue.resume_queue(queue => 'default', organization => 'bravo',"
        " actor => %(actor)s)",
        refuses=NOT_YOURS,
    ),
    "set_queue_limits": Aim(
        "SELECT * FROM jobqueue.set_queue_limits(queue => 'default', concurrency => 0,"
        " organization_concurrency => 0, actor => %(actor)s)",
        refuses=(errors.Forbidden,),
    ),
    "set_organization_limits": Aim(
        "SELECT * FROM jobqueue.set_organization_limits(queue => 'default',"
        " organization => 'bravo', concurrency => 0, weight => 1, actor => %(actor)s)",
        refuses=(errors.Forbidden,),
    ),
    "set_job_type_limits": Aim(
        "SELECT * FROM jobqueue.set_job_type_limits(name => 'echo', concurrency => 0,"
        " start_limit => NULL, start_period => NULL, actor => %(actor)s)",
        refuses=(errors.Forbidden,),
    ),
    "set_job_priority": Aim(
        "SELECT * FROM jobqueue.set_job_priority(job_id => %(job)s, priority => 9,"
        " actor => %(actor)s)",
        lambda b: {"job": b.queued_job},
        refuses=(errors.JobNotFound,),
    ),
    "list_queue_usage": Aim(
        "SELECT * FROM jobqueue.list_queue_usage(actor => %(actor)s, queue => NULL,"
        " organization => 'bravo')",
        refuses=NOT_YOURS,
    ),
    # Readers without an organization argument answer with the actor's own data only.
    "list_queues": Aim("SELECT * FROM jobqueue.list_queues(actor => %(actor)s)"),
    "list_organizations": Aim("SELECT * FROM jobqueue.list_organizations(actor => %(actor)s)"),
    "active_job_counts": Aim(
        "SELECT * FROM jobqueue.active_job_counts(actor => %(actor)s)", own_jobs_only=True
    ),
    "job_counts": Aim("SELECT * FROM jobqueue.job_counts(actor => %(actor)s)", own_jobs_only=True),
    "queue_depths": Aim(
        "SELECT * FROM jobqueue.queue_depths(actor => %(actor)s)", own_jobs_only=True
    ),
    "metric_totals": Aim("SELECT * FROM jobqueue.metric_totals(actor => %(actor)s)"),
    "list_workers": Aim(
        "SELECT * FROM jobqueue.list_workers(actor => %(actor)s)", job_fields=("running",)
    ),
    "create_schedule": Aim(
        "SELECT * FROM jobqueue.create_schedule(name => 'mine', job_type => 'echo',"
        " cron => '* * * * *', params => '{}', organization => 'bravo', timezone => 'UTC',"
        " enabled => true, priority => NULL, dedup => true, missed => 'skip',"
        " catch_up_limit => 1, grace => '1 minute', actor => %(actor)s)",
        refuses=NOT_YOURS,
    ),
    "update_schedule": Aim(
        "SELECT * FROM jobqueue.update_schedule(name => 'nightly', organization => 'bravo',"
        " job_type => NULL, cron => '* * * * *', params => NULL, timezone => NULL,"
        " enabled => NULL, priority => NULL, dedup => NULL, missed => NULL,"
        " catch_up_limit => NULL, grace => NULL, actor => %(actor)s)",
        refuses=NOT_YOURS,
    ),
    "set_schedule_enabled": Aim(
        "SELECT * FROM jobqueue.set_schedule_enabled(name => 'nightly', organization => 'bravo',"
        " enabled => false, actor => %(actor)s)",
        refuses=NOT_YOURS,
    ),
    "delete_schedule": Aim(
        "SELECT * FROM jobqueue.delete_schedule(name => 'nightly', organization => 'bravo',"
        " actor => %(actor)s)",
        refuses=NOT_YOURS,
    ),
    "run_schedule": Aim(
        "SELECT * FROM jobqueue.run_schedule(name => 'nightly', organization => 'bravo',"
        " actor => %(actor)s)",
        refuses=NOT_YOURS,
    ),
    "list_schedules": Aim(
        "SELECT * FROM jobqueue.list_schedules(actor => %(actor)s, organization => 'bravo')",
        refuses=NOT_YOURS,
    ),
    # Job types are global definitions, not organization data.
    "list_job_types": Aim("SELECT * FROM jobqueue.list_job_types(actor => %(actor)s)"),
    "list_job_type_limits": Aim("SELECT * FROM jobqueue.list_job_type_limits(actor => %(actor)s)"),
}

# Public functions without an actor: the worker's side (never granted to the client role)
# and answers that carry no organization's data.
WORKER_ONLY = {
    "fetch_vehicles",
    "finish_attempts",
    "finish_and_fetch",
    "complete_attempt",
    "fail_attempt",
    "report_progress",
    "save_checkpoint",
    "job_checkpoint",
    "hold_attempts",
    "rescue_attempts",
    "cleanup_batch",
    "claim_due_schedules",
    "fire_schedule",
    "describe_worker",
}
NO_ORGANIZATION_DATA = {
    "authenticate",
    "can_access",
    "latest_event_id",
    "migration_status",
    "transactions_in_progress",
    # Credentials: what a secret's own holder may know about it.
    "create_session",
    "end_session",
    "check_credentials",
}
# Reads for a trusted service (the web process's event hub): every organization's events, as
# any function called with actor NULL answers.
SERVICE_READS = {"event_feed"}
# User, organization, membership, token and job-type management, and the queues' pauses and
# caps: jobqueue_admin only.
ADMIN_ONLY = {
    "create_organization",
    "create_user",
    "add_member",
    "remove_member",
    "create_token",
    "revoke_token",
    "register_job_type",
    "set_job_type_enabled",
    "pause_queue",
    "resume_queue",
    "set_queue_limits",
    "set_organization_limits",
    "set_job_type_limits",
}


def public_functions(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    rows = conn.execute(
        "SELECT p.proname, coalesce(p.proargnames, '{}') FROM pg_proc AS p"
        " JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'jobqueue' AND p.proname !~ '^_' AND p.prokind = 'f'"
        "   AND p.prorettype <> 'trigger'::regtype"
    ).fetchall()
    return {name: list(args) for name, args in rows}


@pytest.fixture
def bravo(client: Client, dsn: str) -> Bravo:
    make_job_type(client, "echo", max_retries=0)
    make_org_with_member(client, "alpha", "alice", role="admin")
    make_org_with_member(client, "bravo", "bob")
    token = make_token(client, "bob")
    ran = client.submit_job("echo", {}, organization="bravo")
    run_job(dsn, ran.id, "failed", retryable=False)
    dead = client.submit_job("echo", {}, organization="bravo")
    run_job(dsn, dead.id, "failed", retryable=False)
    queued = client.submit_job("echo", {}, organization="bravo")
    client.create_schedule("nightly", "echo", "@daily", organization="bravo")
    # alice's own job, so readers have something legitimate to return.
    client.submit_job("echo", {}, organization="alpha")
    return Bravo(queued.id, dead.id, ran.id, token.token_id)


@pytest.fixture
def as_client(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A session of a role holding jobqueue_client and jobqueue_admin (every function with an
    actor), so that only the actor decides what it may do. Roles are the cluster's: the name
    is unique to this test, and the role goes with it."""
    role = f"jq_isolation_{uuid.uuid4().hex[:12]}"
    with jobqueue_db.connect(dsn, autocommit=True) as owner:
        owner.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE jobqueue_client, jobqueue_admin")
        try:
            with jobqueue_db.connect(dsn, autocommit=True) as conn:
                conn.execute(f"SET ROLE {role}")
                yield conn
        finally:
            owner.execute(f"DROP ROLE {role}")


@pytest.fixture
def as_owner(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with jobqueue_db.connect(dsn, autocommit=True) as conn:
        yield conn


def test_every_public_function_is_classified(as_owner: psycopg.Connection[Any]) -> None:
    functions = public_functions(as_owner)
    with_actor = {name for name, args in functions.items() if "actor" in args}
    without = set(functions) - with_actor
    assert with_actor - CALLS.keys() == set(), "add the new function to CALLS"
    assert without - WORKER_ONLY - NO_ORGANIZATION_DATA - SERVICE_READS == set(), (
        "classify the new function"
    )
    assert ADMIN_ONLY <= with_actor


def check_refused_or_empty(
    name: str, bravo: Bravo, as_client: psycopg.Connection[Any], as_owner: psycopg.Connection[Any]
) -> None:
    aim = CALLS[name]
    before = table_fingerprints(as_owner)
    params = {"actor": "alice"} | aim.params(bravo)
    if aim.refuses:
        with pytest.raises(aim.refuses), jobqueue_db.translated():
            as_client.execute(aim.sql, params)
    else:
        with jobqueue_db.translated():
            rows: Rows = as_client.cursor(row_factory=dict_row).execute(aim.sql, params).fetchall()
        text = json.dumps(rows, default=str)
        assert "bravo" not in text and "bob" not in text, (name, rows)
        if aim.own_jobs_only:
            assert sum(int(r["jobs"]) for r in rows) == 1, (name, rows)
        bravo_jobs = {bravo.queued_job, bravo.dead_job, bravo.ran_job}
        for row in rows:
            # "id" is a job id only in job rows (those with a status).
            keys = ("job", "job_id", *aim.job_fields, *(("id",) if "status" in row else ()))
            for key in keys:
                value = row.get(key)
                assert value not in bravo_jobs, (name, row)
                if isinstance(value, list):
                    assert not {v.get("job_id") for v in value} & bravo_jobs, (name, row)
    assert table_fingerprints(as_owner) == before, f"{name} changed data while refusing"


def test_every_actor_function_gives_nothing_of_another_organization(
    bravo: Bravo, as_client: psycopg.Connection[Any], as_owner: psycopg.Connection[Any]
) -> None:
    """Each function found in the catalog, called by a user of another organization."""
    names = sorted(n for n, args in public_functions(as_owner).items() if "actor" in args)
    assert len(names) >= 20
    for name in names:
        assert name in CALLS, f"{name} takes an actor but has no entry in CALLS"
        check_refused_or_empty(name, bravo, as_client, as_owner)


def test_a_removed_member_loses_access_at_once(client: Client, bravo: Bravo) -> None:
    client.remove_member("bob", "bravo")
    with pytest.raises(errors.JobNotFound):
        client.get_job(bravo.queued_job, actor="bob")
    with pytest.raises(errors.JobNotFound):
        client.cancel_job(bravo.queued_job, actor="bob")
    assert client.get_job(bravo.queued_job).status == "queued"


def test_the_client_role_cannot_touch_any_table(
    as_owner: psycopg.Connection[Any], as_client: psycopg.Connection[Any]
) -> None:
    tables = [
        r[0]
        for r in as_owner.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
            " WHERE schemaname IN ('jobqueue', 'procrastinate') ORDER BY 1"
        ).fetchall()
    ]
    assert "jobqueue.job" in tables
    for table in tables:
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"):
            allowed = as_owner.execute(
                "SELECT has_table_privilege('jobqueue_client', %s, %s)", (table, privilege)
            ).fetchone()
            assert allowed == (False,), f"jobqueue_client may {privilege} {table}"
        # And for real: the statement itself is refused.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_client.execute(f"SELECT 1 FROM {table} LIMIT 1")  # names from the catalog


def test_the_admin_and_worker_roles_run_their_functions_only(
    as_owner: psycopg.Connection[Any],
) -> None:
    rows = as_owner.execute(
        "SELECT p.proname, has_function_privilege('jobqueue_admin', p.oid, 'EXECUTE'),"
        "       has_function_privilege('jobqueue_worker', p.oid, 'EXECUTE')"
        " FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'jobqueue' AND p.prokind = 'f'"
    ).fetchall()
    assert {name for name, admin, _ in rows if admin} == ADMIN_ONLY
    worker = {name for name, _, ok in rows if ok}
    assert not worker & ADMIN_ONLY and not any(name.startswith("_") for name in worker)
    assert WORKER_ONLY <= worker


def test_the_client_role_runs_the_public_api_but_no_internal_function(
    as_owner: psycopg.Connection[Any], as_client: psycopg.Connection[Any]
) -> None:
    rows = as_owner.execute(
        "SELECT p.oid::regprocedure::text, p.proname,"
        "       has_function_privilege('jobqueue_client', p.oid, 'EXECUTE')"
        " FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'jobqueue' AND p.prokind = 'f'"
    ).fetchall()
    internal = [(sig, ok) for sig, name, ok in rows if name.startswith("_")]
    public = {name: ok for _, name, ok in rows if not name.startswith("_")}
    assert internal, "the engine has internal helpers"
    assert [sig for sig, ok in internal if ok] == []
    assert {n for n, ok in public.items() if ok} == set(public) - WORKER_ONLY - ADMIN_ONLY
    assert {n for n, ok in public.items() if not ok} == WORKER_ONLY | ADMIN_ONLY
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_client.execute("SELECT jobqueue._is_admin(NULL)")
    as_client.execute("RESET ROLE")
    as_client.execute("SET ROLE jobqueue_client")
    with pytest.raises(errors.RoleNotPermitted), jobqueue_db.translated():
        as_client.execute("SELECT * FROM jobqueue.create_user('mallory', true)")
    # The public API works for that role.
    assert as_client.execute("SELECT jobqueue.can_access('nobody', 'nowhere')").fetchone() == (
        False,
    )
