"""The dashboard: server-rendered pages over the engine, and the bulk-action JSON routes.

Every page is rendered for the signed-in user (the session cookie set by ``POST /api/session``)
and every number on it comes from a SQL function called as that user, so a page shows only
what the user may see. The pages' JavaScript (``/static/dashboard.js``) keeps them live from
the JSON API and the ``/api/events`` feed. Bulk cancel and retry are single set-based SQL
calls (``jobqueue.cancel_jobs`` / ``retry_jobs`` in bulk.sql), never a loop over ids.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Route

from jobqueue import calls, errors
from jobqueue.api import BIGINT_MAX, decimal
from jobqueue.auth import identify
from jobqueue.client import AsyncClient
from jobqueue.event_hub import EventHub
from jobqueue.feed_cursor import Cursor
from jobqueue.models import Identity
from jobqueue.routing import LiteralRoute
from jobqueue.states import JobStatus

PAGE_SIZE = 50
STATIC_DIR = Path(__file__).parent / "static"

templates = Environment(
    loader=PackageLoader("jobqueue", "templates"),
    autoescape=select_autoescape(["html"]),
)


def cancel_jobs_call(
    *,
    actor: str | None,
    organization: str | None = None,
    status: str | None = None,
    job_type: str | None = None,
) -> calls.Call[dict[str, Any]]:
    """Cancel every job matching the filter, in one statement."""
    return calls.Call(
        "SELECT * FROM jobqueue.cancel_jobs(actor => %(actor)s, organization => %(organization)s,"
        " status => %(status)s, job_type => %(job_type)s)",
        locals(),
        lambda rows: rows[0],
    )


def retry_jobs_call(
    *,
    actor: str | None,
    organization: str | None = None,
    status: str | None = None,
    job_type: str | None = None,
) -> calls.Call[int]:
    """Queue again every dead or canceled job matching the filter, in one statement."""
    return calls.Call(
        "SELECT jobqueue.retry_jobs(actor => %(actor)s, organization => %(organization)s,"
        " status => %(status)s, job_type => %(job_type)s) AS retried",
        locals(),
        lambda rows: int(rows[0]["retried"]),
    )


def list_workers_call(*, actor: str | None) -> calls.Call[list[dict[str, Any]]]:
    """Live workers, their heartbeats and the running jobs the actor may see."""
    return calls.Call(
        "SELECT * FROM jobqueue.list_workers(actor => %(actor)s)",
        locals(),
        lambda rows: [
            {
                "worker_id": r["worker_id"],
                "last_heartbeat": r["last_heartbeat"].isoformat(),
                "host": r["host"],
                "pid": r["pid"],
                "queues": r["queues"],
                "concurrency": r["concurrency"],
                "started_at": r["started_at"].isoformat() if r["started_at"] else None,
                "running": r["running"],
            }
            for r in rows
        ],
    )


def _client(request: Request) -> AsyncClient:
    return request.state.client  # type: ignore[no-any-return]


def _filters(source: Any) -> dict[str, str | None]:
    return {
        "organization": source.get("organization") or None,
        "status": source.get("status") or None,
        "job_type": source.get("job_type") or None,
    }


@dataclass(frozen=True)
class Viewer:
    """Who a page is for, and where its live feed starts."""

    identity: Identity
    # The feed's position taken before the page reads its data, so a change made while the
    # page renders comes on the feed (perhaps after the data showed it too), never not at all.
    events_from: str


async def _viewer(request: Request) -> Viewer | None:
    """The signed-in user and the feed's start; None: not signed in."""
    hub: EventHub = request.state.hub
    cursor = hub.cursor()
    if cursor is None:  # the hub has not read yet: start after the events on record
        cursor = Cursor(await _client(request).run(calls.latest_event_id()))
    try:
        identity = await identify(request)
    except errors.Unauthenticated:
        return None
    return Viewer(identity, str(cursor))


def _to_login() -> Response:
    return RedirectResponse("/login", status_code=303)


def _page(
    viewer: Viewer, request: Request, template: str, status_code: int = 200, **context: Any
) -> Response:
    page = templates.get_template(template)
    html = page.render(
        user=viewer.identity, path=request.url.path, events_from=viewer.events_from, **context
    )
    return HTMLResponse(html, status_code=status_code)


async def login(request: Request) -> Response:
    return HTMLResponse(templates.get_template("login.html").render(user=None, path="/login"))


async def overview(request: Request) -> Response:
    viewer = await _viewer(request)
    return _to_login() if viewer is None else _page(viewer, request, "overview.html")


