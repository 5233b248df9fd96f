"""The handler's JobContext without a database: what it offers a handler from the start,
and what it sets up only when a handler uses it."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from jobqueue.context import JobContext


def make_context(
    loop: asyncio.AbstractEventLoop, calls: list[tuple[Any, ...]] | None = None
) -> JobContext:
    async def execute(name: str, *args: Any) -> Any:
        if calls is not None:
            calls.append((name, *args))
        return False

    return JobContext(
        job_id=7,
        attempt=2,
        job_type="resize",
        organization="acme",
        params={"url": "x"},
        checkpoint={"page": 3},
        timeout=30.0,
        loop=loop,
        execute=execute,
    )


async def test_the_context_shows_its_job() -> None:
    ctx = make_context(asyncio.get_running_loop())
    assert (ctx.job_id, ctx.attempt, ctx.job_type, ctx.organization) == (7, 2, "resize", "acme")
    assert ctx.params == {"url": "x"}
    assert ctx.timeout == 30.0
    assert ctx.load_checkpoint() == {"page": 3}
    assert repr(ctx) == "JobContext(job_id=7, attempt=2, job_type='resize', organization='acme')"


async def test_the_logger_carries_the_job_and_stays_the_same_object(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = make_context(asyncio.get_running_loop())
    assert isinstance(ctx.logger, logging.LoggerAdapter)
    assert ctx.logger is ctx.logger
    assert ctx.logger.logger is logging.getLogger("jobqueue.job")
    with caplog.at_level(logging.INFO, logger="jobqueue.job"):
        ctx.logger.info("hello")
    (record,) = caplog.records
    assert (record.job_id, record.attempt, record.job_type) == (7, 2, "resize")  # type: ignore[attr-defined]


async def test_the_logger_can_be_replaced_as_before() -> None:
    ctx = make_context(asyncio.get_running_loop())
    other = logging.LoggerAdapter(logging.getLogger("elsewhere"), {})
    ctx.logger = other
    assert ctx.logger is other


async def test_each_context_has_its_own_logger_and_cancel_flag() -> None:
    loop = asyncio.get_running_loop()
    first, second = make_context(loop), make_context(loop)
    assert first.logger is not second.logger
    first._cancel()
    assert first.is_canceled() is True
    assert second.is_canceled() is False


async def test_a_cancel_is_seen_by_a_handler_thread() -> None:
    ctx = make_context(asyncio.get_running_loop())
    started, seen = threading.Event(), threading.Event()

    def handler() -> None:
        started.set()
        while not ctx.is_canceled():
            pass
        seen.set()

    thread = threading.Thread(target=handler, daemon=True)
    thread.start()
    assert started.wait(5)
    assert ctx.is_canceled() is False
    ctx._cancel()
    assert seen.wait(5)
    thread.join(5)


async def test_progress_is_unwritten_until_flushed() -> None:
    calls: list[tuple[Any, ...]] = []
    ctx = make_context(asyncio.get_running_loop(), calls)
    assert ctx._progress_unwritten() is False
    ctx.report_progress(40, "tiles")
    assert ctx._progress_unwritten() is True
    await ctx._flush_progress()
    assert ctx._progress_unwritten() is False
    assert calls == [("report_progress", 7, 2, 40, "tiles")]


async def test_a_cancel_request_answered_by_a_progress_write_cancels() -> None:
    async def execute(name: str, *args: Any) -> Any:
        return True

    ctx = JobContext(
        job_id=1,
        attempt=1,
        job_type="t",
        organization="o",
        params={},
        checkpoint=None,
        timeout=1.0,
        loop=asyncio.get_running_loop(),
        execute=execute,
    )
    ctx.report_progress(10)
    await ctx._flush_progress()
    assert ctx.is_canceled() is True
