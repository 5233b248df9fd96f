"""The bridge's handling of one attempt, without a database: the outcome each kind of
handler ends with, whether it settles in its first step or later."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from procrastinate import job_context

from jobqueue.context import JobContext
from jobqueue.worker import bridge, deadlines, holds
from jobqueue.worker.connector import loads

HERE = "tests.unit.test_worker_bridge"
seen: dict[str, Any] = {}
progress: list[tuple[Any, ...]] = []


@pytest.fixture(autouse=True)
def database_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bridge's calls of jobqueue SQL functions (only progress here), recorded."""
    progress.clear()

    async def execute(pool: Any, call: Any) -> Any:
        progress.append((call.params["percent"], call.params["message"]))
        return False

    monkeypatch.setattr(bridge, "execute", execute)


async def at_once(ctx: JobContext, value: int = 1) -> int:
    return value * 2


async def after_awaits(ctx: JobContext, steps: int = 3) -> str:
    for _ in range(steps):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    return "done"


async def raises_at_once(ctx: JobContext) -> None:
    raise ValueError("bad input")


async def sleeps(ctx: JobContext, seconds: float = 5.0) -> None:
    try:
        await asyncio.sleep(seconds)
    finally:
        seen["cancelled"] = ctx.is_canceled()


async def progress_then_return(ctx: JobContext) -> str:
    ctx.report_progress(50, "half")
    return "ok"


def sync_handler(ctx: JobContext, value: int = 1) -> int:
    return value + 1


def sync_sleeps(ctx: JobContext) -> str:
    while not ctx.is_canceled():
        time.sleep(0.005)
    return "stopped"


async def shrugs_off_cancel(ctx: JobContext, seconds: float = 0.3) -> str:
    """Swallows the cancellation at its await and carries on to the end."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            seen["swallowed"] = True
    seen["ended"] = True
    return "done anyway"


def sync_ignores(ctx: JobContext, seconds: float = 0.3) -> str:
    time.sleep(seconds)
    seen["ended"] = True
    return "done anyway"


class Buffer:
    def __init__(self) -> None:
        self.outcomes: list[dict[str, Any]] = []

    def add(self, outcome: dict[str, Any]) -> None:
        self.outcomes.append(outcome)


def fake_context(buffer: Buffer, abort: job_context.AbortReason | None = None) -> Any:
    return SimpleNamespace(
        app=SimpleNamespace(connector=SimpleNamespace(pool=None)),
        additional_context={bridge.OUTCOMES_KEY: buffer},
        abort_reason=lambda: abort,
    )


async def attempt(
    handler: str,
    params: dict[str, Any] | None = None,
    *,
    timeout: float = 5.0,
    buffer: Buffer | None = None,
) -> dict[str, Any]:
    buffer = buffer or Buffer()
    result = await bridge.run_attempt(
        fake_context(buffer),
        job_id=11,
        attempt=1,
        handler=f"{HERE}:{handler}",
        params=params or {},
        organization="acme",
        timeout=timeout,
        job_type="t",
    )
    assert result == bridge.VEHICLE_FINISHED
    (outcome,) = buffer.outcomes
    return outcome


async def test_a_handler_that_returns_in_its_first_step_completes() -> None:
    outcome = await attempt("at_once", {"value": 21})
    assert (outcome["outcome"], outcome["result"]) == ("completed", 42)
    assert (outcome["job_id"], outcome["attempt"]) == (11, 1)
    assert not deadlines.on(asyncio.get_running_loop())._slices


async def test_a_handler_that_awaits_completes() -> None:
    outcome = await attempt("after_awaits")
    assert (outcome["outcome"], outcome["result"]) == ("completed", "done")
    assert not deadlines.on(asyncio.get_running_loop())._slices


async def test_a_handler_that_raises_in_its_first_step_fails() -> None:
    outcome = await attempt("raises_at_once")
    assert outcome["outcome"] == "failed"
    assert outcome["error"] == "ValueError: bad input"
    assert "bad input" in outcome["traceback"]
    assert outcome["retryable"] is True


async def test_wrong_params_fail_the_attempt() -> None:
    outcome = await attempt("at_once", {"nope": 1})
    assert outcome["outcome"] == "failed"
    assert "nope" in outcome["error"]


async def test_an_async_handler_past_its_timeout_is_cancelled() -> None:
    seen.clear()
    outcome = await attempt("sleeps", timeout=0.05)
    assert outcome["outcome"] == "timed_out"
    await asyncio.sleep(0.01)
    assert seen["cancelled"] is True


async def test_a_sync_handler_completes_and_one_past_its_timeout_times_out() -> None:
    outcome = await attempt("sync_handler", {"value": 4})
    assert (outcome["outcome"], outcome["result"]) == ("completed", 5)
    outcome = await attempt("sync_sleeps", timeout=0.05)
    assert outcome["outcome"] == "timed_out"


@pytest.mark.parametrize("handler", ["shrugs_off_cancel", "sync_ignores"])
async def test_an_attempt_past_its_deadline_ends_only_when_its_handler_does(
    handler: str,
) -> None:
    """A handler that ignores its deadline runs on; its outcome (timed_out) is handed over,
    and the attempt's slot freed, only once it has returned."""
    seen.clear()
    outcome = await attempt(handler, timeout=0.05)
    assert outcome["outcome"] == "timed_out"
    assert seen["ended"] is True
    if handler == "shrugs_off_cancel":
        assert seen["swallowed"] is True  # it was cancelled at its await, and carried on
    assert holds.holds.ids() == []


