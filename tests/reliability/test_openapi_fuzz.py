"""The API against its OpenAPI document, fuzzed at length with every schemathesis check.

Each operation gets FULL_EXAMPLES generated requests at full size (``JOBQUEUE_FULL=1`` or
``--full``, with a fresh random seed each run, to find new failures) and REDUCED_EXAMPLES
otherwise (derandomized, so a CI run is repeatable), on top of schemathesis's coverage cases.
Positive and negative data alike, all checks on: no 5xx, every status and body as documented,
schema-valid requests accepted, schema-invalid ones refused, undeclared methods a 405,
missing credentials a 401. Four checks have nothing to act on here: max_response_time needs a
latency budget, which jobqueue does not promise, and the stateful checks (use after free,
resource availability, object-level authorization) follow links the document does not
declare; isolation between organizations is shown by test_isolation.py.

A schema-valid request may still name things the engine does not hold (a job type, an
organization, a job id, a cursor) or a time outside the windows the engine allows; those
refusals are documented, but the document cannot rule them out. So positive requests are
grounded first: such values are replaced by ones the fixture created, and everything else
is sent as generated.

The live feed (``GET /api/events``) is left out: its answer is a stream that never ends, so
no check can read it. Its refusals are covered case by case in test_hostile_http.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.generation.modes import GenerationMode

from jobqueue import db as jobqueue_db
from jobqueue.api import encode_cursor
from jobqueue.client import Client
from tests.conftest import fresh_database
from tests.factories import start_job
from tests.integration.web_helpers import bearer, build_world, running_server, settings_for

FULL_EXAMPLES = 300
REDUCED_EXAMPLES = 50
ADMIN_ONLY = {
    ("POST", "/api/job-types"),
    ("GET", "/metrics"),
    ("POST", "/api/queues/{queue}/pause"),
    ("POST", "/api/queues/{queue}/resume"),
    ("POST", "/api/queues/{queue}/limits"),
    ("POST", "/api/queues/{queue}/organizations/{organization}/limits"),
    ("POST", "/api/job-types/{name}/limits"),
}
SCHEDULE = "fixture"


@dataclass(frozen=True)
class Target:
    """The app's database, with a completed and a queued job of org-a."""

    dsn: str
    member: str  # alice's token; she is a member of org-a
    admin: str
    done: int
    queued: int


