"""Every ``jobqueue`` verb run as a subprocess against the test database."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable

import httpx
import psycopg

from tests.integration.cli_helpers import (
    at_once,
    cli_env,
    free_port,
    jobqueue,
    jobqueue_each,
    jobqueue_json,
    wait_for,
)


def _setup(dsn: str) -> None:
    jobqueue("types", "register", "demo.echo", "jobqueue.tasks.demo:echo", dsn=dsn)
    jobqueue("org", "create", "acme", dsn=dsn)


def test_help_everywhere() -> None:
    verbs = [
        ["up"], ["migrate"], ["dsn"], ["worker"], ["web"], ["submit"], ["show"], ["jobs"],
        ["cancel"], ["retry"], ["attempts"], ["metrics"], ["types", "list"], ["types", "register"],
        ["org", "create"], ["user", "add"], ["token", "create"], ["token", "revoke"],
        ["token", "list"], ["cleanup"],
    ]  # fmt: skip
    assert "Exit codes" in jobqueue("--help").stdout
    for done in jobqueue_each([[*verb, "--help"] for verb in verbs]):
        assert "usage: jobqueue" in done.stdout, done.args


def test_usage_errors_exit_2() -> None:
    assert jobqueue("no-such-verb", check=2).returncode == 2
    assert "no database" in jobqueue("jobs", check=2).stderr
    assert jobqueue("submit", "x", "not json", "--org", "a", dsn="x", check=2)


def _one_line_usage_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_bad_input_is_a_one_line_usage_error_naming_the_option() -> None:
    """Issue 14: no traceback for bad input; the option the user typed is named."""
    dsn = "postgresql://nobody@127.0.0.1:1/none"
    bad_dsns = ("nonsense://", "host=a port", "postgresql://a@b/c?sslmode")
    # Independent commands, run side by side; each is checked as it was run.
    cases: list[tuple[Callable[[], subprocess.CompletedProcess[str]], tuple[str, ...]]] = [
        (
            lambda: jobqueue(
                "submit", "demo.echo", "--org", "a", "--run-at", "tomorrow", dsn=dsn, check=None
            ),
            ("--run-at", "ISO 8601", "tomorrow"),
        ),
        (
            lambda: jobqueue("jobs", "--limit", "1000", dsn=dsn, check=None),
            ("--limit", "between 1 and 500"),
        ),
        (lambda: jobqueue("jobs", "--limit", "ten", dsn=dsn, check=None), ("--limit",)),
        (lambda: jobqueue("show", "0", dsn=dsn, check=None), ("ID",)),
        (lambda: jobqueue("metrics", "--hours", "-1", dsn=dsn, check=None), ("--hours",)),
        (
            lambda: jobqueue("cleanup", "--batch", "0", dsn=dsn, check=None),
            ("--batch", "1 and 100000"),
        ),
        (lambda: jobqueue("no-such-verb", check=None), ("invalid choice",)),
        *(
            (
                lambda bad=bad: jobqueue("--dsn", bad, "jobs", check=None),
                ("--dsn is not a PostgreSQL URL",),
            )
            for bad in bad_dsns
        ),
        (lambda: jobqueue("jobs", dsn="host=a port", check=None), ("JOBQUEUE_DSN",)),
    ]
    runs = at_once([run for run, _ in cases])
    for done, (_, needles) in zip(runs, cases, strict=True):
        _one_line_usage_error(done, *needles)


def test_dsn_is_taken_before_or_after_the_verb(dsn: str) -> None:
    _setup(dsn)
    before = jobqueue("--dsn", dsn, "--json", "types", "list")
    after = jobqueue("types", "list", "--dsn", dsn, "--json")
    assert json.loads(before.stdout) == json.loads(after.stdout) != []
    assert jobqueue("--dsn", dsn, "dsn").stdout.strip() == dsn


def test_show_prints_json_values_and_errors_speak_the_cli(dsn: str) -> None:
    _setup(dsn)
    job = jobqueue_json("submit", "demo.echo", '{"n": 1}', "--org", "acme", dsn=dsn)
    shown = jobqueue("show", str(job["id"]), dsn=dsn).stdout
    assert "cancel_requested: false" in shown and "result: null" in shown
    assert 'params: {"n": 1}' in shown
    assert "None" not in shown and "False" not in shown
    # An unknown type says which ones exist; a single submit's error has no "jobs[0]:".
    done = jobqueue("submit", "demo.nope", "--org", "acme", dsn=dsn, check=1)
    assert 'no enabled job type named "demo.nope"; enabled job types: demo.echo' in done.stderr
    done = jobqueue("submit", "demo.echo", "[1]", "--org", "acme", dsn=dsn, check=1)
    assert "params must be a JSON object" in done.stderr and "jobs[0]" not in done.stderr
    far = "2100-01-01T00:00:00+00:00"
    done = jobqueue("submit", "demo.echo", "--org", "acme", "--run-at", far, dsn=dsn, check=1)
    assert "--run-at must be within a year of now" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1


def test_database_unavailable_exits_3() -> None:
    done = jobqueue("jobs", dsn="postgresql://nobody@127.0.0.1:1/none", check=3)
    assert "database unavailable" in done.stderr


def test_migrate_is_idempotent(dsn: str) -> None:
    jobqueue("migrate", dsn=dsn)
    assert jobqueue_json("migrate", dsn=dsn) == {"migrated": True}


def test_submit_show_jobs_cancel_retry_attempts(dsn: str) -> None:
    _setup(dsn)
    job = jobqueue_json("submit", "demo.echo", '{"n": 1}', "--org", "acme", dsn=dsn)
    assert job["status"] == "queued" and job["params"] == {"n": 1}
    again = jobqueue_json("submit", "demo.echo", '{"n": 1}', "--org", "acme", dsn=dsn)
    assert again["duplicate"] is True and again["id"] == job["id"]
    assert "submitted job" in jobqueue("submit", "demo.echo", "--org", "acme", dsn=dsn).stdout

    shown = jobqueue_json("show", str(job["id"]), dsn=dsn)
    assert shown["id"] == job["id"]
    assert f"id: {job['id']}" in jobqueue("show", str(job["id"]), dsn=dsn).stdout

    listed = jobqueue_json("jobs", "--org", "acme", "--status", "queued", "--limit", "1", dsn=dsn)
    assert len(listed) == 1
    older = jobqueue_json("jobs", "--before-id", str(listed[0]["id"]), dsn=dsn)
    assert [j["id"] for j in older] == [job["id"]]
    assert "demo.echo" in jobqueue("jobs", dsn=dsn).stdout

    assert jobqueue_json("cancel", str(job["id"]), dsn=dsn)["status"] == "canceled"
    assert jobqueue_json("retry", str(job["id"]), dsn=dsn)["status"] == "queued"
    assert jobqueue_json("attempts", str(job["id"]), dsn=dsn) == []
    assert "attempt" in jobqueue("attempts", str(job["id"]), dsn=dsn).stdout


def test_engine_refusal_exits_1_with_title(dsn: str) -> None:
    _setup(dsn)
    done = jobqueue("show", "424242", dsn=dsn, check=1)
    assert "Job not found" in done.stderr
    done = jobqueue("retry", "424242", "--json", dsn=dsn, check=1)
    assert json.loads(done.stderr)["sqlstate"] == "JQN01"
    done = jobqueue("submit", "demo.echo", "--org", "nowhere", dsn=dsn, check=1)
    assert done.stderr.strip()


def test_types_register_validates_the_handler(dsn: str) -> None:
    registered = jobqueue_json(
        "types", "register", "t.echo", "jobqueue.tasks.demo:echo",
        "--queue", "q1", "--max-retries", "5", "--timeout", "30", "--execution", "process",
        dsn=dsn,
    )  # fmt: skip
    assert registered["queue"] == "q1" and registered["timeout"] == 30.0
    assert registered["execution"] == "process"
    done = jobqueue("types", "register", "t.bad", "no_such_module:f", dsn=dsn, check=1)
    assert "Invalid job type" in done.stderr
    names = [t["name"] for t in jobqueue_json("types", "list", dsn=dsn)]
    assert names == ["t.echo"]
    assert "t.echo" in jobqueue("types", "list", dsn=dsn).stdout


def test_org_user_token_and_acting_as_a_user(dsn: str) -> None:
    _setup(dsn)
    jobqueue("org", "create", "other", dsn=dsn)
    assert jobqueue_json("org", "create", "beta", dsn=dsn)["organization"] == "beta"
    added = jobqueue_json("user", "add", "bob", "--org", "acme", "--role", "admin", dsn=dsn)
    assert added["memberships"][0]["member_role"] == "admin"
    assert jobqueue_json("user", "add", "root", "--admin", dsn=dsn)["user"]["is_admin"] is True

    jobqueue("submit", "demo.echo", '{"o": 1}', "--org", "other", dsn=dsn)
    mine = jobqueue_json("submit", "demo.echo", '{"o": 2}', "--org", "acme", "--as", "bob", dsn=dsn)
    assert mine["created_by"] == "bob"
    seen = jobqueue_json("jobs", "--as", "bob", dsn=dsn)
    assert [j["organization"] for j in seen] == ["acme"]
    jobqueue("submit", "demo.echo", "--org", "other", "--as", "bob", dsn=dsn, check=1)

    token = jobqueue_json("token", "create", "bob", "--name", "ci", dsn=dsn)
    assert token["secret"] and token["token_name"] == "ci"
    assert jobqueue("token", "create", "bob", dsn=dsn).stdout.strip()
    jobqueue("token", "revoke", str(token["token_id"]), dsn=dsn)
    # Revoked: the engine refuses the token from now on.
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from jobqueue.client import Client; "
         "Client(sys.argv[1]).authenticate(sys.argv[2])", dsn, token["secret"]],
        env=cli_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "Unauthenticated" in done.stderr


def test_token_create_prints_its_id_and_token_list_shows_no_secret(dsn: str) -> None:
    _setup(dsn)
    jobqueue("user", "add", "ada", "--org", "acme", dsn=dsn)
    made = jobqueue("token", "create", "ada", "--name", "laptop", "--expires-days", "30", dsn=dsn)
    secret = made.stdout.strip()
    assert secret.startswith("jq_") and "\n" not in secret  # stdout: the secret alone
    token_id = int(made.stderr.split()[1])  # stderr: "token ID for ada (laptop, expires ...)"
    assert "laptop" in made.stderr and "expires" in made.stderr
    listed = jobqueue_json("token", "list", "ada", dsn=dsn)
    assert [(t["token_id"], t["token_name"], t["kind"]) for t in listed] == [
        (token_id, "laptop", "token")
    ]
    assert listed[0]["expires_at"] and secret not in json.dumps(listed)
    table = jobqueue("token", "list", "--as", "ada", dsn=dsn).stdout
    assert "laptop" in table and secret not in table
    # Another user's tokens are an admin's business.
    jobqueue("user", "add", "eve", "--org", "acme", dsn=dsn)
    jobqueue("token", "list", "ada", "--as", "eve", dsn=dsn, check=1)


def test_metrics_and_cleanup(dsn: str) -> None:
    _setup(dsn)
    job = jobqueue_json("submit", "demo.echo", "--org", "acme", dsn=dsn)
    jobqueue("cancel", str(job["id"]), dsn=dsn)
    metrics = jobqueue_json("metrics", "--org", "acme", "--hours", "1", dsn=dsn)
    assert metrics["counts_by_status"]["canceled"] == 1
    assert "canceled" in jobqueue("metrics", dsn=dsn).stdout
    assert jobqueue_json("cleanup", dsn=dsn) == {"deleted": 0}
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE jobqueue.job SET finished_at = now() - interval '30 days'")
    assert jobqueue_json("cleanup", "--retention-days", "7", "--batch", "1", dsn=dsn) == {
        "deleted": 1
    }


def test_worker_runs_jobs_and_show_follow_waits_for_the_end(dsn: str) -> None:
    jobqueue("types", "register", "demo.sleep", "jobqueue.tasks.demo:sleep", dsn=dsn)
    jobqueue("org", "create", "acme", dsn=dsn)
    job = jobqueue_json(
        "submit", "demo.sleep", '{"seconds": 1, "steps": 4}', "--org", "acme", dsn=dsn
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobqueue.cli", "worker", "--concurrency", "2"],
        env=cli_env(dsn),
    )
    try:
        follow = jobqueue("show", "--follow", str(job["id"]), "--json", dsn=dsn, timeout=120)
        lines = [json.loads(line) for line in follow.stdout.splitlines() if line.strip()]
        assert lines[-1]["status"] == "completed" and lines[-1]["progress"] == 100
        assert any(line.get("status") == "running" for line in lines[:-1])
        attempts = jobqueue_json("attempts", str(job["id"]), dsn=dsn)
        assert [a["outcome"] for a in attempts] == ["completed"]
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0


def test_show_follow_exits_4_when_the_job_does_not_complete(dsn: str) -> None:
    _setup(dsn)
    job = jobqueue_json("submit", "demo.echo", "--org", "acme", dsn=dsn)
    jobqueue("cancel", str(job["id"]), dsn=dsn)
    done = jobqueue("show", "--follow", str(job["id"]), dsn=dsn, check=4)
    assert "canceled" in done.stdout


def test_web_serves_the_api_and_stops_on_sigterm(dsn: str) -> None:
    _setup(dsn)
    jobqueue("user", "add", "root", "--admin", dsn=dsn)
    token = jobqueue_json("token", "create", "root", dsn=dsn)["secret"]
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "jobqueue.cli", "web", "--port", str(port)], env=cli_env(dsn)
    )
    base = f"http://127.0.0.1:{port}"

    def jobs() -> httpx.Response | None:
        try:
            return httpx.get(
                f"{base}/api/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=5
            )
        except httpx.HTTPError:
            return None

    try:
        response = wait_for(jobs, what="the web app")
        assert response.status_code == 200 and response.json()["jobs"] == []
        assert httpx.get(f"{base}/", timeout=5).status_code in (200, 303)
    finally:
        web.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert web.wait(60) in (0, -signal.SIGTERM)


def _as_from_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_show_follow_is_quiet(dsn: str) -> None:
    _setup(dsn)
    job = jobqueue_json("submit", "demo.echo", "--org", "acme", dsn=dsn)  # no worker: stays
    # Ctrl-C at a terminal: the command starts with SIGINT at its default even when the suite
    # runs in a background job, whose children inherit it ignored (and then Python never
    # turns it into KeyboardInterrupt).
    with subprocess.Popen(
        [sys.executable, "-m", "jobqueue.cli", "show", "--follow", str(job["id"]), "--json"],
        env=cli_env(dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_as_from_a_terminal,
    ) as follow:  # fmt: skip
        try:
            assert follow.stdout is not None
            assert json.loads(follow.stdout.readline())["status"] == "queued"
            follow.send_signal(signal.SIGINT)
            _, stderr = follow.communicate(timeout=60)
        finally:
            follow.kill()  # a no-op once it has ended; else it would outlive the test
    assert follow.returncode == 130
    assert "Traceback" not in stderr and stderr.strip() == "interrupted"