async def test_progress_reported_by_a_quick_handler_is_written_before_the_outcome() -> None:
    outcome = await attempt("progress_then_return")
    assert (outcome["outcome"], outcome["result"]) == ("completed", "ok")
    assert progress == [(50, "half")]


async def test_an_abort_during_the_first_step_cancels_the_handler() -> None:
    seen.clear()
    buffer = Buffer()
    task = asyncio.create_task(
        bridge.run_attempt(
            fake_context(buffer, job_context.AbortReason.USER_REQUEST),
            job_id=3,
            attempt=1,
            handler=f"{HERE}:sleeps",
            params={},
            organization="acme",
            timeout=5.0,
            job_type="t",
        )
    )
    await asyncio.sleep(0)  # the bridge has started the handler and waits for its first step
    task.cancel()
    assert await task == bridge.VEHICLE_FINISHED
    (outcome,) = buffer.outcomes
    assert outcome["outcome"] == "canceled"
    await asyncio.sleep(0.01)
    assert seen["cancelled"] is True


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1, "b": [1.5, null, true], "c": "\\u00e9t\\u00e9"}',
        '{"a": "h\u00e9"}'.encode(),
        b"[1, 2, 3]",
        b"[]",
        b'"text"',
        b"42",
        b"null",
        b"\xef\xbb\xbf{}",
        '{"x": 1}'.encode("utf-16"),
        '{"x": 1}'.encode("utf-16-le"),
        '{"x": 1}'.encode("utf-32"),
        '{"x": 1}',
        b"{\xed\xa0\x80}",
        b"{",
        b"",
    ],
)
def test_loads_reads_json_as_json_loads_does(data: str | bytes) -> None:
    try:
        expected: Any = json.loads(data)
    except Exception as exc:
        with pytest.raises(type(exc)):
            loads(data)
    else:
        assert loads(data) == expected


async def test_recorded_outcomes_answer_rows_or_results_and_log_fenced_off_ones(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        {"job_id": 1, "attempt": 1, "accepted": True, "status": "completed"},
        {"job_id": 2, "attempt": 3, "accepted": False, "status": "running"},
    ]
    sent: list[Any] = []

    async def fetch_rows(pool: Any, call: Any) -> list[dict[str, Any]]:
        sent.append(call.params["outcomes"].obj)
        return [dict(row) for row in rows]

    monkeypatch.setattr(bridge, "_fetch_rows", fetch_rows)
    outcome = bridge._outcome((1, 1), "completed", result=None)
    with caplog.at_level(logging.WARNING, logger="jobqueue.worker"):
        assert await bridge.record_outcome_rows(None, [outcome]) == rows  # type: ignore[arg-type]
        results = await bridge.record_outcomes(None, [outcome])  # type: ignore[arg-type]
    assert sent == [[outcome], [outcome]]
    assert [(r.job_id, r.attempt, r.accepted, r.status) for r in results] == [
        (1, 1, True, "completed"),
        (2, 3, False, "running"),
    ]
    assert [r.getMessage() for r in caplog.records] == [
        "attempt 3 of job 2 is no longer current; its outcome was kept on the attempt row only"
    ] * 2
