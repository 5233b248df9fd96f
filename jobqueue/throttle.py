"""Failed authentications, throttled per client address.

A token is 244 random bits, so guessing one is hopeless; the throttle keeps guessing from
costing the database a hash lookup per attempt, and slows down a client that replays stolen,
revoked tokens. Each web process counts for itself: ``limit`` failures from one address within
``window`` seconds, and that address gets ``429`` (``Throttled``, with ``Retry-After``) without
a query until the oldest failure is older than the window. Successful requests are never
counted nor refused. Behind a proxy every client shares the proxy's address: set the limit
with that in mind (``JOBQUEUE_AUTH_FAILURES``, 0 turns the throttle off).
"""

from __future__ import annotations

import collections
import math
import time

from jobqueue import errors

# Addresses remembered at most; the least recently failing one is forgotten first.
MAX_ADDRESSES = 10_000


class FailureThrottle:
    """Counts failed authentications per address in a sliding window."""

    def __init__(self, limit: int, window: float = 60.0):
        self.limit = limit
        self.window = window
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def _recent(self, address: str, now: float) -> collections.deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures

    def check(self, address: str) -> None:
        """Throttled when ``address`` has failed ``limit`` times within the window."""
        if self.limit <= 0:
            return
        now = time.monotonic()
        failures = self._recent(address, now)
        if failures is not None and len(failures) >= self.limit:
            wait = max(1, math.ceil(failures[0] + self.window - now))
            raise errors.Throttled(
                f"too many failed authentications from this address; retry in {wait} s",
                detail={"retry_after": wait},
            )

    def failed(self, address: str) -> None:
        """Record one failed authentication from ``address``."""
        if self.limit <= 0:
            return
        now = time.monotonic()
        failures = self._recent(address, now) or collections.deque(maxlen=self.limit)
        failures.append(now)
        self._failures[address] = failures
        self._failures.move_to_end(address)
        while len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)
