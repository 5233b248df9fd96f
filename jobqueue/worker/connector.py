"""procrastinate's psycopg connector with one round trip per query instead of four.

procrastinate's pool checks every connection it lends with an empty query, and its
connections open a transaction (BEGIN) for each query and commit it when they go back: a
fetch, a finish or a heartbeat costs four round trips. Every query a worker sends is one
statement, so its connections run in autocommit. And a connection the server closed
(restart, ``pg_terminate_backend``, idle timeout) has its error message or end-of-file
waiting on the socket, so a quiet socket is checked for free and only a readable one gets
the full check.

A claim is one query per batch of jobs, which procrastinate wraps in two async context
managers of its own around the pool's, and every vehicle's args are read with ``json.loads``,
which first sniffs the bytes for UTF-16 and UTF-32: both are paid for every job. Here the
claim goes through the pool's context manager alone, and JSON objects and arrays are decoded
without the sniffing.
"""

from __future__ import annotations

import json
import logging
import select
from typing import Any, LiteralString

import psycopg
import psycopg_pool
from procrastinate import PsycopgConnector, sync_psycopg_connector
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads

_decode = json.JSONDecoder().decode
logger = logging.getLogger("jobqueue.worker")


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


def loads(data: str | bytes) -> Any:
    """``json.loads``, minus its encoding sniffing when the text is surely UTF-8.

    ``json.loads`` takes bytes as UTF-16 or UTF-32 only when they start with a byte order mark
    or have a NUL among their first bytes; an object or array whose second byte is not NUL
    has neither, and is decoded as ``json.loads`` would decode it.
    """
    if isinstance(data, bytes) and data[:1] in (b"{", b"[") and data[1:2] != b"\x00":
        return _decode(data.decode("utf-8", "surrogatepass"))
    return json.loads(data)


async def autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    """Every query a worker sends is a single statement: no BEGIN, no COMMIT round trip."""
    await conn.set_autocommit(True)


def log_warning(notice: psycopg.errors.Diagnostic) -> None:
    """The server's warnings to the worker's log (jobqueue's functions warn of outcomes
    that came too late); psycopg drops notices unless told otherwise."""
    if notice.severity_nonlocalized == "WARNING":
        logger.warning("%s", notice.message_primary)


async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
    """How the pool sets up each new connection: autocommit, the cheaper JSON loads, and
    server warnings logged."""
    await autocommit(conn)
    set_json_loads(loads, conn)
    conn.add_notice_handler(log_warning)


class JobqueueConnector(PsycopgConnector):
    """A :class:`procrastinate.PsycopgConnector` whose pool lends autocommit connections
    and checks them cheaply."""

    async def _create_pool(self, pool_args: dict[str, Any]) -> psycopg_pool.AsyncConnectionPool:
        return self._pool_factory(
            **pool_args, open=False, check=check_unless_quiet, configure=configure
        )

    async def execute_query_all_async(
        self, query: LiteralString, **arguments: Any
    ) -> list[dict[str, Any]]:
        """procrastinate's query and its errors wrapped as procrastinate wraps them, without
        its two async context managers around the pool's."""
        if self._json_loads or self._json_dumps:
            rows: list[dict[str, Any]] = await super().execute_query_all_async(query, **arguments)
            return rows
        with sync_psycopg_connector.wrap_exceptions():
            async with self.pool.connection() as conn:
                async with conn.cursor(row_factory=dict_row) as cursor:
                    await cursor.execute(query, self._wrap_json(arguments))
                    return await cursor.fetchall()
