"""Hostile input over HTTP: every route that takes input answers its documented status and
problem JSON, and writes nothing.

The corpus of test_hostile_input.py (injection strings, oversized and deeply nested JSON, NUL
bytes, invalid UTF-8, lone surrogates, NaN, out-of-range numbers, wrong types) goes through a
real uvicorn serving the app: in bodies, query and path parameters, the Authorization,
Cookie and Last-Event-ID headers, and raw bytes. Every case compares a digest of every
table before and after, and the server must still answer afterwards.

The cases share one database and one server (a fresh one per case would cost seconds each);
that is sound because a case may not write anything, which is what each one checks.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest

from jobqueue import db as jobqueue_db
from jobqueue.client import Client
from jobqueue.serving import uvicorn_options
from tests.conftest import fresh_database
from tests.integration.web_helpers import (
    assert_problem,
    bearer,
    build_world,
    running_server,
    settings_for,
)
from tests.reliability.conftest import table_fingerprints
from tests.reliability.corpus import (
    DIGITS_BEYOND_INT_PARSING,
    INJECTIONS,
    INT4_MAX,
    INT8_MAX,
    INVALID_UTF8,
    LONE_SURROGATE,
    LONG_NAME,
    NUL_TEXT,
    OVERSIZED_TEXT,
    UNICODE_DIGITS,
    deep_json,
)

# A fresh database numbers its jobs from 1: the fixture submits these two first.
OWN_JOB = 1  # org-a's, which alice may see
FOREIGN_JOB = 2  # org-b's, which she may not
PROBLEM = "application/problem+json"
NO_BODY = object()
# Replaced by alice's session cookie when sent (the token is known only at run time).
# The sign-in page's script sends it; a cross-site form cannot.
SIGN_IN = {"X-Requested-With": "fetch"}
SESSION_OF_ALICE = "jobqueue_session=<alice>"


@dataclass(frozen=True)
class Case:
    """One request and the answer the documentation promises for it."""

    method: str
    path: str
    status: int
    code: str | None = None  # the SQLSTATE in the problem body; None for routing errors
    # Encoded with json.dumps, which writes NaN as a bare literal and a lone surrogate as an
    # escape, just as a careless client would send them.
    body: Any = NO_BODY
    content: bytes | None = None
    chunked: bool = False
    params: dict[str, str] | None = None
    headers: dict[str, str | bytes] = field(default_factory=dict)
    user: str | None = "alice"  # whose bearer token goes in Authorization
    media: str = PROBLEM
    answer: Any = NO_BODY  # the JSON of an accepted request
    # On a connection of its own: the head limit is measured while a connection waits for a
    # head; one sent behind a request still being answered is read whole by h11.
    fresh_connection: bool = False


def submit(body: Any, status: int, code: str, **kw: Any) -> Case:
    return Case("POST", "/api/jobs", status, code, body=body, **kw)


def submit_raw(content: bytes, status: int, code: str, **kw: Any) -> Case:
    return Case("POST", "/api/jobs", status, code, content=content, **kw)


def job(**fields: Any) -> dict[str, Any]:
    return {"job_type": "echo", "organization": "org-a", **fields}


def json_with_params(params: str) -> bytes:
    """A submission whose params are this JSON text, sent as it is."""
    return b'{"job_type": "echo", "organization": "org-a", "params": {"x": %s}}' % params.encode()


def cursor_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


# Path segments (percent-encoded where a client would have to); none is a job id.
BAD_IDS = {
    "a word": "abc",
    "negative": "-1",
    "zero": "0",
    "a fraction": "1.5",
    "int8 max + 1": str(INT8_MAX + 1),
    "5000 digits": DIGITS_BEYOND_INT_PARSING,
    "NUL": "%00",
    "invalid UTF-8": "%FF",
    "injection": quote(INJECTIONS[1], safe=""),
    **{f"unicode digit {d!a}": d for d in UNICODE_DIGITS},
}
JOB_ROUTES = {
    "get": ("GET", "/api/jobs/{}"),
    "cancel": ("POST", "/api/jobs/{}/cancel"),
    "retry": ("POST", "/api/jobs/{}/retry"),
    "attempts": ("GET", "/api/jobs/{}/attempts"),
}
BAD_LAST_EVENT_IDS = {
    "a word": "abc",
    "negative": "-1",
    "int8 max + 1": str(INT8_MAX + 1),
    "5000 digits": DIGITS_BEYOND_INT_PARSING,
    "injection": INJECTIONS[0],
    **{f"unicode digit {d!a}": d for d in UNICODE_DIGITS},
}
GOOD = job()

CASES: dict[str, Case] = {
    # --- POST /api/jobs
    **{
        f"submit: injection as job type {i}": submit(job(job_type=s), 400, "JQV01")
        for i, s in enumerate(INJECTIONS)
    },
    **{
        f"submit: injection as organization {i}": submit(job(organization=s), 403, "JQA02")
        for i, s in enumerate(INJECTIONS)
    },
    "submit: another organization": submit(job(organization="org-b"), 403, "JQA02"),
    "submit: job type of 100,000 characters": submit(job(job_type=LONG_NAME), 400, "JQV01"),
    "submit: organization of 100,000 characters": submit(job(organization=LONG_NAME), 403, "JQA02"),
    "submit: NUL in a params value": submit(job(params={"x": NUL_TEXT}), 400, "JQV03"),
    "submit: NUL in a params key": submit(job(params={NUL_TEXT: 1}), 400, "JQV03"),
    "submit: NUL in the job type": submit(job(job_type="ec\x00ho"), 400, "JQV03"),
    "submit: NUL in the organization": submit(job(organization="org\x00-a"), 400, "JQV03"),
    "submit: lone surrogate in params": submit(job(params={"x": LONE_SURROGATE}), 400, "JQV03"),
    "submit: lone surrogate in the organization": submit(
        job(organization="org-a" + LONE_SURROGATE), 400, "JQV03"
    ),
    "submit: NaN in params": submit(job(params={"x": float("nan")}), 400, "JQV03"),
    "submit: -Infinity in params": submit(job(params={"x": float("-inf")}), 400, "JQV03"),
    "submit: 1e400 in params": submit_raw(
        b'{"job_type": "echo", "organization": "org-a", "params": {"x": 1e400}}', 400, "JQV03"
    ),
    "submit: an integer of 5000 digits": submit_raw(
        json_with_params(DIGITS_BEYOND_INT_PARSING), 400, "JQV03"
    ),
    "submit: params nested 200,000 deep": submit_raw(
        json_with_params(deep_json(200_000)), 400, "JQV03"
    ),
    # Shallow enough for the parser, too deep for encoding it again further down the stack.
    "submit: params nested 500 deep": submit_raw(json_with_params(deep_json(500)), 400, "JQV03"),
    "submit: params an array": submit(job(params=[1, 2]), 400, "JQV02"),
    "submit: params a string": submit(job(params="{}"), 400, "JQV02"),
    "submit: params over 256 KiB": submit(job(params={"x": OVERSIZED_TEXT}), 413, "JQV06"),
    "submit: many small keys over 256 KiB": submit(
        job(params={str(i): i for i in range(40_000)}), 413, "JQV06"
    ),
    "submit: priority over int4": submit(job(priority=INT4_MAX + 1), 400, "JQV03"),
    "submit: priority under int4": submit(job(priority=-INT4_MAX - 2), 400, "JQV03"),
    "submit: priority a string": submit(job(priority="high"), 400, "JQV03"),
    "submit: priority a boolean": submit(job(priority=True), 400, "JQV03"),
    "submit: priority a fraction": submit(job(priority=1.5), 400, "JQV03"),
    "submit: run_at not a timestamp": submit(job(run_at=INJECTIONS[0]), 400, "JQV03"),
    "submit: run_at in year 9999": submit(job(run_at="9999-12-31T00:00:00Z"), 400, "JQV03"),
    "submit: run_at a century ago": submit(job(run_at="1925-01-01T00:00:00Z"), 400, "JQV03"),
    "submit: run_at a number": submit(job(run_at=1e18), 400, "JQV03"),
    "submit: dependency not a number": submit(job(depends_on=["x"]), 400, "JQV03"),
    "submit: dependency negative": submit(job(depends_on=[-1]), 400, "JQV03"),
    "submit: dependency over int8": submit(job(depends_on=[2**64]), 400, "JQV03"),
    "submit: dependency list a string": submit(job(depends_on="1; DROP"), 400, "JQV03"),
    "submit: dependency of another organization": submit(
        job(depends_on=[FOREIGN_JOB]), 400, "JQV04"
    ),
    "submit: dependency missing": submit(job(depends_on=[INT8_MAX]), 400, "JQV04"),
    "submit: dedup a string": submit(job(dedup="yes"), 400, "JQV03"),
    "submit: an unknown field": submit(job(actor="root"), 400, "JQV03"),
    "submit: job type missing": submit({"organization": "org-a"}, 400, "JQV03"),
    "submit: body a JSON array": submit([GOOD], 400, "JQV03"),
    "submit: body empty": submit_raw(b"", 400, "JQV03"),
    "submit: body truncated": submit_raw(b'{"job_type": ', 400, "JQV03"),
    "submit: body invalid UTF-8": submit_raw(
        b'{"job_type": "' + INVALID_UTF8 + b'"}', 400, "JQV03"
    ),
    "submit: body a urlencoded form": submit_raw(
        b"job_type=echo&organization=org-a",
        400,
        "JQV03",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    "submit: body over 8 MiB": submit_raw(b" " * (8 * 2**20 + 1), 413, "JQV06"),
    "submit: chunked body over 8 MiB": submit_raw(
        b" " * (8 * 2**20 + 1), 413, "JQV06", chunked=True
    ),
    "submit: signed in by cookie without X-Requested-With": submit(
        GOOD, 403, "JQA02", user=None, headers={"Cookie": SESSION_OF_ALICE}
    ),
    # --- POST /api/jobs/batch
    "batch: 50,001 jobs": Case(
        "POST", "/api/jobs/batch", 413, "JQV06", body={"jobs": [GOOD] * 50_001}
    ),
    "batch: jobs empty": Case("POST", "/api/jobs/batch", 400, "JQV03", body={"jobs": []}),
    "batch: jobs an object": Case("POST", "/api/jobs/batch", 400, "JQV03", body={"jobs": GOOD}),
    "batch: jobs missing": Case("POST", "/api/jobs/batch", 400, "JQV03", body={"job": [GOOD]}),
    "batch: an item not an object": Case(
        "POST", "/api/jobs/batch", 400, "JQV03", body={"jobs": [GOOD, "echo"]}
    ),
    **{
        f"batch: one hostile item among 200 ({what})": Case(
            "POST",
            "/api/jobs/batch",
            status,
            code,
            body={"jobs": [GOOD] * 100 + [bad] + [GOOD] * 100},
        )
        for what, bad, status, code in [
            ("NUL", job(params={"x": NUL_TEXT}), 400, "JQV03"),
            ("oversized", job(params={"x": OVERSIZED_TEXT}), 413, "JQV06"),
            ("injection", job(job_type=INJECTIONS[0]), 400, "JQV01"),
            ("other organization", job(organization="org-b"), 403, "JQA02"),
            ("priority Infinity", job(priority=float("inf")), 400, "JQV03"),
        ]
    },
    # --- job routes by id
    **{
        f"{route}: job id {what}": Case(method, path.format(raw), 400, "JQV03")
        for route, (method, path) in JOB_ROUTES.items()
        for what, raw in BAD_IDS.items()
    },
    **{
        f"{route}: {what}": Case(method, path.format(job_id), 404, "JQN01")
        for route, (method, path) in JOB_ROUTES.items()
        for what, job_id in [
            ("another organization's job", FOREIGN_JOB),
            ("int8 max", INT8_MAX),
        ]
    },
    "retry: a queued job": Case("POST", f"/api/jobs/{OWN_JOB}/retry", 409, "JQT01"),
    # --- GET /api/jobs
    **{
        f"list: injection as status {i}": Case(
            "GET", "/api/jobs", 400, "JQV03", params={"status": s}
        )
        for i, s in enumerate(INJECTIONS)
    },
    **{
        f"list: injection as organization {i}": Case(
            "GET", "/api/jobs", 403, "JQA02", params={"organization": s}
        )
        for i, s in enumerate(INJECTIONS)
    },
    **{
        f"list: injection as job type {i} matches nothing": Case(
            "GET",
            "/api/jobs",
            200,
            params={"job_type": s},
            media="application/json",
            answer={"jobs": [], "next_cursor": None},
        )
        for i, s in enumerate(INJECTIONS)
    },
    "list: NUL in organization": Case(
        "GET", "/api/jobs", 400, "JQV03", params={"organization": NUL_TEXT}
    ),
    "list: invalid UTF-8 in organization": Case(
        "GET", "/api/jobs?organization=%FF%FE", 403, "JQA02"
    ),
    "list: organization empty": Case("GET", "/api/jobs", 400, "JQV03", params={"organization": ""}),
    **{
        f"list: limit {what}": Case("GET", "/api/jobs", 400, "JQV03", params={"limit": raw})
        for what, raw in [
            ("zero", "0"),
            ("negative", "-1"),
            ("a fraction", "1.5"),
            ("a word", "ten"),
            *((f"unicode digit {d!a}", d) for d in UNICODE_DIGITS),
        ]
    },
    "list: limit of 5000 digits is capped": Case(
        "GET",
        "/api/jobs",
        200,
        params={"limit": DIGITS_BEYOND_INT_PARSING, "job_type": "none"},
        media="application/json",
        answer={"jobs": [], "next_cursor": None},
    ),
    **{
        f"list: cursor {what}": Case("GET", "/api/jobs", 400, "JQV03", params={"cursor": raw})
        for what, raw in [
            ("garbage", "not-a-cursor"),
            ("injection", INJECTIONS[0]),
            ("non-ASCII", "curs\u00f6r"),
            ("a list", cursor_of(b"[1]")),
            ("a string", cursor_of(b'"before_id"')),
            ("id over int8", cursor_of(b'{"before_id": 1180591620717411303424}')),
            ("id a fraction", cursor_of(b'{"before_id": 1.5}')),
            ("id NaN", cursor_of(b'{"before_id": NaN}')),
            ("invalid UTF-8", cursor_of(INVALID_UTF8)),
            ("nested 5000 deep", cursor_of(deep_json(5000).encode())),
        ]
    },
    **{
        f"list: created_after {what}": Case(
            "GET", "/api/jobs", 400, "JQV03", params={"created_after": raw}
        )
        for what, raw in [
            ("garbage", INJECTIONS[1]),
            ("month 13", "2024-13-01T00:00:00Z"),
            ("year 10000", "10000-01-01T00:00:00Z"),
            ("NUL", "2024-01-01T00:00:00\x00"),
        ]
    },
    **{
        f"list: created_after {what} matches nothing": Case(
            "GET",
            "/api/jobs",
            200,
            params={"created_after": raw},
            media="application/json",
            answer={"jobs": [], "next_cursor": None},
        )
        for what, raw in [
            ("at the end of year 9999", "9999-12-31T23:59:59-23:59"),
            ("in lower case, in 9999", "9999-01-01t00:00:00z"),
        ]
    },
    # --- GET /api/metrics
    "metrics: injection as organization": Case(
        "GET", "/api/metrics", 403, "JQA02", params={"organization": INJECTIONS[0]}
    ),
    "metrics: another organization": Case(
        "GET", "/api/metrics", 403, "JQA02", params={"organization": "org-b"}
    ),
    "metrics: since garbage": Case(
        "GET", "/api/metrics", 400, "JQV03", params={"since": INJECTIONS[2]}
    ),
    "metrics: since a century ago": Case(
        "GET", "/api/metrics", 400, "JQV03", params={"since": "1925-01-01T00:00:00Z"}
    ),
    # --- POST /api/job-types (admins)
    **{
        f"job type: {what}": Case(
            "POST",
            "/api/job-types",
            status,
            code,
            user="admin",
            body={"name": "evil", "handler": "jobqueue.tasks.demo:echo", **fields},
        )
        for what, fields, status, code in [
            ("injection as name", {"name": INJECTIONS[0]}, 400, "JQV05"),
            ("injection as handler", {"handler": INJECTIONS[3]}, 400, "JQV05"),
            ("injection as queue", {"queue": INJECTIONS[5]}, 400, "JQV05"),
            ("name of 100,000 characters", {"name": LONG_NAME}, 400, "JQV05"),
            ("NUL in the queue", {"queue": NUL_TEXT}, 400, "JQV03"),
            ("lone surrogate in the name", {"name": LONE_SURROGATE}, 400, "JQV03"),
            ("max retries negative", {"max_retries": -1}, 400, "JQV05"),
            ("priority over int4", {"priority": 2**40}, 400, "JQV03"),
            ("timeout 1e308", {"timeout": 1e308}, 400, "JQV03"),
            ("timeout negative", {"timeout": -1}, 400, "JQV03"),
            ("timeout a string", {"timeout": "30s"}, 400, "JQV03"),
            ("timeout NaN", {"timeout": float("nan")}, 400, "JQV03"),
            ("rate limit negative", {"rate_limit": -5}, 400, "JQV05"),
            ("enabled a string", {"enabled": "yes"}, 400, "JQV03"),
            ("an unknown field", {"retries": 5}, 400, "JQV03"),
        ]
    },
    "job type: by a member, not an admin": Case(
        "POST",
        "/api/job-types",
        403,
        "JQA02",
        body={"name": "mine", "handler": "jobqueue.tasks.demo:echo"},
    ),
    # --- POST /api/session (the sign-in form)
    **{
        f"sign-in: injection as token {i}": Case(
            "POST", "/api/session", 401, "JQA01", user=None, body={"token": s}, headers=SIGN_IN
        )
        for i, s in enumerate(INJECTIONS)
    },
    **{
        f"sign-in: token {what}": Case(
            "POST", "/api/session", 400, "JQV03", user=None, body={"token": token}, headers=SIGN_IN
        )
        for what, token in [
            ("with NUL", NUL_TEXT),
            ("a lone surrogate", LONE_SURROGATE),
            ("a number", 5),
            ("a list", ["x"]),
            ("empty", ""),
        ]
    },
    "sign-in: token of 100,000 characters": Case(
        "POST",
        "/api/session",
        401,
        "JQA01",
        user=None,
        body={"token": LONG_NAME},
        headers=SIGN_IN,
    ),
    "sign-in: the form posted without script": Case(
        "POST",
        "/api/session",
        400,
        "JQV03",
        user=None,
        content=b"token=jq_x",
        headers={**SIGN_IN, "Content-Type": "application/x-www-form-urlencoded"},
    ),
    "sign-in: without X-Requested-With (a cross-site form)": Case(
        "POST", "/api/session", 403, "JQA02", user=None, body={"token": "jq_x"}
    ),
    "sign-in: body invalid UTF-8": Case(
        "POST",
        "/api/session",
        400,
        "JQV03",
        user=None,
        content=INVALID_UTF8,
        headers=SIGN_IN,
    ),
    # --- Authorization and Cookie headers
    **{
        f"auth: Authorization {what}": Case(
            "GET", "/api/me", 401, "JQA01", user=None, headers={"Authorization": value}
        )
        for what, value in [
            *((f"injection {i}", f"Bearer {s}") for i, s in enumerate(INJECTIONS)),
            ("Basic", "Basic YWxpY2U6YWxpY2U="),
            ("Bearer and nothing", "Bearer"),
            ("a tab after Bearer", "Bearer\tx"),
            ("invalid UTF-8", b"Bearer " + INVALID_UTF8),
        ]
    },
    # A head over 16 KiB is refused before the app reads it.
    "auth: Authorization of 100,000 characters": Case(
        "GET",
        "/api/me",
        431,
        user=None,
        headers={"Authorization": "Bearer " + LONG_NAME},
        fresh_connection=True,
    ),
    "auth: Authorization of 16,000 characters": Case(
        "GET",
        "/api/me",
        401,
        "JQA01",
        user=None,
        headers={"Authorization": "Bearer " + "x" * 16_000},
    ),
    "auth: session cookie an injection": Case(
        "GET",
        "/api/me",
        401,
        "JQA01",
        user=None,
        headers={"Cookie": f"jobqueue_session={quote(INJECTIONS[0])}"},
    ),
    "auth: session cookie with an escaped NUL": Case(
        "GET", "/api/me", 400, "JQV03", user=None, headers={"Cookie": 'jobqueue_session="a\\000b"'}
    ),
    "auth: /metrics as a member": Case("GET", "/metrics", 403, "JQA02"),
    "auth: /api/workers without a token": Case("GET", "/api/workers", 401, "JQA01", user=None),
    # --- GET /api/events: the live feed refuses before it opens
    **{
        f"events: Last-Event-ID {what}": Case(
            "GET", "/api/events", 400, "JQV03", headers={"Last-Event-ID": raw.encode()}
        )
        for what, raw in BAD_LAST_EVENT_IDS.items()
    },
    **{
        f"events: last_event_id {what}": Case(
            "GET", "/api/events", 400, "JQV03", params={"last_event_id": raw}
        )
        for what, raw in BAD_LAST_EVENT_IDS.items()
    },
    **{
        f"events: job_id {what}": Case("GET", "/api/events", 400, "JQV03", params={"job_id": raw})
        for what, raw in [("zero", "0"), *BAD_LAST_EVENT_IDS.items()]
    },
    "events: another organization's job": Case(
        "GET", "/api/events", 404, "JQN01", params={"job_id": str(FOREIGN_JOB)}
    ),
    **{
        f"events: injection as organization {i}": Case(
            "GET", "/api/events", 403, "JQA02", params={"organization": s}
        )
        for i, s in enumerate(INJECTIONS)
    },
    "events: NUL in organization": Case(
        "GET", "/api/events", 400, "JQV03", params={"organization": NUL_TEXT}
    ),
    "events: an unknown token": Case(
        "GET", "/api/events", 401, "JQA01", user=None, headers={"Authorization": "Bearer x"}
    ),
    # --- the dashboard's bulk actions
    **{
        f"{action}: {what}": Case("POST", f"/api/jobs/bulk-{action}", status, code, body=body)
        for action in ("cancel", "retry")
        for what, body, status, code in [
            ("injection as status", {"status": INJECTIONS[0]}, 400, "JQV03"),
            ("injection as organization", {"organization": INJECTIONS[1]}, 403, "JQA02"),
            ("another organization", {"organization": "org-b"}, 403, "JQA02"),
            ("organization a number", {"organization": 5}, 400, "JQV03"),
            ("NUL in job type", {"job_type": NUL_TEXT}, 400, "JQV03"),
            ("body a list", ["queued"], 400, "JQV03"),
        ]
    },
    "cancel: injection as job type matches nothing": Case(
        "POST",
        "/api/jobs/bulk-cancel",
        200,
        body={"job_type": INJECTIONS[0]},
        media="application/json",
        answer={"canceled": 0, "cancel_requested": 0},
    ),
    "retry: injection as job type matches nothing": Case(
        "POST",
        "/api/jobs/bulk-retry",
        200,
        body={"job_type": INJECTIONS[0]},
        media="application/json",
        answer={"retried": 0},
    ),
    # --- dashboard pages: a bad position or id is a missing job, a bad filter the engine's 400
    **{
        f"job page: id {what}": Case("GET", f"/jobs/{raw}", 404, media="text/html")
        for what, raw in [*BAD_IDS.items(), ("another organization's", FOREIGN_JOB)]
    },
    **{
        f"jobs page: before_id {what} is ignored": Case(
            "GET", f"/jobs?before_id={raw}", 200, media="text/html"
        )
        for what, raw in BAD_IDS.items()
    },
    "jobs page: injection as status": Case(
        "GET", "/jobs", 400, "JQV03", params={"status": INJECTIONS[0]}
    ),
    # --- routing
    "routing: PUT on the jobs": Case("PUT", "/api/jobs", 405, body=GOOD),
    "routing: DELETE a job": Case("DELETE", f"/api/jobs/{OWN_JOB}", 405),
    # Not taken for GET /api/jobs/{job_id} with "batch" as the id.
    "routing: GET on the batch route": Case("GET", "/api/jobs/batch", 405),
    "routing: GET on bulk cancel": Case("GET", "/api/jobs/bulk-cancel", 405),
    "routing: no such route": Case("GET", "/api/" + quote(INJECTIONS[0], safe=""), 404),
}

# Requests that are not valid HTTP/1.1: uvicorn refuses them itself, before the app is called.
MALFORMED: dict[str, bytes] = {
    "NUL in a header": b"GET /api/me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer a\x00b\r\n\r\n",
    "carriage return in a header": b"GET /api/me HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
    "a header without a colon": b"GET /api/me HTTP/1.1\r\nHost: t\r\nAuthorization\r\n\r\n",
    "invalid UTF-8 in the path": b"GET /api/jobs/\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n",
    "a space in the path": b"GET /api/jobs/1 OR 1=1 HTTP/1.1\r\nHost: t\r\n\r\n",
    "negative Content-Length": b"POST /api/jobs HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
    "two Content-Lengths": (
        b"POST /api/jobs HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
    ),
}


@dataclass
class Site:
    """The app on its own database, and tokens of a member of each organization and an admin."""

    url: str
    tokens: dict[str, str]
    # One client for every case: setting one up costs more than most requests here.
    http: httpx.Client
    touched: float = 0.0

    def keep_tokens_fresh(self) -> None:
        """Authenticate every token now unless that was done within the last 30 s.

        Authenticating records when a token was last used, at most once a minute; done here,
        before the snapshot, that write cannot land inside a case.
        """
        if time.monotonic() - self.touched < 30:
            return
        for token in self.tokens.values():
            assert self.http.get("/api/me", headers=bearer(token)).status_code == 200
        self.touched = time.monotonic()


@pytest.fixture(scope="module")
def site_dsn(server_dsn: str, template_name: str) -> Iterator[str]:
    with fresh_database(server_dsn, template_name) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def site(site_dsn: str) -> Iterator[Site]:
    with Client(site_dsn) as client:
        world = build_world(client)
        own = client.submit_job("echo", {"n": 1}, organization="org-a")
        foreign = client.submit_job("echo", {"n": 2}, organization="org-b")
    assert (own.id, foreign.id) == (OWN_JOB, FOREIGN_JOB)
    tokens = {"alice": world.alice, "bob": world.bob, "admin": world.admin}
    settings = settings_for(site_dsn)
    # uvicorn as the web process runs it: jobqueue's HTTP/1.1 protocol and limits.
    options = uvicorn_options(
        header_timeout=settings.header_timeout,
        keep_alive_seconds=settings.keep_alive_seconds,
        max_connections=settings.max_connections,
    )
    with (
        running_server(settings, **options) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        yield Site(url, tokens, http)


@pytest.fixture(scope="module")
def owner(site_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with jobqueue_db.connect(site_dsn, autocommit=True) as conn:
        yield conn


def chunks(data: bytes, size: int = 2**20) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def send(site: Site, case: Case) -> httpx.Response:
    headers = dict(case.headers)
    if case.user is not None:
        headers.update(bearer(site.tokens[case.user]))
    if headers.get("Cookie") == SESSION_OF_ALICE:
        headers["Cookie"] = f"jobqueue_session={site.tokens['alice']}"
    content: bytes | Iterator[bytes] | None = case.content
    if case.body is not NO_BODY:
        content = json.dumps(case.body).encode()
        headers.setdefault("Content-Type", "application/json")
    if case.chunked and content is not None:
        assert isinstance(content, bytes)
        content = chunks(content)
    http = httpx.Client(base_url=site.url, timeout=60) if case.fresh_connection else site.http
    request = http.build_request(
        case.method, case.path, params=case.params, headers=headers, content=content
    )
    response = http.send(request, stream=True)
    try:
        # A feed that opened would never end; that is a failure in itself.
        assert not response.headers.get("content-type", "").startswith("text/event-stream")
        response.read()
    finally:
        response.close()
        if http is not site.http:
            http.close()
    return response


@pytest.mark.parametrize("name", sorted(CASES))
def test_http_answers_the_documented_status_and_writes_nothing(
    name: str, site: Site, owner: psycopg.Connection[Any]
) -> None:
    case = CASES[name]
    site.keep_tokens_fresh()
    before = table_fingerprints(owner)
    response = send(site, case)
    if case.media == PROBLEM:
        assert_problem(response, case.status, case.code)
    else:
        assert response.status_code == case.status, response.text[:2000]
        assert response.headers["content-type"].startswith(case.media)
        if case.answer is not NO_BODY:
            assert response.json() == case.answer
    assert table_fingerprints(owner) == before
    # The refusal left the server, its pool and the token lookup working.
    assert site.http.get("/api/me", headers=bearer(site.tokens["alice"])).status_code == 200


def raw_exchange(url: str, request: bytes) -> bytes:
    """Send bytes no HTTP client would, and read until the server closes the connection."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_http_is_refused_by_the_server_and_writes_nothing(
    name: str, site: Site, owner: psycopg.Connection[Any]
) -> None:
    site.keep_tokens_fresh()
    before = table_fingerprints(owner)
    answer = raw_exchange(site.url, MALFORMED[name])
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:500]
    assert b"content-type: application/problem+json" in answer.lower(), answer[:500]
    assert table_fingerprints(owner) == before


