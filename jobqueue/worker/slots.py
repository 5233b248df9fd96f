"""A worker's job slots: how many are free, and a cheap wait for enough of them.

The claim loop takes slots for a claim and gives back those the claim did not fill; each
started job gives its slot back when it ends. Only the claim loop waits, so one future is
all the waiting needs: no semaphore waiter per slot and no task per wait.
"""

from __future__ import annotations

import asyncio


class Slots:
    """``total`` job slots, of which ``used`` are running a job or reserved for a claim."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._waiter: asyncio.Future[None] | None = None
        self._want = 0

    @property
    def free(self) -> int:
        return self.total - self.used

    def take(self, count: int) -> None:
        self.used += count

    def give(self, count: int = 1) -> None:
        self.used -= count
        if self._waiter is not None and self.free >= self._want:
            self.wake()

    def wake(self) -> None:
        """End the current wait now (a stop request, a freed slot, a timer)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait_for(self, want: int, timeout: float | None = None) -> None:
        """Return once ``want`` slots are free, ``timeout`` seconds have passed, or
        :meth:`wake` was called, whichever comes first."""
        if self.free >= want:
            return
        loop = asyncio.get_running_loop()
        self._want = want
        self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, self.wake)
        try:
            await self._waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None
