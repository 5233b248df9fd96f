"""access.sql and grants.sql against a real PostgreSQL: organizations see only their own
jobs through every call, inactive members nothing, admins everything; API tokens; roles."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from jobqueue import db, errors
from jobqueue.client import Client
from jobqueue.models import Job
from tests.factories import make_job_type, make_org_with_member, make_token, run_job


@pytest.fixture
def world(client: Client, dsn: str) -> dict[str, Job]:
    """alice is a member of acme, bob of globex, root an admin; each org has jobs."""
    make_job_type(client)
    make_job_type(client, "dead", max_retries=0)
    make_org_with_member(client, "acme", "alice")
    make_org_with_member(client, "globex", "bob")
    client.create_user("root", admin=True)
    globex_dead = client.submit_job("dead", {"b": 0}, organization="globex")
    run_job(dsn, globex_dead.id, "failed")
    return {
        "acme": client.submit_job("echo", {"a": 1}, organization="acme", actor="alice"),
        "globex": client.submit_job("echo", {"b": 1}, organization="globex", actor="bob"),
        "globex_dead": globex_dead,
    }


def assert_sees_nothing_of_globex(client: Client, world: dict[str, Job], user: str) -> None:
    for job in (world["globex"], world["globex_dead"]):
        with pytest.raises(errors.JobNotFound):
            client.get_job(job.id, actor=user)
        with pytest.raises(errors.JobNotFound):
            client.cancel_job(job.id, actor=user)
        with pytest.raises(errors.JobNotFound):
            client.retry_job(job.id, actor=user)
        with pytest.raises(errors.JobNotFound):
            client.job_attempts(job.id, actor=user)
    with pytest.raises(errors.Forbidden):
        client.list_jobs(actor=user, organization="globex")
    with pytest.raises(errors.Forbidden):
        client.metrics(actor=user, organization="globex")
    with pytest.raises(errors.Forbidden):
        client.events_since(actor=user, organization="globex")
    with pytest.raises(errors.Forbidden):
        client.submit_job("echo", {"x": 1}, organization="globex", actor=user)
    assert all(j.organization != "globex" for j in client.list_jobs(actor=user))
    assert all(e.org != "globex" for e in client.events_since(actor=user))
    assert all(o.organization != "globex" for o in client.list_organizations(actor=user))
    assert client.metrics(actor=user)["counts_by_status"]["queued"] <= 1
    assert not client.can_access(user, "globex")
    # Nothing changed for globex.
    assert client.get_job(world["globex"].id).status == "queued"
    assert client.get_job(world["globex_dead"].id).status == "dead"


def test_member_sees_own_organization(client: Client, world: dict[str, Job]) -> None:
    acme = world["acme"]
    assert client.get_job(acme.id, actor="alice").id == acme.id
    assert [j.id for j in client.list_jobs(actor="alice")] == [acme.id]
    assert [j.id for j in client.list_jobs(actor="alice", organization="acme")] == [acme.id]
    assert {e.job for e in client.events_since(actor="alice")} == {acme.id}
    assert client.metrics(actor="alice", organization="acme")["counts_by_status"]["queued"] == 1
    assert client.can_access("alice", "acme")
    assert client.cancel_job(acme.id, actor="alice").status == "canceled"
    assert client.retry_job(acme.id, actor="alice").status == "queued"


def test_member_of_one_organization_cannot_touch_another(
    client: Client, world: dict[str, Job]
) -> None:
    assert_sees_nothing_of_globex(client, world, "alice")
    metrics = client.metrics(actor="alice")
    assert metrics["counts_by_status"]["dead"] == 0
    assert metrics["failure_rate_by_type"] == []


def test_inactive_member_sees_nothing(client: Client, world: dict[str, Job]) -> None:
    client.remove_member("alice", "acme")
    with pytest.raises(errors.JobNotFound):
        client.get_job(world["acme"].id, actor="alice")
    with pytest.raises(errors.JobNotFound):
        client.cancel_job(world["acme"].id, actor="alice")
    with pytest.raises(errors.Forbidden):
        client.submit_job("echo", {"late": 1}, organization="acme", actor="alice")
    with pytest.raises(errors.Forbidden):
        client.list_jobs(actor="alice", organization="acme")
    assert client.list_jobs(actor="alice") == []
    assert client.events_since(actor="alice") == []
    assert client.list_organizations(actor="alice") == []
    assert not client.can_access("alice", "acme")
    assert client.metrics(actor="alice")["counts_by_status"]["queued"] == 0
    assert_sees_nothing_of_globex(client, world, "alice")
    # Re-adding reactivates the same membership.
    client.add_member("alice", "acme")
    assert client.get_job(world["acme"].id, actor="alice").id == world["acme"].id


def test_unknown_user_sees_nothing(client: Client, world: dict[str, Job]) -> None:
    assert_sees_nothing_of_globex(client, world, "nobody")
    assert client.list_jobs(actor="nobody") == []


def test_admin_sees_everything(client: Client, world: dict[str, Job]) -> None:
    ids = {j.id for j in client.list_jobs(actor="root")}
    assert ids == {j.id for j in world.values()}
    assert client.get_job(world["globex"].id, actor="root").organization == "globex"
    assert client.metrics(actor="root")["counts_by_status"]["queued"] == 2
    assert {e.org for e in client.events_since(actor="root")} == {"acme", "globex"}
    assert client.retry_job(world["globex_dead"].id, actor="root").status == "queued"
    assert client.can_access("root", "globex")


def test_members_cannot_administer(client: Client, world: dict[str, Job]) -> None:
    with pytest.raises(errors.Forbidden):
        client.create_organization("mine", actor="alice")
    with pytest.raises(errors.Forbidden):
        client.add_member("alice", "globex", actor="alice")
    with pytest.raises(errors.Forbidden):
        client.add_member("carol", "acme", actor="alice")
    with pytest.raises(errors.Forbidden):
        client.remove_member("bob", "globex", actor="alice")
    with pytest.raises(errors.Forbidden):
        client.create_user("mallory", admin=True, actor="alice")
    with pytest.raises(errors.Forbidden):
        client.register_job_type("evil", "os:system", actor="alice")
    with pytest.raises(errors.Forbidden):
        client.create_token("bob", actor="alice")
    client.add_member("carol", "acme", role="admin")
    client.add_member("dave", "acme", actor="carol")
    assert client.can_access("dave", "acme")
    with pytest.raises(errors.Forbidden):
        client.add_member("dave", "globex", actor="carol")


def test_token_lifecycle(client: Client, dsn: str) -> None:
    token = make_token(client, "alice")
    assert token.secret.startswith("jq_")
    identity = client.authenticate(token.secret)
    assert identity.user_name == "alice" and identity.token_id == token.token_id
    with pytest.raises(errors.Unauthenticated):
        client.authenticate(token.secret + "x")
    with pytest.raises(errors.Unauthenticated):
        client.authenticate("")
    with pytest.raises(errors.TokenNotFound):
        client.revoke_token(token.token_id, actor="bob")
    client.revoke_token(token.token_id, actor="alice")
    with pytest.raises(errors.Unauthenticated):
        client.authenticate(token.secret)
    with pytest.raises(errors.TokenNotFound):
        client.revoke_token(10**9)
    with pytest.raises(errors.UserNotFound):
        client.create_token("ghost")

    # Only a hash is stored: the secret appears in no column of any token row.
    with db.connect(dsn) as conn:
        rows = conn.execute("SELECT t::text, encode(token_hash, 'hex') FROM jobqueue.api_token t")
        dumped = " ".join(" ".join(r) for r in rows.fetchall())
    assert token.secret not in dumped
    assert token.secret[3:] not in dumped
    second = client.create_token("alice", "second", actor="alice")
    assert second.secret != token.secret
    assert client.authenticate(second.secret).token_id == second.token_id


def test_missing_membership_and_names(client: Client) -> None:
    client.create_organization("acme")
    with pytest.raises(errors.UserNotFound):
        client.remove_member("ghost", "acme")
    with pytest.raises(errors.OrganizationNotFound):
        client.add_member("ghost", "initech")
    with pytest.raises(errors.AlreadyExists):
        client.create_organization("acme")
    with pytest.raises(errors.InvalidArgument):
        client.add_member("alice", "acme", role="owner")
    with pytest.raises(errors.InvalidArgument):
        client.create_user("bad name")


@pytest.fixture
def as_role(dsn: str) -> Iterator[psycopg.Connection]:
    with db.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.mark.parametrize("role", ["jobqueue_client", "jobqueue_worker"])
def test_roles_cannot_touch_tables_but_can_submit(
    client: Client, as_role: psycopg.Connection, role: str
) -> None:
    client.create_organization("acme")
    make_job_type(client)
    job = client.submit_job("echo", {"pre": 1}, organization="acme")
    as_role.execute(f"SET ROLE {role}")
    for sql in (
        "UPDATE jobqueue.job SET status = 'completed'",
        "SELECT * FROM jobqueue.job",
        "DELETE FROM jobqueue.event_batch",
        "SELECT * FROM jobqueue.event",
        "INSERT INTO jobqueue.organization (name) VALUES ('x')",
        "SELECT * FROM jobqueue.api_token",
        "SELECT jobqueue._release_dependents(ARRAY[1::bigint])",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role.transaction():
            as_role.execute(sql)
    row = as_role.execute(
        "SELECT id, status, duplicate FROM jobqueue.submit_job("
        "job_type => 'echo', params => '{\"via\": \"role\"}', organization => 'acme')"
    ).fetchone()
    assert row is not None and row[1] == "queued" and row[2] is False
    assert as_role.execute("SELECT status FROM jobqueue.get_job(%s)", (job.id,)).fetchone() == (
        "queued",
    )
    as_role.execute("SELECT jobqueue.cancel_job(%s)", (job.id,))
    as_role.execute("RESET ROLE")
    assert client.get_job(job.id).status == "canceled"


def test_client_role_cannot_call_the_worker_side(as_role: psycopg.Connection) -> None:
    as_role.execute("SET ROLE jobqueue_client")
    for sql in (
        "SELECT * FROM jobqueue.finish_attempts('[]')",
        "SELECT jobqueue.rescue_attempts()",
        "SELECT * FROM procrastinate.procrastinate_jobs",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role.transaction():
            as_role.execute(sql)
