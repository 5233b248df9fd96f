"""Connections, pools and the one place where driver errors become engine errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool

from jobqueue import errors

# procrastinate's SQL names its objects unqualified, so its schema is on every session's path.
# Only schemas no caller can create objects in: a schema another login may write to (such as
# "public", open to every login before PostgreSQL 15) would let it define a function that
# matches a worker's call better than procrastinate's own (a smallint argument against a
# bigint parameter) and run its code as the worker. pg_temp last, as in every function.
SEARCH_PATH = "jobqueue, procrastinate, pg_catalog, pg_temp"
PROCRASTINATE_SCHEMA = "procrastinate"

# SQLSTATE classes of a connection that failed or a server shutting down or starting up.
CONNECTION_STATES = ("08", "57P")


def dsn_from_env() -> str | None:
    """The database named by JOBQUEUE_DSN, else DATABASE_URL, else None."""
    return os.environ.get("JOBQUEUE_DSN") or os.environ.get("DATABASE_URL") or None


def connection_kwargs() -> dict[str, Any]:
    """Settings every jobqueue connection carries, whoever opens it."""
    return {"options": f"-c search_path={SEARCH_PATH.replace(' ', '')}"}


def translate(exc: psycopg.Error) -> Exception:
    """The engine error for a driver error raised by a jobqueue SQL function.

    Errors of class JQ map to their class in :mod:`jobqueue.errors`; a privilege the role lacks
    (42501) becomes RoleNotPermitted; a value PostgreSQL or the driver refuses (class 22,
    nesting too deep) becomes InvalidArgument; a lost or refused connection becomes
    DatabaseUnavailable; anything else is returned unchanged.
    """
    diag = exc.diag
    if exc.sqlstate:
        mapped = errors.from_sqlstate(
            exc.sqlstate, diag.message_primary or str(exc), diag.message_detail
        )
        if mapped is not None:
            mapped.__cause__ = exc
            return mapped
    if exc.sqlstate == "42501":
        # EXECUTE not granted: the role may call the engine, but not this function.
        denied = errors.RoleNotPermitted(diag.message_primary or str(exc))
        denied.__cause__ = exc
        return denied
    if exc.sqlstate and (exc.sqlstate.startswith("22") or exc.sqlstate == "54001"):
        # A value PostgreSQL cannot take (a NUL in JSON, an integer out of range, malformed
        # text, JSON nested too deep) is bad input, refused before anything was written.
        invalid = errors.InvalidArgument(diag.message_primary or str(exc))
        invalid.__cause__ = exc
        return invalid
    if isinstance(exc, psycopg.DataError) and not exc.sqlstate:
        # Refused by the driver before sending, e.g. a NUL byte in a text argument.
        invalid = errors.InvalidArgument(str(exc))
        invalid.__cause__ = exc
        return invalid
    # Only a lost or refused connection means the database is unavailable; a deadlock or a
    # serialization failure is an OperationalError too, but the caller should see it as it is.
    if isinstance(exc, psycopg.OperationalError) and (
        exc.sqlstate is None or exc.sqlstate.startswith(CONNECTION_STATES)
    ):
        unavailable = errors.DatabaseUnavailable(f"database unavailable: {exc}")
        unavailable.__cause__ = exc
        return unavailable
    return exc


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise driver errors as engine errors."""
    try:
        yield
    except psycopg.Error as exc:
        mapped = translate(exc)
        if mapped is exc:
            raise
        raise mapped from exc
    except UnicodeEncodeError as exc:
        # A lone surrogate in a text argument cannot be sent as UTF-8.
        raise errors.InvalidArgument(f"text is not valid Unicode: {exc.reason}") from exc


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection with jobqueue's session settings."""
    return psycopg.connect(dsn, **(connection_kwargs() | kwargs))


async def connect_async(dsn: str, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
    """An async connection with jobqueue's session settings."""
    return await psycopg.AsyncConnection.connect(dsn, **(connection_kwargs() | kwargs))


def make_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> psycopg_pool.ConnectionPool:
    """An opened connection pool with jobqueue's session settings, in autocommit: each call
    of the API is one statement, so a BEGIN and a COMMIT would be two wasted round trips."""
    return psycopg_pool.ConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        kwargs=connection_kwargs() | {"autocommit": True},
        open=True,
    )


async def make_async_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10
) -> psycopg_pool.AsyncConnectionPool:
    """An opened async connection pool with jobqueue's session settings, in autocommit."""
    pool = psycopg_pool.AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        kwargs=connection_kwargs() | {"autocommit": True},
        open=False,
    )
    await pool.open()
    return pool
