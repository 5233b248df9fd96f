"""No login can run its own code with the rights of the engine's owner or of a worker.

The engine's public functions are SECURITY DEFINER: they run as their owner, which
``jobqueue up`` and most deployments make a superuser. PostgreSQL resolves the table and type
names in a function through its search_path, and searches the caller's temporary schema
*first* unless the path names ``pg_temp`` (then it is searched where named). Every function
that runs as its owner or fires on the engine's tables therefore pins a path that ends with
``pg_temp``, whose schemas no other role may create objects in (checked from the catalog here,
so a new function cannot forget it), and the attacks that worked before are replayed as a real
login holding only ``jobqueue_client``:

- a temporary view or table named like a procrastinate table, read or written by a definer
  function, whose trigger or column calls the attacker's function;
- a temporary domain named ``text`` whose CHECK calls the attacker's function, picked up by
  every ``::text`` and every ``text`` variable of a definer function;
- a function in schema ``public`` (open to every login before PostgreSQL 15) that matches a
  worker's call of procrastinate's functions better than procrastinate's own.

Each attack's code only records that it ran, and tries to make its login a superuser.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from jobqueue import db as jobqueue_db
from jobqueue import errors
from jobqueue.client import Client
from tests.factories import make_job_type, make_org_with_member, make_token
from tests.reliability.conftest import Workers, wait_for
from tests.reliability.logins import connect, login

# Schemas any of these may create objects in would let it shadow a name on a pinned path.
UNTRUSTED = ("public", "jobqueue_client", "jobqueue_worker", "jobqueue_admin")
# SQL functions written to be inlined into their (pinned) callers: a SET clause would stop
# the inlining. They name every type, function and operator with its schema instead.
INLINED = {"_job_hash", "_json_too_deep", "_timeout_of", "_overrides_valid"}

# What the attacker's code does when it runs as someone else: note it, and take over.
EVIL = """
CREATE TEMP TABLE ran (who text, tokens bigint);
CREATE FUNCTION pg_temp.evil() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pg_temp.ran
    SELECT current_user::pg_catalog.text,
           (SELECT count(*) FROM jobqueue.api_token);
    EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', session_user);
    RETURN true;
