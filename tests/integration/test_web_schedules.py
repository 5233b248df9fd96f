"""The schedule routes and the dashboard's schedules page against a real database."""

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

BASE = "/api/schedules"


@pytest.fixture
def world(client: Client) -> World:
    return build_world(client)


async def test_create_read_change_run_delete(dsn: str, world: World) -> None:
    h = bearer(world.alice)
    async with asgi_client(settings_for(dsn)) as http:
        made = await http.post(
            BASE,
            headers=h,
            json={
                "name": "digest", "organization": "org-a", "job_type": "echo",
                "cron": "30 7 * * mon-fri", "timezone": "Europe/Paris", "params": {"to": "a"},
                "missed": "catch_up", "grace": 120,
            },
        )  # fmt: skip
        assert made.status_code == 201, made.text
        assert made.json()["grace"] == 120.0 and made.json()["next_run_at"] is None
        listed = (await http.get(BASE, headers=h, params={"organization": "org-a"})).json()
        assert [s["name"] for s in listed["schedules"]] == ["digest"]
        one = await http.get(f"{BASE}/org-a/digest", headers=h)
        assert one.json()["timezone"] == "Europe/Paris"
        changed = await http.patch(f"{BASE}/org-a/digest", headers=h, json={"enabled": False})
        assert changed.status_code == 200 and changed.json()["enabled"] is False
        ran = await http.post(f"{BASE}/org-a/digest/run", headers=h)
        assert ran.status_code == 201 and ran.json()["params"] == {"to": "a"}
        again = await http.post(f"{BASE}/org-a/digest/run", headers=h)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        gone = await http.delete(f"{BASE}/org-a/digest", headers=h)
        assert gone.status_code == 200
        assert (await http.get(BASE, headers=h)).json() == {"schedules": []}


async def test_refusals_and_isolation(dsn: str, world: World, client: Client) -> None:
    client.create_schedule("nightly", "echo", "@daily", organization="org-a")
    alice, bob = bearer(world.alice), bearer(world.bob)
    good = {"name": "x", "organization": "org-a", "job_type": "echo", "cron": "@hourly"}
    async with asgi_client(settings_for(dsn)) as http:
        bad = await http.post(BASE, headers=alice, json=good | {"cron": "61 * * * *"})
        assert_problem(bad, 400, "JQV13")
        zone = await http.post(BASE, headers=alice, json=good | {"timezone": "Nowhere/Land"})
        assert_problem(zone, 400, "JQV14")
        assert_problem(
            await http.post(BASE, headers=alice, json=good | {"cronn": "x"}), 400, "JQV03"
        )
        assert_problem(
            await http.post(BASE, headers=alice, json=good | {"grace": "1m"}), 400, "JQV03"
        )
        taken = await http.post(BASE, headers=alice, json=good | {"name": "nightly"})
        assert_problem(taken, 409, "JQC01")
        assert_problem(await http.get(f"{BASE}/org-a/ghost", headers=alice), 404, "JQN06")
        # bob, a member of org-b only, sees none of org-a's schedules and changes nothing.
        assert (await http.get(BASE, headers=bob)).json() == {"schedules": []}
        for method, path, body in (
            ("GET", f"{BASE}/org-a/nightly", None),
            ("PATCH", f"{BASE}/org-a/nightly", {"enabled": False}),
            ("DELETE", f"{BASE}/org-a/nightly", None),
            ("POST", f"{BASE}/org-a/nightly/run", None),
            ("POST", BASE, good | {"name": "mine"}),
        ):
            answer = await http.request(method, path, headers=bob, json=body)
            assert_problem(answer, 403, "JQA02")
        page = await http.get("/schedules", headers=bob)
        assert page.status_code == 200 and "nightly" not in page.text
        page = await http.get("/schedules", headers=alice)
        assert "nightly" in page.text and "@daily" in page.text
    (kept,) = client.list_schedules()
    assert kept.enabled and kept.last_job_id is None
