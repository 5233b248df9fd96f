"""Real worker processes against the test database, and helpers to watch them work."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import namedtuple_row

from jobqueue import db as jobqueue_db
from jobqueue.client import Client
from jobqueue.handlers import register_job_type
from tests.acceptance.handlers import EXEC_TABLE
from tests.waiting import wait_for as wait_for
from tests.workers import Workers as Workers
from tests.workers import pytest_runtest_makereport as pytest_runtest_makereport
from tests.workers import workers as workers


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit owner connection with the execution log table in place."""
    with jobqueue_db.connect(dsn, autocommit=True) as conn:
        conn.execute(EXEC_TABLE)
        yield conn


@pytest.fixture
def org(client: Client) -> str:
    client.create_organization("acme")
    return "acme"


def job_type(client: Client, name: str, handler: str, **settings: Any) -> str:
    """Register a job type whose handler lives in tests.acceptance.handlers."""
    settings.setdefault("backoff_base", timedelta(milliseconds=10))
    settings.setdefault("backoff_max", timedelta(milliseconds=50))
    register_job_type(client, name, f"tests.acceptance.handlers:{handler}", **settings)
    return name


def executions(db: psycopg.Connection[Any], job_id: int, tag: str | None = None) -> list[Any]:
    return (
        db.cursor(row_factory=namedtuple_row)
        .execute(
            "SELECT attempt, tag, pid FROM public.test_exec WHERE job_id = %s"
            " AND (%s::text IS NULL OR tag = %s) ORDER BY id",
            (job_id, tag, tag),
        )
        .fetchall()
    )
