"""The child side of process mode: a process that runs handlers for its worker, one at a time.

The worker starts it (:mod:`jobqueue.worker.processes`) with one end of a pipe and sends it
jobs. Everything the handler's context does goes through that pipe to the worker, which
owns the database connections: progress (throttled there as in the other modes),
checkpoints (answered once saved), log records (emitted by the worker's own logging
configuration). The worker sends back cancel requests, which set ``ctx.is_canceled()``.

To stop a handler, the worker sends SIGTERM: it raises :class:`Stopped` in the handler's
thread (``finally`` blocks run) and the process exits; a handler that does not stop within
the grace gets SIGKILL. A child whose worker is gone (its pipe closed) exits at once, so a
killed worker leaves no handler running.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import os
import queue
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

from jobqueue.context import JobContext, NonRetryableError, check_percent
from jobqueue.handlers import HandlerError, load_handler


class Stopped(BaseException):
    """The worker stopped this handler (SIGTERM): its deadline passed, or it was canceled."""


class Link:
    """This process's end of the pipe; any thread may send."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self._tokens = itertools.count()
        self._replies: dict[int, queue.SimpleQueue[Any]] = {}
        self.context: ChildContext | None = None

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            self.conn.send(message)

    def ask(self, message: tuple[Any, ...]) -> Any:
        """Send a request that the worker answers, and wait for its answer."""
        token = next(self._tokens)
        reply: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._replies[token] = reply
        try:
            self.send((*message[:1], token, *message[1:]))
            return reply.get()
        finally:
            del self._replies[token]

    def answered(self, token: int, answer: Any) -> None:
        reply = self._replies.get(token)
        if reply is not None:
            reply.put(answer)


class ChildContext(JobContext):
    """The :class:`JobContext` of a handler in a child process: the same API, spoken over
    the pipe to the worker."""

    def __init__(
        self,
        link: Link,
        *,
        job_id: int,
        attempt: int,
        job_type: str,
        organization: str,
        params: dict[str, Any],
        checkpoint: Any,
        timeout: float,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.job_type = job_type
        self.organization = organization
        self.params = params
        self.timeout = timeout
        self._checkpoint = checkpoint
        self._link = link

    def report_progress(self, percent: int, message: str | None = None) -> None:
        check_percent(percent)
        self._link.send(("progress", percent, message))

    def checkpoint(self, state: Any) -> None:
        error = self._link.ask(("checkpoint", state))
        if error is not None:
            raise error
        self._checkpoint = state

    async def checkpoint_async(self, state: Any) -> None:
        await asyncio.to_thread(self.checkpoint, state)


class Forward(logging.Handler):
    """Sends log records to the worker, which emits them through its own handlers."""

    def __init__(self, link: Link) -> None:
        super().__init__()
        self._link = link

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {
                key: value
                for key, value in record.__dict__.items()
                if isinstance(value, str | int | float | bool | type(None))
            }
            fields["msg"] = record.getMessage()
            fields["args"] = None
            if record.exc_info:
                fields["exc_text"] = logging.Formatter().formatException(record.exc_info)
            self._link.send(("log", fields))
        except Exception:
            self.handleError(record)


def _read(link: Link, jobs: queue.SimpleQueue[tuple[Any, ...]]) -> None:
    """The reader thread: jobs to the main thread, cancel requests and answers to whoever
    waits for them; the worker gone, the process ends at once."""
    try:
        while True:
            message = link.conn.recv()
            kind = message[0]
            if kind == "run":
                jobs.put(message)
            elif kind == "cancel":
                context = link.context
                if context is not None and context.job_id == message[1]:
                    context._cancel()
            elif kind == "answer":
                link.answered(message[1], message[2])
    except (EOFError, OSError):
        pass
    # The worker is gone (killed, or done with this process): so is its handler.
    os._exit(0)


def _stopper(link: Link) -> Any:
    def stop(signum: int, frame: Any) -> None:
        # The cancel request may still be in the pipe: the flag is set here too, so that
        # whatever runs on the way out (finally blocks) sees it.
        context = link.context
        if context is not None:
            context._cancel()
        raise Stopped

    return stop


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_runner: asyncio.Runner | None = None


def _run(link: Link, message: tuple[Any, ...]) -> tuple[Any, ...]:
    """Run one job; returns the ending to report."""
    _, job_id, attempt, job_type, organization, handler, params, checkpoint, timeout = message
    ctx = ChildContext(
        link,
        job_id=job_id,
        attempt=attempt,
        job_type=job_type,
        organization=organization,
        params=params,
        checkpoint=checkpoint,
        timeout=timeout,
    )
    link.context = ctx
    try:
        fn = load_handler(handler)
    except HandlerError as exc:
        ctx.logger.error("%s", exc)
        return ("raised", str(exc), None, True)
    try:
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - an instance with an async __call__
        ):
            # One loop for every async handler this process runs, as in the worker: what a
            # handler keeps across jobs (a connection pool) stays bound to a live loop.
            global _runner
            if _runner is None:
                _runner = asyncio.Runner()
            result = _runner.run(fn(ctx, **params))
        else:
            result = fn(ctx, **params)
    except Stopped:
        raise
    except BaseException as exc:
        ctx.logger.warning("failed: %s", _describe(exc))
        tb = "".join(traceback.format_exception(exc))
        return ("raised", _describe(exc), tb, not isinstance(exc, NonRetryableError))
    finally:
        link.context = None
    return ("returned", result)


def serve(conn: Connection, log_level: int) -> None:
    """The child process's main function: run the jobs the worker sends, until it goes."""
    # The worker decides when its handlers stop: a Ctrl-C in the terminal reaches the whole
    # process group, and must not fail the job running here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    link = Link(conn)
    signal.signal(signal.SIGTERM, _stopper(link))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(Forward(link))
    root.setLevel(log_level)
    jobs: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
    threading.Thread(target=_read, args=(link, jobs), name="jobqueue-link", daemon=True).start()
    try:
        while True:
            message = jobs.get()
            ending = _run(link, message)
            try:
                link.send(("done", message[1], ending))
            except Exception as exc:
                # The result could not be pickled: it could not have been stored either.
                link.send(
                    (
                        "done",
                        message[1],
                        ("unencodable", f"the handler's result cannot be sent: {exc}"),
                    )
                )
    except Stopped:
        pass
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)
