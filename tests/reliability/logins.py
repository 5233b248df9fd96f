"""Real database logins for the privilege tests: each made for one test and dropped after it.

Roles belong to the whole server, which other test runs share, so every name is unique.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jobqueue import db


def as_user(dsn: str, user: str) -> str:
    """The same database, connected as another login (the test server trusts 127.0.0.1)."""
    params: dict[str, Any] = conninfo_to_dict(dsn)
    params["user"] = user
    return make_conninfo(**params)


@contextlib.contextmanager
def login(dsn: str, prefix: str, *member_of: str) -> Iterator[tuple[str, str]]:
    """A new login role, a member of ``member_of``; yields (role name, its DSN)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with db.connect(dsn, autocommit=True) as owner:
        create = sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name))
        if member_of:
            create += sql.SQL(" IN ROLE {}").format(
                sql.SQL(", ").join(sql.Identifier(r) for r in member_of)
            )
        owner.execute(create)
        try:
            yield name, as_user(dsn, name)
        finally:
            # Its sessions, then whatever it created in this database, then the role.
            owner.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (name,),
            )
            owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def connect(dsn: str) -> psycopg.Connection[Any]:
    """An autocommit session as the login of ``dsn``, with jobqueue's session settings."""
    return db.connect(dsn, autocommit=True)
