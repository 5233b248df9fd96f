"""HTTP handlers of API tokens: ``GET /api/tokens`` lists the caller's tokens and sessions.

One call of ``jobqueue.list_tokens`` as the authenticated user: a user sees their own; an admin
may name another user with ``?user=``. Ids, names, kind, use, expiry and revocation only; a
secret is shown once, when ``jobqueue token create`` makes it, and never stored.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobqueue.api import query_filter
from jobqueue.auth import identify
from jobqueue.client import AsyncClient


async def list_tokens(request: Request) -> Response:
    """GET /api/tokens: the caller's tokens (or, for an admin, ``?user=``'s)."""
    actor = (await identify(request)).user_name
    client: AsyncClient = request.state.client
    tokens = await client.list_tokens(query_filter(request, "user"), actor=actor)
    return JSONResponse({"tokens": [t.to_dict() for t in tokens]})
