"""The component schemas of the OpenAPI document: the JSON shapes of the API's records."""

from __future__ import annotations

from typing import Any

BIGINT_MAX = 2**63 - 1
JOB_ID = {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}
TIMESTAMP = {"type": "string", "format": "date-time"}
NAME = {"type": "string", "minLength": 1}
# The live feed's resume cursor (feed_cursor.py): an event id, then groups of
# ".LOW:TRANSACTION:TRANSACTION..." (or one bare ".LOW").
RESUME_CURSOR = {
    "type": "string",
    "pattern": r"^[0-9]{1,19}(\.[0-9]{1,19}(:[0-9]{1,19})*)*$",
    "maxLength": 4096,
}
# The bounds below are the CHECK constraints of jobqueue.job_type and jobqueue.job
# (migrations/0001, 0003), so a value the document allows is one the engine takes.
PRIORITY = {"type": "integer", "minimum": -1000, "maximum": 1000}
WEEK = 7 * 86400
SECONDS = {"type": "number", "minimum": 0, "maximum": WEEK}
# PostgreSQL keeps intervals in microseconds: anything shorter is zero.
POSITIVE_SECONDS = {"type": "number", "minimum": 1e-6, "maximum": WEEK}
IDENT = "[A-Za-z_][A-Za-z0-9_]*"
QUEUE = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,40}$"}
# Caps and weights as capacity.sql takes them; null is no cap.
CAP = {"type": "integer", "minimum": 0, "maximum": 1_000_000}
WEIGHT = {"type": "integer", "minimum": 1, "maximum": 1000}
STATUSES = ["waiting", "queued", "running", "completed", "retrying", "dead", "canceled"]


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema, or null; an optional field sent as null means its default."""
    return {"anyOf": [schema, {"type": "null"}]}


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
            "next_retry_at": nullable(TIMESTAMP),
            "progress": nullable({"type": "integer"}),
            "progress_message": nullable({"type": "string"}),
            "result": {},
            "last_error": nullable({"type": "string"}),
            "cancel_requested": {"type": "boolean"},
            "created_by": nullable({"type": "string"}),
            "created_at": TIMESTAMP,
            "started_at": nullable(TIMESTAMP),
            "finished_at": nullable(TIMESTAMP),
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
            "params": nullable({"type": "object"}),
            "priority": nullable(PRIORITY),
            "run_at": nullable(TIMESTAMP),
            "depends_on": nullable({"type": "array", "items": JOB_ID}),
            "dedup": nullable({"type": "boolean", "default": True}),
            "queue": nullable({**QUEUE, "description": "This job's queue (default: its type's)."}),
            "max_retries": nullable({"type": "integer", "minimum": 0, "maximum": 100}),
            "timeout": nullable({**POSITIVE_SECONDS, "description": "Seconds; its type's else."}),
        },
    },
    "Attempt": {
        "type": "object",
        "required": ["attempt", "organization", "job_type", "started_at", "outcome"],
        "properties": {
            "attempt": {"type": "integer"},
            "organization": {"type": "string"},
            "job_type": {"type": "string"},
            "worker_id": nullable({"type": "integer"}),
            "started_at": TIMESTAMP,
            "finished_at": nullable(TIMESTAMP),
            "duration_ms": nullable({"type": "number"}),
            "outcome": nullable({"type": "string"}),
            "error": nullable({"type": "string"}),
            "traceback": nullable({"type": "string"}),
            "late_outcome": nullable({"type": "object"}),
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
            "dedup_window": nullable({"type": "number"}),
            "rate_limit": nullable({"type": "integer"}),
            "rate_period": nullable({"type": "number"}),
            "enabled": {"type": "boolean"},
            "execution": nullable({"type": "string", "enum": ["inline", "process"]}),
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
    },
    "RegisterJobType": {
        "type": "object",
        "required": ["name", "handler"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"},
            "handler": {
                "type": "string",
                "pattern": f"^{IDENT}(\\.{IDENT})*(:{IDENT}(\\.{IDENT})*)?$",
                "description": "module.path:function",
            },
            "queue": nullable(QUEUE),
            "priority": nullable(PRIORITY),
            "max_retries": nullable({"type": "integer", "minimum": 0, "maximum": 100}),
            "timeout": nullable(POSITIVE_SECONDS),
            "backoff_base": nullable({**SECONDS, "description": "At most backoff_max (600)."}),
            "backoff_max": nullable(SECONDS),
            "dedup_window": nullable({**POSITIVE_SECONDS, "maximum": 10**9}),
            "rate_limit": nullable(
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 2**31 - 1,
                    "description": "Given together with rate_period, or neither.",
                }
            ),
            "rate_period": nullable({**POSITIVE_SECONDS, "maximum": 86400}),
            "enabled": nullable({"type": "boolean"}),
            "execution": nullable(
                {
                    "type": "string",
                    "enum": ["inline", "process"],
                    "description": "Where its handlers run; null: the worker's --execution.",
                }
            ),
        },
    },
    "BulkFilter": {
        "type": "object",
        "description": "Which jobs a bulk action takes; a field left out, null or empty"
        " matches every job the caller may see.",
        "properties": {
            "organization": nullable({"type": "string"}),
            "status": nullable({"type": "string", "enum": [*STATUSES, ""]}),
            "job_type": nullable({"type": "string"}),
        },
    },
    "Worker": {
        "type": "object",
        "required": ["worker_id", "last_heartbeat", "running"],
        "properties": {
            "worker_id": {"type": "integer"},
            "last_heartbeat": TIMESTAMP,
            "host": nullable({"type": "string"}),
            "pid": nullable({"type": "integer"}),
            "queues": nullable({"type": "array", "items": {"type": "string"}}),
            "concurrency": nullable({"type": "integer"}),
            "started_at": nullable(TIMESTAMP),
            "running": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Token": {
        "type": "object",
        "required": ["token_id", "user_name", "token_name", "kind", "created_at"],
        "properties": {
            "token_id": {"type": "integer"},
            "user_name": NAME,
            "token_name": {"type": "string"},
            "kind": {"type": "string", "enum": ["token", "session"]},
            "created_at": TIMESTAMP,
            "last_used_at": nullable(TIMESTAMP),
            "expires_at": nullable(TIMESTAMP),
            "revoked_at": nullable(TIMESTAMP),
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
    "QueuePause": {
        "type": "object",
        "required": ["queue_name", "organization_name", "paused"],
        "properties": {
            "queue_name": {"type": "string"},
            "organization_name": nullable({"type": "string"}),
            "paused": {"type": "boolean"},
        },
    },
    "QueueSettings": {
        "type": "object",
        "required": ["queue", "paused", "concurrency", "organization_concurrency"],
        "properties": {
            "queue": {"type": "string"},
            "paused": {"type": "boolean"},
            "concurrency": nullable({"type": "integer"}),
            "organization_concurrency": nullable({"type": "integer"}),
        },
    },
    "OrganizationSettings": {
        "type": "object",
        "required": ["queue", "organization", "paused", "concurrency", "weight"],
        "properties": {
            "queue": {"type": "string"},
            "organization": {"type": "string"},
            "paused": {"type": "boolean"},
            "concurrency": nullable({"type": "integer"}),
            "weight": {"type": "integer"},
        },
    },
    "JobTypeSettings": {
        "type": "object",
        "required": ["job_type", "concurrency", "start_limit", "start_period"],
        "properties": {
            "job_type": {"type": "string"},
            "concurrency": nullable({"type": "integer"}),
            "start_limit": nullable({"type": "integer"}),
            "start_period": nullable({"type": "number", "description": "Seconds."}),
        },
    },
    "Queue": {
        "type": "object",
        "required": ["queue", "paused", "concurrency", "organization_concurrency", "running"],
        "properties": {
            "queue": {"type": "string"},
            "paused": {"type": "boolean"},
            "concurrency": nullable({"type": "integer"}),
            "organization_concurrency": nullable({"type": "integer"}),
            "running": {"type": "integer", "description": "Of the caller's organizations."},
            "queued": {"type": "integer", "description": "Queued or retrying, likewise."},
        },
    },
    "QueueUsage": {
        "type": "object",
        "required": ["queue", "organization", "paused", "queue_paused", "concurrency", "weight"],
        "properties": {
            "queue": {"type": "string"},
            "organization": {"type": "string"},
            "paused": {"type": "boolean"},
            "queue_paused": {"type": "boolean"},
            "concurrency": nullable({"type": "integer"}),
            "weight": {"type": "integer"},
            "running": {"type": "integer"},
            "queued": {"type": "integer"},
        },
    },
    "PauseTarget": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "organization": nullable({**NAME, "description": "Null: every organization."})
        },
    },
    "QueueLimits": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "concurrency": nullable({**CAP, "description": "Running jobs of the queue."}),
            "organization_concurrency": nullable(
                {**CAP, "description": "Running jobs of each organization in it."}
            ),
        },
    },
    "OrganizationLimits": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "concurrency": nullable({**CAP, "description": "Null: the queue's default."}),
            "weight": nullable({**WEIGHT, "default": 1}),
        },
    },
    "JobTypeLimits": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "concurrency": nullable({**CAP, "description": "Running jobs of the type."}),
            "start_limit": nullable(
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 1_000_000,
                    "description": "Starts per organization and start_period; both or neither.",
                }
            ),
            "start_period": nullable({**POSITIVE_SECONDS, "maximum": 86400}),
        },
    },
}
