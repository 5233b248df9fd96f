"""submit_jobs refuses a batch item it cannot read as written (a misspelt key, a non-object)
with JQV03 naming the item, and writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from jobqueue import errors
from jobqueue.client import Client
from tests.factories import make_job_type

COUNTS = """
SELECT (SELECT count(*) FROM jobqueue.job), (SELECT count(*) FROM jobqueue.event),
       (SELECT count(*) FROM procrastinate.procrastinate_jobs)
"""


def counts(dsn: str) -> tuple[Any, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(COUNTS).fetchone()
    assert row is not None
    return tuple(row)


@pytest.fixture
def setup(client: Client) -> Client:
    make_job_type(client)
    client.create_organization("acme")
    return client


GOOD = {"job_type": "echo", "organization": "acme", "params": {"n": 0}}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({**GOOD, "priorty": 5}, 'jobs[1]: unknown key "priorty"'),
        ({**GOOD, "actor": "root"}, 'jobs[1]: unknown key "actor"'),
        (5, "jobs[1] must be a JSON object"),
        ([GOOD], "jobs[1] must be a JSON object"),
    ],
    ids=["misspelt", "actor-inside-item", "number", "array"],
)
def test_unreadable_item_is_refused_and_nothing_written(
    setup: Client, dsn: str, item: Any, message: str
) -> None:
    before = counts(dsn)
    with pytest.raises(
        errors.InvalidArgument, match=message.replace("[", r"\[").replace("]", r"\]")
    ):
        setup.submit_jobs([GOOD, item])
    assert counts(dsn) == before


def test_every_documented_key_is_accepted(setup: Client) -> None:
    first = setup.submit_job("echo", {"first": 1}, organization="acme")
    run_at = datetime.now(UTC) + timedelta(hours=1)
    [job] = setup.submit_jobs(
        [
            {
                "job_type": "echo",
                "organization": "acme",
                "params": {"n": 1},
                "priority": 4,
                "run_at": run_at,
                "depends_on": [first.id],
                "dedup": False,
            }
        ]
    )
    assert (job.priority, job.depends_on, job.run_at) == (4, [first.id], run_at)
