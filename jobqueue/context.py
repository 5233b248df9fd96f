"""What a handler sees of its job while it runs: ids, params, progress, cancel, checkpoints.

A handler is ``def handler(ctx: JobContext, **params)`` or ``async def``. The context is
safe to use from the handler's own thread (sync handlers) and from the event loop (async
handlers): every database write is made on the worker's loop, so a sync handler never holds
a connection and an async handler never blocks the loop. A handler run in a child process
(process mode) gets a subclass that speaks to its worker over a pipe
(:mod:`jobqueue.worker.child`), with the same API.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from jobqueue import errors

logger = logging.getLogger("jobqueue.job")

# A tight loop may call report_progress thousands of times a second; one write per interval
# is plenty for anyone watching, and the last value is always written.
PROGRESS_INTERVAL = 0.5


class NonRetryableError(Exception):
    """Raise from a handler to fail the job for good: it goes to ``dead`` without retries."""


def check_percent(percent: object) -> None:
    """Raise ValueError unless ``percent`` is an integer from 0 to 100."""
    if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
        raise ValueError(f"percent must be an integer between 0 and 100, got {percent!r}")


class JobContext:
    """The running attempt of one job, as its handler sees it."""

    def __init__(
        self,
        *,
        job_id: int,
        attempt: int,
        job_type: str,
        organization: str,
        params: dict[str, Any],
        checkpoint: Any,
        timeout: float,
        loop: asyncio.AbstractEventLoop,
        execute: Callable[..., Coroutine[Any, Any, Any]],
    ):
        self.job_id = job_id
        self.attempt = attempt
        self.job_type = job_type
        self.organization = organization
        self.params = params
        self.timeout = timeout
        self._checkpoint = checkpoint
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._execute = execute

    # Most jobs never log, report progress or get canceled: what those need is made on first
    # use, or starts from these class-level defaults, rather than for every job.
    _canceled = False
    # Called once when the flag turns: a handler in a child process learns of it this way.
    _on_cancel: Callable[[], None] | None = None
    _progress_pending: tuple[int, str | None] | None = None
    _progress_last_write = 0.0
    _progress_flush: asyncio.Handle | None = None
    _progress_writing: asyncio.Task[None] | None = None

    @functools.cached_property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger (``jobqueue.job``) whose records carry ``job_id``, ``attempt`` and
        ``job_type``."""
        return logging.LoggerAdapter(
            logger, {"job_id": self.job_id, "attempt": self.attempt, "job_type": self.job_type}
        )

    # ------------------------------------------------------------------ cancel

    def is_canceled(self) -> bool:
        """True once the job was canceled, timed out or its worker is stopping: stop soon."""
        return self._canceled

    def _cancel(self) -> None:
        # A plain flag is enough: it only ever goes from False to True, nothing waits on it,
        # and an attribute write is seen at once by the handler's thread.
        if not self._canceled:
            self._canceled = True
            if self._on_cancel is not None:
                self._on_cancel()

    # ---------------------------------------------------------------- progress

    def report_progress(self, percent: int, message: str | None = None) -> None:
        """Record progress (0-100). Cheap to call often: writes are throttled to one per
        ``PROGRESS_INTERVAL`` and the last value reported is always written."""
        check_percent(percent)
        if threading.get_ident() == self._loop_thread:
            self._queue_progress(percent, message)
        else:
            self._loop.call_soon_threadsafe(self._queue_progress, percent, message)

    def _queue_progress(self, percent: int, message: str | None) -> None:
        self._progress_pending = (percent, message)
        if self._progress_flush is not None or self._progress_writing is not None:
            return
        wait = self._progress_last_write + PROGRESS_INTERVAL - time.monotonic()
        if wait <= 0:
            self._start_progress_write()
        else:
            self._progress_flush = self._loop.call_later(wait, self._start_progress_write)

    def _start_progress_write(self) -> None:
        self._progress_flush = None
        if self._progress_pending is None or self._progress_writing is not None:
            return
        self._progress_writing = self._loop.create_task(self._write_progress())

    async def _write_progress(self) -> None:
        try:
            while self._progress_pending is not None:
                percent, message = self._progress_pending
                self._progress_pending = None
                self._progress_last_write = time.monotonic()
                try:
                    cancel_requested = await self._execute(
                        "report_progress", self.job_id, self.attempt, percent, message
                    )
                except errors.StaleAttempt:
                    # The attempt was closed under us (rescued, canceled): stop the handler.
                    self._cancel()
                    return
                except Exception:
                    self.logger.warning("progress report failed", exc_info=True)
                    return
                if cancel_requested:
                    self._cancel()
                if self._progress_pending is not None:
                    await asyncio.sleep(PROGRESS_INTERVAL)
        finally:
            self._progress_writing = None

    def _progress_unwritten(self) -> bool:
        """Whether progress is reported but not yet written; the bridge skips
        :meth:`_flush_progress` otherwise."""
        return (
            self._progress_pending is not None
            or self._progress_flush is not None
            or self._progress_writing is not None
        )

    async def _flush_progress(self) -> None:
        """Write the last reported value now; called before the outcome is recorded."""
        if self._progress_flush is not None:
            self._progress_flush.cancel()
            self._progress_flush = None
        if self._progress_writing is not None:
            await asyncio.wait({self._progress_writing})
        if self._progress_pending is not None:
            self._progress_writing = self._loop.create_task(self._write_progress())
            await asyncio.wait({self._progress_writing})

    # ------------------------------------------------------------- checkpoints

    def load_checkpoint(self) -> Any:
        """The state saved by the last ``checkpoint`` of any attempt of this job, or None."""
        return self._checkpoint

    def checkpoint(self, state: Any) -> None:
        """Save JSON state that a later attempt of this job gets from ``load_checkpoint``.

        Blocks until saved. From an async handler use ``await ctx.checkpoint_async(state)``.
        """
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("checkpoint() blocks; async handlers use checkpoint_async()")
        asyncio.run_coroutine_threadsafe(self.checkpoint_async(state), self._loop).result()

    async def checkpoint_async(self, state: Any) -> None:
        """Save JSON state that a later attempt of this job gets from ``load_checkpoint``."""
        await self._execute("save_checkpoint", self.job_id, self.attempt, state)
        self._checkpoint = state

    def __repr__(self) -> str:
        return (
            f"JobContext(job_id={self.job_id}, attempt={self.attempt}, "
            f"job_type={self.job_type!r}, organization={self.organization!r})"
        )
