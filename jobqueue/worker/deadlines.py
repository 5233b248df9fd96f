"""Attempt deadlines on the worker's event loop, sharing loop timers.

Every attempt needs a wake-up at its timeout, but a loop timer per attempt (a heap entry to
push, cancel and sift out again) costs more than a short job itself. Attempts claimed together
mostly share their timeout, so their deadlines fall within a millisecond of each other:
grouped into GRAIN-wide slices of the loop's clock, a batch of them needs one timer.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable

# How late a deadline may fire: nothing next to any timeout a job type can have.
GRAIN = 0.01

Wake = Callable[[], None]


class Deadlines:
    """Wake-ups at deadlines on one loop, by GRAIN-wide slice: one timer per slice in use."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slices: dict[int, tuple[asyncio.TimerHandle, set[Wake]]] = {}

    def add(self, deadline: float, wake: Wake) -> int:
        """Call ``wake()`` at ``deadline`` (loop time) or up to GRAIN later, unless it is
        discarded first; returns the key that :meth:`discard` takes."""
        key = math.ceil(deadline / GRAIN)
        entry = self._slices.get(key)
        if entry is None:
            entry = self._slices[key] = (self._loop.call_at(key * GRAIN, self._fire, key), set())
        entry[1].add(wake)
        return key

    def discard(self, key: int, wake: Wake) -> None:
        """Forget a wake-up that is no longer wanted; the last one of a slice ends its timer."""
        entry = self._slices.get(key)
        if entry is None:
            return
        timer, wakes = entry
        wakes.discard(wake)
        if not wakes:
            timer.cancel()
            del self._slices[key]

    def _fire(self, key: int) -> None:
        entry = self._slices.pop(key, None)
        if entry is not None:
            for wake in entry[1]:
                wake()


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = (
    weakref.WeakKeyDictionary()
)


def on(loop: asyncio.AbstractEventLoop) -> Deadlines:
    """The deadlines of ``loop``, made on first use."""
    deadlines = _by_loop.get(loop)
    if deadlines is None:
        deadlines = _by_loop[loop] = Deadlines(loop)
    return deadlines
