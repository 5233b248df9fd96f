"""Shared pieces of the web tests: the app on a test database, users and tokens, uvicorn."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from jobqueue.client import Client
from jobqueue.settings import Settings
from jobqueue.web import create_app
from tests.factories import make_job_type, make_org_with_member, make_token


@dataclass
class World:
    """Two organizations with one member each, an admin, and a job type."""

    alice: str  # member of org-a
    bob: str  # member of org-b
    admin: str
    alice_token_id: int


def build_world(client: Client) -> World:
    make_job_type(client, "echo")
    alice = make_token(client, "alice")
    bob = make_token(client, "bob")
    client.create_user("root", admin=True)
    admin = client.create_token("root", "test")
    make_org_with_member(client, "org-a", "alice")
    make_org_with_member(client, "org-b", "bob")
    return World(alice.secret, bob.secret, admin.secret, alice.token_id)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """The response is RFC 9457 problem JSON with this status, and this SQLSTATE if given."""
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and "detail" in body
    if code is not None:
        assert body["code"] == code and body["type"] == f"urn:jobqueue:error:{code}", body
    return body  # type: ignore[no-any-return]


def settings_for(dsn: str, **overrides: Any) -> Settings:
    overrides.setdefault("secure_cookies", False)
    # Tests send many bad tokens from one address on purpose; the throttle has its own tests.
    overrides.setdefault("auth_failures", 0)
    return Settings(dsn=dsn, **overrides)


class _WithState:
    """Gives requests the lifespan state, as a server does (httpx's transport runs no lifespan)."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]):
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app({**scope, "state": dict(self.state)}, receive, send)


@contextlib.asynccontextmanager
async def asgi_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to create_app(settings) in process, lifespan included."""
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        transport = httpx.ASGITransport(app=_WithState(app, dict(state or {})))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(settings: Settings, **options: Any) -> Iterator[str]:
    """A real uvicorn serving the app on 127.0.0.1 in a thread; yields its base URL.
    ``options`` go to uvicorn (``jobqueue.serving.uvicorn_options`` for the real limits)."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
