"""The web process's boundaries: sign-in, sessions and tokens, open feeds, failed
authentications, slow connections, the role it connects as, and the dashboard's headers.

- A cross-site form could sign a victim's browser in as the attacker (login CSRF): sign-in now
  needs ``X-Requested-With`` like every cookie-authenticated write.
- The cookie held the API token itself, and sign-out only forgot it: sign-in now issues a
  session of its own, which sign-out ends in the database, and which ends with its token.
- Tokens can expire and be listed (never with their secret).
- Revoking a token or removing a membership left open feeds running until their next refresh:
  they now end at once.
- Open feeds, replays, failed authentications and slow request heads are all bounded.
- A web process connected as ``jobqueue_client`` answered ``/healthz`` with 503 (it could not
  read the migrations table).
- Dashboard pages carried no Content-Security-Policy, framing or sniffing protection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from datetime import timedelta
from typing import Any

import httpx
import pytest

from jobqueue import db as jobqueue_db
from jobqueue.client import Client
from tests.factories import make_job_type, make_org_with_member, make_token
from tests.integration.test_web_sse import DEADLINE, open_feed
from tests.integration.web_helpers import assert_problem, bearer, running_server, settings_for
from tests.reliability.logins import login

CSRF = {"X-Requested-With": "fetch"}


@pytest.fixture
def world(client: Client) -> dict[str, Any]:
    make_job_type(client, "echo")
    make_org_with_member(client, "org-a", "alice")
    make_org_with_member(client, "org-b", "alice")
    alice = make_token(client, "alice")
    return {"alice": alice.secret, "alice_id": alice.token_id}


def test_a_cross_site_form_cannot_sign_a_browser_in(dsn: str, world: dict[str, Any]) -> None:
    """The body a form with enctype=text/plain sends, without the header only scripts of the
    page's own origin can add."""
    with running_server(settings_for(dsn)) as url, httpx.Client(base_url=url) as http:
        forged = http.post(
            "/api/session",
            content=f'{{"token": "{world["alice"]}", "x": "="}}',
            headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
        )
        assert_problem(forged, 403, "JQA02")
        assert "set-cookie" not in forged.headers


def test_sign_in_issues_a_session_that_sign_out_and_revocation_end(
    dsn: str, client: Client, world: dict[str, Any]
) -> None:
    with running_server(settings_for(dsn)) as url, httpx.Client(base_url=url) as http:
        assert http.post("/api/session", json={"token": world["alice"]}, headers=CSRF).is_success
        session = http.cookies["jobqueue_session"]
        assert session != world["alice"]
        assert http.get("/api/me").json()["user"] == "alice"
        assert http.delete("/api/session", headers=CSRF).status_code == 204
        # Ended in the database, not only forgotten by this browser.
        assert_problem(http.get("/api/me", headers=bearer(session)), 401, "JQA01")

        http.cookies.clear()
        assert http.post("/api/session", json={"token": world["alice"]}, headers=CSRF).is_success
        second = http.cookies["jobqueue_session"]
        client.revoke_token(world["alice_id"])
        assert_problem(http.get("/api/me", headers=bearer(second)), 401, "JQA01")


def test_tokens_expire_and_are_listed_without_secrets(
    dsn: str, client: Client, world: dict[str, Any]
) -> None:
    short = client.create_token("alice", "short", expires_in=timedelta(hours=1))
    assert short.expires_at is not None
    listed = {t.token_id: t for t in client.list_tokens("alice")}
    assert listed[short.token_id].expires_at == short.expires_at
    assert not any(short.secret in str(t) for t in listed.values())
    with running_server(settings_for(dsn)) as url, httpx.Client(base_url=url) as http:
        mine = http.get("/api/tokens", headers=bearer(short.secret)).json()["tokens"]
        assert {t["token_id"] for t in mine} == set(listed)
        with jobqueue_db.connect(dsn, autocommit=True) as owner:
            owner.execute(
                "UPDATE jobqueue.api_token SET expires_at = now() - interval '1 second'"
                " WHERE id = %s",
                (short.token_id,),
            )
        assert_problem(http.get("/api/me", headers=bearer(short.secret)), 401, "JQA01")


