"""Who is calling: API tokens from the Authorization header or the browser's session cookie.

Credentials are resolved by ``jobqueue.authenticate`` on every request; nothing is cached, so a
revoked token is refused at once. Browsers sign in with ``POST /api/session``: the token is
checked and a session of its own is issued (``jobqueue.create_session``), whose secret goes into
an HttpOnly, SameSite=Strict cookie (an ``EventSource`` cannot send headers); the API token never
leaves the page. ``DELETE /api/session`` ends that session in the database (``end_session``),
and revoking the token ends its sessions too.

CSRF: every cookie-authenticated request that changes state, and every sign-in, must carry
``X-Requested-With``, a header a cross-site form cannot set (and a cross-site script cannot send
without a CORS preflight that this server does not grant). Failed authentications are throttled
per client address (:mod:`jobqueue.throttle`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobqueue import errors
from jobqueue.client import AsyncClient
from jobqueue.models import Identity
from jobqueue.settings import Settings
from jobqueue.throttle import FailureThrottle

SESSION_COOKIE = "jobqueue_session"
CSRF_HEADER = "x-requested-with"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def request_token(request: Request) -> tuple[str | None, bool]:
    """The caller's token and whether it came from the session cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if header:
        if scheme.lower() != "bearer" or not credentials.strip():
            raise errors.Unauthenticated("the Authorization header must be 'Bearer <token>'")
        return credentials.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _throttle(request: Request) -> FailureThrottle | None:
    return getattr(request.state, "throttle", None)


async def _authenticated(request: Request, token: str) -> Identity:
    """``authenticate(token)``, counted by the throttle when it fails."""
    throttle = _throttle(request)
    if throttle is not None:
        throttle.check(_address(request))
    client: AsyncClient = request.state.client
    try:
        return await client.authenticate(token)
    except errors.Unauthenticated:
        if throttle is not None:
            throttle.failed(_address(request))
        raise


def _require_csrf_header(request: Request, what: str) -> None:
    if CSRF_HEADER not in request.headers:
        raise errors.Forbidden(f"{what} must send X-Requested-With")


async def identify(request: Request) -> Identity:
    """The authenticated caller, or Unauthenticated / Forbidden (missing CSRF header) /
    Throttled (too many failures from this address)."""
    token, from_cookie = request_token(request)
    if token is None:
        raise errors.Unauthenticated("an API token is required")
    if from_cookie and request.method not in SAFE_METHODS:
        _require_csrf_header(request, "requests signed in by cookie")
    return await _authenticated(request, token)


async def create_session(request: Request) -> Response:
    """POST /api/session: check a token and sign in with a session of its own."""
    from jobqueue.api import read_json

    # A cross-site form could otherwise sign the victim's browser in as the attacker.
    _require_csrf_header(request, "a sign-in")
    body = await read_json(request)
    token = body.get("token")
    if not isinstance(token, str) or not token:
        raise errors.InvalidArgument("'token' must be a non-empty string")
    throttle = _throttle(request)
    if throttle is not None:
        throttle.check(_address(request))
    client: AsyncClient = request.state.client
    try:
        session = await client.create_session(token)
    except errors.Unauthenticated:
        if throttle is not None:
            throttle.failed(_address(request))
        raise
    settings: Settings = request.state.settings
    response = JSONResponse({"user": session.user_name, "is_admin": session.is_admin})
    max_age = int((session.expires_at - datetime.now(UTC)).total_seconds())
    response.set_cookie(
        SESSION_COOKIE,
        session.secret,
        max_age=max(0, max_age),
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
        path="/",
    )
    return response


async def delete_session(request: Request) -> Response:
    """DELETE /api/session: end the session in the database and forget the cookie."""
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        _require_csrf_header(request, "a sign-out")
        client: AsyncClient = request.state.client
        await client.end_session(secret)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
