"""procrastinate's psycopg connector with one round trip per query instead of four.

procrastinate's pool checks every connection it lends with an empty query, and its
connections open a transaction (BEGIN) for each query and commit it when they go back: a
fetch, a finish or a heartbeat costs four round trips. Every query a worker sends is one
statement, so its connections run in autocommit. And a connection the server closed
(restart, ``pg_terminate_backend``, idle timeout) has its error message or end-of-file
waiting on the socket, so a quiet socket is checked for free and only a readable one gets
the full check.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
import psycopg_pool
from procrastinate import PsycopgConnector


async def check_unless_quiet(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check: free while nothing waits on the socket, a round trip otherwise."""
    if not conn.closed:
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
        except (OSError, ValueError):
            readable = [True]
        if not readable:
            return
    await psycopg_pool.AsyncConnectionPool.check_connection(conn)


async def autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    """Every query a worker sends is a single statement: no BEGIN, no COMMIT round trip."""
    await conn.set_autocommit(True)


class JobqueueConnector(PsycopgConnector):
    """A :class:`procrastinate.PsycopgConnector` whose pool lends autocommit connections
    and checks them cheaply."""

    async def _create_pool(self, pool_args: dict[str, Any]) -> psycopg_pool.AsyncConnectionPool:
        return self._pool_factory(
            **pool_args, open=False, check=check_unless_quiet, configure=autocommit
        )