async def test_revocation_and_membership_removal_end_open_feeds_at_once(
    dsn: str, client: Client, world: dict[str, Any]
) -> None:
    """The periodic re-check is an hour away: the notification of the change does it."""
    bob = make_token(client, "bob")
    make_org_with_member(client, "org-a", "bob")
    with running_server(settings_for(dsn, sse_refresh_seconds=3600)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as http:
            async with contextlib.AsyncExitStack() as stack:
                alices = await open_feed(http, stack, world["alice"])
                bobs = await open_feed(http, stack, bob.secret)
                client.revoke_token(world["alice_id"])
                client.remove_member("bob", "org-a")
                for feed in (alices, bobs):
                    with pytest.raises(AssertionError, match="the feed ended"):
                        await asyncio.wait_for(feed.next_event(), DEADLINE)


async def test_open_feeds_and_replays_are_capped(
    dsn: str, client: Client, world: dict[str, Any]
) -> None:
    bob = make_token(client, "bob")
    make_org_with_member(client, "org-a", "bob")
    ids = [client.submit_job("echo", {"n": n}, organization="org-a").id for n in range(7)]
    settings = settings_for(dsn, sse_max_per_user=2, sse_max_streams=3, sse_replay_max=4)
    with running_server(settings) as url:
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as http:
            async with contextlib.AsyncExitStack() as stack:
                replay = await open_feed(http, stack, world["alice"], last_event_id="0")
                got = [await asyncio.wait_for(replay.next_event(), DEADLINE) for _ in range(4)]
                assert [e["job"] for e in got] == ids[:4]
                # Four events replayed: this response ends; the client resumes from the last.
                with pytest.raises(AssertionError, match="the feed ended"):
                    await asyncio.wait_for(replay.next_event(), DEADLINE)
            async with contextlib.AsyncExitStack() as stack:
                resumed = await open_feed(
                    http, stack, world["alice"], last_event_id=str(got[-1]["id"])
                )
                rest = [await asyncio.wait_for(resumed.next_event(), DEADLINE) for _ in range(3)]
                assert [e["job"] for e in rest] == ids[4:]
                # Feeds held open (a feed dropped by the client is closed and leaves the hub).
                held = [resumed, await open_feed(http, stack, world["alice"])]
                over_user = await http.get("/api/events", headers=bearer(world["alice"]))
                assert_problem(over_user, 429, "JQR02")
                assert int(over_user.headers["retry-after"]) >= 1
                held.append(await open_feed(http, stack, bob.secret))
                over_process = await http.get("/api/events", headers=bearer(bob.secret))
                assert_problem(over_process, 429, "JQR02")
                assert len(held) == 3


def test_failed_authentications_are_throttled(dsn: str, world: dict[str, Any]) -> None:
    with (
        running_server(settings_for(dsn, auth_failures=3)) as url,
        httpx.Client(base_url=url) as http,
    ):
        for n in range(3):
            assert_problem(http.get("/api/me", headers=bearer(f"jq_guess{n}")), 401, "JQA01")
        throttled = http.get("/api/me", headers=bearer("jq_guess3"))
        assert_problem(throttled, 429, "JQR02")
        assert int(throttled.headers["retry-after"]) >= 1
        assert_problem(
            http.post("/api/session", json={"token": "jq_guess4"}, headers=CSRF), 429, "JQR02"
        )


def test_a_request_head_that_trickles_in_is_cut_off(dsn: str, world: dict[str, Any]) -> None:
    from jobqueue.serving import uvicorn_options

    options = uvicorn_options(header_timeout=1.0, keep_alive_seconds=1, max_connections=50)
    with running_server(settings_for(dsn), **options) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(b"GET /api/me HTTP/1.1\r\nHost: t\r\n")  # and never the blank line
            assert sock.recv(1024) == b""  # closed by the server, not by this timeout
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            assert sock.recv(1024) == b""  # nothing sent at all


def test_connections_beyond_the_limit_are_refused(dsn: str, world: dict[str, Any]) -> None:
    from jobqueue.serving import uvicorn_options

    options = uvicorn_options(header_timeout=30.0, keep_alive_seconds=30, max_connections=3)
    with running_server(settings_for(dsn), **options) as url:
        host, port = url.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port)), timeout=60) for _ in range(3)]
        try:
            answer = httpx.get(f"{url}/api/openapi.json", timeout=60)
            assert answer.status_code == 503
        finally:
            for sock in held:
                sock.close()


def test_a_web_process_connected_as_jobqueue_client_is_healthy_and_stays_in_its_role(
    dsn: str, world: dict[str, Any], client: Client
) -> None:
    client.create_user("root", admin=True)
    root = client.create_token("root", "test").secret
    with (
        login(dsn, "web", "jobqueue_client") as (_, web_url),
        running_server(settings_for(web_url)) as url,
        httpx.Client(base_url=url) as http,
    ):
        health = http.get("/healthz")
        assert health.status_code == 200, health.text
        assert http.get("/api/me", headers=bearer(world["alice"])).json()["user"] == "alice"
        # Managing job types needs jobqueue_admin, which this process does not hold.
        refused = http.post(
            "/api/job-types",
            json={"name": "mine", "handler": "jobqueue.tasks.demo:echo"},
            headers=bearer(root),
        )
        assert_problem(refused, 403, "JQA03")


def test_dashboard_pages_forbid_framing_sniffing_and_foreign_scripts(
    dsn: str, world: dict[str, Any]
) -> None:
    with running_server(settings_for(dsn)) as url, httpx.Client(base_url=url) as http:
        for path in ("/login", "/api/openapi.json", "/static/dashboard.js"):
            headers = http.get(path).headers
            policy = headers["content-security-policy"]
            assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
            assert "default-src 'self'" in policy and "'unsafe-inline'" not in policy
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"
