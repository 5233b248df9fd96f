"""JSON handlers of the capacity controls: pauses, caps, weights, start limits, a job's priority.

Like :mod:`jobqueue.api`, each handler checks only what the SQL could not receive (JSON types,
integers out of the integer range), makes one call as the authenticated user, and renders the
answer; who may do what is the SQL's rule (capacity.sql).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobqueue import errors
from jobqueue.api import (
    INT_MAX,
    _actor,
    _client,
    _opt_int,
    _opt_str,
    _seconds,
    job_id_of,
    query_filter,
    read_json,
)

PAUSE_FIELDS = frozenset({"organization"})
QUEUE_LIMIT_FIELDS = frozenset({"concurrency", "organization_concurrency"})
ORGANIZATION_LIMIT_FIELDS = frozenset({"concurrency", "weight"})
TYPE_LIMIT_FIELDS = frozenset({"concurrency", "start_limit", "start_period"})


async def _body(request: Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The request's JSON object; an unknown field is refused rather than ignored."""
    body = await read_json(request)
    unknown = set(body) - allowed
    if unknown:
        raise errors.InvalidArgument(f"unknown field(s): {', '.join(sorted(unknown))}")
    return body


def _path(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    if not value:
        raise errors.InvalidArgument(f"the {name} must not be empty")
    return value


async def list_queues(request: Request) -> Response:
    queues = await _client(request).list_queues(actor=await _actor(request))
    return JSONResponse({"queues": [q.to_dict() for q in queues]})


async def list_queue_usage(request: Request) -> Response:
    usage = await _client(request).list_queue_usage(
        actor=await _actor(request),
        queue=query_filter(request, "queue"),
        organization=query_filter(request, "organization"),
    )
    return JSONResponse({"usage": [u.to_dict() for u in usage]})


async def _pause(request: Request, paused: bool) -> Response:
    body = await _body(request, PAUSE_FIELDS)
    client = _client(request)
    control = client.pause_queue if paused else client.resume_queue
    result = await control(
        _path(request, "queue"),
        organization=_opt_str(body, "organization"),
        actor=await _actor(request),
    )
    return JSONResponse(result.to_dict())


async def pause_queue(request: Request) -> Response:
    return await _pause(request, True)


async def resume_queue(request: Request) -> Response:
    return await _pause(request, False)


async def set_queue_limits(request: Request) -> Response:
    body = await _body(request, QUEUE_LIMIT_FIELDS)
    settings = await _client(request).set_queue_limits(
        _path(request, "queue"),
        concurrency=_opt_int(body, "concurrency", 0, INT_MAX),
        organization_concurrency=_opt_int(body, "organization_concurrency", 0, INT_MAX),
        actor=await _actor(request),
    )
    return JSONResponse(settings.to_dict())


async def set_organization_limits(request: Request) -> Response:
    body = await _body(request, ORGANIZATION_LIMIT_FIELDS)
    weight = _opt_int(body, "weight", 0, INT_MAX)
    settings = await _client(request).set_organization_limits(
        _path(request, "queue"),
        _path(request, "organization"),
        concurrency=_opt_int(body, "concurrency", 0, INT_MAX),
        weight=1 if weight is None else weight,
        actor=await _actor(request),
    )
    return JSONResponse(settings.to_dict())


async def set_job_type_limits(request: Request) -> Response:
    body = await _body(request, TYPE_LIMIT_FIELDS)
    settings = await _client(request).set_job_type_limits(
        _path(request, "name"),
        concurrency=_opt_int(body, "concurrency", 0, INT_MAX),
        start_limit=_opt_int(body, "start_limit", 0, INT_MAX),
        start_period=_seconds(body, "start_period"),
        actor=await _actor(request),
    )
    return JSONResponse(settings.to_dict())


async def list_job_type_limits(request: Request) -> Response:
    limits = await _client(request).list_job_type_limits(actor=await _actor(request))
    return JSONResponse({"job_type_limits": [t.to_dict() for t in limits]})


async def set_job_priority(request: Request) -> Response:
    job_id = job_id_of(request)
    body = await _body(request, frozenset({"priority"}))
    priority = _opt_int(body, "priority")
    if priority is None:
        raise errors.InvalidArgument("'priority' must be an integer")
    job = await _client(request).set_job_priority(job_id, priority, actor=await _actor(request))
    return JSONResponse(job.to_dict())
