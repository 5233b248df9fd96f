"""Client and AsyncClient: the engine's SQL API as typed Python calls.

Both run the calls of :mod:`jobqueue.calls`, one method per public SQL function, with the
same name and keyword arguments. A client holds a pool, or runs on a connection the caller
passes in, so an application can enqueue inside its own transaction: the job exists if and
only if the caller's transaction commits::

    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO orders ...")
        Client(connection=conn).submit_job("send_receipt", {"order": 7}, organization="acme")
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
import psycopg_pool
from psycopg.rows import dict_row

from jobqueue import calls, capacity, db, schedule_calls

P = ParamSpec("P")
T = TypeVar("T")


def _sync(build: Callable[P, calls.Call[T]]) -> Callable[Concatenate[Client, P], T]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.run(build(*args, **kwargs))

    method.__name__ = build.__name__
    method.__doc__ = build.__doc__
    return method


def _async(
    build: Callable[P, calls.Call[T]],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.run(build(*args, **kwargs))

    method.__name__ = build.__name__
    method.__doc__ = build.__doc__
    return method


class Client:
    """Synchronous client over a pool, a DSN, or one caller-owned connection."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: psycopg_pool.ConnectionPool | None = None,
        connection: psycopg.Connection[Any] | None = None,
    ):
        if sum(x is not None for x in (dsn, pool, connection)) != 1:
            raise ValueError("pass exactly one of dsn, pool or connection")
        self._owns_pool = dsn is not None
        self._pool = db.make_pool(dsn) if dsn is not None else pool
        self._connection = connection

    def run(self, call: calls.Call[T]) -> T:
        """Execute one call; on a caller's connection it joins the caller's transaction."""
        with db.translated():
            if self._connection is not None:
                with self._connection.cursor(row_factory=dict_row) as cur:
                    rows = cur.execute(call.sql, call.params).fetchall()
                return call.shape(rows)
            assert self._pool is not None
            with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(call.sql, call.params).fetchall()
            return call.shape(rows)

    def close(self) -> None:
        if self._owns_pool and self._pool is not None:
            self._pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    register_job_type = _sync(calls.register_job_type)
    set_job_type_enabled = _sync(calls.set_job_type_enabled)
    list_job_types = _sync(calls.list_job_types)
    submit_job = _sync(calls.submit_job)
    submit_jobs = _sync(calls.submit_jobs)
    cancel_job = _sync(calls.cancel_job)
    retry_job = _sync(calls.retry_job)
    get_job = _sync(calls.get_job)
    list_jobs = _sync(calls.list_jobs)
    job_attempts = _sync(calls.job_attempts)
    metrics = _sync(calls.metrics)
    events_since = _sync(calls.events_since)
    transactions_in_progress = _sync(calls.transactions_in_progress)
    create_organization = _sync(calls.create_organization)
    list_organizations = _sync(calls.list_organizations)
    create_user = _sync(calls.create_user)
    add_member = _sync(calls.add_member)
    remove_member = _sync(calls.remove_member)
    create_token = _sync(calls.create_token)
    revoke_token = _sync(calls.revoke_token)
    list_tokens = _sync(calls.list_tokens)
    create_session = _sync(calls.create_session)
    end_session = _sync(calls.end_session)
    check_credentials = _sync(calls.check_credentials)
    event_feed = _sync(calls.event_feed)
    migration_status = _sync(calls.migration_status)
    authenticate = _sync(calls.authenticate)
    can_access = _sync(calls.can_access)
    finish_attempts = _sync(calls.finish_attempts)
    report_progress = _sync(calls.report_progress)
    save_checkpoint = _sync(calls.save_checkpoint)
    job_checkpoint = _sync(calls.job_checkpoint)
    rescue_attempts = _sync(calls.rescue_attempts)
    cleanup_batch = _sync(calls.cleanup_batch)
    create_schedule = _sync(schedule_calls.create_schedule)
    update_schedule = _sync(schedule_calls.update_schedule)
    set_schedule_enabled = _sync(schedule_calls.set_schedule_enabled)
    delete_schedule = _sync(schedule_calls.delete_schedule)
    list_schedules = _sync(schedule_calls.list_schedules)
    run_schedule = _sync(schedule_calls.run_schedule)
    pause_queue = _sync(capacity.pause_queue)
    resume_queue = _sync(capacity.resume_queue)
    set_queue_limits = _sync(capacity.set_queue_limits)
    set_organization_limits = _sync(capacity.set_organization_limits)
    set_job_type_limits = _sync(capacity.set_job_type_limits)
    set_job_priority = _sync(capacity.set_job_priority)
    list_queues = _sync(capacity.list_queues)
    list_queue_usage = _sync(capacity.list_queue_usage)
    list_job_type_limits = _sync(capacity.list_job_type_limits)