def test_a_declared_length_over_the_cap_is_refused_before_the_body(
    site: Site, owner: psycopg.Connection[Any]
) -> None:
    site.keep_tokens_fresh()
    before = table_fingerprints(owner)
    head = (
        "POST /api/jobs HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        f"Authorization: Bearer {site.tokens['alice']}\r\n"
        "Content-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n"
    )
    answer = raw_exchange(site.url, head.encode())
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 413 "), answer[:500]
    assert b"application/problem+json" in rest and b'"code":"JQV06"' in rest
    assert table_fingerprints(owner) == before


def test_hostile_text_where_text_is_allowed_is_stored_verbatim(site: Site) -> None:
    """Accepted hostile text is data, never SQL: it round-trips unchanged through HTTP."""
    h = bearer(site.tokens["alice"])
    for s in INJECTIONS:
        created = site.http.post("/api/jobs", headers=h, json=job(params={"text": s, s: [s]}))
        assert created.status_code == 201, created.text
        got = site.http.get(f"/api/jobs/{created.json()['id']}", headers=h)
        assert got.json()["params"] == {"text": s, s: [s]}
    listed = site.http.get("/api/jobs", headers=h, params={"organization": "org-a"})
    assert len(listed.json()["jobs"]) == len(INJECTIONS) + 1
