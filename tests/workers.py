"""Real worker subprocesses against a test database, for the acceptance and reliability suites.

A conftest imports :func:`workers` (the fixture) and :func:`pytest_runtest_makereport` (the
hook that lets the fixture see whether the test failed); on failure the fixture prints the
workers' logs, which are otherwise only in the test's ``tmp_path``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# A load test's worker logs run to megabytes; the end of each says what went wrong.
FAILURE_LOG_TAIL = 4000


def child_env(dsn: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a jobqueue subprocess: the test database, and the tests importable."""
    return {
        **os.environ,
        "JOBQUEUE_DSN": dsn,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        **(extra or {}),
    }


class Workers:
    """Starts worker subprocesses, each logging to its own file; all are killed at teardown."""

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
        extra: list[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """``python -m jobqueue.worker`` with these options.

        The grace period is short so that a test stopping a worker with SIGTERM does not wait
        out the worker's own 30 s default.
        """
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
        return self.spawn([sys.executable, "-m", "jobqueue.worker", *args, *(extra or [])])

    def spawn(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start any worker command line with the test database in its environment."""
        log = open(self.logs / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            args, env=child_env(self.dsn, env), stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
        log.close()
        self.procs.append(proc)
        return proc

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def output(self, tail: int | None = None) -> str:
        """Every worker's log so far, or the last ``tail`` characters of each."""
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-(tail or 0) :]}"
            for p in sorted(self.logs.glob("worker-*.log"))
        )

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                # A worker a test paused with SIGSTOP must run again to die.
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
        print(pool.output(tail=FAILURE_LOG_TAIL))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    # Keeps each phase's report on the item, so a fixture's teardown knows the test failed.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
