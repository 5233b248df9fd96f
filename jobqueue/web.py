"""The web app: routes, middleware, problem responses and the process's shared resources.

``create_app(settings)`` assembles the Starlette app; its lifespan opens the async pool the
handlers share (a fixed size, so load never opens more connections) and the event hub that
holds the one LISTEN connection of the process. ``serve(settings)`` runs it under uvicorn;
``python -m jobqueue.web --host 127.0.0.1 --port 8000`` does the same from a shell.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypedDict

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from jobqueue import (
    api,
    api_capacity,
    api_schedules,
    auth,
    dashboard,
    errors,
    event_hub,
    openapi,
    prom,
    serving,
    sse,
    tokens,
)
from jobqueue.client import AsyncClient
from jobqueue.migrate import status as migration_status
from jobqueue.routing import LiteralRoute
from jobqueue.settings import Settings
from jobqueue.throttle import FailureThrottle

STATIC_DIR = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


class State(TypedDict):
    """What every request finds in ``request.state``."""

    settings: Settings
    client: AsyncClient
    hub: event_hub.EventHub
    throttle: FailureThrottle


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


async def engine_error(request: Request, exc: Exception) -> Response:
    """Any JobqueueError as problem JSON with the README table's status."""
    assert isinstance(exc, errors.JobqueueError)
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if exc.sqlstate:
        extra["type"] = f"urn:jobqueue:error:{exc.sqlstate}"
        extra["code"] = exc.sqlstate
    if isinstance(exc, errors.RateLimited | errors.Throttled):
        extra["retry_after"] = exc.retry_after
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="jobqueue"'
    if isinstance(exc, errors.DatabaseUnavailable):
        log.warning("database unavailable: %s", exc)
    response = problem(exc.http_status, exc.title, exc.message, **extra)
    response.headers.update(headers)
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, wrong method) in the same problem format."""
    assert isinstance(exc, HTTPException)
    response = problem(exc.status_code, exc.detail or "HTTP error", exc.detail or "")
    response.headers.update(exc.headers or {})
    return response


async def healthz(request: Request) -> Response:
    """Database reachable and every migration applied; 503 otherwise."""
    settings: Settings = request.state.settings
    try:
        current = (await asyncio.to_thread(migration_status, settings.dsn))["current"]
    except Exception as exc:  # any failure to reach or read the database is "unhealthy"
        return problem(503, "Unhealthy", f"database unreachable: {type(exc).__name__}")
    if not current:
        return problem(503, "Unhealthy", "migrations are pending; run `jobqueue migrate`")
    return JSONResponse({"status": "ok", "migrations": "current"})


Endpoint = Callable[[Request], Awaitable[Response]]


def _route(path: str, **by_method: Endpoint) -> LiteralRoute:
    """One route per path, so a 405 answers every method the path supports in ``Allow``."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await by_method[method](request)

    return LiteralRoute(path, dispatch, methods=list(by_method))


def api_routes() -> list[BaseRoute]:
    return [
        _route("/api/session", POST=auth.create_session, DELETE=auth.delete_session),
        _route("/api/me", GET=api.me),
        _route("/api/jobs", GET=api.list_jobs, POST=api.submit_job),
        _route("/api/jobs/batch", POST=api.submit_batch),
        _route("/api/jobs/{job_id}", GET=api.get_job),
        _route("/api/jobs/{job_id}/cancel", POST=api.cancel_job),
        _route("/api/jobs/{job_id}/retry", POST=api.retry_job),
        _route("/api/jobs/{job_id}/attempts", GET=api.job_attempts),
        _route("/api/jobs/{job_id}/priority", POST=api_capacity.set_job_priority),
        _route("/api/queues", GET=api_capacity.list_queues),
        _route("/api/queue-usage", GET=api_capacity.list_queue_usage),
        _route("/api/queues/{queue}/pause", POST=api_capacity.pause_queue),
        _route("/api/queues/{queue}/resume", POST=api_capacity.resume_queue),
        _route("/api/queues/{queue}/limits", POST=api_capacity.set_queue_limits),
        _route(
            "/api/queues/{queue}/organizations/{organization}/limits",
            POST=api_capacity.set_organization_limits,
        ),
        _route("/api/job-type-limits", GET=api_capacity.list_job_type_limits),
        _route("/api/job-types/{name}/limits", POST=api_capacity.set_job_type_limits),
        _route("/api/metrics", GET=api.metrics),
        _route("/api/job-types", GET=api.list_job_types, POST=api.register_job_type),
        _route("/api/organizations", GET=api.list_organizations),
        _route(
            "/api/schedules",
            GET=api_schedules.list_schedules,
            POST=api_schedules.create_schedule,
        ),
        _route(
            "/api/schedules/{organization}/{name}",
            GET=api_schedules.get_schedule,
            PATCH=api_schedules.update_schedule,
            DELETE=api_schedules.delete_schedule,
        ),
        _route("/api/schedules/{organization}/{name}/run", POST=api_schedules.run_schedule),
        _route("/api/tokens", GET=tokens.list_tokens),
        _route("/api/events", GET=sse.events),
        _route("/api/openapi.json", GET=openapi.document),
        _route("/healthz", GET=healthz),
        _route("/metrics", GET=prom.metrics),
    ]


def create_app(settings: Settings) -> Starlette:
    """The jobqueue web app for these settings."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        client = await AsyncClient.connect(
            settings.dsn, min_size=settings.pool_size, max_size=settings.pool_size
        )
        hub = event_hub.EventHub(
            settings.dsn,
            client,
            backoff_max=settings.listen_backoff_max_seconds,
            refresh_seconds=settings.sse_refresh_seconds,
            max_streams=settings.sse_max_streams,
            max_per_user=settings.sse_max_per_user,
        )
        throttle = FailureThrottle(settings.auth_failures)
        try:
            await hub.start()
            yield {"settings": settings, "client": client, "hub": hub, "throttle": throttle}
        finally:
            await hub.stop()
            await client.close()

    middleware = [Middleware(serving.SecurityHeaders)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            )
        )
    STATIC_DIR.mkdir(exist_ok=True)
    routes = [
        # First: its /api/jobs/bulk-* paths must be seen before /api/jobs/{job_id}.
        *dashboard.routes,
        *api_routes(),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={errors.JobqueueError: engine_error, HTTPException: http_error},
        lifespan=lifespan,
    )


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    fd: int | None = None,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Run the app under uvicorn until interrupted; on ``fd``, a listening socket handed
    over by the parent (``jobqueue up`` binds its port before anything starts), if given."""
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        **serving.uvicorn_options(
            header_timeout=settings.header_timeout,
            keep_alive_seconds=settings.keep_alive_seconds,
            max_connections=settings.max_connections,
        ),
    )
    server = uvicorn.Server(config)
    if fd is None:
        server.run()
    else:
        # The family is read from the descriptor (an IPv4 or IPv6 TCP socket).
        server.run(sockets=[socket.socket(fileno=fd)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobqueue.web", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dsn", help="database (default: JOBQUEUE_DSN)")
    parser.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    parser.add_argument("--log-level", default="info", help="uvicorn's log level (info)")
    parser.add_argument("--no-access-log", action="store_true", help="do not log every request")
    args = parser.parse_args(argv)
    overrides = {"dsn": args.dsn} if args.dsn else {}
    serve(
        Settings.from_env(**overrides),
        host=args.host,
        port=args.port,
        fd=args.fd,
        log_level=args.log_level,
        access_log=not args.no_access_log,
    )


if __name__ == "__main__":
    main()
