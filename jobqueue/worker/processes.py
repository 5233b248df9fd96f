"""Process mode, the worker's side: handlers in child processes that can be killed.

A handler in a thread or on the event loop cannot be stopped from outside. In process mode
each handler runs in a child process, one job at a time per child, and the worker can end
it: at the deadline or on cancel it sets the handler's cancel flag and sends SIGTERM (which
raises in the handler, so its ``finally`` blocks run), then SIGKILL after the kill grace.
The attempt's slot is free only once the process is gone; a killed child is not reused, and
the next job starts a fresh one. Idle children are reused, and end after :data:`IDLE_EXIT`.

Children come from :mod:`multiprocessing`'s fork server where the platform has one (a clean
process that has imported jobqueue once, forked for each child in milliseconds), else from
``spawn``. Each child talks to the worker over a :func:`multiprocessing.Pipe`, read on the
worker's event loop: the job goes down; progress, checkpoints, log records and the ending
come up (:mod:`jobqueue.worker.child` is the other end).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import multiprocessing
import signal
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from jobqueue import errors
from jobqueue.context import JobContext
from jobqueue.worker import child

logger = logging.getLogger("jobqueue.worker")

# Seconds an idle child waits for another job before the worker ends it.
IDLE_EXIT = 60.0
# Seconds to wait for a process that got SIGKILL to be reaped before giving up on it.
REAP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Ending:
    """How a handler in a child ended: ``returned`` (``value``), ``raised`` (``error``,
    ``traceback``, ``retryable``), ``unencodable`` (its result could not be sent) or
    ``exited`` (the process ended without a word: ``error`` says how)."""

    kind: str
    value: Any = None
    error: str | None = None
    traceback: str | None = None
    retryable: bool = True


def start_method() -> str:
    """The fork server where the platform has one: a child costs a fork of a small clean
    process instead of a new interpreter."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _exit_description(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"the handler's process was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"the handler's process was killed by signal {-code}"
    return f"the handler's process exited with code {code}"


def _portable(exc: BaseException) -> BaseException:
    """An exception the child can unpickle: the engine's errors and Python's own travel as
    they are, anything else as a RuntimeError with the same words."""
    if isinstance(exc, errors.JobqueueError) or type(exc).__module__ == "builtins":
        return exc
    return RuntimeError(f"{type(exc).__name__}: {exc}")


class Child:
    """One child process, its pipe, and the job it runs."""

    def __init__(self, process: BaseProcess, conn: Connection, loop: asyncio.AbstractEventLoop):
        self.process = process
        self.conn = conn
        self.loop = loop
        self.gone: asyncio.Future[None] = loop.create_future()
        self.exitcode: int | None = None
        self.reusable = True
        self.idle_timer: asyncio.TimerHandle | None = None
        self._ctx: JobContext | None = None
        self._ended: asyncio.Future[Ending] | None = None
        self._saving: set[asyncio.Task[None]] = set()
        loop.add_reader(conn.fileno(), self._readable)
        loop.add_reader(process.sentinel, self._exited)

    # ---------------------------------------------------------------- one job

    def submit(
        self, ctx: JobContext, handler: str, params: dict[str, Any], checkpoint: Any
    ) -> asyncio.Future[Ending]:
        """Start a job; the future ends with the handler (or the process)."""
        self._ctx = ctx
        self._ended = ended = self.loop.create_future()
        ctx._on_cancel = self._send_cancel
        self.send(
            (
                "run",
                ctx.job_id,
                ctx.attempt,
                ctx.job_type,
                ctx.organization,
                handler,
                params,
                checkpoint,
                ctx.timeout,
            )
        )
        return ended

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            self.conn.send(message)
        except (OSError, ValueError):
            pass  # the child is gone; its sentinel says so

    def _send_cancel(self) -> None:
        if self._ctx is not None:
            self.send(("cancel", self._ctx.job_id))

    def _finish(self, ending: Ending) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(ending)
        if self._ctx is not None:
            self._ctx._on_cancel = None
        self._ctx = self._ended = None

    # ------------------------------------------------------------ the pipe

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self._dispatch(self.conn.recv())
        except (EOFError, OSError):
            # The child closed its end: it is exiting. Its exit code comes with the sentinel.
            self.loop.remove_reader(self.conn.fileno())

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind, ctx = message[0], self._ctx
        if kind == "log":
            record = logging.makeLogRecord(message[1])
            target = logging.getLogger(record.name)
            if target.isEnabledFor(record.levelno):
                target.handle(record)
        elif ctx is None:
            return  # a late word from a job already given up on
        elif kind == "progress":
            ctx.report_progress(message[1], message[2])
        elif kind == "checkpoint":
            task = self.loop.create_task(self._save(ctx, message[1], message[2]))
            self._saving.add(task)
            task.add_done_callback(self._saving.discard)
        elif kind == "done" and message[1] == ctx.job_id:
            kind, *rest = message[2]
            if kind == "returned":
                self._finish(Ending("returned", value=rest[0]))
            elif kind == "raised":
                error, tb, retryable = rest
                self._finish(Ending("raised", error=error, traceback=tb, retryable=retryable))
            else:
                self._finish(Ending("unencodable", error=rest[0], retryable=False))

    async def _save(self, ctx: JobContext, token: int, state: Any) -> None:
        answer: BaseException | None = None
        try:
            await ctx.checkpoint_async(state)
        except Exception as exc:
            answer = _portable(exc)
        self.send(("answer", token, answer))

    def _exited(self) -> None:
        self.loop.remove_reader(self.process.sentinel)
        with contextlib.suppress(OSError, ValueError):
            self.loop.remove_reader(self.conn.fileno())
        self.exitcode = self.process.exitcode
        self.reusable = False
        self._finish(Ending("exited", error=_exit_description(self.exitcode)))
        self.conn.close()
        if not self.gone.done():
            self.gone.set_result(None)

    # ----------------------------------------------------------------- ending

    async def kill(self, grace: float) -> None:
        """SIGTERM now, SIGKILL if the process is still there after ``grace`` seconds;
        returns once it is gone."""
        self.reusable = False
        if self.gone.done():
            return
        with contextlib.suppress(OSError, ValueError):
            self.process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.gone), grace)
            return
        logger.warning(
            "the handler's process %s ignored SIGTERM for %ss; killing it", self.process.pid, grace
        )
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()
        try:
            await asyncio.wait_for(asyncio.shield(self.gone), REAP_TIMEOUT)
        except TimeoutError:
            logger.error("the handler's process %s did not end after SIGKILL", self.process.pid)

    def close(self) -> None:
        """Let an idle child go: it exits when its pipe closes."""
        self.reusable = False
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        with contextlib.suppress(OSError, ValueError):
            self.loop.remove_reader(self.conn.fileno())
        self.conn.close()


