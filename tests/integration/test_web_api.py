"""The JSON API against a real database: happy paths, organization scoping, auth, bad input."""

from __future__ import annotations

import json

import psycopg
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
def world(client: Client) -> World:
    return build_world(client)


def job_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM jobqueue.job").fetchone()
    assert row is not None
    return int(row[0])


async def test_every_endpoint_happy_path(dsn: str, world: World, client: Client) -> None:
    async with asgi_client(settings_for(dsn)) as http:
        h = bearer(world.alice)
        me = await http.get("/api/me", headers=h)
        assert me.json() == {"user": "alice", "is_admin": False}

        submitted = await http.post(
            "/api/jobs",
            headers=h,
            json={"job_type": "echo", "params": {"n": 1}, "organization": "org-a", "priority": 3},
        )
        assert submitted.status_code == 201, submitted.text
        job = submitted.json()
        assert job["status"] == "queued" and job["organization"] == "org-a"
        assert job["priority"] == 3

        batch = await http.post(
            "/api/jobs/batch",
            headers=h,
            json={
                "jobs": [
                    {"job_type": "echo", "params": {"n": 2}, "organization": "org-a"},
                    {
                        "job_type": "echo",
                        "params": {"n": 3},
                        "organization": "org-a",
                        "depends_on": [job["id"]],
                    },
                ]
            },
        )
        assert batch.status_code == 201, batch.text
        assert [j["status"] for j in batch.json()["jobs"]] == ["queued", "waiting"]

        got = await http.get(f"/api/jobs/{job['id']}", headers=h)
        assert got.status_code == 200 and got.json()["id"] == job["id"]

        listed = await http.get("/api/jobs", headers=h, params={"organization": "org-a"})
        assert [j["id"] for j in listed.json()["jobs"]] == sorted(
            [job["id"], *(j["id"] for j in batch.json()["jobs"])], reverse=True
        )

        canceled = await http.post(f"/api/jobs/{job['id']}/cancel", headers=h)
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
        retried = await http.post(f"/api/jobs/{job['id']}/retry", headers=h)
        assert retried.status_code == 200 and retried.json()["status"] == "queued"

        attempts = await http.get(f"/api/jobs/{job['id']}/attempts", headers=h)
        assert attempts.status_code == 200 and attempts.json() == {"attempts": []}

        metrics = await http.get("/api/metrics", headers=h, params={"organization": "org-a"})
        assert metrics.status_code == 200 and metrics.json()["counts_by_status"]["queued"] >= 2

        types = await http.get("/api/job-types", headers=h)
        assert [t["name"] for t in types.json()["job_types"]] == ["echo"]

        orgs = await http.get("/api/organizations", headers=h)
        assert [o["organization"] for o in orgs.json()["organizations"]] == ["org-a"]

        registered = await http.post(
            "/api/job-types",
            headers=bearer(world.admin),
            json={
                "name": "mail",
                "handler": "jobqueue.tasks.demo:echo",
                "queue": "mail",
                "timeout": 30,
                "max_retries": 2,
                "execution": "process",
            },
        )
        assert registered.status_code == 200, registered.text
        assert registered.json()["queue"] == "mail" and registered.json()["timeout"] == 30
        assert registered.json()["execution"] == "process"
        refused = await http.post(
            "/api/job-types",
            headers=h,
            json={"name": "mine", "handler": "jobqueue.tasks.demo:echo"},
        )
        assert_problem(refused, 403)

        health = await http.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"

        scrape = await http.get("/metrics", headers=bearer(world.admin))
        assert scrape.status_code == 200
        assert 'jobqueue_jobs{job_type="echo",organization="org-a",queue="default"' in scrape.text
        assert "jobqueue_sse_subscribers" in scrape.text

        spec = await http.get("/api/openapi.json")
        assert spec.status_code == 200 and spec.json()["openapi"].startswith("3.1")


