"""The outcome buffer without a database: one flush in flight at a time, back-pressure, and
outcomes that wait behind a flush taken along by a claim."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from jobqueue.worker.outcomes import OutcomeBuffer


class Recorder:
    """Records batches; each call waits until the test lets it through."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()

    async def __call__(self, outcomes: Sequence[dict[str, Any]]) -> None:
        self.batches.append([o["job_id"] for o in outcomes])
        await self.gate.wait()


def outcome(job_id: int) -> dict[str, Any]:
    return {"job_id": job_id, "attempt": 1, "outcome": "completed"}


async def test_outcomes_behind_a_flush_in_flight_go_with_a_claim_or_the_next_flush() -> None:
    record = Recorder()
    buffer = OutcomeBuffer(record, limit=2)
    buffer.add(outcome(1))
    await asyncio.sleep(0)
    assert record.batches == [[1]] and not buffer.waiting()  # flushed at once
    buffer.add(outcome(2))
    assert buffer.waiting() and not buffer.room()  # behind the flush in flight, buffer full
    taken = buffer.take()  # a claim takes it along
    assert [o["job_id"] for o in taken] == [2] and not buffer.waiting()
    assert len(buffer) == 2
    buffer.settle(taken, recorded=True)
    assert len(buffer) == 1 and buffer.room()
    buffer.add(outcome(3))
    taken = buffer.take()
    buffer.settle(taken, recorded=False)  # the claim failed: they wait for a flush again
    record.gate.set()
    await buffer.drain()
    assert record.batches == [[1], [3]]
    assert len(buffer) == 0 and buffer.room()
