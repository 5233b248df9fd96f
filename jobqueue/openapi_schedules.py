"""The schedule routes of the OpenAPI document: their paths and the shapes of a schedule."""

from __future__ import annotations

from typing import Any

from jobqueue.openapi_schemas import NAME, PRIORITY, TIMESTAMP, nullable

SCHEDULE_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"}
GRACE = {"type": "number", "minimum": 1, "maximum": 86400, "description": "Seconds."}
SETTINGS: dict[str, Any] = {
    "job_type": NAME,
    "cron": {
        "type": "string",
        "minLength": 1,
        "maxLength": 200,
        "description": "Five fields, six with a leading seconds field, or @hourly and the like.",
    },
    "params": nullable({"type": "object"}),
    "timezone": nullable({**NAME, "description": "An IANA time zone (default UTC)."}),
    "enabled": nullable({"type": "boolean"}),
    "priority": nullable(PRIORITY),
    "dedup": nullable({"type": "boolean"}),
    "missed": nullable({"type": "string", "enum": ["skip", "catch_up"]}),
    "catch_up_limit": nullable({"type": "integer", "minimum": 1, "maximum": 100}),
    "grace": nullable(GRACE),
}

SCHEMAS: dict[str, Any] = {
    "Schedule": {
        "type": "object",
        "required": ["id", "name", "organization", "job_type", "cron", "timezone", "enabled"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "organization": {"type": "string"},
            "job_type": {"type": "string"},
            "params": {"type": "object"},
            "priority": nullable({"type": "integer"}),
            "dedup": {"type": "boolean"},
            "cron": {"type": "string"},
            "timezone": {"type": "string"},
            "enabled": {"type": "boolean"},
            "missed": {"type": "string", "enum": ["skip", "catch_up"]},
            "catch_up_limit": {"type": "integer"},
            "grace": {"type": "number"},
            "next_run_at": nullable(TIMESTAMP),
            "last_tick_at": nullable(TIMESTAMP),
            "last_run_at": nullable(TIMESTAMP),
            "last_job_id": nullable({"type": "integer"}),
            "last_job_status": nullable({"type": "string"}),
            "last_error": nullable({"type": "string"}),
            "created_by": nullable({"type": "string"}),
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
    },
    "CreateSchedule": {
        "type": "object",
        "required": ["name", "job_type", "cron", "organization"],
        "additionalProperties": False,
        "properties": {"name": SCHEDULE_NAME, "organization": NAME, **SETTINGS},
    },
    "UpdateSchedule": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            k: nullable(v) if k in ("job_type", "cron") else v for k, v in SETTINGS.items()
        },
    },
}


def paths(operation: Any, json_body: Any, ref: Any, query: Any) -> dict[str, Any]:
    """The schedule paths, built with the document's own helpers."""
    schedule = json_body(ref("Schedule"), "The schedule.")
    where = [
        {"name": "organization", "in": "path", "required": True, "schema": NAME},
        {"name": "name", "in": "path", "required": True, "schema": NAME},
    ]
    return {
        "/api/schedules": {
            "get": operation(
                "The schedules the caller may see, with next and last run",
                json_body(
                    {
                        "type": "object",
                        "required": ["schedules"],
                        "properties": {"schedules": {"type": "array", "items": ref("Schedule")}},
                    },
                    "Schedules.",
                ),
                parameters=[query("organization", NAME, "Only this organization.")],
                errors=("400", "403"),
            ),
            "post": operation(
                "Create a schedule (a recurring job)",
                json_body(ref("Schedule"), "Created."),
                status="201",
                body=ref("CreateSchedule"),
                errors=("400", "403", "404", "409"),
            ),
        },
        "/api/schedules/{organization}/{name}": {
            "get": operation(
                "One schedule", schedule, parameters=where, errors=("400", "403", "404")
            ),
            "patch": operation(
                "Change a schedule; fields left out keep their value",
                schedule,
                parameters=where,
                body=ref("UpdateSchedule"),
                errors=("400", "403", "404"),
            ),
            "delete": operation(
                "Delete a schedule; its jobs stay",
                schedule,
                parameters=where,
                errors=("400", "403", "404"),
            ),
        },
        "/api/schedules/{organization}/{name}/run": {
            "post": operation(
                "Submit the schedule's job now",
                json_body(ref("Job"), "Submitted."),
                status="201",
                parameters=where,
                extra={"200": json_body(ref("Job"), "An active duplicate, returned instead.")},
                errors=("400", "403", "404", "409", "429"),
            ),
        },
    }
