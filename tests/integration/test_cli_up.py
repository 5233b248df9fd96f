"""``jobqueue up`` as a user runs it: a subprocess, jobs completing, the next commands of the
README finding its database, a readable screen, Ctrl-C, and nothing left behind."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from jobqueue.client import Client
from tests.integration.cli_helpers import cli_env, free_port
from tests.up_process import Up, completed_jobs, up_data_dir
from tests.waiting import wait_for

UP = [sys.executable, "-m", "jobqueue.cli", "up"]


@pytest.mark.timeout(600)
def test_up_demo_on_embedded_postgres_is_found_by_the_next_commands_and_stops_clean() -> None:
    """Issue 14: `up` prints the DSN and a psql line; the CLI finds the database without
    --dsn; the screen keeps the URL and token (no access log, no warnings); Ctrl-C leaves
    nothing, and the state file goes with it."""
    with up_data_dir() as data_dir:
        env = cli_env(None, JOBQUEUE_DATA_DIR=str(data_dir))
        env.pop("XDG_RUNTIME_DIR", None)  # as on a server, where platformdirs warns
        up = Up([*UP, "--demo", "--demo-interval", "0.2", "--port", "0"], env)
        try:
            dsn = up.wait_line(r"^Database: (\S+)").group(1)
            psql = up.wait_line(r"^psql: (.+)$").group(1)
            url = up.wait_line(r"^Dashboard: (http://127\.0\.0\.1:\d+/)$").group(1)
            token = up.wait_line(r"^Admin token: (jq_\w+)").group(1)
            up.wait_line(r"^Press Ctrl-C to stop\.$")
            wait_for(lambda: completed_jobs(url, token) >= 3, timeout=180, what="demo jobs")

            # The next commands find the database without --dsn: the CLI, and the psql line.
            listed = subprocess.run(
                [sys.executable, "-m", "jobqueue.cli", "jobs", "--json", "--limit", "5"],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert listed.returncode == 0, listed.stderr
            assert listed.stdout.startswith("[")
            shown = subprocess.run(
                [sys.executable, "-m", "jobqueue.cli", "dsn"],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert shown.stdout.strip() == dsn
            counted = subprocess.run(
                [*shlex.split(psql), "-Atc", "SELECT count(*) > 0 FROM jobqueue.job"],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert counted.stdout.strip() == "t", counted.stderr

            # Nothing printed after the banner: no access log, no warnings, no job failures.
            time.sleep(3)
            banner = "".join(up.output)
            assert banner.splitlines()[-1] == "Press Ctrl-C to stop.", banner
            assert "Warning" not in banner and "INFO" not in banner, banner

            tree = up.tree(data_dir)
            assert len(tree) >= 4  # up, worker, web, postgres and its backends
            up.stop_and_check_nothing_left(tree)
            assert not (data_dir / "pgdata" / "postmaster.pid").exists()
            assert not (data_dir / "up.json").exists()
            # With `up` gone, the CLI no longer finds a database.
            after = subprocess.run(
                [sys.executable, "-m", "jobqueue.cli", "jobs"],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert after.returncode == 2 and "no database" in after.stderr
        finally:
            up.close()


def _live_up_tokens(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobqueue.api_token AS t"
            " JOIN jobqueue.app_user AS u ON u.id = t.user_id"
            " WHERE u.name = 'admin' AND t.revoked_at IS NULL"
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.timeout(300)
def test_up_with_a_dsn_uses_that_database_and_revokes_its_token(dsn: str) -> None:
    """A second `up` does not pile up admin tokens: each is valid only while its `up` runs."""
    for run in (1, 2):
        port = free_port()
        up = Up([*UP, "--port", str(port), "--concurrency", "2"], cli_env(dsn))
        try:
            url = up.wait_line(r"Dashboard: (\S+)").group(1)
            token = up.wait_line(r"Admin token: (\S+)").group(1)
            assert url == f"http://127.0.0.1:{port}/"
            headers = {"Authorization": f"Bearer {token}"}
            response = httpx.get(f"{url}api/job-types", headers=headers)
            names = {t["name"] for t in response.json()["job_types"]}
            assert {"demo.echo", "demo.sleep", "demo.flaky", "demo.fail"} <= names
            submitted = httpx.post(
                f"{url}api/jobs",
                json={"job_type": "demo.echo", "organization": "demo", "params": {"x": 1}},
                headers=headers,
            )
            assert submitted.status_code in (200, 201), submitted.text
            wait_for(
                lambda u=url, t=token, n=run: completed_jobs(u, t) == n,  # type: ignore[misc]
                what="the job completing",
            )
            assert _live_up_tokens(dsn) == 1
            up.stop_and_check_nothing_left(up.tree())
        finally:
            up.close()
        assert _live_up_tokens(dsn) == 0
        with Client(dsn) as client, pytest.raises(Exception, match="revoked|unknown|token"):
            client.authenticate(token)


@pytest.mark.timeout(120)
def test_a_taken_port_is_a_one_line_error_before_anything_starts(dsn: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*UP, "--port", str(port)], env=cli_env(dsn), capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "--port 0" in done.stderr
    # Nothing ran: no admin token was made, no job type registered.
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM jobqueue.job_type").fetchone() == (0,)


def test_up_refuses_a_second_up_on_the_same_data_directory(tmp_path: Path) -> None:
    """The state file of a live `up` stops a second one before it touches the database."""
    from jobqueue import discovery

    discovery.write_state(tmp_path, discovery.UpState("postgresql:///x", 1, "http://x/"))
    done = subprocess.run(
        [*UP, "--data-dir", str(tmp_path), "--port", "0"],
        env=cli_env(None), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "already running" in done.stderr and "pid 1" in done.stderr