async def test_keyset_pagination(dsn: str, world: World) -> None:
    async with asgi_client(settings_for(dsn, max_page_size=2)) as http:
        h = bearer(world.alice)
        ids = []
        for n in range(5):
            r = await http.post(
                "/api/jobs",
                headers=h,
                json={"job_type": "echo", "params": {"n": n}, "organization": "org-a"},
            )
            ids.append(r.json()["id"])
        seen: list[int] = []
        cursor = None
        while True:
            params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/api/jobs", headers=h, params=params)).json()
            assert len(page["jobs"]) <= 2  # the page cap wins over a larger limit
            seen += [j["id"] for j in page["jobs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(ids, reverse=True)


async def test_other_organizations_job_is_404_on_every_job_endpoint(dsn: str, world: World) -> None:
    async with asgi_client(settings_for(dsn)) as http:
        r = await http.post(
            "/api/jobs",
            headers=bearer(world.bob),
            json={"job_type": "echo", "params": {}, "organization": "org-b"},
        )
        foreign = r.json()["id"]
        h = bearer(world.alice)
        for method, path in [
            ("GET", f"/api/jobs/{foreign}"),
            ("POST", f"/api/jobs/{foreign}/cancel"),
            ("POST", f"/api/jobs/{foreign}/retry"),
            ("GET", f"/api/jobs/{foreign}/attempts"),
            ("GET", "/api/jobs/999999"),
            ("GET", f"/api/events?job_id={foreign}"),
            ("GET", "/api/events?job_id=999999"),
        ]:
            body = assert_problem(await http.request(method, path, headers=h), 404)
            assert body["title"] == "Job not found"
        listed = await http.get("/api/jobs", headers=h)
        assert foreign not in [j["id"] for j in listed.json()["jobs"]]
        assert_problem(await http.get("/api/jobs?organization=org-b", headers=h), 403)
        # Bob's job is untouched by Alice's cancel.
        mine = await http.get(f"/api/jobs/{foreign}", headers=bearer(world.bob))
        assert mine.json()["status"] == "queued"


async def test_missing_unknown_and_revoked_tokens_are_401(
    dsn: str, world: World, client: Client
) -> None:
    async with asgi_client(settings_for(dsn)) as http:
        for headers in ({}, bearer("nope"), {"Authorization": "Basic abc"}):
            r = await http.get("/api/jobs", headers=headers)
            assert_problem(r, 401)
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert (await http.get("/api/me", headers=bearer(world.alice))).status_code == 200
        client.revoke_token(world.alice_token_id)
        assert_problem(await http.get("/api/me", headers=bearer(world.alice)), 401)


async def test_inactive_member_is_forbidden_in_former_organization(
    dsn: str, world: World, client: Client
) -> None:
    client.remove_member("alice", "org-a")
    before = job_count(dsn)
    async with asgi_client(settings_for(dsn)) as http:
        h = bearer(world.alice)
        assert_problem(await http.get("/api/jobs?organization=org-a", headers=h), 403)
        submit = await http.post(
            "/api/jobs", headers=h, json={"job_type": "echo", "organization": "org-a"}
        )
        assert_problem(submit, 403)
    assert job_count(dsn) == before


async def test_bad_input_is_a_problem_and_writes_nothing(dsn: str, world: World) -> None:
    async with asgi_client(settings_for(dsn, max_body_bytes=4096)) as http:
        h = bearer(world.alice) | {"Content-Type": "application/json"}
        malformed = await http.post("/api/jobs", headers=h, content=b'{"job_type": ')
        assert_problem(malformed, 400)
        unknown = await http.post(
            "/api/jobs", headers=h, json={"job_type": "nope", "organization": "org-a"}
        )
        assert assert_problem(unknown, 400)["title"] == "Unknown job type"
        big = json.dumps(
            {"job_type": "echo", "organization": "org-a", "params": {"x": "y" * 10000}}
        )
        assert_problem(await http.post("/api/jobs", headers=h, content=big), 413)
        assert_problem(await http.get("/api/jobs?cursor=not-a-cursor", headers=h), 400)
        assert_problem(await http.get("/api/jobs?limit=0", headers=h), 400)
        wrong_type = await http.post(
            "/api/jobs/batch",
            headers=h,
            json={"jobs": [{"job_type": "echo", "organization": "org-a", "priority": "high"}]},
        )
        assert_problem(wrong_type, 400)
        assert_problem(await http.get("/api/nowhere", headers=h), 404)
    assert job_count(dsn) == 0


async def test_session_cookie_sign_in_needs_csrf_header_to_change_state(
    dsn: str, world: World
) -> None:
    csrf = {"X-Requested-With": "fetch"}
    async with asgi_client(settings_for(dsn)) as http:
        # A cross-site form cannot send the header: no login CSRF.
        assert_problem(await http.post("/api/session", json={"token": world.alice}), 403, "JQA02")
        assert "set-cookie" not in (await http.get("/api/openapi.json")).headers
        signed_in = await http.post("/api/session", json={"token": world.alice}, headers=csrf)
        assert signed_in.status_code == 200
        cookie = signed_in.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        session = http.cookies["jobqueue_session"]
        assert session != world.alice  # a session of its own, not the API token
        assert (await http.get("/api/me")).json()["user"] == "alice"
        job = {"job_type": "echo", "organization": "org-a"}
        assert_problem(await http.post("/api/jobs", json=job), 403)
        ok = await http.post("/api/jobs", json=job, headers=csrf)
        assert ok.status_code == 201
        assert_problem(await http.delete("/api/session"), 403)
        assert (await http.delete("/api/session", headers=csrf)).status_code == 204
        http.cookies.clear()
        assert_problem(await http.get("/api/me"), 401)
        # Signing out ended the session itself: its secret no longer authenticates.
        assert_problem(await http.get("/api/me", headers=bearer(session)), 401, "JQA01")
        assert (await http.get("/api/me", headers=bearer(world.alice))).status_code == 200


async def test_metrics_requires_an_admin_unless_public(dsn: str, world: World) -> None:
    async with asgi_client(settings_for(dsn)) as http:
        assert_problem(await http.get("/metrics"), 401)
    async with asgi_client(settings_for(dsn, metrics_public=True)) as http:
        assert (await http.get("/metrics")).status_code == 200


async def test_healthz_is_503_when_the_database_is_unreachable(dsn: str) -> None:
    async with asgi_client(settings_for(dsn)) as http:
        http_app = http._transport.app  # type: ignore[attr-defined]
        http_app.state["settings"] = settings_for("postgresql://127.0.0.1:1/none")
        assert_problem(await http.get("/healthz"), 503)


async def test_cors_is_off_unless_configured(dsn: str) -> None:
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    async with asgi_client(settings_for(dsn)) as http:
        r = await http.options("/api/jobs", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    configured = settings_for(dsn, cors_origins=("https://app.example",))
    async with asgi_client(configured) as http:
        r = await http.options("/api/jobs", headers=preflight)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
