"""Who is calling: API tokens from the Authorization header or the browser's session cookie.

Tokens are resolved by ``jobqueue.authenticate`` on every request; nothing is cached, so a
revoked token is refused at once. Browsers sign in with ``POST /api/session``, which stores
the token in an HttpOnly, SameSite=Strict cookie (an ``EventSource`` cannot send headers).
A state-changing request authenticated by that cookie must also carry ``X-Requested-With``,
a header a cross-site form cannot set.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobqueue import errors
from jobqueue.client import AsyncClient
from jobqueue.models import Identity
from jobqueue.settings import Settings

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


async def identify(request: Request) -> Identity:
    """The authenticated caller, or Unauthenticated / Forbidden (missing CSRF header)."""
    token, from_cookie = request_token(request)
    if token is None:
        raise errors.Unauthenticated("an API token is required")
    if from_cookie and request.method not in SAFE_METHODS and CSRF_HEADER not in request.headers:
        raise errors.Forbidden("requests signed in by cookie must send X-Requested-With")
    client: AsyncClient = request.state.client
    return await client.authenticate(token)


async def create_session(request: Request) -> Response:
    """POST /api/session: check a token and keep it in the session cookie."""
    from jobqueue.api import read_json

    body = await read_json(request)
    token = body.get("token")
    if not isinstance(token, str) or not token:
        raise errors.InvalidArgument("'token' must be a non-empty string")
    client: AsyncClient = request.state.client
    identity = await client.authenticate(token)
    settings: Settings = request.state.settings
    response = JSONResponse({"user": identity.user_name, "is_admin": identity.is_admin})
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
        path="/",
    )
    return response


async def delete_session(request: Request) -> Response:
    """DELETE /api/session: forget the session cookie."""
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