END $$;
"""


@pytest.fixture
def engine(client: Client) -> Client:
    make_job_type(client, "echo")
    make_org_with_member(client, "bravo", "bob")
    make_token(client, "bob")
    client.submit_job("echo", {"n": 1}, organization="bravo")
    return client


@pytest.fixture
def attacker(dsn: str, engine: Client) -> Iterator[tuple[str, psycopg.Connection[Any]]]:
    """A login holding jobqueue_client only, with the evil function in its temp schema."""
    with login(dsn, "attacker", "jobqueue_client") as (name, url), connect(url) as conn:
        conn.execute(EVIL)
        yield name, conn


def superuser(dsn: str, role: str) -> bool:
    with jobqueue_db.connect(dsn) as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    assert row is not None
    return bool(row[0])


def assert_never_ran(dsn: str, name: str, conn: psycopg.Connection[Any]) -> None:
    assert conn.execute("SELECT * FROM pg_temp.ran").fetchall() == []
    assert not superuser(dsn, name)


def path_of(config: list[str] | None) -> list[str] | None:
    for setting in config or []:
        key, _, value = setting.partition("=")
        if key == "search_path":
            return [s.strip().strip('"') for s in value.split(",")]
    return None


def test_every_function_that_runs_as_its_owner_or_on_engine_tables_pins_a_safe_path(
    dsn: str,
) -> None:
    """SECURITY DEFINER functions anywhere, every function of schema jobqueue, and every
    trigger function on a table of jobqueue or procrastinate: a search_path ending in pg_temp,
    made of schemas no untrusted role can create objects in."""
    with jobqueue_db.connect(dsn) as conn:
        rows = conn.execute(
            """
            SELECT p.oid, n.nspname, p.proname, p.prosecdef, p.proconfig, l.lanname, p.prosrc
            FROM pg_proc AS p
            JOIN pg_namespace AS n ON n.oid = p.pronamespace
            JOIN pg_language AS l ON l.oid = p.prolang
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND (p.prosecdef OR n.nspname = 'jobqueue' OR p.oid IN (
                  SELECT t.tgfoid FROM pg_trigger AS t
                  JOIN pg_class AS c ON c.oid = t.tgrelid
                  JOIN pg_namespace AS tn ON tn.oid = c.relnamespace
                  WHERE tn.nspname IN ('jobqueue', 'procrastinate') AND NOT t.tgisinternal))
            """
        ).fetchall()
        creators = {
            (role, schema)
            for role in ("PUBLIC", *UNTRUSTED[1:])
            for (schema,) in conn.execute("SELECT nspname FROM pg_namespace").fetchall()
            if conn.execute(
                "SELECT has_schema_privilege(%s, %s, 'CREATE')",
                ("public" if role == "PUBLIC" else role, schema),
            ).fetchone()
            == (True,)
        }
        definers = [r for r in rows if r[3]]
        assert len(definers) >= 30, "the engine's public functions run as their owner"
        checked = 0
        for oid, schema, name, _, config, language, source in rows:
            if schema == "jobqueue" and name in INLINED:
                check_inlined(conn, oid, name, config, language, source)
                continue
            path = path_of(config)
            assert path is not None, f"{schema}.{name} pins no search_path"
            assert path[-1] == "pg_temp", f"{schema}.{name}: pg_temp is not last in {path}"
            assert "$user" not in path and "public" not in path, (schema, name, path)
            for on_path in path:
                writable = {role for role, s in creators if s == on_path}
                assert not writable, f"{writable} may create objects in {on_path} ({name})"
            checked += 1
        assert checked >= 70


def check_inlined(
    conn: psycopg.Connection[Any],
    oid: int,
    name: str,
    config: list[str] | None,
    language: str,
    source: str,
) -> None:
    """An inlined helper: plain SQL, runs as its caller, no one but the owner may call it,
    the planner really inlines it, and its body names nothing through the search path."""
    assert language == "sql" and config is None, name
    for role in ("public", *UNTRUSTED[1:]):
        row = conn.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, oid))
        assert row.fetchone() == (False,), (name, role)
    args = {
        "_job_hash": "'t', 1, '{}'",
        "_json_too_deep": "'{}'",
        "_timeout_of": "'30'",
        "_overrides_valid": "'q', 3, '1 minute'",
    }[name]
    plan = conn.execute(f"EXPLAIN (VERBOSE) SELECT jobqueue.{name}({args})").fetchall()
    assert name not in str(plan), f"{name} is not inlined: {plan}"
    body = re.sub(r"'[^']*'", "''", source)  # literals say nothing about names
    casts = re.findall(r"::\s*([\w.]+)", body)
    assert all(c.startswith("pg_catalog.") for c in casts), (name, casts)
    calls = re.findall(r"([\w.]+)\s*\(", body)
    # A keyword before a parenthesis ("THEN (", "AND (") opens an expression, not a call.
    keywords = {"OPERATOR", "SELECT", "WHEN", "THEN", "ELSE", "AND", "OR", "NOT", "IN"}
    assert all(c.startswith("pg_catalog.") or c in keywords for c in calls), (name, calls)
    bare = re.sub(r"OPERATOR\(pg_catalog\.[^)]*\)", "", body)
    assert not re.search(r"[|&<>=!~+*/%^-]{1,3}\s", bare.replace("--", "")), (name, bare)


def test_a_temporary_view_named_like_a_procrastinate_table_is_not_read_as_the_owner(
    dsn: str, attacker: tuple[str, psycopg.Connection[Any]]
) -> None:
    name, conn = attacker
    conn.execute(
        "CREATE TEMP VIEW procrastinate_workers AS"
        " SELECT 1::bigint AS id, now() AS last_heartbeat WHERE pg_temp.evil()"
    )
    conn.execute("SELECT * FROM jobqueue.list_workers()").fetchall()
    assert_never_ran(dsn, name, conn)


def test_a_temporary_table_named_like_a_procrastinate_table_is_not_written_as_the_owner(
    dsn: str, attacker: tuple[str, psycopg.Connection[Any]], engine: Client
) -> None:
    name, conn = attacker
    conn.execute(
        """
        CREATE TEMP TABLE procrastinate_jobs (
            id bigserial, queue_name text, task_name text, priority integer, lock text,
            queueing_lock text, args jsonb, scheduled_at timestamptz, status text,
            abort_requested boolean);
        CREATE FUNCTION pg_temp.evil_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_temp.evil(); RETURN NULL; END $$;
        CREATE TRIGGER evil AFTER INSERT OR UPDATE OR DELETE ON pg_temp.procrastinate_jobs
            FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.evil_trigger();
        """
    )
    # A submit writes the job's vehicle; a cancel drops it.
    job = conn.execute(
        "SELECT id FROM jobqueue.submit_job(job_type => 'echo', params => '{\"n\": 2}',"
        " organization => 'bravo')"
    ).fetchone()
    assert job is not None
    conn.execute("SELECT * FROM jobqueue.cancel_job(job_id => %s)", (job[0],))
    assert_never_ran(dsn, name, conn)
    # The vehicle went where it belongs, and went away with the cancel.
    assert engine.get_job(job[0]).status == "canceled"


def test_a_temporary_domain_named_text_is_not_used_by_the_owner(
    dsn: str, attacker: tuple[str, psycopg.Connection[Any]]
) -> None:
    name, conn = attacker
    conn.execute("CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.evil())")
    # ::text casts and text variables, in a reader, an action and a submit.
    conn.execute("SELECT * FROM jobqueue.list_jobs(status => 'queued')").fetchall()
    queued = conn.execute("SELECT id FROM jobqueue.list_jobs(status => 'queued')").fetchone()
    assert queued is not None
    conn.execute("SELECT * FROM jobqueue.cancel_job(job_id => %s)", (queued[0],))
    conn.execute(
        "SELECT * FROM jobqueue.submit_job(job_type => 'echo', params => '{\"n\": 3}',"
        " organization => 'bravo')"
    )
    with pytest.raises(errors.Unauthenticated), jobqueue_db.translated():
        conn.execute("SELECT * FROM jobqueue.authenticate('jq_guess')")
    assert_never_ran(dsn, name, conn)


def test_a_function_in_public_does_not_capture_a_workers_call(
    dsn: str, engine: Client, workers: Workers
) -> None:
    """Before PostgreSQL 15 every login may create objects in schema public. procrastinate
    calls procrastinate_update_heartbeat_v1(worker_id), and psycopg sends a small worker id
    as smallint: a public.procrastinate_update_heartbeat_v1(smallint) matched that call
    exactly, better than procrastinate's (bigint), and ran as the worker."""
    with jobqueue_db.connect(dsn, autocommit=True) as owner:
        # What PostgreSQL 14 and older grant by default (this test must not depend on it).
        owner.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
    with (
        login(dsn, "attacker", "jobqueue_client") as (_, attacker_url),
        login(dsn, "worker", "jobqueue_worker") as (worker_name, worker_url),
        connect(attacker_url) as conn,
    ):
        conn.execute(
            """
            CREATE TABLE public.captured (who text, at timestamptz DEFAULT clock_timestamp());
            GRANT INSERT ON public.captured TO PUBLIC;
            CREATE FUNCTION public.procrastinate_update_heartbeat_v1(worker_id smallint)
            RETURNS void LANGUAGE sql AS
            $$ INSERT INTO public.captured (who) VALUES (current_user) $$;
            GRANT EXECUTE ON FUNCTION public.procrastinate_update_heartbeat_v1(smallint)
                TO PUBLIC;
            """
        )
        workers.spawn([*workers_command(), "--concurrency", "2"], env={"JOBQUEUE_DSN": worker_url})
        try:
            job = engine.submit_job("echo", {"n": 9}, organization="bravo")
            wait_for(lambda: engine.get_job(job.id).status == "completed", what="the job to run")
            done_at = time.time()

            def settled() -> bool:
                # A heartbeat after the job (procrastinate's own function ran), or a capture.
                with jobqueue_db.connect(dsn) as owner:
                    captured = owner.execute("SELECT count(*) FROM public.captured").fetchone()
                    beat = owner.execute(
                        "SELECT max(extract(epoch FROM last_heartbeat))"
                        " FROM procrastinate.procrastinate_workers"
                    ).fetchone()
                return bool(captured and captured[0]) or bool(
                    beat and beat[0] and beat[0] > done_at
                )

            wait_for(settled, what="a heartbeat after the job")
            # The worker ran as that login, with jobqueue_worker's rights only, and no code
            # of the attacker's ran in its session.
            assert conn.execute("SELECT who FROM public.captured").fetchall() == []
        finally:
            workers.stop_all()
        assert worker_name


