"""Handler paths: import, cache and check them, and register job types only with good ones.

A job type names its handler by a dotted path, ``package.module:function`` (or
``package.module.function``). The handler is called as ``handler(ctx, **params)`` and may be
``async def``. Workers import each path once and keep it; :func:`register_job_type` refuses a
path that does not import or cannot be called that way, so mistakes surface at registration
rather than on the first job.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any

from jobqueue import errors, models
from jobqueue.client import Client

_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)?$")

_cache: dict[str, Callable[..., Any]] = {}


class HandlerError(Exception):
    """A handler path does not lead to a usable handler; the message says why."""


def _import(path: str) -> Any:
    if not isinstance(path, str) or not _PATH.match(path):
        raise HandlerError(f"handler {path!r} is not a dotted path like 'package.module:function'")
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
    else:
        module_name, _, attr_path = path.rpartition(".")
        if not module_name:
            raise HandlerError(f"handler {path!r} names no module; use 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise HandlerError(
            f"handler {path!r}: module {module_name!r} failed to import: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise HandlerError(
                f"handler {path!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from exc
    return target


def check_signature(path: str, handler: Any) -> None:
    """Raise HandlerError unless ``handler(ctx, **params)`` is a valid call."""
    if not callable(handler):
        raise HandlerError(f"handler {path!r} is a {type(handler).__name__}, not callable")
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError) as exc:
        raise HandlerError(f"handler {path!r}: its signature cannot be read: {exc}") from exc
    params = list(signature.parameters.values())
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    takes_var_positional = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    if not positional and not takes_var_positional:
        raise HandlerError(
            f"handler {path!r} must accept the job context as its first argument: "
            f"def handler(ctx, **params), got {signature}"
        )
    required_positional_only = [
        p
        for p in positional[1:]
        if p.kind is inspect.Parameter.POSITIONAL_ONLY and p.default is inspect.Parameter.empty
    ]
    if required_positional_only:
        names = ", ".join(p.name for p in required_positional_only)
        raise HandlerError(
            f"handler {path!r} requires positional-only arguments after the context "
            f"({names}); params are passed by keyword"
        )


def load_handler(path: str) -> Callable[..., Any]:
    """The handler at ``path``, imported and checked once per process."""
    handler = _cache.get(path)
    if handler is None:
        imported = _import(path)
        check_signature(path, imported)
        handler = _cache[path] = imported
    return handler


def validate_handler(path: str) -> Callable[..., Any]:
    """Import and check ``path`` afresh (not from the cache); raise HandlerError if unusable."""
    handler: Callable[..., Any] = _import(path)
    check_signature(path, handler)
    return handler


def register_job_type(client: Client, name: str, handler: str, **settings: Any) -> models.JobType:
    """Create or update a job type after checking that its handler imports and has the
    ``handler(ctx, **params)`` shape. A bad handler raises
    :class:`jobqueue.errors.InvalidJobType` and changes nothing.

    ``settings`` are those of :meth:`jobqueue.client.Client.register_job_type` (queue,
    priority, max_retries, timeout, backoff_base, backoff_max, ...).
    """
    try:
        validate_handler(handler)
    except HandlerError as exc:
        raise errors.InvalidJobType(str(exc), detail={"handler": handler}) from exc
    job_type: models.JobType = client.register_job_type(name, handler, **settings)
    return job_type
