"""Dashboard routes mounted by the web app: HTML pages and bulk-action JSON routes."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
