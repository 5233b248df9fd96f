"""Client and worker processes of the systems under test.

Both run ``python -m bench.client`` / ``python -m bench.worker`` under the adapter's interpreter
with the repository on ``PYTHONPATH``. Their stderr goes to a log file whose tail is shown
when something fails. Workers run in their own process group, so stopping one also stops any
processes it forked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.systems.base import Adapter

REPO_ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT = 20.0


class ProcessError(RuntimeError):
    """A client or worker process failed; the message ends with its log's tail."""


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _environment(adapter: Adapter, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(adapter.environment())
    env.update(extra or {})
    return env


async def run_client(
    adapter: Adapter, action: str, logdir: Path, time_limit: float, **options: object
) -> dict[str, Any]:
    """Run one ``bench.client`` action (killed after ``time_limit`` seconds); return its JSON."""
    argv = [adapter.interpreter(), "-m", "bench.client", adapter.name, action]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    log = logdir / f"client-{adapter.name}-{action}-{time.monotonic_ns()}.log"
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=REPO_ROOT,
            env=_environment(adapter),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), time_limit)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ProcessError(
                f"{adapter.name} client {action} ran over {time_limit:.0f}s\n{_tail(log)}"
            ) from None
    lines = out.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ProcessError(
            f"{adapter.name} client {action} exited with {proc.returncode}\n{_tail(log)}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class Workers:
    """``count`` worker processes of one system, started together through the ready/go gate.

    Use as ``async with Workers(...) as workers: await workers.go()``; leaving the block stops
    them (SIGTERM, then SIGKILL after ``STOP_TIMEOUT`` seconds).
    """

    def __init__(
        self,
        adapter: Adapter,
        dsn: str,
        count: int,
        concurrency: int,
        logdir: Path,
        marks: Path,
        marks_mode: str,
        ready_timeout: float = 120.0,
    ) -> None:
        self.adapter = adapter
        self.dsn = dsn
        self.count = count
        self.concurrency = concurrency
        self.logdir = logdir
        self.marks = marks
        self.marks_mode = marks_mode
        self.ready_timeout = ready_timeout
        self.procs: list[tuple[asyncio.subprocess.Process, Path]] = []

    async def __aenter__(self) -> Workers:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the processes and wait until each is ready (stopping them all on failure)."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        env = _environment(
            self.adapter, {"BENCH_MARKS": str(self.marks), "BENCH_MARKS_MODE": self.marks_mode}
        )
        argv = [
            self.adapter.interpreter(),
            "-m",
            "bench.worker",
            self.adapter.name,
            "--dsn",
            self.dsn,
            "--concurrency",
            str(self.concurrency),
        ]
        for i in range(self.count):
            log = self.logdir / f"worker-{self.adapter.name}-{time.monotonic_ns()}-{i}.log"
            with log.open("wb") as stderr:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=stderr,
                    start_new_session=True,
                )
            self.procs.append((proc, log))
        for proc, log in self.procs:
            assert proc.stdout is not None
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), self.ready_timeout)
            except TimeoutError:
                line = b""
            if line.strip() != b"ready":
                raise ProcessError(f"{self.adapter.name} worker did not get ready\n{_tail(log)}")

    async def go(self) -> None:
        """Release all workers at once."""
        for proc, _ in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
        for proc, _ in self.procs:
            assert proc.stdin is not None
            await proc.stdin.drain()

    def check_alive(self) -> None:
        """Raise if a worker process has exited."""
        for proc, log in self.procs:
            if proc.returncode is not None:
                raise ProcessError(
                    f"{self.adapter.name} worker exited with {proc.returncode}\n{_tail(log)}"
                )

    async def stop(self) -> None:
        """Stop every worker: SIGTERM to its process group, SIGKILL if it lingers."""
        for proc, _ in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        self.procs = []