async def jobs_page(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer is None:
        return _to_login()
    identity = viewer.identity
    client = _client(request)
    filters = _filters(request.query_params)
    # A position that is not a job id is ignored: the page starts from the newest job.
    before_id = decimal(request.query_params.get("before_id", ""))
    if before_id is not None and not 1 <= before_id <= BIGINT_MAX:
        before_id = None
    jobs = await client.list_jobs(
        actor=identity.user_name,
        organization=filters["organization"],
        status=filters["status"],
        job_type=filters["job_type"],
        before_id=before_id,
        page_size=PAGE_SIZE,
    )
    organizations = await client.list_organizations(actor=identity.user_name)
    job_types = await client.list_job_types(actor=identity.user_name)
    next_before = jobs[-1].id if len(jobs) == PAGE_SIZE else None
    return _page(
        viewer,
        request,
        "jobs.html",
        jobs=jobs,
        filters=filters,
        statuses=[s.value for s in JobStatus],
        organizations=[o.organization for o in organizations],
        job_types=[t.name for t in job_types],
        next_before=next_before,
    )


async def job_page(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer is None:
        return _to_login()
    identity = viewer.identity
    raw = request.path_params["job_id"]
    job_id = decimal(raw)
    client = _client(request)
    job = None
    # A segment that cannot be a job id is a missing job, like any other.
    if job_id is not None and 1 <= job_id <= BIGINT_MAX:
        with contextlib.suppress(errors.JobNotFound):
            job = await client.get_job(job_id, actor=identity.user_name)
    if job is None or job_id is None:
        return _page(viewer, request, "not_found.html", 404, what=f"job {raw[:40]}")
    attempts = await client.job_attempts(job_id, actor=identity.user_name)
    return _page(viewer, request, "job.html", job=job, attempts=attempts)


async def job_type_page(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer is None:
        return _to_login()
    identity = viewer.identity
    name = request.path_params["name"]
    types = await _client(request).list_job_types(actor=identity.user_name)
    job_type = next((t for t in types if t.name == name), None)
    if job_type is None:
        return _page(viewer, request, "not_found.html", 404, what=f"job type {name}")
    return _page(viewer, request, "job_type.html", job_type=job_type)


async def schedules_page(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer is None:
        return _to_login()
    identity = viewer.identity
    schedules = await _client(request).list_schedules(actor=identity.user_name)
    return _page(viewer, request, "schedules.html", schedules=schedules)


async def job_types_page(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer is None:
        return _to_login()
    identity = viewer.identity
    types = await _client(request).list_job_types(actor=identity.user_name)
    return _page(viewer, request, "job_types.html", job_types=types)


async def favicon(request: Request) -> Response:
    """The icon browsers ask for at /favicon.ico, whatever the page links."""
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


async def workers_page(request: Request) -> Response:
    viewer = await _viewer(request)
    return _to_login() if viewer is None else _page(viewer, request, "workers.html")


async def queues_page(request: Request) -> Response:
    viewer = await _viewer(request)
    return _to_login() if viewer is None else _page(viewer, request, "queues.html")


async def _bulk_body(request: Request) -> dict[str, str | None]:
    from jobqueue.api import read_json

    body = await read_json(request)
    for key in ("organization", "status", "job_type"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise errors.InvalidArgument(f"'{key}' must be a string")
    return _filters(body)


async def bulk_cancel(request: Request) -> Response:
    """POST /api/jobs/bulk-cancel {organization?, status?, job_type?}."""
    identity = await identify(request)
    filters = await _bulk_body(request)
    result = await _client(request).run(cancel_jobs_call(actor=identity.user_name, **filters))
    return JSONResponse(
        {"canceled": result["canceled"], "cancel_requested": result["cancel_requested"]}
    )


async def bulk_retry(request: Request) -> Response:
    """POST /api/jobs/bulk-retry {organization?, status?, job_type?}."""
    identity = await identify(request)
    filters = await _bulk_body(request)
    retried = await _client(request).run(retry_jobs_call(actor=identity.user_name, **filters))
    return JSONResponse({"retried": retried})


async def workers(request: Request) -> Response:
    """GET /api/workers: live workers with heartbeats and running jobs."""
    identity = await identify(request)
    rows = await _client(request).run(list_workers_call(actor=identity.user_name))
    return JSONResponse({"workers": rows})


routes: list[BaseRoute] = [
    Route("/", overview),
    Route("/login", login),
    Route("/jobs", jobs_page),
    # A plain segment, not Starlette's int convertor, which fails on more than 4300 digits.
    Route("/jobs/{job_id}", job_page),
    Route("/types", job_types_page),
    Route("/types/{name:str}", job_type_page),
    Route("/schedules", schedules_page),
    Route("/favicon.ico", favicon),
    Route("/workers", workers_page),
    Route("/queues", queues_page),
    LiteralRoute("/api/jobs/bulk-cancel", bulk_cancel, methods=["POST"]),
    LiteralRoute("/api/jobs/bulk-retry", bulk_retry, methods=["POST"]),
    LiteralRoute("/api/workers", workers),
]
