"""Where an SSE client stands in the event feed: the resume cursor sent as each message's id.

Event ids are taken when a row is written and seen when its transaction commits, so a lower id
can commit after a higher one went out. "Every id above the last one sent" is then not enough
to resume from: the cursor also names the transactions that were still in progress when the
message went out, each with an id below which the client has all of its events, and a resume
reads their events at or below the cursor's id as well.

Written out, a cursor is ``LAST`` followed by ``.LOW:XACT:XACT...`` groups: the client has
every event up to ``LAST`` except those the named transactions write above their group's
``LOW``. A bare ``.LOW`` (more than :data:`MAX_TRANSACTIONS` were in progress) stands for
every transaction: a resume from it sends again every event above ``LOW`` that it may see, so
it may repeat events, never miss one. A plain event id, as clients that keep ids from the
data send, is a cursor with nothing pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from jobqueue import errors
from jobqueue.api import BIGINT_MAX, decimal

# The most transactions a cursor names: ~10 characters each, in a header every reconnect
# sends.
MAX_TRANSACTIONS = 64
# Transactions in progress by id, each with an id below all of its events not yet sent.
Pending = Mapping[int, int]


@dataclass(frozen=True)
class Cursor:
    """The client has every event up to ``last`` except those that ``pending`` transactions
    write above their ids, and, if ``every_above`` is set, any event above it."""

    last: int
    pending: Pending = field(default_factory=dict)
    every_above: int | None = None

    def __str__(self) -> str:
        if self.every_above is not None:
            return f"{self.last}.{self.every_above}"
        groups: dict[int, list[int]] = {}
        for xact, low in sorted(self.pending.items()):
            groups.setdefault(low, []).append(xact)
        return ".".join(
            [str(self.last), *(":".join(map(str, [low, *groups[low]])) for low in sorted(groups))]
        )

    @property
    def low(self) -> int | None:
        """An id at or below which the client has every event (None: up to ``last``)."""
        if self.every_above is not None:
            return self.every_above
        return min(self.pending.values(), default=None)

    def has(self, event_id: int, xact: int | None) -> bool:
        """Whether a client at this cursor has the event ``event_id`` that ``xact`` wrote."""
        if event_id > self.last:
            return False
        if self.every_above is not None:
            return event_id <= self.every_above
        low = self.pending.get(xact) if xact is not None else None
        return low is None or event_id <= low

    @classmethod
    def at(cls, last: int, pending: Pending) -> Cursor:
        """The cursor after an event ``last`` was sent, while ``pending`` were in progress
        (the ones whose ids lie above ``last`` are not named: "after last" covers them)."""
        below = {xact: low for xact, low in pending.items() if low < last}
        if len(below) > MAX_TRANSACTIONS:
            return cls(last, every_above=min(below.values()))
        return cls(last, below)

    @classmethod
    def parse(cls, raw: str, name: str) -> Cursor:
        """A cursor as this feed wrote it, or a plain event id; InvalidArgument otherwise."""
        segments = [[decimal(n) for n in segment.split(":")] for segment in raw.split(".")]
        numbers = [n for segment in segments for n in segment]
        if any(n is None or n > BIGINT_MAX for n in numbers) or len(segments[0]) != 1:
            raise _malformed(name)
        last = segments[0][0]
        assert last is not None
        groups = segments[1:]
        if len(groups) == 1 and len(groups[0]) == 1:
            every_above = groups[0][0]
            assert every_above is not None
            if every_above >= last:
                raise _malformed(name)
            return cls(last, every_above=every_above)
        pending: dict[int, int] = {}
        for low, *xacts in groups:
            assert low is not None
            if not xacts or low >= last or 0 in xacts:
                raise _malformed(name)
            pending.update((xact, low) for xact in xacts if xact is not None)
        if len(pending) > MAX_TRANSACTIONS:
            raise _malformed(name)
        return cls(last, pending)


def _malformed(name: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(
        f"'{name}' must be an event id (an integer from 0 to {BIGINT_MAX}) or a cursor this"
        " feed sent"
    )