class ProcessPool:
    """A worker's child processes: started on demand, reused while idle, killed to stop a
    handler. At most one job per child; the worker's slots bound how many run at once."""

    def __init__(self, *, kill_grace: float, idle_exit: float = IDLE_EXIT) -> None:
        self.kill_grace = kill_grace
        self._idle_exit = idle_exit
        self._idle: list[Child] = []
        self._children: set[Child] = set()
        # ForkServerContext or SpawnContext, which typeshed types apart.
        self._context: Any = None
        self._starting: asyncio.Lock | None = None
        _pools.add(self)

    def __len__(self) -> int:
        return len(self._children)

    async def acquire(self) -> Child:
        """An idle child, or a new one."""
        while self._idle:
            idle = self._idle.pop()
            if idle.idle_timer is not None:
                idle.idle_timer.cancel()
                idle.idle_timer = None
            if idle.reusable and not idle.gone.done():
                return idle
        return await self._start()

    async def _start(self) -> Child:
        loop = asyncio.get_running_loop()
        context = self._context
        if context is None:
            if self._starting is None:
                self._starting = asyncio.Lock()
            async with self._starting:
                context = self._context
                if context is None:
                    context = multiprocessing.get_context(start_method())
                    if context.get_start_method() == "forkserver":
                        # The fork server imports jobqueue once; each child is a fork of it.
                        # It starts in a thread: that takes a second, the loop cannot wait.
                        context.set_forkserver_preload(["jobqueue.worker.child"])
                        from multiprocessing import forkserver

                        await loop.run_in_executor(None, forkserver.ensure_running)
                    self._context = context
        ours, theirs = context.Pipe()
        process = context.Process(
            target=child.serve,
            args=(theirs, logging.getLogger().getEffectiveLevel()),
            name="jobqueue-handler",
        )
        try:
            if context.get_start_method() == "forkserver":
                process.start()  # a request to the running fork server: milliseconds
            else:
                await loop.run_in_executor(None, process.start)
        finally:
            theirs.close()
        started = Child(process, ours, loop)
        self._children.add(started)
        started.gone.add_done_callback(lambda _: self._forget(started))
        return started

    def _forget(self, gone: Child) -> None:
        self._children.discard(gone)
        with contextlib.suppress(ValueError):
            self._idle.remove(gone)
        with contextlib.suppress(ValueError, AssertionError):
            gone.process.join(0)
            gone.process.close()

    def release(self, done: Child) -> None:
        """A child whose job ended: kept for the next one, or let go."""
        if not done.reusable or done.gone.done():
            return
        self._idle.append(done)
        done.idle_timer = done.loop.call_later(self._idle_exit, self._expire, done)

    def _expire(self, idle: Child) -> None:
        if idle in self._idle:
            self._idle.remove(idle)
            idle.close()

    async def close(self) -> None:
        """End every child: idle ones by closing their pipe, busy ones by killing them."""
        children = list(self._children)
        for each in children:
            if each in self._idle:
                each.close()
        await asyncio.gather(*(each.kill(self.kill_grace) for each in children))
        _pools.discard(self)

    def close_now(self) -> None:
        """At interpreter exit, with no loop to wait on: SIGKILL whatever is left, so that
        multiprocessing's own exit handler, which waits for every child, does not hang."""
        for each in list(self._children):
            with contextlib.suppress(OSError, ValueError):
                each.process.kill()
            with contextlib.suppress(OSError, ValueError, AssertionError):
                each.process.join(REAP_TIMEOUT)


_pools: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


@atexit.register
def _close_pools() -> None:
    # Registered after multiprocessing's exit handler, so it runs before it.
    for pool in list(_pools):
        pool.close_now()
