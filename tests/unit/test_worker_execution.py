"""Execution modes without a database: settings, the registry of held attempts, and a child
process run, stopped and killed by the worker's process pool."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from jobqueue import errors
from jobqueue.context import JobContext
from jobqueue.worker import processes
from jobqueue.worker.execution import ExecutionSettings, settings_from
from jobqueue.worker.holds import Holds

HERE = "tests.unit.test_worker_execution"


@pytest.mark.parametrize(
    "settings",
    [{"default": "thread"}, {"default": ""}, {"kill_grace": 0}, {"kill_grace": 301.0}],
)
def test_bad_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ExecutionSettings(**settings)


def test_settings_come_from_the_environment_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQUEUE_EXECUTION", "process")
    monkeypatch.setenv("JOBQUEUE_KILL_GRACE", "2.5")
    assert settings_from(None) == ExecutionSettings("process", 2.5)
    given = ExecutionSettings("inline", 1.0)
    assert settings_from({"jobqueue.execution": given}) is given
    monkeypatch.setenv("JOBQUEUE_KILL_GRACE", "soon")
    with pytest.raises(ValueError, match="JOBQUEUE_KILL_GRACE"):
        ExecutionSettings.from_env()


def test_orphans_count_against_the_slots_of_the_worker_that_adopts_them() -> None:
    held = Holds()
    freed: list[str] = []
    held.add((1, 1))  # a bridge still waits for this one: its task holds the slot
    held.orphan((2, 1))
    held.orphan((3, 1))
    assert held.adopt(lambda: freed.append("first")) == 2
    # A later worker of the same process adopts the orphans that are still running.
    held.discard((2, 1))
    assert freed == ["first"]
    assert held.adopt(lambda: freed.append("second")) == 1
    held.discard((3, 1))
    held.discard((1, 1))
    assert freed == ["first", "second"]
    assert len(held) == 0


# ---------------------------------------------------------------- child processes


def stays(ctx: JobContext, seconds: float = 30.0) -> str:
    ctx.report_progress(10, "started")
    try:
        time.sleep(seconds)
    finally:
        logging.getLogger("jobqueue.job").warning("stopping, canceled=%s", ctx.is_canceled())
    return "slept"


def ignores_sigterm(ctx: JobContext, seconds: float = 30.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            time.sleep(0.01)
        except BaseException:  # noqa: S112 - ignoring the stop is the point
            continue


def saves(ctx: JobContext) -> Any:
    ctx.checkpoint({"step": 1})
    try:
        ctx.checkpoint({"too": "big"})
    except errors.PayloadTooLarge as exc:
        return {"refused": str(exc), "kept": ctx.load_checkpoint()}
    return "saved twice"


def context(loop: asyncio.AbstractEventLoop, calls: list[Any], timeout: float = 30.0) -> Any:
    async def execute(name: str, *args: Any) -> Any:
        calls.append((name, *args))
        if name == "save_checkpoint" and args[2] == {"too": "big"}:
            raise errors.PayloadTooLarge("a checkpoint is at most 1 MiB")
        return False

    return JobContext(
        job_id=5,
        attempt=1,
        job_type="t",
        organization="acme",
        params={},
        checkpoint=None,
        timeout=timeout,
        loop=loop,
        execute=execute,
    )


async def test_a_child_runs_jobs_one_after_another_and_reports_how_they_ended() -> None:
    pool = processes.ProcessPool(kill_grace=1.0)
    calls: list[Any] = []
    try:
        child = await pool.acquire()
        ended = child.submit(context(asyncio.get_running_loop(), calls), f"{HERE}:saves", {}, None)
        ending = await asyncio.wait_for(ended, 30)
        assert ending.kind == "returned"
        assert ending.value == {"refused": "a checkpoint is at most 1 MiB", "kept": {"step": 1}}
        assert [c[0] for c in calls] == ["save_checkpoint", "save_checkpoint"]
        pool.release(child)
        again = await pool.acquire()
        assert again is child  # reused while idle
        ended = again.submit(
            context(asyncio.get_running_loop(), calls), f"{HERE}:stays", {"seconds": 0}, None
        )
        assert (await asyncio.wait_for(ended, 30)).value == "slept"
    finally:
        await pool.close()
    assert len(pool) == 0


async def test_a_stopped_child_runs_its_finally_blocks_and_one_ignoring_sigterm_is_killed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = processes.ProcessPool(kill_grace=0.5)
    loop = asyncio.get_running_loop()
    calls: list[Any] = []
    try:
        polite, stubborn = await pool.acquire(), await pool.acquire()
        ctx = context(loop, calls)
        polite_ended = polite.submit(ctx, f"{HERE}:stays", {}, None)
        stubborn_ended = stubborn.submit(context(loop, calls), f"{HERE}:ignores_sigterm", {}, None)
        await asyncio.sleep(0.5)
        assert not polite_ended.done() and not stubborn_ended.done()
        ctx._cancel()
        with caplog.at_level(logging.WARNING):
            await asyncio.gather(polite.kill(pool.kill_grace), stubborn.kill(pool.kill_grace))
        assert polite.exitcode == 0  # SIGTERM raised in the handler, and the child exited
        assert stubborn.exitcode == -9  # SIGKILL after the grace
        assert polite_ended.result().kind == stubborn_ended.result().kind == "exited"
        messages = [r.getMessage() for r in caplog.records]
        assert "stopping, canceled=True" in messages  # logged in the child, emitted here
        assert any("ignored SIGTERM" in m for m in messages)
        assert ("report_progress", 5, 1, 10, "started") in calls
        assert len(pool) == 0
    finally:
        await pool.close()
