"""Threads for sync handlers: reused while idle, never shared by two running handlers.

A handler abandoned at its deadline (or on cancel) may keep running, and it must not hold up
the next job, so a fixed-size pool will not do. Starting a thread per job does, but costs the
event loop a thread start and a handshake with it per job. Here an idle thread takes the next
handler, a new one starts only when none is idle, and a thread idle for IDLE_EXIT ends.

Each handler runs in a fresh :class:`contextvars.Context`, as it would on a new thread, so
context variables never leak from one job to the next. Thread-locals do persist on a reused
thread, as in any thread pool.
"""

from __future__ import annotations

import contextvars
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable

logger = logging.getLogger("jobqueue.worker")

# Seconds an idle thread waits for another handler before it ends.
IDLE_EXIT = 60.0

Work = Callable[[], None]


class HandlerThreads:
    """Daemon threads that run one piece of work at a time each."""

    def __init__(self, idle_exit: float = IDLE_EXIT) -> None:
        self._idle_exit = idle_exit
        self._forget_threads()
        # A forked child has none of its parent's threads: counting them idle would queue
        # work that nothing runs.
        forget = weakref.WeakMethod(self._forget_threads)
        os.register_at_fork(after_in_child=lambda: (method := forget()) and method())

    def _forget_threads(self) -> None:
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting on the queue, less the work already put for them
        self._work: queue.SimpleQueue[tuple[Work, str]] = queue.SimpleQueue()

    def run(self, work: Work, name: str) -> None:
        """Run ``work`` on an idle thread, or on a new one when none is idle. ``work`` must
        not raise: nothing would see it."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._work.put((work, name))
                return
        threading.Thread(target=self._serve, args=(work, name), name=name, daemon=True).start()

    def _serve(self, work: Work, name: str) -> None:
        while True:
            threading.current_thread().name = name
            try:
                contextvars.Context().run(work)
            except BaseException:
                logger.exception("a sync handler's thread failed")
            with self._lock:
                self._idle += 1
            try:
                work, name = self._work.get(timeout=self._idle_exit)
            except queue.Empty:
                with self._lock:
                    # run() may have counted on this thread and put work meanwhile.
                    try:
                        work, name = self._work.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return


threads = HandlerThreads()