@pytest.fixture(scope="module")
def target(server_dsn: str, template_name: str) -> Iterator[Target]:
    with fresh_database(server_dsn, template_name) as dsn:
        with Client(dsn) as client:
            world = build_world(client)
            done = client.submit_job("echo", {"n": 1}, organization="org-a")
            attempt = start_job(dsn, done.id)
            with jobqueue_db.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT jobqueue.complete_attempt(%s, %s)", (done.id, attempt))
            queued = client.submit_job("echo", {"n": 2}, organization="org-a")
            client.create_schedule(SCHEDULE, "echo", "@hourly", organization="org-a")
        yield Target(dsn, world.alice, world.admin, done.id, queued.id)


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    """One session for every request: connections kept alive, and the environment's proxy
    settings not looked up again for each request."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture(scope="module")
def fuzz_schema(target: Target, full: bool) -> Iterator[schemathesis.schemas.BaseSchema]:
    with running_server(settings_for(target.dsn)) as url:
        loaded = schemathesis.openapi.from_url(f"{url}/api/openapi.json")
        loaded.config.generation.update(
            max_examples=FULL_EXAMPLES if full else REDUCED_EXAMPLES,
            deterministic=not full,
            # PostgreSQL text and jsonb cannot hold NUL, so the API refuses it anywhere (400,
            # as docs/http.md says); a schema cannot say so of every string nested in params.
            # NUL is sent case by case in test_hostile_http.py.
            allow_x00=False,
            # Every request carries the fixture's bearer token, which overrides a generated
            # Authorization header and wins over a session cookie; generating them would only
            # repeat the same request. Missing credentials are still sent by ignored_auth.
            with_security_parameters=False,
        )
        yield loaded


def ground_job(job: dict[str, Any], target: Target, now: datetime) -> None:
    job["job_type"], job["organization"] = "echo", "org-a"
    if job.get("depends_on"):
        # A dependency that has completed: a job waiting on an unfinished one could not be
        # retried once canceled (JQV04), which no document can foresee.
        job["depends_on"] = [target.done]
    if job.get("run_at") is not None:
        # The engine takes run_at within a year of now.
        job["run_at"] = (now + timedelta(minutes=5)).isoformat()


def ground_schedule(case: schemathesis.Case[Any], target: Target, operation: str) -> None:
    """A schedule the engine holds, and settings it takes (an expression, a zone, a type)."""
    if case.path_parameters:
        name = SCHEDULE
        if operation.startswith("DELETE"):
            # Each delete gets a schedule of its own, so the others keep theirs.
            name = f"doomed-{uuid.uuid4().hex[:12]}"
            with Client(target.dsn) as client:
                client.create_schedule(name, "echo", "@hourly", organization="org-a")
        case.path_parameters.update(organization="org-a", name=name)
    if isinstance(case.body, dict):
        if operation == "POST /api/schedules":
            case.body.update(name=f"s-{uuid.uuid4().hex[:12]}", organization="org-a")
        for key, value in (("job_type", "echo"), ("cron", "@hourly"), ("timezone", "UTC")):
            if case.body.get(key) is not None or operation == "POST /api/schedules":
                case.body[key] = value
        if case.body.get("params") is not None:
            case.body["params"] = {}
    if case.query and case.query.get("organization") is not None:
        case.query["organization"] = "org-a"


def ground(case: schemathesis.Case[Any], target: Target) -> None:
    """Replace what a schema cannot promise in a positive request by what the engine holds."""
    now = datetime.now(UTC)
    operation = f"{case.operation.method.upper()} {case.operation.path}"
    if case.operation.path.startswith("/api/schedules"):
        ground_schedule(case, target, operation)
    elif operation == "POST /api/jobs":
        ground_job(case.body, target, now)
    elif operation == "POST /api/jobs/batch":
        for job in case.body["jobs"]:
            ground_job(job, target, now)
    elif operation == "GET /api/jobs" and case.query and case.query.get("cursor") is not None:
        # Cursors are opaque: only one this server handed out is valid.
        case.query["cursor"] = encode_cursor(target.queued + len(case.query["cursor"]))
    elif operation == "GET /api/metrics" and case.query and case.query.get("since"):
        # Metrics look back at most 90 days.
        case.query["since"] = (now - timedelta(hours=1)).isoformat()
    elif operation in ("POST /api/jobs/bulk-cancel", "POST /api/jobs/bulk-retry"):
        # A schema-valid name is not an organization the member belongs to.
        if case.body.get("organization") is not None:
            case.body["organization"] = "org-a"
    elif case.operation.path.startswith("/api/queues/{queue}/"):
        # A queue and an organization the engine knows (any other is a 404, as documented).
        case.path_parameters["queue"] = "default"
        if "organization" in case.path_parameters:
            case.path_parameters["organization"] = "org-a"
        if isinstance(case.body, dict) and case.body.get("organization") is not None:
            case.body["organization"] = "org-a"
    elif operation == "POST /api/job-types/{name}/limits":
        case.path_parameters["name"] = "echo"
        # A start limit needs its period, and the reverse.
        if (case.body.get("start_limit") is None) != (case.body.get("start_period") is None):
            case.body["start_limit"] = case.body.get("start_limit") or 1
            case.body["start_period"] = case.body.get("start_period") or 60
    elif operation == "POST /api/job-types":
        body = case.body
        # Two rules across fields, which a JSON schema cannot state: backoff_max is at least
        # backoff_base (an absent one is 1 s, an absent maximum 600 s), and a rate limit
        # needs both its count and its period.
        base = body.get("backoff_base")
        base = 1.0 if base is None else base
        longest = body.get("backoff_max")
        if (600.0 if longest is None else longest) < base:
            body["backoff_max"] = base
        if (body.get("rate_limit") is None) != (body.get("rate_period") is None):
            body["rate_limit"] = body.get("rate_limit") or 1
            body["rate_period"] = body.get("rate_period") or 60


schema = schemathesis.pytest.from_fixture("fuzz_schema").exclude(path="/api/events")


@schema.parametrize()
def test_every_operation_keeps_to_the_document(
    case: schemathesis.Case[Any], target: Target, http: requests.Session
) -> None:
    if case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE:
        ground(case, target)
    # Only an admin may register job types or scrape /metrics; as a member, every request
    # there would stop at the 403 and the rest of the operation would go untested.
    admin = (case.operation.method.upper(), case.operation.path) in ADMIN_ONLY
    case.call_and_validate(session=http, headers=bearer(target.admin if admin else target.member))
