"""Shared pieces of the reliability suite: sizes, snapshots, real worker processes.

The suite runs at a reduced size by default so CI stays fast; ``JOBQUEUE_FULL=1`` (or
``pytest --full``) runs every load and fault test at its full size.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobqueue import db as jobqueue_db
from tests.reliability.handlers import ATTEMPT_LOG_TABLE
from tests.waiting import wait_for as wait_for

REPO = Path(__file__).resolve().parents[2]


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


class Workers:
    """Real worker subprocesses against one database; all killed at teardown."""

    def __init__(self, dsn: str, logs: Path):
        self.dsn = dsn
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, *, concurrency: int = 8, stale_after: float = 2.0, extra: list[str] | None = None
    ) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "JOBQUEUE_DSN": self.dsn,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        args = [
            sys.executable,
            "-m",
            "jobqueue.worker",
            "--concurrency",
            str(concurrency),
            "--stale-after",
            str(stale_after),
            *(extra or []),
        ]
        log = open(self.logs / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        log.close()
        self.procs.append(proc)
        return proc

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def output(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.logs.glob("worker-*.log"))
        )

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
        for proc in self.procs:
            proc.wait(timeout=20)


@pytest.fixture
def workers(dsn: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Workers]:
    pool = Workers(dsn, tmp_path)
    yield pool
    pool.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(pool.output())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def owner(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit owner connection with the attempt log table in place."""
    with jobqueue_db.connect(dsn, autocommit=True) as conn:
        conn.execute(ATTEMPT_LOG_TABLE)
        yield conn
