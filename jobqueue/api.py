"""JSON handlers of the HTTP API.

Each handler parses its input, makes one call of the engine's SQL API as the authenticated
user, and renders the answer. Access checks and every rule are the SQL's: a job of another
organization comes back from the database as JobNotFound, exactly like a missing one. Input
parsing only refuses what the SQL could not even receive (wrong JSON types, unparseable
timestamps, oversized bodies), so the database never sees a malformed value.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobqueue import errors
from jobqueue.auth import identify
from jobqueue.client import AsyncClient
from jobqueue.settings import Settings

BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
# Deeper JSON parses, but encoding it again further down the stack (the driver, the response)
# would hit Python's recursion limit; no real job's params come near this.
MAX_JSON_DEPTH = 100
JOB_FIELDS = frozenset(
    {
        "job_type",
        "params",
        "organization",
        "priority",
        "run_at",
        "depends_on",
        "dedup",
        "queue",
        "max_retries",
        "timeout",
    }
)
JOB_TYPE_FIELDS = frozenset(
    {
        "name",
        "handler",
        "queue",
        "priority",
        "max_retries",
        "timeout",
        "backoff_base",
        "backoff_max",
        "dedup_window",
        "rate_limit",
        "rate_period",
        "enabled",
        "execution",
    }
)


def _client(request: Request) -> AsyncClient:
    return request.state.client  # type: ignore[no-any-return]


def _settings(request: Request) -> Settings:
    return request.state.settings  # type: ignore[no-any-return]


async def _actor(request: Request) -> str:
    return (await identify(request)).user_name


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, refusing bodies over the configured cap unread."""
    cap = _settings(request).max_body_bytes
    declared = decimal(request.headers.get("content-length", ""))
    if declared is not None and declared > cap:
        raise errors.PayloadTooLarge(f"the request body is over {cap} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > cap:
            raise errors.PayloadTooLarge(f"the request body is over {cap} bytes")
    value = loads(body, "the request body")
    if not isinstance(value, dict):
        raise errors.InvalidArgument("the request body must be a JSON object")
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise errors.InvalidArgument(f"the request body is nested over {MAX_JSON_DEPTH} levels")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels, found without recursing."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _no_constant(name: str) -> Any:
    # Python's parser takes NaN and Infinity, which JSON (and PostgreSQL's jsonb) do not.
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        # 1e400 would become Infinity, which no JSON encoder may write back.
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def loads(text: bytes | bytearray | str, what: str) -> Any:
    """Strict JSON: InvalidArgument for anything RFC 8259 refuses, or that Python cannot hold.

    Nesting deeper than the interpreter's recursion limit raises RecursionError from the
    parser; that too is a malformed request, not a server error.
    """
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise errors.InvalidArgument(f"{what} is nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise errors.InvalidArgument(f"{what} is not valid JSON: {exc}") from None


def _integer(value: Any) -> int | None:
    """A JSON integer, else None: 3 and 3.0 alike (JSON does not tell them apart, and JSON
    Schema calls both integers), never true or 3.5."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _opt_int(
    body: dict[str, Any], key: str, low: int = -INT_MAX - 1, high: int = INT_MAX
) -> int | None:
    if body.get(key) is None:
        return None
    value = _integer(body[key])
    if value is None or not low <= value <= high:
        raise errors.InvalidArgument(f"'{key}' must be an integer between {low} and {high}")
    return value


def _req_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise errors.InvalidArgument(f"'{key}' must be a non-empty string")
    return value


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise errors.InvalidArgument(f"'{key}' must be a string")
    return value


def _opt_bool(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise errors.InvalidArgument(f"'{key}' must be true or false")
    return value


def parse_datetime(value: Any, key: str) -> datetime | None:
    """An ISO 8601 (RFC 3339) timestamp, in UTC; one without a zone is taken as UTC."""
    if value is None:
        return None
    # fromisoformat() ignores a trailing NUL; a timestamp is printable ASCII or nothing.
    printable = isinstance(value, str) and value.isascii() and value.isprintable()
    try:
        # RFC 3339 allows a lower-case "t" and "z", which fromisoformat() does not.
        parsed = datetime.fromisoformat(value.upper()) if printable else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise errors.InvalidArgument(f"'{key}' must be an ISO 8601 timestamp")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # Within a day of year 1 or of year 10000 with an offset, the instant has no UTC
        # datetime in Python (nor one PostgreSQL reads back); no job is anywhere near, so the
        # nearest one that exists compares the same.
        edge = datetime.min if parsed.year == 1 else datetime.max
        return edge.replace(tzinfo=UTC)


def _seconds(body: dict[str, Any], key: str) -> timedelta | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10**9:
        raise errors.InvalidArgument(f"'{key}' must be a number of seconds between 0 and 1e9")
    return timedelta(seconds=value)


def parse_job(item: Any, settings: Settings) -> dict[str, Any]:
    """One job submission, checked for JSON types and the params size cap."""
    if not isinstance(item, dict):
        raise errors.InvalidArgument("a job must be a JSON object")
    unknown = set(item) - JOB_FIELDS
    if unknown:
        raise errors.InvalidArgument(f"unknown field(s): {', '.join(sorted(unknown))}")
    params = item.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise errors.InvalidParams("'params' must be a JSON object")
    if len(json.dumps(params)) > settings.max_params_bytes:
        raise errors.PayloadTooLarge(f"'params' is over {settings.max_params_bytes} bytes")
    depends_on = item.get("depends_on")
    if depends_on is not None:
        ids = [_integer(d) for d in depends_on] if isinstance(depends_on, list) else [None]
        if not all(d is not None and 1 <= d <= BIGINT_MAX for d in ids):
            raise errors.InvalidArgument("'depends_on' must be a list of job ids")
        depends_on = ids
    return {
        "job_type": _req_str(item, "job_type"),
        "params": params,
        "organization": _req_str(item, "organization"),
        "priority": _opt_int(item, "priority"),
        "run_at": parse_datetime(item.get("run_at"), "run_at"),
        "depends_on": depends_on,
        "dedup": True if item.get("dedup") is None else _opt_bool(item, "dedup"),
        # The job's own settings; the engine checks their ranges as it does its type's.
        "queue": _opt_str(item, "queue"),
        "max_retries": _opt_int(item, "max_retries"),
        "timeout": _seconds(item, "timeout"),
    }


def decimal(raw: str) -> int | None:
    """The value of a non-negative integer written in ASCII digits, else None.

    ``str.isdigit()`` alone also passes digits ``int()`` cannot read ("²") or that no client
    means as a number ("１"), and ``int()`` refuses more than 4300 digits; any value past int8
    comes back as ``BIGINT_MAX + 1``, which every caller refuses or caps.
    """
    if not raw.isascii() or not raw.isdigit():
        return None
    digits = raw.lstrip("0") or "0"
    return int(digits) if len(digits) <= len(str(BIGINT_MAX)) else BIGINT_MAX + 1


def job_id_of(request: Request) -> int:
    job_id = decimal(request.path_params["job_id"])
    if job_id is None or not 1 <= job_id <= BIGINT_MAX:
        raise errors.InvalidArgument("the job id must be a positive integer")
    return job_id


def encode_cursor(before_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before_id": before_id}).encode()).decode()


def decode_cursor(cursor: str) -> int:
    """The keyset position an opaque cursor stands for; InvalidArgument if it is not ours."""
    try:
        value = loads(base64.urlsafe_b64decode(cursor.encode("ascii")), "the cursor")
        before_id = value["before_id"]
    except (errors.InvalidArgument, binascii.Error, KeyError, TypeError, UnicodeEncodeError):
        raise errors.InvalidArgument("invalid cursor") from None
    position = _integer(before_id)
    if position is None or not 1 <= position <= BIGINT_MAX:
        raise errors.InvalidArgument("invalid cursor")
    return position


def query_filter(request: Request, name: str) -> str | None:
    """An optional query parameter; present but empty is refused rather than ignored."""
    value = request.query_params.get(name)
    if value == "":
        raise errors.InvalidArgument(f"'{name}' must not be empty")
    return value


def _query_limit(request: Request) -> int:
    settings = _settings(request)
    raw = request.query_params.get("limit")
    if raw is None:
        return min(settings.default_page_size, settings.max_page_size)
    limit = decimal(raw)
    if limit is None or limit < 1:
        raise errors.InvalidArgument("'limit' must be a positive integer")
    return min(limit, settings.max_page_size)


async def submit_job(request: Request) -> Response:
    job = parse_job(await read_json(request), _settings(request))
    actor = await _actor(request)
    created = await _client(request).submit_job(**job, actor=actor)
    return JSONResponse(created.to_dict(), status_code=200 if created.duplicate else 201)


async def submit_batch(request: Request) -> Response:
    body = await read_json(request)
    items = body.get("jobs")
    if not isinstance(items, list) or not items:
        raise errors.InvalidArgument("'jobs' must be a non-empty list of jobs")
    settings = _settings(request)
    jobs = [{k: v for k, v in parse_job(item, settings).items() if v is not None} for item in items]
    actor = await _actor(request)
    created = await _client(request).submit_jobs(jobs, actor=actor)
    return JSONResponse({"jobs": [j.to_dict() for j in created]}, status_code=201)


async def list_jobs(request: Request) -> Response:
    query = request.query_params
    limit = _query_limit(request)
    cursor = query.get("cursor")
    before_id = decode_cursor(cursor) if cursor else None
    actor = await _actor(request)
    jobs = await _client(request).list_jobs(
        actor=actor,
        organization=query_filter(request, "organization"),
        status=query_filter(request, "status"),
        job_type=query_filter(request, "job_type"),
        created_after=parse_datetime(query.get("created_after"), "created_after"),
        created_before=parse_datetime(query.get("created_before"), "created_before"),
        before_id=before_id,
        page_size=limit,
    )
    next_cursor = encode_cursor(jobs[-1].id) if len(jobs) == limit else None
    return JSONResponse({"jobs": [j.to_dict() for j in jobs], "next_cursor": next_cursor})


async def get_job(request: Request) -> Response:
    job_id = job_id_of(request)
    job = await _client(request).get_job(job_id, actor=await _actor(request))
    return JSONResponse(job.to_dict())


async def cancel_job(request: Request) -> Response:
    job_id = job_id_of(request)
    job = await _client(request).cancel_job(job_id, actor=await _actor(request))
    return JSONResponse(job.to_dict())


async def retry_job(request: Request) -> Response:
    job_id = job_id_of(request)
    job = await _client(request).retry_job(job_id, actor=await _actor(request))
    return JSONResponse(job.to_dict())


async def job_attempts(request: Request) -> Response:
    job_id = job_id_of(request)
    attempts = await _client(request).job_attempts(job_id, actor=await _actor(request))
    return JSONResponse({"attempts": [a.to_dict() for a in attempts]})


async def metrics(request: Request) -> Response:
    query = request.query_params
    since = parse_datetime(query.get("since"), "since")
    actor = await _actor(request)
    document = await _client(request).metrics(
        actor=actor, organization=query_filter(request, "organization"), since=since
    )
    return JSONResponse(document)


async def list_job_types(request: Request) -> Response:
    types = await _client(request).list_job_types(actor=await _actor(request))
    return JSONResponse({"job_types": [t.to_dict() for t in types]})


async def register_job_type(request: Request) -> Response:
    body = await read_json(request)
    unknown = set(body) - JOB_TYPE_FIELDS
    if unknown:
        # Refused rather than ignored: a misspelt setting would otherwise silently keep
        # its default.
        raise errors.InvalidArgument(f"unknown field(s): {', '.join(sorted(unknown))}")
    durations = ("timeout", "backoff_base", "backoff_max", "dedup_window", "rate_period")
    settings: dict[str, Any] = {k: _seconds(body, k) for k in durations}
    settings.update(
        queue=_opt_str(body, "queue"),
        priority=_opt_int(body, "priority"),
        max_retries=_opt_int(body, "max_retries"),
        rate_limit=_opt_int(body, "rate_limit"),
        enabled=_opt_bool(body, "enabled"),
        execution=_opt_str(body, "execution"),
    )
    # Optional settings left out keep the SQL's defaults; dedup_window and the rate limit
    # may be null on purpose, which is also their default.
    given = {k: v for k, v in settings.items() if v is not None}
    name, handler = _req_str(body, "name"), _req_str(body, "handler")
    actor = await _actor(request)
    job_type = await _client(request).register_job_type(name, handler, **given, actor=actor)
    return JSONResponse(job_type.to_dict())


async def list_organizations(request: Request) -> Response:
    orgs = await _client(request).list_organizations(actor=await _actor(request))
    return JSONResponse({"organizations": [o.to_dict() for o in orgs]})


async def me(request: Request) -> Response:
    identity = await identify(request)
    return JSONResponse({"user": identity.user_name, "is_admin": identity.is_admin})
