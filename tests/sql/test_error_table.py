"""The database's states and errors match Python's: the enums, the transition table, and a
real call raising every SQLSTATE of the error table."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from jobqueue import db, errors
from jobqueue.client import Client
from jobqueue.states import TRANSITIONS, AttemptOutcome, JobStatus
from tests.conftest import fresh_database
from tests.factories import make_job_type, make_org_with_member, run_job


def enum_values(dsn: str, name: str) -> list[str]:
    with db.connect(dsn) as conn:
        row = conn.execute(f"SELECT enum_range(NULL::jobqueue.{name})::text[]").fetchone()
    assert row is not None
    return list(row[0])


def test_status_enum_matches_python(dsn: str) -> None:
    assert enum_values(dsn, "job_status") == [s.value for s in JobStatus]


def test_attempt_outcome_enum_matches_python(dsn: str) -> None:
    assert enum_values(dsn, "attempt_outcome") == [o.value for o in AttemptOutcome]


def test_transition_table_matches_python(dsn: str) -> None:
    with db.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT from_status::text, to_status::text, event FROM jobqueue.job_transition"
        ).fetchall()
    assert len(rows) == len(TRANSITIONS)
    assert {(JobStatus(a), JobStatus(b)): e for a, b, e in rows} == TRANSITIONS


def _raisers(client: Client, dsn: str) -> dict[str, Callable[[], object]]:
    client.create_organization("acme")
    make_job_type(client)
    make_org_with_member(client, "acme", "alice")
    client.create_organization("globex")
    make_job_type(client, "limited", queue="limited", rate_limit=1, rate_period=timedelta(hours=1))
    client.submit_job("limited", {}, organization="acme")
    done = client.submit_job("echo", {"done": 1}, organization="acme")
    run_job(dsn, done.id)

    def sql(statement: str) -> Callable[[], object]:
        def call() -> object:
            with db.connect(dsn) as conn, db.translated():
                return conn.execute(statement).fetchall()

        return call

    def as_client_role(statement: str) -> Callable[[], object]:
        def call() -> object:
            with db.connect(dsn) as conn, db.translated():
                conn.execute("SET ROLE jobqueue_client")
                return conn.execute(statement).fetchall()

        return call

    return {
        "JQV01": lambda: client.submit_job("nope", organization="acme"),
        "JQV02": sql("SELECT jobqueue.submit_job('echo', '[]', 'acme')"),
        "JQV03": lambda: client.list_jobs(page_size=0),
        "JQV04": lambda: client.submit_job("echo", organization="acme", depends_on=[10**9]),
        "JQV05": sql("SELECT jobqueue.register_job_type('bad name!', 'x:y')"),
        "JQV13": lambda: client.create_schedule("s", "echo", "61 * * * *", organization="acme"),
        "JQV14": lambda: client.create_schedule(
            "s", "echo", "@hourly", organization="acme", timezone="Mars/Olympus"
        ),
        "JQN06": lambda: client.run_schedule("ghost", organization="acme"),
        "JQV06": lambda: client.submit_job("echo", {"x": "y" * 300_000}, organization="acme"),
        "JQA01": lambda: client.authenticate("jq_nothing"),
        "JQA02": lambda: client.submit_job("echo", organization="globex", actor="alice"),
        "JQA03": as_client_role("SELECT jobqueue.create_organization('initech')"),
        "JQN01": lambda: client.get_job(10**9),
        "JQN02": lambda: client.submit_job("echo", organization="initech"),
        "JQN03": lambda: client.create_token("ghost"),
        "JQN04": lambda: client.revoke_token(10**9),
        "JQC01": lambda: client.create_organization("acme"),
        "JQT01": lambda: client.cancel_job(done.id),
        "JQS01": sql(f"SELECT jobqueue.complete_attempt({done.id}, 1)"),
        "JQR01": lambda: client.submit_job("limited", {"again": 1}, organization="acme"),
        "JQV10": sql("SELECT jobqueue.set_queue_limits('default', concurrency => -1)"),
        "JQN05": sql("SELECT jobqueue.pause_queue('no-such-queue')"),
        "JQC02": sql(f"SELECT jobqueue.set_job_priority({done.id}, 5)"),
    }


# Throttled (JQR02) is the web process's own: tests/integration/test_web_limits.py raises it.
DATABASE_CODES = sorted(c for c, cls in errors.BY_SQLSTATE.items() if cls.raised_by != "web")
# The SQLSTATE PostgreSQL itself raises for the codes it raises on the engine's behalf.
POSTGRES_STATES = {"JQA03": "42501"}


@pytest.fixture(scope="module")
def raisers(server_dsn: str, template_name: str) -> Iterator[dict[str, Callable[[], object]]]:
    """The calls, prepared once in a database they share. Each is refused, and a refusal
    writes nothing (test_hostile_input.py shows it table by table), so each call finds the
    database as prepared, as in a database of its own."""
    with fresh_database(server_dsn, template_name) as dsn, Client(dsn) as client:
        yield _raisers(client, dsn)


@pytest.mark.parametrize("code", DATABASE_CODES)
def test_every_sqlstate_is_raised_by_a_real_call(
    raisers: dict[str, Callable[[], object]], code: str
) -> None:
    assert set(raisers) == set(DATABASE_CODES)
    with pytest.raises(errors.BY_SQLSTATE[code]) as info:
        raisers[code]()
    assert info.value.sqlstate == code
    assert isinstance(info.value.__cause__, psycopg.Error)
    assert info.value.__cause__.sqlstate == POSTGRES_STATES.get(code, code)


ENGINE_FILES = (
    "access.sql",
    "tokens.sql",
    "capacity.sql",
    "lifecycle.sql",
    "submit.sql",
    "events.sql",
    "queries.sql",
    "metrics.sql",
    "schedules.sql",
    "schedule_ticks.sql",
)


def test_public_functions_carry_their_header_line_as_comment(dsn: str) -> None:
    """\\df+ explains every public function of the engine files with its contract line."""
    sql_dir = Path(__file__).resolve().parents[2] / "jobqueue" / "sql"
    defined = {
        name
        for file in ENGINE_FILES
        for name in re.findall(
            r"CREATE OR REPLACE FUNCTION jobqueue\.([a-z][a-z_]*)\(", (sql_dir / file).read_text()
        )
    }
    with db.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT p.proname, obj_description(p.oid, 'pg_proc') FROM pg_proc AS p"
            " JOIN pg_namespace AS n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'jobqueue' AND p.proname = ANY (%s)",
            (sorted(defined),),
        ).fetchall()
    assert {name for name, _ in rows} == defined
    for name, comment in rows:
        assert comment and comment.startswith(f"{name}("), (name, comment)
