"""Running the ``jobqueue`` command as a subprocess, and polling for what it does."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tests.waiting import wait_for as wait_for

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


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


def at_once(calls: list[Callable[[], T]]) -> list[T]:
    """The results of these independent calls, in order, made as many at once as the machine
    has cores; the first exception raised by one of them is raised here."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(lambda call: call(), calls))


def jobqueue_each(commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """``jobqueue(*command)`` for each of these independent commands, as many at once as the
    machine has cores; the exit code of each is asserted as by ``jobqueue``."""
    return at_once([functools.partial(jobqueue, *command) for command in commands])


def jobqueue_json(*args: str, dsn: str) -> Any:
    return json.loads(jobqueue(*args, "--json", dsn=dsn).stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
