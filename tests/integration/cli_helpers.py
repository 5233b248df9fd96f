"""Running the ``jobqueue`` command as a subprocess, and polling for what it does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.waiting import wait_for as wait_for

REPO = Path(__file__).resolve().parents[2]


def cli_env(dsn: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JOBQUEUE_DSN", "DATABASE_URL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    if dsn is not None:
        env["JOBQUEUE_DSN"] = dsn
    return env | extra


def jobqueue(
    *args: str, dsn: str | None = None, check: int | None = 0, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m jobqueue.cli ARGS``; assert its exit code unless check is None."""
    done = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", *args],
        env=cli_env(dsn),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check is not None:
        assert done.returncode == check, (done.returncode, done.stdout, done.stderr)
    return done


def jobqueue_each(commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """``jobqueue(*command)`` for each of these independent commands, as many at once as the
    machine has cores; the exit code of each is asserted as by ``jobqueue``."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(lambda command: jobqueue(*command), commands))


def jobqueue_json(*args: str, dsn: str) -> Any:
    return json.loads(jobqueue(*args, "--json", dsn=dsn).stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
