"""``jobqueue schedules ...`` run as a subprocess against the test database."""

from __future__ import annotations

import json

from tests.integration.cli_helpers import jobqueue, jobqueue_json


def _setup(dsn: str) -> None:
    jobqueue("types", "register", "demo.echo", "jobqueue.tasks.demo:echo", dsn=dsn)
    jobqueue("org", "create", "acme", dsn=dsn)
    jobqueue("org", "create", "globex", dsn=dsn)
    jobqueue("user", "add", "bob", "--org", "globex", dsn=dsn)


def test_every_schedules_verb(dsn: str) -> None:
    _setup(dsn)
    for verb in ("list", "create", "update", "enable", "disable", "delete", "run-now"):
        assert "usage: jobqueue" in jobqueue("schedules", verb, "--help").stdout
    made = jobqueue_json(
        "schedules", "create", "digest", "demo.echo", "30 7 * * mon-fri", "--org", "acme",
        "--timezone", "Europe/Paris", "--params", '{"to": "team"}', "--missed", "catch_up",
        "--grace", "600", dsn=dsn,
    )  # fmt: skip
    assert made["cron"] == "30 7 * * mon-fri" and made["params"] == {"to": "team"}
    assert made["missed"] == "catch_up" and made["grace"] == 600.0
    assert "name" in jobqueue("schedules", "list", dsn=dsn).stdout  # a table for people
    updated = jobqueue_json(
        "schedules", "update", "digest", "--org", "acme", "--cron", "@daily", dsn=dsn
    )
    assert updated["cron"] == "@daily" and updated["timezone"] == "Europe/Paris"
    assert "disabled" in jobqueue("schedules", "disable", "digest", "--org", "acme", dsn=dsn).stdout
    assert "enabled" in jobqueue("schedules", "enable", "digest", "--org", "acme", dsn=dsn).stdout
    job = jobqueue_json("schedules", "run-now", "digest", "--org", "acme", dsn=dsn)
    assert job["job_type"] == "demo.echo" and job["params"] == {"to": "team"}
    again = jobqueue("schedules", "run-now", "digest", "--org", "acme", dsn=dsn).stdout
    assert f"duplicate of job {job['id']}" in again
    (row,) = jobqueue_json("schedules", "list", "--org", "acme", dsn=dsn)
    assert row["last_job_id"] == job["id"] and row["last_job_status"] == "queued"
    jobqueue("schedules", "delete", "digest", "--org", "acme", dsn=dsn)
    assert jobqueue_json("schedules", "list", dsn=dsn) == []


def test_refusals_exit_1_with_the_error(dsn: str) -> None:
    _setup(dsn)
    bad = jobqueue(
        "schedules", "create", "x", "demo.echo", "61 * * * *", "--org", "acme", "--json",
        dsn=dsn, check=1,
    )  # fmt: skip
    assert json.loads(bad.stderr)["sqlstate"] == "JQV13"
    zone = jobqueue(
        "schedules", "create", "x", "demo.echo", "@hourly", "--org", "acme",
        "--timezone", "Nowhere/Land", dsn=dsn, check=1,
    )  # fmt: skip
    assert "Unknown time zone" in zone.stderr
    jobqueue("schedules", "create", "x", "demo.echo", "@hourly", "--org", "acme", dsn=dsn)
    taken = jobqueue(
        "schedules", "create", "x", "demo.echo", "@daily", "--org", "acme", dsn=dsn, check=1
    )
    assert "Already exists" in taken.stderr
    missing = jobqueue("schedules", "run-now", "ghost", "--org", "acme", dsn=dsn, check=1)
    assert "Schedule not found" in missing.stderr
    # bob, of globex only, may neither see nor change acme's schedule.
    assert jobqueue_json("schedules", "list", "--as", "bob", dsn=dsn) == []
    for verb in ("disable", "delete", "run-now"):
        refused = jobqueue("schedules", verb, "x", "--org", "acme", "--as", "bob", dsn=dsn, check=1)
        assert "Forbidden" in refused.stderr
    assert jobqueue_json("schedules", "list", dsn=dsn)[0]["enabled"] is True
