"""``jobqueue up`` as a user runs it: a subprocess, jobs completing, Ctrl-C, nothing left."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.cli_helpers import cli_env, free_port, wait_for


class Up:
    """A running ``jobqueue up`` with its output read line by line."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobqueue.cli", "up", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
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

    def tree(self) -> list[psutil.Process]:
        return [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(True)]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="jobqueue-up-"))
    # The embedded server runs as its own system user when the tests run as root.
    os.chmod(root, 0o755)  # noqa: S103 - postgres's user must reach its data dir
    yield root / "data"
    subprocess.run(["rm", "-rf", str(root)], check=False)


def _completed_jobs(url: str, token: str) -> int:
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


def _stop_and_check_nothing_left(up: Up, tree: list[psutil.Process]) -> None:
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(120) == 0, "".join(up.output)
    up.wait_line(r"^Stopped\.", timeout=5)
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert alive == [], [p.info if hasattr(p, "info") else p.pid for p in alive]


@pytest.mark.timeout(600)
def test_up_demo_on_embedded_postgres_then_ctrl_c_leaves_nothing(data_dir: Path) -> None:
    port = free_port()
    env = cli_env(None, XDG_RUNTIME_DIR=tempfile.gettempdir())
    up = Up(["--demo", "--demo-interval", "0.2", "--data-dir", str(data_dir),
             "--port", str(port)], env)  # fmt: skip
    try:
        url = up.wait_line(r"Dashboard: (\S+)").group(1)
        token = up.wait_line(r"Admin token: (\S+)").group(1)
        assert url == f"http://127.0.0.1:{port}/"
        wait_for(lambda: _completed_jobs(url, token) >= 3, timeout=180, what="demo jobs completing")
        tree = up.tree()
        postmaster = (data_dir / "pgdata" / "postmaster.pid").read_text().split()[0]
        tree.append(psutil.Process(int(postmaster)))
        tree += psutil.Process(int(postmaster)).children(recursive=True)
        assert len(tree) >= 4  # up, worker, web, postgres and its backends
        _stop_and_check_nothing_left(up, tree)
        assert not (data_dir / "pgdata" / "postmaster.pid").exists()
    finally:
        up.close()


@pytest.mark.timeout(300)
def test_up_with_a_dsn_uses_that_database(dsn: str) -> None:
    port = free_port()
    up = Up(["--port", str(port), "--concurrency", "2"], cli_env(dsn))
    try:
        url = up.wait_line(r"Dashboard: (\S+)").group(1)
        token = up.wait_line(r"Admin token: (\S+)").group(1)
        response = httpx.get(f"{url}api/job-types", headers={"Authorization": f"Bearer {token}"})
        names = {t["name"] for t in response.json()["job_types"]}
        assert {"demo.echo", "demo.sleep", "demo.flaky", "demo.fail"} <= names
        submitted = httpx.post(
            f"{url}api/jobs",
            json={"job_type": "demo.echo", "organization": "demo", "params": {"x": 1}},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert submitted.status_code == 201, submitted.text
        wait_for(lambda: _completed_jobs(url, token) == 1, what="the job completing")
        _stop_and_check_nothing_left(up, up.tree())
    finally:
        up.close()
