"""The migration runner against real, empty databases: naming, idempotence, concurrent runs,
and refusing a history that does not match the code."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from importlib import resources

import pytest

from jobqueue import db
from jobqueue.migrate import (
    MIGRATION_NAME,
    SQL_FILES,
    MigrationError,
    available_migrations,
    migrate,
    status,
)
from tests.conftest import database_dsn

SNAPSHOT = """
SELECT md5(string_agg(item, E'\\n' ORDER BY item)) FROM (
    SELECT format('column %s.%s.%s %s %s', c.table_schema, c.table_name, c.column_name,
                  c.data_type, c.is_nullable) AS item
    FROM information_schema.columns AS c
    WHERE c.table_schema IN ('jobqueue', 'procrastinate')
    UNION ALL
    SELECT format('function %s %s', p.oid::regprocedure, md5(p.prosrc))
    FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
    WHERE n.nspname IN ('jobqueue', 'procrastinate')
    UNION ALL
    SELECT format('index %s', indexrelid::regclass) FROM pg_index AS i
    JOIN pg_class AS c ON c.oid = i.indrelid
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname IN ('jobqueue', 'procrastinate')
    UNION ALL
    SELECT format('trigger %s on %s', t.tgname, t.tgrelid::regclass) FROM pg_trigger AS t
    WHERE NOT t.tgisinternal
) AS catalog
"""


@pytest.fixture
def empty_dsn(server_dsn: str) -> Iterator[str]:
    """A brand-new, unmigrated database."""
    name = f"jobqueue_mig_{uuid.uuid4().hex[:12]}"
    with db.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield database_dsn(server_dsn, name)
    with db.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def snapshot(dsn: str) -> str:
    with db.connect(dsn) as conn:
        row = conn.execute(SNAPSHOT).fetchone()
    assert row is not None
    return str(row[0])


def test_migration_files_are_named_and_numbered() -> None:
    names = [
        e.name for e in resources.files("jobqueue.migrations").iterdir() if e.name.endswith(".sql")
    ]
    assert names and all(MIGRATION_NAME.match(n) for n in names), names
    numbers = [m.number for m in available_migrations()]
    assert numbers == list(range(1, len(numbers) + 1))
    assert available_migrations()[0].name == "initial"


@pytest.mark.parametrize(
    "name", ["1_initial.sql", "0002-add.sql", "0003_Add.sql", "0004_.sql", "abcd_x.sql"]
)
def test_misnamed_files_do_not_match(name: str) -> None:
    assert MIGRATION_NAME.match(name) is None


def test_engine_sql_files_are_all_listed() -> None:
    shipped = {e.name for e in resources.files("jobqueue.sql").iterdir() if e.name.endswith(".sql")}
    assert shipped == set(SQL_FILES)
    assert SQL_FILES[-1] == "grants.sql"


def test_migrate_twice_is_a_no_op(empty_dsn: str) -> None:
    first = migrate(empty_dsn)
    assert first[:2] == ["0000_procrastinate_3_10_0", "0001_initial"]
    assert first[-len(SQL_FILES) :] == list(SQL_FILES)
    before = snapshot(empty_dsn)
    with db.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("SELECT jobqueue.create_organization('acme')")
    second = migrate(empty_dsn)
    # Only the engine's CREATE OR REPLACE files run again; no migration is applied twice.
    assert second == list(SQL_FILES)
    assert snapshot(empty_dsn) == before
    with db.connect(empty_dsn) as conn:
        assert conn.execute("SELECT name FROM jobqueue.organization").fetchall() == [("acme",)]
        rows = conn.execute("SELECT number FROM jobqueue.migration ORDER BY number").fetchall()
    assert [r[0] for r in rows] == [0, *(m.number for m in available_migrations())]
    assert status(empty_dsn)["current"]


def test_concurrent_migrations_are_safe(empty_dsn: str) -> None:
    runs = 4
    barrier = threading.Barrier(runs)
    results: list[object] = [None] * runs

    def run(i: int) -> None:
        barrier.wait(timeout=60)
        try:
            results[i] = migrate(empty_dsn)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert all(isinstance(r, list) for r in results), results
    # Exactly one run applied the migrations; the others found them applied.
    appliers = [r for r in results if isinstance(r, list) and "0001_initial" in r]
    assert len(appliers) == 1
    with db.connect(empty_dsn) as conn:
        rows = conn.execute("SELECT number, count(*) FROM jobqueue.migration GROUP BY 1").fetchall()
    assert all(count == 1 for _, count in rows)
    assert status(empty_dsn)["current"]


def test_changed_checksum_is_refused(empty_dsn: str) -> None:
    migrate(empty_dsn)
    with db.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("UPDATE jobqueue.migration SET checksum = 'edited' WHERE number = 1")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(empty_dsn)


def test_unknown_newer_migration_is_refused(empty_dsn: str) -> None:
    migrate(empty_dsn)
    before = snapshot(empty_dsn)
    with db.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobqueue.migration (number, name, checksum) VALUES (9999, 'future', 'x')"
        )
    with pytest.raises(MigrationError, match="does not know"):
        migrate(empty_dsn)
    assert snapshot(empty_dsn) == before


def test_status_of_an_empty_database(empty_dsn: str) -> None:
    state = status(empty_dsn)
    assert state["applied"] == [] and not state["current"]
    assert state["pending"] == [m.number for m in available_migrations()]
