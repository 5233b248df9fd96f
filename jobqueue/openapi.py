"""The OpenAPI 3.1 document of the HTTP API, served at ``/api/openapi.json``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

BIGINT_MAX = 2**63 - 1
INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
JOB_ID = {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}
TIMESTAMP = {"type": "string", "format": "date-time"}
SECONDS = {"type": "number", "minimum": 0, "maximum": 10 * 365 * 86400}
NAME = {"type": "string", "minLength": 1}
STATUSES = ["waiting", "queued", "running", "completed", "retrying", "dead", "canceled"]


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


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


def _operation(
    summary: str,
    ok: dict[str, Any],
    *,
    status: str = "200",
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    secured: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {status: ok, **(extra or {})}
    if secured:
        responses["401"] = UNAUTHENTICATED
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

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string", "description": "The engine's SQLSTATE (class JQ)."},
            "errors": {"type": "object", "description": "Machine-readable details."},
        },
    },
    "Job": {
        "type": "object",
        "required": [
            "id",
            "job_type",
            "organization",
            "queue",
            "status",
            "priority",
            "params",
            "attempt",
            "max_retries",
            "timeout",
            "run_at",
            "created_at",
            "depends_on",
            "duplicate",
            "cancel_requested",
        ],
        "properties": {
            "id": JOB_ID,
            "job_type": {"type": "string"},
            "organization": {"type": "string"},
            "queue": {"type": "string"},
            "status": {"type": "string", "enum": STATUSES},
            "priority": {"type": "integer"},
            "params": {"type": "object"},
            "attempt": {"type": "integer"},
            "max_retries": {"type": "integer"},
            "timeout": {"type": "number", "description": "Seconds."},
            "run_at": TIMESTAMP,
            "next_retry_at": _nullable(TIMESTAMP),
            "progress": _nullable({"type": "integer"}),
            "progress_message": _nullable({"type": "string"}),
            "result": {},
            "last_error": _nullable({"type": "string"}),
            "cancel_requested": {"type": "boolean"},
            "created_by": _nullable({"type": "string"}),
            "created_at": TIMESTAMP,
            "started_at": _nullable(TIMESTAMP),
            "finished_at": _nullable(TIMESTAMP),
            "updated_at": TIMESTAMP,
            "depends_on": {"type": "array", "items": {"type": "integer"}},
            "duplicate": {"type": "boolean"},
        },
    },
    "SubmitJob": {
        "type": "object",
        "required": ["job_type", "organization"],
        "additionalProperties": False,
        "properties": {
            "job_type": NAME,
            "organization": NAME,
            "params": {"type": "object"},
            "priority": _nullable(INT32),
            "run_at": _nullable(TIMESTAMP),
            "depends_on": _nullable({"type": "array", "items": JOB_ID}),
            "dedup": {"type": "boolean", "default": True},
        },
    },
    "Attempt": {
        "type": "object",
        "required": ["attempt", "organization", "job_type", "started_at", "outcome"],
        "properties": {
            "attempt": {"type": "integer"},
            "organization": {"type": "string"},
            "job_type": {"type": "string"},
            "worker_id": _nullable({"type": "integer"}),
            "started_at": TIMESTAMP,
            "finished_at": _nullable(TIMESTAMP),
            "duration_ms": _nullable({"type": "number"}),
            "outcome": _nullable({"type": "string"}),
            "error": _nullable({"type": "string"}),
            "traceback": _nullable({"type": "string"}),
            "late_outcome": _nullable({"type": "object"}),
        },
    },
    "JobType": {
        "type": "object",
        "required": ["name", "handler", "queue", "priority", "timeout", "max_retries", "enabled"],
        "properties": {
            "name": {"type": "string"},
            "handler": {"type": "string"},
            "queue": {"type": "string"},
            "priority": {"type": "integer"},
            "timeout": {"type": "number"},
            "max_retries": {"type": "integer"},
            "backoff_base": {"type": "number"},
            "backoff_max": {"type": "number"},
            "dedup_window": _nullable({"type": "number"}),
            "rate_limit": _nullable({"type": "integer"}),
            "rate_period": _nullable({"type": "number"}),
            "enabled": {"type": "boolean"},
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
    },
    "RegisterJobType": {
        "type": "object",
        "required": ["name", "handler"],
        "additionalProperties": False,
        "properties": {
            "name": NAME,
            "handler": {**NAME, "description": "module.path:function"},
            "queue": NAME,
            "priority": INT32,
            "max_retries": INT32,
            "timeout": SECONDS,
            "backoff_base": SECONDS,
            "backoff_max": SECONDS,
            "dedup_window": _nullable(SECONDS),
            "rate_limit": _nullable(INT32),
            "rate_period": _nullable(SECONDS),
            "enabled": {"type": "boolean"},
        },
    },
    "Organization": {
        "type": "object",
        "required": ["id", "organization", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "organization": {"type": "string"},
            "created_at": TIMESTAMP,
        },
    },
}

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
                "properties": {"token": {"type": "string"}},
            },
            secured=False,
            extra={"401": UNAUTHENTICATED},
        ),
        "delete": {
            "summary": "Sign out",
            "security": [],
            "responses": {"204": {"description": "Signed out."}, "default": PROBLEM_RESPONSE},
        },
    },
    "/api/jobs": {
        "post": _operation(
            "Submit one job",
            _json(_ref("Job"), "Created."),
            status="201",
            body=_ref("SubmitJob"),
            extra={"200": _json(_ref("Job"), "An active duplicate, returned instead.")},
        ),
        "get": _operation(
            "List jobs, newest first, with keyset pagination",
            _json(
                {
                    "type": "object",
                    "required": ["jobs", "next_cursor"],
                    "properties": {
                        "jobs": {"type": "array", "items": _ref("Job")},
                        "next_cursor": _nullable({"type": "string"}),
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
        )
    },
    "/api/jobs/{job_id}": {
        "get": _operation(
            "One job (404 when missing or of another organization)",
            _JOB,
            parameters=[JOB_PATH_PARAM],
        )
    },
    "/api/jobs/{job_id}/cancel": {
        "post": _operation(
            "Cancel a job; a running job gets a cancel request",
            _JOB,
            parameters=[JOB_PATH_PARAM],
        )
    },
    "/api/jobs/{job_id}/retry": {
        "post": _operation(
            "Queue a dead or canceled job again",
            _JOB,
            parameters=[JOB_PATH_PARAM],
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
            _json(_ref("JobType"), "The job type."),
            status="201",
            body=_ref("RegisterJobType"),
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
                "description": "An event stream; each message's id is the event's id.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            parameters=[
                _query("job_id", JOB_ID, "Only this job's events."),
                _query("organization", NAME, "Only this organization's events."),
                _query(
                    "last_event_id",
                    {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX},
                    "Replay after this id (the Last-Event-ID header wins).",
                ),
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                },
            ],
        )
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "jobqueue",
        "version": "0.1.0",
        "description": "A Postgres-native job engine over HTTP. Errors are RFC 9457 problem JSON.",
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "jobqueue_session"},
        },
    },
    "security": [{"bearer": []}, {"session": []}],
}


async def document(request: Request) -> Response:
    return JSONResponse(DOCUMENT)
