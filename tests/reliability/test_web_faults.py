"""The web process through PostgreSQL restarts and its own crash: nothing committed is lost,
and the SSE feed, resumed with ``Last-Event-ID``, misses no state change.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from jobqueue.client import Client
from tests.reliability.conftest import REPO, Workers, scalar, wait_for
from tests.reliability.handlers import ATTEMPT_LOG_TABLE
from tests.reliability.pgserver import Server, own_server
from tests.reliability.test_database_faults import check_history, wait_running
from tests.reliability.test_worker_faults import register_tracked
from tests.workers import child_env

__all__ = ["own_server"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebProcess:
    """``python -m jobqueue.web`` as a real process, restartable on the same port."""

    def __init__(self, dsn: str, logs: Path):
        self.dsn, self.logs = dsn, logs
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        log = open(self.logs / f"web-{len(self.procs)}.log", "wb")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "jobqueue.web", "--port", str(self.port)],
                env=child_env(self.dsn),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        )
        log.close()

        def healthy() -> bool:
            try:
                return httpx.get(f"{self.base}/healthz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=60, what="the web process to serve")

    def kill(self) -> None:
        self.procs[-1].send_signal(signal.SIGKILL)
        self.procs[-1].wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


class FeedReader(threading.Thread):
    """Follows /api/events, reconnecting with the last cursor it got, as a browser does."""

    def __init__(self, base: str, token: str):
        super().__init__(daemon=True)
        self.base, self.token = base, token
        self.ids: list[int] = []
        self.connections = 0
        self.stop = threading.Event()
        self._response: httpx.Response | None = None

    def reconnect(self) -> None:
        """Drop the current stream; the reader comes back with its Last-Event-ID."""
        response = self._response
        if response is not None:
            response.close()

    def run(self) -> None:
        last = "0"
        with httpx.Client(timeout=httpx.Timeout(10.0, read=40.0)) as http:
            while not self.stop.is_set():
                headers = {"Authorization": f"Bearer {self.token}", "Last-Event-ID": last}
                try:
                    with http.stream("GET", f"{self.base}/api/events", headers=headers) as resp:
                        if resp.status_code != 200:
                            time.sleep(0.3)
                            continue
                        self.connections += 1
                        self._response = resp
                        for line in resp.iter_lines():
                            if self.stop.is_set():
                                return
                            # Last-Event-ID from the id lines (a resume cursor), as a browser
                            # keeps it; the events' own ids from the data.
                            if line.startswith("id:"):
                                last = line[3:].strip()
                            elif line.startswith("data:"):
                                self.ids.append(int(json.loads(line[5:])["id"]))
                except (httpx.HTTPError, httpx.StreamError, OSError, ValueError):
                    time.sleep(0.3)


def submit_over_http(base: str, token: str, n: int) -> int | None:
    """The job id if the web process confirmed the submit, None if it refused or was down."""
    try:
        resp = httpx.post(
            f"{base}/api/jobs",
            json={"job_type": "tracked", "params": {"n": n}, "organization": "acme"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
    except httpx.HTTPError:
        return None
    if resp.status_code == 201:
        return int(resp.json()["id"])
    assert resp.status_code == 503, resp.text  # down, never a 500
    return None


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_web_and_feed_survive_restarts_and_a_web_crash(
    mode: str, own_server: Server, tmp_path: Path, full: bool
) -> None:
    jobs = 3000 if full else 300
    dsn = own_server.database("web_faults")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(ATTEMPT_LOG_TABLE)
    with Client(dsn) as client:
        register_tracked(client)
        client.create_organization("acme")
        client.create_user("root", admin=True)
        token = client.create_token("root", "feed").secret
    web = WebProcess(dsn, tmp_path)
    pool = Workers(dsn, tmp_path)
    reader = FeedReader(web.base, token)
    confirmed: list[int] = []
    try:
        web.start()
        reader.start()
        for _ in range(2):
            pool.start(concurrency=8, stale_after=3)
        n = 0
        for phase in ("restart", "crash", "restart"):
            for _ in range(jobs // 3):
                n += 1
                job_id = submit_over_http(web.base, token, n)
                if job_id is not None:
                    confirmed.append(job_id)
            wait_running(dsn)
            if phase == "restart":
                own_server.restart(mode, down_for=2.0)
            else:
                web.kill()
                web.start()
            # The web process serves again by itself: a submit is confirmed once more.
            n += 1
            confirmed.append(
                wait_for(
                    lambda n=n: submit_over_http(web.base, token, n),  # type: ignore[misc]
                    timeout=120,
                    interval=0.5,
                    what="the web process to accept a submit again",
                )
            )
            # Resume by Last-Event-ID after each fault, as a browser's EventSource does.
            reader.reconnect()

        def all_completed() -> bool:
            with psycopg.connect(dsn) as conn:
                left = scalar(conn, "SELECT count(*) FROM jobqueue.job WHERE status <> 'completed'")
                return left == 0

        wait_for(all_completed, timeout=600 if full else 240, interval=1.0, what="jobs to finish")
        with psycopg.connect(dsn) as conn:
            known = {r[0] for r in conn.execute("SELECT id FROM jobqueue.job")}
            events = [r[0] for r in conn.execute("SELECT id FROM jobqueue.event ORDER BY id")]
        assert set(confirmed) <= known
        check_history(dsn, sorted(known))
        deadline = time.monotonic() + 120
        while not set(events) <= set(reader.ids) and time.monotonic() < deadline:
            time.sleep(0.5)
        missing = sorted(set(events) - set(reader.ids))
        assert missing == [], (
            f"{len(missing)} of {len(events)} events never reached the feed: first {missing[:10]},"
            f" last {missing[-3:]}; the feed saw {len(reader.ids)} ids up to"
            f" {max(reader.ids, default=0)} over {reader.connections} connections"
        )
        assert reader.connections >= 3  # it really had to resume
        assert len(reader.ids) == len(set(reader.ids)), "an event was sent twice"
    except BaseException:
        print(pool.output())
        for log in sorted(tmp_path.glob("web-*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        reader.stop.set()
        pool.stop_all()
        web.stop_all()
