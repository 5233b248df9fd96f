"""The OpenAPI 3.1 document of the HTTP API, served at ``/api/openapi.json``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobqueue import openapi_schedules
from jobqueue.openapi_schemas import (
    JOB_ID,
    NAME,
    PRIORITY,
    QUEUE,
    RESUME_CURSOR,
    SCHEMAS,
    STATUSES,
    TIMESTAMP,
    nullable,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


PROBLEM_RESPONSE = {
    "description": "An error, as RFC 9457 problem JSON (status per the README's error table).",
    "content": {"application/problem+json": {"schema": _ref("Problem")}},
}
UNAUTHENTICATED = {
    **PROBLEM_RESPONSE,
    "description": "Missing, unknown or revoked token.",
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
}
# What each error status means, as problem JSON (the README's error table has the SQLSTATEs).
ERRORS: dict[str, dict[str, Any]] = {
    "400": {**PROBLEM_RESPONSE, "description": "Malformed or invalid input (JQV01-JQV05)."},
    "403": {
        **PROBLEM_RESPONSE,
        "description": "The caller may not act on that organization, or needs to be an admin "
        "(JQA02).",
    },
    "404": {
        **PROBLEM_RESPONSE,
        "description": "No such job, organization or user visible to the caller (JQN01-JQN04).",
    },
    "409": {
        **PROBLEM_RESPONSE,
        "description": "Not possible in the job's state, or an identical job is active "
        "(JQT01, JQC01).",
    },
    "413": {
        **PROBLEM_RESPONSE,
        "description": "The body, the params or the batch is over its limit (JQV06).",
    },
    "429": {
        **PROBLEM_RESPONSE,
        "description": "The job type's rate limit is reached (JQR01).",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
    "503": {**PROBLEM_RESPONSE, "description": "The database is unavailable."},
}


def _operation(
    summary: str,
    ok: dict[str, Any],
    *,
    status: str = "200",
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    secured: bool = True,
    extra: dict[str, Any] | None = None,
    errors: tuple[str, ...] = (),
) -> dict[str, Any]:
    responses: dict[str, Any] = {status: ok, **(extra or {})}
    if body is not None:
        errors = ("400", "413", *errors)  # a malformed or oversized body, on every route
    for code in sorted(set(errors)):
        responses[code] = ERRORS[code]
    if secured:
        responses["401"] = UNAUTHENTICATED
    responses["503"] = ERRORS["503"]
    responses["default"] = PROBLEM_RESPONSE
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    if not secured:
        operation["security"] = []
    return operation


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


JOB_PATH_PARAM = {"name": "job_id", "in": "path", "required": True, "schema": JOB_ID}
# A cross-site form cannot send it: sign-in and cookie-authenticated writes require it.
CSRF_HEADER = {
    "name": "X-Requested-With",
    "in": "header",
    "required": True,
    "schema": {"type": "string", "pattern": "^[!-~]{1,64}$"},
}


QUEUE_PATH_PARAM = {"name": "queue", "in": "path", "required": True, "schema": QUEUE}
ORGANIZATION_PATH_PARAM = {"name": "organization", "in": "path", "required": True, "schema": NAME}
TYPE_PATH_PARAM = {"name": "name", "in": "path", "required": True, "schema": NAME}


def _list_of(key: str, schema: str, description: str) -> dict[str, Any]:
    return _json(
        {
            "type": "object",
            "required": [key],
            "properties": {key: {"type": "array", "items": _ref(schema)}},
        },
        description,
    )


_JOB = _json(_ref("Job"), "The job.")

PATHS: dict[str, Any] = {
    "/healthz": {
        "get": _operation(
            "Database reachable and migrations current (503 otherwise)",
            _json({"type": "object", "required": ["status"]}, "Healthy."),
            secured=False,
        )
    },
    "/metrics": {
        "get": _operation(
            "Prometheus metrics of the organizations the token may see",
            {
                "description": "Prometheus text format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            errors=("403",),
        )
    },
    "/api/openapi.json": {
        "get": _operation("This document", _json({"type": "object"}, "OpenAPI 3.1."), secured=False)
    },
    "/api/session": {
        "post": _operation(
            "Sign in a browser: keep a token in an HttpOnly session cookie",
            _json(
                {
                    "type": "object",
                    "required": ["user", "is_admin"],
                    "properties": {"user": {"type": "string"}, "is_admin": {"type": "boolean"}},
                },
                "Signed in.",
            ),
            body={
                "type": "object",
                "required": ["token"],
                "properties": {"token": NAME},
            },
            parameters=[CSRF_HEADER],
            secured=False,
            extra={"401": UNAUTHENTICATED},
        ),
        "delete": {
            "summary": "Sign out: the session ends (X-Requested-With needed with its cookie)",
            "security": [],
            "responses": {"204": {"description": "Signed out."}, "default": PROBLEM_RESPONSE},
        },
    },
    "/api/tokens": {
        "get": _operation(
            "The caller's API tokens and browser sessions (an admin may name another user)",
            _json(
                {
                    "type": "object",
                    "required": ["tokens"],
                    "properties": {"tokens": {"type": "array", "items": _ref("Token")}},
                },
                "Tokens, without their secrets.",
            ),
            parameters=[_query("user", NAME, "Another user's tokens (admins).")],
            errors=("400", "404"),
        )
    },
    "/api/jobs": {
        "post": _operation(
            "Submit one job",
            _json(_ref("Job"), "Created."),
            status="201",
            body=_ref("SubmitJob"),
            extra={"200": _json(_ref("Job"), "An active duplicate, returned instead.")},
            errors=("403", "404", "429"),
        ),
        "get": _operation(
            "List jobs, newest first, with keyset pagination",
            _json(
                {
                    "type": "object",
                    "required": ["jobs", "next_cursor"],
                    "properties": {
                        "jobs": {"type": "array", "items": _ref("Job")},
                        "next_cursor": nullable({"type": "string"}),
                    },
                },
                "One page.",
            ),
            parameters=[
                _query("organization", NAME, "Only this organization."),
                _query("status", {"type": "string", "enum": STATUSES}, "Only this status."),
                _query("job_type", NAME, "Only this job type."),
                _query("created_after", TIMESTAMP, "Created at or after."),
                _query("created_before", TIMESTAMP, "Created before."),
                _query("cursor", {"type": "string"}, "next_cursor of the previous page."),
                _query(
                    "limit",
                    {"type": "integer", "minimum": 1},
                    "Jobs per page (default 50); larger values are capped at the server's"
                    " page size limit (JOBQUEUE_MAX_PAGE_SIZE, default 500).",
                ),
            ],
            errors=("400", "403", "404"),
        ),
    },
    "/api/jobs/batch": {
        "post": _operation(
            "Submit many jobs at once; one result per input, in order",
            _json(
                {
                    "type": "object",
                    "required": ["jobs"],
                    "properties": {"jobs": {"type": "array", "items": _ref("Job")}},
                },
                "Created.",
            ),
            status="201",
            body={
                "type": "object",
                "required": ["jobs"],
                "additionalProperties": False,
                "properties": {
                    "jobs": {"type": "array", "minItems": 1, "items": _ref("SubmitJob")}
                },
            },
            errors=("403", "404", "429"),
        )
    },
    "/api/jobs/{job_id}": {
        "get": _operation(
            "One job (404 when missing or of another organization)",
            _JOB,
            parameters=[JOB_PATH_PARAM],
            errors=("400", "404"),
        )
    },
    "/api/jobs/{job_id}/cancel": {
        "post": _operation(
            "Cancel a job; a running job gets a cancel request",
            _JOB,
            parameters=[JOB_PATH_PARAM],
            errors=("400", "403", "404", "409"),
        )
    },
    "/api/jobs/{job_id}/retry": {
        "post": _operation(
            "Queue a dead or canceled job again",
            _JOB,
            parameters=[JOB_PATH_PARAM],
            errors=("400", "403", "404", "409"),
        )
    },
    "/api/jobs/{job_id}/attempts": {
        "get": _operation(
            "The job's attempts, first first",
            _json(
                {
                    "type": "object",
                    "required": ["attempts"],
                    "properties": {"attempts": {"type": "array", "items": _ref("Attempt")}},
                },
                "The attempts.",
            ),
            parameters=[JOB_PATH_PARAM],
            errors=("400", "404"),
        )
    },
    "/api/jobs/{job_id}/priority": {
        "post": _operation(
            "Change the priority of a job that has not started (409 once it has)",
            _JOB,
            parameters=[JOB_PATH_PARAM],
            body={
                "type": "object",
                "required": ["priority"],
                "additionalProperties": False,
                "properties": {"priority": PRIORITY},
            },
            errors=("404", "409"),
        )
    },
    "/api/queues": {
        "get": _operation(
            "Every queue: pause, caps, and the running and queued jobs the caller may see",
            _list_of("queues", "Queue", "Queues."),
        )
    },
    "/api/queue-usage": {
        "get": _operation(
            "Each organization the caller may see in each queue: pauses, cap, weight, jobs",
            _list_of("usage", "QueueUsage", "Organizations in queues."),
            parameters=[
                _query("queue", NAME, "Only this queue."),
                _query("organization", NAME, "Only this organization."),
            ],
            errors=("400", "403"),
        )
    },
    "/api/queues/{queue}/pause": {
        "post": _operation(
            "Pause a queue, for every organization (admins) or one (its admins); running"
            " jobs finish",
            _json(_ref("QueuePause"), "Paused."),
            parameters=[QUEUE_PATH_PARAM],
            body=_ref("PauseTarget"),
            errors=("403", "404"),
        )
    },
    "/api/queues/{queue}/resume": {
        "post": _operation(
            "Resume a paused queue; its waiting jobs start at once",
            _json(_ref("QueuePause"), "Resumed."),
            parameters=[QUEUE_PATH_PARAM],
            body=_ref("PauseTarget"),
            errors=("403", "404"),
        )
    },
    "/api/queues/{queue}/limits": {
        "post": _operation(
            "Set the queue's caps on running jobs (admins); null is no cap",
            _json(_ref("QueueSettings"), "The queue's settings."),
            parameters=[QUEUE_PATH_PARAM],
            body=_ref("QueueLimits"),
            errors=("403", "404"),
        )
    },
    "/api/queues/{queue}/organizations/{organization}/limits": {
        "post": _operation(
            "Set one organization's cap and weight in the queue (admins)",
            _json(_ref("OrganizationSettings"), "The organization's settings."),
            parameters=[QUEUE_PATH_PARAM, ORGANIZATION_PATH_PARAM],
            body=_ref("OrganizationLimits"),
            errors=("403", "404"),
        )
    },
    "/api/job-types/{name}/limits": {
        "post": _operation(
            "Set a job type's running cap and start limit (admins)",
            _json(_ref("JobTypeSettings"), "The type's limits."),
            parameters=[TYPE_PATH_PARAM],
            body=_ref("JobTypeLimits"),
            errors=("403",),
        )
    },
    "/api/job-type-limits": {
        "get": _operation(
            "Every job type's running cap and start limit",
            _list_of("job_type_limits", "JobTypeSettings", "Limits."),
        )
    },
    "/api/metrics": {
        "get": _operation(
            "Counts by status, queue depth, processing time, failure rates, throughput",
            _json({"type": "object", "required": ["counts_by_status"]}, "The metrics document."),
            parameters=[
                _query("organization", NAME, "Only this organization."),
                _query("since", TIMESTAMP, "Window start (default: 24 hours ago)."),
            ],
            errors=("400", "403", "404"),
        )
    },
    "/api/job-types": {
        "get": _operation(
            "Every job type",
            _json(
                {
                    "type": "object",
                    "required": ["job_types"],
                    "properties": {"job_types": {"type": "array", "items": _ref("JobType")}},
                },
                "Job types.",
            ),
        ),
        "post": _operation(
            "Create or update a job type (admins)",
            _json(_ref("JobType"), "The job type, created or updated."),
            body=_ref("RegisterJobType"),
            errors=("403",),
        ),
    },
    "/api/me": {
        "get": _operation(
            "Who the token (or session) belongs to",
            _json(
                {
                    "type": "object",
                    "required": ["user", "is_admin"],
                    "properties": {"user": NAME, "is_admin": {"type": "boolean"}},
                    "additionalProperties": False,
                },
                "The caller.",
            ),
        )
    },
    "/api/organizations": {
        "get": _operation(
            "The organizations the caller may see",
            _json(
                {
                    "type": "object",
                    "required": ["organizations"],
                    "properties": {
                        "organizations": {"type": "array", "items": _ref("Organization")}
                    },
                },
                "Organizations.",
            ),
        )
    },
    "/api/events": {
        "get": _operation(
            "Live events (Server-Sent Events); replays after Last-Event-ID first",
            {
                "description": (
                    "An event stream; each message's id is the client's resume cursor (the"
                    " event's own id is in its data)."
                ),
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            parameters=[
                _query("job_id", JOB_ID, "Only this job's events."),
                _query("organization", NAME, "Only this organization's events."),
                _query(
                    "last_event_id",
                    RESUME_CURSOR,
                    "Resume from this cursor, or after this event id (the Last-Event-ID header"
                    " wins).",
                ),
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "schema": RESUME_CURSOR,
                },
            ],
            errors=("400", "403", "404"),
        )
    },
    "/api/jobs/bulk-cancel": {
        "post": _operation(
            "Cancel every job matching the filter, in one statement; running ones get a cancel"
            " request",
            _json(
                {
                    "type": "object",
                    "required": ["canceled", "cancel_requested"],
                    "properties": {
                        "canceled": {"type": "integer", "minimum": 0},
                        "cancel_requested": {"type": "integer", "minimum": 0},
                    },
                },
                "How many jobs were canceled, and how many running ones were asked to stop.",
            ),
            body=_ref("BulkFilter"),
            errors=("403", "404"),
        )
    },
    "/api/jobs/bulk-retry": {
        "post": _operation(
            "Queue again every dead or canceled job matching the filter, in one statement",
            _json(
                {
                    "type": "object",
                    "required": ["retried"],
                    "properties": {"retried": {"type": "integer", "minimum": 0}},
                },
                "How many jobs were queued again.",
            ),
            body=_ref("BulkFilter"),
            errors=("403", "404", "409"),
        )
    },
    "/api/workers": {
        "get": _operation(
            "Live workers: heartbeat, host, pid, queues, concurrency and the running jobs the"
            " caller may see",
            _json(
                {
                    "type": "object",
                    "required": ["workers"],
                    "properties": {"workers": {"type": "array", "items": _ref("Worker")}},
                },
                "The workers.",
            ),
        )
    },
}

PATHS.update(openapi_schedules.paths(_operation, _json, _ref, _query))

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "jobqueue",
        "version": "0.1.0",
        "description": "A Postgres-native job engine over HTTP. Errors are RFC 9457 problem JSON.",
    },
    "paths": PATHS,
    "components": {
        "schemas": {**SCHEMAS, **openapi_schedules.SCHEMAS},
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "jobqueue_session"},
        },
    },
    "security": [{"bearer": []}, {"session": []}],
}


async def document(request: Request) -> Response:
    return JSONResponse(DOCUMENT)
