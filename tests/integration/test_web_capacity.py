"""The capacity controls over HTTP: pause and resume, caps and weights, a queued job's
priority, a job's own settings at submit, the readers; each scoped to the caller's
organizations."""

from __future__ import annotations

import pytest

from jobqueue.client import Client
from tests.integration.web_helpers import (
    World,
    asgi_client,
    assert_problem,
    bearer,
    build_world,
    settings_for,
)


@pytest.fixture
def world_client(client: Client) -> World:
    return build_world(client)


async def test_pause_resume_and_limits_over_http(dsn: str, client: Client) -> None:
    world = build_world(client)
    client.add_member("alice", "org-a", role="admin")
    async with asgi_client(settings_for(dsn)) as http:
        alice, bob, admin = bearer(world.alice), bearer(world.bob), bearer(world.admin)

        own = await http.post(
            "/api/queues/default/pause", headers=alice, json={"organization": "org-a"}
        )
        assert own.status_code == 200, own.text
        assert own.json() == {"queue_name": "default", "organization_name": "org-a", "paused": True}
        # Another organization's queue, or everyone's: not hers to pause.
        assert_problem(
            await http.post(
                "/api/queues/default/pause", headers=alice, json={"organization": "org-b"}
            ),
            403,
            "JQA02",
        )
        assert_problem(await http.post("/api/queues/default/pause", headers=alice, json={}), 403)
        assert_problem(
            await http.post("/api/queues/nowhere/pause", headers=admin, json={}), 404, "JQN05"
        )
        assert_problem(
            await http.post("/api/queues/default/pause", headers=admin, json={"org": "x"}), 400
        )

        usage = (await http.get("/api/queue-usage", headers=bob)).json()["usage"]
        assert all(u["organization"] == "org-b" for u in usage)
        mine = (await http.get("/api/queue-usage?organization=org-a", headers=alice)).json()
        assert mine["usage"][0]["paused"] is True
        assert_problem(await http.get("/api/queue-usage?organization=org-a", headers=bob), 403)

        resumed = await http.post(
            "/api/queues/default/resume", headers=alice, json={"organization": "org-a"}
        )
        assert resumed.json()["paused"] is False

        assert_problem(
            await http.post("/api/queues/default/limits", headers=alice, json={"concurrency": 1}),
            403,
        )
        limits = await http.post(
            "/api/queues/default/limits",
            headers=admin,
            json={"concurrency": 20, "organization_concurrency": 3},
        )
        assert limits.json() == {
            "queue": "default",
            "paused": False,
            "concurrency": 20,
            "organization_concurrency": 3,
        }
        assert_problem(
            await http.post(
                "/api/queues/default/organizations/org-b/limits",
                headers=admin,
                json={"weight": 0},
            ),
            400,
            "JQV10",
        )
        weighted = await http.post(
            "/api/queues/default/organizations/org-b/limits",
            headers=admin,
            json={"concurrency": 5, "weight": 2},
        )
        assert weighted.json()["weight"] == 2
        typed = await http.post(
            "/api/job-types/echo/limits",
            headers=admin,
            json={"concurrency": 4, "start_limit": 10, "start_period": 60},
        )
        assert typed.json() == {
            "job_type": "echo",
            "concurrency": 4,
            "start_limit": 10,
            "start_period": 60.0,
        }
        listed = (await http.get("/api/job-type-limits", headers=bob)).json()
        assert listed == {"job_type_limits": [typed.json()]}
        queues = (await http.get("/api/queues", headers=bob)).json()["queues"]
        assert [q["queue"] for q in queues] == ["default"]
        assert queues[0]["organization_concurrency"] == 3


async def test_priority_and_own_settings_over_http(dsn: str, world_client: World) -> None:
    async with asgi_client(settings_for(dsn)) as http:
        alice, bob = bearer(world_client.alice), bearer(world_client.bob)
        submitted = await http.post(
            "/api/jobs",
            headers=alice,
            json={
                "job_type": "echo",
                "organization": "org-a",
                "params": {"n": 1},
                "queue": "urgent",
                "max_retries": 0,
                "timeout": 12.5,
            },
        )
        job = submitted.json()
        assert (job["queue"], job["max_retries"], job["timeout"]) == ("urgent", 0, 12.5)
        assert_problem(
            await http.post(
                "/api/jobs",
                headers=alice,
                json={"job_type": "echo", "organization": "org-a", "timeout": 10**7},
            ),
            400,
            "JQV03",
        )

        changed = await http.post(
            f"/api/jobs/{job['id']}/priority", headers=alice, json={"priority": 9}
        )
        assert changed.status_code == 200 and changed.json()["priority"] == 9
        # Another organization's job is a missing job.
        assert_problem(
            await http.post(f"/api/jobs/{job['id']}/priority", headers=bob, json={"priority": 1}),
            404,
            "JQN01",
        )
        assert_problem(
            await http.post(f"/api/jobs/{job['id']}/priority", headers=alice, json={}), 400
        )
        await http.post(f"/api/jobs/{job['id']}/cancel", headers=alice)
        assert_problem(
            await http.post(f"/api/jobs/{job['id']}/priority", headers=alice, json={"priority": 1}),
            409,
            "JQC02",
        )


async def test_metrics_export_usage_against_caps_and_pauses(dsn: str, world_client: World) -> None:
    """/metrics has each organization's running and queued jobs, its cap and pause state."""
    with Client(dsn) as client:
        client.submit_job("echo", {"n": 1}, organization="org-a")
        client.submit_job("echo", {"n": 2}, organization="org-a")
        client.set_queue_limits("default", concurrency=8, organization_concurrency=3)
        client.pause_queue("default", organization="org-b")
        client.set_organization_limits("default", "org-b", concurrency=1, weight=2)
    async with asgi_client(settings_for(dsn)) as http:
        text = (await http.get("/metrics", headers=bearer(world_client.admin))).text
    lines = set(text.splitlines())
    assert 'jobqueue_queue_paused{queue="default"} 0.0' in lines
    assert 'jobqueue_queue_concurrency_limit{queue="default"} 8.0' in lines
    assert 'jobqueue_queue_organization_concurrency_limit{queue="default"} 3.0' in lines
    assert 'jobqueue_queue_queued{queue="default"} 2.0' in lines
    a = 'organization="org-a",queue="default"'
    b = 'organization="org-b",queue="default"'
    assert f"jobqueue_organization_queued{{{a}}} 2.0" in lines
    assert f"jobqueue_organization_running{{{a}}} 0.0" in lines
    assert f"jobqueue_organization_concurrency_limit{{{a}}} 3.0" in lines
    assert f"jobqueue_organization_concurrency_limit{{{b}}} 1.0" in lines
    assert f"jobqueue_organization_weight{{{b}}} 2.0" in lines
    assert f"jobqueue_organization_paused{{{b}}} 1.0" in lines
