"""JSON handlers of the schedule routes (``/api/schedules``).

As in :mod:`jobqueue.api`: each handler checks the JSON types of its input, makes one call
of the schedule API as the authenticated user, and renders the answer. The cron expression,
the time zone and every bound are checked by the SQL (``JQV13``, ``JQV14``, ``JQV03``), and a
schedule of an organization the caller may not use is a ``403``, one that does not exist a
``404`` (``JQN06``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobqueue import errors
from jobqueue.api import (
    _actor,
    _client,
    _opt_bool,
    _opt_int,
    _opt_str,
    _req_str,
    _seconds,
    _settings,
    query_filter,
    read_json,
)

SETTINGS = frozenset(
    {
        "job_type",
        "cron",
        "params",
        "timezone",
        "enabled",
        "priority",
        "dedup",
        "missed",
        "catch_up_limit",
        "grace",
    }
)
CREATE_FIELDS = SETTINGS | {"name", "organization"}


def _parse(request: Request, body: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """The schedule settings of a body, checked for their JSON types; absent ones left out."""
    unknown = set(body) - allowed
    if unknown:
        raise errors.InvalidArgument(f"unknown field(s): {', '.join(sorted(unknown))}")
    params = body.get("params")
    if params is not None:
        if not isinstance(params, dict):
            raise errors.InvalidParams("'params' must be a JSON object")
        limit = _settings(request).max_params_bytes
        if len(json.dumps(params)) > limit:
            raise errors.PayloadTooLarge(f"'params' is over {limit} bytes")
    found: dict[str, Any] = {
        "job_type": _opt_str(body, "job_type"),
        "cron": _opt_str(body, "cron"),
        "params": params,
        "timezone": _opt_str(body, "timezone"),
        "enabled": _opt_bool(body, "enabled"),
        "priority": _opt_int(body, "priority"),
        "dedup": _opt_bool(body, "dedup"),
        "missed": _opt_str(body, "missed"),
        "catch_up_limit": _opt_int(body, "catch_up_limit"),
        "grace": _seconds(body, "grace"),
    }
    return {k: v for k, v in found.items() if v is not None}


def _path(request: Request) -> tuple[str, str]:
    return request.path_params["organization"], request.path_params["name"]


async def list_schedules(request: Request) -> Response:
    found = await _client(request).list_schedules(
        actor=await _actor(request), organization=query_filter(request, "organization")
    )
    return JSONResponse({"schedules": [s.to_dict() for s in found]})


async def create_schedule(request: Request) -> Response:
    body = await read_json(request)
    settings = _parse(request, body, CREATE_FIELDS)
    name, organization = _req_str(body, "name"), _req_str(body, "organization")
    job_type, cron = settings.pop("job_type", None), settings.pop("cron", None)
    if job_type is None or cron is None:
        raise errors.InvalidArgument("'job_type' and 'cron' are required")
    created = await _client(request).create_schedule(
        name, job_type, cron, organization=organization, actor=await _actor(request), **settings
    )
    return JSONResponse(created.to_dict(), status_code=201)


async def get_schedule(request: Request) -> Response:
    organization, name = _path(request)
    found = await _client(request).list_schedules(
        actor=await _actor(request), organization=organization
    )
    for schedule in found:
        if schedule.name == name:
            return JSONResponse(schedule.to_dict())
    raise errors.ScheduleNotFound(f"schedule {name[:130]!r} not found in {organization[:80]!r}")


async def update_schedule(request: Request) -> Response:
    organization, name = _path(request)
    settings = _parse(request, await read_json(request), SETTINGS)
    updated = await _client(request).update_schedule(
        name, organization=organization, actor=await _actor(request), **settings
    )
    return JSONResponse(updated.to_dict())


async def delete_schedule(request: Request) -> Response:
    organization, name = _path(request)
    deleted = await _client(request).delete_schedule(
        name, organization=organization, actor=await _actor(request)
    )
    return JSONResponse(deleted.to_dict())


async def run_schedule(request: Request) -> Response:
    organization, name = _path(request)
    job = await _client(request).run_schedule(
        name, organization=organization, actor=await _actor(request)
    )
    return JSONResponse(job.to_dict(), status_code=200 if job.duplicate else 201)
