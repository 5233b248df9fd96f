"""Attempt outcomes recorded in batches: group commit for ``finish_attempts``.

A finished attempt hands its outcome to the worker's :class:`OutcomeBuffer` and frees its
slot at once. One ``finish_attempts`` call is in flight at a time and carries every outcome
that arrived while the previous one ran, so an idle worker records an outcome immediately
and a busy one records dozens per round trip.

When the buffer is full, the claim loop does not wait for the flush in flight: it takes the
waiting outcomes along (:meth:`OutcomeBuffer.take`, ``finish_and_fetch``), and the claim
records them in its own round trip and transaction. Below that, outcomes and claims go on two
connections side by side, which is faster than one call doing both.

An outcome held here and not yet committed is not lost if the worker dies: its attempt is
still ``running`` and the rescuer closes it once the worker stops heartbeating, so the job
runs again (at-least-once). The buffer is bounded (the claim loop waits while it is full) so
that window stays small.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

logger = logging.getLogger("jobqueue.worker")

# What recording answers is not read: fenced-off outcomes are the recorder's to report.
Record = Callable[[Sequence[dict[str, Any]]], Awaitable[object]]

# Outcomes one finish_attempts call carries at most: large enough to keep up with any claim
# batch, small enough that one statement stays short.
MAX_BATCH = 500


class OutcomeBuffer:
    """Outcomes waiting to be recorded, flushed by one background task at a time."""

    def __init__(self, record: Record, *, limit: int, max_batch: int = MAX_BATCH) -> None:
        self._record = record
        self._limit = limit
        self._max_batch = max_batch
        self._pending: list[dict[str, Any]] = []
        self._in_flight = 0
        self._flusher: asyncio.Task[None] | None = None
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        """Outcomes not yet committed: waiting, or in a call in flight."""
        return len(self._pending) + self._in_flight

    def add(self, outcome: dict[str, Any]) -> None:
        """Queue an outcome; a flush starts now unless one is already running (which takes
        it next, unless a claim takes it first)."""
        self._pending.append(outcome)
        if len(self._pending) + self._in_flight >= self._limit:  # len(self), inline: once per job
            self._room.clear()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="jobqueue outcomes")

    def waiting(self) -> bool:
        """Whether outcomes wait for a call (the flush in flight carries others)."""
        return bool(self._pending)

    def take(self) -> list[dict[str, Any]]:
        """The waiting outcomes, for a claim to record; they count as in flight until
        :meth:`settle`."""
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        self._in_flight += len(batch)
        return batch

    def settle(self, batch: list[dict[str, Any]], *, recorded: bool) -> None:
        """The claim that took ``batch`` ended: recorded, or not (then they wait again, and
        a flush records them)."""
        self._in_flight -= len(batch)
        if not recorded:
            self._pending[:0] = batch
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush(), name="jobqueue outcomes")
        if len(self) < self._limit:
            self._room.set()

    def room(self) -> bool:
        """Whether fewer than ``limit`` outcomes are uncommitted (claims may go on)."""
        return self._room.is_set()

    async def has_room(self) -> None:
        """Wait until fewer than ``limit`` outcomes are uncommitted (back-pressure on claims)."""
        await self._room.wait()

    async def drain(self) -> None:
        """Wait until every outcome added so far has been recorded (or given up on)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self._in_flight += len(batch)
            try:
                await self._record(batch)
            except Exception:
                # record() already retried through outages. The attempts stay running, and
                # the rescuer closes them after their timeout: the jobs run again.
                logger.exception(
                    "%s attempt outcomes could not be recorded; the rescuer will close them",
                    len(batch),
                )
            finally:
                self._in_flight -= len(batch)
                if len(self) < self._limit:
                    self._room.set()
