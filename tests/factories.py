"""Small builders of test data, on top of the public client API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

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
