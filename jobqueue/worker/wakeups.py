"""Notifications wake the worker; what it then does is read from the database.

PostgreSQL checks no privilege on LISTEN or NOTIFY: any login that can connect may send any
payload on procrastinate's channels. procrastinate's worker believes them: an
``abort_job_requested`` payload naming a job makes it cancel that job's task, and a payload
that is not JSON, or has no ``type``, fails its listener, which stops the worker.

:class:`WakeOnNotify` makes every notification, whatever its channel or payload, a wake-up and
nothing more: the worker claims (the claim reads what is due) and, if it runs jobs, asks the
database which of them are to be aborted (procrastinate's ``abort_requested`` flag, which only
``cancel_job``, ``cancel_jobs`` and the worker role can set). Aborts are also polled every
``abort_job_polling_interval``, as before. A flood of notifications costs at most one abort
query per ``ABORT_CHECK_GAP`` and one claim at a time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from procrastinate import manager, utils, worker

logger = logging.getLogger("jobqueue.worker")

# The least time between two abort checks woken by notifications.
ABORT_CHECK_GAP = 0.05


class WakeOnNotify(worker.Worker):
    """A procrastinate worker that reads no notification's payload."""

    _abort_wake: asyncio.Event | None = None

    def _start_side_tasks(self) -> list[asyncio.Task[Any]]:
        # procrastinate's listener parses payloads; ours is started instead.
        listen, self.listen_notify = self.listen_notify, False
        try:
            tasks: list[asyncio.Task[Any]] = super()._start_side_tasks()
        finally:
            self.listen_notify = listen
        if listen:
            tasks.append(asyncio.create_task(self._listen(), name="listener"))
        return tasks

    async def _listen(self) -> None:
        await self.app.connector.listen_notify(
            on_notification=self._on_wake,
            channels=manager.get_channel_for_queues(queues=self.queues),
        )

    async def _on_wake(self, *, channel: str, payload: str) -> None:
        """Any notification: claim what is due, and check for aborts if jobs are running."""
        self._new_job_event.set()
        if self._running_jobs:
            self._abort_event().set()

    async def _handle_notification(self, *, channel: str, notification: Any) -> None:
        # procrastinate's own entry point, should anything still call it: the same wake-up.
        await self._on_wake(channel=channel, payload="")

    def _abort_event(self) -> asyncio.Event:
        if self._abort_wake is None:
            self._abort_wake = asyncio.Event()
        return self._abort_wake

    async def _poll_jobs_to_abort(self) -> None:
        wake = self._abort_event()
        while True:
            await utils.wait_any(wake.wait(), asyncio.sleep(self.abort_job_polling_interval))
            wake.clear()
            if not self._running_jobs:
                continue
            try:
                job_ids = await self.app.job_manager.list_jobs_to_abort_async()
                self._handle_abort_jobs_requested(job_ids)
            except Exception:
                logger.exception("checking for jobs to abort failed")
            await asyncio.sleep(ABORT_CHECK_GAP)
