"""Shared pieces of the reliability suite: sizes, snapshots, real worker processes.

The suite runs at a reduced size by default so CI stays fast; ``JOBQUEUE_FULL=1`` (or
``pytest --full``) runs every load and fault test at its full size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from jobqueue import db as jobqueue_db
from tests.reliability.handlers import ATTEMPT_LOG_TABLE
from tests.waiting import wait_for as wait_for
from tests.workers import REPO as REPO
from tests.workers import Workers as Workers
from tests.workers import pytest_runtest_makereport as pytest_runtest_makereport
from tests.workers import workers as workers


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full",
        action="store_true",
        default=False,
        help="run the reliability suite at full size (same as JOBQUEUE_FULL=1)",
    )


def full_size(config: pytest.Config) -> bool:
    return bool(config.getoption("--full")) or os.environ.get("JOBQUEUE_FULL") == "1"


@pytest.fixture(scope="session")
def full(pytestconfig: pytest.Config) -> bool:
    """True when the suite runs at full size."""
    return full_size(pytestconfig)


def scalar(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def table_fingerprints(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """A digest of every row of every jobqueue table and of procrastinate's jobs.

    Tables are enumerated from the catalog, so a new table is covered without a test change.
    """
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
            " WHERE schemaname = 'jobqueue'"
            "    OR (schemaname = 'procrastinate' AND tablename = 'procrastinate_jobs')"
            " ORDER BY 1"
        ).fetchall()
    ]
    # Table names come from the catalog, never from input.
    return {
        t: scalar(
            conn,
            f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} AS x",
        )
        for t in tables
    }


def row_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return {
        t: scalar(conn, f"SELECT count(*) FROM {t}")
        for t in ("jobqueue.job", "jobqueue.event", "procrastinate.procrastinate_jobs")
    }


@pytest.fixture
def owner(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit owner connection with the attempt log table in place."""
    with jobqueue_db.connect(dsn, autocommit=True) as conn:
        conn.execute(ATTEMPT_LOG_TABLE)
        yield conn
