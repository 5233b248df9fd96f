"""Migration 0013 on a database that already holds events: each keeps its id, and new events
are numbered after all of them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from jobqueue import db
from jobqueue.client import Client
from jobqueue.migrate import _apply_procrastinate, _procrastinate_sql, available_migrations, migrate
from tests.conftest import database_dsn
from tests.factories import make_job_type


@pytest.fixture
def old_dsn(server_dsn: str) -> Iterator[str]:
    """A database at migration 0012 (tables only), with three events of two organizations."""
    name = f"jobqueue_mig_{uuid.uuid4().hex[:12]}"
    with db.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = database_dsn(server_dsn, name)
    with db.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA jobqueue; CREATE TABLE jobqueue.migration (number integer PRIMARY"
            " KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in [_procrastinate_sql(), *available_migrations()]:
            if migration.number > 12:
                break
            with conn.transaction():
                if migration.number == 0:
                    _apply_procrastinate(conn, migration)
                else:
                    conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO jobqueue.migration (number, name, checksum) VALUES (%s, %s, %s)",
                    (migration.number, migration.name, migration.checksum),
                )
        conn.execute(
            "INSERT INTO jobqueue.organization (id, name) OVERRIDING SYSTEM VALUE"
            " VALUES (1, 'acme'), (2, 'globex')"
        )
        conn.execute(
            "INSERT INTO jobqueue.event (id, organization_id, job_id, type, data)"
            " OVERRIDING SYSTEM VALUE VALUES (7, 1, 70, 'submitted', '{\"n\": 7}'),"
            " (2000, 2, 80, 'started', '{}'), (2001, 1, NULL, 'queue_paused', '{}')"
        )
    yield dsn
    with db.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_old_events_keep_their_ids_and_new_ones_come_after(old_dsn: str) -> None:
    migrate(old_dsn)
    with db.connect(old_dsn, autocommit=True) as conn:
        old = conn.execute(
            "SELECT id, organization_id, job_id, type, data FROM jobqueue.event ORDER BY id"
        ).fetchall()
        assert old == [
            (7, 1, 70, "submitted", {"n": 7}),
            (2000, 2, 80, "started", {}),
            (2001, 1, None, "queue_paused", {}),
        ]
        make_job_type(Client(connection=conn))
        conn.execute("SELECT jobqueue.pause_queue('default')")
        new = conn.execute(
            "SELECT id FROM jobqueue.events_since(after_id => 2001) ORDER BY id"
        ).fetchall()
    # one event per organization, each in its own row and block of ids
    assert len(new) == 2 and all(i > 2001 for (i,) in new)
    assert len({i // 1024 for (i,) in new}) == 2
