"""What every measured system provides; the scenarios only speak this interface.

A worker runs in its own process (``python -m bench.worker SYSTEM DSN CONCURRENCY [LOG]``):
its handler does nothing, or appends ``<key> <unix time>`` to LOG when it starts, which is how
pick-up latency is measured the same way for every system.
"""

from __future__ import annotations

import os
import subprocess
import sys
from abc import ABC, abstractmethod
from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parents[2]


class System(ABC):
    name: str = ""

    def __init__(self, dsn: str):
        self.dsn = dsn

    @abstractmethod
    def install(self) -> None:
        """Create the system's schema in the (empty) database."""

    @abstractmethod
    def enqueue_one(self, conn: psycopg.Connection, key: int) -> None:
        """Enqueue one no-op job in its own transaction (conn is autocommit)."""

    @abstractmethod
    def enqueue_batch(self, conn: psycopg.Connection, keys: list[int]) -> None:
        """Enqueue many no-op jobs with the system's batch API, in one transaction."""

    @abstractmethod
    def unfinished(self, conn: psycopg.Connection) -> int:
        """Jobs not yet finished in the database."""

    @abstractmethod
    def add_history(self, conn: psycopg.Connection, count: int) -> None:
        """Insert ``count`` already-finished jobs, as a long-running install would have."""

    def start_worker(self, concurrency: int, log: Path | None = None) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "bench.worker", self.name, self.dsn, str(concurrency)]
        if log is not None:
            args.append(str(log))
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        return subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO_ROOT
        )
