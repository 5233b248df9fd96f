"""register_job_type against real PostgreSQL: every bad definition is refused with JQV05 and
changes nothing; a re-registration updates the type in place."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from jobqueue import errors
from jobqueue.client import Client
from tests.conftest import fresh_database

BAD_DEFINITIONS: dict[str, dict[str, Any]] = {
    "rate limit without period": {"rate_limit": 5},
    "rate period without limit": {"rate_period": timedelta(minutes=1)},
    "zero rate limit": {"rate_limit": 0, "rate_period": timedelta(minutes=1)},
    "zero rate period": {"rate_limit": 5, "rate_period": timedelta(0)},
    "rate period over a day": {"rate_limit": 5, "rate_period": timedelta(days=2)},
    "negative timeout": {"timeout": timedelta(seconds=-1)},
    "zero timeout": {"timeout": timedelta(0)},
    "backoff base over max": {
        "backoff_base": timedelta(minutes=10),
        "backoff_max": timedelta(seconds=1),
    },
    "negative retries": {"max_retries": -1},
    "too many retries": {"max_retries": 101},
    "priority out of range": {"priority": 1001},
    "negative dedup window": {"dedup_window": timedelta(seconds=-5)},
    "queue with spaces": {"queue": "bad queue;"},
    "empty queue": {"queue": ""},
    "handler not a path": {"handler": "not a path"},
    "name with punctuation": {"name": "bad name!"},
    "empty name": {"name": ""},
    "injection in name": {"name": "x'); DROP TABLE jobqueue.job; --"},
    "unknown execution": {"execution": "thread"},
    "empty execution": {"execution": ""},
}


@pytest.fixture(scope="module")
def refusing_dsn(server_dsn: str, template_name: str) -> Iterator[str]:
    """One database for the refused definitions: each case registers its type first and checks
    that only that type, as registered, is there after the refusal, so it fails itself if it
    changes anything, and the cases after it find the same table."""
    with fresh_database(server_dsn, template_name) as url:
        yield url


@pytest.fixture(scope="module")
def refusing(refusing_dsn: str) -> Iterator[Client]:
    with Client(refusing_dsn) as client:
        yield client


@pytest.mark.parametrize("case", sorted(BAD_DEFINITIONS))
def test_bad_definition_is_refused_and_changes_nothing(
    refusing: Client, refusing_dsn: str, case: str
) -> None:
    client, dsn = refusing, refusing_dsn
    client.register_job_type("t", "jobqueue.tasks.demo:echo", max_retries=2)
    args: dict[str, Any] = {"name": "t", "handler": "jobqueue.tasks.demo:echo"}
    args |= BAD_DEFINITIONS[case]
    with pytest.raises(errors.InvalidJobType):
        client.register_job_type(**args)
    [only] = client.list_job_types()
    assert (only.name, only.max_retries, only.rate_limit, only.rate_period) == ("t", 2, None, None)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM jobqueue.job").fetchone()
    assert row is not None and row[0] == 0


def test_reregistration_updates_in_place(client: Client) -> None:
    client.register_job_type("t", "jobqueue.tasks.demo:echo")
    updated = client.register_job_type(
        "t",
        "jobqueue.tasks.demo:sleep",
        queue="slow",
        rate_limit=3,
        rate_period=timedelta(minutes=1),
        dedup_window=timedelta(hours=1),
    )
    assert (updated.handler, updated.queue, updated.rate_limit) == (
        "jobqueue.tasks.demo:sleep",
        "slow",
        3,
    )
    assert [t.name for t in client.list_job_types()] == ["t"]


def test_execution_is_the_types_own_or_left_to_the_worker(client: Client) -> None:
    """A type names its execution mode, or leaves it NULL for the worker's --execution; a
    re-registration that names none gives the choice back to the worker."""
    assert client.register_job_type("t", "jobqueue.tasks.demo:echo").execution is None
    killable = client.register_job_type("t", "jobqueue.tasks.demo:echo", execution="process")
    assert killable.execution == "process"
    assert [t.execution for t in client.list_job_types()] == ["process"]
    assert client.register_job_type("t", "jobqueue.tasks.demo:echo").execution is None
