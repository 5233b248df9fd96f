"""JSON nested deeper than the HTTP API takes is refused on every SQL path, and one job the
worker cannot decode fails only itself.

HTTP refuses JSON nested more than 100 levels deep. Over SQL, submit_job took params thousands
of levels deep; reading the job then failed in every Python reader (the API and the dashboard
answered 500), and the worker's claim, which decoded every claimed row in one go, crashed:
another organization's job claimed with it ended ``dead`` with a ``lost`` attempt. Now every
SQL path that stores a caller's JSON (params of submit_job and submit_jobs, checkpoints,
results) applies the same limit, and the worker decodes each job's params on its own.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobqueue import db as jobqueue_db
from jobqueue import errors
from jobqueue.client import Client
from tests.factories import make_job_type, make_org_with_member, start_job
from tests.reliability.conftest import Workers, table_fingerprints, wait_for
from tests.reliability.logins import connect, login

LIMIT = 100


def nested(depth: int) -> dict[str, Any]:
    """An object whose containers nest ``depth`` levels deep (itself included)."""
    text = '{"a": ' * depth + "1" + "}" * depth
    return json.loads(text) if depth < 500 else {"__raw__": text}


def jsonb(depth: int) -> Any:
    """The value as a query parameter: deep ones as text, cast by PostgreSQL (Python's
    encoder would hit its own recursion limit first)."""
    value = nested(depth)
    return value["__raw__"] if "__raw__" in value else json.dumps(value)


@pytest.fixture
def setup(client: Client) -> Client:
    make_job_type(client, "echo")
    make_org_with_member(client, "acme", "ada")
    make_org_with_member(client, "globex", "gus")
    return client


@pytest.mark.parametrize("depth", [LIMIT + 1, 5000])
def test_every_sql_submit_path_refuses_params_nested_too_deep(
    dsn: str, setup: Client, depth: int
) -> None:
    with (
        login(dsn, "service", "jobqueue_client") as (_, url),
        connect(url) as conn,
        jobqueue_db.connect(dsn, autocommit=True) as owner,
    ):
        before = table_fingerprints(owner)
        params = jsonb(depth)
        single = (
            "SELECT * FROM jobqueue.submit_job(job_type => 'echo', params => %s::jsonb,"
            " organization => 'acme')"
        )
        batch = (
            "SELECT * FROM jobqueue.submit_jobs(jsonb_build_array(jsonb_build_object("
            "'job_type', 'echo', 'organization', 'acme', 'params', %s::jsonb)))"
        )
        with_deps = (
            "SELECT * FROM jobqueue.submit_job(job_type => 'echo', params => %s::jsonb,"
            " organization => 'acme', depends_on => ARRAY[]::bigint[], actor => 'ada')"
        )
        for statement in (single, batch, with_deps):
            with pytest.raises(errors.InvalidArgument, match="100 levels"):
                with jobqueue_db.translated():
                    conn.execute(statement, (params,))
        assert table_fingerprints(owner) == before


def test_params_at_the_limit_are_taken_and_read_back(dsn: str, setup: Client) -> None:
    job = setup.submit_job("echo", nested(LIMIT), organization="acme")
    assert setup.get_job(job.id).params == nested(LIMIT)


def test_checkpoints_and_results_nested_too_deep_are_not_stored(dsn: str, setup: Client) -> None:
    checkpointed = setup.submit_job("echo", {"n": 1}, organization="acme")
    attempt = start_job(dsn, checkpointed.id)
    with login(dsn, "worker", "jobqueue_worker") as (_, url), connect(url) as conn:
        with pytest.raises(errors.InvalidArgument, match="100 levels"):
            with jobqueue_db.translated():
                conn.execute(
                    "SELECT jobqueue.save_checkpoint(%s, %s, %s::jsonb)",
                    (checkpointed.id, attempt, jsonb(5000)),
                )
        assert setup.job_checkpoint(checkpointed.id) is None
        # A result too deep ends its attempt failed for good, in both outcome paths.
        conn.execute(
            "SELECT * FROM jobqueue.finish_attempts(jsonb_build_array(jsonb_build_object("
            "'job_id', %s::bigint, 'attempt', %s::integer, 'outcome', 'completed',"
            " 'result', %s::jsonb)))",
            (checkpointed.id, attempt, jsonb(LIMIT + 1)),
        )
        single = setup.submit_job("echo", {"n": 2}, organization="acme")
        conn.execute(
            "SELECT jobqueue.complete_attempt(%s, %s, %s::jsonb)",
            (single.id, start_job(dsn, single.id), jsonb(5000)),
        )
    for job_id in (checkpointed.id, single.id):
        job = setup.get_job(job_id)
        assert (job.status, job.result) == ("dead", None)
        assert "100 levels" in (job.last_error or "")


def test_a_job_the_worker_cannot_decode_fails_alone(
    dsn: str, setup: Client, workers: Workers
) -> None:
    """Both jobs are waiting when the worker starts, so one claim takes them together."""
    innocent = setup.submit_job("echo", {"n": 1}, organization="globex")
    poisoned = setup.submit_job("echo", {"n": 2}, organization="acme")
    with jobqueue_db.connect(dsn, autocommit=True) as owner:
        # Written as the owner, past the engine's checks: a row from before the limit, or
        # any value Python cannot read.
        owner.execute(
            "UPDATE jobqueue.job SET params = %s::jsonb WHERE id = %s",
            (jsonb(5000), poisoned.id),
        )
    workers.start(concurrency=4)

    def statuses() -> dict[int, str]:
        # Read as the owner: a poisoned job's params cannot be read back in Python at all.
        with jobqueue_db.connect(dsn) as owner:
            rows = owner.execute(
                "SELECT id, status::text FROM jobqueue.job WHERE id = ANY (%s)",
                ([innocent.id, poisoned.id],),
            ).fetchall()
        return dict(rows)

    ended = {"completed", "dead", "canceled"}
    final = wait_for(
        lambda: (s := statuses()) and set(s.values()) <= ended and s, what="both jobs to end"
    )
    assert final == {innocent.id: "completed", poisoned.id: "dead"}
    assert [a.outcome for a in setup.job_attempts(innocent.id)] == ["completed"]
    attempts = setup.job_attempts(poisoned.id)
    assert [a.outcome for a in attempts] == ["failed"]  # not retried: it would fail again
    assert "nested too deeply" in (attempts[0].error or "")
