"""The migration runner: procrastinate's schema, numbered migrations, then the engine's SQL.

Migrations (``jobqueue/migrations/NNNN_name.sql``) hold DDL only. Each is applied once, in
order, in its own transaction together with the row recording it. The engine's functions,
views and triggers (``jobqueue/sql/*.sql``) are ``CREATE OR REPLACE`` and re-applied on every
run, so changing a function is an ordinary diff. An advisory lock keeps two runs from
interleaving; running twice changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from procrastinate import schema as procrastinate_schema

from jobqueue import db
from jobqueue.client import Client

logger = logging.getLogger(__name__)

# Arbitrary but fixed: the key of the advisory lock that serialises migrate runs.
MIGRATE_LOCK_KEY = 0x6A6F6271_75657565 & 0x7FFFFFFFFFFFFFFF

# The engine's SQL files, in the order they are applied.
SQL_FILES = (
    "access.sql",
    "tokens.sql",
    "events.sql",
    "lifecycle.sql",
    "dependencies.sql",
    "submit.sql",
    "integrity.sql",
    "worker.sql",
    "claim.sql",
    "capacity.sql",
    "queries.sql",
    "metrics.sql",
    "totals.sql",
    "maintenance.sql",
    "bulk.sql",
    "workers.sql",
    "web.sql",
    "cron.sql",
    "schedules.sql",
    "schedule_ticks.sql",
    "grants.sql",
)

PROCRASTINATE_MIGRATION = (0, "procrastinate_3_10_0")
MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """The database's migration history does not match this code."""


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migrations shipped with this package, in order; raises on a misnamed file."""
    found = []
    for entry in resources.files("jobqueue.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = MIGRATION_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.number)
    numbers = [m.number for m in found]
    if numbers != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration numbers must run 1..N without gaps, got {numbers}")
    return found


def engine_sql() -> list[tuple[str, str]]:
    """(file name, text) of the engine's SQL files, in application order."""
    folder = resources.files("jobqueue.sql")
    return [(name, folder.joinpath(name).read_text()) for name in SQL_FILES]


def _procrastinate_sql() -> Migration:
    number, name = PROCRASTINATE_MIGRATION
    return Migration(number, name, procrastinate_schema.SchemaManager.get_schema())


def migrate(dsn: str) -> list[str]:
    """Bring the database to this code's schema; returns what was applied, in order."""
    applied: list[str] = []
    with db.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK_KEY,))
        try:
            applied = _migrate_locked(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK_KEY,))
    return applied


def _migrate_locked(conn: psycopg.Connection[Any]) -> list[str]:
    applied: list[str] = []
    with conn.transaction():
        conn.execute("CREATE SCHEMA IF NOT EXISTS jobqueue")
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS jobqueue.migration (
                number integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
    recorded = {
        number: (name, checksum)
        for number, name, checksum in conn.execute(
            "SELECT number, name, checksum FROM jobqueue.migration ORDER BY number"
        )
    }
    known = [_procrastinate_sql(), *available_migrations()]
    newest_known = known[-1].number
    unknown = sorted(n for n in recorded if n > newest_known)
    if unknown:
        raise MigrationError(
            f"the database has migrations {unknown} that this code does not know; "
            "upgrade jobqueue before running against it"
        )
    for migration in known:
        if migration.number in recorded:
            name, checksum = recorded[migration.number]
            if migration.number > 0 and checksum != migration.checksum:
                raise MigrationError(
                    f"migration {migration.number:04d}_{name} was changed after it was "
                    "applied; released migrations are never edited, add a new one"
                )
            continue
        with conn.transaction():
            if migration.number == 0:
                _apply_procrastinate(conn, migration)
            else:
                conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO jobqueue.migration (number, name, checksum) VALUES (%s, %s, %s)",
                (migration.number, migration.name, migration.checksum),
            )
        label = f"{migration.number:04d}_{migration.name}"
        logger.info("jobqueue.migrate.applied", extra={"migration": label})
        applied.append(label)
    with conn.transaction():
        conn.execute(f"SET LOCAL search_path = {db.SEARCH_PATH}")
        for name, sql in engine_sql():
            conn.execute(sql)
            applied.append(name)
    return applied


def _apply_procrastinate(conn: psycopg.Connection[Any], migration: Migration) -> None:
    """procrastinate's schema, into its own schema; skipped when its tables already exist."""
    exists = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL",
        (f"{db.PROCRASTINATE_SCHEMA}.procrastinate_jobs",),
    ).fetchone()
    if exists and exists[0]:
        return
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {db.PROCRASTINATE_SCHEMA}")
    conn.execute(f"SET LOCAL search_path = {db.PROCRASTINATE_SCHEMA}")
    conn.execute(migration.sql)


def status(dsn: str) -> dict[str, Any]:
    """Applied and pending migrations, for health checks.

    Read through ``jobqueue.migration_status()``, which any role of the engine may run (the
    table itself is private); a database without that function has not been migrated to
    this code."""
    with db.connect(dsn) as conn:
        row = conn.execute(
            "SELECT to_regprocedure('jobqueue.migration_status()') IS NOT NULL"
        ).fetchone()
        applied: set[int] = set()
        if row and row[0]:
            applied = set(Client(connection=conn).migration_status())
    known = [m.number for m in available_migrations()]
    return {
        "applied": sorted(applied),
        "pending": [n for n in known if n not in applied],
        "current": all(n in applied for n in [0, *known]),
    }
