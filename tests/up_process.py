"""``jobqueue up`` as a user runs it: a subprocess whose output is read line by line, its
process tree (the embedded PostgreSQL included), and the check that Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from tests.waiting import wait_for


class Up:
    """A running ``jobqueue up`` (the command given) with its output read line by line."""

    def __init__(self, command: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_line(self, pattern: str, timeout: float = 180.0) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            while not self.lines.empty():
                match = regex.search(self.lines.get())
                if match:
                    return match
            if self.proc.poll() is not None and self.lines.empty():
                pytest.fail(f"jobqueue up exited: {''.join(self.output)}")
            return None

        return wait_for(found, timeout=timeout, what=pattern)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(60)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def tree(self, data_dir: Path | None = None) -> list[psutil.Process]:
        """``up`` and its children, and the embedded server's processes when there is one."""
        tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(True)]
        if data_dir is not None:
            postmaster = psutil.Process(
                int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
            )
            tree += [postmaster, *postmaster.children(recursive=True)]
        return tree

    def stop_and_check_nothing_left(self, tree: list[psutil.Process]) -> None:
        """Ctrl-C: ``up`` exits 0 and every process of its tree is gone."""
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(120) == 0, "".join(self.output)
        self.wait_line(r"^Stopped\.", timeout=5)
        _, alive = psutil.wait_procs(tree, timeout=30)
        assert alive == [], [p.pid for p in alive]


@contextmanager
def up_data_dir() -> Iterator[Path]:
    """A data directory for the embedded server, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="jobqueue-up-"))
    # The embedded server runs as its own system user when the tests run as root.
    os.chmod(root, 0o755)  # noqa: S103 - postgres's user must reach its data dir
    try:
        yield root / "data"
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def completed_jobs(url: str, token: str) -> int:
    """How many jobs the dashboard's API lists as completed (0 while it does not answer)."""
    try:
        response = httpx.get(
            f"{url}api/jobs",
            params={"status": "completed"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
    except httpx.HTTPError:
        return 0
    return len(response.json()["jobs"]) if response.status_code == 200 else 0


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
