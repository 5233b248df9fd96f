"""Real worker processes against the test database, and helpers to watch them work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import namedtuple_row

from jobqueue import db as jobqueue_db
from jobqueue.client import Client
from jobqueue.handlers import register_job_type
from tests.acceptance.handlers import EXEC_TABLE
from tests.waiting import wait_for as wait_for

REPO = Path(__file__).resolve().parents[2]


class Workers:
    """Starts worker subprocesses; stops them all at teardown."""

    def __init__(self, dsn: str, logs: Path):
        self.dsn = dsn
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        *,
        concurrency: int = 4,
        queues: str = "",
        stale_after: float = 2.0,
        shutdown_grace: float = 5.0,
        retention: float | None = None,
    ) -> subprocess.Popen[bytes]:
        args = [
            "--concurrency",
            str(concurrency),
            "--stale-after",
            str(stale_after),
            "--shutdown-grace",
            str(shutdown_grace),
        ]
        if queues:
            args += ["--queues", queues]
        if retention is not None:
            args += ["--retention", str(retention)]
        return self.spawn([sys.executable, "-m", "jobqueue.worker", *args])

    def spawn(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start any worker command line with the test database in its environment."""
        env = {
            **os.environ,
            "JOBQUEUE_DSN": self.dsn,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **(env or {}),
        }
        log = open(self.logs / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        log.close()
        self.procs.append(proc)
        return proc

    def output(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')}"
            for p in sorted(self.logs.glob("*.log"))
        )

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
        for proc in self.procs:
            proc.wait(timeout=10)


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
