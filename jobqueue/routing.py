"""Routes whose literal path answers 405 for a method it lacks.

Starlette keeps looking when a route's path matches but its method does not, so a later
route with a parameter can take the request: ``GET /api/jobs/batch`` reached
``GET /api/jobs/{job_id}`` and was refused as a malformed job id (400), where HTTP wants
``405`` with ``Allow: POST``. A path without parameters names one resource, so it keeps the
request; Starlette then answers the 405 with the route's ``Allow`` header. The first route
that takes a request wins, so a literal path is listed before any parameterised path that
also matches it.
"""

from __future__ import annotations

from starlette.routing import Match, Route
from starlette.types import Scope


class LiteralRoute(Route):
    """A route that keeps every request to its path when the path has no parameters."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is Match.PARTIAL and not self.param_convertors:
            return Match.FULL, child_scope
        return match, child_scope