def workers_command() -> list[str]:
    import sys

    return [sys.executable, "-m", "jobqueue.worker", "--stale-after", "2"]


def refused(conn: psycopg.Connection[Any], statement: str) -> bool:
    """Whether the login's role may not run it (RoleNotPermitted, JQA03)."""
    try:
        with jobqueue_db.translated():
            conn.execute(statement).fetchall()
    except errors.RoleNotPermitted:
        return True
    return False


def test_each_role_runs_its_own_functions_and_nothing_else(dsn: str, engine: Client) -> None:
    """Real logins of each role: a client submits and reads, an admin manages users, tokens
    and job types, a worker runs jobs; none reads a table, and none does another's work."""
    submit = (
        "SELECT * FROM jobqueue.submit_job(job_type => 'echo', params => '{\"r\": 1}',"
        " organization => 'bravo')"
    )
    manage = "SELECT * FROM jobqueue.create_user('mallory', true)"
    token = "SELECT * FROM jobqueue.create_token('bob', 'extra')"
    claim = (
        "SELECT * FROM jobqueue.fetch_vehicles(NULL, (SELECT worker_id"
        " FROM procrastinate.procrastinate_register_worker_v1()), 1)"
    )
    tables = ["SELECT * FROM jobqueue.api_token", "SELECT * FROM jobqueue.job"]
    with (
        login(dsn, "client", "jobqueue_client") as (_, client_url),
        login(dsn, "admin", "jobqueue_admin") as (_, admin_url),
        login(dsn, "worker", "jobqueue_worker") as (_, worker_url),
        login(dsn, "nobody") as (_, nobody_url),
        connect(client_url) as as_client,
        connect(admin_url) as as_admin,
        connect(worker_url) as as_worker,
        connect(nobody_url) as as_nobody,
    ):
        assert not refused(as_client, submit)
        assert all(refused(as_client, s) for s in (manage, token, claim, *tables))

        assert not refused(as_admin, manage) and not refused(as_admin, token)
        assert all(refused(as_admin, s) for s in (submit, claim, *tables))

        assert not refused(as_worker, claim)
        assert all(refused(as_worker, s) for s in (manage, token, *tables))

        assert all(refused(as_nobody, s) for s in (submit, manage, token, claim, *tables))
