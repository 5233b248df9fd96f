"""The state of one benchmark run: server, sizes, systems, fresh databases, results."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench import observe
from bench.procs import run_client
from bench.server import Server
from bench.sizes import Sizes
from bench.systems.base import Adapter

OBSERVER_ROLE = "bench_observer"


@dataclass
class System:
    """One system under test in this run."""

    adapter: Adapter
    template: str = ""
    versions: dict[str, Any] = field(default_factory=dict)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.adapter.name

    def record(self, scenario: str, result: dict[str, Any]) -> None:
        self.results.setdefault(scenario, []).append(result)


@dataclass
class Database:
    """A fresh database of one measurement."""

    name: str
    dsn: str


@dataclass
class Bench:
    server: Server
    sizes: Sizes
    concurrency: int
    workdir: Path
    run_id: str
    observer_role: str | None = None
    created_observer_role: bool = False
    _names: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def use_statements(self) -> bool:
        return self.server.has_pg_stat_statements

    @property
    def round_trips_source(self) -> str:
        if self.use_statements:
            return "pg_stat_statements (statements sent, harness excluded)"
        return "pg_stat_database xact_commit+xact_rollback (transactions, harness included)"

    def database_name(self, system: System, purpose: str) -> str:
        return f"bench_{self.run_id}_{system.name}_{purpose}_{next(self._names)}"

    async def setup_observer(self) -> None:
        """A separate role for the harness's own queries, so they can be told apart."""
        try:
            async with await self.server.admin() as conn:
                cur = await conn.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", (OBSERVER_ROLE,)
                )
                if await cur.fetchone() is None:
                    await conn.execute(f"CREATE ROLE {OBSERVER_ROLE} LOGIN SUPERUSER")
                    self.created_observer_role = True
            async with await psycopg.AsyncConnection.connect(
                self._as_observer(self.server.admin_dsn)
            ):
                pass
            self.observer_role = OBSERVER_ROLE
        except psycopg.Error:
            self.observer_role = None

    async def drop_observer(self) -> None:
        """Drop the observer role if this run created it."""
        if self.created_observer_role:
            async with await self.server.admin() as conn:
                await conn.execute(f"DROP ROLE IF EXISTS {OBSERVER_ROLE}")

    def _as_observer(self, dsn: str) -> str:
        params = conninfo_to_dict(dsn)
        params["user"] = OBSERVER_ROLE
        params.pop("password", None)
        return make_conninfo(**params)  # type: ignore[arg-type]

    async def observer(self, db: Database) -> psycopg.AsyncConnection:
        """An autocommit connection to ``db`` for the harness's own queries."""
        dsn = self._as_observer(db.dsn) if self.observer_role else db.dsn
        return await psycopg.AsyncConnection.connect(dsn, autocommit=True)

    async def prepare(self, system: System) -> None:
        """Create the system's template database (schema installed) and read its versions."""
        system.versions = await run_client(
            system.adapter, "versions", self.workdir, self.sizes.client_timeout
        )
        name = f"bench_{self.run_id}_{system.name}_template"
        dsn = await self.server.create_database(name)
        await run_client(
            system.adapter, "install", self.workdir, self.sizes.client_timeout, dsn=dsn
        )
        system.template = name

    @contextlib.asynccontextmanager
    async def database(
        self, system: System, purpose: str, template: str = "", file_copy: bool = False
    ) -> AsyncIterator[Database]:
        """A fresh copy of the system's template (or of ``template``), dropped afterwards."""
        name = self.database_name(system, purpose)
        dsn = await self.server.create_database(name, template or system.template, file_copy)
        await system.adapter.reset()
        try:
            yield Database(name, dsn)
        finally:
            await self.server.drop_database(name)

    async def snapshot(
        self, admin: psycopg.AsyncConnection, observer: psycopg.AsyncConnection, db: Database
    ) -> observe.Snapshot:
        return await observe.snapshot(
            admin, observer, db.name, self.observer_role, self.use_statements
        )