class AsyncClient:
    """Asynchronous client over an async pool or one caller-owned async connection."""

    def __init__(
        self,
        *,
        pool: psycopg_pool.AsyncConnectionPool | None = None,
        connection: psycopg.AsyncConnection[Any] | None = None,
    ):
        if (pool is None) == (connection is None):
            raise ValueError("pass exactly one of pool or connection")
        self._pool = pool
        self._connection = connection

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> AsyncClient:
        """A client with its own pool; close it with :meth:`close`."""
        client = cls(pool=await db.make_async_pool(dsn, min_size=min_size, max_size=max_size))
        client._owns_pool = True
        return client

    _owns_pool = False

    async def run(self, call: calls.Call[T]) -> T:
        """Execute one call; on a caller's connection it joins the caller's transaction."""
        with db.translated():
            if self._connection is not None:
                async with self._connection.cursor(row_factory=dict_row) as cur:
                    await cur.execute(call.sql, call.params)
                    rows = await cur.fetchall()
                return call.shape(rows)
            assert self._pool is not None
            async with self._pool.connection() as conn:
                async with conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(call.sql, call.params)
                    rows = await cur.fetchall()
            return call.shape(rows)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncClient]:
        """A client whose calls all read one snapshot of the database: a read-only
        REPEATABLE READ transaction on one of the pool's connections, for the block."""
        if self._pool is None:
            raise ValueError("a snapshot needs a client over a pool")
        with db.translated():
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield AsyncClient(connection=conn)

    async def close(self) -> None:
        if self._owns_pool and self._pool is not None:
            await self._pool.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    register_job_type = _async(calls.register_job_type)
    set_job_type_enabled = _async(calls.set_job_type_enabled)
    list_job_types = _async(calls.list_job_types)
    submit_job = _async(calls.submit_job)
    submit_jobs = _async(calls.submit_jobs)
    cancel_job = _async(calls.cancel_job)
    retry_job = _async(calls.retry_job)
    get_job = _async(calls.get_job)
    list_jobs = _async(calls.list_jobs)
    job_attempts = _async(calls.job_attempts)
    metrics = _async(calls.metrics)
    events_since = _async(calls.events_since)
    transactions_in_progress = _async(calls.transactions_in_progress)
    create_organization = _async(calls.create_organization)
    list_organizations = _async(calls.list_organizations)
    create_user = _async(calls.create_user)
    add_member = _async(calls.add_member)
    remove_member = _async(calls.remove_member)
    create_token = _async(calls.create_token)
    revoke_token = _async(calls.revoke_token)
    list_tokens = _async(calls.list_tokens)
    create_session = _async(calls.create_session)
    end_session = _async(calls.end_session)
    check_credentials = _async(calls.check_credentials)
    event_feed = _async(calls.event_feed)
    migration_status = _async(calls.migration_status)
    authenticate = _async(calls.authenticate)
    can_access = _async(calls.can_access)
    finish_attempts = _async(calls.finish_attempts)
    report_progress = _async(calls.report_progress)
    save_checkpoint = _async(calls.save_checkpoint)
    job_checkpoint = _async(calls.job_checkpoint)
    rescue_attempts = _async(calls.rescue_attempts)
    cleanup_batch = _async(calls.cleanup_batch)
    create_schedule = _async(schedule_calls.create_schedule)
    update_schedule = _async(schedule_calls.update_schedule)
    set_schedule_enabled = _async(schedule_calls.set_schedule_enabled)
    delete_schedule = _async(schedule_calls.delete_schedule)
    list_schedules = _async(schedule_calls.list_schedules)
    run_schedule = _async(schedule_calls.run_schedule)
    pause_queue = _async(capacity.pause_queue)
    resume_queue = _async(capacity.resume_queue)
    set_queue_limits = _async(capacity.set_queue_limits)
    set_organization_limits = _async(capacity.set_organization_limits)
    set_job_type_limits = _async(capacity.set_job_type_limits)
    set_job_priority = _async(capacity.set_job_priority)
    list_queues = _async(capacity.list_queues)
    list_queue_usage = _async(capacity.list_queue_usage)
    list_job_type_limits = _async(capacity.list_job_type_limits)
