"""The capacity verbs of the ``jobqueue`` command: queues, org limit, types limit, priority."""

from __future__ import annotations

from jobqueue.client import Client
from tests.factories import make_job_type, make_org_with_member
from tests.integration.cli_helpers import jobqueue, jobqueue_each, jobqueue_json


def test_queues_pauses_limits_and_priority_from_the_command_line(dsn: str) -> None:
    with Client(dsn) as client:
        make_job_type(client)
        make_org_with_member(client, "acme", "ada", role="admin")
        make_org_with_member(client, "beta", "ben")

    job = jobqueue_json(
        "submit", "echo", '{"n": 1}', "--org", "acme", "--queue", "urgent",
        "--max-retries", "0", "--timeout", "30", dsn=dsn,
    )  # fmt: skip
    assert (job["queue"], job["max_retries"], job["timeout"]) == ("urgent", 0, 30.0)
    assert jobqueue_json("priority", str(job["id"]), "7", "--as", "ada", dsn=dsn)["priority"] == 7
    jobqueue("priority", str(job["id"]), "7", "--as", "ben", dsn=dsn, check=1)

    paused = jobqueue_json("queues", "pause", "urgent", "--org", "acme", "--as", "ada", dsn=dsn)
    assert paused == {"queue_name": "urgent", "organization_name": "acme", "paused": True}
    refused = jobqueue("queues", "pause", "urgent", "--as", "ada", dsn=dsn, check=1)
    assert "Forbidden" in refused.stderr
    jobqueue("queues", "pause", "no-such-queue", dsn=dsn, check=1)
    usage = jobqueue_json("queues", "usage", "--queue", "urgent", dsn=dsn)
    assert [(u["organization"], u["paused"], u["queued"]) for u in usage] == [("acme", True, 1)]
    assert "resumed" in jobqueue("queues", "resume", "urgent", "--org", "acme", dsn=dsn).stdout

    limits = jobqueue_json("queues", "limit", "default", "--org-concurrency", "3", dsn=dsn)
    assert (limits["concurrency"], limits["organization_concurrency"]) == (None, 3)
    org = jobqueue_json("org", "limit", "beta", "--queue", "default", "--weight", "4", dsn=dsn)
    assert (org["concurrency"], org["weight"]) == (None, 4)
    typed = jobqueue_json(
        "types", "limit", "echo", "--start-limit", "10", "--start-period", "60", dsn=dsn
    )
    assert (typed["start_limit"], typed["start_period"]) == (10, 60.0)
    # Refused by the CLI before it reaches the engine: a usage error.
    jobqueue("queues", "limit", "default", "--concurrency", "-1", dsn=dsn, check=2)
    listed = jobqueue_json("queues", "list", dsn=dsn)
    assert {q["queue"]: q["organization_concurrency"] for q in listed} == {
        "default": 3,
        "urgent": None,
    }
    assert "default" in jobqueue("queues", "list", dsn=dsn).stdout


def test_capacity_verbs_have_help() -> None:
    verbs = [
        ["queues", "list"], ["queues", "usage"], ["queues", "pause"], ["queues", "resume"],
        ["queues", "limit"], ["org", "limit"], ["types", "limit"], ["priority"],
    ]  # fmt: skip
    for done in jobqueue_each([[*verb, "--help"] for verb in verbs]):
        assert "usage: jobqueue" in done.stdout, done.args
