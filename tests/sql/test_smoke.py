from __future__ import annotations

from jobqueue.client import Client
from tests.factories import make_job_type


def test_submit_then_get(client: Client) -> None:
    client.create_organization("acme")
    make_job_type(client)
    job = client.submit_job("echo", {"a": 1}, organization="acme")
    assert client.get_job(job.id).params == {"a": 1}
