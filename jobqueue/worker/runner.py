"""Start a worker and keep it up: reconnect with backoff, stop gracefully on SIGTERM.

procrastinate's worker ends when the database goes away (a failed fetch, heartbeat or
listener). :func:`run_worker_async` opens the app on a fresh pool and starts it again, with
backoff, until it is asked to stop. SIGTERM or SIGINT lets running jobs finish for the grace
period; attempts still running then are recorded failed and retry elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta

import psycopg_pool
from procrastinate import exceptions

from jobqueue import db
from jobqueue.tasks.maintenance import MAINTENANCE_QUEUE, SETTINGS_KEY, MaintenanceSettings
from jobqueue.worker import execution
from jobqueue.worker.base import APPLICATION_NAME, JobqueueWorker
from jobqueue.worker.connector import JobqueueConnector

logger = logging.getLogger("jobqueue.worker")

# Seconds a query waits for a pool connection; an outage surfaces instead of hanging.
POOL_TIMEOUT = 10.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


def _queues(queues: Sequence[str] | None) -> list[str] | None:
    """The queues to consume; the maintenance queue is always among them."""
    if not queues:
        return None  # every queue, maintenance included
    names = [q for q in queues if q]
    if MAINTENANCE_QUEUE not in names:
        names.append(MAINTENANCE_QUEUE)
    return names


async def run_worker_async(
    dsn: str | None = None,
    queues: Sequence[str] | None = None,
    concurrency: int = 10,
    *,
    name: str | None = None,
    shutdown_grace: float = 30.0,
    stale_after: float = 10.0,
    retention: timedelta = timedelta(days=7),
    heartbeat_interval: float = 1.0,
    install_signal_handlers: bool = True,
    stop: asyncio.Event | None = None,
    execution_mode: str = execution.INLINE,
    kill_grace: float = execution.DEFAULT_KILL_GRACE,
) -> None:
    """Run a worker until SIGTERM/SIGINT (or ``stop`` is set), restarting it after database
    errors. ``queues`` None means every queue. ``execution_mode`` is where the handlers of
    job types that name no mode run (``"inline"`` or ``"process"``), and ``kill_grace`` the
    seconds a handler in a child process gets between SIGTERM and SIGKILL."""
    from jobqueue.worker import app

    dsn = dsn or db.dsn_from_env()
    if not dsn:
        raise ValueError("no database: pass dsn or set JOBQUEUE_DSN")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    stop = stop or asyncio.Event()
    settings = MaintenanceSettings(stale_after=timedelta(seconds=stale_after), retention=retention)
    modes = execution.ExecutionSettings(default=execution_mode, kill_grace=kill_grace)
    current: list[JobqueueWorker] = []

    def stop_current(*_: object) -> None:
        for worker in current:
            worker.stop()

    def request_stop() -> None:
        if stop.is_set():
            logger.warning("second stop request: abandoning running jobs now")
            for worker in current:
                worker.abort_running_jobs()
            return
        logger.info("stop requested; running jobs get %ss to finish", shutdown_grace)
        stop.set()

    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, request_stop)
    stop_watch = asyncio.ensure_future(stop.wait())
    stop_watch.add_done_callback(stop_current)

    backoff = BACKOFF_FIRST
    try:
        while not stop.is_set():
            # A fresh connector (and pool) per run: procrastinate's connector keeps a closed
            # pool around otherwise.
            connector = JobqueueConnector(
                conninfo=dsn,
                kwargs={**db.connection_kwargs(), "application_name": APPLICATION_NAME},
                min_size=2,
                max_size=concurrency + 4,
                timeout=POOL_TIMEOUT,
            )
            try:
                with app.replace_connector(connector):
                    async with app.open_async():
                        app.perform_import_paths()  # type: ignore[no-untyped-call]
                        worker = app._worker(
                            queues=_queues(queues),
                            concurrency=concurrency,
                            name=name or "jobqueue",
                            shutdown_graceful_timeout=shutdown_grace,
                            update_heartbeat_interval=heartbeat_interval,
                            stalled_worker_timeout=max(60.0, 6 * stale_after),
                            install_signal_handlers=False,
                            additional_context={
                                SETTINGS_KEY: settings,
                                execution.SETTINGS_KEY: modes,
                            },
                        )
                        assert isinstance(worker, JobqueueWorker)
                        current[:] = [worker]
                        if stop.is_set():
                            break
                        await worker.run()
                        backoff = BACKOFF_FIRST
                if not stop.is_set():
                    # A side task (heartbeat, listener) failed and the worker stopped itself.
                    logger.warning("worker stopped unexpectedly; restarting")
            except (exceptions.ConnectorException, psycopg_pool.PoolTimeout, OSError) as exc:
                if stop.is_set():
                    break
                reason = str(exc.__cause__ or exc).strip()
                logger.warning("database unavailable (%s); restarting in %.1fs", reason, backoff)
            except Exception:
                if stop.is_set():
                    raise
                logger.exception("worker failed; restarting in %.1fs", backoff)
            finally:
                current.clear()
                try:
                    await connector.close_async()
                except Exception:
                    logger.debug("closing the pool failed", exc_info=True)
            if stop.is_set():
                break
            await asyncio.wait({stop_watch}, timeout=backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
    finally:
        stop_watch.cancel()
        if install_signal_handlers:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)


def run_worker(
    dsn: str | None = None,
    queues: Sequence[str] | None = None,
    concurrency: int = 10,
    **options: object,
) -> None:
    """Blocking form of :func:`run_worker_async` (what ``jobqueue worker`` calls)."""
    asyncio.run(run_worker_async(dsn, queues, concurrency, **options))  # type: ignore[arg-type]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobqueue.worker", description="Run a jobqueue worker."
    )
    parser.add_argument("--dsn", help="database (default: $JOBQUEUE_DSN or $DATABASE_URL)")
    parser.add_argument(
        "--queues", "-q", default="", help="comma-separated queues (default: every queue)"
    )
    parser.add_argument("--concurrency", "-c", type=int, default=10, help="jobs at once")
    parser.add_argument("--name", help="worker name, shown in logs")
    parser.add_argument(
        "--shutdown-grace", type=float, default=30.0, help="seconds jobs get to finish on stop"
    )
    parser.add_argument(
        "--stale-after",
        type=float,
        default=10.0,
        help="seconds without heartbeat before a worker's attempts are rescued",
    )
    parser.add_argument(
        "--retention",
        type=float,
        default=7 * 86400.0,
        help="seconds finished jobs are kept before cleanup",
    )
    parser.add_argument(
        "--execution",
        choices=execution.MODES,
        default=execution.INLINE,
        help="where handlers of job types that name no mode run: inline (a thread, or the"
        " event loop) or process (a child process, killed at the deadline or on cancel)",
    )
    parser.add_argument(
        "--kill-grace",
        type=float,
        default=execution.DEFAULT_KILL_GRACE,
        help="seconds a handler in a child process gets between SIGTERM and SIGKILL",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m jobqueue.worker``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if logging.getLogger().getEffectiveLevel() >= logging.INFO:
        # procrastinate logs each job's start and end with its args, params included; jobqueue
        # logs outcomes itself, without params.
        logging.getLogger("procrastinate").setLevel(logging.WARNING)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] or None
    try:
        run_worker(
            args.dsn,
            queues,
            args.concurrency,
            name=args.name,
            shutdown_grace=args.shutdown_grace,
            stale_after=args.stale_after,
            retention=timedelta(seconds=args.retention),
            execution_mode=args.execution,
            kill_grace=args.kill_grace,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
