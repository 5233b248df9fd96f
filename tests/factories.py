"""Small builders of test data, on top of the public client API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from psycopg.rows import dict_row, namedtuple_row
from psycopg.types.json import Jsonb

from jobqueue import db
from jobqueue.client import Client
from jobqueue.models import JobType, NewToken


def make_job_type(
    client: Client, name: str = "echo", handler: str = "jobqueue.tasks.demo:echo", **kw: Any
) -> JobType:
    kw.setdefault("backoff_base", timedelta(milliseconds=10))
    kw.setdefault("backoff_max", timedelta(milliseconds=50))
    return client.register_job_type(name, handler, **kw)


def make_org_with_member(
    client: Client, organization: str, user: str, *, role: str = "member"
) -> None:
    names = {o.organization for o in client.list_organizations()}
    if organization not in names:
        client.create_organization(organization)
    client.add_member(user, organization, role=role)


def make_token(client: Client, user: str, name: str = "test") -> NewToken:
    client.create_user(user)
    return client.create_token(user, name)


def start_job(dsn: str, job_id: int) -> int:
    """Fetch the job's vehicle as a procrastinate worker would; returns the attempt started.

    The fetch takes the queue's first vehicle, so the job must be the first runnable one.
    """
    with db.connect(dsn, autocommit=True) as conn:
        conn.row_factory = namedtuple_row  # type: ignore[assignment]
        worker_id = (
            conn.execute("SELECT procrastinate.procrastinate_register_worker_v1() AS id")
            .fetchone()
            .id
        )
        queue = conn.execute("SELECT queue FROM jobqueue.job WHERE id = %s", (job_id,)).fetchone()
        vehicle = conn.execute(
            "SELECT * FROM procrastinate.procrastinate_fetch_job_v2(%s::varchar[], %s)",
            ([queue.queue], worker_id),
        ).fetchone()
        assert vehicle is not None and vehicle.id is not None, "no vehicle to fetch"
        assert vehicle.args["job_id"] == job_id, "another job's vehicle was fetched first"
        assert vehicle.args["attempt"] is not None, "the job was not runnable"
        return int(vehicle.args["attempt"])


def finish_job(
    dsn: str, job_id: int, attempt: int, outcome: str = "completed", **fields: Any
) -> dict[str, Any]:
    """End an attempt through finish_attempts; returns its row (accepted, status)."""
    item: dict[str, Any] = {"job_id": job_id, "attempt": attempt, "outcome": outcome}
    if outcome != "completed":
        item["error"] = "boom"
    item |= fields
    with db.connect(dsn, autocommit=True) as conn:
        conn.row_factory = dict_row  # type: ignore[assignment]
        row = conn.execute(
            "SELECT * FROM jobqueue.finish_attempts(%s)", (Jsonb([item]),)
        ).fetchone()
    assert row is not None
    return row


def run_job(dsn: str, job_id: int, outcome: str = "completed", **fields: Any) -> dict[str, Any]:
    """Start the job's next attempt and end it with the outcome."""
    return finish_job(dsn, job_id, start_job(dsn, job_id), outcome, **fields)
