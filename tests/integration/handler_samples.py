"""Objects for the handler-validation tests: good and bad handlers."""

from __future__ import annotations

from typing import Any

from jobqueue.context import JobContext

NOT_CALLABLE = 42


def good(ctx: JobContext, **params: Any) -> dict[str, Any]:
    return params


async def good_async(ctx: JobContext, name: str = "x") -> str:
    return name


def no_context() -> None:
    return None


def positional_only_params(ctx: JobContext, extra: int, /) -> None:
    return None


class Namespace:
    @staticmethod
    def nested(ctx: JobContext) -> None:
        return None
